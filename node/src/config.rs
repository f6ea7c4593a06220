//! The node's configuration: a JSON file with notary-server's keys plus
//! Seal's own, then environment overrides, parsed once and checked.
//!
//! Environment overrides name a scalar key path upper-cased with `.` → `_`:
//! `SEAL_NODE_SERVER_HTTP_ADDR` or Notary's `NOTARY_SERVER_SERVER_HTTP_ADDR`
//! override `server.http_addr`; when both are set, `SEAL_NODE_` wins. The
//! environment is an input ([`Env`]), never read here. Relative paths resolve
//! against the config file's directory (also `auth.options.rootcertbundle`,
//! which notary-server opens relative to its working directory). Lists
//! (`repositories.gun_prefixes`) have no environment override.

pub use crate::signer::KeyAlgorithm;
use std::collections::BTreeMap;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use serde_json::Value;

use crate::cache::{DEFAULT_CONSISTENT_MAX_AGE, DEFAULT_CURRENT_MAX_AGE};
use crate::listen::ConnectionLimits;
use seal_tuf::update::UpdateLimits;

mod check;
pub(crate) use check::resolve;
mod env;
mod raw;
mod strict;

use env::apply_env;
pub use env::process_env;
use raw::*;

/// The environment, as a map from variable name to value.
pub type Env = BTreeMap<String, String>;

/// Prefix of Seal's environment overrides.
pub const SEAL_ENV_PREFIX: &str = "SEAL_NODE_";
/// Prefix of Notary's environment overrides, also honoured.
pub const NOTARY_ENV_PREFIX: &str = "NOTARY_SERVER_";
/// Names the test-only faults file (see `docs/architecture.md`): a node built with the
/// `fault-injection` feature follows it; any other node refuses to start when it is set.
pub const FAULTS_FILE_ENV: &str = "SEAL_FAULTS_FILE";

/// A configuration error, naming the key path (or file, or variable) at fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {path}: {message}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The IO error.
        message: String,
    },
    /// The file is not valid JSON, or a value has the wrong type.
    #[error("config file {path}: {message}")]
    Syntax {
        /// The file.
        path: PathBuf,
        /// The parser's message (with the key when known).
        message: String,
    },
    /// An environment override could not be used.
    #[error("environment variable {var}: {message}")]
    Env {
        /// The variable.
        var: String,
        /// What is wrong with it.
        message: String,
    },
    /// A key the config does not know (a typo, or a key of another program).
    #[error("unknown key {key:?}{}", suggestion.as_ref().map(|s| format!(" (did you mean {s:?}?)")).unwrap_or_default())]
    UnknownKey {
        /// The key's full path, for example `server.tls_cert_flie`.
        key: String,
        /// The closest known key, when one is close.
        suggestion: Option<String>,
    },
    /// A value is missing or not acceptable.
    #[error("config key {key}: {message}")]
    Invalid {
        /// The key path, for example `trust_service.type`.
        key: String,
        /// What is wrong.
        message: String,
    },
}

/// A listen address: host (empty means every interface) and port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenAddr {
    /// The host or IP literal; empty for all interfaces (Go's `:4443`).
    pub host: String,
    /// The TCP port.
    pub port: u16,
}

impl ListenAddr {
    /// Parses `host:port`, `[v6]:port` or `:port`.
    pub fn parse(s: &str) -> Option<ListenAddr> {
        let (host, port) = s.rsplit_once(':')?;
        let port: u16 = port.parse().ok()?;
        let host = if let Some(inner) = host.strip_prefix('[') {
            let inner = inner.strip_suffix(']')?;
            inner.parse::<std::net::Ipv6Addr>().ok()?;
            inner.to_string()
        } else {
            if host.contains(':') || host.contains(char::is_whitespace) {
                return None;
            }
            host.to_string()
        };
        Some(ListenAddr { host, port })
    }

    /// The socket address to bind when the host is an IP literal or empty
    /// (`None` for a host name, which the caller resolves).
    pub fn socket_addr(&self) -> Option<SocketAddr> {
        if self.host.is_empty() {
            return Some(SocketAddr::from(([0, 0, 0, 0], self.port)));
        }
        self.host
            .parse::<IpAddr>()
            .ok()
            .map(|ip| SocketAddr::new(ip, self.port))
    }
}

impl fmt::Display for ListenAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

/// TLS files of the HTTP server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// Certificate chain (PEM), `server.tls_cert_file`.
    pub cert_file: PathBuf,
    /// Private key (PEM), `server.tls_key_file`.
    pub key_file: PathBuf,
}

/// `server.*`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerConfig {
    /// `server.http_addr`.
    pub http_addr: ListenAddr,
    /// `server.tls_cert_file` and `server.tls_key_file`; `None` is plain HTTP.
    pub tls: Option<TlsFiles>,
    /// `server.client_ca_file`: requires client certificates signed by it.
    pub client_ca_file: Option<PathBuf>,
}

