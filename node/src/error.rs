//! The node's API error: every error code Notary's server answers with, and
//! the one mapping from an error to an HTTP status and Notary's JSON body.
//!
//! Bodies are `{"errors":[{"code":"…","message":"…","detail":…}]}` followed by
//! a newline, with `Content-Type: application/json; charset=utf-8`, byte for
//! byte what Notary v0.7.0 sends (Go's encoder escapes `<`, `>`, `&`, U+2028
//! and U+2029, so this module does too).
//!
//! Every conversion of another crate's error into an [`ApiError`] is a
//! `From` impl here; a variant made from another error keeps it as its
//! [`std::error::Error::source`] ([`Cause`]), which is never sent.

use std::sync::Arc;

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use seal_raft::WriteError;
use seal_tuf::UpdateError;
use serde_json::{json, Value};

/// The content type of every error body.
pub const ERROR_CONTENT_TYPE: &str = "application/json; charset=utf-8";

pub use seal_tuf::UpdateErrorKind;

/// One action a token must grant, listed in an `UNAUTHORIZED` body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessItem {
    /// Resource type: `repository` or `registry`.
    pub resource_type: String,
    /// Resource name: the GUN, or `catalog`.
    pub name: String,
    /// The action: `pull`, `push` or `*`.
    pub action: String,
}

/// The error an [`ApiError`] was made from: logged and inspected, never sent.
#[derive(Debug, Clone)]
pub struct Cause(Arc<dyn std::error::Error + Send + Sync>);

impl Cause {
    /// Keeps `e` as a cause.
    pub fn new(e: impl std::error::Error + Send + Sync + 'static) -> Cause {
        Cause(Arc::new(e))
    }

    /// The error, to downcast.
    pub fn get(&self) -> &(dyn std::error::Error + Send + Sync + 'static) {
        &*self.0
    }
}

impl std::fmt::Display for Cause {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

/// Two causes are equal when they say the same (the error types need not be comparable).
impl PartialEq for Cause {
    fn eq(&self, other: &Cause) -> bool {
        self.0.to_string() == other.0.to_string()
    }
}

impl std::error::Error for Cause {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.0.source()
    }
}

