//! The real `seal-node` binary, replaying the request sequence of the
//! Notary CLI session (`shared/fixtures/notary/transcript/`) with metadata
//! this test signs with seal-tuf, then every error path, a kill -9
//! restart, and the timestamp refresher.

mod common;

use std::collections::BTreeMap;

use common::{multipart, sha256_hex, Node, Response};
use seal_tuf::client::{Limits, Repo, TrustPin};
use seal_tuf::metadata::{SignedFile, Timestamp};
use seal_tuf::testing::TestRepo;
use seal_tuf::PublicKey;
use time::OffsetDateTime;

const GUN: &str = "example.com/interop/app";
const V1: &[u8] = b"version 1 payload\n";
const V2: &[u8] = b"version 2 payload, delegated\n";
const NOT_FOUND: &str =
    "{\"errors\":[{\"code\":\"METADATA_NOT_FOUND\",\"message\":\"You have requested metadata that does not exist.\",\"detail\":{}}]}\n";

fn tuf(path: &str) -> String {
    format!("/v2/{GUN}/_trust/tuf/{path}")
}

fn ok(r: &Response, what: &str) {
    assert_eq!(r.status, 200, "{what}: {} {}", r.status, r.text());
}

/// Verifies the whole collection as a client would, following checksum
/// names from timestamp to snapshot to targets, as Notary's CLI does.
fn client_view(node: &Node, now: OffsetDateTime) -> Repo {
    let mut repo = Repo::new(GUN, TrustPin::Tofu, Limits::default());
    let root = node.get(&tuf("root.json"));
    ok(&root, "root.json");
    repo.update_root(root.body, now).unwrap();
    let ts = node.get(&tuf("timestamp.json"));
    ok(&ts, "timestamp.json");
    assert_eq!(
        ts.header("cache-control"),
        Some("public, max-age=300, s-maxage=300, must-revalidate")
    );
    repo.update_timestamp(ts.body, now).unwrap();
    let snap_sum = repo.timestamp().unwrap().snapshot_meta().unwrap().sha256_hex().unwrap();
    let snap = node.get(&tuf(&format!("snapshot.{snap_sum}.json")));
    ok(&snap, "snapshot by checksum");
    assert_eq!(
        snap.header("cache-control"),
        Some("public, max-age=2592000, s-maxage=2592000")
    );
    repo.update_snapshot(snap.body, now).unwrap();
    let roles: Vec<String> = repo
        .snapshot()
        .unwrap()
        .meta
        .keys()
        .filter(|r| r.starts_with("targets"))
        .cloned()
        .collect();
    let mut sorted = roles.clone();
    sorted.sort_by_key(|r| r.matches('/').count());
    for role in sorted {
        let sum = repo.snapshot().unwrap().meta[&role].sha256_hex().unwrap();
        let r = node.get(&tuf(&format!("{role}.{sum}.json")));
        ok(&r, &role);
        repo.update_targets(&role, r.body, now).unwrap();
    }
    repo
}

fn current(node: &Node) -> BTreeMap<String, Vec<u8>> {
    ["root", "targets", "snapshot", "timestamp", "targets/releases"]
        .iter()
        .map(|r| (r.to_string(), node.get(&tuf(&format!("{r}.json"))).body))
        .collect()
}