/// Which signing service the node uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TrustServiceType {
    /// The in-process signer.
    Local,
    /// A remote signer over gRPC.
    Remote,
}

/// `trust_service.*`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrustServiceConfig {
    /// `trust_service.type`.
    pub kind: TrustServiceType,
    /// `trust_service.hostname` (remote).
    pub hostname: Option<String>,
    /// `trust_service.port` (remote; Notary writes it as a string).
    pub port: Option<u16>,
    /// `trust_service.tls_ca_file`.
    pub tls_ca_file: Option<PathBuf>,
    /// `trust_service.tls_client_cert`.
    pub tls_client_cert: Option<PathBuf>,
    /// `trust_service.tls_client_key`.
    pub tls_client_key: Option<PathBuf>,
    /// `trust_service.key_algorithm` (default: ed25519 for local, ecdsa for remote).
    pub key_algorithm: KeyAlgorithm,
    /// Every signer a remote trust service may use, in order of preference:
    /// Notary's `hostname`/`port` first when set, then Seal's
    /// `trust_service.signers` (duplicates dropped). The signers of one list
    /// must hold the same keys (a threshold cluster, or signers sharing an
    /// HSM): any of them may be asked for any key.
    pub signers: Vec<SignerAddr>,
    /// `trust_service.attempt_timeout_ms` (default 1000): how long one
    /// signer gets to answer a `Sign`, `GetKeyInfo` or health probe before
    /// the node counts it as down and asks the next one.
    pub attempt_timeout: Duration,
    /// `trust_service.call_timeout_ms` (default 5000): the deadline of a
    /// whole call over every signer tried.
    pub call_timeout: Duration,
    /// `trust_service.key_creation_timeout_ms` (default 30000): the deadline
    /// of a key creation, which on threshold signers is a distributed key
    /// generation with every signer (each encrypting its share).
    pub key_creation_timeout: Duration,
}

/// One entry of `trust_service.signers`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignerAddr {
    /// Host name (also the TLS name checked) or address.
    pub hostname: String,
    /// gRPC port.
    pub port: u16,
}

impl std::fmt::Display for SignerAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.hostname, self.port)
    }
}

/// `storage.*` and the data directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StorageConfig {
    /// `storage.backend`: `rocksdb` (the default). Notary's `memory` is accepted
    /// with a warning; its database backends are refused ([`strict`]).
    pub backend: String,
    /// `storage.db_url`: always `None` (only Notary's database backends read it;
    /// an empty one is accepted, any other refused).
    pub db_url: Option<String>,
    /// `storage.data_dir` or top-level `data_dir` (default `seal-data`).
    pub data_dir: PathBuf,
}

/// How log lines are written (`logging.format`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogFormat {
    /// Human-readable lines (colours only on a terminal); the default.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// `logging.*`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoggingConfig {
    /// One of `debug`, `info`, `warn`, `error` (Notary's `warning`, `fatal`
    /// and `panic` are accepted as `warn`, `error`, `error`). SIGHUP re-reads it.
    pub level: String,
    /// `logging.format`: `text` (default) or `json`.
    pub format: LogFormat,
}

/// `auth.options.*` for `auth.type = token`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenAuthConfig {
    /// `auth.options.realm`: the token service URL.
    pub realm: String,
    /// `auth.options.service`: the expected audience.
    pub service: String,
    /// `auth.options.issuer`: the expected issuer.
    pub issuer: String,
    /// `auth.options.rootcertbundle`: CA certificates that sign tokens.
    pub rootcertbundle: PathBuf,
    /// `auth.options.anonymous_read` (Seal's; default false, as Notary):
    /// routes that only need `pull` are served without a token.
    pub anonymous_read: bool,
}

/// `repositories.*`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RepositoriesConfig {
    /// `repositories.gun_prefixes`: when non-empty, the only GUN prefixes served.
    pub gun_prefixes: Vec<String>,
}

/// `caching.max_age.*`, in seconds (0 disables caching).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CachingConfig {
    /// `caching.max_age.current_metadata` (default 300).
    pub current_metadata: u64,
    /// `caching.max_age.consistent_metadata` (default 2592000).
    pub consistent_metadata: u64,
}

/// One initial voter of `raft.bootstrap`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BootstrapMember {
    /// Its `raft.node_id`.
    pub id: u64,
    /// Its `raft.addr`.
    pub raft_addr: String,
}

/// `raft.tls_*`: the cluster's mutual TLS (all three set together).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RaftTlsFiles {
    /// `raft.tls_ca_file`: the cluster CA certificate.
    pub ca_file: PathBuf,
    /// `raft.tls_cert_file`: this node's certificate, signed by the CA.
    pub cert_file: PathBuf,
    /// `raft.tls_key_file`: this node's private key.
    pub key_file: PathBuf,
}

