//! seal-node with `trust_service.type = "remote"`: its timestamp keys live
//! in a real seal-signer process reached over mutual TLS, with software keys
//! or keys inside a SoftHSM2 token. Publishing and timestamp signing go
//! through the signer; while the signer is down, reads are still served,
//! writes answer 503 with Notary's error body and health shows the node
//! degraded; when it returns, writes work again. A signer that already
//! signed a higher version (a write that never committed) makes the node
//! regenerate above it instead of failing forever.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::cluster::tuf;
use common::metadata::{refreshed_timestamp, served_timestamp, update};
use common::{signer_binary, Node};
use seal_signer::client::{ClientConfig, SignerClient};
use seal_signer::testing::{softhsm_conf, softhsm_init_token, spawn_signer_with_env, TestPki, SOFTHSM_MODULE};
use seal_testkit::process::Process;
use seal_tuf::testing::TestRepo;
use seal_tuf::PublicKey;
use time::OffsetDateTime;

const PASSPHRASE: &str = "remote signer test passphrase";

/// A signer process, killed when dropped (also when a test fails).
struct Signer(Process);

impl Signer {
    fn kill(&mut self) {
        self.0.kill();
    }
}

/// A signer configuration and the node-side TLS material to reach it.
struct Setup {
    dir: tempfile::TempDir,
    pki: TestPki,
    port: u16,
    signer_config: PathBuf,
    node_cert: PathBuf,
    node_key: PathBuf,
    signer_env: Vec<(&'static str, PathBuf)>,
}

impl Setup {
    /// A signer with `key_backend` (software when `None`).
    fn new(key_backend: Option<serde_json::Value>, signer_env: Vec<(&'static str, PathBuf)>) -> Setup {
        let dir = tempfile::tempdir().unwrap();
        let pki = TestPki::new(dir.path(), "seal");
        let (signer_cert, signer_key) = pki.leaf("signer");
        let (node_cert, node_key) = pki.leaf("node");
        let port = seal_testkit::free_port();
        let signer_config = dir.path().join("signer.json");
        let mut config = serde_json::json!({
            "server": {"grpc_addr": format!("127.0.0.1:{port}"), "tls_cert_file": signer_cert,
                       "tls_key_file": signer_key, "client_ca_file": pki.ca_file()},
            "storage": {"data_dir": dir.path().join("signer-data")},
        });
        if let Some(b) = key_backend {
            config["key_backend"] = b;
        }
        std::fs::write(&signer_config, config.to_string()).unwrap();
        Setup {
            dir,
            pki,
            port,
            signer_config,
            node_cert,
            node_key,
            signer_env,
        }
    }

    fn start_signer(&self) -> Signer {
        let env: Vec<(&str, &Path)> = self.signer_env.iter().map(|(k, v)| (*k, v.as_path())).collect();
        Signer(spawn_signer_with_env(&signer_binary(), &self.signer_config, PASSPHRASE, &env).0)
    }

    /// A node using the signer, its keys of `algorithm`; `timestamps` is
    /// its `timestamps` config section.
    fn start_node(&self, algorithm: &str, timestamps: serde_json::Value) -> Node {
        Node::serve(
            &self.dir.path().join("node"),
            serde_json::json!({
                "server": {},
                "trust_service": {"type": "remote", "hostname": "localhost", "port": self.port.to_string(),
                                  "tls_ca_file": self.pki.ca_file(), "tls_client_cert": self.node_cert,
                                  "tls_client_key": self.node_key, "key_algorithm": algorithm},
                "storage": {"backend": "rocksdb"},
                "timestamps": timestamps,
            }),
        )
    }

    /// A gRPC client with the node's certificate (to act as another node).
    fn client(&self) -> SignerClient {
        SignerClient::new(&ClientConfig {
            hostname: "localhost".into(),
            port: self.port,
            ca_file: self.pki.ca_file(),
            cert_file: self.node_cert.clone(),
            key_file: self.node_key.clone(),
            timeout: Duration::from_secs(5),
            connect_timeout: Duration::from_secs(5),
        })
        .unwrap()
    }
}

/// Fetches the node's timestamp key and publishes a first version of `gun`.
fn first_publish(node: &Node, gun: &str) -> (TestRepo, PublicKey) {
    let key = node.get(&tuf(gun, "timestamp.key"));
    assert_eq!(key.status, 200, "{}", key.text());
    let ts_key = PublicKey::from_json(&key.body).unwrap();
    let mut repo = TestRepo::new(gun, OffsetDateTime::now_utc());
    repo.server_timestamp = Some(ts_key.clone());
    let r = node.publish(gun, &repo.first_publish(&[("v1", b"one")]));
    assert_eq!(r.status, 200, "{}", r.text());
    (repo, ts_key)
}

#[test]
fn a_node_signs_through_a_remote_signer_and_survives_its_absence() {
    const GUN: &str = "example.com/remote";
    let setup = Setup::new(None, Vec::new());
    let mut signer = setup.start_signer();
    let node = setup.start_node("ecdsa", serde_json::json!({}));

    // The timestamp key is made by the signer; the node holds no private key.
    let (repo, ts_key) = first_publish(&node, GUN);
    assert_eq!(ts_key.key_type(), seal_tuf::KeyType::Ecdsa);
    let ts = node.get(&tuf(GUN, "timestamp.json"));
    served_timestamp(&node, GUN, &ts_key);
    let health = node.get("/_notary_server/health");
    assert_eq!((health.status, health.text()), (200, "{}".to_owned()));

    // Signer down: reads still served, writes 503 with Notary's body, and
    // health says the trust service is not operational (still 200: the
    // node serves reads).
    signer.kill();
    assert_eq!(node.get(&tuf(GUN, "timestamp.json")).status, 200);
    assert_eq!(node.get(&tuf(GUN, "root.json")).status, 200);
    let r = node.publish(GUN, &update(&repo, 3));
    assert_eq!(r.status, 503, "{}", r.text());
    assert_eq!(r.error_code(), "UNAVAILABLE");
    assert_eq!(
        node.get(&tuf(GUN, "timestamp.json")).body,
        ts.body,
        "a refused write changes nothing"
    );
    let health = node.get("/_notary_server/health");
    assert_eq!(health.status, 200);
    let body: serde_json::Value = serde_json::from_slice(&health.body).unwrap();
    assert!(
        body["Trust operational"]
            .as_str()
            .is_some_and(|m| m.starts_with("signer unavailable")),
        "{body}"
    );

    // Signer back: the same update goes through and health recovers.
    let _signer = setup.start_signer();
    let r = node.publish(GUN, &update(&repo, 3));
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(served_timestamp(&node, GUN, &ts_key).version > 1);
    let health = node.get("/_notary_server/health");
    assert_eq!((health.status, health.text()), (200, "{}".to_owned()));
}

#[test]
fn a_node_regenerates_above_versions_the_signer_already_signed() {
    const GUN: &str = "example.com/high-water";
    let setup = Setup::new(None, Vec::new());
    let _signer = setup.start_signer();
    let node = setup.start_node("ed25519", serde_json::json!({}));
    let (repo, ts_key) = first_publish(&node, GUN);
    assert_eq!(served_timestamp(&node, GUN, &ts_key).version, 1);

    // Another node (a former leader whose write never committed) had
    // version 50 of this GUN's timestamp signed.
    let now = OffsetDateTime::now_utc();
    let snapshot = node.get(&tuf(GUN, "snapshot.json")).body;
    let mut orphan = seal_tuf::generate::next_timestamp(None, &snapshot, now, time::Duration::days(1)).unwrap();
    orphan.version = 50;
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        setup
            .client()
            .sign_bound(
                ts_key.id(),
                &orphan.to_value().to_canonical(),
                Some(GUN),
                Some("timestamp"),
                &[("snapshot", &snapshot)],
            )
            .await
    })
    .unwrap();

