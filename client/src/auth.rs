//! Docker registry token authentication, client side, as Notary's client
//! does it: a request answered 401 with `WWW-Authenticate: Bearer
//! realm=…,service=…,scope=…` is retried with a token from the realm.
//!
//! * Read-only requests first ask the realm anonymously; credentials are
//!   used when the realm wants them, when the server refuses the anonymous
//!   token (a private collection: `insufficient_scope`), and always for
//!   push, delete and key rotation scopes. This is what Notary's CLI does
//!   for reads: an anonymous round, then one with the credentials.
//! * Credentials come from `SEAL_AUTH`, then Notary's `NOTARY_AUTH`
//!   (base64 of `user:password`), else a prompt on the terminal.
//! * Tokens are cached per scope until they expire.
//! * Credentials are never sent over plain HTTP, except to a loopback realm.

use std::collections::HashMap;
use std::io::{BufRead as _, IsTerminal as _, Write as _};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine as _;
use zeroize::Zeroizing;

use crate::error::ClientError;

/// A `Bearer` challenge.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Challenge {
    /// The token service URL.
    pub realm: String,
    /// The service the token is for.
    pub service: Option<String>,
    /// The scope wanted, e.g. `repository:example.com/app:push,pull`.
    pub scope: Option<String>,
    /// `invalid_token`, `insufficient_scope`, when the server said.
    pub error: Option<String>,
}

impl Challenge {
    /// Parses a `WWW-Authenticate` value; `None` unless it is a `Bearer`
    /// challenge with a realm.
    pub fn parse(header: &str) -> Option<Challenge> {
        let (scheme, rest) = header.trim().split_once(char::is_whitespace)?;
        if !scheme.eq_ignore_ascii_case("bearer") {
            return None;
        }
        let mut c = Challenge::default();
        let mut s = rest.trim();
        while !s.is_empty() {
            let (name, after) = s.split_once('=')?;
            let name = name.trim().to_ascii_lowercase();
            let after = after.trim_start();
            let (value, tail) = if let Some(quoted) = after.strip_prefix('"') {
                let mut value = String::new();
                let mut chars = quoted.char_indices();
                let mut end = None;
                while let Some((i, ch)) = chars.next() {
                    match ch {
                        '\\' => value.extend(chars.next().map(|(_, c)| c)),
                        '"' => {
                            end = Some(i + 1);
                            break;
                        }
                        other => value.push(other),
                    }
                }
                (value, &quoted[end?..])
            } else {
                let end = after.find(',').unwrap_or(after.len());
                (after[..end].trim().to_owned(), &after[end..])
            };
            match name.as_str() {
                "realm" => c.realm = value,
                "service" => c.service = Some(value),
                "scope" => c.scope = Some(value),
                "error" => c.error = Some(value),
                _ => {}
            }
            s = tail.trim_start().strip_prefix(',').unwrap_or(tail).trim_start();
        }
        (!c.realm.is_empty()).then_some(c)
    }

    /// Whether the scope asks only to read.
    fn read_only(&self) -> bool {
        self.scope.as_deref().is_some_and(|s| {
            s.split(' ')
                .all(|one| one.rsplit_once(':').is_some_and(|(_, actions)| actions == "pull"))
        })
    }
}

/// A user name and password for a token realm.
pub struct Credentials {
    /// User name.
    pub username: String,
    /// Password.
    pub password: Zeroizing<String>,
}

/// Where credentials come from.
pub trait CredentialSource: Send + Sync {
    /// Credentials for `realm`, or `None` when there are none to give.
    fn credentials(&self, realm: &str) -> Result<Option<Credentials>, ClientError>;
}

/// Looks up an environment variable.
type EnvLookup = Box<dyn Fn(&str) -> Option<String> + Send + Sync>;

/// Cached tokens by scope, with the instant they stop being used.
type TokenCache = HashMap<String, (Token, Instant)>;

/// A token from a realm, and whether it was got without credentials.
#[derive(Clone)]
pub struct Token {
    /// The bearer token.
    pub value: Zeroizing<String>,
    /// Got without credentials: a server that refuses it may accept a
    /// token got with them.
    pub anonymous: bool,
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Token")
            .field("anonymous", &self.anonymous)
            .finish_non_exhaustive()
    }
}

/// `SEAL_AUTH` / `NOTARY_AUTH` (base64 `user:password`), else a prompt
/// when interactive.
pub struct EnvOrPromptCredentials {
    env: EnvLookup,
    interactive: bool,
}

impl EnvOrPromptCredentials {
    /// Reads variables through `env`; prompts only when `interactive`.
    pub fn new(env: impl Fn(&str) -> Option<String> + Send + Sync + 'static, interactive: bool) -> Self {
        EnvOrPromptCredentials {
            env: Box::new(env),
            interactive,
        }
    }

    /// The process environment, prompting when stdin is a terminal.
    pub fn from_process_env() -> Self {
        Self::new(|k| std::env::var(k).ok(), std::io::stdin().is_terminal())
    }
}

