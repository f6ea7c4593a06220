//! Token authentication as Notary v0.7.0 does it: the Docker registry v2
//! token specification (`auth.type = "token"`).
//!
//! A request must carry `Authorization: Bearer <JWT>`. Without one it gets
//! 401 `UNAUTHORIZED` with a challenge naming the token service and the
//! scope the route needs:
//!
//! ```text
//! WWW-Authenticate: Bearer realm="<realm>",service="<service>",scope="repository:<gun>:push,pull"
//! ```
//!
//! and `,error="invalid_token"` when the token does not verify, or
//! `,error="insufficient_scope"` when it verifies but does not grant the
//! access. The scope per route ([`required_access`]) is Notary's: `pull` for
//! reads, `push,pull` for a publish and for `GET` of a server-held key, `*`
//! for deleting a collection and rotating a key, `registry:catalog:*` for
//! `/v2/` and the global changefeed.
//!
//! A token is accepted when ([`TokenAuth::verify`]):
//!
//! * its `alg` is one of [`ALLOWED_ALGORITHMS`] (never `none` nor an HMAC)
//!   and matches the type of the signing key;
//! * the signing key is the leaf of the header's `x5c` chain, and that
//!   chain leads (rustls-webpki path building, any extended key usage, each
//!   certificate valid now) to a certificate of `auth.options.rootcertbundle`;
//!   or, without `x5c`, the header's `kid` names (as Docker's libtrust key
//!   ids do) the public key of a certificate in that bundle;
//! * the signature verifies (josekit);
//! * `iss` is the configured issuer, `aud` (a string or an array) contains the
//!   configured service, `exp` is present, and `exp`/`nbf` hold with
//!   [`LEEWAY_SECS`] of leeway;
//! * its `access` claim (`[{type, name, actions}]`) grants every action the
//!   route needs (an action `*` grants every action).
//!
//! With `auth.options.anonymous_read`, routes that only need `pull` (of a Notary GUN or a TUF
//! 1.0 repository) are served without a token (a token that is sent must still verify). The
//! verification is a pure function of the token, the configuration and
//! `now`; [`AuthHook::check`] supplies the system clock.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::http::{header, HeaderMap};
use base64::Engine as _;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, TrustAnchor, UnixTime};
use serde_json::{Map, Value};
use x509_cert::der::{Decode as _, Encode as _};

use crate::config::TokenAuthConfig;
use crate::error::{AccessItem, ApiError};
use crate::http::AuthHook;
use crate::routes::Route;

mod access;
mod keys;

pub use access::{required_access, scope_param, ChallengeError, TUF1_RESOURCE};
pub use keys::{ed25519_pkcs8_v1, libtrust_key_id, verifier_for, KeyKind};

/// Clock skew tolerated on `exp` and `nbf`, in seconds (Docker's leeway).
pub const LEEWAY_SECS: i64 = 60;

/// The JWS algorithms a token may be signed with. `none` and the HMAC
/// algorithms are never accepted.
pub const ALLOWED_ALGORITHMS: &[&str] = &[
    "ES256", "ES384", "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "EdDSA",
];

/// Longest token accepted, in bytes (a three-certificate RSA chain in
/// `x5c` is about 5 KiB).
pub const MAX_TOKEN_LEN: usize = 64 * 1024;

/// Most certificates accepted in an `x5c` header.
pub const MAX_CHAIN_LEN: usize = 8;

