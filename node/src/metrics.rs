//! The node's Prometheus metrics: HTTP traffic per operation (Notary's
//! operation names), Raft progress (per-peer replication lag on the leader,
//! leader contact on the others, leader changes), signing latency, timestamp
//! age and remaining lifetime, build information, and the text encoder behind
//! `GET /metrics`.
//!
//! Every gauge holds a real number on every node: what cannot be known on a
//! node is left out (the `peer` series of the replication lag off the leader,
//! the leader contact before any contact), never exported as NaN.

mod sharded;

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use prometheus::{
    Encoder, GaugeVec, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry, TextEncoder,
};

pub use sharded::{ShardedHistogram, ShardedHistogramVec};

/// The content type of the text exposition format.
pub const METRICS_CONTENT_TYPE: &str = "text/plain; version=0.0.4";

/// Every metric the node exports, registered in one registry.
#[derive(Clone)]
pub struct Metrics {
    registry: Registry,
    /// `seal_http_requests_total{operation,code}`.
    pub http_requests: IntCounterVec,
    /// `seal_http_request_duration_seconds{operation}` (sharded by thread: every request
    /// observes it).
    pub http_duration: ShardedHistogramVec,
    /// `seal_http_request_size_bytes{operation}`.
    pub http_request_size: ShardedHistogramVec,
    /// `seal_http_response_size_bytes{operation}`.
    pub http_response_size: ShardedHistogramVec,
    /// `seal_raft_term`: the node's current Raft term.
    pub raft_term: IntGauge,
    /// `seal_raft_leader`: the node id of the known leader (0 when unknown).
    pub raft_leader: IntGauge,
    /// `seal_raft_commit_index`.
    pub raft_commit_index: IntGauge,
    /// `seal_raft_applied_index`.
    pub raft_applied_index: IntGauge,
    /// `seal_signing_duration_seconds{role}`.
    pub signing_duration: HistogramVec,
    /// `seal_timestamp_age_seconds`: age of the oldest timestamp served (absent while no
    /// timestamp is stored).
    timestamp_age: GaugeVec,
    /// `seal_timestamp_min_remaining_seconds`: the smallest remaining lifetime of any collection's
    /// timestamp this node has applied, computed from its own applied state on every node
    /// (absent while no timestamp is stored: nothing can expire).
    timestamp_min_remaining: GaugeVec,
    /// `seal_build_info{component="node",version}`: always 1.
    pub build_info: IntGaugeVec,
    /// `seal_raft_replication_lag_entries{peer}`: on the leader, how many log entries each
    /// follower or learner is behind the leader's last log index; no series on other nodes.
    pub raft_replication_lag: IntGaugeVec,
    /// `seal_raft_last_leader_contact_seconds`: on a follower or learner, seconds since it last
    /// heard from the leader (0 on the leader); absent before any contact.
    pub raft_last_leader_contact: GaugeVec,
    /// `seal_raft_leader_changes_total`: how often the leader this node knows changed (including
    /// to and from "no leader").
    pub raft_leader_changes: IntCounter,
    /// `seal_connections_refused_total`: HTTP connections closed on arrival because
    /// `connections.max_per_listener` were open.
    pub connections_refused: IntCounter,
    /// `seal_accept_errors_total`: failed `accept()` calls of the HTTP listener.
    pub accept_errors: IntCounter,
    /// `seal_connections_open`: HTTP connections open now.
    pub connections_open: IntGauge,
    /// `seal_signer_up{signer}`: 1 while a remote signer answers, 0 once a
    /// call or probe found it unreachable.
    pub signer_up: IntGaugeVec,
    /// `seal_signer_calls_total{signer,call,outcome}`: calls to each remote
    /// signer (`call`: `sign`, `get_key`, `create_key`, `delete_key`,
    /// `health`; `outcome`: `ok`, `unavailable`, `backend_unavailable`,
    /// `refused`, `not_found`, `error`).
    pub signer_calls: IntCounterVec,
    /// `seal_signer_failovers_total`: calls answered by a signer other than
    /// the first one tried.
    pub signer_failovers: IntCounter,
    /// `seal_raft_connections_refused_total`: connections to the Raft gRPC port closed on
    /// arrival because `raft.max_connections` were open (cluster nodes).
    pub raft_connections_refused: IntCounter,
    /// `seal_raft_accept_errors_total`: failed `accept()` calls of the Raft gRPC port.
    pub raft_accept_errors: IntCounter,
    /// `seal_raft_connections_open`: connections to the Raft gRPC port open now.
    pub raft_connections_open: IntGauge,
    /// `seal_storage_memory_bytes{part}`: what the node's storage holds in memory (`memtables`,
    /// `table_readers`: index and filter blocks of open files, `block_cache`, `current_files`: the
    /// read path's cache of current files).
    pub storage_memory: IntGaugeVec,
    /// The HTTP series of each (operation, status) answered so far, resolved once: looking up
    /// four labelled series (and formatting the status) cost as much as serving a cached file.
    http_series: Arc<RwLock<HashMap<(&'static str, u16), HttpSeries>>>,
}

/// The series one (operation, status) pair records into.
#[derive(Clone)]
struct HttpSeries {
    requests: IntCounter,
    duration: ShardedHistogram,
    request_size: ShardedHistogram,
    response_size: ShardedHistogram,
}

fn size_buckets() -> Vec<f64> {
    prometheus::exponential_buckets(64.0, 4.0, 10).unwrap_or_default()
}

impl Metrics {
    /// Creates and registers every metric in a fresh registry.
    pub fn new() -> Result<Metrics, prometheus::Error> {
        let registry = Registry::new();
        let http_requests = IntCounterVec::new(
            Opts::new(
                "seal_http_requests_total",
                "HTTP requests by operation and status code.",
            ),
            &["operation", "code"],
        )?;
        let http_duration = ShardedHistogramVec::new(
            "seal_http_request_duration_seconds",
            "Time to answer an HTTP request, by operation.",
            &["operation"],
            prometheus::DEFAULT_BUCKETS.to_vec(),
        )?;
        let http_request_size = ShardedHistogramVec::new(
            "seal_http_request_size_bytes",
            "HTTP request body sizes.",
            &["operation"],
            size_buckets(),
        )?;
        let http_response_size = ShardedHistogramVec::new(
            "seal_http_response_size_bytes",
            "HTTP response body sizes.",
            &["operation"],
            size_buckets(),
        )?;
        let raft_term = IntGauge::new("seal_raft_term", "Current Raft term of this node.")?;
        let raft_leader = IntGauge::new(
            "seal_raft_leader",
            "Node id of the Raft leader this node knows (0: unknown).",
        )?;
        let raft_commit_index = IntGauge::new("seal_raft_commit_index", "Highest Raft log index known committed.")?;
        let raft_applied_index = IntGauge::new(
            "seal_raft_applied_index",
            "Highest Raft log index applied to the state machine.",
        )?;
        let signing_duration = HistogramVec::new(
            HistogramOpts::new("seal_signing_duration_seconds", "Time to obtain a signature, by role."),
            &["role"],
        )?;
        let timestamp_age = GaugeVec::new(
            Opts::new(
                "seal_timestamp_age_seconds",
                "Age of the oldest timestamp this node serves (absent: none stored).",
            ),
            &[],
        )?;
        let timestamp_min_remaining = GaugeVec::new(
            Opts::new(
                "seal_timestamp_min_remaining_seconds",
                "Smallest remaining lifetime of any collection's timestamp this node has applied (absent: none stored).",
            ),
            &[],
        )?;
        let build_info = seal_signer::metrics::build_info("node")?;
        let raft_replication_lag = IntGaugeVec::new(
            Opts::new(
                "seal_raft_replication_lag_entries",
                "On the leader: log entries each peer is behind the leader's last log index.",
            ),
            &["peer"],
        )?;
        let raft_last_leader_contact = GaugeVec::new(
            Opts::new(
                "seal_raft_last_leader_contact_seconds",
                "Seconds since this node last heard from the Raft leader (0 on the leader; absent before any contact).",
            ),
            &[],
        )?;
        let raft_leader_changes = IntCounter::new(
            "seal_raft_leader_changes_total",
            "Changes of the Raft leader this node knows (including to and from no leader).",
        )?;
        registry.register(Box::new(build_info.clone()))?;
        registry.register(Box::new(raft_replication_lag.clone()))?;
        registry.register(Box::new(raft_last_leader_contact.clone()))?;
        registry.register(Box::new(raft_leader_changes.clone()))?;
        let connections_refused = IntCounter::new(
            "seal_connections_refused_total",
            "HTTP connections closed on arrival because connections.max_per_listener were open.",
        )?;
        let accept_errors = IntCounter::new(
            "seal_accept_errors_total",
            "Failed accept() calls of the HTTP listener (the loop backs off and goes on).",
        )?;
        let connections_open = IntGauge::new("seal_connections_open", "HTTP connections open now.")?;
        let signer_up = IntGaugeVec::new(
            Opts::new(
                "seal_signer_up",
                "1 while a remote signer answers, 0 once it was found unreachable.",
            ),
            &["signer"],
        )?;
        let signer_calls = IntCounterVec::new(
            Opts::new(
                "seal_signer_calls_total",
                "Calls to each remote signer, by call and outcome.",
            ),
            &["signer", "call", "outcome"],
        )?;
        let signer_failovers = IntCounter::new(
            "seal_signer_failovers_total",
            "Signer calls answered by a signer other than the first one tried.",
        )?;
        registry.register(Box::new(signer_up.clone()))?;
        registry.register(Box::new(signer_calls.clone()))?;
        registry.register(Box::new(signer_failovers.clone()))?;
        let raft_connections_refused = IntCounter::new(
            "seal_raft_connections_refused_total",
            "Raft gRPC connections closed on arrival because raft.max_connections were open.",
        )?;
        let raft_accept_errors = IntCounter::new(
            "seal_raft_accept_errors_total",
            "Failed accept() calls of the Raft gRPC port (the loop backs off and goes on).",
        )?;
        let raft_connections_open = IntGauge::new("seal_raft_connections_open", "Raft gRPC connections open now.")?;
        registry.register(Box::new(raft_connections_refused.clone()))?;
        registry.register(Box::new(raft_accept_errors.clone()))?;
        registry.register(Box::new(raft_connections_open.clone()))?;
        let storage_memory = IntGaugeVec::new(
            Opts::new(
                "seal_storage_memory_bytes",
                "What the node's storage holds in memory, by part (RocksDB's estimates and the current-file cache).",
            ),
            &["part"],
        )?;
        registry.register(Box::new(storage_memory.clone()))?;
        registry.register(Box::new(connections_refused.clone()))?;
        registry.register(Box::new(accept_errors.clone()))?;
        registry.register(Box::new(connections_open.clone()))?;
        registry.register(Box::new(http_requests.clone()))?;
        registry.register(Box::new(http_duration.clone()))?;
        registry.register(Box::new(http_request_size.clone()))?;
        registry.register(Box::new(http_response_size.clone()))?;
        registry.register(Box::new(raft_term.clone()))?;
        registry.register(Box::new(raft_leader.clone()))?;
        registry.register(Box::new(raft_commit_index.clone()))?;
        registry.register(Box::new(raft_applied_index.clone()))?;
        registry.register(Box::new(signing_duration.clone()))?;
        registry.register(Box::new(timestamp_age.clone()))?;
        registry.register(Box::new(timestamp_min_remaining.clone()))?;
        Ok(Metrics {
            registry,
            http_requests,
            http_duration,
            http_request_size,
            http_response_size,
            raft_term,
            raft_leader,
            raft_commit_index,
            raft_applied_index,
            signing_duration,
            timestamp_age,
            timestamp_min_remaining,
            build_info,
            raft_replication_lag,
            raft_last_leader_contact,
            raft_leader_changes,
            connections_refused,
            accept_errors,
            connections_open,
            signer_up,
            signer_calls,
            signer_failovers,
            raft_connections_refused,
            raft_accept_errors,
            raft_connections_open,
            storage_memory,
            http_series: Arc::default(),
        })
    }