/// Every error the node's HTTP API can answer with.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum ApiError {
    /// 404 METADATA_NOT_FOUND with `"detail":{}`: a metadata route, nothing stored.
    #[error("metadata not found")]
    MetadataNotFound,
    /// 404 METADATA_NOT_FOUND without detail: the catch-all route.
    #[error("no such route: {method} {path}")]
    RouteNotFound {
        /// The request method.
        method: String,
        /// The request path.
        path: String,
    },
    /// 400 MALFORMED_UPLOAD: the body is not `multipart/form-data` or is broken.
    #[error("malformed upload: {reason}")]
    MalformedUpload {
        /// Why the upload could not be parsed (logged, not sent).
        reason: String,
    },
    /// 400 NO_FILENAME: a part without a filename.
    #[error("upload part {part} has no filename")]
    NoFilename {
        /// Index of the part, from 0.
        part: usize,
    },
    /// 400 INVALID_ROLE, detail = the role name.
    #[error("invalid role {role:?}")]
    InvalidRole {
        /// The role name as received.
        role: String,
    },
    /// 400 MALFORMED_JSON: a part is not a JSON metadata object.
    #[error("part for role {role:?} is not valid JSON metadata")]
    MalformedJson {
        /// The role whose part failed to parse (logged, not sent).
        role: String,
    },
    /// 400 INVALID_UPDATE with `{"Name":…,"Error":{"Msg":…}}` detail.
    #[error("invalid update ({}): {msg}", kind.notary_name())]
    InvalidUpdate {
        /// The class of the failure.
        kind: UpdateErrorKind,
        /// The message shown to the client.
        msg: String,
    },
    /// 400 VERSION with `"detail":{}`: a role's version is not newer than stored.
    #[error("old version: {reason}")]
    OldVersion {
        /// What conflicted (logged, not sent).
        reason: String,
        /// The error that said so, if any.
        #[source]
        source: Option<Cause>,
    },
    /// 500 UPDATING: the storage layer failed to apply an update.
    #[error("error updating: {reason}")]
    Updating {
        /// What failed (logged, not sent).
        reason: String,
        /// The error it failed with, if any.
        #[source]
        source: Option<Cause>,
    },
    /// 500 NO_STORAGE.
    #[error("no storage configured")]
    NoStorage,
    /// 500 NO_CRYPTOSERVICE.
    #[error("no crypto service configured")]
    NoCryptoService,
    /// 500 UNKNOWN.
    #[error("unknown error: {reason}")]
    Unknown {
        /// What failed (logged, not sent).
        reason: String,
        /// The error it failed with, if any.
        #[source]
        source: Option<Cause>,
    },
    /// 400 INVALID_PARAMETERS; detail is the string, or `{}` when `None`.
    #[error("invalid parameters: {detail:?}")]
    InvalidParameters {
        /// The detail string Notary sends, if any.
        detail: Option<String>,
    },
    /// 400 INVALID_GUN: a POST for a GUN outside `repositories.gun_prefixes`.
    #[error("GUN {gun:?} is outside the configured prefixes")]
    InvalidGun {
        /// The GUN of the request (logged, not sent).
        gun: String,
        /// The configured prefixes, sent as Go prints a `[]string`.
        prefixes: Vec<String>,
    },
    /// 401 UNAUTHORIZED with the access list as detail.
    #[error("authentication required")]
    Unauthorized {
        /// The actions the request needs.
        access: Vec<AccessItem>,
        /// The `WWW-Authenticate` challenge to send, if any.
        challenge: Option<String>,
    },
    /// 503 UNAVAILABLE: this node cannot answer now (no known Raft leader,
    /// or its state is beyond its staleness bound).
    #[error("unavailable: {reason}")]
    Unavailable {
        /// Why, sent as detail.
        reason: String,
        /// The error that made this node unavailable, if any (not sent).
        #[source]
        source: Option<Cause>,
    },
    /// 503 UNAVAILABLE: a write reached a node that is not the Raft leader
    /// (it was not proposed). The response carries the [`NotLeader`]
    /// extension, so that the cluster layer can send the request on to the
    /// leader instead.
    #[error("not the leader; the leader is {leader:?}")]
    NotLeader {
        /// The leader this node knows of.
        leader: Option<u64>,
    },
    /// 413 TOO_LARGE: an upload exceeds a configured limit.
    #[error("upload exceeds {limit} = {max}")]
    TooLarge {
        /// The config key of the limit (`limits.max_body_bytes`, …).
        limit: &'static str,
        /// The limit's value.
        max: u64,
    },
}

impl ApiError {
    /// 500 UPDATING: `reason` (what failed), caused by `source`.
    pub fn updating(reason: impl Into<String>, source: impl std::error::Error + Send + Sync + 'static) -> ApiError {
        ApiError::Updating {
            reason: reason.into(),
            source: Some(Cause::new(source)),
        }
    }

    /// 500 UNKNOWN: `reason` (what failed), caused by `source`.
    pub fn unknown(reason: impl Into<String>, source: impl std::error::Error + Send + Sync + 'static) -> ApiError {
        ApiError::Unknown {
            reason: reason.into(),
            source: Some(Cause::new(source)),
        }
    }