/// Decodes base64 `user:password`.
fn decode_auth(var: &str, value: &str) -> Result<Credentials, ClientError> {
    let bytes = Zeroizing::new(
        base64::engine::general_purpose::STANDARD
            .decode(value.trim())
            .map_err(|_| ClientError::Invalid(format!("{var} is not base64 of user:password")))?,
    );
    let text = std::str::from_utf8(&bytes).map_err(|_| ClientError::Invalid(format!("{var} is not UTF-8")))?;
    let (user, pass) = text
        .split_once(':')
        .ok_or_else(|| ClientError::Invalid(format!("{var} must encode user:password")))?;
    Ok(Credentials {
        username: user.to_owned(),
        password: Zeroizing::new(pass.to_owned()),
    })
}

impl CredentialSource for EnvOrPromptCredentials {
    fn credentials(&self, realm: &str) -> Result<Option<Credentials>, ClientError> {
        for var in ["SEAL_AUTH", "NOTARY_AUTH"] {
            if let Some(v) = (self.env)(var).filter(|v| !v.is_empty()) {
                return decode_auth(var, &v).map(Some);
            }
        }
        if !self.interactive {
            return Ok(None);
        }
        let mut err = std::io::stderr();
        let _ = write!(err, "Enter username for {realm}: ");
        let _ = err.flush();
        let mut user = String::new();
        std::io::stdin()
            .lock()
            .read_line(&mut user)
            .map_err(|e| ClientError::Invalid(format!("reading the user name: {e}")))?;
        let password = rpassword::prompt_password(format!("Enter password for {}: ", user.trim()))
            .map_err(|e| ClientError::Invalid(format!("reading the password: {e}")))?;
        Ok(Some(Credentials {
            username: user.trim().to_owned(),
            password: Zeroizing::new(password),
        }))
    }
}

/// The token service's answer.
#[derive(serde::Deserialize)]
struct TokenResponse {
    #[serde(default)]
    token: Option<String>,
    #[serde(default)]
    access_token: Option<String>,
    #[serde(default)]
    expires_in: Option<u64>,
}

/// Tokens by scope, and how to get new ones.
#[derive(Clone)]
pub struct TokenAuth {
    credentials: Arc<dyn CredentialSource>,
    cache: Arc<Mutex<TokenCache>>,
}

impl std::fmt::Debug for TokenAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenAuth").finish_non_exhaustive()
    }
}

/// The largest token service answer read.
const MAX_TOKEN_RESPONSE: u64 = 1 << 20;

/// The token lifetime when the realm does not say (the token spec's 60 s).
const DEFAULT_EXPIRES_IN: u64 = 60;

/// Whether basic credentials may go to `realm`: HTTPS, or a loopback host.
fn may_send_credentials(realm: &str) -> bool {
    let Ok(url) = reqwest::Url::parse(realm) else {
        return false;
    };
    url.scheme() == "https"
        || match url.host_str() {
            Some("localhost") => true,
            Some(host) => host
                .trim_start_matches('[')
                .trim_end_matches(']')
                .parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip.is_loopback()),
            None => false,
        }
}

impl TokenAuth {
    /// Token handling with credentials from `credentials`.
    pub fn new(credentials: Arc<dyn CredentialSource>) -> TokenAuth {
        TokenAuth {
            credentials,
            cache: Arc::new(Mutex::new(HashMap::new())),
        }
    }

    /// A cached, unexpired token for `scope`.
    pub fn cached(&self, scope: &str) -> Option<Token> {
        let cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        cache
            .get(scope)
            .filter(|(_, until)| Instant::now() < *until)
            .map(|(t, _)| t.clone())
    }

    /// A new token answering `challenge`. For a read-only scope, when
    /// `anonymous_ok`, the realm is asked without credentials first; else,
    /// or when the realm wants them, with credentials.
    pub fn token(
        &self,
        http: &reqwest::blocking::Client,
        challenge: &Challenge,
        anonymous_ok: bool,
    ) -> Result<Token, ClientError> {
        let scope = challenge.scope.clone().unwrap_or_default();
        if anonymous_ok && challenge.read_only() {
            if let Some(t) = self.request(http, challenge, None)? {
                return Ok(self.remember(scope, t, true));
            }
        }
        if !may_send_credentials(&challenge.realm) {
            return Err(ClientError::Invalid(format!(
                "the token service {} is not HTTPS: refusing to send credentials to it",
                challenge.realm
            )));
        }
        let Some(creds) = self.credentials.credentials(&challenge.realm)? else {
            return Err(ClientError::Invalid(format!(
                "{} requires authentication: set SEAL_AUTH (base64 of user:password)",
                challenge.realm
            )));
        };
        match self.request(http, challenge, Some(&creds))? {
            Some(t) => Ok(self.remember(scope, t, false)),
            None => Err(ClientError::Invalid(format!(
                "the token service {} refused the credentials of {}",
                challenge.realm, creds.username
            ))),
        }
    }