/// Why a token was refused; the client only sees `error="invalid_token"`,
/// the node logs this.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TokenError {
    /// Not a compact JWS with a JSON header and payload.
    #[error("malformed token: {reason}")]
    Malformed {
        /// What is wrong.
        reason: String,
    },
    /// Longer than [`MAX_TOKEN_LEN`].
    #[error("token longer than {MAX_TOKEN_LEN} bytes")]
    TooLarge,
    /// The `alg` header is absent, `none`, an HMAC or otherwise not allowed.
    #[error("signature algorithm {alg:?} is not accepted")]
    UnsupportedAlgorithm {
        /// The `alg` header as received.
        alg: String,
    },
    /// The header has neither `x5c` nor `kid`.
    #[error("the token header names no signing key (x5c or kid)")]
    NoSigningKey,
    /// The `kid` header names no certificate of the root bundle.
    #[error("key id {kid:?} names no certificate of the root bundle")]
    UnknownKeyId {
        /// The `kid` header.
        kid: String,
    },
    /// The `x5c` chain does not lead to a root of the bundle.
    #[error("untrusted certificate chain: {reason}")]
    UntrustedChain {
        /// What path building reported.
        reason: String,
    },
    /// The `alg` header does not fit the signing key.
    #[error("algorithm {alg} does not match the signing key ({key})")]
    AlgorithmKeyMismatch {
        /// The `alg` header.
        alg: String,
        /// The key's type.
        key: KeyKind,
    },
    /// The signing key is of a type tokens cannot be signed with.
    #[error("unsupported signing key: {reason}")]
    UnsupportedKey {
        /// What the key is.
        reason: String,
    },
    /// The signature does not verify.
    #[error("bad signature: {reason}")]
    BadSignature {
        /// josekit's message.
        reason: String,
    },
    /// `iss` is not the configured issuer.
    #[error("issuer {found:?} is not the configured issuer")]
    WrongIssuer {
        /// The `iss` claim, if any.
        found: Option<String>,
    },
    /// `aud` does not contain the configured service.
    #[error("audience {found:?} does not contain the configured service")]
    WrongAudience {
        /// The audiences in the token.
        found: Vec<String>,
    },
    /// There is no `exp` claim.
    #[error("the token has no exp claim")]
    MissingExpiry,
    /// `exp` (plus leeway) is past.
    #[error("token expired at {exp} (now {now})")]
    Expired {
        /// The `exp` claim.
        exp: i64,
        /// The time of the check.
        now: i64,
    },
    /// `nbf` (minus leeway) is still ahead.
    #[error("token not valid before {nbf} (now {now})")]
    NotYetValid {
        /// The `nbf` claim.
        nbf: i64,
        /// The time of the check.
        now: i64,
    },
    /// A claim has the wrong shape.
    #[error("claim {claim}: {reason}")]
    BadClaim {
        /// The claim's name.
        claim: &'static str,
        /// What is wrong.
        reason: String,
    },
}

fn malformed(reason: impl Into<String>) -> TokenError {
    TokenError::Malformed { reason: reason.into() }
}

/// Why a [`TokenAuth`] could not be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AuthConfigError {
    /// The root bundle could not be read.
    #[error("auth.options.rootcertbundle {path}: {message}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The IO error.
        message: String,
    },
    /// The root bundle holds no PEM certificate.
    #[error("auth.options.rootcertbundle {path}: no PEM certificate found")]
    NoCertificate {
        /// The file.
        path: PathBuf,
    },
    /// A certificate of the root bundle is unusable.
    #[error("auth.options.rootcertbundle {path}: certificate {index}: {message}")]
    BadCertificate {
        /// The file.
        path: PathBuf,
        /// Position of the certificate in the file, from 0.
        index: usize,
        /// What is wrong.
        message: String,
    },
}

/// One grant of a token's `access` claim.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    /// `type`: `repository` or `registry`.
    pub resource_type: String,
    /// `name`: the GUN, or `catalog`.
    pub name: String,
    /// `actions`: `pull`, `push`, `*`, …
    pub actions: Vec<String>,
}

/// What a verified token says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedToken {
    /// `sub`, if any.
    pub subject: Option<String>,
    /// `exp`.
    pub expires_at: i64,
    /// The `access` claim.
    pub access: Vec<Grant>,
}

