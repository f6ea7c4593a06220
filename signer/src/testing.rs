//! Test support (feature `testing`): signer processes started through
//! seal-testkit's one launcher (one signer, or a threshold cluster of them),
//! SoftHSM2 tokens, metrics, and a client; the throw-away PKI is
//! seal-testkit's, re-exported here.

use std::path::{Path, PathBuf};
use std::process::Command;

pub use seal_testkit::free_port;
pub use seal_testkit::pki::TestPki;
use seal_testkit::process::{Process, START_WAIT};

/// Starts the `seal-signer` binary `bin` with `config`, the default alias's
/// passphrase set to `passphrase`, logging to `config` with the extension
/// `log`; returns the process (killed when dropped) and the port it listens
/// on once it says so.
pub fn spawn_signer(bin: &Path, config: &Path, passphrase: &str) -> (Process, u16) {
    spawn_signer_with_env(bin, config, passphrase, &[])
}

/// Like [`spawn_signer`], with more environment variables (for example
/// `SOFTHSM2_CONF` for a PKCS#11 backend).
pub fn spawn_signer_with_env(bin: &Path, config: &Path, passphrase: &str, env: &[(&str, &Path)]) -> (Process, u16) {
    let launch = env.iter().fold(
        seal_testkit::process::signer(bin, config, passphrase),
        |launch, (k, v)| launch.env(k, v),
    );
    let mut process = launch.start().expect("spawn seal-signer");
    let port = process
        .wait_listening(START_WAIT)
        .unwrap_or_else(|e| panic!("seal-signer did not start: {e}"));
    (process, port)
}

/// The SoftHSM2 PKCS#11 module Debian's `softhsm2` package installs.
pub const SOFTHSM_MODULE: &str = "/usr/lib/softhsm/libsofthsm2.so";

/// A private SoftHSM2 configuration whose tokens live under `dir`; returns
/// the configuration file (for `SOFTHSM2_CONF`), or `None`, after saying so,
/// when SoftHSM2 is not installed (a failure under `CI=true`).
pub fn softhsm_conf(dir: &Path) -> Option<PathBuf> {
    let util = Command::new("softhsm2-util").arg("--version").output();
    if !Path::new(SOFTHSM_MODULE).exists() || !util.is_ok_and(|o| o.status.success()) {
        seal_testkit::skip(&format!(
            "SoftHSM2 is not installed ({SOFTHSM_MODULE}, softhsm2-util; `apt-get install softhsm2`)"
        ));
        return None;
    }
    let tokens = dir.join("tokens");
    std::fs::create_dir_all(&tokens).expect("SoftHSM token directory");
    let conf = dir.join("softhsm2.conf");
    std::fs::write(
        &conf,
        format!(
            "directories.tokendir = {}\nobjectstore.backend = file\nlog.level = ERROR\n",
            tokens.display()
        ),
    )
    .expect("write softhsm2.conf");
    Some(conf)
}

