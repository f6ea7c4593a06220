//! Test support: a real seal-node serving over HTTP on real RocksDB (run in
//! this process), the `seal` binary run as a real process, and a static HTTP
//! server that serves whatever bytes a test gives it (a malicious server).

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::{Arc, Mutex};

/// A seal-node on 127.0.0.1 with its data in a temporary directory.
pub struct Node {
    pub url: String,
    runtime: tokio::runtime::Runtime,
    _data: tempfile::TempDir,
}

impl Node {
    pub fn start() -> Node {
        Node::start_with(None, None)
    }

    /// A node serving HTTPS with `cert` (chain) and `key`.
    pub fn start_tls(cert: &Path, key: &Path) -> Node {
        Node::start_with(Some((cert, key)), None)
    }

    /// A node with the `auth` config section `auth`.
    pub fn start_with_auth(auth: serde_json::Value) -> Node {
        Node::start_with(None, Some(auth))
    }

    /// A node whose config also has the top-level sections of `extra`
    /// (for example `{"timestamps": {...}}`).
    pub fn start_with_config(extra: serde_json::Value) -> Node {
        Node::start_full(None, None, extra)
    }

    fn start_with(tls: Option<(&Path, &Path)>, auth: Option<serde_json::Value>) -> Node {
        Node::start_full(tls, auth, serde_json::json!({}))
    }

    fn start_full(tls: Option<(&Path, &Path)>, auth: Option<serde_json::Value>, extra: serde_json::Value) -> Node {
        let data = tempfile::tempdir().expect("data dir");
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        let env = seal_node::config::Env::new();
        let mut json = serde_json::json!({
            "server": {"http_addr": "127.0.0.1:0"},
            "trust_service": {"type": "local", "key_algorithm": "ed25519"},
            "storage": {"backend": "rocksdb", "data_dir": data.path()},
        });
        if let Some((cert, key)) = tls {
            json["server"]["tls_cert_file"] = serde_json::json!(cert);
            json["server"]["tls_key_file"] = serde_json::json!(key);
        }
        if let Some(auth) = auth {
            json["auth"] = auth;
        }
        if let serde_json::Value::Object(sections) = extra {
            for (k, v) in sections {
                json[k] = v;
            }
        }
        let config = seal_node::config::NodeConfig::from_json(&json.to_string(), data.path(), &env).expect("config");
        let running = runtime
            .block_on(seal_node::server::start(config, &env, true))
            .expect("node starts");
        let scheme = if tls.is_some() { "https" } else { "http" };
        let url = format!("{scheme}://{}", running.addr);
        std::mem::forget(running);
        Node {
            url,
            runtime,
            _data: data,
        }
    }
}

/// seal-node's development token server on 127.0.0.1, signing with a
/// certificate from its own CA, knowing one user with `access` rules, and
/// granting `anonymous` rules without credentials.
pub struct TokenServer {
    pub realm: String,
    pub ca_file: PathBuf,
    _runtime: tokio::runtime::Runtime,
    _dir: tempfile::TempDir,
}

impl TokenServer {
    pub const ISSUER: &'static str = "seal-test-issuer";
    pub const SERVICE: &'static str = "seal-test-service";

    pub fn start(user: &str, password: &str, access: serde_json::Value, anonymous: serde_json::Value) -> TokenServer {
        let dir = tempfile::tempdir().expect("token dir");
        let pki = seal_signer::testing::TestPki::new(dir.path(), "tokens");
        let (cert, key) = pki.leaf("token-signer");
        let hash = seal_node::token_server::hash_password(password).expect("hash");
        let mut users = serde_json::Map::new();
        users.insert(
            user.to_owned(),
            serde_json::json!({"password_hash": hash, "access": access}),
        );
        let json = serde_json::json!({
            "server": {"http_addr": "127.0.0.1:0"},
            "issuer": TokenServer::ISSUER, "service": TokenServer::SERVICE,
            "signing_key": key, "certificate_chain": cert, "token_lifetime_secs": 600,
            "users": users, "anonymous": anonymous,
        });
        let config =
            seal_node::token_server::TokenServerConfig::from_json(&json.to_string(), dir.path()).expect("config");
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("runtime");
        let running = runtime
            .block_on(seal_node::token_server::start(config))
            .expect("token server starts");
        let realm = running.realm();
        std::mem::forget(running);
        TokenServer {
            realm,
            ca_file: pki.ca_file(),
            _runtime: runtime,
            _dir: dir,
        }
    }

