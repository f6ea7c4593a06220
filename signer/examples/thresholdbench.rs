//! Threshold signing latency benchmark (docs/benchmarks.md): n signer
//! processes on loopback, configured k-of-n (`key_backend.type =
//! "threshold"`), mutual TLS between them and with the client, RocksDB on
//! disk with the high-water mark fsync'd by every participant before its
//! share leaves. A DKG makes the key; then the client seal-node uses calls
//! `Sign` on signer 1, which coordinates both FROST rounds with the first
//! k−1 peers that answer, aggregates and verifies. Each call signs the next
//! version of a timestamp, so every participant runs the signing policy.
//!
//! Each signer is this binary re-executed as `serve --config <file>`, which
//! runs `seal_signer::server::run`, the code of `seal-signer serve` (so the
//! benchmark needs no separately built `seal-signer`).
//!
//! `thresholdbench [signs] [callers]` (defaults 2000 and 4): for 2-of-3 and
//! 3-of-5, `signs` sequential signatures (latency), then `callers`
//! concurrent callers with a key each signing `signs / callers` times
//! (throughput).

use std::path::Path;
use std::time::{Duration, Instant};

use seal_signer::client::SignerClient;
use seal_signer::testing::{client, TestPki, ThresholdCluster};

/// The canonical `signed` section of version `version` of a timestamp.
fn timestamp(version: u64) -> Vec<u8> {
    let now = time::OffsetDateTime::now_utc();
    let mut ts = seal_tuf::generate::next_timestamp(None, b"{}", now, time::Duration::days(1)).expect("timestamp");
    ts.version = version;
    ts.to_value().to_canonical()
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}

/// A key for `gun`, made by DKG through `client`; returns its ID and public key.
async fn make_key(client: &SignerClient, gun: &str) -> (String, Vec<u8>) {
    let key = client.create_key("ed25519", gun, "timestamp").await.expect("DKG");
    (key.key_id, key.public)
}

/// Signs versions `versions` of a timestamp of `gun` with `key`; returns
/// each call's latency. The first signature is verified.
async fn sign_versions(
    client: &SignerClient,
    gun: &str,
    (key_id, public): &(String, Vec<u8>),
    versions: std::ops::RangeInclusive<u64>,
) -> Vec<Duration> {
    let mut latencies = Vec::new();
    for v in versions {
        let msg = timestamp(v);
        let started = Instant::now();
        let sig = client
            .sign(key_id, &msg, Some(gun), Some("timestamp"))
            .await
            .expect("threshold sign");
        latencies.push(started.elapsed());
        if latencies.len() == 1 {
            seal_signer::testing::assert_ed25519_signature(public, &msg, &sig.signature);
        }
    }
    latencies
}

/// Prints one table row: percentiles of `latencies` and `rate`.
fn row(signers: &str, callers: &str, mut latencies: Vec<Duration>, rate: f64, note: &str) {
    latencies.sort();
    println!(
        "| {signers} | {callers} | {} | {} | {} | {} | {rate:.0}/s | {note} |",
        ms(percentile(&latencies, 0.5)),
        ms(percentile(&latencies, 0.9)),
        ms(percentile(&latencies, 0.99)),
        ms(latencies[latencies.len() - 1]),
    );
}

/// Warm-up signatures per key (connections, caches), not counted.
const WARM_UP: u64 = 20;

async fn bench(bin: &Path, k: u16, n: u16, signs: u64, callers: u64) {
    let dir = tempfile::tempdir().expect("temporary directory");
    let pki = TestPki::new(dir.path(), "bench");
    let (cert, key) = pki.leaf("bench-client");
    let cluster = ThresholdCluster::start(bin, &pki, dir.path(), (k, n), &["bench-client"], |_, config| {
        config["logging"] = serde_json::json!({"level": "error"});
        // Bare timestamps: the round trip, without the snapshot binding.
        config["policy"] = serde_json::json!({"notary_compat": true});
    });
    let c = client(
        cluster.signers[0].port,
        &pki.ca_file(),
        &cert,
        &key,
        Duration::from_secs(10),
    );
    let signers = format!("{k}-of-{n}");

    // One caller: latency.
    let gun = "bench.example.com/sequential";
    let started = Instant::now();
    let key = make_key(&c, gun).await;
    let dkg = started.elapsed();
    sign_versions(&c, gun, &key, 1..=WARM_UP).await;
    let latencies = sign_versions(&c, gun, &key, WARM_UP + 1..=WARM_UP + signs).await;
    let rate = latencies.len() as f64 / latencies.iter().sum::<Duration>().as_secs_f64();
    row(&signers, "1", latencies, rate, &format!("DKG {}", ms(dkg)));

    // Several callers, a key each (signing with one key is serialised).
    let per_caller = (signs / callers).max(1);
    let mut keys = Vec::new();
    for t in 0..callers {
        let gun = format!("bench.example.com/concurrent/{t}");
        let key = make_key(&c, &gun).await;
        sign_versions(&c, &gun, &key, 1..=WARM_UP).await;
        keys.push((gun, key));
    }
    let started = Instant::now();
    let tasks: Vec<_> = keys
        .into_iter()
        .map(|(gun, key)| {
            let c = c.clone();
            tokio::spawn(async move { sign_versions(&c, &gun, &key, WARM_UP + 1..=WARM_UP + per_caller).await })
        })
        .collect();
    let mut latencies = Vec::new();
    for t in tasks {
        latencies.extend(t.await.expect("caller task"));
    }
    let rate = latencies.len() as f64 / started.elapsed().as_secs_f64();
    row(&signers, &format!("{callers}, a key each"), latencies, rate, "");
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("serve") {
        // One of the signers this benchmark started.
        let path = args.get(3).expect("serve --config <file>");
        let config = seal_signer::config::SignerConfig::load(Path::new(path)).expect("signer config");
        if let Err(e) = seal_signer::server::run(&config, &|k: &str| std::env::var(k).ok()) {
            eprintln!("thresholdbench signer: {e}");
            std::process::exit(1);
        }
        return;
    }
    let signs: u64 = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(2000);
    let callers: u64 = args.get(2).and_then(|a| a.parse().ok()).unwrap_or(4);
    let bin = std::env::current_exe().expect("this benchmark's path");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    println!("| signers | callers | p50 | p90 | p99 | max | signatures/s | |");
    println!("|---|---|---|---|---|---|---|---|");
    rt.block_on(async {
        for (k, n) in [(2, 3), (3, 5)] {
            bench(&bin, k, n, signs, callers).await;
        }
    });
}
