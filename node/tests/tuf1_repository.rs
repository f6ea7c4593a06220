//! Standard TUF 1.0 repositories served by a real `seal-node dev`: the owners get the online
//! keys, sign a root offline, upload root and targets; the node makes and signs snapshot and
//! timestamp; a client walks timestamp → snapshot → targets and verifies everything with
//! seal-tuf's `TrustedSet`, and python-tuf's ngclient and tough do the same over HTTP. Bad uploads are
//! refused with their status and change nothing. In a three-node cluster with a learner, the
//! keys and uploads go through a follower and the clients read through a follower and the
//! learner, and the new leader keeps timestamps fresh after a leader kill; ngclient refuses a
//! copy of the repository served by a static mirror once it is expired or rolled back; the
//! online keys also work as 2-of-3 FROST shares held by three seal-signer processes.

mod common;

use std::path::{Path, PathBuf};

use common::cluster::{cluster_cmd, config, eventually, find_leader, one_cluster_at_a_time, spawn, start_cluster};
use common::{Node, Response};
use seal_tuf::cjson::Value;
use seal_tuf::tuf1::client::{SearchStep, TargetSearch};
use seal_tuf::tuf1::metadata::{format_expires, sign};
use seal_tuf::tuf1::{SigningKey, TargetFile, TrustedSet};
use serde_json::json;
use time::OffsetDateTime;

const REPO: &str = "firmware";
const PAYLOAD: &[u8] = b"firmware image 1\n";
const RELEASE: &[u8] = b"release 2 image\n";

fn path(tail: &str) -> String {
    format!("/tuf/{REPO}/{tail}")
}

fn ok(r: &Response, what: &str) {
    assert_eq!(r.status, 200, "{what}: {}", r.summary());
}

/// The owners' offline keys.
struct Owners {
    root: Vec<SigningKey>,
    targets: SigningKey,
    releases: SigningKey,
}

impl Owners {
    fn new() -> Owners {
        Owners {
            root: vec![SigningKey::generate_ed25519(&mut rand::rngs::OsRng).unwrap()],
            targets: SigningKey::generate_ecdsa(&mut rand::rngs::OsRng).unwrap(),
            releases: SigningKey::generate_ed25519(&mut rand::rngs::OsRng).unwrap(),
        }
    }
}

fn key_json(k: &SigningKey) -> serde_json::Value {
    serde_json::from_slice(&seal_tuf::tuf1::cjson::to_json(k.public().to_value())).unwrap()
}

fn expires() -> String {
    format_expires(OffsetDateTime::now_utc() + time::Duration::days(365))
}

/// Root `version` listing `root_keys`, the owners' targets key and the service's online keys
/// (as `POST keys` answered).
fn root_json(
    version: u64,
    root_keys: &[&SigningKey],
    owners: &Owners,
    online: &serde_json::Value,
) -> serde_json::Value {
    let mut keys = online["keys"].as_object().unwrap().clone();
    for k in root_keys.iter().copied().chain([&owners.targets]) {
        keys.insert(k.keyid().to_owned(), key_json(k));
    }
    let ids = |ks: &[&SigningKey]| ks.iter().map(|k| k.keyid().to_owned()).collect::<Vec<_>>();
    json!({
        "_type": "root",
        "spec_version": "1.0.31",
        "version": version,
        "expires": expires(),
        "consistent_snapshot": true,
        "keys": keys,
        "roles": {
            "root": {"keyids": ids(root_keys), "threshold": 1},
            "targets": {"keyids": ids(&[&owners.targets]), "threshold": 1},
            "timestamp": {"keyids": online["roles"]["timestamp"], "threshold": 1},
            "snapshot": {"keyids": online["roles"]["snapshot"], "threshold": 1},
        }
    })
}

fn target_entry(data: &[u8]) -> serde_json::Value {
    serde_json::from_slice(&seal_tuf::tuf1::cjson::to_json(&TargetFile::from_data(data).to_value())).unwrap()
}

fn targets_json(version: u64, targets: serde_json::Value, delegations: Option<serde_json::Value>) -> serde_json::Value {
    let mut t = json!({
        "_type": "targets",
        "spec_version": "1.0.31",
        "version": version,
        "expires": expires(),
        "targets": targets,
    });
    if let Some(d) = delegations {
        t["delegations"] = d;
    }
    t
}

/// The signed file (as JSON) of `signed` by `keys`.
fn signed(signed: serde_json::Value, keys: &[&SigningKey]) -> serde_json::Value {
    let v = Value::parse(&serde_json::to_vec(&signed).unwrap()).unwrap();
    serde_json::from_slice(&sign(&v, keys)).unwrap()
}

fn upload(node: &Node, repo: &str, files: &serde_json::Value) -> Response {
    node.post(
        &format!("/tuf/{repo}/metadata"),
        &[("Content-Type", "application/json")],
        &serde_json::to_vec(files).unwrap(),
    )
}

