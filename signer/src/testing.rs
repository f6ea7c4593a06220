//! Test support (feature `testing`): a throw-away PKI whose certificates
//! work for mutual TLS between Seal's processes.

use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

/// A CA writing PEM files into a directory, and the leaves it signs.
pub struct TestPki {
    dir: PathBuf,
    name: String,
    ca: rcgen::Issuer<'static, rcgen::KeyPair>,
}

impl TestPki {
    /// A new CA named `name`; its certificate is `<dir>/<name>-ca.crt`.
    pub fn new(dir: &Path, name: &str) -> TestPki {
        let key = rcgen::KeyPair::generate().expect("CA key");
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, format!("{name} CA"));
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::DigitalSignature,
        ];
        let cert = params.self_signed(&key).expect("CA certificate");
        let pki = TestPki {
            dir: dir.to_owned(),
            name: name.to_owned(),
            ca: rcgen::Issuer::new(params, key),
        };
        std::fs::write(pki.ca_file(), cert.pem()).expect("write CA");
        pki
    }

    /// The CA certificate's file.
    pub fn ca_file(&self) -> PathBuf {
        self.dir.join(format!("{}-ca.crt", self.name))
    }

    /// A leaf named `cn` for localhost and 127.0.0.1, usable as server and
    /// client; returns its certificate and key files.
    pub fn leaf(&self, cn: &str) -> (PathBuf, PathBuf) {
        let key = rcgen::KeyPair::generate().expect("leaf key");
        let mut params =
            rcgen::CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()]).expect("leaf params");
        params.distinguished_name.push(rcgen::DnType::CommonName, cn);
        params.extended_key_usages = vec![
            rcgen::ExtendedKeyUsagePurpose::ServerAuth,
            rcgen::ExtendedKeyUsagePurpose::ClientAuth,
        ];
        let cert = params.signed_by(&key, &self.ca).expect("leaf certificate");
        let (c, k) = (self.dir.join(format!("{cn}.crt")), self.dir.join(format!("{cn}.key")));
        std::fs::write(&c, cert.pem()).expect("write leaf");
        std::fs::write(&k, key.serialize_pem()).expect("write key");
        (c, k)
    }
}

/// Starts the `seal-signer` binary `bin` with `config`, the default alias's
/// passphrase set to `passphrase`; returns the process and the port it
/// listens on once it says so.
pub fn spawn_signer(bin: &Path, config: &Path, passphrase: &str) -> (Child, u16) {
    spawn_signer_with_env(bin, config, passphrase, &[])
}

/// Like [`spawn_signer`], with more environment variables (for example
/// `SOFTHSM2_CONF` for a PKCS#11 backend).
pub fn spawn_signer_with_env(bin: &Path, config: &Path, passphrase: &str, env: &[(&str, &Path)]) -> (Child, u16) {
    let mut child = Command::new(bin)
        .args(["serve", "--config"])
        .arg(config)
        .envs(env.iter().copied())
        .env("SEAL_SIGNER_MAIN", passphrase)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn seal-signer");
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("read seal-signer's first line");
    let port = line
        .trim()
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("seal-signer did not start: {line:?}"));
    (child, port)
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

/// A free TCP port on loopback (a later bind may still lose a race for it).
pub fn free_port() -> u16 {
    seal_testkit::free_port()
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
    child: Option<Child>,
}

impl ClusterSigner {
    /// Starts the process (again, after [`ClusterSigner::kill`]) and waits
    /// until it listens.
    pub fn start(&mut self) {
        self.kill();
        let (child, port) = spawn_signer(&self.bin, &self.config, &self.passphrase);
        assert_eq!(port, self.port, "signer {} listens on its configured port", self.id);
        self.child = Some(child);
    }

    /// Kills the process (SIGKILL, which ends a paused one too) and waits
    /// for it.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Stops the process with SIGSTOP: it holds its connections open and
    /// answers nothing, as a hung machine would.
    pub fn pause(&self) {
        self.signal("-STOP");
    }

    /// Lets a paused process go on (SIGCONT).
    pub fn resume(&self) {
        self.signal("-CONT");
    }

    fn signal(&self, signal: &str) {
        let child = self.child.as_ref().expect("the signer is running");
        let status = std::process::Command::new("kill")
            .args([signal, &child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill {signal} signer {}", self.id);
    }

    /// Its Prometheus metrics, as `GET /metrics` answers them.
    pub fn metrics(&self) -> String {
        scrape_metrics(self.metrics_port)
    }
}

/// The Prometheus metrics a signer serves on loopback `port`
/// (`server.metrics_addr`), as `GET /metrics` answers them.
pub fn scrape_metrics(port: u16) -> String {
    use std::io::{Read as _, Write as _};
    let mut tcp = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect to metrics");
    tcp.write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .expect("ask for metrics");
    let mut response = String::new();
    tcp.read_to_string(&mut response).expect("read metrics");
    let (head, body) = response.split_once("\r\n\r\n").expect("an HTTP response");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    body.to_owned()
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
                child: None,
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