    fn remember(&self, scope: String, (value, expires_in): (Zeroizing<String>, u64), anonymous: bool) -> Token {
        // Renew a little early: the token must still be valid on arrival.
        let life = Duration::from_secs(expires_in.saturating_sub(5).max(1));
        let token = Token { value, anonymous };
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        cache.insert(scope, (token.clone(), Instant::now() + life));
        token
    }

    /// Asks the realm; `None` when it answers 401 (credentials needed or
    /// refused).
    fn request(
        &self,
        http: &reqwest::blocking::Client,
        challenge: &Challenge,
        creds: Option<&Credentials>,
    ) -> Result<Option<(Zeroizing<String>, u64)>, ClientError> {
        let offline = |reason: String| ClientError::Offline {
            server: challenge.realm.clone(),
            reason,
        };
        let mut url = reqwest::Url::parse(&challenge.realm).map_err(|e| offline(format!("realm is not a URL: {e}")))?;
        {
            let mut q = url.query_pairs_mut();
            if let Some(s) = &challenge.service {
                q.append_pair("service", s);
            }
            for s in challenge.scope.iter().flat_map(|s| s.split(' ')) {
                q.append_pair("scope", s);
            }
        }
        let mut req = http.get(url);
        if let Some(c) = creds {
            req = req.basic_auth(&c.username, Some(c.password.as_str()));
        }
        let resp = req.send().map_err(|e| offline(e.to_string()))?;
        match resp.status().as_u16() {
            200 => {}
            401 | 403 => return Ok(None),
            other => return Err(offline(format!("token service answered {other}"))),
        }
        let mut raw = Vec::new();
        std::io::Read::read_to_end(&mut std::io::Read::take(resp, MAX_TOKEN_RESPONSE), &mut raw)
            .map_err(|e| offline(format!("reading the token service's answer: {e}")))?;
        let body: TokenResponse =
            serde_json::from_slice(&raw).map_err(|e| offline(format!("token service answer: {e}")))?;
        let token = body
            .token
            .or(body.access_token)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| offline("token service answer has no token".into()))?;
        Ok(Some((
            Zeroizing::new(token),
            body.expires_in.unwrap_or(DEFAULT_EXPIRES_IN),
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notarys_challenges_parse() {
        let c = Challenge::parse(
            r#"Bearer realm="http://127.0.0.1:4447/auth/token",service="notary-server",scope="repository:example.com/a:push,pull""#,
        )
        .unwrap();
        assert_eq!(c.realm, "http://127.0.0.1:4447/auth/token");
        assert_eq!(c.service.as_deref(), Some("notary-server"));
        assert_eq!(c.scope.as_deref(), Some("repository:example.com/a:push,pull"));
        assert_eq!(c.error, None);
        assert!(!c.read_only());

        let c = Challenge::parse(
            r#"Bearer realm="https://auth.example.com/token",service="notary",scope="repository:a/b:pull",error="insufficient_scope""#,
        )
        .unwrap();
        assert_eq!(c.error.as_deref(), Some("insufficient_scope"));
        assert!(c.read_only());
        assert!(Challenge::parse(r#"Basic realm="x""#).is_none());
        assert!(Challenge::parse("Bearer service=\"x\"").is_none());
        assert!(Challenge::parse("Bearer realm=\"unterminated").is_none());
    }

    #[test]
    fn credentials_come_from_seal_auth_then_notary_auth() {
        let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
        let (seal, notary) = (b64("alice:s3cret:with:colons"), b64("bob:pw"));
        let both = EnvOrPromptCredentials::new(
            move |k| match k {
                "SEAL_AUTH" => Some(seal.clone()),
                "NOTARY_AUTH" => Some(notary.clone()),
                _ => None,
            },
            false,
        );
        let c = both.credentials("r").unwrap().unwrap();
        assert_eq!(
            (c.username.as_str(), c.password.as_str()),
            ("alice", "s3cret:with:colons")
        );
        let notary = b64("bob:pw");
        let only_notary = EnvOrPromptCredentials::new(move |k| (k == "NOTARY_AUTH").then(|| notary.clone()), false);
        assert_eq!(only_notary.credentials("r").unwrap().unwrap().username, "bob");
        let none = EnvOrPromptCredentials::new(|_| None, false);
        assert!(none.credentials("r").unwrap().is_none());
        let bad = EnvOrPromptCredentials::new(|k| (k == "SEAL_AUTH").then(|| "%%%".to_owned()), false);
        assert!(bad.credentials("r").is_err());
    }

    #[test]
    fn credentials_go_only_to_https_or_loopback() {
        assert!(may_send_credentials("https://auth.example.com/token"));
        assert!(may_send_credentials("http://127.0.0.1:4447/auth/token"));
        assert!(may_send_credentials("http://localhost/token"));
        assert!(may_send_credentials("http://[::1]:80/token"));
        assert!(!may_send_credentials("http://auth.example.com/token"));
        assert!(!may_send_credentials("not a url"));
    }
}