/// Initializes a token `label` with user PIN `pin` and security officer
/// PIN `so_pin` in the SoftHSM2 configuration `conf`.
pub fn softhsm_init_token(conf: &Path, label: &str, pin: &str, so_pin: &str) {
    let out = Command::new("softhsm2-util")
        .env("SOFTHSM2_CONF", conf)
        .args([
            "--init-token",
            "--free",
            "--label",
            label,
            "--pin",
            pin,
            "--so-pin",
            so_pin,
        ])
        .output()
        .expect("run softhsm2-util");
    assert!(
        out.status.success(),
        "softhsm2-util: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// One signer process of a [`ThresholdCluster`], killed when dropped.
pub struct ClusterSigner {
    /// Its FROST identifier (1..=n); its certificate is named `signer-<id>`.
    pub id: u16,
    /// The loopback port it serves on.
    pub port: u16,
    /// The loopback port of its metrics (`server.metrics_addr`).
    pub metrics_port: u16,
    /// Its config file.
    pub config: PathBuf,
    /// Its data directory.
    pub data_dir: PathBuf,
    /// Its certificate (CN `signer-<id>`, also a client certificate).
    pub cert: PathBuf,
    /// Its certificate's key.
    pub key: PathBuf,
    /// The passphrase of its default alias (`SEAL_SIGNER_MAIN`).
    pub passphrase: String,
    bin: PathBuf,
    process: Option<Process>,
}

impl ClusterSigner {
    /// Starts the process (again, after [`ClusterSigner::kill`]) and waits
    /// until it listens.
    pub fn start(&mut self) {
        self.kill();
        let (process, port) = spawn_signer(&self.bin, &self.config, &self.passphrase);
        assert_eq!(port, self.port, "signer {} listens on its configured port", self.id);
        self.process = Some(process);
    }

    /// Kills the process (SIGKILL, which ends a paused one too) and waits
    /// for it.
    pub fn kill(&mut self) {
        if let Some(mut process) = self.process.take() {
            process.kill();
        }
    }

    /// Stops the process with SIGSTOP: it holds its connections open and
    /// answers nothing, as a hung machine would.
    pub fn pause(&mut self) {
        let process = self.process.as_mut().expect("the signer is running");
        process.pause();
        assert!(process.is_paused(), "kill -STOP signer {}", self.id);
    }

    /// Lets a paused process go on (SIGCONT).
    pub fn resume(&mut self) {
        self.process.as_mut().expect("the signer is running").resume();
    }

    /// Its Prometheus metrics, as `GET /metrics` answers them.
    pub fn metrics(&self) -> String {
        scrape_metrics(self.metrics_port)
    }
}

/// The Prometheus metrics a signer serves on loopback `port`
/// (`server.metrics_addr`), as `GET /metrics` answers them.
pub fn scrape_metrics(port: u16) -> String {
    let r = seal_testkit::http::request(&format!("127.0.0.1:{port}"), "GET", "/metrics", &[], &[]);
    assert_eq!(r.status, 200, "{}", r.text());
    r.text()
}

/// The value of the series `series` (name and labels as the text
/// exposition writes them, e.g. `seal_x_total{peer="2"}`) in `metrics`, or
/// 0 when it is absent.
pub fn metric(metrics: &str, series: &str) -> f64 {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.trim().parse().ok())
        .unwrap_or(0.0)
}

impl Drop for ClusterSigner {
    fn drop(&mut self) {
        self.kill();
    }
}

/// n `seal-signer` processes on loopback configured as one k-of-n
/// threshold cluster (`key_backend.type = "threshold"`), with mutual TLS
/// from a [`TestPki`]: signer `i` has FROST identifier `i`, a certificate
/// named `signer-<i>`, and names its peers, so only they may call its peer
/// service. Each serves its metrics on loopback too.
pub struct ThresholdCluster {
    /// The signers, identifier `i` at index `i - 1`.
    pub signers: Vec<ClusterSigner>,
}

impl ThresholdCluster {
    /// Writes the configs and data directories under `dir` and starts every
    /// signer of the binary `bin` (the test's `CARGO_BIN_EXE_seal-signer`).
    /// Clients must carry one of `client_names` (the signers are added);
    /// peer calls time out after 1 s. `adjust(id, config)` may change a
    /// signer's JSON config before it is written, for example its `policy`.
    pub fn start(
        bin: &Path,
        pki: &TestPki,
        dir: &Path,
        (k, n): (u16, u16),
        client_names: &[&str],
        adjust: impl Fn(u16, &mut serde_json::Value),
    ) -> ThresholdCluster {
        let ports: Vec<u16> = (0..n).map(|_| free_port()).collect();
        let metrics_ports: Vec<u16> = (0..n).map(|_| free_port()).collect();
        let port = |id: u16| ports[usize::from(id) - 1];
        let mut allowed: Vec<String> = client_names.iter().map(|n| (*n).to_owned()).collect();
        allowed.push("signer-*".to_owned());
        let mut signers = Vec::new();
        for id in 1..=n {
            let (cert, key) = pki.leaf(&format!("signer-{id}"));
            let data_dir = dir.join(format!("signer-{id}-data"));
            let peers: Vec<serde_json::Value> = (1..=n)
                .filter(|p| *p != id)
                .map(|p| serde_json::json!({"id": p, "addr": format!("localhost:{}", port(p)), "name": format!("signer-{p}")}))
                .collect();
            let mut json = serde_json::json!({
                "server": {"grpc_addr": format!("127.0.0.1:{}", port(id)), "tls_cert_file": cert,
                           "tls_key_file": key, "client_ca_file": pki.ca_file(), "allowed_client_names": allowed,
                           "metrics_addr": format!("127.0.0.1:{}", metrics_ports[usize::from(id) - 1])},
                "storage": {"data_dir": data_dir},
                "key_backend": {"type": "threshold", "threshold": k, "self_id": id, "peers": peers,
                                "peer_timeout_ms": 1000},
            });
            adjust(id, &mut json);
            let config = dir.join(format!("signer-{id}.json"));
            std::fs::write(&config, json.to_string()).expect("write signer config");
            signers.push(ClusterSigner {
                id,
                port: port(id),
                metrics_port: metrics_ports[usize::from(id) - 1],
                config,
                data_dir,
                cert,
                key,
                passphrase: format!("passphrase of signer {id}"),
                bin: bin.to_owned(),
                process: None,
            });
        }
        for s in &mut signers {
            s.start();
        }
        ThresholdCluster { signers }
    }

    /// Signer `id` (1..=n).
    pub fn signer(&mut self, id: u16) -> &mut ClusterSigner {
        &mut self.signers[usize::from(id) - 1]
    }
}

/// Panics unless `sig` is an Ed25519 signature of `msg` by `public` (32
/// bytes) under both ed25519-dalek's `verify_strict` and seal-tuf's
/// verification (as TUF clients check it).
pub fn assert_ed25519_signature(public: &[u8], msg: &[u8], sig: &[u8]) {
    let key = ed25519_dalek::VerifyingKey::from_bytes(public.try_into().expect("a 32-byte Ed25519 public key"))
        .expect("an Ed25519 public key");
    key.verify_strict(
        msg,
        &ed25519_dalek::Signature::from_slice(sig).expect("a 64-byte signature"),
    )
    .expect("verify_strict");
    seal_tuf::PublicKey::new(seal_tuf::KeyType::Ed25519, public.to_vec())
        .expect("a TUF Ed25519 key")
        .verify("eddsa", msg, sig)
        .expect("seal-tuf verification");
}

/// A client of the signer on loopback `port` (TLS name `localhost`),
/// presenting `cert`/`key` and trusting `ca`.
pub fn client(
    port: u16,
    ca: &Path,
    cert: &Path,
    key: &Path,
    timeout: std::time::Duration,
) -> crate::client::SignerClient {
    crate::client::SignerClient::new(&crate::client::ClientConfig {
        hostname: "localhost".into(),
        port,
        ca_file: ca.to_owned(),
        cert_file: cert.to_owned(),
        key_file: key.to_owned(),
        timeout,
        connect_timeout: timeout,
    })
    .expect("signer client")
}
