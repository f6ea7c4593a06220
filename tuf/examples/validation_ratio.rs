//! The cost of validating a first publish in ECDSA P-256 verifications, measured so that a
//! change in the machine's speed hits both sides alike: each round times 40 verifications
//! (the benchmark's "verify one ECDSA P-256 signature") and then 40 validations of the
//! benchmark's first publish (root + targets + snapshot, as in `benches/tuf.rs`), and the
//! ratio is taken per round. Criterion measures the two a few seconds apart, which a build
//! running beside it skews by a few tenths; see docs/benchmarks.md.
//!
//! ```sh
//! cargo run --release -p seal-tuf --example validation_ratio -- [rounds, default 300]
//! ```

use std::collections::BTreeMap;
use std::hint::black_box;
use std::time::Instant;

use seal_tuf::metadata::SignedFile;
use seal_tuf::testing::TestRepo;
use seal_tuf::update::validate_update;
use time::macros::datetime;

const PER_ROUND: u32 = 40;

fn main() {
    let rounds: usize = match std::env::args().nth(1) {
        Some(n) => n.parse().expect("rounds: a number"),
        None => 300,
    };
    let now = datetime!(2026-11-22 12:00:00 UTC);
    let repo = TestRepo::new("example.com/bench/app", datetime!(2026-11-22 00:00:00 UTC));
    let contents: Vec<(String, Vec<u8>)> = (0..20)
        .map(|i| (format!("v{i}.{i}.0"), format!("release {i}").into_bytes()))
        .collect();
    let refs: Vec<(&str, &[u8])> = contents.iter().map(|(n, b)| (n.as_str(), b.as_slice())).collect();
    let targets = SignedFile::parse("targets", repo.targets_file(2, &refs)).expect("targets parse");
    let key = repo.targets.public_key();
    let sig = targets.signatures()[0].clone();
    let upload = repo.first_publish(&refs);
    let keys = repo.server_keys(false);
    let stored = BTreeMap::new();

    let (mut ratios, mut verify, mut validate) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..rounds {
        let start = Instant::now();
        for _ in 0..PER_ROUND {
            key.verify(&sig.method, black_box(targets.canonical_signed()), &sig.sig)
                .expect("signature verifies");
        }
        let v = start.elapsed().as_secs_f64() / f64::from(PER_ROUND);
        // As in the benchmark, the upload is cloned and the plan dropped outside the timing.
        let uploads: Vec<_> = (0..PER_ROUND).map(|_| upload.clone()).collect();
        let mut plans = Vec::with_capacity(uploads.len());
        let start = Instant::now();
        for u in uploads {
            plans.push(validate_update(&repo.gun, &stored, u, now, &keys).expect("publish validates"));
        }
        let p = start.elapsed().as_secs_f64() / f64::from(PER_ROUND);
        drop(plans);
        ratios.push(p / v);
        verify.push(v * 1e6);
        validate.push(p * 1e6);
    }
    let at = |x: &mut Vec<f64>, q: f64| {
        x.sort_by(f64::total_cmp);
        x[((x.len() - 1) as f64 * q).round() as usize]
    };
    println!(
        "first publish / one verification, per round: p25 {:.2}, median {:.2}, p75 {:.2} \
         (one verification: median {:.1} µs; validation: median {:.1} µs; {rounds} rounds)",
        at(&mut ratios, 0.25),
        at(&mut ratios, 0.5),
        at(&mut ratios, 0.75),
        at(&mut verify, 0.5),
        at(&mut validate, 0.5),
    );
}