/// What a TUF 1.0 client does: from trusted root bytes, every newer root, then timestamp →
/// snapshot → targets, each verified; then the search for `target`.
fn client_refresh(node: &Node, trusted_root: &[u8], target: &str) -> (TrustedSet, Option<TargetFile>) {
    let now = OffsetDateTime::now_utc();
    let mut set = TrustedSet::new(trusted_root).unwrap();
    loop {
        let next = set.root().version() + 1;
        let r = node.get(&path(&format!("metadata/{next}.root.json")));
        if r.status == 404 {
            assert_eq!(r.error_code(), "METADATA_NOT_FOUND");
            break;
        }
        ok(&r, "next root");
        set.update_root(&r.body).unwrap();
    }
    let ts = node.get(&path("metadata/timestamp.json"));
    ok(&ts, "timestamp.json");
    set.update_timestamp(&ts.body, now).unwrap();
    let v = set.timestamp().unwrap().signed().snapshot_meta.version;
    let snap = node.get(&path(&format!("metadata/{v}.snapshot.json")));
    ok(&snap, "snapshot");
    set.update_snapshot(&snap.body, now).unwrap();
    let mut search = TargetSearch::new(target);
    let found = loop {
        match search.next(&set) {
            SearchStep::Found { target, .. } => break Some(target.clone()),
            SearchStep::NotFound => break None,
            SearchStep::Load { role, delegator } => {
                let v = set.snapshot().unwrap().signed().meta[&format!("{role}.json")].version;
                let r = node.get(&path(&format!("metadata/{v}.{role}.json")));
                ok(&r, &role);
                set.update_delegated_targets(&role, &delegator, &r.body, now).unwrap();
            }
        }
    };
    (set, found)
}

/// Root 2 with a new root key, signed by the old and the new, and targets 2 adding
/// `image-2.bin` (RELEASE), uploaded together through `node`.
fn rotate_root_and_add_image_2(node: &Node, owners: &Owners, online: &serde_json::Value) {
    let new_root_key = SigningKey::generate_ed25519(&mut rand::rngs::OsRng).unwrap();
    let root2 = signed(
        root_json(2, &[&new_root_key], owners, online),
        &[&owners.root[0], &new_root_key],
    );
    let targets2 = signed(
        targets_json(
            2,
            json!({"image.bin": target_entry(PAYLOAD), "image-2.bin": target_entry(RELEASE)}),
            None,
        ),
        &[&owners.targets],
    );
    ok(
        &upload(node, REPO, &json!({"root": root2, "targets": targets2})),
        "root 2 and targets 2",
    );
}

/// Every file a client can fetch now, to show a refused request changed nothing.
fn served(node: &Node) -> Vec<(u16, Vec<u8>)> {
    [
        "timestamp.json",
        "1.root.json",
        "2.root.json",
        "1.snapshot.json",
        "2.snapshot.json",
        "3.snapshot.json",
        "1.targets.json",
        "2.targets.json",
        "3.targets.json",
        "1.releases.json",
    ]
    .iter()
    .map(|f| {
        let r = node.get(&path(&format!("metadata/{f}")));
        (r.status, r.body)
    })
    .collect()
}

/// A dev node with a repository made by its owners: keys fetched, root and targets uploaded.
fn repository(dir: &Path) -> (Node, Owners, serde_json::Value, Vec<u8>) {
    let node = Node::dev(dir);
    let (owners, online, root) = create(&node);
    (node, owners, online, root)
}

/// The repository made through `node` by its owners: keys fetched, root and targets uploaded;
/// the owners, the online keys (as `POST keys` answered) and root 1.
fn create(node: &Node) -> (Owners, serde_json::Value, Vec<u8>) {
    let owners = Owners::new();
    // No keys before they are asked for; POST makes them, and says the same the second time.
    assert_eq!(node.get(&path("keys")).status, 404);
    let online = node.post(&path("keys"), &[], b"");
    ok(&online, "POST keys");
    let again = node.post(&path("keys"), &[], b"");
    assert_eq!(again.body, online.body);
    assert_eq!(node.get(&path("keys")).body, online.body);
    let online: serde_json::Value = serde_json::from_slice(&online.body).unwrap();
    for role in ["timestamp", "snapshot"] {
        let id = online["roles"][role][0].as_str().unwrap();
        let key = &online["keys"][id];
        assert!(
            ["ed25519", "ecdsa"].contains(&key["keytype"].as_str().unwrap()),
            "{key}"
        );
        assert!(key["keyval"]["public"].is_string());
    }
    let root_keys: Vec<&SigningKey> = owners.root.iter().collect();
    let root = signed(root_json(1, &root_keys, &owners, &online), &root_keys);
    let targets = signed(
        targets_json(1, json!({"image.bin": target_entry(PAYLOAD)}), None),
        &[&owners.targets],
    );
    ok(
        &upload(node, REPO, &json!({"root": root, "targets": targets})),
        "first upload",
    );
    let root_bytes = node.get(&path("metadata/1.root.json"));
    ok(&root_bytes, "1.root.json");
    (owners, online, root_bytes.body)
}

