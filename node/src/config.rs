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

mod env;
mod raw;

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
    /// A value is missing or not acceptable.
    #[error("config key {key}: {message}")]
    Invalid {
        /// The key path, for example `trust_service.type`.
        key: String,
        /// What is wrong.
        message: String,
    },
}

fn invalid(key: &str, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key: key.to_string(),
        message: message.into(),
    }
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

/// Key algorithms a signer can be asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyAlgorithm {
    /// Ed25519.
    Ed25519,
    /// ECDSA over P-256.
    Ecdsa,
    /// RSA (remote signers only).
    Rsa,
}

impl KeyAlgorithm {
    /// Notary's name of the algorithm.
    pub fn as_str(self) -> &'static str {
        match self {
            KeyAlgorithm::Ed25519 => "ed25519",
            KeyAlgorithm::Ecdsa => "ecdsa",
            KeyAlgorithm::Rsa => "rsa",
        }
    }

    /// The TUF key type of a public key of this algorithm.
    pub fn key_type(self) -> seal_tuf::KeyType {
        match self {
            KeyAlgorithm::Ed25519 => seal_tuf::KeyType::Ed25519,
            KeyAlgorithm::Ecdsa => seal_tuf::KeyType::Ecdsa,
            KeyAlgorithm::Rsa => seal_tuf::KeyType::Rsa,
        }
    }
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
    /// `storage.backend`. Seal always stores through Raft and RocksDB; Notary's
    /// names (`memory`, `mysql`, …) are accepted so its configs load.
    pub backend: String,
    /// `storage.db_url` (unused by Seal, kept for compatibility).
    pub db_url: Option<String>,
    /// `storage.data_dir` or top-level `data_dir` (default `seal-data`).
    pub data_dir: PathBuf,
}

/// `logging.level`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoggingConfig {
    /// One of `debug`, `info`, `warn`, `error` (Notary's `warning`, `fatal`
    /// and `panic` are accepted as `warn`, `error`, `error`).
    pub level: String,
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
    /// `raft.snapshot_log_percent` (default 100): and only once the commands applied since the
    /// last snapshot add up to this percentage of its size; 0: by entry count alone.
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
    /// Top-level `insecure`: lets `seal-node serve` run without TLS or
    /// without authentication (see [`NodeConfig::insecure_reasons`]).
    pub insecure: bool,
}

/// Treats an empty string as absent (Notary's configs and env use "" for unset).
fn non_empty(v: Option<String>) -> Option<String> {
    v.filter(|s| !s.trim().is_empty())
}

