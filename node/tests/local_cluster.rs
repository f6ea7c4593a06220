//! `seal-node local-cluster`: one command starts three voters, a learner
//! and a signer (or a 2-of-3 threshold signer cluster) on loopback, prints
//! them, serves, and stops every process on SIGTERM.

use std::net::TcpStream;
use std::process::Command;
use std::time::Duration;

use seal_testkit::process::{Launch, Process};

mod common;

/// Starts `seal-node local-cluster` with `args` in `dir`; returns the
/// process and what it printed up to `ready`.
fn start(dir: &std::path::Path, args: &[&str]) -> (Process, Vec<String>) {
    let mut process = Launch::new(common::node_binary(), dir.join("local-cluster.log"))
        .args(["local-cluster", "--base-port", "0", "--dir"])
        .arg(dir)
        .args(args)
        .start()
        .unwrap();
    process
        .wait_for_line("ready", Duration::from_secs(120), |l| {
            l.starts_with("ready").then_some(())
        })
        .unwrap_or_else(|e| panic!("local-cluster did not get ready: {e}"));
    let output = process.output();
    let mut printed: Vec<String> = Vec::new();
    for line in output.lines() {
        printed.push(line.to_owned());
        if line.starts_with("ready") {
            break;
        }
    }
    (process, printed)
}

/// The nodes' HTTP addresses in what local-cluster printed, checking the roles.
fn http_addrs(printed: &[String]) -> Vec<String> {
    // Three voters and a learner, each with its HTTP address.
    let rows: Vec<Vec<String>> = printed
        .iter()
        .map(|l| l.split_whitespace().map(str::to_owned).collect::<Vec<_>>())
        .filter(|w| w.len() >= 4 && w[0].parse::<u64>().is_ok())
        .collect();
    let roles: Vec<&str> = rows.iter().map(|r| r[1].as_str()).collect();
    assert_eq!(roles, ["voter", "voter", "voter", "learner"], "{printed:?}");
    let http: Vec<String> = rows
        .iter()
        .map(|r| r[2].trim_start_matches("http://").to_owned())
        .collect();
    for addr in &http {
        let r = common::try_request(addr, "GET", "/_notary_server/health", &[], &[]).unwrap();
        assert_eq!(r.status, 200, "{addr}: {}", r.text());
    }
    http
}

/// SIGTERM stops the cluster and every process in it.
fn stop(mut process: Process, http: &[String]) {
    let status = process
        .stop(Duration::from_secs(60))
        .expect("local-cluster stopped on SIGTERM");
    assert!(status.success(), "{status}");
    let output = process.output();
    assert!(output.lines().any(|l| l == "stopped"), "{output}");
    for addr in http {
        assert!(TcpStream::connect(addr).is_err(), "{addr} still accepts connections");
    }
}

#[test]
fn a_local_cluster_starts_serves_and_stops_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let (process, printed) = start(dir.path(), &[]);
    let http = http_addrs(&printed);
    stop(process, &http);
}

#[test]
fn a_local_cluster_with_two_of_three_threshold_signers_lists_them_all() {
    let dir = tempfile::tempdir().unwrap();
    let (process, printed) = start(dir.path(), &["--signers", "3", "--threshold", "2"]);
    let http = http_addrs(&printed);
    assert!(
        printed
            .iter()
            .any(|l| l == "signers: 2 of 3 sign together (FROST threshold)"),
        "{printed:?}"
    );
    let signers: Vec<&String> = printed.iter().filter(|l| l.starts_with("signer-")).collect();
    assert_eq!(signers.len(), 3, "{printed:?}");

    // A collection published through the cluster gets an Ed25519 timestamp
    // key made by the signers' DKG.
    let (_, _) = common::cluster::try_publish_new(&http[0], "example.com/local-threshold").unwrap();
    let key = common::try_request(
        &http[1],
        "GET",
        &common::cluster::tuf("example.com/local-threshold", "timestamp.key"),
        &[],
        &[],
    )
    .unwrap();
    assert_eq!(
        seal_tuf::PublicKey::from_json(&key.body).unwrap().key_type(),
        seal_tuf::KeyType::Ed25519
    );

    // Every node lists the three signers: the status of each shows them up.
    let status_cmd = printed
        .iter()
        .find_map(|l| l.strip_prefix("cluster status: "))
        .expect("a cluster status command")
        .to_owned();
    let words: Vec<&str> = status_cmd.split_whitespace().collect();
    let out = Command::new(common::node_binary()).args(&words[1..]).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text} {}", String::from_utf8_lossy(&out.stderr));
    let rows: Vec<&str> = text.lines().skip_while(|l| !l.starts_with("SIGNER")).skip(1).collect();
    assert_eq!(rows.len(), 3, "{text}");
    assert!(rows.iter().all(|r| r.contains(" up")), "{text}");
    stop(process, &http);
}
