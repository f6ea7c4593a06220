//! seal-node with `trust_service.type = "remote"`: its timestamp keys live
//! in a real seal-signer process reached over mutual TLS. Publishing and
//! timestamp signing go through the signer; while the signer is down,
//! reads are still served and writes answer 503 with Notary's error body;
//! when it returns, writes work again.

mod common;

use std::path::{Path, PathBuf};
use std::process::Child;

use common::Node;
use seal_signer::testing::{spawn_signer, TestPki};
use seal_tuf::testing::TestRepo;
use seal_tuf::PublicKey;
use time::OffsetDateTime;

const GUN: &str = "example.com/remote";

/// The seal-signer binary cargo built beside this test.
fn signer_binary() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let bin = exe.parent().and_then(Path::parent).unwrap().join("seal-signer");
    assert!(
        bin.exists(),
        "{} is missing: build it with `cargo build -p seal-signer` (cargo test --workspace does)",
        bin.display()
    );
    bin
}

fn start_signer(config: &Path) -> Child {
    spawn_signer(&signer_binary(), config, "remote signer test passphrase").0
}

fn tuf(path: &str) -> String {
    format!("/v2/{GUN}/_trust/tuf/{path}")
}

#[test]
fn a_node_signs_through_a_remote_signer_and_survives_its_absence() {
    let dir = tempfile::tempdir().unwrap();
    let pki = TestPki::new(dir.path(), "seal");
    let (signer_cert, signer_key) = pki.leaf("signer");
    let (node_cert, node_key) = pki.leaf("node");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let signer_config = dir.path().join("signer.json");
    std::fs::write(
        &signer_config,
        serde_json::json!({
            "server": {"grpc_addr": format!("127.0.0.1:{port}"), "tls_cert_file": signer_cert,
                       "tls_key_file": signer_key, "client_ca_file": pki.ca_file()},
            "storage": {"data_dir": dir.path().join("signer-data")},
        })
        .to_string(),
    )
    .unwrap();
    let mut signer = start_signer(&signer_config);

    let node = Node::serve(
        &dir.path().join("node"),
        serde_json::json!({
            "server": {},
            "trust_service": {"type": "remote", "hostname": "localhost", "port": port.to_string(),
                              "tls_ca_file": pki.ca_file(), "tls_client_cert": node_cert,
                              "tls_client_key": node_key, "key_algorithm": "ecdsa"},
            "storage": {"backend": "rocksdb"},
        }),
    );

    // The timestamp key is made by the signer; the node holds no private key.
    let key = node.get(&tuf("timestamp.key"));
    assert_eq!(key.status, 200, "{}", key.text());
    let ts_key = PublicKey::from_json(&key.body).unwrap();
    assert_eq!(ts_key.key_type(), seal_tuf::KeyType::Ecdsa);
    let now = OffsetDateTime::now_utc();
    let mut repo = TestRepo::new(GUN, now);
    repo.server_timestamp = Some(ts_key.clone());
    let r = node.publish(GUN, &repo.first_publish(&[("v1", b"one")]));
    assert_eq!(r.status, 200, "{}", r.text());

    // The timestamp the node serves is signed by the signer's key.
    let ts = node.get(&tuf("timestamp.json"));
    assert_eq!(ts.status, 200);
    let file = seal_tuf::SignedFile::parse("timestamp", ts.body.clone()).unwrap();
    seal_tuf::verify::verify_threshold(&file, &[&ts_key], 1).unwrap();

    // Signer down: reads still served, writes 503 with Notary's body.
    signer.kill().unwrap();
    signer.wait().unwrap();
    assert_eq!(node.get(&tuf("timestamp.json")).status, 200);
    assert_eq!(node.get(&tuf("root.json")).status, 200);
    let root = repo.root_file(1);
    let t3 = repo.targets_file(3, &[("v1", b"one"), ("v2", b"two")]);
    let s3 = repo.snapshot_file(3, &[("root", &root), ("targets", &t3)]);
    let update = vec![("targets".to_owned(), t3.clone()), ("snapshot".to_owned(), s3.clone())];
    let r = node.publish(GUN, &update);
    assert_eq!(r.status, 503, "{}", r.text());
    assert_eq!(r.error_code(), "UNAVAILABLE");
    assert_eq!(
        node.get(&tuf("timestamp.json")).body,
        ts.body,
        "a refused write changes nothing"
    );

    // Signer back: the same update goes through.
    let mut signer = start_signer(&signer_config);
    let r = node.publish(GUN, &update);
    assert_eq!(r.status, 200, "{}", r.text());
    let ts2 = node.get(&tuf("timestamp.json"));
    let file = seal_tuf::SignedFile::parse("timestamp", ts2.body.clone()).unwrap();
    seal_tuf::verify::verify_threshold(&file, &[&ts_key], 1).unwrap();
    let t = seal_tuf::Timestamp::from_signed(file.signed()).unwrap();
    assert!(t.version > 1);
    let _ = signer.kill();
    let _ = signer.wait();
}
