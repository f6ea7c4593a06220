//! A small token issuer for DEVELOPMENT AND TESTS (`seal-token-server`):
//! the other half of Docker registry v2 token authentication, so that a
//! node with `auth.type = "token"` can be run and tested without an
//! external identity service. It is not meant for production: users and
//! their access live in one JSON file, there is no rate limiting, no
//! account lockout, no audit trail and no refresh tokens.
//!
//! `GET /auth/token?service=<service>&scope=repository:<gun>:push,pull&scope=…`
//! with HTTP basic credentials (or none, for the `anonymous` rules) answers
//! `{"token": …, "access_token": …, "expires_in": …, "issued_at": …}`. The
//! token grants the intersection of the requested scopes and the access the
//! user's rules allow (asking for more is not an error, as the
//! specification requires); it is an ES256, ES384, RS256 or EdDSA JWT
//! (after the key's type) with the configured certificate chain in `x5c`.
//! Passwords are stored as argon2 PHC strings (`seal-token-server
//! hash-password` makes one). See `docs/auth.md`.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use base64::Engine as _;
use josekit::jws::{JwsHeader, JwsSigner};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use tokio::net::TcpListener;
use x509_cert::der::{Decode as _, Encode as _};

use crate::auth::{ed25519_pkcs8_v1, verifier_for, KeyKind};
use crate::config::{resolve, ListenAddr};

/// The path tokens are served on.
pub const TOKEN_PATH: &str = "/auth/token";
/// Default listen address.
pub const DEFAULT_ADDR: &str = "127.0.0.1:4447";
/// Default token lifetime, in seconds.
pub const DEFAULT_LIFETIME_SECS: u64 = 300;
/// The basic-auth realm of the token server's own 401 answers.
pub const BASIC_REALM: &str = "Seal development token server";

/// A token server problem, naming the file, key or request at fault.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TokenServerError {
    /// A file could not be read.
    #[error("cannot read {path}: {message}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The IO error.
        message: String,
    },
    /// The config file is not valid JSON of the expected shape.
    #[error("config file {path}: {message}")]
    Syntax {
        /// The file.
        path: PathBuf,
        /// The parser's message.
        message: String,
    },
    /// A config value is not acceptable.
    #[error("config key {key}: {message}")]
    Invalid {
        /// The key path, for example `users.alice.password_hash`.
        key: String,
        /// What is wrong.
        message: String,
    },
    /// The signing key or certificate chain is unusable.
    #[error("signing key: {0}")]
    Key(String),
    /// A password could not be hashed.
    #[error("password hashing: {0}")]
    Hash(String),
    /// The listening socket could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: String,
        /// Why.
        source: std::io::Error,
    },
}

fn invalid(key: impl Into<String>, message: impl Into<String>) -> TokenServerError {
    TokenServerError::Invalid {
        key: key.into(),
        message: message.into(),
    }
}

/// One access rule: resources of `resource_type` whose name matches
/// `name` (where `*` matches any run of characters, `/` included) may be
/// given `actions` (`*` meaning every action).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccessRule {
    /// `repository` (the default) or `registry`.
    #[serde(rename = "type", default = "default_resource_type")]
    pub resource_type: String,
    /// A GUN pattern such as `example.com/alice/*`, or `catalog`.
    pub name: String,
    /// `pull`, `push`, `*`, …
    pub actions: Vec<String>,
}

fn default_resource_type() -> String {
    "repository".into()
}

/// A user of the users file.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct User {
    /// The argon2 PHC string of the password.
    pub password_hash: String,
    /// What the user may be granted.
    #[serde(default)]
    pub access: Vec<AccessRule>,
}