/// Default of `raft.max_staleness_ms`.
pub const DEFAULT_MAX_STALENESS_MS: u64 = 5000;

/// `raft.*`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RaftConfig {
    /// `raft.node_id` (default 1).
    pub node_id: u64,
    /// `raft.heartbeat_ms` (default 100).
    pub heartbeat_ms: u64,
    /// `raft.election_timeout_min_ms` (default 300).
    pub election_timeout_min_ms: u64,
    /// `raft.election_timeout_max_ms` (default 600). A follower that last heard from the
    /// leader this long ago plus a random timeout between the two bounds calls an election, and
    /// votes for another only that long after its last contact: a leader's failure costs about
    /// `max + random(min, max)`.
    pub election_timeout_max_ms: u64,
    /// `raft.max_staleness_ms` (default 5000): a cluster node serves reads from its local state
    /// only while it was in sync with the leader at most this long ago; otherwise 503.
    pub max_staleness_ms: u64,
    /// `raft.addr`: the Raft gRPC address (listened on and given to peers). Set: the node runs in
    /// cluster mode; unset: a single self-initialized voter.
    pub addr: Option<String>,
    /// `raft.tls_*`: required in cluster mode.
    pub tls: Option<RaftTlsFiles>,
    /// `raft.bootstrap`: the initial voters of a new cluster (empty: join through `cluster` admin
    /// commands). The member with the lowest id initializes the cluster if it is uninitialized.
    pub bootstrap: Vec<BootstrapMember>,
    /// `raft.allowed_peer_names`: names (certificate CN or DNS SAN, `prefix*` allowed) a peer's
    /// certificate must carry for the Raft, admin and forwarding services to serve it; empty:
    /// any certificate the cluster CA signed.
    pub allowed_peer_names: Vec<String>,
    /// `raft.source_ip`: local address of this node's connections to its peers (default: the
    /// operating system's choice).
    pub source_ip: Option<std::net::IpAddr>,
    /// `raft.snapshot_logs_since_last` (default 10000): build a snapshot of the state machine after
    /// this many log entries since the last one.
    pub snapshot_logs_since_last: u64,
    /// `raft.snapshot_log_percent` (default 0: by entry count alone): and only once the commands
    /// applied since the last snapshot add up to this percentage of its size.
    pub snapshot_log_percent: u64,
    /// `raft.max_in_snapshot_log_to_keep` (default 1000): log entries kept after a snapshot, so a
    /// follower that lags by fewer catches up by log; one further behind gets the snapshot.
    pub max_in_snapshot_log_to_keep: u64,
    /// `raft.max_connections` (default 1024): connections the Raft gRPC port (Raft, cluster
    /// admin, forwarding) keeps open at once; one more is closed on arrival and counted in
    /// `seal_raft_connections_refused_total`.
    pub max_connections: usize,
}

/// Upload limits (`limits.*` in the config).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UploadLimits {
    /// Largest request body accepted, in bytes.
    pub max_body_bytes: u64,
    /// Most parts accepted in one upload.
    pub max_parts: usize,
    /// Largest single part accepted, in bytes.
    pub max_file_bytes: u64,
    /// Most bytes of request bodies a node that does not lead holds at once to forward them to
    /// the Raft leader; a write that would exceed it is answered 503.
    pub max_forward_bytes_in_flight: u64,
}

/// The default of `limits.max_forward_bytes_in_flight` (when `limits.max_body_bytes` is no
/// larger): two bodies of the default maximum size.
pub const DEFAULT_MAX_FORWARD_BYTES_IN_FLIGHT: u64 = 64 * 1024 * 1024;

impl Default for UploadLimits {
    fn default() -> Self {
        UploadLimits {
            max_body_bytes: 32 * 1024 * 1024,
            max_parts: 64,
            max_file_bytes: 8 * 1024 * 1024,
            max_forward_bytes_in_flight: DEFAULT_MAX_FORWARD_BYTES_IN_FLIGHT,
        }
    }
}

/// `timestamps.*`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TimestampsConfig {
    /// Refresh a timestamp when less than this fraction of its lifetime is
    /// left (default 0.5).
    pub refresh_margin_fraction: f64,
    /// Lifetime of generated timestamps (default 14 days).
    pub timestamp_lifetime_secs: u64,
    /// Lifetime of generated snapshots (default 3 years).
    pub snapshot_lifetime_secs: u64,
}

/// `signer.*`: the in-process signer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignerConfig {
    /// Name of the environment variable holding the key passphrase (default
    /// `SEAL_SIGNER_PASSPHRASE`); the passphrase itself never sits in a file.
    pub passphrase_env: String,
    /// `signer.keys_dir` (default `<data_dir>/keys`).
    pub keys_dir: PathBuf,
}

