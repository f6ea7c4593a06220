//! Bounded listeners for Seal's gRPC servers (the Raft/admin port and the signer).
//!
//! * [`Acceptor::accept`] never fails: an `accept()` error (descriptors exhausted, a connection
//!   reset before it was accepted) is reported and retried after a pause doubling from 10 ms to
//!   1 s, so the listener neither ends nor spins.
//! * [`ConnectionCap::admit`] lets at most `max` connections be open at once; one more is closed
//!   at once (its descriptor freed) and reported. An admitted connection ([`Capped`]) holds its
//!   slot until it is dropped, TLS handshake included.
//! * [`incoming`] puts both together as the stream of connections tonic's
//!   `serve_with_incoming_shutdown` takes; tonic still does the TLS handshake (with its own
//!   timeout) and reads the peer certificate: a [`Capped`] connection reports its inner
//!   stream's connect info unchanged.
//!
//! What happens is reported to a [`ListenerEvents`] of the caller's (its counters and logs).

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tonic::codegen::tokio_stream::Stream;
use tonic::transport::server::Connected;

/// First pause after a failed `accept()`; it doubles up to [`ACCEPT_BACKOFF_MAX`].
pub const ACCEPT_BACKOFF_MIN: Duration = Duration::from_millis(10);
/// Longest pause between two failed `accept()` calls.
pub const ACCEPT_BACKOFF_MAX: Duration = Duration::from_secs(1);

/// What a bounded listener reports (to counters, to the log).
pub trait ListenerEvents: Clone + Send + Sync + Unpin + 'static {
    /// `accept()` failed with `error`; the next attempt is in `retry_in`.
    fn accept_failed(&self, error: &io::Error, retry_in: Duration);
    /// A connection from `peer` was closed on arrival: `max` were open.
    fn refused(&self, peer: SocketAddr, max: usize);
    /// A connection was admitted.
    fn opened(&self);
    /// An admitted connection was closed.
    fn closed(&self);
}

/// A listening socket whose `accept` retries errors after a growing pause.
#[derive(Debug)]
pub struct Acceptor {
    listener: TcpListener,
    backoff: Duration,
}

impl Acceptor {
    /// Accepts on `listener`.
    pub fn new(listener: TcpListener) -> Acceptor {
        Acceptor {
            listener,
            backoff: ACCEPT_BACKOFF_MIN,
        }
    }

    /// The next connection, with TCP_NODELAY set. An error is reported to `events` and retried
    /// after the pause (10 ms, doubling to 1 s; back to 10 ms after a success). Cancel-safe.
    pub async fn accept<E: ListenerEvents>(&mut self, events: &E) -> (TcpStream, SocketAddr) {
        loop {
            match self.listener.accept().await {
                Ok((tcp, peer)) => {
                    self.backoff = ACCEPT_BACKOFF_MIN;
                    let _ = tcp.set_nodelay(true);
                    return (tcp, peer);
                }
                Err(e) => {
                    events.accept_failed(&e, self.backoff);
                    tokio::time::sleep(self.backoff).await;
                    self.backoff = (self.backoff * 2).min(ACCEPT_BACKOFF_MAX);
                }
            }
        }
    }
}

/// At most `max` connections open at once.
#[derive(Debug, Clone)]
pub struct ConnectionCap<E> {
    permits: Arc<Semaphore>,
    max: usize,
    events: E,
}

impl<E: ListenerEvents> ConnectionCap<E> {
    /// A cap of `max` connections (at least 1), reporting to `events`.
    pub fn new(max: usize, events: E) -> ConnectionCap<E> {
        let max = max.clamp(1, Semaphore::MAX_PERMITS);
        ConnectionCap {
            permits: Arc::new(Semaphore::new(max)),
            max,
            events,
        }
    }

    /// The cap.
    pub fn max(&self) -> usize {
        self.max
    }

    /// Where events are reported.
    pub fn events(&self) -> &E {
        &self.events
    }

    /// `io` (from `peer`) holding a slot, or `None` when `max` are open: then `io` is dropped
    /// (closed) at once and the refusal reported.
    pub fn admit<IO>(&self, io: IO, peer: SocketAddr) -> Option<Capped<IO, E>> {
        let Ok(permit) = self.permits.clone().try_acquire_owned() else {
            self.events.refused(peer, self.max);
            drop(io);
            return None;
        };
        self.events.opened();
        Some(Capped {
            io,
            _permit: permit,
            events: self.events.clone(),
        })
    }
}

/// An admitted connection: it holds its slot under the cap until dropped.
#[derive(Debug)]
pub struct Capped<IO, E: ListenerEvents> {
    io: IO,
    _permit: OwnedSemaphorePermit,
    events: E,
}