#[test]
fn a_repository_is_created_published_and_verified_by_a_tuf_client() {
    let dir = tempfile::tempdir().unwrap();
    let (node, owners, online, root_v1) = repository(dir.path());

    // The first state: snapshot 1 and timestamp 1, made and signed by the node.
    let (set, found) = client_refresh(&node, &root_v1, "image.bin");
    assert_eq!(found.unwrap(), TargetFile::from_data(PAYLOAD));
    assert_eq!(set.timestamp().unwrap().version(), 1);
    assert_eq!(set.snapshot().unwrap().version(), 1);
    let ts = node.get(&path("metadata/timestamp.json"));
    assert_eq!(
        ts.header("cache-control"),
        Some("public, max-age=300, s-maxage=300, must-revalidate")
    );
    assert_eq!(ts.header("content-type"), Some("application/json"));
    let snap = node.get(&path("metadata/1.snapshot.json"));
    assert_eq!(
        snap.header("cache-control"),
        Some("public, max-age=2592000, s-maxage=2592000")
    );
    // The unversioned names serve the current files too.
    assert_eq!(node.get(&path("metadata/root.json")).body, root_v1);
    assert_eq!(node.get(&path("metadata/snapshot.json")).body, snap.body);

    // Listed under /tuf/, and kept out of Notary's changefeed.
    let list = node.get("/tuf/");
    ok(&list, "GET /tuf/");
    assert_eq!(
        serde_json::from_slice::<serde_json::Value>(&list.body).unwrap(),
        json!({"repositories": [REPO]})
    );
    let feed: serde_json::Value = serde_json::from_slice(&node.get("/v2/_trust/changefeed?records=10").body).unwrap();
    assert_eq!(feed["count"], 0, "{feed}");

    // Targets 2 delegating releases/* to a role uploaded with it.
    let delegations = json!({
        "keys": {owners.releases.keyid(): key_json(&owners.releases)},
        "roles": [{"name": "releases", "keyids": [owners.releases.keyid()], "threshold": 1,
                   "terminating": true, "paths": ["releases/*"]}],
    });
    let targets2 = signed(
        targets_json(2, json!({"image.bin": target_entry(PAYLOAD)}), Some(delegations)),
        &[&owners.targets],
    );
    let releases = signed(
        targets_json(1, json!({"releases/2.bin": target_entry(RELEASE)}), None),
        &[&owners.releases],
    );
    ok(
        &upload(&node, REPO, &json!({"targets": targets2, "releases": releases})),
        "targets 2",
    );
    let (set, found) = client_refresh(&node, &root_v1, "releases/2.bin");
    assert_eq!(found.unwrap(), TargetFile::from_data(RELEASE));
    assert_eq!(set.snapshot().unwrap().version(), 2);
    assert_eq!(set.timestamp().unwrap().version(), 2);

    // Root rotation: root 2 with a new root key, signed by the old and the new.
    let new_root_key = SigningKey::generate_ed25519(&mut rand::rngs::OsRng).unwrap();
    let root2 = signed(
        root_json(2, &[&new_root_key], &owners, &online),
        &[&owners.root[0], &new_root_key],
    );
    ok(&upload(&node, REPO, &json!({"root": root2})), "root 2");
    let (set, found) = client_refresh(&node, &root_v1, "image.bin");
    assert_eq!(set.root().version(), 2);
    assert!(found.is_some());
    assert_eq!(set.snapshot().unwrap().version(), 3);

    // Online key rotation: a new timestamp key held beside the old one; root 3 lists only it,
    // and from then on the timestamp is signed with it.
    let rotated = node.post(&path("keys/timestamp"), &[], b"");
    ok(&rotated, "POST keys/timestamp");
    let rotated: serde_json::Value = serde_json::from_slice(&rotated.body).unwrap();
    let ts_ids = rotated["roles"]["timestamp"].as_array().unwrap().clone();
    assert_eq!(ts_ids.len(), 2, "{rotated}");
    assert_eq!(ts_ids[0], online["roles"]["timestamp"][0]);
    assert_eq!(rotated["roles"]["snapshot"], online["roles"]["snapshot"]);
    let mut online3 = rotated.clone();
    online3["roles"]["timestamp"] = json!([ts_ids[1]]);
    let root3 = signed(root_json(3, &[&new_root_key], &owners, &online3), &[&new_root_key]);
    ok(&upload(&node, REPO, &json!({"root": root3})), "root 3");
    let (set, _) = client_refresh(&node, &root_v1, "image.bin");
    assert_eq!(set.root().version(), 3);
    let signers: Vec<&str> = set
        .timestamp()
        .unwrap()
        .signatures()
        .iter()
        .map(|s| s.keyid.as_str())
        .collect();
    assert_eq!(signers, vec![ts_ids[1].as_str().unwrap()]);

    // Unknown repository, role, version: 404 with Notary's error body.
    for missing in [
        "/tuf/nothing/metadata/timestamp.json".to_owned(),
        path("metadata/4.root.json"),
        path("metadata/9.snapshot.json"),
        path("metadata/1.nobody.json"),
        path("metadata/nobody.json"),
        path("metadata/timestamp"),
        "/tuf/..%2Fx/metadata/timestamp.json".to_owned(),
        "/tuf/nothing/keys".to_owned(),
    ] {
        let r = node.get(&missing);
        assert_eq!(r.status, 404, "{missing}: {}", r.summary());
        assert_eq!(r.error_code(), "METADATA_NOT_FOUND", "{missing}");
    }
}

