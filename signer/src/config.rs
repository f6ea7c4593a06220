//! The signer's configuration file (JSON, Notary-signer style):
//!
//! ```json
//! {"server": {"grpc_addr": "0.0.0.0:7899", "tls_cert_file": "signer.crt", "tls_key_file": "signer.key",
//!             "client_ca_file": "nodes-ca.crt"},
//!  "storage": {"data_dir": "/var/lib/seal-signer"},
//!  "default_alias": "main", "aliases": ["previous"],
//!  "key_backend": {"type": "software"},
//!  "policy": {"max_timestamp_lifetime_secs": 1209600, "max_snapshot_lifetime_secs": 94608000, "clock_skew_secs": 300},
//!  "logging": {"level": "info"}}
//! ```
//!
//! `key_backend` may instead be `{"type": "pkcs11", "module": "/usr/lib/softhsm/libsofthsm2.so",
//! "token_label": "seal", "pin_file": "pin.txt"}` (or `"pin_env": "SEAL_SIGNER_PIN"`), or
//! `{"type": "threshold", "threshold": 2, "self_id": 1, "peers": [{"id": 2, "addr": "signer2:7899",
//! "name": "signer2"}, {"id": 3, "addr": "signer3:7899"}]}` (FROST shares; see `threshold`). Mutual TLS
//! is mandatory: the three TLS files must be given. Relative paths resolve
//! against the file's directory. Passphrases for software keys come from
//! `SEAL_SIGNER_<ALIAS>` (or Notary's `NOTARY_SIGNER_<ALIAS>`), never from
//! the file.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use crate::error::Error;
use serde::Deserialize;

/// The config as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignerConfig {
    /// Listening and TLS.
    pub server: ServerSection,
    /// Where the signer's database lives.
    pub storage: StorageSection,
    /// The alias new software keys are encrypted under.
    #[serde(default = "default_alias")]
    pub default_alias: String,
    /// Older aliases whose keys must stay readable.
    #[serde(default)]
    pub aliases: Vec<String>,
    /// Where new keys are made.
    #[serde(default)]
    pub key_backend: KeyBackendSection,
    /// The signing policy's limits.
    #[serde(default)]
    pub policy: PolicySection,
    /// Logging.
    #[serde(default)]
    pub logging: LoggingSection,
}

fn default_alias() -> String {
    "main".into()
}

/// `server`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerSection {
    /// gRPC listening address.
    pub grpc_addr: SocketAddr,
    /// Certificate chain.
    pub tls_cert_file: PathBuf,
    /// Private key.
    pub tls_key_file: PathBuf,
    /// CA whose certificates clients must present.
    pub client_ca_file: PathBuf,
    /// Names (certificate CN or DNS SAN; `prefix*` allowed) a client
    /// certificate must carry: the server nodes'. Empty: any certificate
    /// `client_ca_file` signed.
    #[serde(default)]
    pub allowed_client_names: Vec<String>,
    /// Names (as `allowed_client_names`) of the operators' certificates that
    /// may call `KeyManagement.DeleteKey`; they may connect as well. Server
    /// nodes never delete keys, so no node name belongs here. Empty (the
    /// default): nobody may delete a key over the API.
    #[serde(default)]
    pub admin_client_names: Vec<String>,
    /// Where to serve the Prometheus metrics (`GET /metrics`, plain HTTP);
    /// none when unset. Bind it to an address only the monitoring reaches.
    #[serde(default)]
    pub metrics_addr: Option<SocketAddr>,
    /// Connections open at once (TLS handshakes included); one more is
    /// closed on arrival and counted in
    /// `seal_signer_connections_refused_total`. Default 1024: the signer's
    /// clients are a cluster's nodes, each multiplexing over one connection.
    #[serde(default = "max_connections")]
    pub max_connections: usize,
}

/// Default of `server.max_connections`.
pub const DEFAULT_MAX_CONNECTIONS: usize = 1024;

fn max_connections() -> usize {
    DEFAULT_MAX_CONNECTIONS
}

/// `storage`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StorageSection {
    /// The RocksDB directory.
    pub data_dir: PathBuf,
}

/// `key_backend`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, tag = "type", rename_all = "lowercase")]
pub enum KeyBackendSection {
    /// Keys in software, JOSE-encrypted in the database.
    #[default]
    Software,
    /// Keys in an HSM.
    Pkcs11 {
        /// The PKCS#11 module.
        module: PathBuf,
        /// The token's label.
        token_label: String,
        /// A file holding the user PIN.
        #[serde(default)]
        pin_file: Option<PathBuf>,
        /// An environment variable holding the user PIN.
        #[serde(default)]
        pin_env: Option<String>,
    },
    /// Ed25519 keys as FROST shares over this signer and its peers; any
    /// `threshold` of them sign together. Shares are JOSE-encrypted under
    /// the default alias, as software keys are.
    Threshold {
        /// k: signers needed for a signature.
        threshold: u16,
        /// This signer's identifier (1..=65535, unique in the cluster).
        self_id: u16,
        /// The other signers.
        peers: Vec<PeerSection>,
        /// Deadline of one signing-round call to a peer, in milliseconds.
        #[serde(default = "peer_timeout_ms")]
        peer_timeout_ms: u64,
        /// Deadline of one DKG-round call to a peer, in milliseconds.
        #[serde(default = "dkg_timeout_ms")]
        dkg_timeout_ms: u64,
    },
}

