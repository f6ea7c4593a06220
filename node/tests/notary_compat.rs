//! Uploads the unmodified Notary client makes that a strict reading would
//! refuse, sent to a real `seal-node` as the Go client sends them: an
//! update with no role file (Go's empty multipart body, and a body holding
//! only a timestamp), a delegation whose last key was removed (`"keyids":
//! null`), and a root certificate whose CN is the PrintableString
//! `docker/*`. Each answer is Notary's, and what is stored is exactly what
//! was uploaded, or nothing.

mod common;

use std::collections::BTreeMap;

use common::cluster::tuf;
use common::{request, Node, Response};
use seal_tuf::testing::{RootKey, TestRepo};
use seal_tuf::PublicKey;
use time::{Duration, OffsetDateTime};

/// The boundary Go's mime/multipart writer makes (30 random bytes in hex).
const BOUNDARY: &str = "4f1a7c2e9b0d3e5f6a8c1b2d4e6f8091a3b5c7d9e1f20314253647586970";

fn ok(r: &Response, what: &str) {
    assert_eq!(r.status, 200, "{what}: {} {}", r.status, r.text());
}

/// Every file `node` serves for `gun` (current versions of the usual roles,
/// and the changefeed), to compare before and after.
fn state(node: &Node, gun: &str) -> BTreeMap<String, (u16, Vec<u8>)> {
    let mut out: BTreeMap<String, (u16, Vec<u8>)> = ["root", "targets", "snapshot", "timestamp", "targets/releases"]
        .iter()
        .map(|r| {
            let resp = node.get(&tuf(gun, &format!("{r}.json")));
            (r.to_string(), (resp.status, resp.body))
        })
        .collect();
    let feed = node.get(&format!("/v2/{gun}/_trust/changefeed?change_id=0&records=100"));
    out.insert("changefeed".into(), (feed.status, feed.body));
    out
}

/// The collection published as the Notary CLI does, the timestamp key (and,
/// when `server_snapshot`, the snapshot key) the node's.
fn published(node: &Node, gun: &str, server_snapshot: bool, delegate: bool) -> TestRepo {
    let now = OffsetDateTime::now_utc();
    let mut repo = TestRepo::new(gun, now);
    let key = |role: &str| PublicKey::from_json(&node.get(&tuf(gun, &format!("{role}.key"))).body).unwrap();
    repo.server_timestamp = Some(key("timestamp"));
    if server_snapshot {
        repo.server_snapshot = Some(key("snapshot"));
    }
    if delegate {
        repo.delegate("targets/releases", &[""]);
    }
    let mut files = repo.first_publish(&[("v1", b"one")]);
    if server_snapshot {
        files.retain(|(role, _)| role != "snapshot");
    }
    if delegate {
        let d = repo.delegation_file("targets/releases", 1, &[("v2", b"two")]);
        files.push(("targets/releases".into(), d));
        if !server_snapshot {
            let root = files[0].1.clone();
            let targets = files[1].1.clone();
            let snap = repo.snapshot_file(
                2,
                &[
                    ("root", &root),
                    ("targets", &targets),
                    ("targets/releases", &files[3].1),
                ],
            );
            files[2] = ("snapshot".into(), snap);
        }
    }
    ok(&node.publish(gun, &files), "first publish");
    repo
}

/// POSTs `body` as an update of `gun` with Go's multipart content type.
fn post_raw(node: &Node, gun: &str, body: &[u8]) -> Response {
    let ct = format!("multipart/form-data; boundary={BOUNDARY}");
    request(
        &node.addr,
        "POST",
        &format!("/v2/{gun}/_trust/tuf/"),
        &[("Content-Type", &ct)],
        body,
    )
}

/// What Go's `multipart.Writer` writes for the parts given, as the Notary
/// client's `SetMulti` does (no part at all: only the closing delimiter).
fn go_multipart(parts: &[(&str, &[u8])]) -> Vec<u8> {
    let mut body = Vec::new();
    for (i, (role, bytes)) in parts.iter().enumerate() {
        if i > 0 {
            body.extend_from_slice(b"\r\n");
        }
        body.extend_from_slice(
            format!(
                "--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"files\"; filename=\"{role}\"\r\nContent-Type: application/octet-stream\r\n\r\n"
            )
            .as_bytes(),
        );
        body.extend_from_slice(bytes);
    }
    body.extend_from_slice(format!("\r\n--{BOUNDARY}--\r\n").as_bytes());
    body
}

fn detail_name(r: &Response) -> String {
    let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    v["errors"][0]["detail"]["Name"].as_str().unwrap_or_default().to_owned()
}

