//! Signing latency benchmark (docs/benchmarks.md): the node → signer round
//! trip. A seal-signer (software keys, its RocksDB on disk, high-water marks
//! written with fsync) runs on its own runtime and threads in this process
//! and is reached over loopback with gRPC and mutual TLS by the client
//! seal-node uses. Each request signs a new timestamp version of its GUN,
//! so the signing policy runs on every call, as in production.
//!
//! `signbench <signs-per-task> <tasks>`: `tasks` concurrent callers, each
//! with its own GUN and key; prints latency percentiles per algorithm.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use seal_signer::client::{ClientConfig, SignerClient};
use seal_signer::testing::TestPki;
use time::OffsetDateTime;

const PASSPHRASE: &str = "signbench passphrase";

/// Starts the signer on its own runtime; returns its port.
fn start_signer(dir: &Path, pki: &TestPki) -> u16 {
    let (cert, key) = pki.leaf("signer");
    let config: seal_signer::config::SignerConfig = serde_json::from_value(serde_json::json!({
        "server": {"grpc_addr": "127.0.0.1:0", "tls_cert_file": cert, "tls_key_file": key,
                   "client_ca_file": pki.ca_file()},
        "storage": {"data_dir": dir.join("signer-data")},
        "logging": {"level": "error"},
        // Bare timestamps: the round trip, without the snapshot binding.
        "policy": {"notary_compat": true},
    }))
    .expect("signer config");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("signer runtime");
        rt.block_on(async move {
            let env = |k: &str| (k == "SEAL_SIGNER_MAIN").then(|| PASSPHRASE.to_owned());
            let running = seal_signer::server::start(&config, &env).await.expect("start signer");
            tx.send(running.addr.port()).expect("report port");
            std::future::pending::<()>().await;
        });
    });
    rx.recv().expect("signer port")
}

/// The canonical `signed` section of version `version` of a timestamp.
fn timestamp(version: u64) -> Vec<u8> {
    let now = OffsetDateTime::now_utc();
    let mut ts = seal_tuf::generate::next_timestamp(None, b"{}", now, time::Duration::days(14)).expect("timestamp");
    ts.version = version;
    ts.to_value().to_canonical()
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

async fn run(client: &SignerClient, algorithm: &str, signs: u64, tasks: usize) {
    let mut handles = Vec::new();
    let started = Instant::now();
    for t in 0..tasks {
        let client = client.clone();
        let algorithm = algorithm.to_owned();
        handles.push(tokio::spawn(async move {
            let gun = format!("bench.example.com/{algorithm}/{t}");
            let key = client
                .create_key(&algorithm, &gun, "timestamp")
                .await
                .expect("create key");
            // Warm-up: the first signature decrypts the key.
            client
                .sign(&key.key_id, &timestamp(1), Some(&gun), Some("timestamp"))
                .await
                .expect("sign");
            let mut latencies = Vec::with_capacity(signs as usize);
            for v in 2..signs + 2 {
                let msg = timestamp(v);
                let t0 = Instant::now();
                client
                    .sign(&key.key_id, &msg, Some(&gun), Some("timestamp"))
                    .await
                    .expect("sign");
                latencies.push(t0.elapsed());
            }
            latencies
        }));
    }
    let mut all = Vec::new();
    for h in handles {
        all.extend(h.await.expect("task"));
    }
    let elapsed = started.elapsed();
    all.sort();
    let mean = all.iter().sum::<Duration>() / all.len() as u32;
    println!(
        "{algorithm:8} tasks={tasks} signs={} p50={:?} p90={:?} p99={:?} mean={mean:?} ({:.0} signs/s incl. key creation)",
        all.len(),
        percentile(&all, 0.50),
        percentile(&all, 0.90),
        percentile(&all, 0.99),
        all.len() as f64 / elapsed.as_secs_f64(),
    );
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let signs: u64 = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(2000);
    let tasks: usize = args.get(2).and_then(|a| a.parse().ok()).unwrap_or(1);
    let dir = tempfile::tempdir().expect("temp dir");
    let pki = TestPki::new(dir.path(), "bench");
    let port = start_signer(dir.path(), &pki);
    let (cert, key) = pki.leaf("node");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("client runtime");
    rt.block_on(async {
        // The channel needs the runtime: build the client inside it.
        let client = Arc::new(
            SignerClient::new(&ClientConfig {
                hostname: "localhost".into(),
                port,
                ca_file: pki.ca_file(),
                cert_file: cert,
                key_file: key,
                timeout: std::time::Duration::from_secs(5),
                connect_timeout: std::time::Duration::from_secs(5),
            })
            .expect("client"),
        );
        for algorithm in ["ed25519", "ecdsa"] {
            run(&client, algorithm, signs, tasks).await;
        }
    });
}