#[test]
fn bad_uploads_are_refused_and_change_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (node, owners, online, _) = repository(dir.path());
    let before = served(&node);
    let stranger = SigningKey::generate_ecdsa(&mut rand::rngs::OsRng).unwrap();
    let targets = |version: u64, key: &SigningKey| {
        signed(
            targets_json(version, json!({"image.bin": target_entry(PAYLOAD)}), None),
            &[key],
        )
    };
    let root_keys: Vec<&SigningKey> = owners.root.iter().collect();
    let mut padded = root_json(2, &root_keys, &owners, &online);
    padded["padding"] = json!("x".repeat(600_000));
    let refusals: Vec<(&str, String, serde_json::Value, u16, &str)> = vec![
        (
            "bad signature",
            REPO.into(),
            json!({"targets": targets(2, &stranger)}),
            400,
            "INVALID_UPDATE",
        ),
        (
            "version rollback",
            REPO.into(),
            json!({"targets": targets(1, &owners.targets)}),
            400,
            "INVALID_UPDATE",
        ),
        (
            "root version skipped",
            REPO.into(),
            json!({"root": signed(root_json(3, &root_keys, &owners, &online), &root_keys)}),
            400,
            "INVALID_UPDATE",
        ),
        (
            "a repository that does not exist",
            "other".into(),
            json!({"targets": targets(2, &owners.targets)}),
            400,
            "INVALID_UPDATE",
        ),
        (
            "a repository name that is not one",
            ".hidden".into(),
            json!({"targets": targets(2, &owners.targets)}),
            400,
            "INVALID_PARAMETERS",
        ),
        (
            "a timestamp upload",
            REPO.into(),
            json!({"timestamp": targets(2, &owners.targets)}),
            400,
            "INVALID_ROLE",
        ),
        (
            "a role name unsafe as a file name",
            REPO.into(),
            json!({"../x": targets(2, &owners.targets)}),
            400,
            "INVALID_ROLE",
        ),
        (
            "a role nothing delegates",
            REPO.into(),
            json!({"orphan": targets(1, &owners.targets)}),
            400,
            "INVALID_UPDATE",
        ),
        ("not an object", REPO.into(), json!(["root"]), 400, "INVALID_PARAMETERS"),
        (
            "oversized root",
            REPO.into(),
            json!({"root": signed(padded, &root_keys)}),
            413,
            "TOO_LARGE",
        ),
    ];
    for (what, repo, files, status, code) in refusals {
        let r = upload(&node, &repo, &files);
        assert_eq!(
            (r.status, r.error_code().as_str()),
            (status, code),
            "{what}: {}",
            r.summary()
        );
        assert!(r.text().starts_with("{\"errors\":[{\"code\":"), "{what}: {}", r.text());
    }
    let garbage = node.post(&path("metadata"), &[("Content-Type", "application/json")], b"{not json");
    assert_eq!(
        (garbage.status, garbage.error_code().as_str()),
        (400, "INVALID_PARAMETERS")
    );
    assert_eq!(served(&node), before, "a refused upload changed what is served");
    assert_eq!(
        serde_json::from_slice::<serde_json::Value>(&node.get("/tuf/").body).unwrap(),
        json!({"repositories": [REPO]})
    );
}

/// A virtualenv with python-tuf 7.0.1 from PyPI (made once under cargo's target directory),
/// or `SEAL_TUF_VENV`'s.
fn python_tuf() -> Option<PathBuf> {
    let venv = match std::env::var_os("SEAL_TUF_VENV") {
        Some(v) => PathBuf::from(v),
        None => seal_testkit::python_venv(
            &Path::new(env!("CARGO_TARGET_TMPDIR")).join("python-tuf-7.0.1"),
            &["tuf==7.0.1", "securesystemslib[crypto]==1.6.0"],
        )?,
    };
    Some(venv.join("bin/python"))
}

/// python-tuf's ngclient against the node: refresh from the trusted root in `metadata_dir`,
/// then `get_targetinfo(target)`; prints the target's length and sha256 and the versions.
const NGCLIENT: &str = r#"
import json, sys
from tuf.ngclient import Updater
metadata_dir, url, target = sys.argv[1], sys.argv[2], sys.argv[3]
updater = Updater(metadata_dir=metadata_dir, metadata_base_url=url, bootstrap=None)
updater.refresh()
info = updater.get_targetinfo(target)
trusted = updater._trusted_set
print(json.dumps({
    "length": info.length if info else None,
    "sha256": info.hashes.get("sha256") if info else None,
    "root": trusted.root.version,
    "timestamp": trusted.timestamp.version,
    "snapshot": trusted.snapshot.version,
}))
"#;

fn ngclient(python: &Path, metadata_dir: &Path, node: &Node, target: &str) -> serde_json::Value {
    let out = std::process::Command::new(python)
        .arg("-c")
        .arg(NGCLIENT)
        .arg(metadata_dir)
        .arg(format!("http://{}/tuf/{REPO}/metadata/", node.addr))
        .arg(target)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "ngclient failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn python_tuf_ngclient_refreshes_through_a_root_rotation() {
    let Some(python) = python_tuf() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let (node, owners, online, root_v1) = repository(dir.path());
    let client = tempfile::tempdir().unwrap();
    std::fs::write(client.path().join("root.json"), &root_v1).unwrap();

    let sha = |b: &[u8]| common::sha256_hex(b);
    let seen = ngclient(&python, client.path(), &node, "image.bin");
    assert_eq!(
        seen,
        json!({"length": PAYLOAD.len(), "sha256": sha(PAYLOAD), "root": 1, "timestamp": 1, "snapshot": 1})
    );

    // Root 2 signed by the old and the new root key, and a new target.
    rotate_root_and_add_image_2(&node, &owners, &online);
    let seen = ngclient(&python, client.path(), &node, "image-2.bin");
    assert_eq!(
        seen,
        json!({"length": RELEASE.len(), "sha256": sha(RELEASE), "root": 2, "timestamp": 2, "snapshot": 2})
    );
    // A target nobody lists is not found.
    assert_eq!(
        ngclient(&python, client.path(), &node, "absent.bin")["length"],
        json!(null)
    );
}