fn resolve(base: &Path, p: &str) -> PathBuf {
    let path = Path::new(p);
    if path.is_absolute() {
        path.to_path_buf()
    } else {
        base.join(path)
    }
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
        let raw: RawConfig = serde_json::from_value(root).map_err(|e| syntax(e.to_string()))?;
        Self::check(raw, base_dir)
    }

    fn check(raw: RawConfig, base: &Path) -> Result<NodeConfig, ConfigError> {
        let path = |p: Option<String>| non_empty(p).map(|p| resolve(base, &p));

        // server
        let addr_text = non_empty(raw.server.http_addr).ok_or_else(|| invalid("server.http_addr", "required"))?;
        let http_addr = ListenAddr::parse(addr_text.trim())
            .ok_or_else(|| invalid("server.http_addr", format!("{addr_text:?} is not host:port")))?;
        let tls = match (path(raw.server.tls_cert_file), path(raw.server.tls_key_file)) {
            (Some(cert_file), Some(key_file)) => Some(TlsFiles { cert_file, key_file }),
            (None, None) => None,
            (Some(_), None) => {
                return Err(invalid(
                    "server.tls_key_file",
                    "required when server.tls_cert_file is set",
                ))
            }
            (None, Some(_)) => {
                return Err(invalid(
                    "server.tls_cert_file",
                    "required when server.tls_key_file is set",
                ))
            }
        };
        let client_ca_file = path(raw.server.client_ca_file);
        if client_ca_file.is_some() && tls.is_none() {
            return Err(invalid(
                "server.client_ca_file",
                "client certificates need TLS (server.tls_cert_file and server.tls_key_file)",
            ));
        }

        // trust_service
        let t = raw.trust_service;
        let kind = match non_empty(t.kind).as_deref().map(str::trim) {
            Some("local") => TrustServiceType::Local,
            Some("remote") => TrustServiceType::Remote,
            None => return Err(invalid("trust_service.type", "required: local or remote")),
            Some(other) => {
                return Err(invalid(
                    "trust_service.type",
                    format!("unknown type {other:?}: expected local or remote"),
                ))
            }
        };
        let key_algorithm = match non_empty(t.key_algorithm).as_deref().map(str::trim) {
            None => match kind {
                TrustServiceType::Local => KeyAlgorithm::Ed25519,
                TrustServiceType::Remote => KeyAlgorithm::Ecdsa,
            },
            Some("ed25519") => KeyAlgorithm::Ed25519,
            Some("ecdsa") => KeyAlgorithm::Ecdsa,
            Some("rsa") => KeyAlgorithm::Rsa,
            Some(other) => {
                return Err(invalid(
                    "trust_service.key_algorithm",
                    format!("unknown algorithm {other:?}: expected ed25519, ecdsa or rsa"),
                ))
            }
        };
        if kind == TrustServiceType::Local && key_algorithm == KeyAlgorithm::Rsa {
            return Err(invalid(
                "trust_service.key_algorithm",
                "the local signer supports ed25519 and ecdsa",
            ));
        }
        let port = match t.port {
            None => None,
            Some(RawPort::Num(n)) => {
                Some(u16::try_from(n).map_err(|_| invalid("trust_service.port", format!("{n} is not a port")))?)
            }
            Some(RawPort::Str(s)) if s.trim().is_empty() => None,
            Some(RawPort::Str(s)) => Some(
                s.trim()
                    .parse::<u16>()
                    .map_err(|_| invalid("trust_service.port", format!("{s:?} is not a port")))?,
            ),
        };
        let hostname = non_empty(t.hostname);
        let mut signers: Vec<SignerAddr> = Vec::new();
        match (&hostname, port) {
            (Some(h), Some(p)) => signers.push(SignerAddr {
                hostname: h.trim().to_owned(),
                port: p,
            }),
            (Some(_), None) if kind == TrustServiceType::Remote => {
                return Err(invalid("trust_service.port", "required with trust_service.hostname"))
            }
            (None, Some(_)) if kind == TrustServiceType::Remote => {
                return Err(invalid("trust_service.hostname", "required with trust_service.port"))
            }
            _ => {}
        }
        for (i, s) in t.signers.into_iter().enumerate() {
            let key = format!("trust_service.signers[{i}]");
            let host = s.hostname.trim();
            if host.is_empty() {
                return Err(invalid(&key, "hostname must not be empty"));
            }
            let port = match s.port {
                RawPort::Num(n) => u16::try_from(n).ok(),
                RawPort::Str(p) => p.trim().parse::<u16>().ok(),
            }
            .filter(|p| *p != 0)
            .ok_or_else(|| invalid(&key, "port must be a port number (1-65535)"))?;
            let addr = SignerAddr {
                hostname: host.to_owned(),
                port,
            };
            if !signers.contains(&addr) {
                signers.push(addr);
            }
        }
        if kind == TrustServiceType::Remote && signers.is_empty() {
            return Err(invalid(
                "trust_service.hostname",
                "a remote signer needs trust_service.hostname and trust_service.port, or trust_service.signers",
            ));
        }
        let millis = |key: &str, v: Option<u64>, default: u64| -> Result<Duration, ConfigError> {
            match v.unwrap_or(default) {
                0 => Err(invalid(key, "must be at least 1 ms")),
                n if n > 600_000 => Err(invalid(key, "must be at most 600000 ms")),
                n => Ok(Duration::from_millis(n)),
            }
        };
        let attempt_timeout = millis("trust_service.attempt_timeout_ms", t.attempt_timeout_ms, 1000)?;
        let call_timeout = millis("trust_service.call_timeout_ms", t.call_timeout_ms, 5000)?;
        let key_creation_timeout = millis(
            "trust_service.key_creation_timeout_ms",
            t.key_creation_timeout_ms,
            30_000,
        )?;
        if attempt_timeout > call_timeout {
            return Err(invalid(
                "trust_service.attempt_timeout_ms",
                "must not exceed trust_service.call_timeout_ms",
            ));
        }
        let tls_client_cert = path(t.tls_client_cert);
        let tls_client_key = path(t.tls_client_key);
        match (&tls_client_cert, &tls_client_key) {
            (Some(_), None) => {
                return Err(invalid(
                    "trust_service.tls_client_key",
                    "required when trust_service.tls_client_cert is set",
                ))
            }
            (None, Some(_)) => {
                return Err(invalid(
                    "trust_service.tls_client_cert",
                    "required when trust_service.tls_client_key is set",
                ))
            }
            _ => {}
        }
        let trust_service = TrustServiceConfig {
            kind,
            hostname,
            port,
            tls_ca_file: path(t.tls_ca_file),
            tls_client_cert,
            tls_client_key,
            key_algorithm,
            signers,
            attempt_timeout,
            call_timeout,
            key_creation_timeout,
        };

        // storage
        let data_dir = path(raw.storage.data_dir)
            .or_else(|| path(raw.data_dir))
            .unwrap_or_else(|| base.join("seal-data"));
        let storage = StorageConfig {
            backend: non_empty(raw.storage.backend).unwrap_or_else(|| "rocksdb".into()),
            db_url: non_empty(raw.storage.db_url),
            data_dir: data_dir.clone(),
        };

        // logging
        let level = match non_empty(raw.logging.level)
            .map(|l| l.trim().to_ascii_lowercase())
            .as_deref()
        {
            None => "info".to_string(),
            Some("debug") => "debug".into(),
            Some("info") => "info".into(),
            Some("warn") | Some("warning") => "warn".into(),
            Some("error") | Some("fatal") | Some("panic") => "error".into(),
            Some(other) => return Err(invalid("logging.level", format!("unknown level {other:?}"))),
        };

        // auth
        let auth = match non_empty(raw.auth.kind).as_deref().map(str::trim) {
            None | Some("none") => None,
            Some("token") => {
                let o = raw.auth.options;
                let need = |v: Option<String>, key: &str| {
                    non_empty(v).ok_or_else(|| invalid(key, "required for auth.type token"))
                };
                Some(TokenAuthConfig {
                    realm: need(o.realm, "auth.options.realm")?,
                    service: need(o.service, "auth.options.service")?,
                    issuer: need(o.issuer, "auth.options.issuer")?,
                    rootcertbundle: resolve(base, &need(o.rootcertbundle, "auth.options.rootcertbundle")?),
                    anonymous_read: o.anonymous_read.unwrap_or(false),
                })
            }
            Some(other) => return Err(invalid("auth.type", format!("unknown type {other:?}: expected token"))),
        };

        // caching
        let age = |v: Option<i64>, default: u64, key: &str| match v {
            None => Ok(default),
            Some(n) => u64::try_from(n).map_err(|_| invalid(key, "must not be negative")),
        };
        let caching = CachingConfig {
            current_metadata: age(
                raw.caching.max_age.current_metadata,
                DEFAULT_CURRENT_MAX_AGE,
                "caching.max_age.current_metadata",
            )?,
            consistent_metadata: age(
                raw.caching.max_age.consistent_metadata,
                DEFAULT_CONSISTENT_MAX_AGE,
                "caching.max_age.consistent_metadata",
            )?,
        };

        // raft
        let raft_addr = non_empty(raw.raft.addr).map(|a| a.trim().to_owned());
        let raft_tls = match (
            path(raw.raft.tls_ca_file),
            path(raw.raft.tls_cert_file),
            path(raw.raft.tls_key_file),
        ) {
            (Some(ca_file), Some(cert_file), Some(key_file)) => Some(RaftTlsFiles {
                ca_file,
                cert_file,
                key_file,
            }),
            (None, None, None) => None,
            _ => {
                return Err(invalid(
                    "raft.tls_ca_file",
                    "raft.tls_ca_file, raft.tls_cert_file and raft.tls_key_file go together",
                ))
            }
        };
        if raft_addr.is_some() && raft_tls.is_none() {
            return Err(invalid(
                "raft.tls_ca_file",
                "required (with raft.tls_cert_file and raft.tls_key_file) when raft.addr is set",
            ));
        }
        if raft_addr.is_some() && trust_service.kind == TrustServiceType::Local {
            return Err(invalid(
                "trust_service.type",
                "cluster mode (raft.addr) needs trust_service.type = remote: local keys live on one node, \
                 so no other node could sign its collections' timestamps after it fails",
            ));
        }
        if raft_addr.is_none() && !raw.raft.bootstrap.is_empty() {
            return Err(invalid("raft.bootstrap", "needs raft.addr (cluster mode)"));
        }
        let mut seen = std::collections::BTreeSet::new();
        for m in &raw.raft.bootstrap {
            if !seen.insert(m.id) {
                return Err(invalid("raft.bootstrap", format!("node id {} appears twice", m.id)));
            }
            if m.raft_addr
                .rsplit_once(':')
                .is_none_or(|(h, p)| h.is_empty() || p.parse::<u16>().is_err())
            {
                return Err(invalid(
                    "raft.bootstrap",
                    format!("node {}: raft_addr {:?} is not host:port", m.id, m.raft_addr),
                ));
            }
        }
        let source_ip = match non_empty(raw.raft.source_ip) {
            None => None,
            Some(ip) => Some(
                ip.trim()
                    .parse::<std::net::IpAddr>()
                    .map_err(|_| invalid("raft.source_ip", format!("{ip:?} is not an IP address")))?,
            ),
        };
        let raft = RaftConfig {
            node_id: raw.raft.node_id.unwrap_or(1),
            source_ip,
            heartbeat_ms: raw.raft.heartbeat_ms.unwrap_or(100),
            election_timeout_min_ms: raw.raft.election_timeout_min_ms.unwrap_or(300),
            election_timeout_max_ms: raw.raft.election_timeout_max_ms.unwrap_or(600),
            max_staleness_ms: raw.raft.max_staleness_ms.unwrap_or(DEFAULT_MAX_STALENESS_MS),
            addr: raft_addr,
            tls: raft_tls,
            bootstrap: raw.raft.bootstrap,
            allowed_peer_names: raw.raft.allowed_peer_names,
            snapshot_logs_since_last: raw.raft.snapshot_logs_since_last.unwrap_or(10_000),
            snapshot_log_percent: raw.raft.snapshot_log_percent.unwrap_or(100),
            max_in_snapshot_log_to_keep: raw.raft.max_in_snapshot_log_to_keep.unwrap_or(1_000),
            max_connections: match raw.raft.max_connections {
                None => seal_raft::DEFAULT_MAX_CONNECTIONS,
                Some(0) => return Err(invalid("raft.max_connections", "must be positive")),
                Some(n) => usize::try_from(n)
                    .ok()
                    .filter(|n| *n <= tokio::sync::Semaphore::MAX_PERMITS)
                    .ok_or_else(|| invalid("raft.max_connections", "too large"))?,
            },
        };
        if raft.snapshot_logs_since_last == 0 {
            return Err(invalid("raft.snapshot_logs_since_last", "must be positive"));
        }
        if raft.heartbeat_ms == 0 {
            return Err(invalid("raft.heartbeat_ms", "must be positive"));
        }
        if raft.election_timeout_min_ms <= raft.heartbeat_ms {
            return Err(invalid("raft.election_timeout_min_ms", "must exceed raft.heartbeat_ms"));
        }
        if raft.max_staleness_ms <= raft.heartbeat_ms {
            return Err(invalid(
                "raft.max_staleness_ms",
                "must exceed raft.heartbeat_ms (a follower hears from the leader once per heartbeat)",
            ));
        }
        if raft.election_timeout_max_ms <= raft.election_timeout_min_ms {
            return Err(invalid(
                "raft.election_timeout_max_ms",
                "must exceed raft.election_timeout_min_ms",
            ));
        }

        // limits
        let d = UploadLimits::default();
        let positive = |v: Option<u64>, default: u64, key: &str| match v {
            None => Ok(default),
            Some(0) => Err(invalid(key, "must be positive")),
            Some(n) => Ok(n),
        };
        let max_parts = positive(raw.limits.max_parts, d.max_parts as u64, "limits.max_parts")?;
        let max_body_bytes = positive(raw.limits.max_body_bytes, d.max_body_bytes, "limits.max_body_bytes")?;
        let limits = UploadLimits {
            max_body_bytes,
            max_parts: usize::try_from(max_parts).map_err(|_| invalid("limits.max_parts", "too large"))?,
            max_file_bytes: positive(raw.limits.max_file_bytes, d.max_file_bytes, "limits.max_file_bytes")?,
            // Unset: the default, raised to one body of the largest size allowed.
            max_forward_bytes_in_flight: positive(
                raw.limits.max_forward_bytes_in_flight,
                d.max_forward_bytes_in_flight.max(max_body_bytes),
                "limits.max_forward_bytes_in_flight",
            )?,
        };
        if limits.max_forward_bytes_in_flight < limits.max_body_bytes {
            return Err(invalid(
                "limits.max_forward_bytes_in_flight",
                "must be at least limits.max_body_bytes (a body that large could never be forwarded)",
            ));
        }

        let du = UpdateLimits::default();
        let count = |v: Option<u64>, default: usize, key: &str| {
            positive(v, default as u64, key).and_then(|n| usize::try_from(n).map_err(|_| invalid(key, "too large")))
        };
        let update_limits = UpdateLimits {
            max_keys: count(raw.limits.max_keys, du.max_keys, "limits.max_keys")?,
            max_delegations: count(raw.limits.max_delegations, du.max_delegations, "limits.max_delegations")?,
            max_targets: count(raw.limits.max_targets, du.max_targets, "limits.max_targets")?,
            max_version_jump: positive(
                raw.limits.max_version_jump,
                du.max_version_jump,
                "limits.max_version_jump",
            )?,
        };

        // connections
        let dc = ConnectionLimits::default();
        let ms = |v: Option<u64>, default: Duration, key: &str| {
            positive(v, u64::try_from(default.as_millis()).unwrap_or(u64::MAX), key).map(Duration::from_millis)
        };
        let max_per_listener = positive(
            raw.connections.max_per_listener,
            dc.max_connections as u64,
            "connections.max_per_listener",
        )?;
        let connections = ConnectionLimits {
            max_connections: usize::try_from(max_per_listener)
                .ok()
                .filter(|n| *n <= tokio::sync::Semaphore::MAX_PERMITS)
                .ok_or_else(|| invalid("connections.max_per_listener", "too large"))?,
            handshake_timeout: ms(
                raw.connections.handshake_timeout_ms,
                dc.handshake_timeout,
                "connections.handshake_timeout_ms",
            )?,
            header_read_timeout: ms(
                raw.connections.header_read_timeout_ms,
                dc.header_read_timeout,
                "connections.header_read_timeout_ms",
            )?,
            idle_timeout: ms(
                raw.connections.idle_timeout_ms,
                dc.idle_timeout,
                "connections.idle_timeout_ms",
            )?,
        };

        // timestamps
        let timestamps = TimestampsConfig {
            refresh_margin_fraction: raw.timestamps.refresh_margin_fraction.unwrap_or(0.5),
            timestamp_lifetime_secs: positive(
                raw.timestamps.timestamp_lifetime_secs,
                14 * 24 * 3600,
                "timestamps.timestamp_lifetime_secs",
            )?,
            snapshot_lifetime_secs: positive(
                raw.timestamps.snapshot_lifetime_secs,
                3 * 365 * 24 * 3600,
                "timestamps.snapshot_lifetime_secs",
            )?,
        };
        let f = timestamps.refresh_margin_fraction;
        if !(f > 0.0 && f < 1.0) {
            return Err(invalid(
                "timestamps.refresh_margin_fraction",
                "must lie strictly between 0 and 1",
            ));
        }

        // signer
        let signer = SignerConfig {
            passphrase_env: non_empty(raw.signer.passphrase_env).unwrap_or_else(|| "SEAL_SIGNER_PASSPHRASE".into()),
            keys_dir: path(raw.signer.keys_dir).unwrap_or_else(|| data_dir.join("keys")),
        };

        Ok(NodeConfig {
            base_dir: base.to_path_buf(),
            server: ServerConfig {
                http_addr,
                tls,
                client_ca_file,
            },
            trust_service,
            storage,
            logging: LoggingConfig { level },
            auth,
            repositories: RepositoriesConfig {
                gun_prefixes: raw.repositories.gun_prefixes,
            },
            caching,
            raft,
            limits,
            update_limits,
            connections,
            timestamps,
            signer,
            insecure: raw.insecure.unwrap_or(false),
        })
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
