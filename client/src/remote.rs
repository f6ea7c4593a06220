//! The Notary server HTTP API as a client sees it: metadata downloads with
//! size limits, the multipart upload, key fetch and rotation, deletion.

use std::io::Read as _;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use seal_tuf::PublicKey;

use crate::auth::{Challenge, CredentialSource, EnvOrPromptCredentials, TokenAuth};
use crate::error::ClientError;

/// How to reach the server.
#[derive(Debug, Clone, Default)]
pub struct RemoteConfig {
    /// Base URL, e.g. `https://notary.example.com:4443`.
    pub url: String,
    /// Extra CA certificate(s) (PEM) to trust for the server's certificate.
    pub root_ca: Option<PathBuf>,
    /// Client certificate (PEM) for mutual TLS.
    pub tls_cert: Option<PathBuf>,
    /// Client key (PEM) for mutual TLS.
    pub tls_key: Option<PathBuf>,
    /// Do not verify the server's certificate (development only).
    pub skip_tls_verify: bool,
}

/// A connection to one server.
#[derive(Debug, Clone)]
pub struct Remote {
    base: String,
    http: reqwest::blocking::Client,
    auth: TokenAuth,
}

/// Notary's error body, as much as the client reads of it.
#[derive(serde::Deserialize)]
struct ErrorBody {
    errors: Vec<ErrorEntry>,
}

#[derive(serde::Deserialize)]
struct ErrorEntry {
    #[serde(default)]
    code: String,
    #[serde(default)]
    message: String,
    #[serde(default)]
    detail: serde_json::Value,
}

fn read_file(p: &PathBuf) -> Result<Vec<u8>, ClientError> {
    std::fs::read(p).map_err(ClientError::io(p))
}

/// The one TLS provider used by every Seal process.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