    /// Sets `seal_storage_memory_bytes` from the storage's figures.
    pub fn set_storage_memory(&self, usage: &seal_storage::MemoryUsage) {
        for (part, bytes) in [
            ("memtables", usage.memtables),
            ("table_readers", usage.table_readers),
            ("block_cache", usage.block_cache),
            ("current_files", usage.current_files),
        ] {
            self.storage_memory
                .with_label_values(&[part])
                .set(i64::try_from(bytes).unwrap_or(i64::MAX));
        }
    }

    /// The HTTP listener's counters.
    pub fn listener(&self) -> crate::listen::ListenerMetrics {
        crate::listen::ListenerMetrics {
            refused: self.connections_refused.clone(),
            accept_errors: self.accept_errors.clone(),
            open: self.connections_open.clone(),
        }
    }

    /// The registry, for callers that add their own collectors.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// Records one answered HTTP request.
    pub fn observe_http(
        &self,
        operation: &'static str,
        status: u16,
        elapsed: Duration,
        request_bytes: u64,
        response_bytes: u64,
    ) {
        let record = |series: &HttpSeries| {
            series.requests.inc();
            series.duration.observe(elapsed.as_secs_f64());
            series.request_size.observe(request_bytes as f64);
            series.response_size.observe(response_bytes as f64);
        };
        // A poisoned lock only means a panic elsewhere: the map itself is always whole.
        if let Some(series) = self
            .http_series
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(&(operation, status))
        {
            return record(series);
        }
        let one_label = |vec: &ShardedHistogramVec| vec.with_label_values(&[operation]);
        let (Ok(duration), Ok(request_size), Ok(response_size)) = (
            one_label(&self.http_duration),
            one_label(&self.http_request_size),
            one_label(&self.http_response_size),
        ) else {
            // Never: each HTTP histogram has the one label `operation` (Metrics::new).
            return;
        };
        let series = HttpSeries {
            requests: self.http_requests.with_label_values(&[operation, &status.to_string()]),
            duration,
            request_size,
            response_size,
        };
        record(&series);
        self.http_series
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert((operation, status), series);
    }