#[test]
fn notary_cli_session_replayed_against_seal_node() {
    let dir = tempfile::tempdir().unwrap();
    let node = Node::dev(dir.path());
    let now = OffsetDateTime::now_utc();

    // init
    let ping = node.get("/v2/");
    ok(&ping, "ping");
    assert_eq!(ping.body, b"{}");
    let key = node.get(&tuf("timestamp.key"));
    ok(&key, "timestamp.key");
    let ts_key = PublicKey::from_json(&key.body).unwrap();
    assert_eq!(key.body, ts_key.to_notary_key_json(), "Notary's key body shape");
    let mut repo = TestRepo::new(GUN, now);
    repo.server_timestamp = Some(ts_key);

    // publish: root.json 404, then root v1 + targets v2 + snapshot v2
    let missing = node.get(&tuf("root.json"));
    assert_eq!(missing.status, 404);
    assert_eq!(missing.text(), NOT_FOUND);
    assert_eq!(missing.header("content-type"), Some("application/json; charset=utf-8"));
    let first = repo.first_publish(&[("v1", V1)]);
    let r = node.publish(GUN, &first);
    ok(&r, "first publish");
    assert!(r.body.is_empty());

    // list / lookup
    let view = client_view(&node, now);
    let (role, meta) = view.lookup("v1", now).unwrap().unwrap();
    assert_eq!(role, "targets");
    seal_tuf::client::verify_target("v1", &meta, V1).unwrap();
    let served_root = node.get(&tuf("root.json")).body;
    assert_eq!(served_root, first[0].1, "served byte for byte as uploaded");
    assert_eq!(node.get(&tuf("1.root.json")).body, first[0].1, "by version");

    // delegation add: targets v3 + snapshot v3
    repo.delegate("targets/releases", &[""]);
    let t3 = repo.targets_file(3, &[("v1", V1)]);
    let s3 = repo.snapshot_file(3, &[("root", &first[0].1), ("targets", &t3)]);
    ok(
        &node.publish(GUN, &[("targets".into(), t3.clone()), ("snapshot".into(), s3)]),
        "delegation add",
    );

    // delegation publish: targets/releases v1 + snapshot v4 (filename with a slash)
    let rel1 = repo.delegation_file("targets/releases", 1, &[("v2", V2)]);
    let s4 = repo.snapshot_file(
        4,
        &[("root", &first[0].1), ("targets", &t3), ("targets/releases", &rel1)],
    );
    ok(
        &node.publish(GUN, &[("targets/releases".into(), rel1), ("snapshot".into(), s4)]),
        "delegation publish",
    );
    let view = client_view(&node, now);
    assert_eq!(view.lookup("v2", now).unwrap().unwrap().0, "targets/releases");

    // key rotate snapshot -r: POST snapshot.key, then root v2 listing it
    let new_key = node.post(&tuf("snapshot.key"), &[], b"");
    ok(&new_key, "rotate snapshot key");
    repo.server_snapshot = Some(PublicKey::from_json(&new_key.body).unwrap());
    let root2 = repo.root_file(2);
    ok(&node.publish(GUN, &[("root".into(), root2)]), "root v2");
    assert_eq!(
        node.get(&tuf("snapshot.key")).body,
        new_key.body,
        "the root-listed key is served"
    );
    let view = client_view(&node, now);
    assert_eq!(view.root().unwrap().version, 2);
    assert_eq!(view.snapshot().unwrap().version, 5, "server-generated snapshot");

    // remove v1: targets v4 alone; the server makes the snapshot
    let t4 = repo.targets_file(4, &[]);
    ok(&node.publish(GUN, &[("targets".into(), t4)]), "remove v1");
    // witness: targets/releases v2
    let rel2 = repo.delegation_file("targets/releases", 2, &[("v2", V2)]);
    ok(&node.publish(GUN, &[("targets/releases".into(), rel2)]), "witness");
    let view = client_view(&node, now);
    assert!(view.lookup("v1", now).unwrap().is_none());
    assert_eq!(view.lookup("v2", now).unwrap().unwrap().0, "targets/releases");
    assert_eq!(view.snapshot().unwrap().version, 7);
    assert_eq!(view.timestamp().unwrap().version, 6);

    // changefeed: one record per timestamp, as in the fixture
    let feed = node.get(&format!("/v2/{GUN}/_trust/changefeed?change_id=0&records=100"));
    ok(&feed, "changefeed");
    let v: serde_json::Value = serde_json::from_slice(&feed.body).unwrap();
    assert_eq!(v["count"], 6);
    let last = &v["records"][5];
    assert_eq!(last["Version"], 6);
    assert_eq!(last["Category"], "update");
    assert_eq!(last["SHA256"], sha256_hex(&node.get(&tuf("timestamp.json")).body));
    let global = node.get("/v2/_trust/changefeed?records=-1");
    ok(&global, "global changefeed");

    // delete --remote, then nothing is there
    ok(&node.delete(&tuf("")), "delete");
    let gone = node.get(&tuf("root.json"));
    assert_eq!(gone.status, 404);
    assert_eq!(gone.text(), NOT_FOUND);
    let feed: serde_json::Value =
        serde_json::from_slice(&node.get(&format!("/v2/{GUN}/_trust/changefeed?records=-1")).body).unwrap();
    assert_eq!(feed["records"][0]["Category"], "deletion");
}