#[test]
fn an_update_with_no_role_file_is_answered_as_notary_does_and_stores_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let node = Node::dev(dir.path());

    // The server holds the snapshot key: Notary's client sends an empty
    // body for an empty changelist. 200, and every byte served stays.
    let gun = "example.com/compat/empty";
    let repo = published(&node, gun, true, false);
    let before = state(&node, gun);
    let r = post_raw(&node, gun, &go_multipart(&[]));
    ok(&r, "empty update");
    assert!(r.body.is_empty(), "{}", r.text());
    let stale_ts = repo.timestamp_file(40, b"a snapshot");
    let r = post_raw(&node, gun, &go_multipart(&[("timestamp", &stale_ts)]));
    ok(&r, "timestamp-only update");
    assert_eq!(
        state(&node, gun),
        before,
        "an update without role files changed what is served"
    );

    // The client holds the snapshot key: Notary cannot make a snapshot and
    // says so; nothing changes.
    let gun = "example.com/compat/client-snapshot";
    published(&node, gun, false, false);
    let before = state(&node, gun);
    let r = post_raw(&node, gun, &go_multipart(&[]));
    assert_eq!(
        (r.status, r.error_code()),
        (400, "INVALID_UPDATE".to_owned()),
        "{}",
        r.text()
    );
    assert_eq!(detail_name(&r), "ErrBadHierarchy");
    assert_eq!(state(&node, gun), before);

    // No collection: Notary's exact body, and still no collection.
    let r = post_raw(&node, "example.com/compat/none", &go_multipart(&[]));
    assert_eq!(r.status, 400);
    assert_eq!(
        r.text(),
        "{\"errors\":[{\"code\":\"INVALID_UPDATE\",\"message\":\"Update sent by the client is invalid.\",\"detail\":{\"Name\":\"ErrValidation\",\"Error\":{\"Msg\":\"no pre-existing root and no root provided in update.\"}}}]}\n"
    );
    assert_eq!(node.get(&tuf("example.com/compat/none", "root.json")).status, 404);
}

#[test]
fn a_delegation_whose_last_key_was_removed_is_stored_as_uploaded_and_signs_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let node = Node::dev(dir.path());
    let gun = "example.com/compat/null-keyids";
    let repo = published(&node, gun, true, true);

    let parent = repo.targets_file_without_keys_for(3, "targets/releases");
    assert!(String::from_utf8_lossy(&parent).contains(r#""keyids":null"#));
    ok(
        &node.publish(gun, &[("targets".into(), parent.clone())]),
        "targets with null keyids",
    );
    let served = node.get(&tuf(gun, "targets.json"));
    ok(&served, "targets.json");
    assert_eq!(served.body, parent, "the node did not keep the uploaded bytes");

    // The role can sign nothing now, not even with its former key.
    let before = state(&node, gun);
    let again = repo.delegation_file("targets/releases", 2, &[("evil", b"x")]);
    let r = node.publish(gun, &[("targets/releases".into(), again)]);
    assert_eq!(
        (r.status, r.error_code()),
        (400, "INVALID_UPDATE".to_owned()),
        "{}",
        r.text()
    );
    assert_eq!(detail_name(&r), "ErrBadTargets");
    assert!(r.text().contains("threshold"), "{}", r.text());
    assert_eq!(state(&node, gun), before);
}

#[test]
fn a_root_certificate_for_docker_star_serves_every_gun_under_docker() {
    let dir = tempfile::tempdir().unwrap();
    let node = Node::dev(dir.path());
    let now = OffsetDateTime::now_utc();
    let wildcard = || RootKey::with_printable_cn("docker/*", now - Duration::hours(1), now + Duration::days(3650));

    let gun = "docker/repoName1";
    let mut repo = TestRepo::new(gun, now);
    repo.root_keys = vec![wildcard()];
    repo.server_timestamp = Some(PublicKey::from_json(&node.get(&tuf(gun, "timestamp.key")).body).unwrap());
    let files = repo.first_publish(&[("v1", b"one")]);
    ok(&node.publish(gun, &files), "first publish under docker/*");
    assert_eq!(node.get(&tuf(gun, "root.json")).body, files[0].1);

    // The same kind of certificate for a GUN outside its prefix.
    let gun = "library/app";
    let mut repo = TestRepo::new(gun, now);
    repo.root_keys = vec![wildcard()];
    repo.server_timestamp = Some(PublicKey::from_json(&node.get(&tuf(gun, "timestamp.key")).body).unwrap());
    let r = node.publish(gun, &repo.first_publish(&[]));
    assert_eq!(
        (r.status, r.error_code()),
        (400, "INVALID_UPDATE".to_owned()),
        "{}",
        r.text()
    );
    assert_eq!(detail_name(&r), "ErrBadRoot");
    assert!(r.text().contains(r#"does not match \"library/app\""#), "{}", r.text());
    assert_eq!(node.get(&tuf(gun, "root.json")).status, 404);
}