    /// Sets the per-peer replication lag from the leader's view: `last_log_index` and, per peer,
    /// the last log index it matched (`None`: nothing yet). `None` for `peers` (not the leader)
    /// removes every series.
    pub fn set_replication_lag(&self, last_log_index: Option<u64>, peers: Option<&[(u64, Option<u64>)]>) {
        self.raft_replication_lag.reset();
        let Some(peers) = peers else { return };
        for (peer, matched) in peers {
            let behind = match (last_log_index, matched) {
                (None, _) => 0,
                (Some(last), None) => last.saturating_add(1),
                (Some(last), Some(m)) => last.saturating_sub(*m),
            };
            self.raft_replication_lag
                .with_label_values(&[&peer.to_string()])
                .set(i64::try_from(behind).unwrap_or(i64::MAX));
        }
    }

    /// Sets the timestamp gauges from the soonest expiry of any stored timestamp: `remaining`
    /// seconds of it left, `age` seconds since it was signed; `None` (no timestamp stored)
    /// removes both series.
    pub fn set_timestamps(&self, soonest: Option<(f64, f64)>) {
        match soonest {
            Some((remaining, age)) => {
                self.timestamp_min_remaining
                    .with_label_values::<&str>(&[])
                    .set(remaining);
                self.timestamp_age.with_label_values::<&str>(&[]).set(age);
            }
            None => {
                self.timestamp_min_remaining.reset();
                self.timestamp_age.reset();
            }
        }
    }