    /// The HTTP status of this error.
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::MetadataNotFound | ApiError::RouteNotFound { .. } => StatusCode::NOT_FOUND,
            ApiError::MalformedUpload { .. }
            | ApiError::NoFilename { .. }
            | ApiError::InvalidRole { .. }
            | ApiError::MalformedJson { .. }
            | ApiError::InvalidUpdate { .. }
            | ApiError::OldVersion { .. }
            | ApiError::InvalidParameters { .. }
            | ApiError::InvalidGun { .. } => StatusCode::BAD_REQUEST,
            ApiError::Updating { .. } | ApiError::NoStorage | ApiError::NoCryptoService | ApiError::Unknown { .. } => {
                StatusCode::INTERNAL_SERVER_ERROR
            }
            ApiError::Unauthorized { .. } => StatusCode::UNAUTHORIZED,
            ApiError::Unavailable { .. } | ApiError::NotLeader { .. } => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
        }
    }

    /// Notary's error code string (`METADATA_NOT_FOUND`, …).
    pub fn code(&self) -> &'static str {
        match self {
            ApiError::MetadataNotFound | ApiError::RouteNotFound { .. } => "METADATA_NOT_FOUND",
            ApiError::MalformedUpload { .. } => "MALFORMED_UPLOAD",
            ApiError::NoFilename { .. } => "NO_FILENAME",
            ApiError::InvalidRole { .. } => "INVALID_ROLE",
            ApiError::MalformedJson { .. } => "MALFORMED_JSON",
            ApiError::InvalidUpdate { .. } => "INVALID_UPDATE",
            ApiError::OldVersion { .. } => "VERSION",
            ApiError::Updating { .. } => "UPDATING",
            ApiError::NoStorage => "NO_STORAGE",
            ApiError::NoCryptoService => "NO_CRYPTOSERVICE",
            ApiError::Unknown { .. } => "UNKNOWN",
            ApiError::InvalidParameters { .. } => "INVALID_PARAMETERS",
            ApiError::InvalidGun { .. } => "INVALID_GUN",
            ApiError::Unauthorized { .. } => "UNAUTHORIZED",
            ApiError::Unavailable { .. } | ApiError::NotLeader { .. } => "UNAVAILABLE",
            ApiError::TooLarge { .. } => "TOO_LARGE",
        }
    }

    /// Notary's message text for this error's code.
    pub fn message(&self) -> &'static str {
        match self {
            ApiError::MetadataNotFound | ApiError::RouteNotFound { .. } => {
                "You have requested metadata that does not exist."
            }
            ApiError::MalformedUpload { .. } => "The body of your request is malformed.",
            ApiError::NoFilename { .. } => "No file/role name provided.",
            ApiError::InvalidRole { .. } => "The role you are attempting to operate on is invalid.",
            ApiError::MalformedJson { .. } => "JSON sent by the client could not be parsed by the server",
            ApiError::InvalidUpdate { .. } => "Update sent by the client is invalid.",
            ApiError::OldVersion { .. } => "A newer version of metadata is already available.",
            ApiError::Updating { .. } => "An error has occurred while updating the TUF repository.",
            ApiError::NoStorage => "The server is misconfigured and has no storage.",
            ApiError::NoCryptoService => "The server does not have a signing service configured.",
            ApiError::Unknown { .. } => "unknown error",
            ApiError::InvalidParameters { .. } => "The parameters provided are not valid.",
            ApiError::InvalidGun { .. } => "The server does not support actions on images of this name.",
            ApiError::Unauthorized { .. } => "authentication required",
            ApiError::Unavailable { .. } | ApiError::NotLeader { .. } => {
                "The server cannot serve this request right now."
            }
            ApiError::TooLarge { .. } => "The body of your request is too large.",
        }
    }

    /// The `detail` member of the body, or `None` when Notary omits it.
    fn detail(&self) -> Option<Value> {
        match self {
            ApiError::MetadataNotFound | ApiError::OldVersion { .. } => Some(json!({})),
            ApiError::RouteNotFound { .. }
            | ApiError::MalformedUpload { .. }
            | ApiError::NoFilename { .. }
            | ApiError::MalformedJson { .. }
            | ApiError::Updating { .. }
            | ApiError::NoStorage
            | ApiError::NoCryptoService
            | ApiError::Unknown { .. } => None,
            ApiError::InvalidRole { role } => Some(Value::String(role.clone())),
            ApiError::InvalidUpdate { kind, msg } => Some(json!({"Name": kind.notary_name(), "Error": {"Msg": msg}})),
            ApiError::InvalidParameters { detail } => Some(match detail {
                Some(d) => Value::String(d.clone()),
                None => json!({}),
            }),
            ApiError::InvalidGun { prefixes, .. } => Some(Value::String(format!(
                "Require GUNs with prefix: [{}]",
                prefixes.join(" ")
            ))),
            ApiError::Unauthorized { access, .. } => Some(Value::Array(
                access
                    .iter()
                    .map(|a| json!({"Type": a.resource_type, "Class": "", "Name": a.name, "Action": a.action}))
                    .collect(),
            )),
            ApiError::Unavailable { reason, .. } => Some(Value::String(reason.clone())),
            ApiError::NotLeader { .. } => Some(Value::String(self.to_string())),
            ApiError::TooLarge { limit, max } => Some(json!({"limit": limit, "max": max})),
        }
    }

    /// The exact body bytes, trailing newline included.
    pub fn body(&self) -> Vec<u8> {
        let mut entry = serde_json::Map::new();
        entry.insert("code".into(), Value::String(self.code().into()));
        entry.insert("message".into(), Value::String(self.message().into()));
        if let Some(detail) = self.detail() {
            entry.insert("detail".into(), detail);
        }
        let body = json!({"errors": [Value::Object(entry)]});
        let mut text = go_escape(&body.to_string());
        text.push('\n');
        text.into_bytes()
    }
}

