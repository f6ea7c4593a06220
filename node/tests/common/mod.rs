//! Shared pieces of the node's integration tests: start the real
//! `seal-node` binary on a free loopback port, talk HTTP/1.1 to it.

#![allow(dead_code)]

pub mod cluster;
pub mod http;
pub mod metadata;
pub use http::*;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Writes `json` as the node's config with a free port and a data dir
/// under `data_dir`; returns the `serve` arguments and the address.
fn write_config(data_dir: &Path, mut json: serde_json::Value) -> (Vec<String>, String) {
    let addr = format!("127.0.0.1:{}", free_port());
    json["server"]["http_addr"] = serde_json::Value::String(addr.clone());
    json["storage"]["data_dir"] = serde_json::Value::String(data_dir.join("data").to_string_lossy().into_owned());
    // Most tests run plain HTTP without auth; a test of the refusal sets it to false.
    if json.get("insecure").is_none() {
        json["insecure"] = serde_json::Value::Bool(true);
    }
    std::fs::create_dir_all(data_dir).unwrap();
    let config = data_dir.join("config.json");
    std::fs::write(&config, serde_json::to_vec_pretty(&json).unwrap()).unwrap();
    let args = vec![
        "serve".to_owned(),
        "--config".to_owned(),
        config.to_string_lossy().into_owned(),
    ];
    (args, addr)
}

/// A running `seal-node` process.
pub struct Node {
    pub child: Child,
    pub addr: String,
    pub data_dir: PathBuf,
    args: Vec<String>,
}

fn free_port() -> u16 {
    seal_testkit::free_port()
}

impl Node {
    /// `seal-node dev` on a free port with data in `data_dir`.
    pub fn dev(data_dir: &Path) -> Node {
        let addr = format!("127.0.0.1:{}", free_port());
        let args = vec![
            "dev".to_owned(),
            "--addr".to_owned(),
            addr.clone(),
            "--data-dir".to_owned(),
            data_dir.to_string_lossy().into_owned(),
        ];
        Node::spawn(args, addr, data_dir)
    }

    /// `seal-node serve --config <file>` with a config written from `json`
    /// (its `server.http_addr` is set to a free port).
    pub fn serve(data_dir: &Path, json: serde_json::Value) -> Node {
        let (args, addr) = write_config(data_dir, json);
        Node::spawn(args, addr, data_dir)
    }

    /// Like [`Node::serve`] but without the plain-HTTP readiness probe (for TLS).
    pub fn serve_unprobed(data_dir: &Path, json: serde_json::Value) -> Node {
        let (args, addr) = write_config(data_dir, json);
        let child = Node::command(&args).spawn().expect("start seal-node");
        Node {
            child,
            addr,
            data_dir: data_dir.to_owned(),
            args,
        }
    }

    /// Like [`Node::serve_unprobed`], the process's open-file limit set to
    /// `nofile` (`ulimit -n`) before it starts.
    pub fn serve_unprobed_with_fd_limit(data_dir: &Path, json: serde_json::Value, nofile: u32) -> Node {
        let (args, addr) = write_config(data_dir, json);
        let mut c = Command::new("sh");
        c.arg("-c")
            .arg(format!("ulimit -n {nofile} && exec \"$0\" \"$@\""))
            .arg(env!("CARGO_BIN_EXE_seal-node"))
            .args(&args);
        Node::environment(&mut c);
        let child = c.spawn().expect("start seal-node");
        Node {
            child,
            addr,
            data_dir: data_dir.to_owned(),
            args,
        }
    }

    fn environment(c: &mut Command) {
        c.env("SEAL_SIGNER_PASSPHRASE", "integration-test-passphrase")
            .env("SEAL_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit());
    }

    fn command(args: &[String]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_seal-node"));
        c.args(args);
        Node::environment(&mut c);
        c
    }

    fn spawn(args: Vec<String>, addr: String, data_dir: &Path) -> Node {
        let child = Node::command(&args).spawn().expect("start seal-node");
        let mut node = Node {
            child,
            addr,
            data_dir: data_dir.to_owned(),
            args,
        };
        node.wait_ready();
        node
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!("seal-node exited early: {status}");
            }
            if let Ok(r) = try_request(&self.addr, "GET", "/_notary_server/health", &[], &[]) {
                if r.status == 200 {
                    return;
                }
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("seal-node did not become ready on {}", self.addr);
    }

    /// Kills the process with SIGKILL (no clean shutdown) and waits for it.
    pub fn kill9(&mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    /// Starts the same command again (same address and data).
    pub fn restart(&mut self) {
        self.child = Node::command(&self.args).spawn().expect("restart seal-node");
        self.wait_ready();
    }

    pub fn get(&self, path: &str) -> Response {
        request(&self.addr, "GET", path, &[], &[])
    }

    pub fn post(&self, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Response {
        request(&self.addr, "POST", path, headers, body)
    }

    pub fn delete(&self, path: &str) -> Response {
        request(&self.addr, "DELETE", path, &[], &[])
    }

    /// Uploads role files as the Notary CLI does.
    pub fn publish(&self, gun: &str, files: &[(String, Vec<u8>)]) -> Response {
        let (ct, body) = multipart(files);
        self.post(&format!("/v2/{gun}/_trust/tuf/"), &[("Content-Type", &ct)], &body)
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The seal-signer binary cargo built beside this test.
pub fn signer_binary() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let bin = exe.parent().and_then(Path::parent).unwrap().join("seal-signer");
    assert!(
        bin.exists(),
        "{} is missing: build it with `cargo build -p seal-signer` (cargo test --workspace does)",
        bin.display()
    );
    bin
}
