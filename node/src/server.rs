//! Start-up of a node: open the Raft store, the signer and the backend,
//! start the timestamp refresher, serve HTTP (or HTTPS) until a signal.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration as StdDuration;

use tokio::net::TcpListener;
use zeroize::Zeroizing;

use crate::auth::TokenAuth;
use crate::backend::{run_refresher, RaftBackend, ServerLifetimes};
use crate::clock::{Clock, SystemClock};
use crate::cluster::{forward_layer, Forwarder, ReadGate, RouterHandler};
use crate::config::{Env, NodeConfig, RaftTlsFiles, TrustServiceType, FAULTS_FILE_ENV};
use crate::http::{router, AppState, AuthHook};
use crate::metrics::Metrics;
use crate::remote_signer::{run_health_probe, RemoteSigner};
use crate::signer::{CryptoService, InProcessSigner};

/// Why a node could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StartError {
    /// The configuration is unusable.
    #[error("config: {0}")]
    Config(String),
    /// The data directory or key store could not be opened.
    #[error("{0}")]
    Storage(String),
    /// `SEAL_FAULTS_FILE` asks for fault injection, which this build does not have.
    #[error("SEAL_FAULTS_FILE is set but this seal-node was built without the fault-injection feature")]
    FaultInjectionUnavailable,
    /// The listening socket could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: String,
        /// Why.
        source: std::io::Error,
    },
}

/// The config `seal-node dev` runs with: one node on 127.0.0.1:4443, plain
/// HTTP, in-process ed25519 signer, data in `data_dir`.
pub fn dev_config(addr: &str, data_dir: &Path, env: &Env) -> Result<NodeConfig, StartError> {
    let json = serde_json::json!({
        "server": {"http_addr": addr},
        "trust_service": {"type": "local", "key_algorithm": "ed25519"},
        "storage": {"backend": "rocksdb", "data_dir": data_dir.to_string_lossy()},
        "logging": {"level": "info"},
    });
    let cwd = std::env::current_dir().map_err(|e| StartError::Config(e.to_string()))?;
    NodeConfig::from_json(&json.to_string(), &cwd, env).map_err(|e| StartError::Config(e.to_string()))
}

/// The signer passphrase: from the environment variable the config names;
/// in dev mode, when it is unset, one generated and kept in the data
/// directory (plain text: a development convenience, said loudly).
pub(crate) fn signer_passphrase(config: &NodeConfig, env: &Env, dev: bool) -> Result<Zeroizing<String>, StartError> {
    if let Some(p) = env.get(&config.signer.passphrase_env).filter(|p| !p.is_empty()) {
        return Ok(Zeroizing::new(p.clone()));
    }
    if !dev {
        return Err(StartError::Config(format!(
            "the signer passphrase is read from ${}, which is not set",
            config.signer.passphrase_env
        )));
    }
    let path = config.storage.data_dir.join("dev-signer-passphrase");
    if let Ok(p) = std::fs::read_to_string(&path) {
        return Ok(Zeroizing::new(p.trim().to_owned()));
    }
    let mut bytes = [0u8; 24];
    rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut bytes);
    let p = hex::encode(bytes);
    write_private(&path, p.as_bytes()).map_err(|e| StartError::Storage(format!("{}: {e}", path.display())))?;
    tracing::warn!(
        path = %path.display(),
        "dev mode: generated the signer passphrase and stored it in plain text; never use dev mode in production"
    );
    Ok(Zeroizing::new(p))
}

/// The in-process signer of a node with `trust_service.type = "local"`:
/// its key store under `signer.keys_dir` (relative to the data directory),
/// the passphrase from `signer.passphrase_env` (in dev mode, generated).
pub(crate) fn open_in_process_signer(config: &NodeConfig, env: &Env, dev: bool) -> Result<InProcessSigner, StartError> {
    let passphrase = signer_passphrase(config, env, dev)?;
    let keys_dir = if config.signer.keys_dir.is_absolute() {
        config.signer.keys_dir.clone()
    } else {
        config.storage.data_dir.join(&config.signer.keys_dir)
    };
    InProcessSigner::open(&keys_dir, passphrase, in_process_policy(config))
        .map_err(|e| StartError::Storage(e.to_string()))
}

/// The signing policy of the in-process signer: a signer process's, with
/// lifetimes that admit the ones this node is configured to sign.
fn in_process_policy(config: &NodeConfig) -> seal_signer::policy::PolicyConfig {
    let default = seal_signer::policy::PolicyConfig::default();
    let secs = |s: u64| time::Duration::seconds(i64::try_from(s).unwrap_or(i64::MAX));
    seal_signer::policy::PolicyConfig {
        max_timestamp_lifetime: default
            .max_timestamp_lifetime
            .max(secs(config.timestamps.timestamp_lifetime_secs)),
        max_snapshot_lifetime: default
            .max_snapshot_lifetime
            .max(secs(config.timestamps.snapshot_lifetime_secs)),
        ..default
    }
}

fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    #[cfg(unix)]
    use std::os::unix::fs::OpenOptionsExt;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    opts.mode(0o600);
    let mut f = opts.open(path)?;
    f.write_all(bytes)?;
    f.sync_all()
}

/// A started node: its address, backend and a way to stop it.
pub struct Running {
    /// The address HTTP is served on.
    pub addr: SocketAddr,
    /// The backend.
    pub backend: Arc<RaftBackend>,
    app: axum::Router,
    shutdown: Arc<tokio::sync::Notify>,
    drain: tokio::sync::watch::Sender<bool>,
    server: tokio::task::JoinHandle<()>,
}

impl Running {
    /// The router the listener serves (every layer included), to serve it on other
    /// connections, e.g. in-memory ones for fuzzing ([`crate::listen::serve_connection`]).
    pub fn app(&self) -> axum::Router {
        self.app.clone()
    }

    /// Serves until SIGINT or SIGTERM, then stops: see [`Running::stop`].
    pub async fn wait_for_signal(self) -> std::io::Result<()> {
        seal_signer::server::shutdown_signal().await?;
        self.stop().await;
        Ok(())
    }

    /// Stops the node cleanly: the listener closes at once (new connections are refused), the
    /// requests in progress finish within `connections.drain_timeout_ms` (the rest are cut), the
    /// timestamp refresher and the signer health probe stop, then Raft stops. A leader stopping
    /// so sends no more heartbeats: the other voters elect a new one after their election
    /// timeout (docs/cluster.md, "Stopping a node").
    pub async fn stop(self) {
        tracing::info!("shutting down: no new connections");
        let _ = self.drain.send(true);
        if let Err(e) = self.server.await {
            tracing::error!(error = %e, "the HTTP listener task failed");
        }
        self.shutdown.notify_waiters();
        let raft = self.backend.raft();
        let was_leader = raft.metrics().is_leader;
        match raft.raft().shutdown().await {
            Ok(()) => tracing::info!(was_leader, "raft stopped"),
            Err(e) => tracing::error!(error = %e, "raft did not stop cleanly"),
        }
    }
}

/// Opens the Raft store of a cluster node (serving Raft, cluster admin and write forwarding on
/// `raft.addr`) and, when `raft.bootstrap` names this node as its lowest id and the store was never
/// initialized, forms the cluster. Other nodes wait for the leader to reach them.
async fn open_cluster(
    config: &NodeConfig,
    raft_config: seal_raft::RaftConfig,
    tls: &RaftTlsFiles,
) -> Result<seal_raft::SealRaft, StartError> {
    let addr = raft_config.addr.clone();
    let tls = seal_raft::ClusterTls {
        ca_file: tls.ca_file.clone(),
        cert_file: tls.cert_file.clone(),
        key_file: tls.key_file.clone(),
    };
    let raft = seal_raft::SealRaft::open_cluster_with_admin(raft_config, tls)
        .await
        .map_err(|e| StartError::Storage(format!("raft store: {e}")))?;
    tracing::info!(node_id = config.raft.node_id, raft_addr = %addr, "cluster mode");
    let first = config.raft.bootstrap.iter().map(|m| m.id).min();
    if first == Some(config.raft.node_id) {
        let initialized = raft
            .raft()
            .is_initialized()
            .await
            .map_err(|e| StartError::Storage(format!("raft: {e}")))?;
        if !initialized {
            let members = config
                .raft
                .bootstrap
                .iter()
                .map(|m| (m.id, m.raft_addr.clone()))
                .collect();
            match raft.initialize(members).await {
                Ok(()) => tracing::info!(members = ?config.raft.bootstrap, "formed a new cluster from raft.bootstrap"),
                Err(seal_raft::MembershipError::AlreadyInitialized { .. }) => {}
                Err(e) => return Err(StartError::Config(format!("raft.bootstrap: {e}"))),
            }
        }
    }
    Ok(raft)
}

/// The faults file `env` names ([`FAULTS_FILE_ENV`]), if any; refused when this build has no
/// fault injection (`built_with_faults`), so that a test harness learns it at once.
fn faults_file(env: &Env, built_with_faults: bool) -> Result<Option<PathBuf>, StartError> {
    match env.get(FAULTS_FILE_ENV) {
        None => Ok(None),
        Some(_) if !built_with_faults => Err(StartError::FaultInjectionUnavailable),
        Some(path) if path.is_empty() => Err(StartError::Config(format!("{FAULTS_FILE_ENV} is set but empty"))),
        Some(path) => Ok(Some(PathBuf::from(path))),
    }
}

