//! What an operator sees from the real `seal-node` binary when a config file
//! is wrong: `serve` refuses a misspelled key at once (instead of serving
//! plain HTTP), and `check-config` says the same without starting anything.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use seal_testkit::process::run_to_end;

fn write_config(dir: &Path, json: &serde_json::Value) -> std::path::PathBuf {
    let path = dir.join("config.json");
    std::fs::write(&path, serde_json::to_vec_pretty(json).unwrap()).unwrap();
    path
}

fn check_config(path: &Path) -> (i32, String, String) {
    run_to_end(
        Command::new(common::node_binary())
            .args(["check-config", "--config"])
            .arg(path)
            .env("SEAL_SIGNER_PASSPHRASE", "integration-test-passphrase"),
    )
}

/// A config whose TLS file keys are misspelled: before strict parsing, the node served plain
/// HTTP (and with `insecure`, even without complaint).
fn misspelled(dir: &Path, addr: &str) -> serde_json::Value {
    serde_json::json!({
        "server": {"http_addr": addr, "tls_cert_flie": "node.crt", "tls_key_flie": "node.key"},
        "trust_service": {"type": "local"},
        "storage": {"backend": "rocksdb", "data_dir": dir.join("data")},
        "insecure": true,
    })
}

#[test]
fn serve_refuses_a_misspelled_key_and_names_it() {
    let dir = tempfile::tempdir().unwrap();
    let addr = format!("127.0.0.1:{}", seal_testkit::free_port());
    let launch = seal_testkit::process::node(
        &common::node_binary(),
        dir.path(),
        &misspelled(dir.path(), &addr),
        "info",
    )
    .unwrap()
    .env("SEAL_SIGNER_PASSPHRASE", "integration-test-passphrase");
    let mut node = launch.start().unwrap();
    let status = node
        .wait_exit(Duration::from_secs(30))
        .unwrap_or_else(|| panic!("seal-node served with a misspelled key:\n{}", node.output()));
    assert!(!status.success());
    let said = node.output();
    assert!(
        said.contains(r#"seal-node: unknown key "server.tls_cert_flie" (did you mean "server.tls_cert_file"?)"#),
        "{said}"
    );
    assert!(!dir.path().join("data").exists(), "the node opened its data directory");
}

#[test]
fn check_config_says_ok_with_a_summary_or_prints_the_error() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = (dir.path().join("node.crt"), dir.path().join("node.key"));
    seal_testkit::pki::SelfSigned::localhost().write(&cert, &key);

    let (code, out, err) = check_config(&write_config(dir.path(), &misspelled(dir.path(), "127.0.0.1:1")));
    assert_eq!(code, 1, "{out}{err}");
    assert_eq!(
        err.trim(),
        r#"seal-node: unknown key "server.tls_cert_flie" (did you mean "server.tls_cert_file"?)"#
    );

    let good = serde_json::json!({
        "server": {"http_addr": "127.0.0.1:1", "tls_cert_file": "node.crt", "tls_key_file": "node.key"},
        "trust_service": {"type": "local"},
        "storage": {"backend": "memory", "data_dir": dir.path().join("data")},
        "reporting": {"bugsnag": {"api_key": "k"}},
        "insecure": true,
    });
    let (code, out, err) = check_config(&write_config(dir.path(), &good));
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(
        out.lines().last(),
        Some("config OK: mode standalone, TLS on, signer local"),
        "{out}"
    );
    assert_eq!(out.matches("warning: ").count(), 2, "{out}");
    assert!(
        !dir.path().join("data").exists(),
        "check-config opened the data directory"
    );

    // Like serve: no TLS and no auth without "insecure" is refused.
    let mut plain = good.clone();
    plain["server"] = serde_json::json!({"http_addr": "127.0.0.1:1"});
    plain.as_object_mut().unwrap().remove("insecure");
    let (code, out, err) = check_config(&write_config(dir.path(), &plain));
    assert_eq!(code, 1, "{out}{err}");
    assert!(
        err.starts_with("seal-node: refusing to serve with plain HTTP (no server.tls_cert_file) and no authentication"),
        "{err}"
    );

    // Notary's release config: its MySQL storage is refused with what to do instead.
    if let Some(fixtures) = seal_testkit::notary_fixtures() {
        let (code, out, err) = check_config(&fixtures.join("configs/notary-v0.7.0/server-config.json"));
        assert_eq!(code, 1, "{out}{err}");
        assert!(err.contains("seal-node import-notary"), "{err}");
    }
}
