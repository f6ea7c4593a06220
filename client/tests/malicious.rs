//! The client against a malicious or broken server: tampered, replayed,
//! frozen, mix-and-match and oversized metadata must all be refused, with an
//! error naming the role, and nothing refused may reach the local cache.
//! Also: the real Notary fixture metadata verifies.

mod common;

use common::StaticServer;
use seal_client::error::ClientError;
use seal_client::remote::RemoteConfig;
use seal_client::repo::{Repository, Settings, TargetEntry};
use seal_tuf::testing::TestRepo;
use time::{Duration, OffsetDateTime};

const GUN: &str = "example.com/mal";

fn settings(url: &str, trust: &std::path::Path) -> Settings {
    Settings {
        trust_dir: trust.to_owned(),
        remote: RemoteConfig {
            url: url.to_owned(),
            ..RemoteConfig::default()
        },
        pinned: Default::default(),
        disable_tofu: false,
    }
}

/// A consistent state at `version`: root v1, targets, snapshot and
/// timestamp at `version`, served by `server`.
fn serve(server: &StaticServer, repo: &TestRepo, version: u64, targets: &[(&str, &[u8])]) -> Vec<u8> {
    let root = repo.root_file(1);
    let t = repo.targets_file(version, targets);
    let s = repo.snapshot_file(version, &[("root", &root), ("targets", &t)]);
    let ts = repo.timestamp_file(version, &s);
    server.put(GUN, "root", &root);
    server.put(GUN, "targets", &t);
    server.put(GUN, "snapshot", &s);
    server.put(GUN, "timestamp", &ts);
    t
}

struct Case {
    server: StaticServer,
    repo: TestRepo,
    trust: tempfile::TempDir,
    now: OffsetDateTime,
}

impl Case {
    fn new() -> Case {
        let now = OffsetDateTime::now_utc();
        Case {
            server: StaticServer::start(),
            repo: TestRepo::new(GUN, now),
            trust: tempfile::tempdir().unwrap(),
            now,
        }
    }

    fn client(&self) -> Repository {
        Repository::new(&settings(&self.server.url, self.trust.path()), GUN, self.now).unwrap()
    }

    fn list(&self) -> Result<Vec<TargetEntry>, ClientError> {
        self.client().list_targets(&[])
    }

    fn cached(&self, role: &str) -> Option<Vec<u8>> {
        std::fs::read(self.trust.path().join(format!("tuf/{GUN}/metadata/{role}.json"))).ok()
    }
}

fn tuf_error(r: Result<Vec<TargetEntry>, ClientError>) -> seal_tuf::Error {
    match r {
        Err(ClientError::Tuf(e)) => e,
        other => panic!("expected a verification error, got {other:?}"),
    }
}

#[test]
fn an_honest_server_is_believed() {
    let c = Case::new();
    serve(&c.server, &c.repo, 2, &[("app", b"app bytes")]);
    let l = c.list().unwrap();
    assert_eq!(l.len(), 1);
    assert_eq!(
        (l[0].name.as_str(), l[0].role.as_str(), l[0].meta.length),
        ("app", "targets", 9)
    );
    // Second run: the cache vouches for unchanged files, only the
    // timestamp is fetched again.
    c.server.requests.lock().unwrap().clear();
    c.list().unwrap();
    let reqs = c.server.requests.lock().unwrap().clone();
    assert_eq!(
        reqs,
        [
            "GET /v2/".to_owned(),
            format!("GET /v2/{GUN}/_trust/tuf/timestamp.json")
        ]
    );
}

#[test]
fn tampered_targets_are_refused() {
    let c = Case::new();
    let t = serve(&c.server, &c.repo, 2, &[("app", b"app bytes")]);
    // Change a target's length but keep the signature; re-sign snapshot and
    // timestamp over the tampered bytes so only the targets signature fails.
    let tampered = String::from_utf8(t)
        .unwrap()
        .replace("\"length\":9", "\"length\":10")
        .into_bytes();
    let root = c.repo.root_file(1);
    let s = c.repo.snapshot_file(2, &[("root", &root), ("targets", &tampered)]);
    c.server.put(GUN, "targets", &tampered);
    c.server.put(GUN, "snapshot", &s);
    c.server.put(GUN, "timestamp", &c.repo.timestamp_file(2, &s));
    let e = tuf_error(c.list());
    assert!(e.to_string().starts_with("targets:"), "{e}");
    assert!(c.cached("targets").is_none(), "refused metadata must not be cached");
}

#[test]
fn a_targets_file_the_snapshot_does_not_vouch_for_is_refused() {
    // Mix and match: a validly signed targets of another version.
    let c = Case::new();
    let old = c.repo.targets_file(2, &[("app", b"old")]);
    let current = serve(&c.server, &c.repo, 3, &[("app", b"new")]);
    c.server.put(GUN, "targets", &old);
    let sha = {
        use sha2::Digest as _;
        hex::encode(sha2::Sha256::digest(&current))
    };
    c.server
        .put_path(&format!("/v2/{GUN}/_trust/tuf/targets.{sha}.json"), &old);
    let e = tuf_error(c.list());
    assert!(e.to_string().starts_with("targets:"), "{e}");
}