#[derive(Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
struct RawServer {
    http_addr: Option<String>,
    tls_cert_file: Option<String>,
    tls_key_file: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    server: RawServer,
    issuer: String,
    service: String,
    signing_key: String,
    certificate_chain: String,
    token_lifetime_secs: Option<u64>,
    #[serde(default)]
    users: BTreeMap<String, User>,
    #[serde(default)]
    anonymous: Vec<AccessRule>,
    logging: Option<RawLogging>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLogging {
    level: Option<String>,
}

/// The token server's checked configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenServerConfig {
    /// `server.http_addr` (default 127.0.0.1:4447).
    pub http_addr: SocketAddr,
    /// `server.tls_cert_file` and `server.tls_key_file`; `None` is plain HTTP.
    pub tls: Option<(PathBuf, PathBuf)>,
    /// `issuer`: the tokens' `iss` (the node's `auth.options.issuer`).
    pub issuer: String,
    /// `service`: the tokens' `aud` (the node's `auth.options.service`).
    pub service: String,
    /// `signing_key`: PEM private key (PKCS#8, or SEC1/PKCS#1).
    pub signing_key: PathBuf,
    /// `certificate_chain`: PEM certificates, the key's certificate first,
    /// then intermediates; sent in `x5c`.
    pub certificate_chain: PathBuf,
    /// `token_lifetime_secs` (default 300).
    pub token_lifetime_secs: u64,
    /// `users`: name → password hash and rules.
    pub users: BTreeMap<String, User>,
    /// `anonymous`: rules for requests without credentials (default none).
    pub anonymous: Vec<AccessRule>,
    /// `logging.level` (default `info`).
    pub log_level: String,
}

fn check_rules(key: &str, rules: &[AccessRule]) -> Result<(), TokenServerError> {
    for (i, r) in rules.iter().enumerate() {
        let key = format!("{key}[{i}]");
        if r.name.is_empty() {
            return Err(invalid(format!("{key}.name"), "must not be empty"));
        }
        if r.resource_type.is_empty() || r.resource_type.contains(':') {
            return Err(invalid(format!("{key}.type"), "must be a word such as repository"));
        }
        if r.actions.is_empty() {
            return Err(invalid(format!("{key}.actions"), "must list at least one action"));
        }
        for a in &r.actions {
            if a.is_empty() || a.contains([',', ':', ' ']) {
                return Err(invalid(format!("{key}.actions"), format!("{a:?} is not an action")));
            }
        }
    }
    Ok(())
}

