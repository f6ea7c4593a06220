//! The node's HTTP(S) listener: an accept loop no client can stop.
//!
//! * An accept error (descriptors exhausted, a connection reset before it
//!   was accepted) is logged and counted, the loop backs off briefly
//!   (doubling from 10 ms to 1 s, so a persistent error logs at most once
//!   a second) and goes on: the listener is never dropped.
//! * At most `connections.max_per_listener` connections are open at once;
//!   one more is closed as soon as it is accepted (its descriptor freed at
//!   once) and counted in `seal_connections_refused_total`.
//! * A TLS handshake must finish within `connections.handshake_timeout_ms`,
//!   an HTTP/1 request's headers within `connections.header_read_timeout_ms`,
//!   and a connection with no request in progress is closed once it has
//!   moved no byte for `connections.idle_timeout_ms`.
//!
//! * On SIGTERM or SIGINT the node drains: the listening socket closes at
//!   once (new connections are refused), each request in progress gets up
//!   to `connections.drain_timeout_ms` to finish, idle keep-alive
//!   connections close at once, and what is left at the deadline is cut.
//!
//! So idle or slow clients hold a bounded number of descriptors for a
//! bounded time, and the node answers new clients once they go away.

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::service::TowerToHyperService;
use prometheus::{IntCounter, IntGauge};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tower::ServiceExt;

/// The bounds on one listener's connections (`connections.*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionLimits {
    /// Connections open at once; more are closed on arrival.
    pub max_connections: usize,
    /// Time allowed for a TLS handshake.
    pub handshake_timeout: Duration,
    /// Time allowed for an HTTP/1 request's headers to arrive.
    pub header_read_timeout: Duration,
    /// Time a connection with no request in progress may move no byte.
    pub idle_timeout: Duration,
    /// On SIGTERM or SIGINT, time the requests in progress get to finish
    /// before their connections are cut.
    pub drain_timeout: Duration,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        ConnectionLimits {
            max_connections: 4096,
            handshake_timeout: Duration::from_secs(10),
            header_read_timeout: Duration::from_secs(20),
            idle_timeout: Duration::from_secs(90),
            drain_timeout: Duration::from_secs(10),
        }
    }
}

/// The counters one listener keeps.
#[derive(Clone)]
pub struct ListenerMetrics {
    /// Connections closed on arrival because the cap was reached.
    pub refused: IntCounter,
    /// Failed `accept()` calls.
    pub accept_errors: IntCounter,
    /// Connections open now.
    pub open: IntGauge,
}

impl ListenerMetrics {
    /// Counters registered nowhere, for a listener without a metrics endpoint.
    pub fn unregistered() -> ListenerMetrics {
        let counter = |name: &str| IntCounter::new(name, name).unwrap_or_else(|_| unreachable!("valid metric name"));
        ListenerMetrics {
            refused: counter("refused"),
            accept_errors: counter("accept_errors"),
            open: IntGauge::new("open", "open").unwrap_or_else(|_| unreachable!("valid metric name")),
        }
    }
}

/// Descriptors kept for everything but client connections (RocksDB files,
/// Raft peers, the signer), when comparing the cap with the process limit.
pub const DESCRIPTOR_RESERVE: u64 = 256;

/// The process's soft limit on open files (Linux, from `/proc/self/limits`).
pub fn open_files_limit() -> Option<u64> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line.split_whitespace().nth(3)?.parse().ok()
}

/// Says, once at start, when the connection cap leaves too few descriptors
/// for the rest of the node: clients could then exhaust them (accept
/// errors, and RocksDB unable to open files) before the cap refuses any.
pub fn check_descriptor_headroom(limits: &ConnectionLimits) {
    if let Some(nofile) = open_files_limit() {
        let wanted = limits.max_connections as u64 + DESCRIPTOR_RESERVE;
        if nofile < wanted {
            tracing::warn!(
                open_files_limit = nofile,
                max_per_listener = limits.max_connections,
                "connections.max_per_listener plus {DESCRIPTOR_RESERVE} exceeds the open-file limit: \
                 raise `ulimit -n` (LimitNOFILE=) or lower the cap"
            );
        }
    }
}

/// The node's HTTP counters and log lines for [`seal_proto::listen`]'s
/// accept loop and cap, shared with the gRPC ports.
impl seal_proto::listen::ListenerEvents for ListenerMetrics {
    fn accept_failed(&self, error: &io::Error, retry_in: Duration) {
        self.accept_errors.inc();
        tracing::warn!(%error, ?retry_in, "accepting a connection failed");
    }

    fn refused(&self, peer: std::net::SocketAddr, max: usize) {
        self.refused.inc();
        tracing::debug!(%peer, max, "connection refused: too many open");
    }

    fn opened(&self) {
        self.open.inc();
    }

    fn closed(&self) {
        self.open.dec();
    }
}

/// Accepts connections on `listener` (TLS when `tls` is given) and serves
/// `app` on each, within `limits`, until the task is aborted. Never
/// returns on an accept error.
pub async fn serve(
    listener: TcpListener,
    tls: Option<crate::tls::ReloadableAcceptor>,
    app: Router,
    limits: ConnectionLimits,
    metrics: ListenerMetrics,
) {
    let (_never, drain) = watch::channel(false);
    serve_until_drained(listener, tls, app, limits, metrics, drain).await;
}