/// The node's clock: the system clock, or with a faults file, the system clock shifted by the
/// file's `clock_offset_ms` (and the file's other switches followed from now on).
#[cfg(feature = "fault-injection")]
fn node_clock(faults_file: Option<PathBuf>) -> Result<Arc<dyn Clock>, StartError> {
    match faults_file {
        None => Ok(Arc::new(SystemClock)),
        Some(path) => {
            crate::faults::watch(path).map_err(StartError::Config)?;
            Ok(Arc::new(crate::faults::OffsetClock(SystemClock)))
        }
    }
}

/// The node's clock: the system clock ([`faults_file`] refused any faults file).
#[cfg(not(feature = "fault-injection"))]
fn node_clock(faults_file: Option<PathBuf>) -> Result<Arc<dyn Clock>, StartError> {
    match faults_file {
        None => Ok(Arc::new(SystemClock)),
        Some(_) => Err(StartError::FaultInjectionUnavailable),
    }
}

/// Opens everything `config` names and starts serving.
pub async fn start(config: NodeConfig, env: &Env, dev: bool) -> Result<Running, StartError> {
    seal_signer::install_crypto_provider();
    // Before anything opens: fault injection also covers the store's first writes.
    let clock = node_clock(faults_file(env, cfg!(feature = "fault-injection"))?)?;
    let data_dir: PathBuf = config.storage.data_dir.clone();
    std::fs::create_dir_all(&data_dir).map_err(|e| StartError::Storage(format!("{}: {e}", data_dir.display())))?;
    let addr = config.server.http_addr.socket_addr().ok_or_else(|| {
        StartError::Config(format!(
            "server.http_addr {:?} is not an address",
            config.server.http_addr
        ))
    })?;

    // Token auth first: a bad root bundle stops start-up before anything opens.
    let auth: Option<Arc<dyn AuthHook>> = match &config.auth {
        None => None,
        Some(auth_config) => {
            let auth = TokenAuth::from_config(auth_config).map_err(|e| StartError::Config(e.to_string()))?;
            tracing::info!(
                realm = %auth_config.realm,
                service = %auth_config.service,
                issuer = %auth_config.issuer,
                anonymous_read = auth_config.anonymous_read,
                "token authentication on"
            );
            Some(Arc::new(auth))
        }
    };

    let metrics = Metrics::new().map_err(|e| StartError::Config(e.to_string()))?;
    let mut raft_config = seal_raft::RaftConfig::new(config.raft.node_id, addr.to_string(), data_dir.join("raft"));
    raft_config.heartbeat_interval = StdDuration::from_millis(config.raft.heartbeat_ms);
    raft_config.election_timeout_min = StdDuration::from_millis(config.raft.election_timeout_min_ms);
    raft_config.election_timeout_max = StdDuration::from_millis(config.raft.election_timeout_max_ms);
    raft_config.allowed_peer_names = seal_signer::tls::AllowedNames(config.raft.allowed_peer_names.clone());
    raft_config.snapshot_logs_since_last = Some(config.raft.snapshot_logs_since_last);
    raft_config.snapshot_log_percent = config.raft.snapshot_log_percent;
    raft_config.max_in_snapshot_log_to_keep = config.raft.max_in_snapshot_log_to_keep;
    raft_config.max_connections = config.raft.max_connections;
    raft_config.source_ip = config.raft.source_ip;
    let raft = match (&config.raft.addr, &config.raft.tls) {
        (Some(raft_addr), Some(tls)) => {
            raft_config.addr = raft_addr.clone();
            open_cluster(&config, raft_config, tls).await?
        }
        _ => {
            let raft = seal_raft::SealRaft::open(raft_config)
                .await
                .map_err(|e| StartError::Storage(format!("raft store: {e}")))?;
            raft.wait_until_leader(StdDuration::from_secs(10))
                .await
                .map_err(|e| StartError::Storage(format!("raft: {e}")))?;
            raft
        }
    };
    let cluster_mode = config.raft.addr.is_some();

    let shutdown = Arc::new(tokio::sync::Notify::new());
    let mut remote_signer: Option<Arc<RemoteSigner>> = None;
    let signer: Arc<dyn CryptoService> = match config.trust_service.kind {
        TrustServiceType::Local => Arc::new(open_in_process_signer(&config, env, dev)?),
        TrustServiceType::Remote => {
            let remote =
                Arc::new(RemoteSigner::new(&config.trust_service, Some(metrics.clone())).map_err(StartError::Config)?);
            tokio::spawn(run_health_probe(remote.clone(), shutdown.clone()));
            remote_signer = Some(remote.clone());
            remote
        }
    };

    let secs = |s: u64| time::Duration::seconds(i64::try_from(s).unwrap_or(i64::MAX));
    let ts_life = secs(config.timestamps.timestamp_lifetime_secs);
    let lifetimes = ServerLifetimes {
        timestamp: ts_life,
        snapshot: secs(config.timestamps.snapshot_lifetime_secs),
        refresh_margin: ts_life * config.timestamps.refresh_margin_fraction,
    };
    // The leader's import-notary handler asks the signer which keys it holds.
    let import_signer = signer.clone();
    let backend = Arc::new(
        RaftBackend::new(
            Arc::new(raft),
            signer,
            clock,
            lifetimes,
            config.trust_service.key_algorithm,
            metrics.clone(),
        )
        .with_update_limits(config.update_limits),
    );

    let poll = StdDuration::from_secs(1)
        .min(StdDuration::try_from(lifetimes.refresh_margin / 4).unwrap_or(StdDuration::from_secs(1)));
    tokio::spawn(run_refresher(
        backend.clone(),
        poll.max(StdDuration::from_millis(50)),
        shutdown.clone(),
    ));

    let listener_metrics = metrics.listener();
    let mut state = AppState::from_config(&config, backend.clone(), metrics);
    state.auth = auth;
    if let Some(metrics_addr) = config.metrics.addr {
        serve_metrics_listener(metrics_addr, state.clone(), config.connections).await?;
    }
    let max_staleness = cluster_mode.then(|| StdDuration::from_millis(config.raft.max_staleness_ms));
    state.reads = Some(Arc::new(ReadGate::new(backend.clone(), max_staleness)));
    let app = router(state);
    let app = if cluster_mode {
        let raft = backend.raft().clone();
        raft.set_forward_handler(Arc::new(crate::import::leader::ImportHandler::new(
            Arc::new(RouterHandler::new(app.clone())),
            raft.clone(),
            import_signer,
        )));
        if let Some(remote) = remote_signer {
            raft.set_status_reporter(Arc::new(move || crate::cluster::signer_statuses(&remote)));
        }
        let forwarder = Forwarder::new(raft, config.raft.node_id, config.limits.max_body_bytes);
        app.layer(axum::middleware::from_fn_with_state(forwarder, forward_layer))
    } else {
        app
    };
    let listener = TcpListener::bind(addr).await.map_err(|source| StartError::Bind {
        addr: addr.to_string(),
        source,
    })?;
    let local = listener.local_addr().map_err(|source| StartError::Bind {
        addr: addr.to_string(),
        source,
    })?;
    let acceptor = match &config.server.tls {
        None => {
            crate::tls::ignore_hangup();
            None
        }
        Some(tls) => {
            let acceptor = crate::tls::acceptor(&tls.cert_file, &tls.key_file, config.server.client_ca_file.as_deref())
                .map_err(|e| StartError::Config(e.to_string()))?;
            // Renewed certificates are served without a restart: on SIGHUP
            // and when the files change.
            acceptor.spawn_reloader(crate::tls::RELOAD_POLL);
            Some(acceptor)
        }
    };
    crate::listen::check_descriptor_headroom(&config.connections);
    let (drain, draining) = tokio::sync::watch::channel(false);
    let server = tokio::spawn(crate::listen::serve_until_drained(
        listener,
        acceptor,
        app.clone(),
        config.connections,
        listener_metrics,
        draining,
    ));
    Ok(Running {
        addr: local,
        backend,
        app,
        shutdown,
        drain,
        server,
    })
}