impl TokenServerConfig {
    /// Reads and checks the JSON config at `path` (relative paths resolve
    /// against its directory).
    pub fn load(path: &Path) -> Result<TokenServerConfig, TokenServerError> {
        let text = std::fs::read_to_string(path).map_err(|e| TokenServerError::Read {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        let base = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        Self::from_json(&text, &base).map_err(|e| match e {
            TokenServerError::Syntax { message, .. } => TokenServerError::Syntax {
                path: path.to_path_buf(),
                message,
            },
            other => other,
        })
    }

    /// Parses and checks JSON text, resolving paths against `base`.
    pub fn from_json(text: &str, base: &Path) -> Result<TokenServerConfig, TokenServerError> {
        let raw: RawConfig = serde_json::from_str(text).map_err(|e| TokenServerError::Syntax {
            path: PathBuf::from("<config>"),
            message: e.to_string(),
        })?;
        let addr_text = raw.server.http_addr.unwrap_or_else(|| DEFAULT_ADDR.into());
        let http_addr = ListenAddr::parse(addr_text.trim())
            .and_then(|a| a.socket_addr())
            .ok_or_else(|| invalid("server.http_addr", format!("{addr_text:?} is not ip:port")))?;
        let non_empty = |v: Option<String>| v.filter(|s| !s.trim().is_empty());
        let tls = match (non_empty(raw.server.tls_cert_file), non_empty(raw.server.tls_key_file)) {
            (Some(c), Some(k)) => Some((resolve(base, &c), resolve(base, &k))),
            (None, None) => None,
            _ => {
                return Err(invalid(
                    "server.tls_cert_file",
                    "tls_cert_file and tls_key_file go together",
                ))
            }
        };
        if raw.issuer.trim().is_empty() {
            return Err(invalid("issuer", "must not be empty"));
        }
        if raw.service.trim().is_empty() {
            return Err(invalid("service", "must not be empty"));
        }
        let token_lifetime_secs = raw.token_lifetime_secs.unwrap_or(DEFAULT_LIFETIME_SECS);
        if token_lifetime_secs == 0 {
            return Err(invalid("token_lifetime_secs", "must be positive"));
        }
        for (name, user) in &raw.users {
            if name.is_empty() || name.contains(':') {
                return Err(invalid(
                    format!("users.{name}"),
                    "a user name is non-empty, without ':'",
                ));
            }
            let hash = PasswordHash::new(&user.password_hash).map_err(|e| {
                invalid(
                    format!("users.{name}.password_hash"),
                    format!("not a PHC string ({e}); make one with `seal-token-server hash-password`"),
                )
            })?;
            if !hash.algorithm.as_str().starts_with("argon2") {
                return Err(invalid(
                    format!("users.{name}.password_hash"),
                    format!("algorithm {} is not argon2", hash.algorithm),
                ));
            }
            check_rules(&format!("users.{name}.access"), &user.access)?;
        }
        check_rules("anonymous", &raw.anonymous)?;
        let log_level = raw
            .logging
            .and_then(|l| l.level)
            .unwrap_or_else(|| "info".into())
            .to_ascii_lowercase();
        Ok(TokenServerConfig {
            http_addr,
            tls,
            issuer: raw.issuer,
            service: raw.service,
            signing_key: resolve(base, &raw.signing_key),
            certificate_chain: resolve(base, &raw.certificate_chain),
            token_lifetime_secs,
            users: raw.users,
            anonymous: raw.anonymous,
            log_level,
        })
    }
}

/// Hashes `password` with argon2id (default parameters, random salt) as a
/// PHC string for the users file.
pub fn hash_password(password: &str) -> Result<String, TokenServerError> {
    let salt = SaltString::generate(&mut rand::rngs::OsRng);
    argon2::Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| TokenServerError::Hash(e.to_string()))
}

/// Whether `password` matches the PHC string `hash`.
pub fn verify_password(hash: &str, password: &str) -> bool {
    match PasswordHash::new(hash) {
        Ok(parsed) => argon2::Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok(),
        Err(_) => false,
    }
}

/// Whether `name` matches `pattern`, where `*` matches any run of
/// characters (`/` included) and every other character itself.
pub fn glob_match(pattern: &str, name: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let n: Vec<char> = name.chars().collect();
    let (mut pi, mut ni) = (0usize, 0usize);
    let mut backtrack: Option<(usize, usize)> = None;
    while ni < n.len() {
        if pi < p.len() && p[pi] == '*' {
            backtrack = Some((pi, ni));
            pi += 1;
        } else if pi < p.len() && p[pi] == n[ni] {
            pi += 1;
            ni += 1;
        } else if let Some((star, matched)) = backtrack {
            pi = star + 1;
            ni = matched + 1;
            backtrack = Some((star, matched + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|c| *c == '*')
}

/// One requested scope: `type:name:action,action`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scope {
    /// The resource type (`repository`, `registry`, …).
    pub resource_type: String,
    /// The resource name (a GUN may contain `:`, as in `host:5000/x`).
    pub name: String,
    /// The actions.
    pub actions: Vec<String>,
}

impl Scope {
    /// Parses `type:name:actions` (the type is before the first `:`, the
    /// actions after the last).
    pub fn parse(s: &str) -> Option<Scope> {
        let (resource_type, rest) = s.split_once(':')?;
        let (name, actions) = rest.rsplit_once(':')?;
        if resource_type.is_empty() || name.is_empty() {
            return None;
        }
        let actions: Vec<String> = actions
            .split(',')
            .filter(|a| !a.is_empty())
            .map(str::to_owned)
            .collect();
        Some(Scope {
            resource_type: resource_type.into(),
            name: name.into(),
            actions,
        })
    }
}

/// The access to grant: for each requested scope, the requested actions
/// the rules allow (all of them when a matching rule allows `*`); scopes
/// granting nothing are left out, repeated resources merged.
pub fn grant(rules: &[AccessRule], requested: &[Scope]) -> Vec<Scope> {
    let mut out: Vec<Scope> = Vec::new();
    for req in requested {
        let allowed: Vec<&str> = rules
            .iter()
            .filter(|r| r.resource_type == req.resource_type && glob_match(&r.name, &req.name))
            .flat_map(|r| r.actions.iter().map(String::as_str))
            .collect();
        let all = allowed.contains(&"*");
        let granted: Vec<String> = req
            .actions
            .iter()
            .filter(|a| all || allowed.contains(&a.as_str()))
            .cloned()
            .collect();
        if granted.is_empty() {
            continue;
        }
        match out
            .iter_mut()
            .find(|s| s.resource_type == req.resource_type && s.name == req.name)
        {
            Some(existing) => {
                for a in granted {
                    if !existing.actions.contains(&a) {
                        existing.actions.push(a);
                    }
                }
            }
            None => out.push(Scope {
                resource_type: req.resource_type.clone(),
                name: req.name.clone(),
                actions: granted,
            }),
        }
    }
    out
}

/// Signs JWTs with a private key whose certificate chain goes in `x5c`.
pub struct TokenSigner {
    algorithm: &'static str,
    signer: Box<dyn JwsSigner>,
    chain: Vec<Vec<u8>>,
}

impl std::fmt::Debug for TokenSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenSigner")
            .field("algorithm", &self.algorithm)
            .field("chain", &self.chain.len())
            .finish()
    }
}

impl TokenSigner {
    /// Loads the key and the chain from PEM files.
    pub fn load(key_file: &Path, chain_file: &Path) -> Result<TokenSigner, TokenServerError> {
        let read = |p: &Path| {
            std::fs::read(p).map_err(|e| TokenServerError::Read {
                path: p.to_path_buf(),
                message: e.to_string(),
            })
        };
        let key = zeroize::Zeroizing::new(read(key_file)?);
        Self::from_pem(&key, &read(chain_file)?)
    }

