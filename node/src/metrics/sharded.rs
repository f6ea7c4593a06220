//! Histograms for the request path: one set of counters per thread shard, summed at scrape.
//!
//! `prometheus::Histogram::observe` makes four atomic read-modify-writes on counters every thread
//! shares (its hot shard's count, a bucket, the sum, the count again); with every request observing
//! three histograms, the worker threads took turns owning those cache lines, about 3 % of the
//! node's CPU under reads (docs/benchmarks.md). Here each thread writes the counters of its own
//! shard (threads are spread over [`SHARDS`] shards; two threads sharing one stay correct, only
//! slower), and a scrape adds the shards up.
//!
//! What a scrape sees: the buckets and the count agree exactly (the count is the sum of the
//! buckets, the last of which is `+Inf`); the sum may lack observations that were in progress at
//! that moment, as with any scrape racing requests.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};

use prometheus::core::{Collector, Desc};
use prometheus::proto::{Bucket, Histogram, LabelPair, Metric, MetricFamily, MetricType};

/// Shards per series: more than the node's worker threads on the machines it runs on.
const SHARDS: usize = 16;

/// Counters between two shards' counters, so that no two shards share a cache line (128 bytes).
const PAD: usize = 16;

/// A labelled family of sharded histograms, registered as one collector.
#[derive(Clone)]
pub struct ShardedHistogramVec {
    family: Arc<Family>,
}

struct Family {
    desc: Desc,
    /// Finite upper bounds, ascending.
    bounds: Arc<[f64]>,
    series: RwLock<BTreeMap<Vec<String>, ShardedHistogram>>,
}

/// One series of a [`ShardedHistogramVec`].
#[derive(Clone)]
pub struct ShardedHistogram {
    series: Arc<Series>,
}

struct Series {
    labels: Vec<LabelPair>,
    /// Per shard: the buckets (the finite bounds, then `+Inf`), the sum's bits, padding.
    counters: Box<[AtomicU64]>,
    /// Counters of one shard, padding included.
    stride: usize,
    /// The family's finite upper bounds.
    bounds: Arc<[f64]>,
}

impl ShardedHistogramVec {
    /// A family `name` with `help`, labelled by `labels`, with the finite upper bounds `bounds`
    /// (ascending; refused otherwise, as prometheus refuses them).
    pub fn new(name: &str, help: &str, labels: &[&str], bounds: Vec<f64>) -> Result<Self, prometheus::Error> {
        if bounds.is_empty() || bounds.windows(2).any(|w| w[0] >= w[1]) || bounds.iter().any(|b| !b.is_finite()) {
            return Err(prometheus::Error::Msg(format!(
                "histogram {name}: bucket bounds must be finite and strictly ascending"
            )));
        }
        let desc = Desc::new(
            name.to_owned(),
            help.to_owned(),
            labels.iter().map(|l| (*l).to_owned()).collect(),
            Default::default(),
        )?;
        Ok(ShardedHistogramVec {
            family: Arc::new(Family {
                desc,
                bounds: bounds.into(),
                series: RwLock::new(BTreeMap::new()),
            }),
        })
    }

    /// The series of `values` (one per label, in order), made on first use.
    pub fn with_label_values(&self, values: &[&str]) -> Result<ShardedHistogram, prometheus::Error> {
        let names = &self.family.desc.variable_labels;
        if values.len() != names.len() {
            return Err(prometheus::Error::InconsistentCardinality {
                expect: names.len(),
                got: values.len(),
            });
        }
        let key: Vec<String> = values.iter().map(|v| (*v).to_owned()).collect();
        if let Some(s) = self.family.read().get(&key) {
            return Ok(s.clone());
        }
        let mut series = self.family.series.write().unwrap_or_else(|p| p.into_inner());
        let made = series.entry(key).or_insert_with(|| {
            let labels = names
                .iter()
                .zip(values)
                .map(|(n, v)| {
                    let mut l = LabelPair::default();
                    l.set_name(n.clone());
                    l.set_value((*v).to_owned());
                    l
                })
                .collect();
            let bounds = self.family.bounds.clone();
            let stride = bounds.len() + 2 + PAD;
            ShardedHistogram {
                series: Arc::new(Series {
                    labels,
                    counters: (0..stride * SHARDS).map(|_| AtomicU64::new(0)).collect(),
                    stride,
                    bounds,
                }),
            }
        });
        Ok(made.clone())
    }
}

