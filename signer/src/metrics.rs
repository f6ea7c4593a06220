//! The signer's Prometheus metrics: signatures made (by backend, with
//! latency) and policy refusals (by reason).

use std::time::Duration;

use prometheus::{HistogramOpts, HistogramVec, IntCounterVec, Opts, Registry};

/// The signer's metrics.
#[derive(Clone)]
pub struct Metrics {
    registry: Registry,
    signatures: IntCounterVec,
    sign_seconds: HistogramVec,
    refusals: IntCounterVec,
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
        registry.register(Box::new(signatures.clone()))?;
        registry.register(Box::new(sign_seconds.clone()))?;
        registry.register(Box::new(refusals.clone()))?;
        Ok(Metrics {
            registry,
            signatures,
            sign_seconds,
            refusals,
        })
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