#[test]
fn the_refresher_re_signs_timestamps_in_tuf1_form_before_they_expire() {
    let dir = tempfile::tempdir().unwrap();
    let config = json!({
        "server": {},
        "storage": {"backend": "rocksdb"},
        "trust_service": {"type": "local", "key_algorithm": "ed25519"},
        "timestamps": {"timestamp_lifetime_secs": 3, "refresh_margin_fraction": 0.5},
    });
    let node = Node::serve(dir.path(), config);
    let (_owners, _online, root_v1) = create(&node);
    let mut versions = Vec::new();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(4);
    while std::time::Instant::now() < deadline {
        // Every timestamp served verifies (the client refuses an expired one), over snapshot 1.
        let (set, found) = client_refresh(&node, &root_v1, "image.bin");
        assert!(found.is_some());
        assert_eq!(set.snapshot().unwrap().version(), 1);
        versions.push(set.timestamp().unwrap().version());
        std::thread::sleep(std::time::Duration::from_millis(250));
    }
    assert!(versions.windows(2).all(|w| w[0] <= w[1]), "{versions:?}");
    // Unread for 4 s: a read of an expired timestamp would regenerate it once (one version);
    // the refresher re-signed it ahead of expiry several times.
    let last = *versions.last().unwrap();
    std::thread::sleep(std::time::Duration::from_secs(4));
    let (set, _) = client_refresh(&node, &root_v1, "image.bin");
    let now = set.timestamp().unwrap().version();
    assert!(now >= last + 2, "refresher made versions {versions:?}, then {now}");
}

#[test]
fn a_cluster_serves_a_repository_through_a_follower_and_a_learner() {
    let _serial = one_cluster_at_a_time();
    let cluster = start_cluster(1);
    let leader = find_leader(&cluster.tls, &cluster.raft) as usize - 1;
    let follower = &cluster.nodes[(0..3).find(|i| *i != leader).unwrap()];
    // Keys made and uploads written through a follower (forwarded to the leader), signed by
    // the cluster's seal-signer process.
    let (owners, online, root_v1) = create(follower);

    let learner = spawn(cluster.dir.path(), "n4", config(4, &cluster.raft[3], &cluster.tls, &[]));
    let (added, out, err) = cluster_cmd(
        &cluster.tls,
        &cluster.raft[0],
        &["add-learner", "--id", "4", "--raft-addr", &cluster.raft[3]],
    );
    assert!(added, "add-learner failed: {out}{err}");
    let learner_serves = |file: &str| {
        eventually(&format!("the learner serves {file}"), || {
            common::try_request(&learner.addr, "GET", &path(&format!("metadata/{file}")), &[], &[])
                .ok()
                .filter(|r| r.status == 200)
        })
    };
    learner_serves("timestamp.json");
    for node in [follower, &learner] {
        let (_, found) = client_refresh(node, &root_v1, "image.bin");
        assert_eq!(found.unwrap(), TargetFile::from_data(PAYLOAD), "through {}", node.addr);
    }

    // Root rotation and a new target, through the follower; then every reader sees them.
    rotate_root_and_add_image_2(follower, &owners, &online);
    learner_serves("2.snapshot.json");
    for node in [follower, &learner] {
        let (set, found) = client_refresh(node, &root_v1, "image-2.bin");
        assert_eq!(set.root().version(), 2);
        assert_eq!(found.unwrap(), TargetFile::from_data(RELEASE), "through {}", node.addr);
    }

    // python-tuf's ngclient through the follower and the learner.
    let Some(python) = python_tuf() else {
        return;
    };
    for node in [follower, &learner] {
        let client = tempfile::tempdir().unwrap();
        std::fs::write(client.path().join("root.json"), &root_v1).unwrap();
        let seen = ngclient(&python, client.path(), node, "image-2.bin");
        assert_eq!(
            seen,
            json!({"length": RELEASE.len(), "sha256": common::sha256_hex(RELEASE), "root": 2, "timestamp": 2, "snapshot": 2}),
            "through {}",
            node.addr
        );
    }
}