    // The node's next timestamp (version 2) is refused; it regenerates as 51.
    let r = node.publish(GUN, &update(&repo, 3));
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(served_timestamp(&node, GUN, &ts_key).version, 51);
    // And continues from there.
    let r = node.publish(GUN, &update(&repo, 4));
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(served_timestamp(&node, GUN, &ts_key).version, 52);
}

/// A SoftHSM2 token in a temporary directory, or `None` (with a message)
/// when SoftHSM2 is not installed.
fn softhsm_token(dir: &Path, label: &str, pin: &str) -> Option<PathBuf> {
    let conf = softhsm_conf(dir)?;
    softhsm_init_token(&conf, label, pin, "1357-so");
    Some(conf)
}

#[test]
fn a_node_publishes_and_refreshes_timestamps_with_keys_in_an_hsm() {
    const GUN: &str = "example.com/hsm";
    let hsm = tempfile::tempdir().unwrap();
    let Some(conf) = softhsm_token(hsm.path(), "seal-node-test", "8642") else {
        return;
    };
    let pin_file = hsm.path().join("pin");
    std::fs::write(&pin_file, "8642\n").unwrap();
    let setup = Setup::new(
        Some(serde_json::json!({"type": "pkcs11", "module": SOFTHSM_MODULE,
                                "token_label": "seal-node-test", "pin_file": pin_file})),
        vec![("SOFTHSM2_CONF", conf)],
    );
    let _signer = setup.start_signer();
    // Six-second timestamps, refreshed when half their life is left.
    let node = setup.start_node(
        "ecdsa",
        serde_json::json!({"timestamp_lifetime_secs": 6, "refresh_margin_fraction": 0.5}),
    );
    let (repo, ts_key) = first_publish(&node, GUN);
    let first = served_timestamp(&node, GUN, &ts_key);
    let r = node.publish(GUN, &update(&repo, 3));
    assert_eq!(r.status, 200, "{}", r.text());
    let published = served_timestamp(&node, GUN, &ts_key);
    assert!(published.version > first.version);

    // The refresher re-signs the timestamp through the HSM before it expires.
    refreshed_timestamp(&node, GUN, &ts_key, &published);
}