fn published(node: &Node, now: OffsetDateTime) -> TestRepo {
    let key = node.get(&tuf("timestamp.key"));
    let mut repo = TestRepo::new(GUN, now);
    repo.server_timestamp = Some(PublicKey::from_json(&key.body).unwrap());
    ok(&node.publish(GUN, &repo.first_publish(&[("v1", V1)])), "first publish");
    repo
}

#[test]
fn every_bad_upload_is_refused_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let node = Node::dev(dir.path());
    let now = OffsetDateTime::now_utc();
    let repo = published(&node, now);
    let before = current(&node);
    let post = |ct: &str, body: &[u8]| node.post(&tuf(""), &[("Content-Type", ct)], body);

    let r = post("text/plain", b"hello");
    assert_eq!((r.status, r.error_code()), (400, "MALFORMED_UPLOAD".into()));
    let r = post("multipart/form-data; boundary=xyz", b"--nope\r\ngarbage");
    assert_eq!((r.status, r.error_code()), (400, "MALFORMED_UPLOAD".into()));
    let r = node.publish(GUN, &[("bogus".into(), b"{}".to_vec())]);
    assert_eq!((r.status, r.error_code()), (400, "INVALID_ROLE".into()));
    let r = node.publish(GUN, &[("targets".into(), b"{\"signed\":".to_vec())]);
    assert_eq!((r.status, r.error_code()), (400, "MALFORMED_JSON".into()));

    // bad signature: targets signed by a key the root does not list
    let mut other = TestRepo::new(GUN, now);
    other.server_timestamp = repo.server_timestamp.clone();
    let r = node.publish(GUN, &[("targets".into(), other.targets_file(5, &[("x", b"x")]))]);
    assert_eq!((r.status, r.error_code()), (400, "INVALID_UPDATE".into()));
    let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(v["errors"][0]["detail"]["Name"], "ErrBadTargets");

    // old version: targets v2 again, with a valid new snapshot
    let root = node.get(&tuf("root.json")).body;
    let t2 = repo.targets_file(2, &[("v1", V1)]);
    let s3 = repo.snapshot_file(3, &[("root", &root), ("targets", &t2)]);
    let r = node.publish(GUN, &[("targets".into(), t2), ("snapshot".into(), s3)]);
    assert_eq!((r.status, r.error_code()), (400, "VERSION".into()), "{}", r.text());

    // missing root on a new GUN: Notary's exact body
    let r = node.publish("example.com/newgun", &[("targets".into(), repo.targets_file(2, &[]))]);
    assert_eq!(r.status, 400);
    assert_eq!(
        r.text(),
        "{\"errors\":[{\"code\":\"INVALID_UPDATE\",\"message\":\"Update sent by the client is invalid.\",\"detail\":{\"Name\":\"ErrValidation\",\"Error\":{\"Msg\":\"no pre-existing root and no root provided in update.\"}}}]}\n"
    );

    // too large: a 9 MiB part
    let (ct, body) = multipart(&[("targets".into(), vec![b' '; 9 << 20])]);
    let r = post(&ct, &body);
    assert_eq!(r.status, 413, "{}", r.text());

    // unknown routes and methods
    let r = node.get("/nonexistent");
    assert_eq!((r.status, r.error_code()), (404, "METADATA_NOT_FOUND".into()));
    let r = node.get(&format!("/v2/{GUN}/_trust/changefeed"));
    assert_eq!((r.status, r.error_code()), (400, "INVALID_PARAMETERS".into()));

    assert_eq!(current(&node), before, "refused requests changed the stored state");
}