/// [`serve`] until `drain` turns true; then closes the listening socket,
/// lets the requests in progress finish (see [`drain_connections`]) and
/// returns.
pub async fn serve_until_drained(
    listener: TcpListener,
    tls: Option<crate::tls::ReloadableAcceptor>,
    app: Router,
    limits: ConnectionLimits,
    metrics: ListenerMetrics,
    mut drain: watch::Receiver<bool>,
) {
    let mut acceptor = seal_proto::listen::Acceptor::new(listener);
    let cap = seal_proto::listen::ConnectionCap::new(limits.max_connections, metrics.clone());
    let mut connections = JoinSet::new();
    loop {
        let (tcp, peer) = tokio::select! {
            accepted = acceptor.accept(&metrics) => accepted,
            // Finished connections are reaped as they go, so that the set counts open ones.
            Some(_) = connections.join_next(), if !connections.is_empty() => continue,
            Ok(_) = drain.wait_for(|d| *d) => break,
        };
        let Some(tcp) = cap.admit(tcp, peer) else {
            continue;
        };
        let tls = tls.clone();
        let app = app.clone();
        let drain = drain.clone();
        connections.spawn(async move {
            match tls {
                None => serve_connection_until(tcp, app, limits, drain).await,
                Some(acceptor) => {
                    match tokio::time::timeout(limits.handshake_timeout, acceptor.get().accept(tcp)).await {
                        Ok(Ok(stream)) => serve_connection_until(stream, app, limits, drain).await,
                        Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                        Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                    }
                }
            }
        });
    }
    // Closing the listening socket: from now on a new connection is refused.
    drop(acceptor);
    drain_connections(connections, limits.drain_timeout).await;
}

/// Waits up to `timeout` for the connections in `connections` (each told to
/// drain: it finishes the request in progress, then closes; an idle one
/// closes at once), then cuts the rest. Logs each phase.
async fn drain_connections(mut connections: JoinSet<()>, timeout: Duration) {
    while connections.try_join_next().is_some() {}
    tracing::info!(timeout = ?timeout, "draining {} connections", connections.len());
    let all_done = async { while connections.join_next().await.is_some() {} };
    if tokio::time::timeout(timeout, all_done).await.is_ok() {
        tracing::info!("drained");
    } else {
        let cut = connections.len();
        connections.abort_all();
        while connections.join_next().await.is_some() {}
        tracing::info!("drain timeout: {cut} connections cut");
    }
}

/// When a connection last moved a byte, and how many of its requests are
/// in progress.
struct Activity {
    start: Instant,
    last_ms: AtomicU64,
    in_flight: AtomicUsize,
}

impl Activity {
    fn touch(&self) {
        let ms = u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_ms.store(ms, Ordering::Relaxed);
    }

    fn last(&self) -> Instant {
        self.start + Duration::from_millis(self.last_ms.load(Ordering::Relaxed))
    }
}

/// Serves HTTP/1.1 or HTTP/2 on one connection until it ends or stays idle
/// (no request in progress, no byte moved) for `limits.idle_timeout`, as
/// [`serve`] does for each connection it accepts (after TLS). Public for
/// serving connections that are not sockets (fuzzing, `crate::testing`).
pub async fn serve_connection<I>(io: I, app: Router, limits: ConnectionLimits)
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    // Never told to drain: the sender lives as long as the connection.
    let (_never, drain) = watch::channel(false);
    serve_connection_until(io, app, limits, drain).await;
}

/// [`serve_connection`], until `drain` turns true: then the request in
/// progress finishes and the connection closes (at once when idle).
async fn serve_connection_until<I>(io: I, app: Router, limits: ConnectionLimits, mut drain: watch::Receiver<bool>)
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let activity = Arc::new(Activity {
        start: Instant::now(),
        last_ms: AtomicU64::new(0),
        in_flight: AtomicUsize::new(0),
    });
    let watched = Watched {
        inner: io,
        activity: activity.clone(),
    };
    let counting = activity.clone();
    let service = tower::service_fn(move |req: axum::extract::Request<hyper::body::Incoming>| {
        let app = app.clone();
        let counting = counting.clone();
        async move {
            // Counted until the answer is ready or the request is dropped
            // (an HTTP/2 stream reset drops it alone).
            let _in_flight = InFlight::new(counting);
            app.oneshot(req.map(axum::body::Body::new)).await
        }
    });
    let mut builder = Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout);
    let conn = builder.serve_connection_with_upgrades(TokioIo::new(watched), TowerToHyperService::new(service));
    tokio::pin!(conn);
    let mut draining = false;
    loop {
        let busy = activity.in_flight.load(Ordering::Relaxed) > 0;
        let since = if busy { Instant::now() } else { activity.last() };
        let deadline = since + limits.idle_timeout;
        tokio::select! {
            result = conn.as_mut() => {
                if let Err(e) = result {
                    tracing::debug!(error = %e, "connection ended with an error");
                }
                return;
            }
            Ok(_) = drain.wait_for(|d| *d), if !draining => {
                // HTTP/1: the request in progress is answered, then the connection closes
                // (an idle keep-alive one at once); HTTP/2: GOAWAY, open streams finish.
                draining = true;
                conn.as_mut().graceful_shutdown();
            }
            _ = tokio::time::sleep_until(deadline.into()) => {
                let idle = activity.in_flight.load(Ordering::Relaxed) == 0
                    && activity.last().elapsed() >= limits.idle_timeout;
                if idle {
                    tracing::debug!(timeout = ?limits.idle_timeout, "closing an idle connection");
                    return;
                }
            }
        }
    }
}

/// One request in progress on a connection, for as long as it lives; its
/// end counts as activity.
struct InFlight(Arc<Activity>);

impl InFlight {
    fn new(activity: Arc<Activity>) -> InFlight {
        activity.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlight(activity)
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
        self.0.touch();
    }
}

/// An IO stream that records when it last moved a byte.
struct Watched<I> {
    inner: I,
    activity: Arc<Activity>,
}

impl<I: AsyncRead + Unpin> AsyncRead for Watched<I> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.activity.touch();
        }
        r
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for Watched<I> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, data);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        r
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        r
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}