impl<IO, E: ListenerEvents> Drop for Capped<IO, E> {
    fn drop(&mut self) {
        self.events.closed();
    }
}

impl<IO: Connected, E: ListenerEvents> Connected for Capped<IO, E> {
    type ConnectInfo = IO::ConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.io.connect_info()
    }
}

impl<IO: AsyncRead + Unpin, E: ListenerEvents> AsyncRead for Capped<IO, E> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl<IO: AsyncWrite + Unpin, E: ListenerEvents> AsyncWrite for Capped<IO, E> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, data)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }
}

type NextConnection<E> = Pin<Box<dyn Future<Output = (Acceptor, Capped<TcpStream, E>)> + Send>>;

/// The connections admitted on `listener` under `cap`, for tonic's
/// `serve_with_incoming_shutdown`. It never yields an error and never ends; dropping it closes
/// the listening socket.
pub fn incoming<E: ListenerEvents>(listener: TcpListener, cap: ConnectionCap<E>) -> Incoming<E> {
    Incoming {
        next: next_connection(Acceptor::new(listener), cap.clone()),
        cap,
    }
}

fn next_connection<E: ListenerEvents>(mut acceptor: Acceptor, cap: ConnectionCap<E>) -> NextConnection<E> {
    Box::pin(async move {
        loop {
            let (tcp, peer) = acceptor.accept(cap.events()).await;
            if let Some(conn) = cap.admit(tcp, peer) {
                return (acceptor, conn);
            }
        }
    })
}

/// The stream [`incoming`] returns.
pub struct Incoming<E: ListenerEvents> {
    next: NextConnection<E>,
    cap: ConnectionCap<E>,
}

impl<E: ListenerEvents> std::fmt::Debug for Incoming<E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Incoming")
            .field("max", &self.cap.max)
            .finish_non_exhaustive()
    }
}

impl<E: ListenerEvents> Stream for Incoming<E> {
    type Item = io::Result<Capped<TcpStream, E>>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let (acceptor, conn) = match self.next.as_mut().poll(cx) {
            Poll::Ready(next) => next,
            Poll::Pending => return Poll::Pending,
        };
        self.next = next_connection(acceptor, self.cap.clone());
        Poll::Ready(Some(Ok(conn)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
    use tokio::io::AsyncReadExt;
    use tonic::codegen::tokio_stream::StreamExt;

    #[derive(Clone, Default)]
    struct Counts(Arc<(AtomicU64, AtomicI64)>);

    impl ListenerEvents for Counts {
        fn accept_failed(&self, _: &io::Error, _: Duration) {}
        fn refused(&self, _: SocketAddr, _: usize) {
            self.0 .0.fetch_add(1, Ordering::SeqCst);
        }
        fn opened(&self) {
            self.0 .1.fetch_add(1, Ordering::SeqCst);
        }
        fn closed(&self) {
            self.0 .1.fetch_sub(1, Ordering::SeqCst);
        }
    }

    #[tokio::test]
    async fn connections_over_the_cap_are_closed_and_slots_come_back() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let counts = Counts::default();
        let mut stream = incoming(listener, ConnectionCap::new(2, counts.clone()));
        let _c1 = TcpStream::connect(addr).await.unwrap();
        let _c2 = TcpStream::connect(addr).await.unwrap();
        let first = stream.next().await.unwrap().unwrap();
        let _second = stream.next().await.unwrap().unwrap();
        assert_eq!(counts.0 .1.load(Ordering::SeqCst), 2);

        // A third is closed on arrival while the stream waits for one it may admit.
        let mut c3 = TcpStream::connect(addr).await.unwrap();
        let waiting = tokio::spawn(async move {
            let next = stream.next().await;
            (stream, next)
        });
        let mut buf = [0u8; 1];
        let n = tokio::time::timeout(Duration::from_secs(5), c3.read(&mut buf))
            .await
            .expect("closed at once")
            .unwrap_or(0);
        assert_eq!(n, 0);
        assert_eq!(counts.0 .0.load(Ordering::SeqCst), 1);

        // Once one closes, the next is admitted.
        drop(first);
        assert_eq!(counts.0 .1.load(Ordering::SeqCst), 1);
        let _c4 = TcpStream::connect(addr).await.unwrap();
        let (_stream, next) = tokio::time::timeout(Duration::from_secs(5), waiting)
            .await
            .unwrap()
            .unwrap();
        let _fourth = next.expect("a connection").expect("never an error");
        assert_eq!(counts.0 .1.load(Ordering::SeqCst), 2);
    }
}
