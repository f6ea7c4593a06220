//! Signals a running node gets from its operator: SIGHUP reloads renewed
//! TLS certificates without a restart, and never ends the process (its
//! default action), with or without TLS.

mod common;

use std::time::{Duration, Instant};

use common::{https_client, https_get, try_request, Node};
use seal_testkit::pki::SelfSigned;

fn hangup(node: &Node) {
    assert!(node.process.signal("-HUP"));
}

#[test]
fn sighup_reloads_renewed_certificates_and_keeps_serving() {
    let dir = tempfile::tempdir().unwrap();
    let (old_cert, new_cert) = (SelfSigned::localhost(), SelfSigned::localhost());
    let write = |cert: &SelfSigned| cert.write(&dir.path().join("node.crt"), &dir.path().join("node.key"));
    write(&old_cert);
    let mut node = Node::serve_unprobed(
        dir.path(),
        serde_json::json!({
            "server": {"tls_cert_file": "node.crt", "tls_key_file": "node.key"},
            "storage": {"backend": "rocksdb"},
            "trust_service": {"type": "local", "key_algorithm": "ed25519"},
        }),
    );
    let (old_client, new_client) = (https_client(&old_cert), https_client(&new_cert));
    let deadline = Instant::now() + Duration::from_secs(30);
    while !https_get(&node.addr, &old_client, "/_notary_server/health").is_ok_and(|l| l.contains(" 200 ")) {
        assert!(Instant::now() < deadline, "the node did not serve HTTPS");
        assert!(node.running(), "the node exited");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(https_get(&node.addr, &new_client, "/_notary_server/health").is_err());

    // The certificate is renewed on disk; SIGHUP makes the node serve it
    // at once (well before the files are next checked, every 5 s).
    write(&new_cert);
    let sent = Instant::now();
    hangup(&node);
    loop {
        assert!(node.running(), "SIGHUP ended the node");
        if https_get(&node.addr, &new_client, "/_notary_server/health").is_ok_and(|l| l.contains(" 200 ")) {
            break;
        }
        assert!(
            sent.elapsed() < Duration::from_secs(3),
            "the renewed certificate was not served after SIGHUP"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(https_get(&node.addr, &old_client, "/_notary_server/health").is_err());
    assert!(node.running());
}

#[test]
fn sighup_does_not_end_a_node_without_tls() {
    let dir = tempfile::tempdir().unwrap();
    let mut node = Node::dev(dir.path());
    hangup(&node);
    std::thread::sleep(Duration::from_millis(500));
    assert!(node.running(), "SIGHUP ended the node");
    let r = try_request(&node.addr, "GET", "/_notary_server/health", &[], &[]).unwrap();
    assert_eq!(r.status, 200);
}

#[test]
fn logs_written_to_a_file_carry_no_colour_codes() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("node.log");
    let addr = format!("127.0.0.1:{}", seal_testkit::free_port());
    let mut node = seal_testkit::process::Launch::new(common::node_binary(), &log)
        .args(["dev", "--addr", &addr, "--data-dir"])
        .arg(dir.path().join("data"))
        .env("SEAL_LOG", "info")
        .start()
        .unwrap();
    node.wait_healthy(&addr, Duration::from_secs(30)).unwrap();
    node.kill();
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains("INFO"), "nothing logged: {text}");
    assert!(!text.contains('\u{1b}'), "escape codes in the log file:\n{text}");
}

/// The seal-node these tests run is built with the features that ship: it
/// has no fault switches, so it refuses `SEAL_FAULTS_FILE`. A dependency
/// turning seal-node's `fault-injection` on anywhere in the workspace (cargo
/// unifies features across a `cargo test --workspace`) would make this fail;
/// the chaos tests build their fault-switch node apart (docs/architecture.md).
#[test]
fn the_node_under_test_is_a_shipping_build_without_fault_switches() {
    let dir = tempfile::tempdir().unwrap();
    let addr = format!("127.0.0.1:{}", seal_testkit::free_port());
    std::fs::write(dir.path().join("faults.json"), r#"{"clock_offset_ms": 60000}"#).unwrap();
    let mut node = seal_testkit::process::Launch::new(common::node_binary(), dir.path().join("node.log"))
        .args(["dev", "--addr", &addr, "--data-dir"])
        .arg(dir.path().join("data"))
        .env("SEAL_FAULTS_FILE", dir.path().join("faults.json"))
        .start()
        .unwrap();
    let status = node
        .wait_exit(Duration::from_secs(30))
        .expect("a seal-node without fault switches stops at once");
    assert!(!status.success());
    let said = node.output();
    assert!(
        said.contains("SEAL_FAULTS_FILE is set but this seal-node was built without the fault-injection feature"),
        "{said}"
    );
}
