//! `seal-node local-cluster`: one command starts three voters, a learner
//! and a signer on loopback, prints them, serves, and stops every process
//! on SIGTERM.

use std::io::{BufRead as _, BufReader};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

mod common;

#[test]
fn a_local_cluster_starts_serves_and_stops_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_seal-node"))
        .args(["local-cluster", "--base-port", "0", "--dir"])
        .arg(dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut printed = Vec::new();
    for line in lines.by_ref() {
        let line = line.unwrap();
        let ready = line.starts_with("ready");
        printed.push(line);
        if ready {
            break;
        }
    }
    assert!(
        printed.last().is_some_and(|l| l.starts_with("ready")),
        "local-cluster did not get ready:\n{}",
        printed.join("\n")
    );
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

    // SIGTERM stops the cluster and every process in it.
    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < deadline, "local-cluster did not stop");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(status.success(), "{status}");
    let rest: Vec<String> = lines.map_while(Result::ok).collect();
    assert!(rest.iter().any(|l| l == "stopped"), "{rest:?}");
    for addr in &http {
        assert!(TcpStream::connect(addr).is_err(), "{addr} still accepts connections");
    }
}
