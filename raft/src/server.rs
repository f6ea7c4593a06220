//! The Raft port: one gRPC server over mutual TLS ([`crate::tls`]) serving the Raft transport
//! ([`crate::grpc::RaftService`]) and, when asked, the cluster admin and forwarding services
//! ([`crate::admin`]).
//!
//! The server accepts through [`seal_proto::listen`]: an `accept()` error is logged and retried
//! after 10 ms doubling to 1 s (the listener never ends and never spins), at most
//! `RaftConfig::max_connections` connections are open at once (one more is closed on arrival and
//! counted, see [`ConnectionCounts`]), and a TLS handshake must finish within 10 s (tonic's
//! `ServerTlsConfig::timeout`, applied per connection while others are accepted).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use seal_proto::listen::{ConnectionCap, ListenerEvents};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tonic::transport::Server;

use crate::error::Error;
use crate::grpc::RaftService;
use crate::tls::{error_chain, TlsMaterial};

/// The HTTP/2 receive window of each call on the Raft port: two snapshot chunks (3 MiB each by
/// default) and then some.
const STREAM_WINDOW_BYTES: u32 = 8 << 20;
/// The HTTP/2 receive window of each connection to the Raft port (all its calls together).
const CONNECTION_WINDOW_BYTES: u32 = 16 << 20;

/// What the Raft port's listener counted so far.
#[derive(Debug, Default)]
pub struct ConnectionCounts {
    open: AtomicU64,
    refused: AtomicU64,
    accept_errors: AtomicU64,
}

impl ConnectionCounts {
    /// Connections open now (TLS handshakes in progress included).
    pub fn open(&self) -> u64 {
        self.open.load(Ordering::Relaxed)
    }

    /// Connections closed on arrival because `RaftConfig::max_connections` were open.
    pub fn refused(&self) -> u64 {
        self.refused.load(Ordering::Relaxed)
    }

    /// Failed `accept()` calls.
    pub fn accept_errors(&self) -> u64 {
        self.accept_errors.load(Ordering::Relaxed)
    }
}

/// Counts and logs what the Raft port's listener does.
#[derive(Debug, Clone)]
struct RaftListenerEvents {
    node_id: u64,
    counts: Arc<ConnectionCounts>,
}

impl ListenerEvents for RaftListenerEvents {
    fn accept_failed(&self, error: &std::io::Error, retry_in: Duration) {
        self.counts.accept_errors.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(node_id = self.node_id, %error, ?retry_in, "raft gRPC: accepting a connection failed");
    }

    fn refused(&self, peer: SocketAddr, max: usize) {
        self.counts.refused.fetch_add(1, Ordering::Relaxed);
        tracing::debug!(node_id = self.node_id, %peer, max, "raft gRPC: connection refused, too many open");
    }

    fn opened(&self) {
        self.counts.open.fetch_add(1, Ordering::Relaxed);
    }

    fn closed(&self) {
        self.counts.open.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A running Raft gRPC server (with the cluster admin and forwarding services when asked).
#[derive(Debug)]
pub(crate) struct ServerHandle {
    addr: SocketAddr,
    service: RaftService,
    counts: Arc<ConnectionCounts>,
    stop: oneshot::Sender<()>,
    task: JoinHandle<()>,
}

impl ServerHandle {
    /// Serve `service`, and `admin`'s services when given, over mutual TLS on `listener` (bound
    /// to `configured_addr`), at most `max_connections` connections at once.
    pub(crate) fn spawn(
        listener: TcpListener,
        configured_addr: &str,
        service: RaftService,
        admin: Option<crate::admin::AdminService>,
        tls: &TlsMaterial,
        max_message_bytes: usize,
        max_connections: usize,
    ) -> Result<ServerHandle, Error> {
        let addr = listener.local_addr().map_err(|source| Error::Bind {
            addr: configured_addr.to_string(),
            source,
        })?;
        let mut builder = Server::builder()
            // HTTP/2 flow-control windows: how far a peer streaming a snapshot may get ahead of
            // this node writing it. At hyper's 1 MiB a 3 MiB chunk could not be in flight whole
            // while the previous one was written.
            .initial_stream_window_size(Some(STREAM_WINDOW_BYTES))
            .initial_connection_window_size(Some(CONNECTION_WINDOW_BYTES))
            .tls_config(tls.server_config())
            .map_err(|e| Error::Tls {
                what: "configuration",
                path: None,
                reason: error_chain(&e),
            })?;
        let mut router = builder.add_service(service.clone().into_server(max_message_bytes));
        let with_admin = admin.is_some();
        if let Some(admin) = admin {
            router = crate::admin::add_admin_services(router, admin, max_message_bytes);
        }
        let (stop, stopped) = oneshot::channel::<()>();
        let node_id = service.node_id;
        let counts = Arc::new(ConnectionCounts::default());
        let events = RaftListenerEvents {
            node_id,
            counts: counts.clone(),
        };
        let incoming = seal_proto::listen::incoming(listener, ConnectionCap::new(max_connections, events));
        let task = tokio::spawn(async move {
            let signal = async move {
                let _ = stopped.await;
            };
            if let Err(e) = router.serve_with_incoming_shutdown(incoming, signal).await {
                tracing::error!(node_id, error = %error_chain(&e), "raft gRPC server failed");
            }
        });
        if with_admin {
            tracing::info!(node_id, %addr, "serving raft, cluster admin and forwarding RPCs over mutual TLS");
        } else {
            tracing::info!(node_id, %addr, "serving raft RPCs over mutual TLS");
        }
        Ok(ServerHandle {
            addr,
            service,
            counts,
            stop,
            task,
        })
    }

    /// The address the server listens on.
    pub(crate) fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The counts of the server's connections.
    pub(crate) fn connection_counts(&self) -> Arc<ConnectionCounts> {
        self.counts.clone()
    }

    /// Refuse further RPCs, stop accepting connections, and wait up to `grace` for open ones to
    /// finish (then abandon them: they can only get refusals).
    pub(crate) async fn stop(self, grace: Duration) {
        let ServerHandle {
            addr,
            service,
            counts: _,
            stop,
            mut task,
        } = self;
        service.close();
        let _ = stop.send(());
        if tokio::time::timeout(grace, &mut task).await.is_err() {
            tracing::warn!(%addr, "raft gRPC connections still open after shutdown; abandoning them");
            task.abort();
        }
    }
}