impl VerifiedToken {
    /// Whether the token grants `item` (`*` in a grant grants every action).
    pub fn grants(&self, item: &AccessItem) -> bool {
        self.access.iter().any(|g| {
            g.resource_type == item.resource_type
                && g.name == item.name
                && g.actions.iter().any(|a| a == &item.action || a == "*")
        })
    }
}

/// A root-bundle certificate whose key a `kid` header may name, with the
/// certificate's validity: its key signs tokens only while it is valid.
struct TrustedKey {
    kid: String,
    kind: KeyKind,
    spki_der: Vec<u8>,
    not_before: u64,
    not_after: u64,
}

/// A root-bundle certificate's exact bytes and validity.
struct Root {
    der: Vec<u8>,
    not_before: u64,
    not_after: u64,
}

/// The token authenticator: [`AuthHook`] for `auth.type = "token"`.
pub struct TokenAuth {
    realm: String,
    service: String,
    issuer: String,
    anonymous_read: bool,
    anchors: Vec<TrustAnchor<'static>>,
    roots: Vec<Root>,
    trusted_keys: Vec<TrustedKey>,
}

impl std::fmt::Debug for TokenAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenAuth")
            .field("realm", &self.realm)
            .field("service", &self.service)
            .field("issuer", &self.issuer)
            .field("anonymous_read", &self.anonymous_read)
            .field("roots", &self.roots.len())
            .finish()
    }
}

/// Accepts any extended key usage (Go's `x509.ExtKeyUsageAny`, as Docker
/// verifies token chains), but still requires the extension to parse.
struct AnyExtendedKeyUsage;

impl webpki::ExtendedKeyUsageValidator for AnyExtendedKeyUsage {
    fn validate(&self, iter: webpki::KeyPurposeIdIter<'_, '_>) -> Result<(), webpki::Error> {
        for id in iter {
            id?;
        }
        Ok(())
    }
}

fn unix_secs(t: SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        Err(e) => -i64::try_from(e.duration().as_secs()).unwrap_or(i64::MAX),
    }
}

/// A NumericDate claim: an integer or a fraction of seconds.
fn numeric_date(claims: &Map<String, Value>, claim: &'static str) -> Result<Option<i64>, TokenError> {
    match claims.get(claim) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => match n.as_i64() {
            Some(i) => Ok(Some(i)),
            None => n
                .as_f64()
                .filter(|f| f.is_finite())
                .map(|f| Some(f.floor() as i64))
                .ok_or_else(|| TokenError::BadClaim {
                    claim,
                    reason: format!("{n} is not a time"),
                }),
        },
        Some(other) => Err(TokenError::BadClaim {
            claim,
            reason: format!("{other} is not a number"),
        }),
    }
}

fn parse_access(claims: &Map<String, Value>) -> Result<Vec<Grant>, TokenError> {
    let bad = |reason: &str| TokenError::BadClaim {
        claim: "access",
        reason: reason.into(),
    };
    let entries = match claims.get("access") {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::Array(a)) => a,
        Some(_) => return Err(bad("not an array")),
    };
    let mut grants = Vec::with_capacity(entries.len());
    for e in entries {
        let Value::Object(o) = e else {
            return Err(bad("an entry is not an object"));
        };
        let text = |key: &str| match o.get(key) {
            Some(Value::String(s)) => Ok(s.clone()),
            _ => Err(bad(&format!("an entry's {key} is not a string"))),
        };
        let actions = match o.get("actions") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Array(a)) => a
                .iter()
                .map(|v| v.as_str().map(str::to_owned))
                .collect::<Option<Vec<_>>>()
                .ok_or_else(|| bad("an action is not a string"))?,
            Some(_) => return Err(bad("an entry's actions is not an array")),
        };
        grants.push(Grant {
            resource_type: text("type")?,
            name: text("name")?,
            actions,
        });
    }
    Ok(grants)
}