/// Serves `GET /metrics` alone on `addr` (`metrics.addr`), plain HTTP, under the same connection
/// cap and timeouts as the main listener.
async fn serve_metrics_listener(
    addr: std::net::SocketAddr,
    state: AppState,
    limits: crate::listen::ConnectionLimits,
) -> Result<(), StartError> {
    let listener = TcpListener::bind(addr).await.map_err(|source| StartError::Bind {
        addr: addr.to_string(),
        source,
    })?;
    tracing::info!(%addr, "serving /metrics on its own listener");
    tokio::spawn(crate::listen::serve(
        listener,
        None,
        crate::http::metrics_router(state),
        limits,
        crate::listen::ListenerMetrics::unregistered(),
    ));
    Ok(())
}

/// The filter of a log level from the config: `level`, openraft's own at `warn`.
fn level_filter(level: &str) -> tracing_subscriber::EnvFilter {
    tracing_subscriber::EnvFilter::new(format!("{level},openraft=warn"))
}

/// Changes the level of the logging [`init_logging`] set up, while the node runs.
#[derive(Clone)]
pub struct LogLevelHandle {
    handle: tracing_subscriber::reload::Handle<tracing_subscriber::EnvFilter, tracing_subscriber::Registry>,
    /// `SEAL_LOG` was set: it wins over `logging.level`, also on SIGHUP.
    from_env: bool,
}

