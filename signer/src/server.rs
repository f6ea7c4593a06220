//! Start-up of a signer: open the store and key backends, serve the gRPC
//! services and the health service over mutual TLS with reloadable
//! certificates.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use seal_proto::listen::{Acceptor, ConnectionCap, ListenerEvents};
use seal_proto::signer::key_management_server::KeyManagementServer;
use seal_proto::signer::signer_server::SignerServer;
use seal_proto::threshold::threshold_peer_server::ThresholdPeerServer;
use tokio::net::TcpListener;

use crate::backend::{Blocking, KeyBackend, LocalBackend};
use crate::config::{KeyBackendSection, SignerConfig};
use crate::core::SignerCore;
use crate::error::{Error, Result};
use crate::metrics::Metrics;
use crate::pkcs11::{Pkcs11Backend, Pkcs11Config};
use crate::service::{KeyManagementService, SignerService};
use crate::software::{Passphrases, SoftwareBackend, PBES2_ITERATIONS};
use crate::store::Store;
use crate::threshold::{GrpcPeers, ThresholdBackend, ThresholdPeerService};
use crate::tls::{AllowedNames, ReloadableAcceptor, TlsFiles};

/// Time a client has to complete its TLS handshake; until then its
/// connection holds a slot under `server.max_connections`.
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Counts and logs what the gRPC listener does.
#[derive(Clone)]
struct SignerListenerEvents(Metrics);

impl ListenerEvents for SignerListenerEvents {
    fn accept_failed(&self, error: &std::io::Error, retry_in: Duration) {
        self.0.accept_failed();
        tracing::warn!(%error, ?retry_in, "accept failed");
    }

    fn refused(&self, peer: SocketAddr, max: usize) {
        self.0.connection_refused();
        tracing::debug!(%peer, max, "connection refused: server.max_connections are open");
    }

    fn opened(&self) {
        self.0.connections_open_add(1);
    }

    fn closed(&self) {
        self.0.connections_open_add(-1);
    }
}

/// The key backends on this machine a signer uses.
pub type Backends = Vec<Arc<dyn LocalBackend>>;