    /// Builds a signer from a PEM private key and a PEM chain (the key's
    /// certificate first); checks that they belong together.
    pub fn from_pem(key_pem: &[u8], chain_pem: &[u8]) -> Result<TokenSigner, TokenServerError> {
        let key_err = |m: String| TokenServerError::Key(m);
        let chain: Vec<Vec<u8>> = CertificateDer::pem_slice_iter(chain_pem)
            .map(|c| c.map(|c| c.as_ref().to_vec()))
            .collect::<Result<_, _>>()
            .map_err(|e| key_err(format!("certificate chain: {e}")))?;
        let leaf = chain
            .first()
            .ok_or_else(|| key_err("the certificate chain holds no PEM certificate".into()))?;
        let cert = x509_cert::Certificate::from_der(leaf).map_err(|e| key_err(format!("signing certificate: {e}")))?;
        let spki = &cert.tbs_certificate.subject_public_key_info;
        let kind = KeyKind::of_spki(spki).map_err(|e| key_err(e.to_string()))?;
        let algorithm = kind.signing_algorithm();
        let signer: Box<dyn JwsSigner> = {
            use josekit::jws::{EdDSA, ES256, ES384, RS256};
            let r: Result<Box<dyn JwsSigner>, josekit::JoseError> = match kind {
                KeyKind::EcdsaP256 => ES256.signer_from_pem(key_pem).map(|s| Box::new(s) as _),
                KeyKind::EcdsaP384 => ES384.signer_from_pem(key_pem).map(|s| Box::new(s) as _),
                KeyKind::Rsa => RS256.signer_from_pem(key_pem).map(|s| Box::new(s) as _),
                KeyKind::Ed25519 => match ed25519_pkcs8_v1(key_pem) {
                    // josekit reads only version-1 PKCS#8 (ring and rcgen write version 2).
                    Some(der) => EdDSA.signer_from_der(&*der).map(|s| Box::new(s) as _),
                    None => EdDSA.signer_from_pem(key_pem).map(|s| Box::new(s) as _),
                },
            };
            r.map_err(|e| key_err(format!("private key is not a {kind} key: {e}")))?
        };
        // The key must be the certificate's: sign and verify once.
        let spki_der = spki.to_der().map_err(|e| key_err(e.to_string()))?;
        let probe = b"seal token signer self-check";
        let sig = signer.sign(probe).map_err(|e| key_err(e.to_string()))?;
        verifier_for(algorithm, &spki_der)
            .map_err(|e| key_err(e.to_string()))?
            .verify(probe, &sig)
            .map_err(|_| key_err("the private key does not match the first certificate of the chain".into()))?;
        Ok(TokenSigner {
            algorithm,
            signer,
            chain,
        })
    }