/// One peer of a threshold signer.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PeerSection {
    /// Its identifier.
    pub id: u16,
    /// `host:port` of its gRPC server (`host` is the TLS name checked).
    pub addr: String,
    /// A name (certificate CN or DNS SAN) its client certificate must
    /// carry when it calls this signer's peer service.
    #[serde(default)]
    pub name: Option<String>,
}

fn peer_timeout_ms() -> u64 {
    2_000
}
fn dkg_timeout_ms() -> u64 {
    30_000
}

impl KeyBackendSection {
    /// The threshold backend's settings, if that is the backend.
    pub fn threshold_config(&self) -> Option<crate::threshold::ThresholdConfig> {
        let KeyBackendSection::Threshold {
            threshold,
            self_id,
            peers,
            peer_timeout_ms,
            dkg_timeout_ms,
        } = self
        else {
            return None;
        };
        Some(crate::threshold::ThresholdConfig {
            min_signers: *threshold,
            self_id: *self_id,
            peers: peers
                .iter()
                .map(|p| crate::threshold::Peer {
                    id: p.id,
                    addr: p.addr.clone(),
                    name: p.name.clone(),
                })
                .collect(),
            peer_timeout: std::time::Duration::from_millis(*peer_timeout_ms),
            dkg_timeout: std::time::Duration::from_millis(*dkg_timeout_ms),
        })
    }
}

/// `policy`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicySection {
    /// Longest timestamp lifetime signed.
    #[serde(default = "ts_life")]
    pub max_timestamp_lifetime_secs: u64,
    /// Longest snapshot lifetime signed.
    #[serde(default = "snap_life")]
    pub max_snapshot_lifetime_secs: u64,
    /// Clock skew tolerated.
    #[serde(default = "skew")]
    pub clock_skew_secs: u64,
    /// Enforce the policy (default). `false` makes the signer sign whatever
    /// it is sent, logging a warning at start-up and on each request the
    /// policy would refuse: only for tests and compromise drills.
    #[serde(default = "enforce")]
    pub enforce: bool,
    /// How far above a key's last signed version one signature may go.
    #[serde(default = "max_version_jump")]
    pub max_version_jump: u64,
    /// Sign timestamps and snapshots without the file they name (a real
    /// Notary server as client, which never sends it). Off by default.
    #[serde(default)]
    pub notary_compat: bool,
}

fn max_version_jump() -> u64 {
    crate::policy::DEFAULT_MAX_VERSION_JUMP
}

fn ts_life() -> u64 {
    14 * 86_400
}
fn snap_life() -> u64 {
    3 * 365 * 86_400
}
fn skew() -> u64 {
    300
}
fn enforce() -> bool {
    true
}

impl Default for PolicySection {
    fn default() -> Self {
        PolicySection {
            max_timestamp_lifetime_secs: ts_life(),
            max_snapshot_lifetime_secs: snap_life(),
            clock_skew_secs: skew(),
            enforce: enforce(),
            max_version_jump: max_version_jump(),
            notary_compat: false,
        }
    }
}

impl PolicySection {
    /// As the policy takes it.
    pub fn to_policy(&self) -> crate::policy::PolicyConfig {
        let secs = |s: u64| time::Duration::seconds(i64::try_from(s).unwrap_or(i64::MAX / 2));
        crate::policy::PolicyConfig {
            max_timestamp_lifetime: secs(self.max_timestamp_lifetime_secs),
            max_snapshot_lifetime: secs(self.max_snapshot_lifetime_secs),
            clock_skew: secs(self.clock_skew_secs),
            max_version_jump: self.max_version_jump,
            notary_compat: self.notary_compat,
            enforce: self.enforce,
        }
    }
}

/// `logging`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoggingSection {
    /// `error`, `warn`, `info`, `debug`.
    #[serde(default = "info")]
    pub level: String,
}

fn info() -> String {
    "info".into()
}

impl Default for LoggingSection {
    fn default() -> Self {
        LoggingSection { level: info() }
    }
}

fn resolve(p: &mut PathBuf, base: &Path) {
    if p.is_relative() {
        *p = base.join(&*p);
    }
}

