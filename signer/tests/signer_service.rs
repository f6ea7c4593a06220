//! seal-signer as a real process over mutual TLS: key management, signing
//! checked by the policy, refusals, certificates that are not trusted,
//! high-water marks that survive a restart, no plaintext key at rest, a
//! timestamp bound to its snapshot, and a cap on open connections.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::{client, files_containing, timestamp};

use seal_signer::client::ClientError;
use seal_signer::testing::{free_port, metric, scrape_metrics, spawn_signer, TestPki};
use seal_testkit::process::Process;
use seal_tuf::metadata::{ROOT, TARGETS};
use seal_tuf::{FileMeta, Snapshot};
use time::OffsetDateTime;

/// A signer process, killed when dropped.
struct Signer {
    process: Process,
    port: u16,
    config: PathBuf,
}

impl Signer {
    fn start(config: &Path) -> Signer {
        let (process, port) = spawn_signer(
            Path::new(env!("CARGO_BIN_EXE_seal-signer")),
            config,
            "a signer passphrase for tests",
        );
        Signer {
            process,
            port,
            config: config.to_owned(),
        }
    }

    fn restart(&mut self) {
        self.process.kill();
        let port = self.port;
        // Same port: rewrite the config.
        let mut c: serde_json::Value = serde_json::from_slice(&std::fs::read(&self.config).unwrap()).unwrap();
        c["server"]["grpc_addr"] = serde_json::json!(format!("127.0.0.1:{port}"));
        std::fs::write(&self.config, c.to_string()).unwrap();
        *self = Signer::start(&self.config);
    }
}