/// The bearer token of `Authorization`, if the header has the form
/// `Bearer <token>` (scheme case-insensitive, one space, as Docker splits it).
pub fn bearer_token(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(header::AUTHORIZATION)?;
    let text = String::from_utf8_lossy(value.as_bytes());
    let parts: Vec<&str> = text.split(' ').collect();
    match parts.as_slice() {
        [scheme, token] if scheme.eq_ignore_ascii_case("bearer") => Some((*token).to_owned()),
        _ => None,
    }
}

impl TokenAuth {
    /// Builds the authenticator from `auth.options`, reading the root bundle.
    pub fn from_config(config: &TokenAuthConfig) -> Result<TokenAuth, AuthConfigError> {
        let pem = std::fs::read(&config.rootcertbundle).map_err(|e| AuthConfigError::Read {
            path: config.rootcertbundle.clone(),
            message: e.to_string(),
        })?;
        Self::new(config, &pem, &config.rootcertbundle)
    }

    /// Builds the authenticator from `auth.options` and the root bundle's
    /// PEM text (`source` names it in errors).
    pub fn new(config: &TokenAuthConfig, root_pem: &[u8], source: &Path) -> Result<TokenAuth, AuthConfigError> {
        let bad = |index: usize, message: String| AuthConfigError::BadCertificate {
            path: source.to_path_buf(),
            index,
            message,
        };
        let mut anchors = Vec::new();
        let mut roots = Vec::new();
        let mut trusted_keys = Vec::new();
        for (index, cert) in CertificateDer::pem_slice_iter(root_pem).enumerate() {
            let cert = cert.map_err(|e| bad(index, format!("PEM: {e}")))?;
            let anchor = webpki::anchor_from_trusted_cert(&cert)
                .map_err(|e| bad(index, format!("not a usable trust anchor: {e}")))?
                .to_owned();
            let parsed = x509_cert::Certificate::from_der(cert.as_ref()).map_err(|e| bad(index, e.to_string()))?;
            let validity = &parsed.tbs_certificate.validity;
            let spki = &parsed.tbs_certificate.subject_public_key_info;
            let spki_der = spki.to_der().map_err(|e| bad(index, e.to_string()))?;
            // A root whose key cannot sign tokens still anchors chains.
            if let Ok(kind) = KeyKind::of_spki(spki) {
                trusted_keys.push(TrustedKey {
                    kid: libtrust_key_id(&spki_der),
                    kind,
                    spki_der,
                    not_before: validity.not_before.to_unix_duration().as_secs(),
                    not_after: validity.not_after.to_unix_duration().as_secs(),
                });
            }
            anchors.push(anchor);
            roots.push(Root {
                der: cert.as_ref().to_vec(),
                not_before: validity.not_before.to_unix_duration().as_secs(),
                not_after: validity.not_after.to_unix_duration().as_secs(),
            });
        }
        if roots.is_empty() {
            return Err(AuthConfigError::NoCertificate {
                path: source.to_path_buf(),
            });
        }
        Ok(TokenAuth {
            realm: config.realm.clone(),
            service: config.service.clone(),
            issuer: config.issuer.clone(),
            anonymous_read: config.anonymous_read,
            anchors,
            roots,
            trusted_keys,
        })
    }

    /// The `WWW-Authenticate` value for `access` and `error`.
    pub fn challenge(&self, access: &[AccessItem], error: ChallengeError) -> String {
        let mut s = format!(
            "Bearer realm={},service={}",
            crate::goquote::quote(&self.realm),
            crate::goquote::quote(&self.service)
        );
        let scope = scope_param(access);
        if !scope.is_empty() {
            s.push_str(",scope=");
            s.push_str(&crate::goquote::quote(&scope));
        }
        match error {
            ChallengeError::TokenRequired => {}
            ChallengeError::InvalidToken => s.push_str(",error=\"invalid_token\""),
            ChallengeError::InsufficientScope => s.push_str(",error=\"insufficient_scope\""),
        }
        s
    }

    fn unauthorized(&self, access: Vec<AccessItem>, error: ChallengeError) -> ApiError {
        let challenge = self.challenge(&access, error);
        ApiError::Unauthorized {
            access,
            challenge: Some(challenge),
        }
    }