/// A running signer.
pub struct Running {
    /// The bound address.
    pub addr: SocketAddr,
    /// Where the metrics are served, if they are.
    pub metrics_addr: Option<SocketAddr>,
    /// The services' state.
    pub core: Arc<SignerCore>,
    shutdown: tokio::sync::watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl Running {
    /// Stops serving and waits for the server to finish.
    pub async fn stop(self) {
        let _ = self.shutdown.send(true);
        let _ = self.task.await;
    }

    /// Serves until SIGINT or SIGTERM.
    pub async fn wait_for_signal(self) -> std::io::Result<()> {
        shutdown_signal().await?;
        tracing::info!("shutting down");
        self.stop().await;
        Ok(())
    }
}

/// Waits for SIGINT or SIGTERM.
pub async fn shutdown_signal() -> std::io::Result<()> {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        tokio::select! {
            r = ctrl_c => r?,
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    ctrl_c.await?;
    Ok(())
}

/// The PKCS#11 token `config` names as its key backend, logged in; `None`
/// when the key backend is another.
pub fn pkcs11_backend(config: &SignerConfig, env: &dyn Fn(&str) -> Option<String>) -> Result<Option<Pkcs11Backend>> {
    let KeyBackendSection::Pkcs11 {
        module,
        token_label,
        pin_file,
        pin_env,
    } = &config.key_backend
    else {
        return Ok(None);
    };
    let pin = Pkcs11Config::pin_from(pin_file.as_deref(), pin_env.as_deref(), env)?;
    Ok(Some(Pkcs11Backend::open(Pkcs11Config {
        module: module.clone(),
        token_label: token_label.clone(),
        pin,
    })?))
}

/// The key backends `config` asks for. Software keys stay readable whenever
/// a passphrase for the default alias is set, so a signer can move to an
/// HSM and keep signing with the keys it made before.
pub fn backends(config: &SignerConfig, env: &dyn Fn(&str) -> Option<String>) -> Result<(Backends, &'static str)> {
    let mut out: Backends = Vec::new();
    let software = Passphrases::from_env(&config.default_alias, &config.aliases, env);
    match &config.key_backend {
        KeyBackendSection::Software => {
            out.push(Arc::new(SoftwareBackend::new(software?)));
            Ok((out, "software"))
        }
        KeyBackendSection::Pkcs11 { .. } => {
            let hsm = pkcs11_backend(config, env)?
                .ok_or_else(|| Error::Internal("the PKCS#11 key backend did not open".to_owned()))?;
            out.push(Arc::new(hsm));
            if let Ok(p) = software {
                out.push(Arc::new(SoftwareBackend::new(p)));
            }
            Ok((out, "pkcs11"))
        }
        KeyBackendSection::Threshold { .. } => {
            // New keys are threshold keys (see `start`); software keys made
            // before stay usable.
            out.push(Arc::new(SoftwareBackend::new(software?)));
            Ok((out, "software"))
        }
    }
}

/// `seal-signer serve`: logs to stderr at `config.logging.level` (or
/// `RUST_LOG`), starts serving on a new runtime, prints
/// `seal-signer listening on <addr>` on stdout once it listens, and serves
/// until SIGINT or SIGTERM. Passphrases come from `env`.
pub fn run(config: &SignerConfig, env: &dyn Fn(&str) -> Option<String>) -> Result<()> {
    tracing_subscriber::fmt()
        // Colours only on a terminal: escape codes do not belong in log files.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(&config.logging.level)),
        )
        .with_writer(std::io::stderr)
        .init();
    let rt = tokio::runtime::Runtime::new().map_err(Error::io("starting the runtime"))?;
    rt.block_on(async {
        let running = start(config, env).await?;
        println!("seal-signer listening on {}", running.addr);
        running
            .wait_for_signal()
            .await
            .map_err(Error::io("waiting for a signal"))
    })
}

/// Opens everything `config` names and starts serving.
pub async fn start(config: &SignerConfig, env: &dyn Fn(&str) -> Option<String>) -> Result<Running> {
    crate::install_crypto_provider();
    std::fs::create_dir_all(&config.storage.data_dir)
        .map_err(Error::io(config.storage.data_dir.display().to_string()))?;
    let store = Arc::new(Store::open(&config.storage.data_dir)?);
    if !config.policy.enforce {
        tracing::warn!(
            "SIGNING POLICY NOT ENFORCED (policy.enforce = false): this signer signs whatever it is sent, \
             rollbacks and non-metadata included; use this only for tests and compromise drills"
        );
    }
    let (local, mut new_keys) = backends(config, env)?;
    let mut backends: Vec<Arc<dyn KeyBackend>> = local
        .into_iter()
        .map(|b| Arc::new(Blocking(b)) as Arc<dyn KeyBackend>)
        .collect();
    let metrics = Metrics::new().map_err(|e| Error::Internal(format!("metrics: {e}")))?;
    let mut threshold = None;
    if let Some(t) = config.key_backend.threshold_config() {
        let passphrases = Passphrases::from_env(&config.default_alias, &config.aliases, env)?;
        let transport = GrpcPeers::new(
            &t.peers,
            &config.server.client_ca_file,
            &config.server.tls_cert_file,
            &config.server.tls_key_file,
            t.peer_timeout,
        )?;
        if t.peers.iter().any(|p| p.name.is_none()) {
            tracing::warn!(
                "threshold peers without a \"name\": any certificate the client CA signed may call the peer service as them"
            );
        }
        let backend = Arc::new(
            ThresholdBackend::new(
                t,
                store.clone(),
                passphrases,
                PBES2_ITERATIONS,
                config.policy.to_policy(),
            )?
            .with_metrics(metrics.clone()),
        );
        backend.set_transport(Arc::new(transport));
        // Before serving: a signer that was down while its peers signed
        // must not take part below the marks they reached.
        let raised = backend.learn_marks().await;
        if raised > 0 {
            tracing::info!(
                raised,
                "high-water marks raised to what peers signed while this signer was away"
            );
        }
        // New keys are threshold keys; keys of the other backends stay usable.
        backends.push(Arc::new(backend.clone()));
        new_keys = crate::threshold::BACKEND_NAME;
        threshold = Some(backend);
    }
    let core = SignerCore::new(store, backends, new_keys, config.policy.to_policy(), metrics)?;
    let core = Arc::new(core);

    let acceptor_tls = ReloadableAcceptor::new(TlsFiles {
        cert: config.server.tls_cert_file.clone(),
        key: config.server.tls_key_file.clone(),
        client_ca: Some(config.server.client_ca_file.clone()),
        allowed_client_names: AllowedNames(connecting_names(&config.server)),
        alpn: vec![b"h2".to_vec()],
    })
    .map_err(|e| Error::Config(e.to_string()))?;
    acceptor_tls.spawn_reloader(Duration::from_secs(5));

    let listener = TcpListener::bind(config.server.grpc_addr)
        .await
        .map_err(Error::io(format!("cannot listen on {}", config.server.grpc_addr)))?;
    let addr = listener.local_addr().map_err(Error::io("listening address"))?;

    let metrics_listener = match config.server.metrics_addr {
        Some(a) => Some(
            TcpListener::bind(a)
                .await
                .map_err(Error::io(format!("cannot listen on {a} for metrics")))?,
        ),
        None => None,
    };
    let metrics_addr = match &metrics_listener {
        Some(l) => Some(l.local_addr().map_err(Error::io("metrics address"))?),
        None => None,
    };

    let (_health_reporter, health_service) = seal_proto::signer_health_reporter().await;
    let (conn_tx, conn_rx) = tokio::sync::mpsc::channel(64);
    let (shutdown, mut shutdown_rx) = tokio::sync::watch::channel(false);
    let mut accept_shutdown = shutdown_rx.clone();
    if let Some(listener) = metrics_listener {
        tokio::spawn(serve_metrics(listener, core.metrics().clone(), shutdown_rx.clone()));
    }
    let cap = ConnectionCap::new(
        config.server.max_connections,
        SignerListenerEvents(core.metrics().clone()),
    );
    tokio::spawn(async move {
        // An accept error (descriptors exhausted) is retried after a pause
        // doubling from 10 ms to 1 s, so the loop neither ends nor spins;
        // past `server.max_connections` open connections (TLS handshakes
        // included) one more is closed on arrival and counted.
        let mut acceptor = Acceptor::new(listener);
        loop {
            let (tcp, peer) = tokio::select! {
                accepted = acceptor.accept(cap.events()) => accepted,
                _ = accept_shutdown.changed() => return,
            };
            let Some(tcp) = cap.admit(tcp, peer) else {
                continue;
            };
            let tls = acceptor_tls.get();
            let tx = conn_tx.clone();
            tokio::spawn(async move {
                match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, tls.accept(tcp)).await {
                    Ok(Ok(stream)) => {
                        let _ = tx.send(Ok::<_, std::io::Error>(stream)).await;
                    }
                    Ok(Err(e)) => tracing::warn!(%peer, %e, "TLS handshake refused"),
                    Err(_) => tracing::warn!(%peer, "TLS handshake timed out"),
                }
            });
        }
    });
    let incoming = tokio_stream::wrappers::ReceiverStream::new(conn_rx);
    let server = tonic::transport::Server::builder()
        .add_service(health_service)
        .add_service(KeyManagementServer::new(KeyManagementService::new(
            core.clone(),
            AllowedNames(config.server.admin_client_names.clone()),
        )))
        .add_service(SignerServer::new(SignerService(core.clone())))
        .add_optional_service(threshold.map(|t| {
            ThresholdPeerServer::new(ThresholdPeerService::new(t).with_own_certificate(&config.server.tls_cert_file))
        }));
    let task = tokio::spawn(async move {
        let signal = async move {
            let _ = shutdown_rx.changed().await;
        };
        if let Err(e) = server.serve_with_incoming_shutdown(incoming, signal).await {
            tracing::error!(%e, "gRPC server failed");
        }
    });
    tracing::info!(%addr, backend = new_keys, "seal-signer serving gRPC over mutual TLS");
    Ok(Running {
        addr,
        metrics_addr,
        core,
        shutdown,
        task,
    })
}