#[test]
fn timestamps_stay_fresh_across_a_leader_kill() {
    let _serial = one_cluster_at_a_time();
    let mut cluster = common::cluster::start_cluster_with(
        0,
        common::cluster::ClusterOptions {
            extra: json!({"timestamps": {"timestamp_lifetime_secs": 3, "refresh_margin_fraction": 0.5}}),
            ..Default::default()
        },
    );
    let leader = find_leader(&cluster.tls, &cluster.raft);
    let survivors: Vec<usize> = (0..3).filter(|i| *i as u64 + 1 != leader).collect();
    let (_owners, _online, root_v1) = create(&cluster.nodes[survivors[0]]);
    let (before, _) = client_refresh(&cluster.nodes[survivors[0]], &root_v1, "image.bin");
    let before = before.timestamp().unwrap().version();

    cluster.nodes[leader as usize - 1].kill9();
    let new_leader = eventually("a new leader", || {
        let l = common::cluster::leader_of(&cluster.tls, &cluster.raft[survivors[0]])?;
        (l != leader).then_some(l)
    });
    assert_ne!(new_leader, leader);
    // Unread for 5 s: only the new leader's refresher can move the version by more than one.
    std::thread::sleep(std::time::Duration::from_secs(5));
    for &i in &survivors {
        let node = &cluster.nodes[i];
        let (set, found) = client_refresh(node, &root_v1, "image.bin");
        assert!(found.is_some());
        let now = set.timestamp().unwrap().version();
        assert!(
            now >= before + 2,
            "timestamp {before} before the kill, {now} after, through {}",
            node.addr
        );
    }
    // python-tuf's ngclient too, from the first root, through each survivor.
    let Some(python) = python_tuf() else {
        return;
    };
    for &i in &survivors {
        let node = &cluster.nodes[i];
        let client = tempfile::tempdir().unwrap();
        std::fs::write(client.path().join("root.json"), &root_v1).unwrap();
        let seen = ngclient(&python, client.path(), node, "image.bin");
        assert_eq!(seen["length"], json!(PAYLOAD.len()), "through {}", node.addr);
        let now = seen["timestamp"].as_u64().unwrap();
        assert!(
            now >= before + 2,
            "ngclient saw timestamp {now} through {}, {before} before the kill",
            node.addr
        );
    }
}

/// python-tuf's ngclient against a static mirror of `mirror_dir` (served by Python's
/// `http.server` on a free port): the name of the error its refresh raises, or `"ok"`.
const NGCLIENT_MIRROR: &str = r#"
import functools, http.server, sys, threading
from tuf.ngclient import Updater
metadata_dir, mirror_dir = sys.argv[1], sys.argv[2]
handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=mirror_dir)
server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
threading.Thread(target=server.serve_forever, daemon=True).start()
url = "http://127.0.0.1:%d/" % server.server_address[1]
try:
    Updater(metadata_dir=metadata_dir, metadata_base_url=url, bootstrap=None).refresh()
    print("ok")
except Exception as e:
    print(type(e).__name__)
"#;

fn ngclient_mirror(python: &Path, metadata_dir: &Path, mirror: &Path) -> String {
    let out = std::process::Command::new(python)
        .arg("-c")
        .arg(NGCLIENT_MIRROR)
        .arg(metadata_dir)
        .arg(mirror)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

#[test]
fn python_tuf_refuses_a_rolled_back_or_expired_copy_of_the_repository() {
    let Some(python) = python_tuf() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let config = json!({
        "server": {},
        "storage": {"backend": "rocksdb"},
        "trust_service": {"type": "local", "key_algorithm": "ecdsa"},
        "timestamps": {"timestamp_lifetime_secs": 6, "refresh_margin_fraction": 0.5},
    });
    let node = Node::serve(dir.path(), config);
    let (_owners, _online, root_v1) = create(&node);
    // A mirror holding the repository as it is now, timestamp 1 included.
    let mirror = tempfile::tempdir().unwrap();
    for file in ["1.root.json", "timestamp.json", "1.snapshot.json", "1.targets.json"] {
        let r = node.get(&path(&format!("metadata/{file}")));
        ok(&r, file);
        std::fs::write(mirror.path().join(file), &r.body).unwrap();
    }
    let trusting = |root: &[u8]| {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("root.json"), root).unwrap();
        d
    };
    // Fresh, the copy is accepted.
    assert_eq!(ngclient_mirror(&python, trusting(&root_v1).path(), mirror.path()), "ok");
    // Once its timestamp has expired (the node has refreshed its own meanwhile), refused.
    std::thread::sleep(std::time::Duration::from_secs(7));
    assert_eq!(
        ngclient_mirror(&python, trusting(&root_v1).path(), mirror.path()),
        "ExpiredMetadataError"
    );
    // A client that saw a newer timestamp from the node refuses the copy's older one.
    let client = trusting(&root_v1);
    let seen = ngclient(&python, client.path(), &node, "image.bin");
    assert!(seen["timestamp"].as_u64().unwrap() >= 2, "{seen}");
    assert_eq!(
        ngclient_mirror(&python, client.path(), mirror.path()),
        "BadVersionNumberError"
    );
}

/// An owner using python-tuf's Metadata API: root 1 listing the service's online keys
/// (`online.json`) beside a new ECDSA root key and Ed25519 targets key, and targets 1 listing
/// `image.bin` (`hello\n`), written as python-tuf writes files.
const PYTHON_OWNER: &str = r#"
import json, os, sys
from datetime import datetime, timedelta, timezone
from securesystemslib.signer import CryptoSigner, Key
from tuf.api.metadata import Metadata, Root, Targets, TargetFile
os.chdir(sys.argv[1])
online = json.load(open("online.json"))
expires = datetime.now(timezone.utc).replace(microsecond=0) + timedelta(days=365)
root_signer, targets_signer = CryptoSigner.generate_ecdsa(), CryptoSigner.generate_ed25519()
root = Root(expires=expires, consistent_snapshot=True)
root.add_key(root_signer.public_key, "root")
root.add_key(targets_signer.public_key, "targets")
for role in ("timestamp", "snapshot"):
    for keyid in online["roles"][role]:
        root.add_key(Key.from_dict(keyid, dict(online["keys"][keyid])), role)