fn snapshot(version: u64) -> Vec<u8> {
    let mut meta = std::collections::BTreeMap::new();
    meta.insert(ROOT.to_owned(), FileMeta::for_bytes(b"root"));
    meta.insert(TARGETS.to_owned(), FileMeta::for_bytes(b"targets"));
    Snapshot {
        version,
        expires: OffsetDateTime::now_utc() + time::Duration::days(30),
        meta,
    }
    .to_value()
    .to_canonical()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn software_keys_over_mutual_tls_with_the_signing_policy() {
    let dir = tempfile::tempdir().unwrap();
    let pki = TestPki::new(dir.path(), "seal");
    let rogue = TestPki::new(dir.path(), "rogue");
    let (server_cert, server_key) = pki.leaf("signer");
    let (node_cert, node_key) = pki.leaf("node");
    let (rogue_cert, rogue_key) = rogue.leaf("intruder");
    // Signed by the right CA, but not a server node.
    let (other_cert, other_key) = pki.leaf("registry-frontend");
    // An operator's certificate, the only one allowed to delete keys.
    let (admin_cert, admin_key) = pki.leaf("signer-admin");
    let data = dir.path().join("data");
    let config = dir.path().join("signer.json");
    std::fs::write(
        &config,
        serde_json::json!({
            "server": {"grpc_addr": "127.0.0.1:0", "tls_cert_file": server_cert, "tls_key_file": server_key,
                       "client_ca_file": pki.ca_file(), "allowed_client_names": ["node*"],
                       "admin_client_names": ["signer-admin"]},
            "storage": {"data_dir": data},
            "default_alias": "main",
            // The bare timestamps here stand for a real Notary server as
            // client; the binding to the snapshot is tested below.
            "policy": {"notary_compat": true},
        })
        .to_string(),
    )
    .unwrap();
    let mut signer = Signer::start(&config);
    let ca = pki.ca_file();
    let c = client(signer.port, &ca, &node_cert, &node_key, Duration::from_secs(5));

    let gun = "example.com/app";
    let ts_key = c.create_key("ecdsa", gun, "timestamp").await.unwrap();
    let info = c.get_key_info(&ts_key.key_id).await.unwrap();
    assert_eq!(
        (info.role.as_deref(), info.public.as_slice()),
        (Some("timestamp"), ts_key.public.as_slice())
    );
    let public = seal_tuf::PublicKey::new(seal_tuf::KeyType::Ecdsa, ts_key.public.clone()).unwrap();
    assert_eq!(public.id(), ts_key.key_id);

    // A fresh timestamp is signed, and the signature verifies as a client
    // would check it.
    let t1 = timestamp(1, time::Duration::days(14));
    let s = c.sign(&ts_key.key_id, &t1, Some(gun), Some("timestamp")).await.unwrap();
    assert_eq!(s.method, "ecdsa");
    public.verify("ecdsa", &t1, &s.signature).unwrap();
    let t2 = timestamp(2, time::Duration::days(14));
    c.sign(&ts_key.key_id, &t2, None, None).await.unwrap();

    // The policy's refusals.
    let refused = |r: Result<_, ClientError>| match r {
        Err(ClientError::Refused { message, high_water }) => (message, high_water),
        other => panic!("expected a refusal, got {other:?}"),
    };
    let (m, hw) = refused(
        c.sign(&ts_key.key_id, &timestamp(1, time::Duration::days(1)), None, None)
            .await,
    );
    assert!(m.contains("not above"), "{m}");
    assert_eq!(hw, Some(2));
    let (m, _) = refused(
        c.sign(&ts_key.key_id, &timestamp(3, time::Duration::days(400)), None, None)
            .await,
    );
    assert!(m.contains("beyond"), "{m}");
    let (m, _) = refused(c.sign(&ts_key.key_id, &snapshot(3), None, None).await);
    assert!(m.contains("role"), "{m}");
    // A compromised node holding a node certificate asks for a fresh
    // timestamp that also carries "expireſ" (U+017F folds to s in Go's
    // decoder, which takes the last match): Notary and Docker clients would
    // read an expiry in 2125. Refused, naming the field; so is any unknown key.
    for key in ["expire\u{17f}", "\u{212a}eyid"] {
        let mut v = seal_tuf::cjson::Value::parse(&timestamp(3, time::Duration::days(7))).unwrap();
        if let seal_tuf::cjson::Value::Object(m) = &mut v {
            m.insert(key.to_owned(), seal_tuf::cjson::Value::str("2125-01-01T00:00:00Z"));
        }
        let tampered = v.to_canonical();
        let (m, _) = refused(c.sign(&ts_key.key_id, &tampered, Some(gun), Some("timestamp")).await);
        assert!(m.contains(&format!("unknown field \"signed.{key}\"")), "{m}");
    }
    let (m, _) = refused(
        c.sign(
            &ts_key.key_id,
            &timestamp(3, time::Duration::days(1)),
            Some("example.com/other"),
            None,
        )
        .await,
    );
    assert!(m.contains("example.com/other"), "{m}");
    let (m, _) = refused(c.sign(&ts_key.key_id, b"arbitrary bytes", None, None).await);
    assert!(m.contains("canonical JSON"), "{m}");
    assert!(matches!(
        c.sign(&"0".repeat(64), &t2, None, None).await,
        Err(ClientError::NotFound(_))
    ));

    // Ed25519 snapshot keys work too.
    let snap_key = c.create_key("ed25519", gun, "snapshot").await.unwrap();
    let s1 = snapshot(1);
    let s = c
        .sign(&snap_key.key_id, &s1, Some(gun), Some("snapshot"))
        .await
        .unwrap();
    seal_tuf::PublicKey::new(seal_tuf::KeyType::Ed25519, snap_key.public.clone())
        .unwrap()
        .verify("eddsa", &s1, &s.signature)
        .unwrap();
    assert!(c.create_key("rsa", gun, "timestamp").await.is_err());

    // A client whose certificate another CA signed is refused.
    let intruder = client(signer.port, &ca, &rogue_cert, &rogue_key, Duration::from_secs(5));
    assert!(intruder.create_key("ecdsa", gun, "timestamp").await.is_err());
    assert!(intruder
        .sign(&ts_key.key_id, &timestamp(9, time::Duration::days(1)), None, None)
        .await
        .is_err());
    // So is one the right CA signed whose name is not on the allow-list.
    let other = client(signer.port, &ca, &other_cert, &other_key, Duration::from_secs(5));
    assert!(other.get_key_info(&ts_key.key_id).await.is_err());
    // So is a client with no certificate at all.
    seal_signer::install_crypto_provider();
    let anonymous = tonic::transport::Endpoint::from_shared(format!("https://localhost:{}", signer.port))
        .unwrap()
        .tls_config(
            tonic::transport::ClientTlsConfig::new()
                .ca_certificate(tonic::transport::Certificate::from_pem(std::fs::read(&ca).unwrap()))
                .domain_name("localhost"),
        )
        .unwrap()
        .connect_lazy();
    let anonymous_answer = seal_proto::signer::key_management_client::KeyManagementClient::new(anonymous)
        .get_key_info(seal_proto::signer::KeyId {
            id: ts_key.key_id.clone(),
        })
        .await;
    assert!(anonymous_answer.is_err(), "a client without a certificate was served");

    // A restart keeps keys and high-water marks.
    signer.restart();
    let c = client(signer.port, &ca, &node_cert, &node_key, Duration::from_secs(5));
    let (_, hw) = refused(
        c.sign(&ts_key.key_id, &timestamp(2, time::Duration::days(1)), None, None)
            .await,
    );
    assert_eq!(hw, Some(2));
    let t3 = timestamp(3, time::Duration::days(14));
    public
        .verify(
            "ecdsa",
            &t3,
            &c.sign(&ts_key.key_id, &t3, None, None).await.unwrap().signature,
        )
        .unwrap();
    // A node's certificate may not delete keys (a compromised node would
    // destroy every server-held key); the operator's may.
    let denied = c.delete_key(&snap_key.key_id).await;
    assert!(
        matches!(&denied, Err(ClientError::Other(m)) if m.contains("admin_client_names")),
        "{denied:?}"
    );
    c.get_key_info(&snap_key.key_id).await.unwrap();
    let admin = client(signer.port, &ca, &admin_cert, &admin_key, Duration::from_secs(5));
    admin.delete_key(&snap_key.key_id).await.unwrap();
    assert!(matches!(
        c.get_key_info(&snap_key.key_id).await,
        Err(ClientError::NotFound(_))
    ));
    drop(signer);

    // Keys at rest: decrypt the stored key with the passphrase, then look
    // for its plaintext in every file of the signer's database.
    let store = seal_signer::store::Store::open(&data).unwrap();
    let record = store.key(&ts_key.key_id).unwrap().unwrap();
    let der = seal_signer::software::open_handle(b"a signer passphrase for tests", &record.handle).unwrap();
    let private = seal_tuf::PrivateKey::from_pkcs8_der(&der).unwrap();
    assert_eq!(private.public_key().id(), ts_key.key_id);
    drop(store);
    assert!(
        files_containing(&data, &der).is_empty(),
        "plaintext PKCS#8 key found at rest"
    );
    // Nor the bare private scalar.
    use p256::pkcs8::DecodePrivateKey as _;
    let scalar = p256::SecretKey::from_pkcs8_der(&der).unwrap().to_bytes();
    assert!(
        files_containing(&data, &scalar).is_empty(),
        "private scalar found at rest"
    );
}

/// A signed snapshot file of `version` (the policy reads its version; no
/// signature needed).
fn snapshot_file(version: u64) -> Vec<u8> {
    let signed = seal_tuf::cjson::Value::parse(&snapshot(version)).unwrap();
    seal_tuf::SignedFile::assemble("snapshot", signed, Vec::new()).into_bytes()
}

/// A timestamp of `version` listing `snapshot`.
fn timestamp_over(version: u64, snapshot: &[u8]) -> Vec<u8> {
    let mut meta = std::collections::BTreeMap::new();
    meta.insert("snapshot".to_owned(), FileMeta::for_bytes(snapshot));
    seal_tuf::Timestamp {
        version,
        expires: OffsetDateTime::now_utc() + time::Duration::days(7),
        meta,
    }
    .to_value()
    .to_canonical()
}

/// A compromised node, holding a node certificate, asks the signer for
/// fresh timestamps that keep clients on an old snapshot (old targets):
/// refused, before and after a restart, as is a timestamp without its
/// snapshot or with other bytes than the ones it lists.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fresh_timestamp_over_an_older_snapshot_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let pki = TestPki::new(dir.path(), "seal");
    let (server_cert, server_key) = pki.leaf("signer");
    let (node_cert, node_key) = pki.leaf("node-1");
    let config = dir.path().join("signer.json");
    std::fs::write(
        &config,
        serde_json::json!({
            "server": {"grpc_addr": "127.0.0.1:0", "tls_cert_file": server_cert, "tls_key_file": server_key,
                       "client_ca_file": pki.ca_file(), "allowed_client_names": ["node*"]},
            "storage": {"data_dir": dir.path().join("data")},
            "default_alias": "main",
        })
        .to_string(),
    )
    .unwrap();
    let mut signer = Signer::start(&config);
    let ca = pki.ca_file();
    let c = client(signer.port, &ca, &node_cert, &node_key, Duration::from_secs(5));
    let gun = "example.com/app";
    let key = c.create_key("ecdsa", gun, "timestamp").await.unwrap();
    let (s1, s2) = (snapshot_file(1), snapshot_file(2));
    let sign = |c: &seal_signer::client::SignerClient, content: Vec<u8>, named: Option<Vec<u8>>| {
        let (c, key_id) = (c.clone(), key.key_id.clone());
        async move {
            let named: Vec<(&str, &[u8])> = named.iter().map(|b| ("snapshot", b.as_slice())).collect();
            c.sign_bound(&key_id, &content, Some(gun), Some("timestamp"), &named)
                .await
        }
    };
    let refused = |r: Result<_, ClientError>| match r {
        Err(ClientError::Refused { message, .. }) => message,
        other => panic!("expected a refusal, got {other:?}"),
    };
    sign(&c, timestamp_over(1, &s2), Some(s2.clone())).await.unwrap();
    let m = refused(sign(&c, timestamp_over(2, &s1), Some(s1.clone())).await);
    assert!(m.contains("snapshot named has version 1, below version 2"), "{m}");
    let m = refused(sign(&c, timestamp_over(2, &s2), None).await);
    assert!(m.contains("only with the snapshot it names"), "{m}");
    let m = refused(sign(&c, timestamp_over(2, &s2), Some(s1.clone())).await);
    assert!(m.contains("not the one listed"), "{m}");
    // A refresh over the same snapshot is signed.
    sign(&c, timestamp_over(2, &s2), Some(s2.clone())).await.unwrap();

    signer.restart();
    let c = client(signer.port, &ca, &node_cert, &node_key, Duration::from_secs(5));
    let m = refused(sign(&c, timestamp_over(3, &s1), Some(s1)).await);
    assert!(m.contains("below version 2"), "{m}");
    sign(&c, timestamp_over(3, &s2), Some(s2)).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_over_the_cap_are_closed_at_once_and_counted() {
    use tokio::io::AsyncReadExt as _;
    const CAP: usize = 8;
    let dir = tempfile::tempdir().unwrap();
    let pki = TestPki::new(dir.path(), "seal");
    let (server_cert, server_key) = pki.leaf("signer");
    let (node_cert, node_key) = pki.leaf("node");
    let metrics_port = free_port();
    let config = dir.path().join("signer.json");
    std::fs::write(
        &config,
        serde_json::json!({
            "server": {"grpc_addr": "127.0.0.1:0", "tls_cert_file": server_cert, "tls_key_file": server_key,
                       "client_ca_file": pki.ca_file(), "metrics_addr": format!("127.0.0.1:{metrics_port}"),
                       "max_connections": CAP},
            "storage": {"data_dir": dir.path().join("data")},
        })
        .to_string(),
    )
    .unwrap();
    let signer = Signer::start(&config);
    let addr = ("127.0.0.1", signer.port);
    let value = |series: &str| metric(&scrape_metrics(metrics_port), series);
    let until = |series: &'static str, want: f64| async move {
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while value(series) != want {
            assert!(
                std::time::Instant::now() < deadline,
                "{series} = {}, expected {want}",
                value(series)
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };

    // Clients that connect and never start a TLS handshake hold every slot...
    let mut idle = Vec::new();
    for _ in 0..CAP {
        idle.push(tokio::net::TcpStream::connect(addr).await.unwrap());
    }
    until("seal_signer_connections_open", CAP as f64).await;
    assert_eq!(value("seal_signer_connections_refused_total"), 0.0);

    // ...so each further connection is closed on arrival (end of stream at
    // once, not after the 10 s handshake timeout) and counted.
    for _ in 0..4 {
        let mut extra = tokio::net::TcpStream::connect(addr).await.unwrap();
        let mut byte = [0u8; 1];
        let read = tokio::time::timeout(Duration::from_secs(2), extra.read(&mut byte))
            .await
            .expect("a connection over the cap is closed at once");
        assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
    }
    assert_eq!(value("seal_signer_connections_refused_total"), 4.0);
    let c = client(
        signer.port,
        &pki.ca_file(),
        &node_cert,
        &node_key,
        Duration::from_secs(5),
    );
    assert!(
        c.check_health().await.is_err(),
        "a node is turned away while the cap is reached"
    );
    drop(c);

    // Once they are gone, a node is served again.
    drop(idle);
    until("seal_signer_connections_open", 0.0).await;
    let c = client(
        signer.port,
        &pki.ca_file(),
        &node_cert,
        &node_key,
        Duration::from_secs(5),
    );
    c.check_health()
        .await
        .expect("a node is served once the idle connections are gone");
    assert!(value("seal_signer_connections_open") >= 1.0);
}
