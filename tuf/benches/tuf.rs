//! Benchmarks of the hot paths: parse+verify of a typical targets file,
//! validation of a first publish, timestamp generation and signing.
//!
//! `cargo bench -p seal-tuf --bench tuf`; figures in docs/benchmarks.md.

use std::collections::BTreeMap;

use criterion::{black_box, criterion_group, criterion_main, BatchSize, Criterion};
use seal_tuf::generate::{next_timestamp, sign};
use seal_tuf::metadata::{SignedFile, Targets};
use seal_tuf::testing::TestRepo;
use seal_tuf::update::{validate_update, validate_update_cached, UpdateLimits};
use seal_tuf::verify::verify_threshold;
use seal_tuf::Timestamp;
use time::macros::datetime;
use time::Duration;

fn benches(c: &mut Criterion) {
    let now = datetime!(2026-11-22 12:00:00 UTC);
    let repo = TestRepo::new("example.com/bench/app", datetime!(2026-11-22 00:00:00 UTC));

    // A typical targets file: 20 targets, one ECDSA signature (~4 KiB).
    let contents: Vec<(String, Vec<u8>)> = (0..20)
        .map(|i| (format!("v{i}.{i}.0"), format!("release {i}").into_bytes()))
        .collect();
    let refs: Vec<(&str, &[u8])> = contents.iter().map(|(n, b)| (n.as_str(), b.as_slice())).collect();
    let targets = repo.targets_file(2, &refs);
    let tkey = repo.targets.public_key();
    c.bench_function("parse+verify targets.json (20 targets, ecdsa)", |b| {
        b.iter(|| {
            let f = SignedFile::parse("targets", black_box(targets.clone())).unwrap();
            let t = Targets::from_signed("targets", f.signed()).unwrap();
            verify_threshold(&f, &[&tkey], 1).unwrap();
            black_box(t);
        })
    });

    // One ECDSA P-256 signature check (ring), the unit cost of validation.
    let signed = SignedFile::parse("targets", targets.clone()).unwrap();
    let sig = signed.signatures()[0].clone();
    c.bench_function("verify one ECDSA P-256 signature", |b| {
        b.iter(|| {
            tkey.verify(&sig.method, black_box(signed.canonical_signed()), &sig.sig)
                .unwrap()
        })
    });

    // A first publish: root (x509 root key) + targets + snapshot, all ECDSA.
    let upload = repo.first_publish(&refs);
    let keys = repo.server_keys(false);
    let empty = BTreeMap::new();
    // The upload is cloned and the plan dropped outside the timed part: a node moves the
    // upload in and keeps the plan, neither is validation.
    c.bench_function("validate publish (root+targets+snapshot, ecdsa)", |b| {
        b.iter_batched(
            || upload.clone(),
            |u| validate_update(&repo.gun, &empty, u, now, &keys).unwrap(),
            BatchSize::SmallInput,
        )
    });

    // A typical later publish: targets + snapshot against the stored collection.
    let stored: BTreeMap<String, Vec<u8>> = upload.iter().cloned().collect();
    let t3 = repo.targets_file(3, &refs);
    let s3 = repo.snapshot_file(3, &[("root", &stored["root"]), ("targets", &t3)]);
    let update = vec![("targets".to_owned(), t3), ("snapshot".to_owned(), s3)];
    c.bench_function("validate publish (targets+snapshot, ecdsa, stored root)", |b| {
        b.iter_batched(
            || update.clone(),
            |u| validate_update(&repo.gun, &stored, u, now, &keys).unwrap(),
            BatchSize::SmallInput,
        )
    });

    // The same publish as a node validates it: the root parsed by the collection's last
    // validation is reused (the node keeps each collection's `UpdatePlan::root`).
    let limits = UpdateLimits::default();
    let parsed = validate_update(&repo.gun, &stored, update.clone(), now, &keys)
        .unwrap()
        .root;
    c.bench_function("validate publish (targets+snapshot, ecdsa, cached root)", |b| {
        b.iter_batched(
            || update.clone(),
            |u| validate_update_cached(&repo.gun, &stored, u, now, &keys, &limits, Some(parsed.clone())).unwrap(),
            BatchSize::SmallInput,
        )
    });

    // The next timestamp, signed with an Ed25519 key, as the refresher makes it.
    let snapshot = upload[2].1.clone();
    let prev_file = SignedFile::parse("timestamp", repo.timestamp_file(7, &snapshot)).unwrap();
    let prev = Timestamp::from_signed(prev_file.signed()).unwrap();
    let ts_id = repo.timestamp.public_key().id().to_owned();
    c.bench_function("generate+sign timestamp (ed25519)", |b| {
        b.iter(|| {
            let ts = next_timestamp(Some(&prev), black_box(&snapshot), now, Duration::days(14)).unwrap();
            black_box(sign("timestamp", ts.to_value(), &[(&repo.timestamp, ts_id.as_str())]).into_bytes())
        })
    });
}

criterion_group!(tuf, benches);
criterion_main!(tuf);