    /// Sets the time since the last contact with the leader, or removes the series (`None`).
    pub fn set_last_leader_contact(&self, since: Option<Duration>) {
        match since {
            Some(d) => self
                .raft_last_leader_contact
                .with_label_values::<&str>(&[])
                .set(d.as_secs_f64()),
            None => self.raft_last_leader_contact.reset(),
        }
    }

    /// A timer for one signature by `role`, recorded when dropped or stopped.
    pub fn signing_timer(&self, role: &str) -> prometheus::HistogramTimer {
        self.signing_duration.with_label_values(&[role]).start_timer()
    }

    /// The signing histogram of one role.
    pub fn signing_histogram(&self, role: &str) -> Histogram {
        self.signing_duration.with_label_values(&[role])
    }

    /// Encodes every metric in the Prometheus text format.
    pub fn encode(&self) -> Result<Vec<u8>, prometheus::Error> {
        let mut out = Vec::new();
        TextEncoder::new().encode(&self.registry.gather(), &mut out)?;
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exports_every_metric() {
        let m = Metrics::new().unwrap();
        m.observe_http("GetRole", 200, Duration::from_millis(3), 0, 495);
        m.observe_http("GetRole", 404, Duration::from_millis(1), 0, 116);
        // The second request of a pair goes through the resolved series.
        m.clone().observe_http("GetRole", 200, Duration::from_millis(2), 7, 495);
        m.raft_term.set(4);
        m.raft_leader.set(2);
        m.raft_commit_index.set(10);
        m.raft_applied_index.set(9);
        m.signing_histogram("timestamp").observe(0.01);
        drop(m.signing_timer("snapshot"));
        m.set_timestamps(Some((-2.5, 12.5)));
        let text = String::from_utf8(m.encode().unwrap()).unwrap();
        for line in [
            "seal_http_requests_total{code=\"200\",operation=\"GetRole\"} 2",
            "seal_http_requests_total{code=\"404\",operation=\"GetRole\"} 1",
            "seal_http_request_duration_seconds_count{operation=\"GetRole\"} 3",
            "seal_http_request_size_bytes_sum{operation=\"GetRole\"} 7",
            "seal_http_response_size_bytes_sum{operation=\"GetRole\"} 1106",
            "seal_raft_term 4",
            "seal_raft_leader 2",
            "seal_raft_commit_index 10",
            "seal_raft_applied_index 9",
            "seal_signing_duration_seconds_count{role=\"timestamp\"} 1",
            "seal_signing_duration_seconds_count{role=\"snapshot\"} 1",
            "seal_timestamp_age_seconds 12.5",
            "seal_timestamp_min_remaining_seconds -2.5",
            &format!(
                "seal_build_info{{component=\"node\",version=\"{}\"}} 1",
                env!("CARGO_PKG_VERSION")
            ),
            "seal_raft_leader_changes_total 0",
        ] {
            assert!(text.lines().any(|l| l == line), "missing {line:?} in\n{text}");
        }
        assert!(!text.contains("NaN"), "{text}");
    }

    #[test]
    fn replication_lag_counts_entries_behind_and_leaves_no_series_off_the_leader() {
        let m = Metrics::new().unwrap();
        m.set_replication_lag(Some(10), Some(&[(2, Some(10)), (3, Some(4)), (4, None)]));
        let text = String::from_utf8(m.encode().unwrap()).unwrap();
        for line in [
            "seal_raft_replication_lag_entries{peer=\"2\"} 0",
            "seal_raft_replication_lag_entries{peer=\"3\"} 6",
            "seal_raft_replication_lag_entries{peer=\"4\"} 11",
        ] {
            assert!(text.lines().any(|l| l == line), "missing {line:?} in\n{text}");
        }
        m.set_replication_lag(Some(12), None);
        let text = String::from_utf8(m.encode().unwrap()).unwrap();
        assert!(!text.contains("seal_raft_replication_lag_entries{"), "{text}");
    }

    #[test]
    fn timestamp_gauges_are_absent_while_nothing_is_stored() {
        let m = Metrics::new().unwrap();
        let text = String::from_utf8(m.encode().unwrap()).unwrap();
        assert!(!text.contains("seal_timestamp_min_remaining_seconds "), "{text}");
        m.set_timestamps(Some((3600.0, 60.0)));
        m.set_timestamps(None);
        let text = String::from_utf8(m.encode().unwrap()).unwrap();
        assert!(!text.contains("seal_timestamp_min_remaining_seconds "), "{text}");
        assert!(!text.contains("seal_timestamp_age_seconds "), "{text}");
    }

    #[test]
    fn leader_contact_is_absent_until_known() {
        let m = Metrics::new().unwrap();
        let text = String::from_utf8(m.encode().unwrap()).unwrap();
        assert!(!text.contains("seal_raft_last_leader_contact_seconds "), "{text}");
        m.set_last_leader_contact(Some(Duration::from_millis(1500)));
        let text = String::from_utf8(m.encode().unwrap()).unwrap();
        assert!(
            text.lines().any(|l| l == "seal_raft_last_leader_contact_seconds 1.5"),
            "{text}"
        );
        m.set_last_leader_contact(None);
        let text = String::from_utf8(m.encode().unwrap()).unwrap();
        assert!(!text.contains("seal_raft_last_leader_contact_seconds "), "{text}");
    }
}