md = Metadata(root)
md.sign(root_signer)
md.to_file("1.root.json")
targets = Targets(expires=expires)
targets.targets["image.bin"] = TargetFile.from_data("image.bin", b"hello\n")
mt = Metadata(targets)
mt.sign(targets_signer)
mt.to_file("1.targets.json")
"#;

#[test]
fn metadata_signed_with_python_tuf_creates_a_repository() {
    let Some(python) = python_tuf() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let node = Node::dev(dir.path());
    let online = node.post(&path("keys"), &[], b"");
    ok(&online, "POST keys");
    let owner = tempfile::tempdir().unwrap();
    std::fs::write(owner.path().join("online.json"), &online.body).unwrap();
    let out = std::process::Command::new(&python)
        .arg("-c")
        .arg(PYTHON_OWNER)
        .arg(owner.path())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let read = |f: &str| -> serde_json::Value {
        serde_json::from_slice(&std::fs::read(owner.path().join(f)).unwrap()).unwrap()
    };
    let files = json!({"root": read("1.root.json"), "targets": read("1.targets.json")});
    ok(&upload(&node, REPO, &files), "upload of python-tuf's files");
    let root_v1 = node.get(&path("metadata/1.root.json")).body;
    let (_, found) = client_refresh(&node, &root_v1, "image.bin");
    assert_eq!(found.unwrap(), TargetFile::from_data(b"hello\n"));
    let client = tempfile::tempdir().unwrap();
    std::fs::write(client.path().join("root.json"), &root_v1).unwrap();
    let seen = ngclient(&python, client.path(), &node, "image.bin");
    assert_eq!(seen["sha256"], json!(common::sha256_hex(b"hello\n")));
}

/// Copies directory `from` to `to`, recursively.
fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

#[test]
fn a_publish_signed_but_never_stored_does_not_block_the_next_one() {
    let dir = tempfile::tempdir().unwrap();
    let mut node = Node::dev(dir.path());
    let online = node.post(&path("keys"), &[], b"");
    ok(&online, "POST keys");
    let online: serde_json::Value = serde_json::from_slice(&online.body).unwrap();
    // The node's state with the online keys and no repository yet.
    node.kill9();
    let raft = dir.path().join("raft");
    let saved = tempfile::tempdir().unwrap();
    copy_dir(&raft, saved.path());
    node.restart();

    let owners = Owners::new();
    let root_keys: Vec<&SigningKey> = owners.root.iter().collect();
    let root = signed(root_json(1, &root_keys, &owners, &online), &root_keys);
    let targets = |data: &[u8]| {
        signed(
            targets_json(1, json!({"image.bin": target_entry(data)}), None),
            &[&owners.targets],
        )
    };
    ok(
        &upload(&node, REPO, &json!({"root": root, "targets": targets(PAYLOAD)})),
        "first upload",
    );
    // The node loses that write (its state restored from before it) but the signer keeps the
    // versions it signed: snapshot 1 and timestamp 1.
    node.kill9();
    std::fs::remove_dir_all(&raft).unwrap();
    copy_dir(saved.path(), &raft);
    node.restart();
    assert_eq!(node.get(&path("metadata/timestamp.json")).status, 404);

    // The same upload with other targets: the signer refuses version 1 again with other
    // content, and the node signs above its mark instead of failing for good.
    ok(
        &upload(&node, REPO, &json!({"root": root, "targets": targets(RELEASE)})),
        "upload again",
    );
    let root_v1 = node.get(&path("metadata/1.root.json")).body;
    let (set, found) = client_refresh(&node, &root_v1, "image.bin");
    assert_eq!(found.unwrap(), TargetFile::from_data(RELEASE));
    assert_eq!(set.snapshot().unwrap().version(), 2);
    assert_eq!(set.timestamp().unwrap().version(), 2);
}

#[test]
fn online_keys_held_as_two_of_three_threshold_shares() {
    use seal_signer::testing::{TestPki, ThresholdCluster};
    let dir = tempfile::tempdir().unwrap();
    let pki = TestPki::new(dir.path(), "seal");
    let (node_cert, node_key) = pki.leaf("seal-node");
    let mut signers = ThresholdCluster::start(
        &common::signer_binary(),
        &pki,
        dir.path(),
        (2, 3),
        &["seal-node"],
        |_, _| {},
    );
    let node = Node::serve(
        &dir.path().join("node"),
        json!({
            "server": {},
            "trust_service": {"type": "remote", "hostname": "localhost", "port": signers.signers[0].port.to_string(),
                              "tls_ca_file": pki.ca_file(), "tls_client_cert": node_cert,
                              "tls_client_key": node_key, "key_algorithm": "ed25519"},
            "storage": {"backend": "rocksdb"},
        }),
    );
    // The online keys come from DKGs among the three signers; each signature is a FROST
    // signature that verifies as Ed25519 under the group key.
    let (owners, _online, root_v1) = create(&node);
    let (set, found) = client_refresh(&node, &root_v1, "image.bin");
    assert!(found.is_some());
    assert_eq!(set.timestamp().unwrap().version(), 1);
    // With one signer down the other two still reach the threshold.
    signers.signer(3).kill();
    let targets2 = signed(
        targets_json(2, json!({"image-2.bin": target_entry(RELEASE)}), None),
        &[&owners.targets],
    );
    ok(
        &upload(&node, REPO, &json!({"targets": targets2})),
        "targets 2 with two signers",
    );
    let (set, found) = client_refresh(&node, &root_v1, "image-2.bin");
    assert_eq!(found.unwrap(), TargetFile::from_data(RELEASE));
    assert_eq!(set.timestamp().unwrap().version(), 2);
    // With two down, the upload is refused as unavailable and nothing changes.
    signers.signer(2).kill();
    let before = node.get(&path("metadata/timestamp.json")).body;
    let targets3 = signed(
        targets_json(3, json!({"image-3.bin": target_entry(PAYLOAD)}), None),
        &[&owners.targets],
    );
    let r = upload(&node, REPO, &json!({"targets": targets3}));
    assert_eq!(
        (r.status, r.error_code().as_str()),
        (503, "UNAVAILABLE"),
        "{}",
        r.text()
    );
    assert_eq!(node.get(&path("metadata/timestamp.json")).body, before);
    assert_eq!(node.get(&path("metadata/3.targets.json")).status, 404);
}