    /// The JWS algorithm tokens are signed with.
    pub fn algorithm(&self) -> &'static str {
        self.algorithm
    }

    /// A compact JWT with `claims` as payload and `x5c` in the header.
    pub fn sign(&self, claims: &Map<String, Value>) -> Result<String, TokenServerError> {
        let mut header = JwsHeader::new();
        header.set_token_type("JWT");
        header.set_x509_certificate_chain(&self.chain);
        let payload = josekit::jwt::JwtPayload::from_map(claims.clone())
            .map_err(|e| TokenServerError::Key(format!("claims: {e}")))?;
        josekit::jwt::encode_with_signer(&payload, &header, self.signer.as_ref())
            .map_err(|e| TokenServerError::Key(format!("signing: {e}")))
    }
}

/// Who asks for a token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    /// No credentials: the `anonymous` rules apply.
    Anonymous,
    /// An authenticated user.
    User(String),
}

/// Why a token request was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum IssueError {
    /// Unknown user, wrong password, or an unreadable `Authorization`.
    #[error("invalid username or password")]
    BadCredentials,
    /// `service` names another service.
    #[error("this token server issues tokens for service {expected:?}, not {requested:?}")]
    UnknownService {
        /// The configured service.
        expected: String,
        /// The requested one.
        requested: String,
    },
    /// A `scope` parameter is not `type:name:actions`.
    #[error("malformed scope {0:?}")]
    BadScope(String),
    /// The token could not be signed.
    #[error("cannot sign the token: {0}")]
    Signing(String),
}

impl IssueError {
    fn status(&self) -> StatusCode {
        match self {
            IssueError::BadCredentials => StatusCode::UNAUTHORIZED,
            IssueError::UnknownService { .. } | IssueError::BadScope(_) => StatusCode::BAD_REQUEST,
            IssueError::Signing(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn code(&self) -> &'static str {
        match self {
            IssueError::BadCredentials => "UNAUTHORIZED",
            IssueError::UnknownService { .. } | IssueError::BadScope(_) => "INVALID_REQUEST",
            IssueError::Signing(_) => "UNKNOWN",
        }
    }
}

impl IntoResponse for IssueError {
    fn into_response(self) -> Response {
        let body = json!({"errors": [{"code": self.code(), "message": self.to_string()}]}).to_string();
        let mut response = (self.status(), body).into_response();
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
        if matches!(self, IssueError::BadCredentials) {
            if let Ok(v) = HeaderValue::from_str(&format!("Basic realm=\"{BASIC_REALM}\"")) {
                headers.insert(header::WWW_AUTHENTICATE, v);
            }
        }
        response
    }
}

/// The token endpoint's answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenResponse {
    /// The JWT.
    pub token: String,
    /// The same JWT (OAuth2 clients read this one).
    pub access_token: String,
    /// Lifetime in seconds.
    pub expires_in: u64,
    /// When it was issued, RFC 3339.
    pub issued_at: String,
}

/// The issuer: config, signer, and the checks of a request.
pub struct TokenIssuer {
    config: TokenServerConfig,
    signer: TokenSigner,
    /// Verified against for unknown users, so that their answer takes as
    /// long as a wrong password's.
    dummy_hash: String,
}

impl TokenIssuer {
    /// Builds the issuer, loading the signing key and chain.
    pub fn new(config: TokenServerConfig) -> Result<TokenIssuer, TokenServerError> {
        let signer = TokenSigner::load(&config.signing_key, &config.certificate_chain)?;
        Ok(TokenIssuer {
            config,
            signer,
            dummy_hash: hash_password("seal-token-server-no-such-user")?,
        })
    }