impl From<crate::signer::SignerError> for ApiError {
    /// Notary answers 500 UNKNOWN when its signer fails; an unreachable
    /// signer is reported as 503 so that clients retry.
    fn from(e: crate::signer::SignerError) -> Self {
        match e {
            crate::signer::SignerError::Unavailable { ref message } => ApiError::Unavailable {
                reason: format!("signer unavailable: {message}"),
                source: Some(Cause::new(e)),
            },
            other => ApiError::unknown(other.to_string(), other),
        }
    }
}

impl From<UpdateError> for ApiError {
    /// seal-tuf's verdict on an upload, as Notary answers it.
    fn from(e: UpdateError) -> Self {
        match e {
            UpdateError::InvalidRole(role) => ApiError::InvalidRole { role },
            UpdateError::MalformedJson { role, .. } => ApiError::MalformedJson { role },
            UpdateError::Invalid { kind, msg, .. } => ApiError::InvalidUpdate { kind, msg },
            UpdateError::OldVersion {
                ref role,
                version,
                current,
                ..
            } => ApiError::OldVersion {
                reason: format!("{role} version {version} is not above {current}"),
                source: Some(Cause::new(e)),
            },
            other => ApiError::InvalidUpdate {
                kind: UpdateErrorKind::Validation,
                msg: other.to_string(),
            },
        }
    }
}

impl From<seal_tuf::Error> for ApiError {
    /// The server could not make the metadata it signs (a version past the
    /// largest); without a key the root lists for it, it has no crypto service.
    fn from(e: seal_tuf::Error) -> Self {
        match e {
            seal_tuf::Error::NoServerKey { .. } => ApiError::NoCryptoService,
            other => ApiError::updating(other.to_string(), other),
        }
    }
}

impl From<seal_storage::Error> for ApiError {
    /// A local read failed.
    fn from(e: seal_storage::Error) -> Self {
        ApiError::unknown(e.to_string(), e)
    }
}

impl From<WriteError> for ApiError {
    /// A Raft write failed: not the leader (the cluster layer forwards), a
    /// retryable failure (503), or a fatal one (500 UPDATING).
    fn from(e: WriteError) -> Self {
        match e {
            WriteError::ForwardToLeader { leader_id, .. } => ApiError::NotLeader { leader: leader_id },
            other if other.is_retryable() => ApiError::Unavailable {
                reason: other.to_string(),
                source: Some(Cause::new(other)),
            },
            other => ApiError::updating(other.to_string(), other),
        }
    }
}

/// Escapes what Go's `encoding/json` escapes and serde_json does not; these
/// characters can only occur inside JSON strings, so a textual replacement is
/// exact.
pub(crate) fn go_escape(json_text: &str) -> String {
    let mut out = String::with_capacity(json_text.len());
    for c in json_text.chars() {
        match c {
            '<' => out.push_str("\\u003c"),
            '>' => out.push_str("\\u003e"),
            '&' => out.push_str("\\u0026"),
            '\u{2028}' => out.push_str("\\u2028"),
            '\u{2029}' => out.push_str("\\u2029"),
            c => out.push(c),
        }
    }
    out
}

