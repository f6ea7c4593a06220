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

/// `seal-node serve` logging at `info` (the shutdown phases are logged at info), plain HTTP, a
/// local signer; ready when it returns.
fn serve_logging_info(dir: &std::path::Path, extra: serde_json::Value) -> Node {
    let addr = format!("127.0.0.1:{}", seal_testkit::free_port());
    let mut json = serde_json::json!({
        "server": {"http_addr": addr},
        "trust_service": {"type": "local", "key_algorithm": "ed25519"},
        "storage": {"backend": "rocksdb", "data_dir": dir.join("data")},
        "insecure": true,
    });
    for (k, v) in extra.as_object().unwrap() {
        json[k] = v.clone();
    }
    let launch = seal_testkit::process::node(&common::node_binary(), dir, &json, "info")
        .unwrap()
        .env("SEAL_SIGNER_PASSPHRASE", "integration-test-passphrase");
    let mut node = Node {
        process: launch.start().unwrap(),
        addr,
        data_dir: dir.to_owned(),
    };
    node.wait_ready();
    node
}

/// Reads an HTTP/1.1 answer to the end of the connection: its status and body.
fn read_answer(stream: &mut std::net::TcpStream) -> (u16, Vec<u8>) {
    use std::io::Read;
    stream.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).unwrap();
    let text = String::from_utf8_lossy(&raw);
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no HTTP answer: {text:?}"));
    let body = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|i| raw[i + 4..].to_vec())
        .unwrap_or_default();
    (status, body)
}