    /// The node's `auth` section for this token server.
    pub fn node_auth(&self) -> serde_json::Value {
        serde_json::json!({"type": "token", "options": {
            "realm": self.realm, "service": TokenServer::SERVICE, "issuer": TokenServer::ISSUER,
            "rootcertbundle": self.ca_file,
        }})
    }
}

/// Passphrases for every role, as the fixtures' README gives them.
pub fn passphrase_env() -> Vec<(&'static str, &'static str)> {
    vec![
        ("NOTARY_ROOT_PASSPHRASE", "rootpass"),
        ("NOTARY_TARGETS_PASSPHRASE", "targetspass"),
        ("NOTARY_SNAPSHOT_PASSPHRASE", "snapshotpass"),
        ("NOTARY_DELEGATION_PASSPHRASE", "delegpass"),
    ]
}

/// One trust directory talking to one server through the `seal` binary.
pub struct Seal {
    pub server: String,
    pub trust: tempfile::TempDir,
    pub env: Vec<(String, String)>,
}

/// What a `seal` run did.
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    fn from(o: Output) -> Run {
        Run {
            code: o.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
    }
}

impl Seal {
    pub fn new(server: &str) -> Seal {
        Seal {
            server: server.to_owned(),
            trust: tempfile::tempdir().expect("trust dir"),
            env: passphrase_env()
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect(),
        }
    }

    /// The same client with one more environment variable.
    pub fn with_env(mut self, name: &str, value: &str) -> Seal {
        self.env.push((name.to_owned(), value.to_owned()));
        self
    }

    pub fn dir(&self) -> &Path {
        self.trust.path()
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_seal"));
        c.arg("-s")
            .arg(&self.server)
            .arg("-d")
            .arg(self.trust.path())
            .args(args);
        c.env_clear();
        c.env("PATH", std::env::var_os("PATH").unwrap_or_default());
        c.env("HOME", self.trust.path());
        for (k, v) in &self.env {
            c.env(k, v);
        }
        c.stdin(Stdio::null());
        c
    }

    /// Runs `seal <args>`.
    pub fn run(&self, args: &[&str]) -> Run {
        Run::from(self.command(args).output().expect("run seal"))
    }

    /// Runs `seal <args>` with `input` on stdin.
    pub fn run_with_stdin(&self, args: &[&str], input: &[u8]) -> Run {
        let mut c = self.command(args);
        c.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child = c.spawn().expect("spawn seal");
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(input)
            .expect("write stdin");
        Run::from(child.wait_with_output().expect("wait seal"))
    }

    /// Runs `seal <args>` and insists it succeeds.
    pub fn ok(&self, args: &[&str]) -> Run {
        let r = self.run(args);
        assert_eq!(
            r.code, 0,
            "seal {args:?} failed\nstdout: {}\nstderr: {}",
            r.stdout, r.stderr
        );
        r
    }

    /// Runs `seal <args>` and insists it fails with a one-line message.
    pub fn fails(&self, args: &[&str]) -> Run {
        let r = self.run(args);
        assert_ne!(r.code, 0, "seal {args:?} should fail\nstdout: {}", r.stdout);
        assert!(
            r.stderr.starts_with("* fatal: ") && r.stderr.trim_end().lines().count() == 1,
            "seal {args:?}: expected one fatal line, got {:?}",
            r.stderr
        );
        r
    }

    /// Writes a file in the trust dir's parent and returns its path.
    /// A new ECDSA key written as `<name>.key` (unencrypted PKCS#8 PEM, as
    /// openssl writes it) and the certificate `cert` makes for it as
    /// `<name>.crt`; the two paths.
    pub fn key_and_cert(&self, name: &str, cert: impl FnOnce(&seal_tuf::PrivateKey) -> Vec<u8>) -> (PathBuf, PathBuf) {
        use p256::pkcs8::{DecodePrivateKey as _, EncodePrivateKey as _};
        let key = seal_tuf::PrivateKey::generate_ecdsa(&mut rand::rngs::OsRng);
        let cert = cert(&key);
        let der = key.to_pkcs8_der().expect("pkcs8");
        let sk = p256::SecretKey::from_pkcs8_der(&der).expect("p256 key");
        let pem = sk.to_pkcs8_pem(p256::pkcs8::LineEnding::LF).expect("pem");
        (
            self.file(&format!("{name}.key"), pem.as_bytes()),
            self.file(&format!("{name}.crt"), &cert),
        )
    }