impl SignerConfig {
    /// Reads and checks `path`.
    pub fn load(path: &Path) -> Result<SignerConfig, Error> {
        let bytes = std::fs::read(path).map_err(Error::io(path.display().to_string()))?;
        let mut c: SignerConfig =
            serde_json::from_slice(&bytes).map_err(|e| Error::Config(format!("{}: {e}", path.display())))?;
        let base = path.parent().unwrap_or(Path::new("."));
        resolve(&mut c.server.tls_cert_file, base);
        resolve(&mut c.server.tls_key_file, base);
        resolve(&mut c.server.client_ca_file, base);
        resolve(&mut c.storage.data_dir, base);
        if let KeyBackendSection::Pkcs11 { module, pin_file, .. } = &mut c.key_backend {
            resolve(module, base);
            if let Some(p) = pin_file {
                resolve(p, base);
            }
        }
        if let Some(t) = c.key_backend.threshold_config() {
            t.validate()?;
        }
        if c.server.max_connections == 0 || c.server.max_connections > tokio::sync::Semaphore::MAX_PERMITS {
            return Err(Error::Config(format!(
                "{}: server.max_connections must be between 1 and {}",
                path.display(),
                tokio::sync::Semaphore::MAX_PERMITS
            )));
        }
        if c.default_alias.is_empty() || !c.default_alias.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
            return Err(Error::Config(format!(
                "default_alias {:?} must be letters, digits or _",
                c.default_alias
            )));
        }
        Ok(c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_both_backends_and_resolves_paths() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("signer.json");
        std::fs::write(
            &p,
            br#"{"server":{"grpc_addr":"127.0.0.1:7899","tls_cert_file":"s.crt","tls_key_file":"s.key","client_ca_file":"ca.crt"},
                "storage":{"data_dir":"data"}}"#,
        )
        .unwrap();
        let c = SignerConfig::load(&p).unwrap();
        assert_eq!(c.server.tls_cert_file, d.path().join("s.crt"));
        assert!(matches!(c.key_backend, KeyBackendSection::Software));
        assert_eq!(c.default_alias, "main");
        assert_eq!(c.server.max_connections, DEFAULT_MAX_CONNECTIONS);
        std::fs::write(
            &p,
            br#"{"server":{"grpc_addr":"127.0.0.1:7899","tls_cert_file":"s.crt","tls_key_file":"s.key","client_ca_file":"ca.crt"},
                "storage":{"data_dir":"data"},"key_backend":{"type":"pkcs11","module":"/m.so","token_label":"t","pin_env":"PIN"}}"#,
        )
        .unwrap();
        let c = SignerConfig::load(&p).unwrap();
        assert!(matches!(c.key_backend, KeyBackendSection::Pkcs11 { .. }));
        std::fs::write(
            &p,
            br#"{"server":{"grpc_addr":"127.0.0.1:7899","tls_cert_file":"s.crt","tls_key_file":"s.key","client_ca_file":"ca.crt"},
                "storage":{"data_dir":"data"},"key_backend":{"type":"threshold","threshold":2,"self_id":1,
                "peers":[{"id":2,"addr":"localhost:1","name":"s2"},{"id":3,"addr":"localhost:2"}]}}"#,
        )
        .unwrap();
        let t = SignerConfig::load(&p).unwrap().key_backend.threshold_config().unwrap();
        assert_eq!((t.min_signers, t.self_id, t.max_signers()), (2, 1, 3));
        assert_eq!(t.peer_timeout, std::time::Duration::from_secs(2));
        // k above n, and duplicate ids, are refused.
        std::fs::write(
            &p,
            br#"{"server":{"grpc_addr":"127.0.0.1:7899","tls_cert_file":"s.crt","tls_key_file":"s.key","client_ca_file":"ca.crt"},
                "storage":{"data_dir":"data"},"key_backend":{"type":"threshold","threshold":3,"self_id":1,
                "peers":[{"id":2,"addr":"localhost:1"}]}}"#,
        )
        .unwrap();
        assert!(SignerConfig::load(&p).unwrap_err().to_string().contains("threshold 3"));
        std::fs::write(
            &p,
            br#"{"server":{"grpc_addr":"127.0.0.1:7899","tls_cert_file":"s.crt","tls_key_file":"s.key","client_ca_file":"ca.crt"},
                "storage":{"data_dir":"data"},"key_backend":{"type":"threshold","threshold":2,"self_id":1,
                "peers":[{"id":1,"addr":"localhost:1"}]}}"#,
        )
        .unwrap();
        assert!(SignerConfig::load(&p).unwrap_err().to_string().contains("distinct"));
        // The connection cap must let one connection in.
        std::fs::write(
            &p,
            br#"{"server":{"grpc_addr":"127.0.0.1:7899","tls_cert_file":"s.crt","tls_key_file":"s.key","client_ca_file":"ca.crt",
                "max_connections":0},"storage":{"data_dir":"data"}}"#,
        )
        .unwrap();
        assert!(SignerConfig::load(&p)
            .unwrap_err()
            .to_string()
            .contains("server.max_connections"));
        // Mutual TLS is not optional.
        std::fs::write(
            &p,
            br#"{"server":{"grpc_addr":"127.0.0.1:7899","tls_cert_file":"s.crt","tls_key_file":"s.key"},"storage":{"data_dir":"d"}}"#,
        )
        .unwrap();
        assert!(SignerConfig::load(&p)
            .unwrap_err()
            .to_string()
            .contains("client_ca_file"));
    }
}