impl LogLevelHandle {
    /// Applies `level` (a checked `logging.level`) unless `SEAL_LOG` set the filter.
    pub fn set(&self, level: &str) {
        if self.from_env {
            tracing::info!("SIGHUP: the log filter comes from SEAL_LOG; logging.level not applied");
            return;
        }
        match self.handle.reload(level_filter(level)) {
            Ok(()) => tracing::info!("log level now {level}"),
            Err(e) => tracing::error!(error = %e, "cannot change the log level"),
        }
    }
}

/// Logs to stdout at `level` (or `SEAL_LOG`), openraft's own at `warn`, as
/// text (colours only on a terminal) or one JSON object per line. For the
/// node's binaries; the handle changes the level later (SIGHUP).
pub fn init_logging_as(level: &str, format: crate::config::LogFormat) -> LogLevelHandle {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    // An empty SEAL_LOG counts as unset.
    let from_env = std::env::var("SEAL_LOG")
        .ok()
        .filter(|v| !v.trim().is_empty())
        .and_then(|v| tracing_subscriber::EnvFilter::try_new(v).ok());
    let handle_from_env = from_env.is_some();
    let filter = from_env.unwrap_or_else(|| level_filter(level));
    let (filter, handle) = tracing_subscriber::reload::Layer::new(filter);
    let registry = tracing_subscriber::registry().with(filter);
    match format {
        crate::config::LogFormat::Text => registry
            .with(
                tracing_subscriber::fmt::layer()
                    // Colours only on a terminal: escape codes do not belong in log files.
                    .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout()))
                    .with_target(false),
            )
            .init(),
        crate::config::LogFormat::Json => registry
            .with(
                tracing_subscriber::fmt::layer()
                    .json()
                    .flatten_event(true)
                    .with_ansi(false)
                    .with_target(false),
            )
            .init(),
    }
    LogLevelHandle {
        handle,
        from_env: handle_from_env,
    }
}

/// [`init_logging_as`] as text, for binaries that do not change their level.
pub fn init_logging(level: &str) {
    init_logging_as(level, crate::config::LogFormat::Text);
}

/// On each SIGHUP, re-reads `logging.level` from the config file at `path` (with the
/// environment overrides in `env`) and applies it; a config that no longer loads is logged as
/// an error and changes nothing. (The TLS certificates are reloaded on the same signal by
/// [`crate::tls`].)
pub fn spawn_log_level_reloader(path: PathBuf, env: Env, handle: LogLevelHandle) {
    #[cfg(unix)]
    tokio::spawn(async move {
        let Ok(mut hup) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) else {
            return;
        };
        while hup.recv().await.is_some() {
            match NodeConfig::load(&path, &env) {
                Ok(c) => handle.set(&c.logging.level),
                Err(e) => tracing::error!("SIGHUP: {e}; the log level is unchanged"),
            }
        }
    });
    #[cfg(not(unix))]
    let _ = (path, env, handle);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_faults_file_is_refused_by_a_build_without_fault_injection() {
        let none = Env::new();
        assert_eq!(faults_file(&none, false).unwrap(), None);
        assert_eq!(faults_file(&none, true).unwrap(), None);
        let set = Env::from([(FAULTS_FILE_ENV.to_owned(), "/tmp/faults.json".to_owned())]);
        let refused = faults_file(&set, false).unwrap_err();
        assert!(matches!(refused, StartError::FaultInjectionUnavailable));
        assert_eq!(
            refused.to_string(),
            "SEAL_FAULTS_FILE is set but this seal-node was built without the fault-injection feature"
        );
        assert_eq!(
            faults_file(&set, true).unwrap(),
            Some(PathBuf::from("/tmp/faults.json"))
        );
        let empty = Env::from([(FAULTS_FILE_ENV.to_owned(), String::new())]);
        assert!(matches!(faults_file(&empty, true), Err(StartError::Config(_))));
        assert!(matches!(
            faults_file(&empty, false),
            Err(StartError::FaultInjectionUnavailable)
        ));
    }
}
