//! Checking a parsed config file: every section of the raw file ([`super::raw`])
//! turned into its typed, validated struct, defaults filled in, relative paths
//! resolved, every error naming its key path.

use super::raw::*;
use super::*;

fn invalid(key: &str, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key: key.to_string(),
        message: message.into(),
    }
}

/// Treats an empty string as absent (Notary's configs and env use "" for unset).
fn non_empty(v: Option<String>) -> Option<String> {
    v.filter(|s| !s.trim().is_empty())
}

/// `p` as given when absolute, else relative to `base` (the config file's directory).
pub(crate) fn resolve(base: &Path, p: &str) -> PathBuf {
    let path = Path::new(p);
    if path.is_absolute() {
        path.to_path_buf()
    } else {
        base.join(path)
    }
}

impl NodeConfig {
    /// Checks `raw` (relative paths resolved against `base`).
    pub(super) fn check(raw: RawConfig, base: &Path) -> Result<NodeConfig, ConfigError> {
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
        let backend =
            non_empty(raw.storage.backend).map_or_else(|| "rocksdb".into(), |b| b.trim().to_ascii_lowercase());
        if backend != "rocksdb" && backend != "memory" {
            return Err(invalid(
                "storage.backend",
                format!("unknown backend {backend:?}: Seal stores in rocksdb (the default)"),
            ));
        }
        let storage = StorageConfig {
            backend,
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
            Some(other) => {
                return Err(invalid(
                    "logging.level",
                    format!("unknown level {other:?}: expected debug, info, warn or error"),
                ))
            }
        };
        let format = match non_empty(raw.logging.format)
            .map(|f| f.trim().to_ascii_lowercase())
            .as_deref()
        {
            None | Some("text") => LogFormat::Text,
            Some("json") => LogFormat::Json,
            Some(other) => {
                return Err(invalid(
                    "logging.format",
                    format!("unknown format {other:?}: expected text or json"),
                ))
            }
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
            snapshot_log_percent: raw.raft.snapshot_log_percent.unwrap_or(0),
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
            drain_timeout: ms(
                raw.connections.drain_timeout_ms,
                dc.drain_timeout,
                "connections.drain_timeout_ms",
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

        // metrics
        let metrics = MetricsConfig {
            addr: match non_empty(raw.metrics.addr) {
                None => None,
                Some(a) => Some(a.trim().parse().map_err(|_| {
                    invalid(
                        "metrics.addr",
                        format!("{a:?} is not an IP address and port (127.0.0.1:9100)"),
                    )
                })?),
            },
            main_listener: raw.metrics.main_listener.unwrap_or(true),
        };
        if !metrics.main_listener && metrics.addr.is_none() {
            return Err(invalid(
                "metrics.main_listener",
                "false needs metrics.addr: the metrics would be served nowhere",
            ));
        }

        Ok(NodeConfig {
            base_dir: base.to_path_buf(),
            server: ServerConfig {
                http_addr,
                tls,
                client_ca_file,
            },
            trust_service,
            storage,
            logging: LoggingConfig { level, format },
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
            metrics,
            insecure: raw.insecure.unwrap_or(false),
            warnings: Vec::new(),
        })
    }
}
