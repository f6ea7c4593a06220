//! Signals a running node gets from its operator: SIGHUP reloads renewed
//! TLS certificates without a restart, and never ends the process (its
//! default action), with or without TLS.

mod common;

use std::time::{Duration, Instant};

use common::{https_client, https_get, try_request, Node};

fn self_signed() -> (rcgen::Certificate, rcgen::KeyPair) {
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["localhost".to_owned()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    (cert, key)
}

fn hangup(node: &Node) {
    let status = std::process::Command::new("kill")
        .args(["-HUP", &node.child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

#[test]
fn sighup_reloads_renewed_certificates_and_keeps_serving() {
    let dir = tempfile::tempdir().unwrap();
    let (old_cert, old_key) = self_signed();
    let (new_cert, new_key) = self_signed();
    let write = |cert: &rcgen::Certificate, key: &rcgen::KeyPair| {
        std::fs::write(dir.path().join("node.crt"), cert.pem()).unwrap();
        std::fs::write(dir.path().join("node.key"), key.serialize_pem()).unwrap();
    };
    write(&old_cert, &old_key);
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
        assert!(node.child.try_wait().unwrap().is_none(), "the node exited");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(https_get(&node.addr, &new_client, "/_notary_server/health").is_err());

    // The certificate is renewed on disk; SIGHUP makes the node serve it
    // at once (well before the files are next checked, every 5 s).
    write(&new_cert, &new_key);
    let sent = Instant::now();
    hangup(&node);
    loop {
        assert!(node.child.try_wait().unwrap().is_none(), "SIGHUP ended the node");
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
    assert!(node.child.try_wait().unwrap().is_none());
}

#[test]
fn sighup_does_not_end_a_node_without_tls() {
    let dir = tempfile::tempdir().unwrap();
    let mut node = Node::dev(dir.path());
    hangup(&node);
    std::thread::sleep(Duration::from_millis(500));
    assert!(node.child.try_wait().unwrap().is_none(), "SIGHUP ended the node");
    let r = try_request(&node.addr, "GET", "/_notary_server/health", &[], &[]).unwrap();
    assert_eq!(r.status, 200);
}

#[test]
fn logs_written_to_a_file_carry_no_colour_codes() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("node.log");
    let addr = format!("127.0.0.1:{}", seal_testkit::free_port());
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_seal-node"))
        .args(["dev", "--addr", &addr, "--data-dir"])
        .arg(dir.path().join("data"))
        .env("SEAL_LOG", "info")
        .stdout(std::fs::File::create(&log).unwrap())
        .stderr(std::fs::OpenOptions::new().append(true).open(&log).unwrap())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !try_request(&addr, "GET", "/_notary_server/health", &[], &[]).is_ok_and(|r| r.status == 200) {
        assert!(Instant::now() < deadline, "the node did not start");
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = child.kill();
    let _ = child.wait();
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains("INFO"), "nothing logged: {text}");
    assert!(!text.contains('\u{1b}'), "escape codes in the log file:\n{text}");
}
