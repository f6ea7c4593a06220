//! seal-node with `trust_service.type = "remote"` signing through three real
//! seal-signer processes that hold its timestamp key as 2-of-3 FROST shares
//! (`key_backend.type = "threshold"`, mutual TLS everywhere). The node talks
//! to signer 1 only. Publishing and timestamp refresh work, and the served
//! timestamp verifies against the group key with ed25519-dalek's
//! `verify_strict` and with seal-tuf; with one signer killed both still
//! work; with two killed a publish answers 503 with Notary's error body while
//! root.json and timestamp.json are still served.

mod common;

use std::time::Duration;

use common::cluster::{publish_new, tuf};
use common::metadata::{refreshed_timestamp, served_timestamp, update};
use common::{signer_binary, Node};
use seal_signer::testing::{client, TestPki, ThresholdCluster};
use seal_tuf::{KeyType, PublicKey};

#[test]
fn a_node_publishes_and_refreshes_through_two_of_three_threshold_signers() {
    const GUN: &str = "example.com/threshold";
    let dir = tempfile::tempdir().unwrap();
    let pki = TestPki::new(dir.path(), "seal");
    let (node_cert, node_key) = pki.leaf("seal-node");
    let mut signers = ThresholdCluster::start(&signer_binary(), &pki, dir.path(), (2, 3), &["seal-node"], |_, _| {});
    // Eight-second timestamps, refreshed when half their life is left.
    let node = Node::serve(
        &dir.path().join("node"),
        serde_json::json!({
            "server": {},
            "trust_service": {"type": "remote", "hostname": "localhost", "port": signers.signers[0].port.to_string(),
                              "tls_ca_file": pki.ca_file(), "tls_client_cert": node_cert,
                              "tls_client_key": node_key, "key_algorithm": "ed25519"},
            "storage": {"backend": "rocksdb"},
            "timestamps": {"timestamp_lifetime_secs": 8, "refresh_margin_fraction": 0.5},
        }),
    );

    // The timestamp key comes from a DKG among the three signers: every one
    // of them records the same group key, the one the node serves.
    let (repo, root) = publish_new(&node, GUN);
    let key = PublicKey::from_json(&node.get(&tuf(GUN, "timestamp.key")).body).unwrap();
    assert_eq!(key.key_type(), KeyType::Ed25519);
    let rt = tokio::runtime::Runtime::new().unwrap();
    for s in &signers.signers {
        let c = || client(s.port, &pki.ca_file(), &node_cert, &node_key, Duration::from_secs(5));
        let info = rt.block_on(async { c().get_key_info(key.id()).await }).unwrap();
        assert_eq!(
            (info.public.as_slice(), info.role.as_deref()),
            (key.public_bytes(), Some("timestamp")),
            "signer {}",
            s.id
        );
    }
    let first = served_timestamp(&node, GUN, &key);

    // All three up, then with signer 3 killed (signers 1 and 2 still reach
    // the threshold): a publish gets a threshold-signed timestamp, and the
    // refresher re-signs it.
    let mut latest = first;
    for (version, kill) in [(3, None), (4, Some(3))] {
        if let Some(id) = kill {
            signers.signer(id).kill();
        }
        let r = node.publish(GUN, &update(&repo, version));
        assert_eq!(r.status, 200, "{}", r.text());
        let published = served_timestamp(&node, GUN, &key);
        assert!(published.version > latest.version);
        latest = refreshed_timestamp(&node, GUN, &key, &published);
    }

    // Signer 2 killed too (just after a refresh, so the served timestamp has
    // most of its life left): signing fails cleanly, reads are still served.
    signers.signer(2).kill();
    let before = node.get(&tuf(GUN, "timestamp.json"));
    assert_eq!(before.status, 200, "{}", before.text());
    let r = node.publish(GUN, &update(&repo, 5));
    assert_eq!(r.status, 503, "{}", r.text());
    assert_eq!(r.error_code(), "UNAVAILABLE", "{}", r.text());
    let served_root = node.get(&tuf(GUN, "root.json"));
    assert_eq!((served_root.status, served_root.body), (200, root));
    assert_eq!(served_timestamp(&node, GUN, &key).version, latest.version);
    assert_eq!(
        node.get(&tuf(GUN, "timestamp.json")).body,
        before.body,
        "a refused write changes nothing"
    );
}
