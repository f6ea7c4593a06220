//! `seal tuf …` against a real node: the online keys, a repository created by uploading a
//! root and targets the test signs offline (as owners do), a key rotation, the list; bad
//! arguments and refused uploads each end in one fatal line and change nothing.

mod common;

use common::{Node, Seal};
use seal_tuf::cjson::Value;
use seal_tuf::tuf1::metadata::{format_expires, sign};
use seal_tuf::tuf1::{SigningKey, TargetFile};
use serde_json::json;
use time::OffsetDateTime;

fn key_json(k: &SigningKey) -> serde_json::Value {
    serde_json::from_slice(&seal_tuf::tuf1::cjson::to_json(k.public().to_value())).unwrap()
}

fn signed(signed: serde_json::Value, keys: &[&SigningKey]) -> Vec<u8> {
    let v = Value::parse(&serde_json::to_vec(&signed).unwrap()).unwrap();
    sign(&v, keys)
}

fn expires() -> String {
    format_expires(OffsetDateTime::now_utc() + time::Duration::days(365))
}

#[test]
fn a_repository_is_administered_with_seal_tuf() {
    let node = Node::start();
    let seal = Seal::new(&node.url);

    let keys = seal.ok(&["tuf", "keys", "firmware"]);
    let online: serde_json::Value = serde_json::from_str(&keys.stdout).unwrap();
    assert_eq!(online["roles"]["timestamp"].as_array().unwrap().len(), 1);
    assert_eq!(
        seal.ok(&["tuf", "keys", "firmware"]).stdout,
        keys.stdout,
        "the same keys again"
    );
    // Keys alone make no repository.
    assert_eq!(seal.ok(&["tuf", "list"]).stdout, "");

    let root_key = SigningKey::generate_ed25519(&mut rand::rngs::OsRng).unwrap();
    let targets_key = SigningKey::generate_ed25519(&mut rand::rngs::OsRng).unwrap();
    let mut all_keys = online["keys"].as_object().unwrap().clone();
    all_keys.insert(root_key.keyid().to_owned(), key_json(&root_key));
    all_keys.insert(targets_key.keyid().to_owned(), key_json(&targets_key));
    let root = json!({
        "_type": "root", "spec_version": "1.0.31", "version": 1, "expires": expires(),
        "consistent_snapshot": true, "keys": all_keys,
        "roles": {
            "root": {"keyids": [root_key.keyid()], "threshold": 1},
            "targets": {"keyids": [targets_key.keyid()], "threshold": 1},
            "timestamp": {"keyids": online["roles"]["timestamp"], "threshold": 1},
            "snapshot": {"keyids": online["roles"]["snapshot"], "threshold": 1},
        }
    });
    let entry: serde_json::Value = serde_json::from_slice(&seal_tuf::tuf1::cjson::to_json(
        &TargetFile::from_data(b"image").to_value(),
    ))
    .unwrap();
    let targets = json!({
        "_type": "targets", "spec_version": "1.0.31", "version": 1, "expires": expires(),
        "targets": {"image.bin": entry},
    });
    let root_file = seal.file("1.root.json", &signed(root, &[&root_key]));
    let targets_file = seal.file("targets-v1.txt", &signed(targets.clone(), &[&targets_key]));

    // Refusals: a file name naming no role, a missing file, not JSON, a role given twice, and the
    // server's own refusal (targets signed by a key root does not list). None creates anything.
    let fails = |args: &[&str], says: &str| {
        let r = seal.fails(args);
        assert!(r.stderr.contains(says), "{args:?}: {}", r.stderr);
    };
    let (root_arg, targets_arg) = (root_file.to_str().unwrap(), targets_file.to_str().unwrap());
    fails(
        &["tuf", "upload", "firmware", root_arg, targets_arg],
        "name it <role>.json",
    );
    fails(
        &["tuf", "upload", "firmware", "/nonexistent/root.json"],
        "/nonexistent/root.json",
    );
    let not_json = seal.file("targets.json", b"{not json");
    fails(&["tuf", "upload", "firmware", not_json.to_str().unwrap()], "not JSON");
    let twice = format!("root={targets_arg}");
    fails(
        &["tuf", "upload", "firmware", root_arg, &twice],
        "role root given twice",
    );
    let forged = seal.file("forged.json", &signed(targets, &[&root_key]));
    let forged = format!("targets={}", forged.to_str().unwrap());
    fails(&["tuf", "upload", "firmware", root_arg, &forged], "INVALID_UPDATE");
    assert_eq!(seal.ok(&["tuf", "list"]).stdout, "");

    let targets_arg = format!("targets={targets_arg}");
    let up = seal.ok(&["tuf", "upload", "firmware", root_arg, &targets_arg]);
    assert_eq!(up.stdout.trim(), "Uploaded root, targets to firmware");
    assert_eq!(seal.ok(&["tuf", "list"]).stdout, "firmware\n");

    // Rotation: a second timestamp key, held beside the first.
    let rotated: serde_json::Value =
        serde_json::from_str(&seal.ok(&["tuf", "rotate-key", "firmware", "timestamp"]).stdout).unwrap();
    let ids = rotated["roles"]["timestamp"].as_array().unwrap();
    assert_eq!(ids.len(), 2);
    assert_eq!(ids[0], online["roles"]["timestamp"][0]);
    fails(
        &["tuf", "rotate-key", "firmware", "targets"],
        "targets: the service rotates only its online keys, timestamp and snapshot",
    );
    // Nothing was rotated by the refusal.
    let keys: serde_json::Value = serde_json::from_str(&seal.ok(&["tuf", "keys", "firmware"]).stdout).unwrap();
    assert_eq!(keys["roles"]["timestamp"].as_array().unwrap().len(), 2);
    assert_eq!(keys["roles"]["snapshot"], online["roles"]["snapshot"]);
}
