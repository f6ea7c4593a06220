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
/// when SoftHSM2 is not installed.
pub fn softhsm_conf(dir: &Path) -> Option<PathBuf> {
    let util = Command::new("softhsm2-util").arg("--version").output();
    if !Path::new(SOFTHSM_MODULE).exists() || !util.is_ok_and(|o| o.status.success()) {
        eprintln!("SKIPPED: SoftHSM2 is not installed ({SOFTHSM_MODULE}, softhsm2-util); `apt-get install softhsm2`");
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