    /// Allows or refuses a request for `route` with `headers` at `now`.
    pub fn authorize(&self, route: &Route, headers: &HeaderMap, now: SystemTime) -> Result<(), ApiError> {
        let needed = required_access(route);
        if needed.is_empty() {
            return Ok(());
        }
        let anonymous = self.anonymous_read
            && needed
                .iter()
                .all(|a| (a.resource_type == "repository" || a.resource_type == TUF1_RESOURCE) && a.action == "pull");
        let Some(token) = bearer_token(headers) else {
            if anonymous {
                return Ok(());
            }
            return Err(self.unauthorized(needed, ChallengeError::TokenRequired));
        };
        let verified = match self.verify(&token, now) {
            Ok(v) => v,
            Err(e) => {
                tracing::debug!(route = route.operation(), error = %e, "token refused");
                return Err(self.unauthorized(needed, ChallengeError::InvalidToken));
            }
        };
        if anonymous || needed.iter().all(|a| verified.grants(a)) {
            Ok(())
        } else {
            tracing::debug!(
                route = route.operation(),
                subject = verified.subject.as_deref().unwrap_or(""),
                scope = %scope_param(&needed),
                "token lacks the access the route needs"
            );
            Err(self.unauthorized(needed, ChallengeError::InsufficientScope))
        }
    }

    /// Verifies `token` at `now`: signature, chain, issuer, audience,
    /// validity; returns its claims.
    pub fn verify(&self, token: &str, now: SystemTime) -> Result<VerifiedToken, TokenError> {
        if token.len() > MAX_TOKEN_LEN {
            return Err(TokenError::TooLarge);
        }
        let now_secs = unix_secs(now);
        let header_b64 = token.split('.').next().unwrap_or("");
        if token.split('.').count() != 3 {
            return Err(malformed("not three dot-separated parts"));
        }
        let header_json = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(header_b64)
            .map_err(|e| malformed(format!("header: {e}")))?;
        let header: Map<String, Value> =
            serde_json::from_slice(&header_json).map_err(|e| malformed(format!("header: {e}")))?;
        let alg = match header.get("alg") {
            Some(Value::String(a)) => a.clone(),
            Some(other) => return Err(TokenError::UnsupportedAlgorithm { alg: other.to_string() }),
            None => return Err(TokenError::UnsupportedAlgorithm { alg: String::new() }),
        };
        if !ALLOWED_ALGORITHMS.contains(&alg.as_str()) {
            return Err(TokenError::UnsupportedAlgorithm { alg });
        }

        let (kind, spki_der) = match (header.get("x5c"), header.get("kid")) {
            (Some(x5c), _) => self.verify_chain(x5c, now)?,
            (None, Some(Value::String(kid))) => {
                let key = self
                    .trusted_keys
                    .iter()
                    .find(|k| &k.kid == kid)
                    .ok_or_else(|| TokenError::UnknownKeyId { kid: kid.clone() })?;
                let at = now.duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_secs());
                if at < key.not_before || at > key.not_after {
                    return Err(TokenError::UntrustedChain {
                        reason: format!("the certificate key id {kid:?} names is not valid now"),
                    });
                }
                (key.kind, key.spki_der.clone())
            }
            _ => return Err(TokenError::NoSigningKey),
        };
        if !kind.allows(&alg) {
            return Err(TokenError::AlgorithmKeyMismatch { alg, key: kind });
        }
        let verifier = verifier_for(&alg, &spki_der)?;
        let (payload, _) = josekit::jwt::decode_with_verifier(token, verifier.as_ref())
            .map_err(|e| TokenError::BadSignature { reason: e.to_string() })?;
        let claims = payload.claims_set();