impl Family {
    fn read(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<Vec<String>, ShardedHistogram>> {
        // A poisoned lock only means a panic elsewhere: the map itself is always whole.
        self.series.read().unwrap_or_else(|p| p.into_inner())
    }
}

/// This thread's shard, chosen once per thread, round robin.
fn shard() -> usize {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    thread_local! {
        static SHARD: usize = NEXT.fetch_add(1, Ordering::Relaxed) % SHARDS;
    }
    SHARD.with(|s| *s)
}

impl ShardedHistogram {
    /// Records `v` in the first bucket whose upper bound is at least `v` (`+Inf` past the last).
    pub fn observe(&self, v: f64) {
        let s = &self.series;
        let n = s.bounds.len();
        let bucket = s.bounds.iter().position(|b| v <= *b).unwrap_or(n);
        let base = shard() * s.stride;
        s.counters[base + bucket].fetch_add(1, Ordering::Relaxed);
        let sum = &s.counters[base + n + 1];
        let mut old = sum.load(Ordering::Relaxed);
        loop {
            let new = (f64::from_bits(old) + v).to_bits();
            match sum.compare_exchange_weak(old, new, Ordering::Relaxed, Ordering::Relaxed) {
                Ok(_) => break,
                Err(now) => old = now,
            }
        }
    }

    /// The series as Prometheus exports it: cumulative buckets, the count and the sum.
    fn metric(&self) -> Metric {
        let s = &self.series;
        let n = s.bounds.len();
        let mut counts = vec![0u64; n + 1];
        let mut sum = 0.0;
        for shard in 0..SHARDS {
            let base = shard * s.stride;
            for (i, c) in counts.iter_mut().enumerate() {
                *c += s.counters[base + i].load(Ordering::Relaxed);
            }
            sum += f64::from_bits(s.counters[base + n + 1].load(Ordering::Relaxed));
        }
        let mut cumulative = 0;
        let buckets = s
            .bounds
            .iter()
            .zip(&counts)
            .map(|(bound, count)| {
                cumulative += count;
                let mut b = Bucket::default();
                b.set_upper_bound(*bound);
                b.set_cumulative_count(cumulative);
                b
            })
            .collect();
        let mut h = Histogram::default();
        h.set_bucket(buckets);
        h.set_sample_count(counts.iter().sum());
        h.set_sample_sum(sum);
        let mut m = Metric::from_label(s.labels.clone());
        m.set_histogram(h);
        m
    }
}

impl Collector for ShardedHistogramVec {
    fn desc(&self) -> Vec<&Desc> {
        vec![&self.family.desc]
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let f = &self.family;
        let mut family = MetricFamily::default();
        family.set_name(f.desc.fq_name.clone());
        family.set_help(f.desc.help.clone());
        family.set_field_type(MetricType::HISTOGRAM);
        family.set_metric(f.read().values().map(ShardedHistogram::metric).collect());
        vec![family]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus::{Encoder, HistogramOpts, HistogramVec, Registry, TextEncoder};

    fn text(registry: &Registry) -> String {
        let mut out = Vec::new();
        TextEncoder::new().encode(&registry.gather(), &mut out).unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn exports_what_prometheus_histograms_export_for_the_same_observations() {
        // Binary fractions: the sums are exact whatever order the shards add them in.
        let bounds = vec![0.25, 0.5, 1.0, 2.0];
        let ours = Registry::new();
        let theirs = Registry::new();
        let sharded = ShardedHistogramVec::new("h_seconds", "Help.", &["operation"], bounds.clone()).unwrap();
        ours.register(Box::new(sharded.clone())).unwrap();
        let plain = HistogramVec::new(
            HistogramOpts::new("h_seconds", "Help.").buckets(bounds.clone()),
            &["operation"],
        )
        .unwrap();
        theirs.register(Box::new(plain.clone())).unwrap();
        // Observations from several threads (so several shards), on bounds, between and past them.
        let values = [0.125, 0.25, 0.375, 0.5, 1.0, 1.5, 4.0, 0.75];
        std::thread::scope(|scope| {
            for t in 0..6 {
                let (sharded, plain) = (&sharded, &plain);
                scope.spawn(move || {
                    for (i, v) in values.iter().enumerate() {
                        let op = if (i + t) % 3 == 0 { "GetRole" } else { "UpdateTUF" };
                        sharded.with_label_values(&[op]).unwrap().observe(*v);
                        plain.with_label_values(&[op]).observe(*v);
                    }
                });
            }
        });
        assert_eq!(text(&ours), text(&theirs));
        assert!(text(&ours).contains("h_seconds_bucket{operation=\"GetRole\",le=\"+Inf\"} 16\n"));
    }

    #[test]
    fn refuses_bad_bounds_and_wrong_label_counts() {
        assert!(ShardedHistogramVec::new("h", "Help.", &["a"], vec![]).is_err());
        assert!(ShardedHistogramVec::new("h", "Help.", &["a"], vec![1.0, 1.0]).is_err());
        assert!(ShardedHistogramVec::new("h", "Help.", &["a"], vec![1.0, f64::INFINITY]).is_err());
        let h = ShardedHistogramVec::new("h", "Help.", &["a"], vec![1.0]).unwrap();
        assert!(h.with_label_values(&[]).is_err());
        assert!(h.with_label_values(&["x", "y"]).is_err());
        // Nothing observed: no series, and the registry leaves the family out.
        let r = Registry::new();
        r.register(Box::new(h)).unwrap();
        assert_eq!(text(&r), "");
    }
}