#[test]
fn sigterm_lets_an_upload_in_flight_finish_and_refuses_new_connections() {
    use std::io::{Read, Write};
    use std::net::TcpStream;

    let dir = tempfile::tempdir().unwrap();
    let mut node = serve_logging_info(dir.path(), serde_json::json!({}));
    let gun = "example.com/drain";
    let key = node.get(&format!("/v2/{gun}/_trust/tuf/timestamp.key"));
    assert_eq!(key.status, 200, "{}", key.text());
    let mut repo = seal_tuf::testing::TestRepo::new(gun, time::OffsetDateTime::now_utc());
    repo.server_timestamp = Some(seal_tuf::PublicKey::from_json(&key.body).unwrap());
    let files = repo.first_publish(&[("v1", b"version one")]);
    let targets = files.iter().find(|(role, _)| role == "targets").unwrap().1.clone();
    let (content_type, body) = common::multipart(&files);

    // An idle keep-alive connection, after one request.
    let mut idle = TcpStream::connect(&node.addr).unwrap();
    idle.write_all(b"GET /_notary_server/health HTTP/1.1\r\nHost: node\r\n\r\n")
        .unwrap();
    let mut first = [0u8; 12];
    idle.read_exact(&mut first).unwrap();
    assert_eq!(&first, b"HTTP/1.1 200");

    // The upload: its headers and half its body, then SIGTERM.
    let mut upload = TcpStream::connect(&node.addr).unwrap();
    let head = format!(
        "POST /v2/{gun}/_trust/tuf/ HTTP/1.1\r\nHost: node\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    upload.write_all(head.as_bytes()).unwrap();
    let half = body.len() / 2;
    upload.write_all(&body[..half]).unwrap();
    upload.flush().unwrap();
    std::thread::sleep(Duration::from_millis(500));
    assert!(node.process.signal("-TERM"));

    // New connections are refused at once, while the upload is still in flight.
    let deadline = Instant::now() + Duration::from_secs(5);
    while TcpStream::connect(&node.addr).is_ok() {
        assert!(
            Instant::now() < deadline,
            "the node still accepts connections after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // The idle keep-alive connection is closed (end of stream, no answer).
    idle.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut rest = Vec::new();
    let _ = idle.read_to_end(&mut rest);
    assert!(
        !node.process.output().contains("drained"),
        "drained before the upload ended"
    );

    // The rest of the body: the upload gets its normal answer.
    upload.write_all(&body[half..]).unwrap();
    let (status, answer) = read_answer(&mut upload);
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&answer));

    let exit = node
        .process
        .wait_exit(Duration::from_secs(30))
        .unwrap_or_else(|| panic!("the node did not exit after draining:\n{}", node.process.output()));
    assert!(exit.success(), "{exit:?}\n{}", node.process.output());
    let log = node.process.output();
    // How many connections are drained depends on when the node noticed the test's earlier
    // ones closing: at least the upload's.
    let draining: usize = log
        .lines()
        .find_map(|l| l.split("draining ").nth(1)?.split(' ').next()?.parse().ok())
        .unwrap_or_else(|| panic!("no \"draining N connections\" in the log:\n{log}"));
    assert!(draining >= 1, "{log}");
    for phase in ["shutting down: no new connections", "drained", "raft stopped"] {
        assert!(log.contains(phase), "no {phase:?} in the log:\n{log}");
    }

    // The upload is there after a restart.
    node.restart();
    let served = node.get(&format!("/v2/{gun}/_trust/tuf/targets.json"));
    assert_eq!(served.status, 200, "{}", served.text());
    assert_eq!(served.body, targets);
}

#[test]
fn a_request_still_running_at_the_drain_timeout_is_cut() {
    use std::io::Write;
    use std::net::TcpStream;

    let dir = tempfile::tempdir().unwrap();
    let mut node = serve_logging_info(
        dir.path(),
        serde_json::json!({"connections": {"drain_timeout_ms": 500}}),
    );
    let mut upload = TcpStream::connect(&node.addr).unwrap();
    upload
        .write_all(b"POST /v2/example.com/cut/_trust/tuf/ HTTP/1.1\r\nHost: node\r\nContent-Type: multipart/form-data; boundary=b\r\nContent-Length: 1000\r\n\r\n--b")
        .unwrap();
    std::thread::sleep(Duration::from_millis(500));
    assert!(node.process.signal("-TERM"));
    let exit = node
        .process
        .wait_exit(Duration::from_secs(30))
        .unwrap_or_else(|| panic!("the node did not exit:\n{}", node.process.output()));
    assert!(exit.success(), "{exit:?}");
    let log = node.process.output();
    assert!(log.contains("drain timeout: 1 connections cut"), "{log}");
}

/// `seal-node serve` with the config `json` (written to `<dir>/config.json`, a free port
/// set), its level from the config alone (`SEAL_LOG` empty); ready when it returns.
fn serve_with_config_level(dir: &std::path::Path, json: &mut serde_json::Value) -> Node {
    let addr = format!("127.0.0.1:{}", seal_testkit::free_port());
    json["server"]["http_addr"] = serde_json::json!(addr);
    json["storage"]["data_dir"] = serde_json::json!(dir.join("data"));
    json["insecure"] = serde_json::json!(true);
    std::fs::write(dir.join("config.json"), serde_json::to_vec_pretty(json).unwrap()).unwrap();
    let launch = seal_testkit::process::Launch::new(common::node_binary(), dir.join("node.log"))
        .args(["serve", "--config"])
        .arg(dir.join("config.json"))
        .env("SEAL_LOG", "")
        .env("SEAL_SIGNER_PASSPHRASE", "integration-test-passphrase");
    let mut node = Node {
        process: launch.start().unwrap(),
        addr,
        data_dir: dir.to_owned(),
    };
    node.wait_ready();
    node
}

fn wait_for_log(node: &mut Node, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !node.process.output().contains(what) {
        assert!(node.running(), "the node exited:\n{}", node.process.output());
        assert!(
            Instant::now() < deadline,
            "no {what:?} in the log:\n{}",
            node.process.output()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn sighup_applies_the_log_level_of_the_config_file() {
    let dir = tempfile::tempdir().unwrap();
    let mut json = serde_json::json!({
        "server": {},
        "trust_service": {"type": "local", "key_algorithm": "ed25519"},
        "storage": {"backend": "rocksdb"},
        "logging": {"level": "info"},
    });
    let mut node = serve_with_config_level(dir.path(), &mut json);
    // A refused request is logged at debug.
    let missing = "/v2/example.com/none/_trust/tuf/root.json";
    assert_eq!(node.get(missing).status, 404);
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        !node.process.output().contains("request refused"),
        "{}",
        node.process.output()
    );

    json["logging"]["level"] = serde_json::json!("debug");
    std::fs::write(
        dir.path().join("config.json"),
        serde_json::to_vec_pretty(&json).unwrap(),
    )
    .unwrap();
    hangup(&node);
    wait_for_log(&mut node, "log level now debug");
    assert_eq!(node.get(missing).status, 404);
    wait_for_log(&mut node, "request refused");

    // A config that no longer loads: said, and the level stays.
    json["logging"]["levle"] = serde_json::json!("error");
    std::fs::write(
        dir.path().join("config.json"),
        serde_json::to_vec_pretty(&json).unwrap(),
    )
    .unwrap();
    hangup(&node);
    wait_for_log(&mut node, r#"SIGHUP: unknown key "logging.levle""#);
    let before = node.process.output().matches("request refused").count();
    assert_eq!(node.get(missing).status, 404);
    let deadline = Instant::now() + Duration::from_secs(10);
    while node.process.output().matches("request refused").count() == before {
        assert!(Instant::now() < deadline, "the level changed after a bad config");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(node.running());
}

#[test]
fn a_node_configured_for_json_logs_writes_one_json_object_per_line() {
    let dir = tempfile::tempdir().unwrap();
    let mut json = serde_json::json!({
        "server": {},
        "trust_service": {"type": "local", "key_algorithm": "ed25519"},
        "storage": {"backend": "rocksdb"},
        "logging": {"level": "info", "format": "json"},
    });
    let mut node = serve_with_config_level(dir.path(), &mut json);
    wait_for_log(&mut node, "listening");
    assert!(node.process.signal("-TERM"));
    node.process.wait_exit(Duration::from_secs(30)).expect("the node stops");
    let text = node.process.output();
    let lines: Vec<serde_json::Value> = text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l:?}")))
        .collect();
    let listening = lines
        .iter()
        .find(|l| l["message"] == "listening")
        .unwrap_or_else(|| panic!("no listening line: {text}"));
    assert_eq!(listening["level"], "INFO");
    assert!(listening["timestamp"].is_string());
    assert!(
        listening["addr"].as_str().is_some_and(|a| a == node.addr),
        "{listening}"
    );
    assert!(lines.iter().any(|l| l["message"] == "drained"), "{text}");
}
