use super::*;
use crate::error::tests::fixtures_dir;
use sha2::{Digest, Sha256};
use std::path::PathBuf;
use std::sync::Mutex;
use tower::ServiceExt;

const GUN: &str = "example.com/interop/app";
const TS_KEY: &str =
    r#"{"keytype":"ed25519","keyval":{"public":"LN3wHx8BGVJVVsVJgmYsiEUUyGETPz3xYv3rIAoGiDQ=","private":null}}"#;

/// An in-memory backend: (gun, role) → list of versions' bytes.
#[derive(Default)]
struct MemBackend {
    files: Mutex<BTreeMap<(String, String), Vec<Bytes>>>,
    published: Mutex<Vec<(String, Vec<RoleFile>)>>,
    deleted: Mutex<Vec<String>>,
    queries: Mutex<Vec<ChangefeedQuery>>,
    changes: Vec<ChangeRecord>,
    publish_error: Option<ApiError>,
    /// When set, each publish waits here until the barrier's count of publishes are in it.
    publish_barrier: Option<Arc<tokio::sync::Barrier>>,
    unavailable: Option<String>,
    health: Health,
}

fn modified() -> OffsetDateTime {
    time::macros::datetime!(2026-11-21 23:54:56 UTC)
}

fn version_of(bytes: &[u8]) -> u64 {
    let v: serde_json::Value = serde_json::from_slice(bytes).unwrap();
    v["signed"]["version"].as_u64().unwrap()
}

#[async_trait]
impl Backend for MemBackend {
    fn readiness(&self) -> Readiness {
        match &self.unavailable {
            Some(reason) => Readiness::Unavailable { reason: reason.clone() },
            None => Readiness::Ready,
        }
    }
    async fn get_current(&self, gun: &str, role: &str) -> Result<Option<StoredMetadata>, ApiError> {
        let files = self.files.lock().unwrap();
        Ok(files
            .get(&(gun.to_string(), role.to_string()))
            .and_then(|v| v.last())
            .map(|b| StoredMetadata {
                bytes: b.clone(),
                last_modified: Some(modified()),
            }))
    }
    async fn get_by_checksum(
        &self,
        gun: &str,
        role: &str,
        sha256_hex: &str,
    ) -> Result<Option<StoredMetadata>, ApiError> {
        let files = self.files.lock().unwrap();
        Ok(files
            .get(&(gun.to_string(), role.to_string()))
            .and_then(|v| v.iter().find(|b| hex::encode(Sha256::digest(b)) == sha256_hex))
            .map(|b| StoredMetadata {
                bytes: b.clone(),
                last_modified: Some(modified()),
            }))
    }
    async fn get_by_version(&self, gun: &str, role: &str, version: u64) -> Result<Option<StoredMetadata>, ApiError> {
        let files = self.files.lock().unwrap();
        Ok(files
            .get(&(gun.to_string(), role.to_string()))
            .and_then(|v| v.iter().find(|b| version_of(b) == version))
            .map(|b| StoredMetadata {
                bytes: b.clone(),
                last_modified: None,
            }))
    }
    async fn publish(&self, gun: &str, files: Vec<RoleFile>) -> Result<(), ApiError> {
        if let Some(e) = &self.publish_error {
            return Err(e.clone());
        }
        if let Some(barrier) = &self.publish_barrier {
            barrier.wait().await;
        }
        self.published.lock().unwrap().push((gun.to_string(), files));
        Ok(())
    }
    async fn delete_gun(&self, gun: &str) -> Result<(), ApiError> {
        self.deleted.lock().unwrap().push(gun.to_string());
        Ok(())
    }
    async fn get_key(&self, _gun: &str, _role: KeyRole) -> Result<PublicKeyInfo, ApiError> {
        let public = base64::Engine::decode(
            &base64::engine::general_purpose::STANDARD,
            "LN3wHx8BGVJVVsVJgmYsiEUUyGETPz3xYv3rIAoGiDQ=",
        )
        .unwrap();
        Ok(PublicKeyInfo::new(crate::config::KeyAlgorithm::Ed25519, public))
    }
    async fn rotate_key(&self, gun: &str, role: KeyRole) -> Result<PublicKeyInfo, ApiError> {
        self.get_key(gun, role).await
    }
    async fn changefeed(&self, query: &ChangefeedQuery) -> Result<Vec<ChangeRecord>, ApiError> {
        self.queries.lock().unwrap().push(query.clone());
        Ok(self.changes.clone())
    }
    async fn health(&self) -> Health {
        self.health.clone()
    }
}

fn fixture_metadata(dir: &std::path::Path, state: &str, role: &str) -> Bytes {
    let p: PathBuf = dir
        .join("metadata/example.com_interop_app")
        .join(state)
        .join(format!("{role}.json"));
    Bytes::from(std::fs::read(p).unwrap())
}

/// A backend holding state 1 and 2 of the fixture collection.
fn fixture_backend() -> Option<MemBackend> {
    let dir = fixtures_dir()?;
    let b = MemBackend::default();
    {
        let mut files = b.files.lock().unwrap();
        for role in ["root", "targets", "snapshot", "timestamp"] {
            let list = files.entry((GUN.into(), role.into())).or_default();
            list.push(fixture_metadata(&dir, "1-after-first-publish", role));
            list.push(fixture_metadata(&dir, "2-final", role));
        }
        files
            .entry((GUN.into(), "targets/releases".into()))
            .or_default()
            .push(fixture_metadata(&dir, "2-final", "targets/releases"));
    }
    Some(b)
}

struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    body: Vec<u8>,
}

impl Answer {
    fn text(&self) -> &str {
        std::str::from_utf8(&self.body).unwrap()
    }
    fn header(&self, name: header::HeaderName) -> Option<&str> {
        self.headers.get(name).map(|v| v.to_str().unwrap())
    }
}

async fn call_with(state: AppState, request: Request<Body>) -> Answer {
    let response = router(state).oneshot(request).await.unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let body = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .unwrap()
        .to_vec();
    Answer { status, headers, body }
}

async fn call(backend: Arc<MemBackend>, method: &str, uri: &str) -> Answer {
    let state = AppState::new(backend, Metrics::new().unwrap());
    let request = Request::builder().method(method).uri(uri).body(Body::empty()).unwrap();
    call_with(state, request).await
}

fn fixture_error_cases() -> Vec<serde_json::Value> {
    let Some(dir) = fixtures_dir() else {
        return vec![];
    };
    let text = std::fs::read_to_string(dir.join("errors/error-bodies.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

#[tokio::test]
async fn fixture_get_cases_answer_identically() {
    let backend = Arc::new(MemBackend::default());
    for case in fixture_error_cases() {
        if case["upload_part_filename"].is_string() || case["method"] == "POST" {
            continue;
        }
        let a = call(
            backend.clone(),
            case["method"].as_str().unwrap(),
            case["path"].as_str().unwrap(),
        )
        .await;
        let d = case["description"].as_str().unwrap();
        assert_eq!(a.status.as_u16() as u64, case["status"].as_u64().unwrap(), "{d}");
        assert_eq!(a.text(), case["body"].as_str().unwrap(), "{d}");
        assert_eq!(a.header(header::CONTENT_TYPE), case["content_type"].as_str(), "{d}");
    }
}

#[tokio::test]
async fn serves_metadata_with_cache_headers() {
    let Some(backend) = fixture_backend() else {
        return;
    };
    let dir = fixtures_dir().unwrap();
    let backend = Arc::new(backend);
    let ts = fixture_metadata(&dir, "2-final", "timestamp");
    let a = call(backend.clone(), "GET", &format!("/v2/{GUN}/_trust/tuf/timestamp.json")).await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(a.body, ts.to_vec());
    assert_eq!(a.header(header::CONTENT_TYPE), Some("application/json"));
    assert_eq!(
        a.header(header::CACHE_CONTROL),
        Some("public, max-age=300, s-maxage=300, must-revalidate")
    );
    assert_eq!(a.header(header::LAST_MODIFIED), Some("Sat, 21 Nov 2026 23:54:56 GMT"));

    // By checksum, as the CLI asks (transcript exchange 8).
    let snap1 = fixture_metadata(&dir, "1-after-first-publish", "snapshot");
    let sum = hex::encode(Sha256::digest(&snap1));
    assert_eq!(sum, "78ef50942a62194c0dea5c8eb002a2bdefb891450d3fb38947606f6b2b8028af");
    let a = call(
        backend.clone(),
        "GET",
        &format!("/v2/{GUN}/_trust/tuf/snapshot.{sum}.json"),
    )
    .await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(a.body, snap1.to_vec());
    assert_eq!(
        a.header(header::CACHE_CONTROL),
        Some("public, max-age=2592000, s-maxage=2592000")
    );

    // A delegation by checksum.
    let rel = fixture_metadata(&dir, "2-final", "targets/releases");
    let sum = hex::encode(Sha256::digest(&rel));
    let a = call(
        backend.clone(),
        "GET",
        &format!("/v2/{GUN}/_trust/tuf/targets/releases.{sum}.json"),
    )
    .await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(a.body, rel.to_vec());

    // By version.
    let root1 = fixture_metadata(&dir, "1-after-first-publish", "root");
    let a = call(backend.clone(), "GET", &format!("/v2/{GUN}/_trust/tuf/1.root.json")).await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(a.body, root1.to_vec());
    assert_eq!(
        a.header(header::CACHE_CONTROL),
        Some("public, max-age=2592000, s-maxage=2592000")
    );
    assert_eq!(a.header(header::LAST_MODIFIED), None);

    let not_found = "{\"errors\":[{\"code\":\"METADATA_NOT_FOUND\",\"message\":\"You have requested metadata that does not exist.\",\"detail\":{}}]}\n";
    for path in [
        format!("/v2/{GUN}/_trust/tuf/snapshot.{}.json", "0".repeat(64)),
        format!("/v2/{GUN}/_trust/tuf/snapshot.{}.json", "a".repeat(128)),
        format!("/v2/{GUN}/_trust/tuf/9.root.json"),
        format!("/v2/{GUN}/_trust/tuf/99999999999999999999999.root.json"),
        format!("/v2/{GUN}/_trust/tuf/targets/Nope.json"),
        format!("/v2/{GUN}/_trust/tuf/targets/other.json"),
    ] {
        let a = call(backend.clone(), "GET", &path).await;
        assert_eq!(a.status, StatusCode::NOT_FOUND, "{path}");
        assert_eq!(a.text(), not_found, "{path}");
        assert_eq!(a.header(header::CACHE_CONTROL), None, "{path}");
    }
}

#[tokio::test]
async fn percent_encoded_paths_route() {
    let Some(backend) = fixture_backend() else {
        return;
    };
    let a = call(
        Arc::new(backend),
        "GET",
        "/v2/example.com%2Finterop/app/_trust/tuf/root.json",
    )
    .await;
    assert_eq!(a.status, StatusCode::OK);
    let a = call(Arc::new(MemBackend::default()), "GET", "/v2/%zz/_trust/tuf/root.json").await;
    assert_eq!(a.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn zero_cache_age_disables_caching() {
    let Some(backend) = fixture_backend() else {
        return;
    };
    let mut state = AppState::new(Arc::new(backend), Metrics::new().unwrap());
    state.current_cache = CachePolicy::current(0);
    let req = Request::builder()
        .uri(format!("/v2/{GUN}/_trust/tuf/root.json"))
        .body(Body::empty())
        .unwrap();
    let a = call_with(state, req).await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(a.header(header::CACHE_CONTROL), Some("max-age=0, no-cache, no-store"));
    assert_eq!(a.header(header::PRAGMA), Some("no-cache"));
}

fn transcript_post(n: u64) -> Option<(String, Vec<u8>)> {
    let (line, body) = crate::error::tests::transcript_exchange(n)?;
    let ct = line["req_headers"]["Content-Type"].as_str().unwrap().to_string();
    Some((ct, body))
}

fn post(uri: &str, content_type: &str, body: Vec<u8>) -> Request<Body> {
    Request::builder()
        .method("POST")
        .uri(uri)
        .header(header::CONTENT_TYPE, content_type)
        .header(header::CONTENT_LENGTH, body.len())
        .body(Body::from(body))
        .unwrap()
}

#[tokio::test]
async fn publish_passes_roles_to_backend() {
    let Some((ct, body)) = transcript_post(23) else {
        return;
    };
    let backend = Arc::new(MemBackend::default());
    let state = AppState::new(backend.clone(), Metrics::new().unwrap());
    let a = call_with(
        state.clone(),
        post(&format!("/v2/{GUN}/_trust/tuf/"), &ct, body.clone()),
    )
    .await;
    assert_eq!(a.status, StatusCode::OK);
    assert!(a.body.is_empty());
    assert_eq!(a.header(header::CONTENT_TYPE), None);
    let published = backend.published.lock().unwrap();
    assert_eq!(published.len(), 1);
    assert_eq!(published[0].0, GUN);
    let roles: Vec<&str> = published[0].1.iter().map(|f| f.role.as_str()).collect();
    assert_eq!(roles, ["targets/releases", "snapshot"]);
    let text = String::from_utf8(state.metrics.encode().unwrap()).unwrap();
    assert!(text.contains("seal_http_requests_total{code=\"200\",operation=\"UpdateTUF\"} 1"));
    assert!(text.contains(&format!(
        "seal_http_request_size_bytes_sum{{operation=\"UpdateTUF\"}} {}",
        body.len()
    )));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_parse_slot_is_held_for_the_parse_not_the_publish() {
    // Three publishes must be in the backend at once; the handler has one parse slot. Held
    // through the publish, the slot would let one in at a time and the barrier never open.
    let at_once = 3;
    let backend = Arc::new(MemBackend {
        publish_barrier: Some(Arc::new(tokio::sync::Barrier::new(at_once))),
        ..MemBackend::default()
    });
    let mut state = AppState::new(backend.clone(), Metrics::new().unwrap());
    state.parse_slots = Arc::new(tokio::sync::Semaphore::new(1));
    let body = concat!(
        "--B\r\nContent-Disposition: form-data; name=\"files\"; filename=\"targets\"\r\n\r\n",
        r#"{"signed":{"_type":"Targets","version":2},"signatures":[]}"#,
        "\r\n--B--\r\n"
    );
    let calls: Vec<_> = (0..at_once)
        .map(|i| {
            let request = post(
                &format!("/v2/{GUN}{i}/_trust/tuf/"),
                "multipart/form-data; boundary=B",
                body.as_bytes().to_vec(),
            );
            tokio::spawn(call_with(state.clone(), request))
        })
        .collect();
    let answers = tokio::time::timeout(
        std::time::Duration::from_secs(10),
        futures_util::future::join_all(calls),
    )
    .await
    .expect("publishes kept one at a time by the parse slot");
    for answer in answers {
        let answer = answer.unwrap();
        assert_eq!(answer.status, StatusCode::OK, "{}", answer.text());
    }
    assert_eq!(backend.published.lock().unwrap().len(), at_once);
}

#[tokio::test]
async fn publish_errors_match_fixture() {
    let cases = fixture_error_cases();
    if cases.is_empty() {
        return;
    }
    let find = |d: &str| cases.iter().find(|c| c["description"] == d).unwrap().clone();
    let uri = format!("/v2/{GUN}/_trust/tuf/");
    let backend = Arc::new(MemBackend::default());
    let state = AppState::new(backend.clone(), Metrics::new().unwrap());
    let part = |filename: &str, content: &str| {
        format!(
            "--B\r\nContent-Disposition: form-data; name=\"files\"; filename=\"{filename}\"\r\n\r\n{content}\r\n--B--\r\n"
        )
        .into_bytes()
    };
    let ct = "multipart/form-data; boundary=B";

    let a = call_with(state.clone(), post(&uri, "text/plain", b"hello".to_vec())).await;
    let c = find("non-multipart body");
    assert_eq!(a.status.as_u16() as u64, c["status"].as_u64().unwrap());
    assert_eq!(a.text(), c["body"].as_str().unwrap());

    let a = call_with(state.clone(), post(&uri, ct, part("bogus", "{}"))).await;
    assert_eq!(a.text(), find("invalid role filename")["body"].as_str().unwrap());

    let a = call_with(state.clone(), post(&uri, ct, part("targets", "{nope"))).await;
    assert_eq!(a.text(), find("malformed JSON part")["body"].as_str().unwrap());
    assert!(backend.published.lock().unwrap().is_empty());

    // Validation errors come from the backend and keep their body.
    let failing = Arc::new(MemBackend {
        publish_error: Some(ApiError::InvalidUpdate {
            kind: crate::error::UpdateErrorKind::Validation,
            msg: "no pre-existing root and no root provided in update.".into(),
        }),
        ..MemBackend::default()
    });
    let state = AppState::new(failing, Metrics::new().unwrap());
    let a = call_with(
        state,
        post(
            "/v2/example.com/newgun/_trust/tuf/",
            ct,
            part("targets", r#"{"signed":{},"signatures":[]}"#),
        ),
    )
    .await;
    let c = find("targets without any root");
    assert_eq!(a.status, StatusCode::BAD_REQUEST);
    assert_eq!(a.text(), c["body"].as_str().unwrap());
    assert_eq!(a.header(header::CONTENT_TYPE), Some("application/json; charset=utf-8"));
}

#[tokio::test]
async fn upload_limits_answer_413() {
    let Some((ct, body)) = transcript_post(5) else {
        return;
    };
    let backend = Arc::new(MemBackend::default());
    let mut state = AppState::new(backend.clone(), Metrics::new().unwrap());
    state.limits.max_body_bytes = 1000;
    let uri = format!("/v2/{GUN}/_trust/tuf/");
    // Declared too large.
    let a = call_with(state.clone(), post(&uri, &ct, body.clone())).await;
    assert_eq!(a.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert!(a.text().contains("\"code\":\"TOO_LARGE\""));
    // Streamed without a length.
    let req = Request::builder()
        .method("POST")
        .uri(&uri)
        .header(header::CONTENT_TYPE, &ct)
        .body(Body::from(body.clone()))
        .unwrap();
    let a = call_with(state.clone(), req).await;
    assert_eq!(a.status, StatusCode::PAYLOAD_TOO_LARGE);
    // Too many parts.
    state.limits = UploadLimits {
        max_parts: 1,
        ..UploadLimits::default()
    };
    let a = call_with(state, post(&uri, &ct, body)).await;
    assert_eq!(a.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert!(backend.published.lock().unwrap().is_empty());
}

#[tokio::test]
async fn gun_prefixes_filter() {
    let backend = Arc::new(MemBackend::default());
    let mut state = AppState::new(backend.clone(), Metrics::new().unwrap());
    state.gun_prefixes = Arc::new(vec!["docker.io/".into()]);
    let a = call_with(
        state.clone(),
        post(
            "/v2/quay.io/x/_trust/tuf/",
            "multipart/form-data; boundary=B",
            b"--B--".to_vec(),
        ),
    )
    .await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST);
    assert_eq!(
        a.text(),
        "{\"errors\":[{\"code\":\"INVALID_GUN\",\"message\":\"The server does not support actions on images of this name.\",\"detail\":\"Require GUNs with prefix: [docker.io/]\"}]}\n"
    );
    for (method, path) in [
        ("GET", "/v2/quay.io/x/_trust/tuf/root.json"),
        ("GET", "/v2/quay.io/x/_trust/tuf/timestamp.key"),
        ("POST", "/v2/quay.io/x/_trust/tuf/timestamp.key"),
        ("DELETE", "/v2/quay.io/x/_trust/tuf/"),
        ("GET", "/v2/quay.io/x/_trust/changefeed?records=1"),
    ] {
        let req = Request::builder().method(method).uri(path).body(Body::empty()).unwrap();
        let a = call_with(state.clone(), req).await;
        assert_eq!(a.status, StatusCode::NOT_FOUND, "{method} {path}");
        assert_eq!(
            a.text(),
            "{\"errors\":[{\"code\":\"METADATA_NOT_FOUND\",\"message\":\"You have requested metadata that does not exist.\"}]}\n"
        );
    }
    assert!(backend.deleted.lock().unwrap().is_empty());
    // Inside the prefix, and the global changefeed, pass.
    let req = Request::builder()
        .method("DELETE")
        .uri("/v2/docker.io/x/_trust/tuf/")
        .body(Body::empty())
        .unwrap();
    assert_eq!(call_with(state.clone(), req).await.status, StatusCode::OK);
    let req = Request::builder()
        .uri("/v2/_trust/changefeed?records=1")
        .body(Body::empty())
        .unwrap();
    assert_eq!(call_with(state, req).await.status, StatusCode::OK);
}

#[tokio::test]
async fn keys_delete_ping_health() {
    let backend = Arc::new(MemBackend::default());
    let a = call(backend.clone(), "GET", "/v2/example.com/a/_trust/tuf/timestamp.key").await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(a.text(), TS_KEY);
    let a = call(backend.clone(), "POST", "/v2/example.com/a/_trust/tuf/snapshot.key").await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(a.text(), TS_KEY);
    let a = call(backend.clone(), "GET", "/v2/example.com/a/_trust/tuf/root.key").await;
    assert_eq!(a.status, StatusCode::NOT_FOUND);

    let a = call(backend.clone(), "DELETE", "/v2/example.com/a/_trust/tuf/").await;
    assert_eq!(a.status, StatusCode::OK);
    assert!(a.body.is_empty());
    assert_eq!(*backend.deleted.lock().unwrap(), vec!["example.com/a"]);

    let a = call(backend.clone(), "GET", "/v2/").await;
    assert_eq!((a.status, a.text()), (StatusCode::OK, "{}"));
    let a = call(backend.clone(), "GET", "/_notary_server/health").await;
    assert_eq!((a.status, a.text()), (StatusCode::OK, "{}"));

    let degraded = BTreeMap::from([("Trust operational".to_string(), "signer unavailable".to_string())]);
    let a = call(
        Arc::new(MemBackend {
            health: Health {
                failing: BTreeMap::new(),
                degraded: degraded.clone(),
            },
            ..MemBackend::default()
        }),
        "GET",
        "/_notary_server/health",
    )
    .await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(a.text(), "{\"Trust operational\":\"signer unavailable\"}");

    let sick = Arc::new(MemBackend {
        health: Health {
            failing: BTreeMap::from([("raft".to_string(), "no leader".to_string())]),
            degraded,
        },
        ..MemBackend::default()
    });
    let a = call(sick, "GET", "/_notary_server/health").await;
    assert_eq!(a.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        a.text(),
        "{\"Trust operational\":\"signer unavailable\",\"raft\":\"no leader\"}"
    );
    assert_eq!(a.header(header::CONTENT_TYPE), Some("application/json; charset=utf-8"));

    let a = call(backend, "GET", "/metrics").await;
    assert_eq!(a.status, StatusCode::OK);
    assert!(a.text().contains("# TYPE seal_raft_term gauge"));
}

#[tokio::test]
async fn unavailable_node_answers_503_for_reads() {
    let backend = Arc::new(MemBackend {
        unavailable: Some("raft leader unknown".into()),
        ..MemBackend::default()
    });
    for path in [
        "/v2/example.com/a/_trust/tuf/root.json",
        "/v2/example.com/a/_trust/tuf/timestamp.key",
        "/v2/_trust/changefeed?records=1",
    ] {
        let a = call(backend.clone(), "GET", path).await;
        assert_eq!(a.status, StatusCode::SERVICE_UNAVAILABLE, "{path}");
        assert_eq!(
            a.text(),
            "{\"errors\":[{\"code\":\"UNAVAILABLE\",\"message\":\"The server cannot serve this request right now.\",\"detail\":\"raft leader unknown\"}]}\n"
        );
    }
    // Liveness endpoints still answer.
    assert_eq!(call(backend.clone(), "GET", "/v2/").await.status, StatusCode::OK);
    assert_eq!(call(backend, "GET", "/metrics").await.status, StatusCode::OK);
}

fn parse_fixture_changes(text: &str) -> Vec<ChangeRecord> {
    let v: serde_json::Value = serde_json::from_str(text).unwrap();
    v["records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| ChangeRecord {
            id: r["ID"].as_str().unwrap().parse().unwrap(),
            created_at: OffsetDateTime::parse(
                r["CreatedAt"].as_str().unwrap(),
                &time::format_description::well_known::Rfc3339,
            )
            .unwrap(),
            gun: r["GUN"].as_str().unwrap().into(),
            version: r["Version"].as_u64().unwrap(),
            sha256: r["SHA256"].as_str().unwrap().into(),
            category: if r["Category"] == "deletion" {
                ChangeCategory::Deletion
            } else {
                ChangeCategory::Update
            },
        })
        .collect()
}

#[tokio::test]
async fn changefeed_body_matches_fixture() {
    let Some(dir) = fixtures_dir() else { return };
    let text = std::fs::read_to_string(dir.join("metadata/example.com_interop_app/2-final/changefeed.json")).unwrap();
    let backend = Arc::new(MemBackend {
        changes: parse_fixture_changes(&text),
        ..MemBackend::default()
    });
    let a = call(
        backend.clone(),
        "GET",
        &format!("/v2/{GUN}/_trust/changefeed?change_id=0&records=100"),
    )
    .await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(a.text(), text);
    assert_eq!(
        backend.queries.lock().unwrap()[0],
        ChangefeedQuery {
            gun: Some(GUN.into()),
            change_id: 0,
            records: 100,
            reversed: false
        }
    );
}

#[tokio::test]
async fn changefeed_query_parsing() {
    let backend = Arc::new(MemBackend::default());
    for (query, expected) in [
        ("records=0", (0, 100, false)),
        ("records=10&change_id=5", (5, 10, false)),
        ("records=-5", (0, 5, true)),
        ("records=-5&change_id=-1", (-1, 5, true)),
        ("records=-1000", (0, 1000, true)),
        ("records=%2B7&change_id=", (0, 7, false)),
    ] {
        backend.queries.lock().unwrap().clear();
        let a = call(backend.clone(), "GET", &format!("/v2/_trust/changefeed?{query}")).await;
        assert_eq!(a.status, StatusCode::OK, "{query}");
        assert_eq!(a.text(), "{\"count\":0,\"records\":[]}");
        let q = backend.queries.lock().unwrap()[0].clone();
        assert_eq!((q.change_id, q.records, q.reversed), expected, "{query}");
        assert_eq!(q.gun, None);
    }
    let detail = |d: &str| {
        format!("{{\"errors\":[{{\"code\":\"INVALID_PARAMETERS\",\"message\":\"The parameters provided are not valid.\",\"detail\":\"invalid records parameter: strconv.ParseInt: parsing {d}\"}}]}}\n")
    };
    for (query, body) in [
        ("", detail("\\\"\\\": invalid syntax")),
        ("records=abc", detail("\\\"abc\\\": invalid syntax")),
        ("records=1.5", detail("\\\"1.5\\\": invalid syntax")),
        ("records=99999999999", detail("\\\"99999999999\\\": value out of range")),
        (
            "records=-2147483648",
            "{\"errors\":[{\"code\":\"INVALID_PARAMETERS\",\"message\":\"The parameters provided are not valid.\",\"detail\":\"invalid records parameter: at most 1000 records a page, forward or back\"}]}\n".to_string(),
        ),
        (
            "records=1001",
            "{\"errors\":[{\"code\":\"INVALID_PARAMETERS\",\"message\":\"The parameters provided are not valid.\",\"detail\":\"invalid records parameter: at most 1000 records a page, forward or back\"}]}\n".to_string(),
        ),
        (
            "records=10&change_id=abc",
            "{\"errors\":[{\"code\":\"INVALID_PARAMETERS\",\"message\":\"The parameters provided are not valid.\",\"detail\":{}}]}\n".to_string(),
        ),
    ] {
        let a = call(backend.clone(), "GET", &format!("/v2/x/_trust/changefeed?{query}")).await;
        assert_eq!(a.status, StatusCode::BAD_REQUEST, "{query}");
        assert_eq!(a.text(), body, "{query}");
    }
}

#[test]
fn percent_decoding() {
    assert_eq!(percent_decode("/a%2Fb%20c").as_deref(), Some("/a/b c"));
    assert_eq!(percent_decode("/plain").as_deref(), Some("/plain"));
    for bad in ["%", "%2", "%+f", "%zz", "%ff"] {
        assert_eq!(percent_decode(bad), None, "{bad}");
    }
}

#[test]
fn time_formats() {
    let t = time::macros::datetime!(2026-11-21 23:54:56.210447549 UTC);
    assert_eq!(rfc3339_nano(t), "2026-11-21T23:54:56.210447549Z");
    let t = time::macros::datetime!(2026-11-21 23:54:56.5 UTC);
    assert_eq!(rfc3339_nano(t), "2026-11-21T23:54:56.5Z");
    let t = time::macros::datetime!(2026-11-21 23:54:56 +01:00);
    assert_eq!(rfc3339_nano(t), "2026-11-21T22:54:56Z");
}

/// Sends raw HTTP/1.1 bytes to the app served on loopback; returns the
/// raw response.
async fn raw_exchange(state: AppState, request: Vec<u8>) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move {
        axum::serve(listener, router(state)).await.unwrap();
    });
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream.write_all(&request).await.unwrap();
    let mut out = Vec::new();
    stream.read_to_end(&mut out).await.unwrap();
    server.abort();
    String::from_utf8(out).unwrap()
}

#[tokio::test]
async fn notary_cli_upload_over_real_http() {
    let Some((ct, body)) = transcript_post(23) else {
        return;
    };
    let backend = Arc::new(MemBackend::default());
    let state = AppState::new(backend.clone(), Metrics::new().unwrap());
    let mut request = format!(
        "POST /v2/{GUN}/_trust/tuf/ HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: Go-http-client/1.1\r\nContent-Length: {}\r\nContent-Type: {ct}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    request.extend_from_slice(&body);
    let response = raw_exchange(state.clone(), request).await;
    assert!(response.starts_with("HTTP/1.1 200 OK\r\n"), "{response}");
    assert!(!response.to_ascii_lowercase().contains("content-type"));
    let roles: Vec<String> = backend.published.lock().unwrap()[0]
        .1
        .iter()
        .map(|f| f.role.clone())
        .collect();
    assert_eq!(roles, ["targets/releases", "snapshot"]);

    let response = raw_exchange(
        state,
        b"GET /nonexistent HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".to_vec(),
    )
    .await;
    assert!(response.starts_with("HTTP/1.1 404 Not Found\r\n"), "{response}");
    assert!(response.contains("content-type: application/json; charset=utf-8\r\n"));
    assert!(response.ends_with(
        "\r\n\r\n{\"errors\":[{\"code\":\"METADATA_NOT_FOUND\",\"message\":\"You have requested metadata that does not exist.\"}]}\n"
    ));
}

struct DenyAll;
impl AuthHook for DenyAll {
    fn check(&self, _route: &Route, _headers: &HeaderMap) -> Result<(), ApiError> {
        Err(ApiError::Unauthorized {
            access: vec![],
            challenge: Some("Bearer realm=\"x\"".into()),
        })
    }
}

#[tokio::test]
async fn auth_hook_is_consulted() {
    let mut state = AppState::new(Arc::new(MemBackend::default()), Metrics::new().unwrap());
    state.auth = Some(Arc::new(DenyAll));
    let req = |p: &str| Request::builder().uri(p).body(Body::empty()).unwrap();
    let a = call_with(state.clone(), req("/v2/")).await;
    assert_eq!(a.status, StatusCode::UNAUTHORIZED);
    assert_eq!(a.header(header::WWW_AUTHENTICATE), Some("Bearer realm=\"x\""));
    let a = call_with(state.clone(), req("/_notary_server/health")).await;
    assert_eq!(a.status, StatusCode::OK);
    let a = call_with(state, req("/_seal/ready")).await;
    assert_eq!((a.status, a.text()), (StatusCode::OK, "{\"ready\":true}"));
}

#[tokio::test]
async fn ready_answers_from_the_backend_without_counting_as_a_request() {
    let state = AppState::new(Arc::new(MemBackend::default()), Metrics::new().unwrap());
    let req = |p: &str| Request::builder().uri(p).body(Body::empty()).unwrap();
    let a = call_with(state.clone(), req("/_seal/ready")).await;
    assert_eq!((a.status, a.text()), (StatusCode::OK, "{\"ready\":true}"));
    assert_eq!(a.header(header::CONTENT_TYPE), Some("application/json"));

    let sick = AppState::new(
        Arc::new(MemBackend {
            unavailable: Some("no Raft leader is known".into()),
            ..MemBackend::default()
        }),
        state.metrics.clone(),
    );
    let a = call_with(sick, req("/_seal/ready")).await;
    assert_eq!(a.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(a.text(), "{\"ready\":false,\"reason\":\"no Raft leader is known\"}");
    // Probes are not Notary requests: no 503 in the request counters.
    let text = String::from_utf8(state.metrics.encode().unwrap()).unwrap();
    assert!(!text.contains("operation=\"Ready\""), "{text}");
}

/// A cluster node's hooks that record what they were asked; forwarded writes wait for a
/// permit of `hold` and are answered 202.
struct Hooks {
    reads: Mutex<Vec<&'static str>>,
    forwarded: Mutex<Vec<(String, usize)>>,
    hold: tokio::sync::Semaphore,
}

impl Hooks {
    fn new(held: bool) -> Arc<Hooks> {
        Arc::new(Hooks {
            reads: Mutex::default(),
            forwarded: Mutex::default(),
            hold: tokio::sync::Semaphore::new(if held { 0 } else { 1 << 20 }),
        })
    }

    /// `builder` carrying these hooks as `cluster::forward_layer` adds them.
    fn on(self: &Arc<Self>, builder: axum::http::request::Builder) -> axum::http::request::Builder {
        let writes: Arc<dyn ClusterWrites> = self.clone();
        builder.extension(writes)
    }

    /// `state` with these hooks as its read gate, as a node's is.
    fn gate(self: &Arc<Self>, mut state: AppState) -> AppState {
        state.reads = Some(self.clone());
        state
    }
}

#[async_trait]
impl ClusterReads for Hooks {
    async fn before_read(&self, route: &Route, _: Option<&str>, _: &HeaderMap) -> Result<(), ApiError> {
        self.reads.lock().unwrap().push(route.operation());
        Ok(())
    }
    fn ready(&self) -> Result<(), String> {
        self.reads.lock().unwrap().push("ready");
        Err("node 2 was last in sync with the Raft leader 12300 ms ago".into())
    }
    fn stamp(&self, response: &mut Response) {
        response
            .headers_mut()
            .insert("X-Seal-Applied-Index", HeaderValue::from_static("7"));
    }
}

#[async_trait]
impl ClusterWrites for Hooks {
    fn leads(&self) -> bool {
        false
    }
    async fn forward(&self, parts: Parts, body: Bytes) -> Result<Response, (Parts, Bytes)> {
        self.forwarded
            .lock()
            .unwrap()
            .push((parts.uri.path().to_owned(), body.len()));
        let _permit = self.hold.acquire().await.unwrap();
        Ok(StatusCode::ACCEPTED.into_response())
    }
}

#[tokio::test]
async fn admission_comes_before_any_cluster_work() {
    let hooks = Hooks::new(false);
    let mut state = hooks.gate(AppState::new(Arc::new(MemBackend::default()), Metrics::new().unwrap()));
    let requests = || {
        let tuf = format!("/v2/{GUN}/_trust/tuf/");
        [
            ("GET", format!("{tuf}targets.json"), Some(("X-Seal-Min-Version", "99"))),
            ("GET", format!("{tuf}root.json?consistent"), None),
            (
                "GET",
                format!("{tuf}timestamp.key"),
                Some(("X-Seal-Consistency", "linearizable")),
            ),
            ("GET", format!("/v2/{GUN}/_trust/changefeed?records=1"), None),
            (
                "POST",
                tuf.clone(),
                Some(("Content-Type", "multipart/form-data; boundary=B")),
            ),
            ("DELETE", tuf.clone(), None),
            ("POST", format!("{tuf}snapshot.key"), None),
        ]
        .map(|(method, uri, header)| {
            let mut b = hooks.on(Request::builder().method(method).uri(uri));
            if let Some((k, v)) = header {
                b = b.header(k, v);
            }
            b.body(Body::from(if method == "POST" { "--B--" } else { "" })).unwrap()
        })
    };

    // Refused: no read check, no wait, nothing forwarded.
    state.auth = Some(Arc::new(DenyAll));
    for request in requests() {
        let what = format!("{} {}", request.method(), request.uri());
        assert_eq!(
            call_with(state.clone(), request).await.status,
            StatusCode::UNAUTHORIZED,
            "{what}"
        );
    }
    assert!(hooks.reads.lock().unwrap().is_empty());
    assert!(hooks.forwarded.lock().unwrap().is_empty());

    // Admitted: the reads are checked, the writes forwarded with their bodies.
    state.auth = None;
    for request in requests() {
        call_with(state.clone(), request).await;
    }
    assert_eq!(
        *hooks.reads.lock().unwrap(),
        ["GetRole", "GetRole", "GetKey", "Changefeed"]
    );
    let tuf = format!("/v2/{GUN}/_trust/tuf/");
    assert_eq!(
        *hooks.forwarded.lock().unwrap(),
        [(tuf.clone(), 5), (tuf.clone(), 0), (format!("{tuf}snapshot.key"), 5)]
    );
}

#[tokio::test]
async fn ready_on_a_cluster_node_is_the_read_gates_verdict() {
    let hooks = Hooks::new(false);
    // The backend alone would say ready: the gate's staleness check decides.
    let state = hooks.gate(AppState::new(Arc::new(MemBackend::default()), Metrics::new().unwrap()));
    let request = Request::builder().uri("/_seal/ready").body(Body::empty()).unwrap();
    let a = call_with(state, request).await;
    assert_eq!(a.status, StatusCode::SERVICE_UNAVAILABLE);
    // Every answer carries the gate's headers, a refusal too.
    assert_eq!(a.headers.get("X-Seal-Applied-Index").unwrap(), "7");
    assert_eq!(
        a.text(),
        "{\"ready\":false,\"reason\":\"node 2 was last in sync with the Raft leader 12300 ms ago\"}"
    );
    assert_eq!(*hooks.reads.lock().unwrap(), ["ready"]);
}

#[tokio::test]
async fn bodies_in_flight_to_the_leader_are_bounded() {
    let hooks = Hooks::new(true);
    let mut state = AppState::new(Arc::new(MemBackend::default()), Metrics::new().unwrap());
    state.forward_budget = ForwardBudget::new(1000);
    state.limits.max_body_bytes = 1000;
    let budget = state.forward_budget.clone();
    let uri = format!("/v2/{GUN}/_trust/tuf/");
    let publish = |len: usize, declared: bool| {
        let mut b = hooks.on(Request::builder().method("POST").uri(&uri));
        if declared {
            b = b.header(header::CONTENT_LENGTH, len);
        }
        b.body(Body::from(vec![b'x'; len])).unwrap()
    };
    let spawned = |request| tokio::spawn(call_with(state.clone(), request));
    let forwarded = || hooks.forwarded.lock().unwrap().len();
    let until = |n: usize| async move {
        while forwarded() < n {
            tokio::task::yield_now().await;
        }
    };

    // 600 bytes held for a leader that has not answered yet.
    let first = spawned(publish(600, true));
    until(1).await;
    assert_eq!(budget.in_use(), 600);
    // 500 more, declared or not, do not fit: 503 with Notary's body, nothing forwarded.
    for declared in [true, false] {
        let a = call_with(state.clone(), publish(500, declared)).await;
        assert_eq!(a.status, StatusCode::SERVICE_UNAVAILABLE, "declared: {declared}");
        assert_eq!(
            a.text(),
            "{\"errors\":[{\"code\":\"UNAVAILABLE\",\"message\":\"The server cannot serve this request right now.\",\"detail\":\"request bodies being forwarded to the Raft leader fill limits.max_forward_bytes_in_flight (1000 bytes); retry\"}]}\n"
        );
    }
    assert_eq!((forwarded(), budget.in_use()), (1, 600));
    // 400 fit.
    let second = spawned(publish(400, false));
    until(2).await;
    assert_eq!(budget.in_use(), 1000);
    // A body above limits.max_body_bytes is refused as before, whatever the budget.
    let a = call_with(state.clone(), publish(1001, true)).await;
    assert_eq!(a.status, StatusCode::PAYLOAD_TOO_LARGE);

    // The leader answers: the bytes come back.
    hooks.hold.add_permits(2);
    assert_eq!(first.await.unwrap().status, StatusCode::ACCEPTED);
    assert_eq!(second.await.unwrap().status, StatusCode::ACCEPTED);
    assert_eq!(budget.in_use(), 0);
    hooks.hold.add_permits(1);
    assert_eq!(call_with(state, publish(1000, true)).await.status, StatusCode::ACCEPTED);
    assert_eq!(budget.in_use(), 0);
}

#[test]
fn a_reservation_gives_back_what_it_took() {
    let budget = ForwardBudget::new(10);
    let mut a = budget.take(4).unwrap();
    assert!(budget.take(7).is_none());
    assert!(a.grow(6));
    assert!(!a.grow(1));
    assert_eq!(budget.in_use(), 10);
    drop(a);
    assert_eq!(budget.in_use(), 0);
    assert!(budget.take(u64::MAX).is_none());
    let b = budget.take(10).unwrap();
    assert!(budget.take(1).is_none());
    drop(b);
    assert_eq!((budget.in_use(), budget.max()), (0, 10));
}