/// `metrics.*`: where `GET /metrics` is served. By default on the main listener only; with
/// `addr`, also on a listener of its own (plain HTTP, `/metrics` only), and with
/// `main_listener: false` (which needs `addr`) there alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MetricsConfig {
    /// `metrics.addr`: an IP and port to serve `/metrics` on, plain HTTP.
    pub addr: Option<std::net::SocketAddr>,
    /// `metrics.main_listener` (default true): whether the main listener serves `/metrics` too.
    pub main_listener: bool,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        MetricsConfig {
            addr: None,
            main_listener: true,
        }
    }
}

/// The whole, checked node configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeConfig {
    /// The directory relative paths were resolved against.
    pub base_dir: PathBuf,
    /// `server.*`.
    pub server: ServerConfig,
    /// `trust_service.*`.
    pub trust_service: TrustServiceConfig,
    /// `storage.*`.
    pub storage: StorageConfig,
    /// `logging.*`.
    pub logging: LoggingConfig,
    /// `auth.*`: `None` when `auth.type` is absent or empty.
    pub auth: Option<TokenAuthConfig>,
    /// `repositories.*`.
    pub repositories: RepositoriesConfig,
    /// `caching.max_age.*`.
    pub caching: CachingConfig,
    /// `raft.*`.
    pub raft: RaftConfig,
    /// `limits.*`.
    pub limits: UploadLimits,
    /// `limits.max_keys`, `max_delegations`, `max_targets`, `max_version_jump`:
    /// what one upload may hold.
    pub update_limits: UpdateLimits,
    /// `connections.*`: the HTTP listener's connection cap and timeouts.
    pub connections: ConnectionLimits,
    /// `timestamps.*`.
    pub timestamps: TimestampsConfig,
    /// `signer.*`.
    pub signer: SignerConfig,
    /// `metrics.*`.
    pub metrics: MetricsConfig,
    /// Top-level `insecure`: lets `seal-node serve` run without TLS or
    /// without authentication (see [`NodeConfig::insecure_reasons`]).
    pub insecure: bool,
    /// Notary keys accepted but ignored, one sentence each, for the log.
    pub warnings: Vec<String>,
}

impl NodeConfig {
    /// Reads the file at `path`, applies the overrides in `env`, and checks it.
    pub fn load(path: &Path, env: &Env) -> Result<NodeConfig, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError::Read {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        let base = path
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("."));
        let base = if base.as_os_str().is_empty() {
            PathBuf::from(".")
        } else {
            base
        };
        Self::from_json(&text, &base, env).map_err(|e| match e {
            ConfigError::Syntax { message, .. } => ConfigError::Syntax {
                path: path.to_path_buf(),
                message,
            },
            other => other,
        })
    }

    /// Parses JSON text (relative paths resolved against `base_dir`), applies
    /// the overrides in `env`, and checks it.
    pub fn from_json(text: &str, base_dir: &Path, env: &Env) -> Result<NodeConfig, ConfigError> {
        let syntax = |message: String| ConfigError::Syntax {
            path: PathBuf::from("<config>"),
            message,
        };
        let mut root: Value = serde_json::from_str(text).map_err(|e| syntax(e.to_string()))?;
        if !root.is_object() {
            return Err(syntax("the top level is not a JSON object".into()));
        }
        apply_env(&mut root, env)?;
        let mut warnings = strict::screen_notary_keys(&mut root)?;
        let raw: RawConfig = strict::deserialize(root)?;
        let mut config = Self::check(raw, base_dir)?;
        warnings.append(&mut config.warnings);
        config.warnings = warnings;
        Ok(config)
    }

    /// One line saying what this node is: `mode standalone` or `mode cluster node N`,
    /// `TLS on/off`, `signer local/remote` (what `seal-node check-config` prints).
    pub fn summary(&self) -> String {
        let mode = match &self.raft.addr {
            Some(_) => format!("mode cluster node {}", self.raft.node_id),
            None => "mode standalone".to_owned(),
        };
        let tls = if self.server.tls.is_some() { "on" } else { "off" };
        let signer = match self.trust_service.kind {
            TrustServiceType::Local => "local",
            TrustServiceType::Remote => "remote",
        };
        format!("{mode}, TLS {tls}, signer {signer}")
    }

    /// Why this node would serve anyone everything: plain HTTP (no
    /// `server.tls_cert_file`), and no `auth`. `seal-node serve` refuses to
    /// start with any of them unless `insecure` is `true`.
    pub fn insecure_reasons(&self) -> Vec<&'static str> {
        let mut reasons = Vec::new();
        if self.server.tls.is_none() {
            reasons.push("plain HTTP (no server.tls_cert_file)");
        }
        if self.auth.is_none() {
            reasons.push("no authentication (no auth section)");
        }
        reasons
    }
}

#[cfg(test)]
mod tests;
