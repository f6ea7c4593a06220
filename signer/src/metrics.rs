//! The signer's Prometheus metrics: signatures made (by backend, with
//! latency), policy refusals (by reason), and for the threshold backend the
//! rounds this signer coordinated (by outcome, with latency), participants'
//! refusals and peers that did not answer; and the gRPC listener's
//! connections (open, refused over the cap, failed accepts); and
//! `seal_build_info{component="signer",version}`, always 1.

use std::time::Duration;

use prometheus::{HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry};

/// The signer's metrics.
#[derive(Clone)]
pub struct Metrics {
    registry: Registry,
    signatures: IntCounterVec,
    sign_seconds: HistogramVec,
    refusals: IntCounterVec,
    rounds: IntCounterVec,
    round_seconds: HistogramVec,
    participant_refusals: IntCounterVec,
    unreachable: IntCounterVec,
    connections_refused: IntCounter,
    connections_open: IntGauge,
    accept_errors: IntCounter,
}

impl Metrics {
    /// Fresh metrics in their own registry.
    pub fn new() -> Result<Metrics, prometheus::Error> {
        let registry = Registry::new();
        let signatures = IntCounterVec::new(
            Opts::new("seal_signer_signatures_total", "Signatures made, by key backend."),
            &["backend"],
        )?;
        let sign_seconds = HistogramVec::new(
            HistogramOpts::new("seal_signer_sign_seconds", "Time the key backend took to sign.")
                .buckets(vec![0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.05, 0.25]),
            &["backend"],
        )?;
        let refusals = IntCounterVec::new(
            Opts::new(
                "seal_signer_policy_refusals_total",
                "Signing requests the policy refused, by reason.",
            ),
            &["reason"],
        )?;
        let rounds = IntCounterVec::new(
            Opts::new(
                "seal_signer_threshold_rounds_total",
                "Threshold protocol rounds this signer coordinated, by round and outcome.",
            ),
            &["round", "outcome"],
        )?;
        let round_seconds = HistogramVec::new(
            HistogramOpts::new(
                "seal_signer_threshold_round_seconds",
                "Time a threshold protocol round this signer coordinated took, by round.",
            )
            .buckets(vec![
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 5.0,
            ]),
            &["round"],
        )?;
        let participant_refusals = IntCounterVec::new(
            Opts::new(
                "seal_signer_threshold_participant_refusals_total",
                "Signature shares a participant's signing policy refused, by participant identifier.",
            ),
            &["signer"],
        )?;
        let unreachable = IntCounterVec::new(
            Opts::new(
                "seal_signer_threshold_peer_unreachable_total",
                "Calls to a threshold peer that did not answer in time, by peer identifier.",
            ),
            &["peer"],
        )?;
        let connections_refused = IntCounter::new(
            "seal_signer_connections_refused_total",
            "gRPC connections closed on arrival because server.max_connections were open.",
        )?;
        let connections_open = IntGauge::new(
            "seal_signer_connections_open",
            "gRPC connections open now (TLS handshakes included).",
        )?;
        let accept_errors = IntCounter::new(
            "seal_signer_accept_errors_total",
            "Failed accept() calls of the gRPC listener (the loop backs off and goes on).",
        )?;
        let build_info = build_info("signer")?;
        registry.register(Box::new(build_info))?;
        registry.register(Box::new(connections_refused.clone()))?;
        registry.register(Box::new(connections_open.clone()))?;
        registry.register(Box::new(accept_errors.clone()))?;
        for c in [&signatures, &refusals, &rounds, &participant_refusals, &unreachable] {
            registry.register(Box::new(c.clone()))?;
        }
        registry.register(Box::new(sign_seconds.clone()))?;
        registry.register(Box::new(round_seconds.clone()))?;
        Ok(Metrics {
            registry,
            signatures,
            sign_seconds,
            refusals,
            rounds,
            round_seconds,
            participant_refusals,
            unreachable,
            connections_refused,
            connections_open,
            accept_errors,
        })
    }

    /// Counts a connection closed on arrival because the cap was reached.
    pub fn connection_refused(&self) {
        self.connections_refused.inc();
    }

    /// Connections refused so far.
    pub fn connections_refused(&self) -> u64 {
        self.connections_refused.get()
    }

    /// Counts a connection opened (`1`) or closed (`-1`).
    pub fn connections_open_add(&self, delta: i64) {
        self.connections_open.add(delta);
    }

    /// Connections open now.
    pub fn connections_open(&self) -> i64 {
        self.connections_open.get()
    }

    /// Counts a failed `accept()`.
    pub fn accept_failed(&self) {
        self.accept_errors.inc();
    }

    /// Counts a threshold round this signer coordinated (`round` such as
    /// `sign_commit`, `outcome` such as `ok`) and records how long it took.
    pub fn round(&self, round: &str, outcome: &str, took: Duration) {
        self.rounds.with_label_values(&[round, outcome]).inc();
        self.round_seconds
            .with_label_values(&[round])
            .observe(took.as_secs_f64());
    }

    /// Rounds so far of `round` with `outcome`.
    pub fn rounds(&self, round: &str, outcome: &str) -> u64 {
        self.rounds.with_label_values(&[round, outcome]).get()
    }

    /// Counts a participant's refusal of a signature share.
    pub fn participant_refused(&self, signer: u16) {
        self.participant_refusals
            .with_label_values(&[&signer.to_string()])
            .inc();
    }

    /// Refusals so far by participant `signer`.
    pub fn participant_refusals(&self, signer: u16) -> u64 {
        self.participant_refusals
            .with_label_values(&[&signer.to_string()])
            .get()
    }

    /// Counts a call to peer `peer` that did not answer.
    pub fn peer_unreachable(&self, peer: u16) {
        self.unreachable.with_label_values(&[&peer.to_string()]).inc();
    }

    /// Unanswered calls so far to peer `peer`.
    pub fn peer_unreachable_count(&self, peer: u16) -> u64 {
        self.unreachable.with_label_values(&[&peer.to_string()]).get()
    }

    /// Counts a signature.
    pub fn signed(&self, backend: &str, took: Duration) {
        self.signatures.with_label_values(&[backend]).inc();
        self.sign_seconds
            .with_label_values(&[backend])
            .observe(took.as_secs_f64());
    }

    /// Counts a refusal.
    pub fn refused(&self, reason: &str) {
        self.refusals.with_label_values(&[reason]).inc();
    }

    /// Refusals so far for `reason`.
    pub fn refusals(&self, reason: &str) -> u64 {
        self.refusals.with_label_values(&[reason]).get()
    }

    /// The text exposition.
    pub fn render(&self) -> String {
        let mut out = Vec::new();
        let _ = prometheus::Encoder::encode(&prometheus::TextEncoder::new(), &self.registry.gather(), &mut out);
        String::from_utf8_lossy(&out).into_owned()
    }
}

/// `seal_build_info{component, version} 1`: which build of which component runs (every Seal
/// process exports it; the version is the workspace's).
pub fn build_info(component: &str) -> prometheus::Result<IntGaugeVec> {
    let gauge = IntGaugeVec::new(
        Opts::new("seal_build_info", "Always 1; the labels name the running build."),
        &["component", "version"],
    )?;
    gauge.with_label_values(&[component, env!("CARGO_PKG_VERSION")]).set(1);
    Ok(gauge)
}