/// Serves the Prometheus text exposition of `metrics` at `GET /metrics`
/// (plain HTTP/1.1, one request per connection) until `shutdown` changes.
async fn serve_metrics(listener: TcpListener, metrics: Metrics, mut shutdown: tokio::sync::watch::Receiver<bool>) {
    loop {
        let (mut tcp, _) = tokio::select! {
            r = listener.accept() => match r {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!(%e, "metrics accept failed");
                    continue;
                }
            },
            _ = shutdown.changed() => return,
        };
        let metrics = metrics.clone();
        tokio::spawn(async move {
            let _ = tokio::time::timeout(Duration::from_secs(5), answer_metrics(&mut tcp, &metrics)).await;
        });
    }
}

/// Reads one request head (at most 8 KiB) and answers it.
async fn answer_metrics(tcp: &mut tokio::net::TcpStream, metrics: &Metrics) -> std::io::Result<()> {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = tcp.read(&mut buf).await?;
        if n == 0 || head.len() + n > 8192 {
            return Ok(());
        }
        head.extend_from_slice(&buf[..n]);
    }
    let (status, body) = if head.starts_with(b"GET /metrics ") {
        ("200 OK", metrics.render())
    } else {
        ("404 Not Found", "only GET /metrics is served here\n".to_owned())
    };
    let response = format!(
        "HTTP/1.1 {status}\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    tcp.write_all(response.as_bytes()).await?;
    tcp.shutdown().await
}

/// The names a client certificate may carry to connect: the nodes'
/// (`allowed_client_names`) and the operators' (`admin_client_names`). Empty
/// when `allowed_client_names` is: any certificate the client CA signed.
fn connecting_names(server: &crate::config::ServerSection) -> Vec<String> {
    if server.allowed_client_names.is_empty() {
        return Vec::new();
    }
    let mut names = server.allowed_client_names.clone();
    names.extend(server.admin_client_names.iter().cloned());
    names
}