/// Response extension of an [`ApiError::NotLeader`] answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NotLeader;

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        let challenge = match &self {
            ApiError::Unauthorized { challenge, .. } => challenge.clone(),
            _ => None,
        };
        let not_leader = matches!(self, ApiError::NotLeader { .. });
        let mut response = (status, self.body()).into_response();
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(ERROR_CONTENT_TYPE));
        if let Some(challenge) = challenge {
            if let Ok(value) = HeaderValue::from_str(&challenge) {
                headers.insert(header::WWW_AUTHENTICATE, value);
            }
        }
        if not_leader {
            response.extensions_mut().insert(NotLeader);
        }
        response
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::path::PathBuf;

    /// The `notary` fixtures folder, or `None` (with a note) when absent.
    pub(crate) fn fixtures_dir() -> Option<PathBuf> {
        seal_testkit::notary_fixtures()
    }

    /// Exchange `n` of the Notary CLI transcript: its `http.jsonl` line and
    /// the exact request body.
    pub(crate) fn transcript_exchange(n: u64) -> Option<(serde_json::Value, Vec<u8>)> {
        let dir = fixtures_dir()?;
        let jsonl = std::fs::read_to_string(dir.join("transcript/http.jsonl")).unwrap();
        let line = jsonl
            .lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
            .find(|v| v["n"] == n)
            .unwrap();
        let body = std::fs::read(dir.join(format!("transcript/bodies/{n:04}-req.bin"))).unwrap();
        Some((line, body))
    }

    fn fixture_case(description: &str) -> Option<(u16, String, String)> {
        let dir = fixtures_dir()?;
        let text = std::fs::read_to_string(dir.join("errors/error-bodies.json")).unwrap();
        let cases: Vec<Value> = serde_json::from_str(&text).unwrap();
        let case = cases
            .iter()
            .find(|c| c["description"] == description)
            .unwrap_or_else(|| panic!("no fixture case {description}"));
        Some((
            case["status"].as_u64().unwrap() as u16,
            case["content_type"].as_str().unwrap().to_string(),
            case["body"].as_str().unwrap().to_string(),
        ))
    }

    async fn assert_matches_fixture(err: ApiError, description: &str) {
        let Some((status, content_type, body)) = fixture_case(description) else {
            return;
        };
        let resp = err.into_response();
        assert_eq!(resp.status().as_u16(), status, "{description}");
        assert_eq!(resp.headers()[header::CONTENT_TYPE], content_type.as_str());
        let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX).await.unwrap();
        assert_eq!(std::str::from_utf8(&bytes).unwrap(), body, "{description}");
    }

    #[tokio::test]
    async fn bodies_match_notary_fixture() {
        let cases = vec![
            (ApiError::MetadataNotFound, "metadata not found"),
            (ApiError::MetadataNotFound, "timestamp not found"),
            (
                ApiError::RouteNotFound {
                    method: "GET".into(),
                    path: "/nonexistent".into(),
                },
                "catch-all route",
            ),
            (
                ApiError::RouteNotFound {
                    method: "PUT".into(),
                    path: "/v2/x/_trust/tuf/root.json".into(),
                },
                "unsupported method -> catch-all 404",
            ),
            (
                ApiError::InvalidParameters {
                    detail: Some("invalid records parameter: strconv.ParseInt: parsing \"\": invalid syntax".into()),
                },
                "changefeed without records param",
            ),
            (ApiError::InvalidParameters { detail: None }, "changefeed bad change_id"),
            (
                ApiError::InvalidUpdate {
                    kind: UpdateErrorKind::Validation,
                    msg: "no pre-existing root and no root provided in update.".into(),
                },
                "targets without any root",
            ),
            (
                ApiError::InvalidUpdate {
                    kind: UpdateErrorKind::BadTargets,
                    msg: "tuf: data has no signatures".into(),
                },
                "unsigned targets for existing GUN",
            ),
            (ApiError::InvalidRole { role: "bogus".into() }, "invalid role filename"),
            (
                ApiError::MalformedJson { role: "targets".into() },
                "malformed JSON part",
            ),
            (
                ApiError::MalformedUpload {
                    reason: "not multipart".into(),
                },
                "non-multipart body",
            ),
        ];
        for (err, description) in cases {
            assert_matches_fixture(err, description).await;
        }
    }

    #[test]
    fn unauthorized_body_matches_auth_fixture() {
        let Some(dir) = fixtures_dir() else { return };
        let text = std::fs::read_to_string(dir.join("errors/auth-challenges.json")).unwrap();
        let v: Value = serde_json::from_str(&text).unwrap();
        let ex = &v["exchanges"][0];
        let err = ApiError::Unauthorized {
            access: vec![AccessItem {
                resource_type: "registry".into(),
                name: "catalog".into(),
                action: "*".into(),
            }],
            challenge: None,
        };
        assert_eq!(err.status().as_u16(), 401);
        assert_eq!(String::from_utf8(err.body()).unwrap(), ex["body"].as_str().unwrap());
    }

    #[test]
    fn other_codes_have_notary_shapes() {
        let body = |e: ApiError| String::from_utf8(e.body()).unwrap();
        assert_eq!(
            body(ApiError::OldVersion {
                reason: "x".into(),
                source: None
            }),
            "{\"errors\":[{\"code\":\"VERSION\",\"message\":\"A newer version of metadata is already available.\",\"detail\":{}}]}\n"
        );
        assert_eq!(
            body(ApiError::NoFilename { part: 0 }),
            "{\"errors\":[{\"code\":\"NO_FILENAME\",\"message\":\"No file/role name provided.\"}]}\n"
        );
        assert_eq!(
            body(ApiError::InvalidGun {
                gun: "x".into(),
                prefixes: vec!["docker.io/".into(), "quay.io/".into()]
            }),
            "{\"errors\":[{\"code\":\"INVALID_GUN\",\"message\":\"The server does not support actions on images of this name.\",\"detail\":\"Require GUNs with prefix: [docker.io/ quay.io/]\"}]}\n"
        );
        assert_eq!(
            body(ApiError::Unknown {
                reason: "x".into(),
                source: None
            }),
            "{\"errors\":[{\"code\":\"UNKNOWN\",\"message\":\"unknown error\"}]}\n"
        );
        let unavailable = ApiError::Unavailable {
            reason: "raft leader unknown".into(),
            source: None,
        };
        assert_eq!(unavailable.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(
            body(unavailable),
            "{\"errors\":[{\"code\":\"UNAVAILABLE\",\"message\":\"The server cannot serve this request right now.\",\"detail\":\"raft leader unknown\"}]}\n"
        );
        let too_large = ApiError::TooLarge {
            limit: "limits.max_body_bytes",
            max: 10,
        };
        assert_eq!(too_large.status(), StatusCode::PAYLOAD_TOO_LARGE);
        assert_eq!(
            body(too_large),
            "{\"errors\":[{\"code\":\"TOO_LARGE\",\"message\":\"The body of your request is too large.\",\"detail\":{\"limit\":\"limits.max_body_bytes\",\"max\":10}}]}\n"
        );
    }

    #[test]
    fn signer_errors_map_to_unknown_or_unavailable() {
        use crate::signer::SignerError;
        let e: ApiError = SignerError::KeyNotFound { key_id: "k".into() }.into();
        assert_eq!((e.status().as_u16(), e.code()), (500, "UNKNOWN"));
        let e: ApiError = SignerError::Unavailable { message: "down".into() }.into();
        assert_eq!((e.status().as_u16(), e.code()), (503, "UNAVAILABLE"));
    }

    #[test]
    fn conversions_keep_their_source_and_send_notarys_body() {
        use std::error::Error as _;
        let refused = WriteError::Refused { reason: "busy".into() };
        let e = ApiError::from(refused.clone());
        assert_eq!((e.status().as_u16(), e.code()), (503, "UNAVAILABLE"));
        assert_eq!(e.to_string(), "unavailable: raft refused the write: busy");
        let source = e.source().expect("a source");
        assert_eq!(source.to_string(), refused.to_string());
        let e = ApiError::from(WriteError::ForwardToLeader {
            leader_id: Some(2),
            leader_addr: None,
        });
        assert_eq!(e, ApiError::NotLeader { leader: Some(2) });

        let too_large = seal_tuf::Error::VersionTooLarge {
            role: "timestamp".into(),
            version: 1 << 64,
        };
        let e = ApiError::from(too_large.clone());
        assert_eq!(
            (e.code(), e.to_string()),
            ("UPDATING", format!("error updating: {too_large}"))
        );
        let Some(ApiError::Updating {
            source: Some(cause), ..
        }) = Some(&e)
        else {
            panic!("{e:?}")
        };
        assert_eq!(cause.get().downcast_ref::<seal_tuf::Error>(), Some(&too_large));
        assert_eq!(
            String::from_utf8(e.body()).unwrap(),
            "{\"errors\":[{\"code\":\"UPDATING\",\"message\":\"An error has occurred while updating the TUF repository.\"}]}\n"
        );
        let e = ApiError::from(seal_tuf::Error::NoServerKey {
            role: "timestamp".into(),
        });
        assert_eq!(e, ApiError::NoCryptoService);

        let e = ApiError::from(UpdateError::OldVersion {
            role: "targets".into(),
            version: 2,
            current: 3,
        });
        assert_eq!(e.to_string(), "old version: targets version 2 is not above 3");
        assert!(e.source().is_some());
        assert_eq!(
            String::from_utf8(e.body()).unwrap(),
            "{\"errors\":[{\"code\":\"VERSION\",\"message\":\"A newer version of metadata is already available.\",\"detail\":{}}]}\n"
        );
    }

    #[test]
    fn go_escaping_of_html_characters() {
        let e = ApiError::InvalidRole { role: "<a&b>".into() };
        assert!(String::from_utf8(e.body())
            .unwrap()
            .contains("\"detail\":\"\\u003ca\\u0026b\\u003e\""));
    }
}