#[test]
fn kill_dash_9_loses_nothing_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    let mut node = Node::dev(dir.path());
    let now = OffsetDateTime::now_utc();
    let repo = published(&node, now);
    // More acknowledged writes, then SIGKILL right after the last answer.
    for v in 3..8 {
        let t = repo.targets_file(v, &[("v1", V1), ("n", format!("{v}").as_bytes())]);
        ok(
            &node.publish(
                GUN,
                &[
                    ("targets".into(), t.clone()),
                    (
                        "snapshot".into(),
                        repo.snapshot_file(v, &[("root", &node.get(&tuf("root.json")).body), ("targets", &t)]),
                    ),
                ],
            ),
            "publish",
        );
    }
    let before = current(&node);
    let feed_before = node.get("/v2/_trust/changefeed?records=100").body;
    node.kill9();
    node.restart();
    assert_eq!(current(&node), before, "state after kill -9 differs");
    assert_eq!(node.get("/v2/_trust/changefeed?records=100").body, feed_before);
    let view = client_view(&node, now);
    assert_eq!(view.targets("targets").unwrap().version, 7);
    // And it keeps accepting writes.
    let t8 = repo.targets_file(8, &[]);
    let s8 = repo.snapshot_file(8, &[("root", &before["root"]), ("targets", &t8)]);
    ok(
        &node.publish(GUN, &[("targets".into(), t8), ("snapshot".into(), s8)]),
        "publish after restart",
    );
}

#[test]
fn timestamps_are_refreshed_before_they_expire() {
    let dir = tempfile::tempdir().unwrap();
    let config = serde_json::json!({
        "server": {},
        "storage": {"backend": "rocksdb"},
        "trust_service": {"type": "local", "key_algorithm": "ed25519"},
        "timestamps": {"timestamp_lifetime_secs": 3, "refresh_margin_fraction": 0.5},
    });
    let node = Node::serve(dir.path(), config);
    let now = OffsetDateTime::now_utc();
    published(&node, now);
    let first = node.get(&tuf("timestamp.json")).body;
    let mut versions = Vec::new();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(8);
    while std::time::Instant::now() < deadline {
        let r = node.get(&tuf("timestamp.json"));
        ok(&r, "timestamp.json");
        let f = SignedFile::parse("timestamp", r.body).unwrap();
        let ts = Timestamp::from_signed(f.signed()).unwrap();
        assert!(
            ts.expires > OffsetDateTime::now_utc(),
            "served an expired timestamp (version {})",
            ts.version
        );
        versions.push(ts.version);
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    assert_ne!(node.get(&tuf("timestamp.json")).body, first);
    assert!(versions.last().unwrap() >= &3, "refresher made versions {versions:?}");
    // Every refreshed timestamp verifies as a client sees it.
    client_view(&node, OffsetDateTime::now_utc());
}

/// `serve` with `server.tls_cert_file`/`tls_key_file`: the API over HTTPS
/// (rustls), checked by a rustls client that trusts only the test CA.
#[test]
fn serves_https_with_the_configured_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let cert = seal_testkit::pki::SelfSigned::localhost();
    cert.write(&dir.path().join("node.crt"), &dir.path().join("node.key"));
    let config = serde_json::json!({
        "server": {"tls_cert_file": "node.crt", "tls_key_file": "node.key"},
        "storage": {"backend": "rocksdb"},
        "trust_service": {"type": "local", "key_algorithm": "ed25519"},
    });
    // Readiness is probed over plain HTTP by the launcher; probe TLS here instead.
    let node = common::Node::serve_unprobed(dir.path(), config);

    let client = common::https_client(&cert);
    let get = |path: &str| common::https_answer(&node.addr, &client, path);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let answer = loop {
        match get("/v2/") {
            Ok(a) => break a,
            Err(e) if std::time::Instant::now() < deadline => {
                let _ = e;
                std::thread::sleep(std::time::Duration::from_millis(100));
            }
            Err(e) => panic!("no HTTPS answer: {e}"),
        }
    };
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.ends_with("{}"), "{answer}");
    let missing = get(&tuf("root.json")).unwrap();
    assert!(missing.starts_with("HTTP/1.1 404"), "{missing}");
    // Plain HTTP to the TLS port gets no API answer.
    assert!(common::try_request(&node.addr, "GET", "/v2/", &[], &[]).map_or(true, |r| r.status != 200));
}
