//! The config file's shapes as serde reads them: every field optional, so
//! that the checks in `NodeConfig::from_json` name what is missing or wrong;
//! every struct refuses keys it does not know (see [`super::strict`]).

use serde::Deserialize;

use super::BootstrapMember;

/// A port given as a number or, as Notary writes it, a string.
#[derive(Deserialize)]
#[serde(untagged)]
pub(super) enum RawPort {
    Num(u64),
    Str(String),
}

#[derive(Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub(super) struct RawServer {
    pub(super) http_addr: Option<String>,
    pub(super) tls_cert_file: Option<String>,
    pub(super) tls_key_file: Option<String>,
    pub(super) client_ca_file: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub(super) struct RawTrust {
    #[serde(rename = "type")]
    pub(super) kind: Option<String>,
    pub(super) hostname: Option<String>,
    pub(super) port: Option<RawPort>,
    pub(super) tls_ca_file: Option<String>,
    pub(super) tls_client_cert: Option<String>,
    pub(super) tls_client_key: Option<String>,
    pub(super) key_algorithm: Option<String>,
    pub(super) signers: Vec<RawSignerAddr>,
    pub(super) attempt_timeout_ms: Option<u64>,
    pub(super) call_timeout_ms: Option<u64>,
    pub(super) key_creation_timeout_ms: Option<u64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSignerAddr {
    pub(super) hostname: String,
    pub(super) port: RawPort,
}

#[derive(Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub(super) struct RawStorage {
    pub(super) backend: Option<String>,
    pub(super) db_url: Option<String>,
    pub(super) data_dir: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub(super) struct RawLogging {
    pub(super) level: Option<String>,
    pub(super) format: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub(super) struct RawAuthOptions {
    pub(super) realm: Option<String>,
    pub(super) service: Option<String>,
    pub(super) issuer: Option<String>,
    pub(super) rootcertbundle: Option<String>,
    pub(super) anonymous_read: Option<bool>,
}

#[derive(Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub(super) struct RawAuth {
    #[serde(rename = "type")]
    pub(super) kind: Option<String>,
    pub(super) options: RawAuthOptions,
}

#[derive(Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub(super) struct RawRepositories {
    pub(super) gun_prefixes: Vec<String>,
}

#[derive(Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub(super) struct RawMaxAge {
    pub(super) current_metadata: Option<i64>,
    pub(super) consistent_metadata: Option<i64>,
}

#[derive(Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub(super) struct RawCaching {
    pub(super) max_age: RawMaxAge,
}

#[derive(Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub(super) struct RawRaft {
    pub(super) node_id: Option<u64>,
    pub(super) heartbeat_ms: Option<u64>,
    pub(super) election_timeout_min_ms: Option<u64>,
    pub(super) election_timeout_max_ms: Option<u64>,
    pub(super) max_staleness_ms: Option<u64>,
    pub(super) snapshot_logs_since_last: Option<u64>,
    pub(super) snapshot_log_percent: Option<u64>,
    pub(super) max_in_snapshot_log_to_keep: Option<u64>,
    pub(super) max_connections: Option<u64>,
    pub(super) source_ip: Option<String>,
    pub(super) addr: Option<String>,
    pub(super) tls_ca_file: Option<String>,
    pub(super) tls_cert_file: Option<String>,
    pub(super) tls_key_file: Option<String>,
    pub(super) bootstrap: Vec<BootstrapMember>,
    pub(super) allowed_peer_names: Vec<String>,
}

#[derive(Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub(super) struct RawLimits {
    pub(super) max_body_bytes: Option<u64>,
    pub(super) max_parts: Option<u64>,
    pub(super) max_file_bytes: Option<u64>,
    pub(super) max_forward_bytes_in_flight: Option<u64>,
    pub(super) max_keys: Option<u64>,
    pub(super) max_delegations: Option<u64>,
    pub(super) max_targets: Option<u64>,
    pub(super) max_version_jump: Option<u64>,
}

#[derive(Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub(super) struct RawConnections {
    pub(super) max_per_listener: Option<u64>,
    pub(super) handshake_timeout_ms: Option<u64>,
    pub(super) header_read_timeout_ms: Option<u64>,
    pub(super) idle_timeout_ms: Option<u64>,
    pub(super) drain_timeout_ms: Option<u64>,
}

#[derive(Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub(super) struct RawTimestamps {
    pub(super) refresh_margin_fraction: Option<f64>,
    pub(super) timestamp_lifetime_secs: Option<u64>,
    pub(super) snapshot_lifetime_secs: Option<u64>,
}

#[derive(Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub(super) struct RawSigner {
    pub(super) passphrase_env: Option<String>,
    pub(super) keys_dir: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub(super) struct RawMetrics {
    pub(super) addr: Option<String>,
    pub(super) main_listener: Option<bool>,
}

#[derive(Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub(super) struct RawConfig {
    pub(super) server: RawServer,
    pub(super) trust_service: RawTrust,
    pub(super) storage: RawStorage,
    pub(super) data_dir: Option<String>,
    pub(super) logging: RawLogging,
    pub(super) auth: RawAuth,
    pub(super) repositories: RawRepositories,
    pub(super) caching: RawCaching,
    pub(super) raft: RawRaft,
    pub(super) limits: RawLimits,
    pub(super) connections: RawConnections,
    pub(super) timestamps: RawTimestamps,
    pub(super) signer: RawSigner,
    pub(super) metrics: RawMetrics,
    pub(super) insecure: Option<bool>,
}