        let issuer = claims.get("iss").and_then(Value::as_str);
        if issuer != Some(self.issuer.as_str()) {
            return Err(TokenError::WrongIssuer {
                found: issuer.map(str::to_owned),
            });
        }
        let audiences: Vec<String> = match claims.get("aud") {
            Some(Value::String(s)) => vec![s.clone()],
            Some(Value::Array(a)) => a.iter().filter_map(|v| v.as_str().map(str::to_owned)).collect(),
            _ => Vec::new(),
        };
        if !audiences.iter().any(|a| a == &self.service) {
            return Err(TokenError::WrongAudience { found: audiences });
        }
        let exp = numeric_date(claims, "exp")?.ok_or(TokenError::MissingExpiry)?;
        if now_secs > exp.saturating_add(LEEWAY_SECS) {
            return Err(TokenError::Expired { exp, now: now_secs });
        }
        if let Some(nbf) = numeric_date(claims, "nbf")? {
            if now_secs < nbf.saturating_sub(LEEWAY_SECS) {
                return Err(TokenError::NotYetValid { nbf, now: now_secs });
            }
        }
        Ok(VerifiedToken {
            subject: claims.get("sub").and_then(Value::as_str).map(str::to_owned),
            expires_at: exp,
            access: parse_access(claims)?,
        })
    }

    /// Verifies an `x5c` header up to a root; returns the leaf's key.
    fn verify_chain(&self, x5c: &Value, now: SystemTime) -> Result<(KeyKind, Vec<u8>), TokenError> {
        let untrusted = |reason: String| TokenError::UntrustedChain { reason };
        let Value::Array(entries) = x5c else {
            return Err(malformed("x5c is not an array"));
        };
        if entries.is_empty() || entries.len() > MAX_CHAIN_LEN {
            return Err(malformed(format!(
                "x5c holds {} certificates (1 to {MAX_CHAIN_LEN} accepted)",
                entries.len()
            )));
        }
        let mut ders = Vec::with_capacity(entries.len());
        for (i, e) in entries.iter().enumerate() {
            let b64 = e
                .as_str()
                .ok_or_else(|| malformed(format!("x5c[{i}] is not a string")))?;
            let der = base64::engine::general_purpose::STANDARD
                .decode(b64)
                .map_err(|err| malformed(format!("x5c[{i}]: {err}")))?;
            ders.push(CertificateDer::from(der));
        }
        let leaf_der = &ders[0];
        let leaf = x509_cert::Certificate::from_der(leaf_der.as_ref())
            .map_err(|e| untrusted(format!("leaf certificate: {e}")))?;
        let now_secs = u64::try_from(unix_secs(now)).unwrap_or(0);
        if let Some(root) = self.roots.iter().find(|r| r.der == leaf_der.as_ref()) {
            // The signing certificate is itself in the bundle: trusted as is,
            // when valid now (Go's verifier accepts such a one-certificate chain).
            if now_secs < root.not_before || now_secs > root.not_after {
                return Err(untrusted("the signing certificate (a root) is not valid now".into()));
            }
        } else {
            let end_entity =
                webpki::EndEntityCert::try_from(leaf_der).map_err(|e| untrusted(format!("leaf certificate: {e}")))?;
            end_entity
                .verify_for_usage(
                    webpki::ALL_VERIFICATION_ALGS,
                    &self.anchors,
                    &ders[1..],
                    UnixTime::since_unix_epoch(Duration::from_secs(now_secs)),
                    AnyExtendedKeyUsage,
                    None,
                    None,
                )
                .map_err(|e| untrusted(e.to_string()))?;
        }
        let spki = &leaf.tbs_certificate.subject_public_key_info;
        let kind = KeyKind::of_spki(spki)?;
        let spki_der = spki.to_der().map_err(|e| untrusted(format!("leaf key: {e}")))?;
        Ok((kind, spki_der))
    }
}

impl AuthHook for TokenAuth {
    fn check(&self, route: &Route, headers: &HeaderMap) -> Result<(), ApiError> {
        self.authorize(route, headers, SystemTime::now())
    }
}

#[cfg(test)]
mod tests;