/// tough's transport over the test harness's HTTP client: `GET` of the URL's path on the
/// node; 404 is "file not found" as the TUF client workflow needs it told apart.
#[derive(Debug, Clone)]
struct HarnessHttp;

/// What a tough transport answers (tough names the type only privately).
type ToughStream =
    std::pin::Pin<Box<dyn futures_util::Stream<Item = Result<tough::Bytes, tough::TransportError>> + Send>>;

#[tough::async_trait]
impl tough::Transport for HarnessHttp {
    async fn fetch(&self, url: url::Url) -> Result<ToughStream, tough::TransportError> {
        use tough::{TransportError, TransportErrorKind};
        let addr = format!("{}:{}", url.host_str().unwrap_or_default(), url.port().unwrap_or(80));
        let path = url.path().to_owned();
        let answer = tokio::task::spawn_blocking(move || {
            seal_testkit::http::send(&addr, "GET", &path, &[], &[], std::time::Duration::from_secs(10))
        })
        .await
        .map_err(|e| TransportError::new_with_cause(TransportErrorKind::Other, url.clone(), e))?
        .map_err(|e| TransportError::new_with_cause(TransportErrorKind::Other, url.clone(), e))?;
        match answer.status {
            200 => {
                let body = tough::Bytes::from(answer.body);
                Ok(Box::pin(futures_util::stream::once(async move { Ok(body) })))
            }
            404 => Err(TransportError::new(TransportErrorKind::FileNotFound, url)),
            status => Err(TransportError::new_with_cause(
                TransportErrorKind::Other,
                url,
                std::io::Error::other(format!("HTTP {status}")),
            )),
        }
    }
}

/// The repository as tough loads it from `trusted_root` over HTTP: (target name, length,
/// sha256 hex) of every target, and the versions of root, timestamp and snapshot it trusts.
/// Every target as (name, length, sha256 hex), in name order.
type TargetList = Vec<(String, u64, String)>;

fn tough_load(node: &Node, trusted_root: &[u8]) -> Result<(TargetList, [u64; 3]), String> {
    let base = |tail: &str| url::Url::parse(&format!("http://{}/tuf/{REPO}/{tail}/", node.addr)).unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let repo = runtime
        .block_on(
            tough::RepositoryLoader::new(&trusted_root, base("metadata"), base("targets"))
                .transport(HarnessHttp)
                .load(),
        )
        .map_err(|e| format!("tough refused the repository: {e}"))?;
    let mut targets: TargetList = repo
        .all_targets()
        .map(|(name, t)| (name.raw().to_owned(), t.length, hex_of(t.hashes.sha256.as_ref())))
        .collect();
    targets.sort();
    let versions = [
        repo.root().signed.version.get(),
        repo.timestamp().signed.version.get(),
        repo.snapshot().signed.version.get(),
    ];
    Ok((targets, versions))
}

fn hex_of(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn tough_loads_the_repository_over_http_through_a_root_rotation() {
    let dir = tempfile::tempdir().unwrap();
    let (node, owners, online, root_v1) = repository(dir.path());
    let entry = |name: &str, data: &[u8]| (name.to_owned(), data.len() as u64, common::sha256_hex(data));

    let (targets, versions) = tough_load(&node, &root_v1).unwrap();
    assert_eq!(targets, vec![entry("image.bin", PAYLOAD)]);
    assert_eq!(versions, [1, 1, 1]);

    // The same root signed by keys the repository never used: tough does not take the served
    // metadata on its word.
    let strangers = Owners::new();
    let foreign_root = signed(
        root_json(1, &[&strangers.root[0]], &strangers, &online),
        &[&strangers.root[0]],
    );
    let refused = tough_load(&node, &serde_json::to_vec(&foreign_root).unwrap()).unwrap_err();
    assert!(refused.contains("tough refused"), "{refused}");

    // Root 2 signed by the old and the new root key, and a new target: tough walks from root 1.
    rotate_root_and_add_image_2(&node, &owners, &online);
    let (targets, versions) = tough_load(&node, &root_v1).unwrap();
    assert_eq!(
        targets,
        vec![entry("image-2.bin", RELEASE), entry("image.bin", PAYLOAD)]
    );
    assert_eq!(versions, [2, 2, 2]);
}