    /// The configuration.
    pub fn config(&self) -> &TokenServerConfig {
        &self.config
    }

    /// Checks credentials (`None`: anonymous). Runs argon2: call it off the
    /// async executor.
    pub fn authenticate(&self, credentials: Option<(&str, &str)>) -> Result<Principal, IssueError> {
        let Some((user, password)) = credentials else {
            return Ok(Principal::Anonymous);
        };
        match self.config.users.get(user) {
            Some(u) if verify_password(&u.password_hash, password) => Ok(Principal::User(user.to_owned())),
            Some(_) => Err(IssueError::BadCredentials),
            None => {
                let _ = verify_password(&self.dummy_hash, password);
                Err(IssueError::BadCredentials)
            }
        }
    }

    /// Issues a token for `principal` asking for `scopes` of `service` at `now`.
    pub fn issue(
        &self,
        principal: &Principal,
        service: Option<&str>,
        scopes: &[String],
        now: SystemTime,
    ) -> Result<TokenResponse, IssueError> {
        if let Some(requested) = service.filter(|s| *s != self.config.service) {
            return Err(IssueError::UnknownService {
                expected: self.config.service.clone(),
                requested: requested.to_owned(),
            });
        }
        let mut requested = Vec::new();
        for param in scopes {
            for s in param.split(' ').filter(|s| !s.is_empty()) {
                requested.push(Scope::parse(s).ok_or_else(|| IssueError::BadScope(s.to_owned()))?);
            }
        }
        let (subject, rules) = match principal {
            Principal::Anonymous => ("", &self.config.anonymous),
            Principal::User(name) => (
                name.as_str(),
                self.config
                    .users
                    .get(name)
                    .map(|u| &u.access)
                    .ok_or(IssueError::BadCredentials)?,
            ),
        };
        let granted = grant(rules, &requested);
        let now_secs = i64::try_from(now.duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)).unwrap_or(0);
        let lifetime = i64::try_from(self.config.token_lifetime_secs).unwrap_or(i64::MAX);
        let mut jti = [0u8; 16];
        rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut jti);
        let access: Vec<Value> = granted
            .iter()
            .map(|s| json!({"type": s.resource_type, "name": s.name, "actions": s.actions}))
            .collect();
        let claims = json!({
            "iss": self.config.issuer,
            "sub": subject,
            "aud": self.config.service,
            "exp": now_secs.saturating_add(lifetime),
            "nbf": now_secs,
            "iat": now_secs,
            "jti": hex::encode(jti),
            "access": access,
        });
        let Value::Object(claims) = claims else {
            return Err(IssueError::Signing("claims are not an object".into()));
        };
        let token = self
            .signer
            .sign(&claims)
            .map_err(|e| IssueError::Signing(e.to_string()))?;
        let issued_at = time::OffsetDateTime::from_unix_timestamp(now_secs)
            .ok()
            .and_then(|t| t.format(&time::format_description::well_known::Rfc3339).ok())
            .unwrap_or_default();
        tracing::info!(
            subject,
            granted = %granted
                .iter()
                .map(|s| format!("{}:{}:{}", s.resource_type, s.name, s.actions.join(",")))
                .collect::<Vec<_>>()
                .join(" "),
            "issued a token"
        );
        Ok(TokenResponse {
            access_token: token.clone(),
            token,
            expires_in: self.config.token_lifetime_secs,
            issued_at,
        })
    }
}

/// The user and password of a `Basic` `Authorization` header; `Ok(None)`
/// without the header, `Err` when it is present but unreadable.
pub fn basic_credentials(headers: &HeaderMap) -> Result<Option<(String, String)>, IssueError> {
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return Ok(None);
    };
    let text = value.to_str().map_err(|_| IssueError::BadCredentials)?;
    let (scheme, encoded) = text.trim().split_once(' ').ok_or(IssueError::BadCredentials)?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return Err(IssueError::BadCredentials);
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .map_err(|_| IssueError::BadCredentials)?;
    let decoded = String::from_utf8(decoded).map_err(|_| IssueError::BadCredentials)?;
    let (user, password) = decoded.split_once(':').ok_or(IssueError::BadCredentials)?;
    Ok(Some((user.to_owned(), password.to_owned())))
}