#[test]
fn a_replayed_older_state_is_refused() {
    let c = Case::new();
    serve(&c.server, &c.repo, 3, &[("app", b"v3")]);
    c.list().unwrap();
    // The server (or a mirror) now replays the older, validly signed state.
    let c2 = Case {
        server: StaticServer::start(),
        repo: c.repo,
        trust: c.trust,
        now: c.now,
    };
    serve(&c2.server, &c2.repo, 2, &[("app", b"v2")]);
    let e = tuf_error(c2.list());
    assert!(
        matches!(&e, seal_tuf::Error::Rollback { role, trusted: 3, got: 2 } if role == "timestamp"),
        "{e}"
    );
}

#[test]
fn an_expired_timestamp_is_refused() {
    // Signed 20 days ago: the 14-day timestamp has expired (freeze).
    let mut c = Case::new();
    c.repo = TestRepo::new(GUN, c.now - Duration::days(20));
    serve(&c.server, &c.repo, 2, &[("app", b"frozen")]);
    let e = tuf_error(c.list());
    assert!(
        matches!(&e, seal_tuf::Error::Expired { role, .. } if role == "timestamp"),
        "{e}"
    );
}

#[test]
fn oversized_metadata_is_refused() {
    let c = Case::new();
    serve(&c.server, &c.repo, 2, &[("app", b"x")]);
    // Endless timestamp.
    let mut huge = c.repo.timestamp_file(2, b"irrelevant");
    huge.resize(2 << 20, b' ');
    c.server.put(GUN, "timestamp", &huge);
    let e = tuf_error(c.list());
    assert!(
        matches!(&e, seal_tuf::Error::TooLarge { role, .. } if role == "timestamp"),
        "{e}"
    );

    // A snapshot longer than the timestamp says.
    let c = Case::new();
    serve(&c.server, &c.repo, 2, &[("app", b"x")]);
    let root = c.repo.root_file(1);
    let t = c.repo.targets_file(2, &[("app", b"x")]);
    let s = c.repo.snapshot_file(2, &[("root", &root), ("targets", &t)]);
    let mut padded = s.clone();
    padded.extend(std::iter::repeat_n(b' ', 4096));
    c.server.put(GUN, "snapshot", &padded);
    c.server.put_path(
        &format!("/v2/{GUN}/_trust/tuf/snapshot.{}.json", {
            use sha2::Digest as _;
            hex::encode(sha2::Sha256::digest(&s))
        }),
        &padded,
    );
    let e = tuf_error(c.list());
    assert!(e.to_string().starts_with("snapshot:"), "{e}");
}

#[test]
fn notary_fixture_metadata_verifies() {
    let Some(fx) = common::fixtures() else { return };
    let gun = "example.com/interop/app";
    // The fixtures' timestamps expire on 2026-12-05: judge them on 2026-11-22.
    let now = seal_tuf::time::parse_rfc3339("2026-11-22T00:00:00Z").unwrap();
    let server = StaticServer::start();
    let trust = tempfile::tempdir().unwrap();
    let load = |state: &str| {
        let dir = fx.join("metadata/example.com_interop_app").join(state);
        for role in ["root", "targets", "snapshot", "timestamp", "targets/releases"] {
            if let Ok(b) = std::fs::read(dir.join(format!("{role}.json"))) {
                server.put(gun, role, &b);
            }
        }
    };
    let client = || Repository::new(&settings(&server.url, trust.path()), gun, now).unwrap();

    load("1-after-first-publish");
    let l = client().list_targets(&[]).unwrap();
    assert_eq!(l.len(), 1);
    assert_eq!(
        l[0].meta.sha256_hex().unwrap(),
        "0a2b5b8deeb5d5390939742f1e00b4208e6a0f74ab3ef1042ec0186a48f8f677"
    );

    // State 2: root v2 (snapshot key rotated to the server), a delegation.
    load("2-final");
    let l = client().list_targets(&[]).unwrap();
    assert_eq!(l.len(), 1);
    assert_eq!(
        (l[0].name.as_str(), l[0].role.as_str(), l[0].meta.length),
        ("v2", "targets/releases", 29)
    );
    let payload = std::fs::read(fx.join("targets-payloads/v2.txt")).unwrap();
    let t = client().lookup("v2").unwrap();
    t.meta.check("v2", &payload).unwrap();
    let ds = client().list_delegations().unwrap();
    assert_eq!(
        ds[0].canonical_ids,
        ["e2069a2d6863a8a5e1f061d8f9549ff3678315ffe94e3d8c89331c16480d1fd8"]
    );

    // After the fixtures' timestamps expire, the client refuses them.
    let later = seal_tuf::time::parse_rfc3339("2026-12-06T00:00:00Z").unwrap();
    let r = Repository::new(&settings(&server.url, trust.path()), gun, later)
        .unwrap()
        .list_targets(&[]);
    assert!(
        matches!(r, Err(ClientError::Tuf(seal_tuf::Error::Expired { .. }))),
        "{r:?}"
    );
}
