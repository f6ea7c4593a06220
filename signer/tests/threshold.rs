//! Three real seal-signer processes holding a 2-of-3 FROST Ed25519 key:
//! DKG through one signer, signing through any, with one signer killed and
//! then two, the policy on every participant, and no plaintext share at rest.

mod common;

use std::path::{Path, PathBuf};
use std::process::Child;
use std::time::Duration;

use common::{client, files_containing, timestamp};

use frost_ed25519::keys::KeyPackage;
use seal_signer::client::{ClientError, SignerClient};
use seal_signer::testing::{spawn_signer, TestPki};
use seal_signer::threshold::ThresholdHandle;

struct Signer {
    child: Child,
    port: u16,
    data: PathBuf,
    passphrase: String,
}

impl Signer {
    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Signer {
    fn drop(&mut self) {
        self.kill();
    }
}

const WEEK: time::Duration = time::Duration::days(7);

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn verify(public: &[u8], msg: &[u8], sig: &[u8]) {
    let key = ed25519_dalek::VerifyingKey::from_bytes(public.try_into().expect("32-byte key")).unwrap();
    key.verify_strict(msg, &ed25519_dalek::Signature::from_slice(sig).unwrap())
        .expect("verify_strict");
    seal_tuf::PublicKey::new(seal_tuf::KeyType::Ed25519, public.to_vec())
        .unwrap()
        .verify("eddsa", msg, sig)
        .expect("seal-tuf verification");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_of_three_signers_make_and_use_a_frost_key() {
    let dir = tempfile::tempdir().unwrap();
    let pki = TestPki::new(dir.path(), "seal");
    let (node_cert, node_key) = pki.leaf("node");
    let ca = pki.ca_file();
    let ports: Vec<u16> = (0..3).map(|_| free_port()).collect();
    let mut signers = Vec::new();
    for i in 1..=3u16 {
        let (cert, key) = pki.leaf(&format!("signer-{i}"));
        let data = dir.path().join(format!("signer-{i}-data"));
        let peers: Vec<serde_json::Value> = (1..=3u16)
            .filter(|p| *p != i)
            .map(|p| {
                serde_json::json!({"id": p, "addr": format!("localhost:{}", ports[usize::from(p) - 1]),
                                   "name": format!("signer-{p}")})
            })
            .collect();
        let config = dir.path().join(format!("signer-{i}.json"));
        std::fs::write(
            &config,
            serde_json::json!({
                "server": {"grpc_addr": format!("127.0.0.1:{}", ports[usize::from(i) - 1]),
                           "tls_cert_file": cert, "tls_key_file": key, "client_ca_file": ca,
                           "allowed_client_names": ["node*", "signer-*"]},
                "storage": {"data_dir": data},
                "key_backend": {"type": "threshold", "threshold": 2, "self_id": i, "peers": peers,
                                "peer_timeout_ms": 1000},
            })
            .to_string(),
        )
        .unwrap();
        let passphrase = format!("passphrase of signer {i}");
        let (child, port) = spawn_signer(Path::new(env!("CARGO_BIN_EXE_seal-signer")), &config, &passphrase);
        assert_eq!(port, ports[usize::from(i) - 1]);
        signers.push(Signer {
            child,
            port,
            data,
            passphrase,
        });
    }
    let clients: Vec<SignerClient> = signers
        .iter()
        .map(|s| client(s.port, &ca, &node_cert, &node_key, Duration::from_secs(30)))
        .collect();
    let gun = "example.com/app";

    // DKG through signer 1; signers 2 and 3 know the same key.
    let key = clients[0].create_key("ed25519", gun, "timestamp").await.unwrap();
    assert_eq!(key.algorithm, "ed25519");
    assert_eq!(key.public.len(), 32);
    assert_eq!(
        seal_tuf::PublicKey::new(seal_tuf::KeyType::Ed25519, key.public.clone())
            .unwrap()
            .id(),
        key.key_id
    );
    for c in &clients[1..] {
        let info = c.get_key_info(&key.key_id).await.unwrap();
        assert_eq!(
            (info.public.as_slice(), info.role.as_deref(), info.algorithm.as_str()),
            (key.public.as_slice(), Some("timestamp"), "ed25519")
        );
    }
    // ECDSA cannot be a threshold key.
    match clients[2].create_key("ecdsa", gun, "timestamp").await {
        Err(ClientError::Other(m)) => assert!(m.contains("only ed25519"), "{m}"),
        other => panic!("expected a clear refusal of ecdsa, got {other:?}"),
    }

    // Sign through signer 2: an ordinary Ed25519 signature.
    let t1 = timestamp(1, WEEK);
    let s = clients[1]
        .sign(&key.key_id, &t1, Some(gun), Some("timestamp"))
        .await
        .unwrap();
    assert_eq!((s.method.as_str(), s.key_id.as_str()), ("eddsa", key.key_id.as_str()));
    verify(&key.public, &t1, &s.signature);

    // One signer killed: signing still works, through either survivor.
    signers[2].kill();
    let t2 = timestamp(2, WEEK);
    verify(
        &key.public,
        &t2,
        &clients[0]
            .sign(&key.key_id, &t2, Some(gun), None)
            .await
            .unwrap()
            .signature,
    );
    let t3 = timestamp(3, WEEK);
    verify(
        &key.public,
        &t3,
        &clients[1].sign(&key.key_id, &t3, None, None).await.unwrap().signature,
    );

    // The policy still refuses a lower version, and a wrong GUN.
    match clients[0].sign(&key.key_id, &timestamp(2, WEEK), None, None).await {
        Err(ClientError::Refused { message, high_water }) => {
            assert!(message.contains("not above"), "{message}");
            assert_eq!(high_water, Some(3));
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    assert!(matches!(
        clients[1]
            .sign(&key.key_id, &timestamp(4, WEEK), Some("example.com/other"), None)
            .await,
        Err(ClientError::Refused { .. })
    ));

    // Two killed: signing fails cleanly, and the survivor keeps serving.
    signers[1].kill();
    match clients[0].sign(&key.key_id, &timestamp(4, WEEK), None, None).await {
        Err(ClientError::Unavailable(m)) => assert!(m.contains("needs 2 signers"), "{m}"),
        other => panic!("expected unavailable, got {other:?}"),
    }
    assert_eq!(clients[0].get_key_info(&key.key_id).await.unwrap().public, key.public);
    signers[0].kill();

    // At rest: every share is a JWE; its plaintext is in no file of any data directory.
    let mut shares = Vec::new();
    for s in &signers {
        let store = seal_signer::store::Store::open(&s.data).unwrap();
        let record = store.key(&key.key_id).unwrap().expect("each signer holds a share");
        assert_eq!(record.backend, "threshold");
        let handle = ThresholdHandle::decode(&record.handle).unwrap();
        assert_eq!(handle.share_jwe.split('.').count(), 5, "share stored as JWE compact");
        assert!(!handle.share_jwe.contains('{'), "share stored as JWE compact");
        let plain = seal_signer::software::decrypt_secret(s.passphrase.as_bytes(), &handle.share_jwe).unwrap();
        let package = KeyPackage::deserialize(&plain).unwrap();
        assert_eq!(package.verifying_key().serialize().unwrap(), key.public);
        let share = package.signing_share().serialize();
        drop(store);
        assert!(
            files_containing(&s.data, &plain).is_empty(),
            "plaintext key package at rest"
        );
        assert!(
            files_containing(&s.data, &share).is_empty(),
            "plaintext signing share at rest"
        );
        shares.push(share);
    }
    shares.sort();
    shares.dedup();
    assert_eq!(shares.len(), 3, "each signer holds its own share");
}