async fn token_handler(
    State(issuer): State<Arc<TokenIssuer>>,
    Query(params): Query<Vec<(String, String)>>,
    headers: HeaderMap,
) -> Response {
    let credentials = match basic_credentials(&headers) {
        Ok(c) => c,
        Err(e) => return e.into_response(),
    };
    let service = params.iter().find(|(k, _)| k == "service").map(|(_, v)| v.clone());
    let scopes: Vec<String> = params
        .iter()
        .filter(|(k, _)| k == "scope")
        .map(|(_, v)| v.clone())
        .collect();
    let checker = issuer.clone();
    let principal = tokio::task::spawn_blocking(move || {
        checker.authenticate(credentials.as_ref().map(|(u, p)| (u.as_str(), p.as_str())))
    })
    .await
    .unwrap_or(Err(IssueError::Signing("credential check failed".into())));
    let principal = match principal {
        Ok(p) => p,
        Err(e) => {
            tracing::info!(error = %e, "token request refused");
            return e.into_response();
        }
    };
    match issuer.issue(&principal, service.as_deref(), &scopes, SystemTime::now()) {
        Ok(t) => {
            let mut response = (StatusCode::OK, serde_json::to_string(&t).unwrap_or_default()).into_response();
            response
                .headers_mut()
                .insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
            response
        }
        Err(e) => {
            tracing::info!(error = %e, "token request refused");
            e.into_response()
        }
    }
}

/// The token server's HTTP app.
pub fn router(issuer: Arc<TokenIssuer>) -> Router {
    Router::new().route(TOKEN_PATH, get(token_handler)).with_state(issuer)
}

/// A running token server.
pub struct RunningTokenServer {
    /// The address it listens on.
    pub addr: SocketAddr,
    /// `https` or `http`.
    pub scheme: &'static str,
    server: tokio::task::JoinHandle<()>,
}

impl RunningTokenServer {
    /// The token endpoint's URL (the node's `auth.options.realm`).
    pub fn realm(&self) -> String {
        format!("{}://{}{TOKEN_PATH}", self.scheme, self.addr)
    }

    /// Serves until SIGINT or SIGTERM.
    pub async fn wait_for_signal(self) -> std::io::Result<()> {
        seal_signer::server::shutdown_signal().await?;
        self.server.abort();
        Ok(())
    }
}

/// Loads the key, binds and serves.
pub async fn start(config: TokenServerConfig) -> Result<RunningTokenServer, TokenServerError> {
    let tls = config.tls.clone();
    let addr = config.http_addr;
    let issuer = Arc::new(TokenIssuer::new(config)?);
    let listener = TcpListener::bind(addr).await.map_err(|source| TokenServerError::Bind {
        addr: addr.to_string(),
        source,
    })?;
    let local = listener.local_addr().map_err(|source| TokenServerError::Bind {
        addr: addr.to_string(),
        source,
    })?;
    let app = router(issuer.clone());
    tracing::warn!("seal-token-server is a development tool: do not use it in production");
    let (acceptor, scheme) = match tls {
        None => {
            tracing::warn!("plain HTTP: passwords cross the network in clear (set server.tls_cert_file)");
            (None, "http")
        }
        Some((cert, key)) => {
            let acceptor = crate::tls::acceptor(&cert, &key, None).map_err(|e| TokenServerError::Key(e.to_string()))?;
            (Some(acceptor), "https")
        }
    };
    let metrics = crate::listen::ListenerMetrics::unregistered();
    let server = tokio::spawn(crate::listen::serve(
        listener,
        acceptor,
        app,
        crate::listen::ConnectionLimits::default(),
        metrics,
    ));
    tracing::info!(
        addr = %local,
        algorithm = issuer.signer.algorithm(),
        users = issuer.config.users.len(),
        "token server listening"
    );
    Ok(RunningTokenServer {
        addr: local,
        scheme,
        server,
    })
}

#[cfg(test)]
mod tests;