    pub fn file(&self, name: &str, bytes: &[u8]) -> PathBuf {
        let p = self.trust.path().join(name);
        std::fs::write(&p, bytes).expect("write file");
        p
    }
}

/// The Notary fixtures, or `None` after saying the test skipped (a
/// failure under `CI=true`): see `seal_testkit::notary_fixtures`.
pub fn fixtures() -> Option<PathBuf> {
    seal_testkit::notary_fixtures()
}

/// A loopback address where nothing listens (a port just closed).
pub fn closed_port_url() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    drop(listener);
    format!("http://{addr}")
}

/// A server that answers every request with `status` and a short body, as
/// a broken proxy or an overloaded server does.
pub fn failing_server(status: u16) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().expect("clone"));
            loop {
                let mut h = String::new();
                if reader.read_line(&mut h).is_err() || h.trim().is_empty() {
                    break;
                }
            }
            let body = b"<html>service unavailable</html>";
            let head = format!(
                "HTTP/1.1 {status} Failing\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            let _ = stream.write_all(head.as_bytes());
            let _ = stream.write_all(body);
        }
    });
    url
}

/// A server that answers GET requests from a map of paths to bytes (404
/// otherwise) and records the paths asked for. Tests change the map to
/// play a malicious or broken server.
pub struct StaticServer {
    pub url: String,
    pub files: Arc<Mutex<BTreeMap<String, Vec<u8>>>>,
    pub requests: Arc<Mutex<Vec<String>>>,
}

impl StaticServer {
    pub fn start() -> StaticServer {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        let files: Arc<Mutex<BTreeMap<String, Vec<u8>>>> = Arc::default();
        let requests: Arc<Mutex<Vec<String>>> = Arc::default();
        let (f, r) = (files.clone(), requests.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let mut reader = BufReader::new(stream.try_clone().expect("clone"));
                let mut line = String::new();
                if reader.read_line(&mut line).is_err() {
                    continue;
                }
                let mut content_length = 0usize;
                loop {
                    let mut h = String::new();
                    if reader.read_line(&mut h).is_err() || h.trim().is_empty() {
                        break;
                    }
                    if let Some(v) = h.to_ascii_lowercase().strip_prefix("content-length:") {
                        content_length = v.trim().parse().unwrap_or(0);
                    }
                }
                let mut body = vec![0; content_length];
                let _ = reader.read_exact(&mut body);
                let mut parts = line.split_whitespace();
                let method = parts.next().unwrap_or("").to_owned();
                let path = parts.next().unwrap_or("").to_owned();
                r.lock().unwrap().push(format!("{method} {path}"));
                let found = if path == "/v2/" {
                    Some(b"{}".to_vec())
                } else if method == "GET" {
                    f.lock().unwrap().get(&path).cloned()
                } else {
                    None
                };
                let (status, body) = match found {
                    Some(b) => ("200 OK", b),
                    None => (
                        "404 Not Found",
                        br#"{"errors":[{"code":"METADATA_NOT_FOUND","message":"You have requested metadata that does not exist.","detail":{}}]}"#.to_vec(),
                    ),
                };
                let head = format!(
                    "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    body.len()
                );
                let _ = stream.write_all(head.as_bytes());
                let _ = stream.write_all(&body);
            }
        });
        StaticServer { url, files, requests }
    }

    /// Serves `bytes` as `<role>.json` of `gun`, and under its checksum name.
    pub fn put(&self, gun: &str, role: &str, bytes: &[u8]) {
        use sha2::Digest as _;
        let sha = hex::encode(sha2::Sha256::digest(bytes));
        let mut f = self.files.lock().unwrap();
        f.insert(format!("/v2/{gun}/_trust/tuf/{role}.json"), bytes.to_vec());
        f.insert(format!("/v2/{gun}/_trust/tuf/{role}.{sha}.json"), bytes.to_vec());
    }

    /// Serves `bytes` at exactly `path`.
    pub fn put_path(&self, path: &str, bytes: &[u8]) {
        self.files.lock().unwrap().insert(path.to_owned(), bytes.to_vec());
    }
}