impl Remote {
    /// A client for the server `config` names.
    pub fn new(config: &RemoteConfig) -> Result<Remote, ClientError> {
        install_crypto_provider();
        let url = config.url.trim_end_matches('/');
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            return Err(ClientError::Invalid(format!(
                "server URL {url:?} must start with http:// or https://"
            )));
        }
        let mut b = reqwest::blocking::Client::builder()
            .user_agent(concat!("seal/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(Duration::from_secs(10))
            .timeout(Duration::from_secs(60))
            .redirect(reqwest::redirect::Policy::none());
        if let Some(ca) = &config.root_ca {
            let pem = read_file(ca)?;
            let certs = reqwest::Certificate::from_pem_bundle(&pem)
                .map_err(|e| ClientError::Invalid(format!("{}: not a PEM certificate bundle: {e}", ca.display())))?;
            b = b.tls_certs_merge(certs);
        }
        match (&config.tls_cert, &config.tls_key) {
            (Some(c), Some(k)) => {
                let mut pem = read_file(c)?;
                pem.push(b'\n');
                pem.extend(read_file(k)?);
                let id = reqwest::Identity::from_pem(&pem).map_err(|e| {
                    ClientError::Invalid(format!("client certificate {} / key {}: {e}", c.display(), k.display()))
                })?;
                b = b.identity(id);
            }
            (None, None) => {}
            _ => {
                return Err(ClientError::Invalid(
                    "a client certificate needs both --tlscert and --tlskey".into(),
                ))
            }
        }
        if config.skip_tls_verify {
            b = b.tls_danger_accept_invalid_certs(true);
        }
        let http = b
            .build()
            .map_err(|e| ClientError::Invalid(format!("HTTP client: {e}")))?;
        Ok(Remote {
            base: url.to_owned(),
            http,
            auth: TokenAuth::new(Arc::new(EnvOrPromptCredentials::from_process_env())),
        })
    }

    /// Uses `source` for the credentials a token service asks for.
    pub fn with_credentials(mut self, source: Arc<dyn CredentialSource>) -> Remote {
        self.auth = TokenAuth::new(source);
        self
    }

    /// Sends the request `build` makes. A cached token for `scope` (the
    /// scope the server is expected to ask for) goes along. A token
    /// challenge is answered with a token from its realm: for a read,
    /// first an anonymous one, and if the server refuses that too (a
    /// private collection), one got with the credentials, as Notary's CLI
    /// does.
    fn send(
        &self,
        scope: &str,
        build: impl Fn() -> reqwest::blocking::RequestBuilder,
    ) -> Result<reqwest::blocking::Response, ClientError> {
        let cached = self.auth.cached(scope);
        let mut req = build();
        if let Some(token) = &cached {
            req = req.bearer_auth(token.value.as_str());
        }
        let mut resp = req.send().map_err(|e| self.offline(e))?;
        // An anonymous token the server refused: only credentials can help.
        let mut anonymous_ok = !cached.is_some_and(|t| t.anonymous);
        // At most an anonymous round, then one with credentials.
        for _ in 0..2 {
            if resp.status().as_u16() != 401 {
                break;
            }
            let Some(challenge) = resp
                .headers()
                .get(reqwest::header::WWW_AUTHENTICATE)
                .and_then(|v| v.to_str().ok())
                .and_then(Challenge::parse)
            else {
                break;
            };
            let token = self.auth.token(&self.http, &challenge, anonymous_ok)?;
            resp = build()
                .bearer_auth(token.value.as_str())
                .send()
                .map_err(|e| self.offline(e))?;
            if !token.anonymous {
                break;
            }
            anonymous_ok = false;
        }
        Ok(resp)
    }

    /// The server's base URL.
    pub fn url(&self) -> &str {
        &self.base
    }

    /// `<base>/v2/<gun>/_trust/tuf/<name>`, each segment of the GUN and
    /// the name escaped (see [`escape_path`]), so that the server sees the
    /// GUN as it is: `%`, `?`, `#` and spaces are the GUN's own characters,
    /// not URL syntax.
    fn tuf_url(&self, gun: &str, name: &str) -> String {
        format!("{}/v2/{}/_trust/tuf/{}", self.base, escape_path(gun), escape_path(name))
    }

    fn offline(&self, e: reqwest::Error) -> ClientError {
        let mut reason = e.to_string();
        let mut src = std::error::Error::source(&e);
        while let Some(s) = src {
            reason = format!("{reason}: {s}");
            src = s.source();
        }
        ClientError::Offline {
            server: self.base.clone(),
            reason,
        }
    }

    fn server_error(status: u16, body: &[u8]) -> ClientError {
        // Notary's client reads only the first KiB of an error body.
        let body = &body[..body.len().min(1024)];
        match serde_json::from_slice::<ErrorBody>(body) {
            Ok(b) if !b.errors.is_empty() => {
                let e = &b.errors[0];
                let detail = match &e.detail {
                    serde_json::Value::Null => String::new(),
                    serde_json::Value::Object(o) if o.is_empty() => String::new(),
                    serde_json::Value::Object(o) => match (o.get("Name"), o.get("Error").and_then(|e| e.get("Msg"))) {
                        (Some(serde_json::Value::String(n)), Some(serde_json::Value::String(m))) => {
                            format!(": {n}: {m}")
                        }
                        _ => format!(": {}", e.detail),
                    },
                    serde_json::Value::String(s) => format!(": {s}"),
                    other => format!(": {other}"),
                };
                ClientError::Server {
                    status,
                    code: e.code.clone(),
                    message: e.message.clone(),
                    detail,
                }
            }
            _ => ClientError::Server {
                status,
                code: "UNKNOWN".into(),
                message: String::from_utf8_lossy(body).trim().chars().take(200).collect(),
                detail: String::new(),
            },
        }
    }

    /// Reads at most `limit` bytes of a successful body; more is an error
    /// (endless data attack).
    fn body_within(&self, resp: reqwest::blocking::Response, what: &str, limit: u64) -> Result<Vec<u8>, ClientError> {
        let mut out = Vec::new();
        resp.take(limit.saturating_add(1))
            .read_to_end(&mut out)
            .map_err(|e| ClientError::Offline {
                server: self.base.clone(),
                reason: format!("reading {what}: {e}"),
            })?;
        if out.len() as u64 > limit {
            return Err(ClientError::Tuf(seal_tuf::Error::TooLarge {
                role: what.to_owned(),
                size: out.len() as u64,
                limit,
            }));
        }
        Ok(out)
    }

    fn error_of(&self, resp: reqwest::blocking::Response) -> ClientError {
        let status = resp.status().as_u16();
        let mut body = Vec::new();
        let _ = resp.take(1024).read_to_end(&mut body);
        Self::server_error(status, &body)
    }

    /// `GET /v2/`: is the server there (200 or 401 both count, as Notary's
    /// client accepts both)?
    pub fn ping(&self) -> Result<(), ClientError> {
        let resp = self
            .http
            .get(format!("{}/v2/", self.base))
            .send()
            .map_err(|e| self.offline(e))?;
        match resp.status().as_u16() {
            200 | 401 => Ok(()),
            _ => Err(self.error_of(resp)),
        }
    }

    /// Downloads `name` (`root.json`, `snapshot.<sha256>.json`,
    /// `2.root.json`…) of `gun`, at most `limit` bytes. `None` on 404.
    pub fn get_meta(&self, gun: &str, name: &str, limit: u64) -> Result<Option<Vec<u8>>, ClientError> {
        let url = self.tuf_url(gun, name);
        let resp = self.send(&format!("repository:{gun}:pull"), || self.http.get(&url))?;
        match resp.status().as_u16() {
            200 => {}
            404 => return Ok(None),
            _ => return Err(self.error_of(resp)),
        }
        if let Some(len) = resp.content_length() {
            if len > limit {
                return Err(ClientError::Tuf(seal_tuf::Error::TooLarge {
                    role: role_of(name).to_owned(),
                    size: len,
                    limit,
                }));
            }
        }
        self.body_within(resp, role_of(name), limit).map(Some)
    }

    /// Uploads `files` (role, bytes) in one multipart request, as Notary's
    /// client does: one part per role, `name="files"`, `filename="<role>"`.
    pub fn publish(&self, gun: &str, files: &[(String, Vec<u8>)]) -> Result<(), ClientError> {
        let boundary = format!("seal{}", hex::encode(rand::random::<[u8; 16]>()));
        let mut body = Vec::new();
        for (role, bytes) in files {
            body.extend_from_slice(format!("--{boundary}\r\n").as_bytes());
            body.extend_from_slice(
                format!(
                    "Content-Disposition: form-data; name=\"files\"; filename=\"{role}\"\r\n\
                     Content-Type: application/octet-stream\r\n\r\n"
                )
                .as_bytes(),
            );
            body.extend_from_slice(bytes);
            body.extend_from_slice(b"\r\n");
        }
        body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
        let url = self.tuf_url(gun, "");
        let resp = self.send(&format!("repository:{gun}:push,pull"), || {
            self.http
                .post(&url)
                .header("Content-Type", format!("multipart/form-data; boundary={boundary}"))
                .body(body.clone())
        })?;
        self.success(resp).map(drop)
    }

    /// The response if it is a success, else the server's error.
    fn success(&self, resp: reqwest::blocking::Response) -> Result<reqwest::blocking::Response, ClientError> {
        if resp.status().is_success() {
            Ok(resp)
        } else {
            Err(self.error_of(resp))
        }
    }

    fn key_request(&self, gun: &str, role: &str, rotate: bool) -> Result<PublicKey, ClientError> {
        let url = self.tuf_url(gun, &format!("{role}.key"));
        let resp = if rotate {
            self.send(&format!("repository:{gun}:*"), || self.http.post(&url))?
        } else {
            self.send(&format!("repository:{gun}:push,pull"), || self.http.get(&url))?
        };
        let resp = self.success(resp)?;
        let body = self.body_within(resp, &format!("{role}.key"), 1 << 20)?;
        PublicKey::from_json(&body)
            .map_err(|e| ClientError::Invalid(format!("the server's {role} key is not a valid key: {e}")))
    }

    /// The server-held key of `role` (timestamp or snapshot).
    pub fn get_key(&self, gun: &str, role: &str) -> Result<PublicKey, ClientError> {
        self.key_request(gun, role, false)
    }

    /// Asks the server for a new key for `role`; it takes effect once a
    /// root listing it is published.
    pub fn rotate_key(&self, gun: &str, role: &str) -> Result<PublicKey, ClientError> {
        self.key_request(gun, role, true)
    }

    /// `<base>/tuf/<repository>/<tail>`, the repository name escaped as a path segment.
    fn tuf1_url(&self, repository: &str, tail: &str) -> String {
        format!("{}/tuf/{}/{tail}", self.base, escape_path(repository))
    }

    /// A JSON answer of the TUF 1.0 routes (at most 1 MiB), or the server's error.
    fn tuf1_json(&self, resp: reqwest::blocking::Response, what: &str) -> Result<serde_json::Value, ClientError> {
        let resp = self.success(resp)?;
        let body = self.body_within(resp, what, 1 << 20)?;
        serde_json::from_slice(&body).map_err(|e| ClientError::Invalid(format!("the server's {what} is not JSON: {e}")))
    }

    /// `POST /tuf/<repository>/keys`: the repository's online keys, made by the server's signer
    /// when it has none (docs/tuf.md).
    pub fn tuf1_keys(&self, repository: &str) -> Result<serde_json::Value, ClientError> {
        let url = self.tuf1_url(repository, "keys");
        let resp = self.send(&format!("tuf-repository:{repository}:*"), || self.http.post(&url))?;
        self.tuf1_json(resp, "keys")
    }

    /// `POST /tuf/<repository>/keys/<role>`: a new online key for `role` (timestamp or
    /// snapshot), held beside the others until a root lists it.
    pub fn tuf1_rotate_key(&self, repository: &str, role: &str) -> Result<serde_json::Value, ClientError> {
        let url = self.tuf1_url(repository, &format!("keys/{}", escape_path(role)));
        let resp = self.send(&format!("tuf-repository:{repository}:*"), || self.http.post(&url))?;
        self.tuf1_json(resp, "keys")
    }

    /// `POST /tuf/<repository>/metadata`: signed files by role name, in one upload.
    pub fn tuf1_upload(&self, repository: &str, files: &serde_json::Value) -> Result<(), ClientError> {
        let url = self.tuf1_url(repository, "metadata");
        let body = serde_json::to_vec(files).map_err(|e| ClientError::Invalid(format!("upload: {e}")))?;
        let resp = self.send(&format!("tuf-repository:{repository}:push,pull"), || {
            self.http
                .post(&url)
                .header("Content-Type", "application/json")
                .body(body.clone())
        })?;
        self.success(resp).map(drop)
    }

    /// `GET /tuf/`: every repository's name, page by page.
    pub fn tuf1_list(&self) -> Result<Vec<String>, ClientError> {
        let mut names: Vec<String> = Vec::new();
        loop {
            let url = match names.last() {
                None => format!("{}/tuf/", self.base),
                Some(last) => format!("{}/tuf/?after={}", self.base, escape_path(last)),
            };
            let resp = self.send("registry:catalog:*", || self.http.get(&url))?;
            let page = self.tuf1_json(resp, "repository list")?;
            let Some(items) = page.get("repositories").and_then(|r| r.as_array()) else {
                return Err(ClientError::Invalid(
                    "the server's repository list has no \"repositories\"".into(),
                ));
            };
            let before = names.len();
            for item in items {
                let name = item
                    .as_str()
                    .ok_or_else(|| ClientError::Invalid("a repository name is not a string".into()))?;
                if names.last().is_some_and(|last| name <= last.as_str()) {
                    return Err(ClientError::Invalid(format!(
                        "the server's repository list is not in order at {name:?}"
                    )));
                }
                names.push(name.to_owned());
            }
            if names.len() == before || items.len() < TUF1_LIST_PAGE {
                return Ok(names);
            }
        }
    }

    /// Deletes all of `gun`'s trust data on the server.
    pub fn delete(&self, gun: &str) -> Result<(), ClientError> {
        let url = self.tuf_url(gun, "");
        let resp = self.send(&format!("repository:{gun}:*"), || self.http.delete(&url))?;
        self.success(resp).map(drop)
    }
}

/// Repositories a page of `GET /tuf/` holds at most (docs/tuf.md).
const TUF1_LIST_PAGE: usize = 1000;

/// Escapes each `/`-separated segment of `path` as Go's `url.PathEscape`
/// does, keeping `/` as the separator: letters, digits, `-._~` and the
/// sub-delimiters `$&+:=@` stay, every other byte (of the UTF-8) becomes
/// `%XX`.
pub fn escape_path(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    for b in path.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' | b'/' => out.push(char::from(b)),
            b'$' | b'&' | b'+' | b':' | b'=' | b'@' => out.push(char::from(b)),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// The role a metadata file name is for: `snapshot.<sha256>.json`,
/// `2.root.json` and `targets/a.json` name `snapshot`, `root`, `targets/a`.
fn role_of(name: &str) -> &str {
    let base = name.strip_suffix(".json").unwrap_or(name);
    if let Some((role, sum)) = base.rsplit_once('.') {
        if sum.len() >= 64 && sum.bytes().all(|b| b.is_ascii_hexdigit()) {
            return role;
        }
    }
    if let Some((v, role)) = base.split_once('.') {
        if !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()) {
            return role;
        }
    }
    base
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names_map_to_roles() {
        let sum = "ab".repeat(32);
        assert_eq!(role_of(&format!("snapshot.{sum}.json")), "snapshot");
        assert_eq!(role_of("2.root.json"), "root");
        assert_eq!(role_of("targets/a.json"), "targets/a");
        assert_eq!(role_of("timestamp.json"), "timestamp");
    }

    #[test]
    fn notary_error_bodies_become_one_line() {
        let body = br#"{"errors":[{"code":"INVALID_UPDATE","message":"Update sent by the client is invalid.","detail":{"Name":"ErrBadTargets","Error":{"Msg":"no signatures"}}}]}"#;
        let e = Remote::server_error(400, body).to_string();
        assert_eq!(
            e,
            "server answered 400: INVALID_UPDATE: Update sent by the client is invalid.: ErrBadTargets: no signatures"
        );
        let e = Remote::server_error(
            404,
            br#"{"errors":[{"code":"METADATA_NOT_FOUND","message":"You have requested metadata that does not exist.","detail":{}}]}"#,
        )
        .to_string();
        assert!(e.ends_with("does not exist."), "{e}");
        let e = Remote::server_error(502, b"<html>bad gateway</html>").to_string();
        assert!(e.contains("502") && e.contains("bad gateway"), "{e}");
    }

    #[test]
    fn gun_segments_are_escaped_like_gos_path_escape() {
        assert_eq!(escape_path("example.com/interop/app"), "example.com/interop/app");
        assert_eq!(escape_path("example.com/a%2Fb"), "example.com/a%252Fb");
        assert_eq!(escape_path("example.com/q?x=1&y"), "example.com/q%3Fx=1&y");
        assert_eq!(escape_path("a b#c;d,e"), "a%20b%23c%3Bd%2Ce");
        assert_eq!(escape_path("ü$+:@~"), "%C3%BC$+:@~");
        let r = Remote::new(&RemoteConfig {
            url: "http://127.0.0.1:9/".into(),
            ..RemoteConfig::default()
        })
        .unwrap();
        assert_eq!(
            r.tuf_url("example.com/a%2Fb?x", "targets/releases.json"),
            "http://127.0.0.1:9/v2/example.com/a%252Fb%3Fx/_trust/tuf/targets/releases.json"
        );
    }

    #[test]
    fn urls_must_name_a_scheme() {
        let bad = RemoteConfig {
            url: "notary.example.com".into(),
            ..RemoteConfig::default()
        };
        assert!(Remote::new(&bad).is_err());
    }
}
