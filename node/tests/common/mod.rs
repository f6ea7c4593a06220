//! Shared pieces of the node's integration tests: start the real
//! `seal-node` binary on a free loopback port, talk HTTP/1.1 to it, all
//! through seal-testkit's harness (launcher, HTTP client, PKI).

#![allow(dead_code)]

pub mod cluster;
pub mod http;
pub mod metadata;
pub use http::*;

use std::path::{Path, PathBuf};
use std::time::Duration;

use seal_testkit::process::{Launch, Process};

/// How long a node gets to become healthy.
const READY_WAIT: Duration = Duration::from_secs(30);

/// Writes `json` as the node's config with a free port and a data dir
/// under `data_dir`; returns how to start it and its address.
fn launch(data_dir: &Path, mut json: serde_json::Value) -> (Launch, String) {
    let addr = format!("127.0.0.1:{}", seal_testkit::free_port());
    json["server"]["http_addr"] = serde_json::Value::String(addr.clone());
    json["storage"]["data_dir"] = serde_json::Value::String(data_dir.join("data").to_string_lossy().into_owned());
    // Most tests run plain HTTP without auth; a test of the refusal sets it to false.
    if json.get("insecure").is_none() {
        json["insecure"] = serde_json::Value::Bool(true);
    }
    let launch = seal_testkit::process::node(&node_binary(), data_dir, &json, "warn")
        .unwrap()
        .env("SEAL_SIGNER_PASSPHRASE", "integration-test-passphrase");
    (launch, addr)
}

/// The seal-node binary cargo built for these tests.
pub fn node_binary() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_seal-node"))
}

/// A running `seal-node` process (seal-testkit's launcher), killed when dropped; it logs to
/// `node.log` in its directory.
pub struct Node {
    pub process: Process,
    pub addr: String,
    pub data_dir: PathBuf,
}

impl Node {
    /// `seal-node dev` on a free port with data in `data_dir`.
    pub fn dev(data_dir: &Path) -> Node {
        let addr = format!("127.0.0.1:{}", seal_testkit::free_port());
        let launch = Launch::new(node_binary(), data_dir.join("node.log"))
            .args(["dev", "--addr", &addr, "--data-dir"])
            .arg(data_dir)
            .env("SEAL_SIGNER_PASSPHRASE", "integration-test-passphrase")
            .env("SEAL_LOG", "warn");
        Node::start(launch, addr, data_dir, true)
    }

    /// `seal-node serve --config <file>` with a config written from `json`
    /// (its `server.http_addr` is set to a free port).
    pub fn serve(data_dir: &Path, json: serde_json::Value) -> Node {
        let (launch, addr) = launch(data_dir, json);
        Node::start(launch, addr, data_dir, true)
    }

    /// Like [`Node::serve`] but without the plain-HTTP readiness probe (for TLS).
    pub fn serve_unprobed(data_dir: &Path, json: serde_json::Value) -> Node {
        let (launch, addr) = launch(data_dir, json);
        Node::start(launch, addr, data_dir, false)
    }

    /// Like [`Node::serve_unprobed`], the process's open-file limit set to
    /// `nofile` (`ulimit -n`) before it starts.
    pub fn serve_unprobed_with_fd_limit(data_dir: &Path, json: serde_json::Value, nofile: u32) -> Node {
        let (launch, addr) = launch(data_dir, json);
        Node::start(launch.nofile(nofile), addr, data_dir, false)
    }

    fn start(launch: Launch, addr: String, data_dir: &Path, probe: bool) -> Node {
        let mut node = Node {
            process: launch.start().expect("start seal-node"),
            addr,
            data_dir: data_dir.to_owned(),
        };
        if probe {
            node.wait_ready();
        }
        node
    }

    /// Waits until it answers its health check.
    pub fn wait_ready(&mut self) {
        let addr = self.addr.clone();
        if let Err(e) = self.process.wait_healthy(&addr, READY_WAIT) {
            panic!("seal-node on {addr}: {e}");
        }
    }

    /// Whether the process still runs.
    pub fn running(&mut self) -> bool {
        !self.process.is_gone()
    }

    /// Kills the process with SIGKILL (no clean shutdown) and waits for it.
    pub fn kill9(&mut self) {
        self.process.kill();
    }

    /// Starts the same command again (same address and data).
    pub fn restart(&mut self) {
        self.process.restart().expect("restart seal-node");
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

/// The seal-signer binary cargo built beside this test.
pub fn signer_binary() -> PathBuf {
    seal_testkit::process::built_binary("seal-signer")
}
