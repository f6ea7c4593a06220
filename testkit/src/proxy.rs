//! A TCP fault proxy. Everything that reaches one process from another
//! (Raft, forwarded writes, node → signer) goes through one: peers are given
//! the proxy's address, and each node connects from its own loopback source
//! address, so the proxy can tell the callers apart.
//!
//! * [`FaultProxy::block_from`] cuts every connection from one source and
//!   black-holes new ones (accepted, never answered, as a dropped network
//!   would) until [`FaultProxy::heal`]; [`FaultProxy::block_all`] does it
//!   for every source.
//! * [`FaultProxy::set_delay`] holds every chunk of data for a while before
//!   passing it on; [`FaultProxy::set_loss`] cuts a connection on a chunk
//!   with some probability.
//!
//! [`source_ip`] is the loopback address node `i` of a proxied cluster
//! connects to its peers from (`raft.source_ip`).

use std::collections::HashSet;
use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The source address of node `id`'s connections to its peers: `127.0.0.<10+id>`.
pub fn source_ip(id: u64) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(127, 0, 0, 10 + u8::try_from(id).unwrap_or(200)))
}

#[derive(Default)]
struct Shared {
    all_blocked: AtomicBool,
    blocked_from: Mutex<HashSet<IpAddr>>,
    delay_ms: AtomicU64,
    /// Probability (in millionths) that a chunk cuts its connection.
    loss_ppm: AtomicU64,
    stopped: AtomicBool,
    /// Both ends of every forwarded connection with its client's address.
    live: Mutex<Vec<(IpAddr, TcpStream)>>,
    /// Connections accepted while blocked, closed on heal.
    held: Mutex<Vec<TcpStream>>,
}

impl Shared {
    fn blocked(&self, source: IpAddr) -> bool {
        self.all_blocked.load(Ordering::SeqCst) || lock(&self.blocked_from).contains(&source)
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// A proxy listening on a loopback port, forwarding to one target.
pub struct FaultProxy {
    /// The address to give the target's peers.
    pub addr: String,
    shared: Arc<Shared>,
}

impl FaultProxy {
    /// A proxy on `listen` (`127.0.0.1:0` for any free port) forwarding to `target`.
    pub fn start(listen: &str, target: &str) -> std::io::Result<FaultProxy> {
        let listener = TcpListener::bind(listen)?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?.to_string();
        let shared = Arc::new(Shared::default());
        let target = target.to_owned();
        let s = shared.clone();
        std::thread::Builder::new()
            .name(format!("proxy {addr}"))
            .spawn(move || accept_loop(&listener, &target, &s))?;
        Ok(FaultProxy { addr, shared })
    }

    /// Cuts every connection through the proxy and holds new ones unanswered.
    pub fn block_all(&self) {
        self.shared.all_blocked.store(true, Ordering::SeqCst);
        self.cut(|_| true);
    }

    /// Like [`FaultProxy::block_all`], for connections from `source` only.
    pub fn block_from(&self, source: IpAddr) {
        lock(&self.shared.blocked_from).insert(source);
        self.cut(|ip| ip == source);
    }

    /// Holds each chunk of data `delay` before passing it on.
    pub fn set_delay(&self, delay: Duration) {
        self.shared
            .delay_ms
            .store(u64::try_from(delay.as_millis()).unwrap_or(u64::MAX), Ordering::SeqCst);
    }

    /// Cuts a connection on a chunk of data with probability `p` (0 to 1).
    pub fn set_loss(&self, p: f64) {
        let ppm = (p.clamp(0.0, 1.0) * 1e6) as u64;
        self.shared.loss_ppm.store(ppm, Ordering::SeqCst);
    }

    fn cut(&self, which: impl Fn(IpAddr) -> bool) {
        lock(&self.shared.live).retain(|(ip, s)| {
            if which(*ip) {
                let _ = s.shutdown(Shutdown::Both);
            }
            !which(*ip)
        });
    }

    /// Undoes every fault; connections held while blocked are closed, so their clients reconnect.
    pub fn heal(&self) {
        self.shared.all_blocked.store(false, Ordering::SeqCst);
        lock(&self.shared.blocked_from).clear();
        self.shared.delay_ms.store(0, Ordering::SeqCst);
        self.shared.loss_ppm.store(0, Ordering::SeqCst);
        for s in lock(&self.shared.held).drain(..) {
            let _ = s.shutdown(Shutdown::Both);
        }
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.shared.stopped.store(true, Ordering::SeqCst);
        self.block_all();
        self.heal();
    }
}

fn accept_loop(listener: &TcpListener, target: &str, shared: &Arc<Shared>) {
    while !shared.stopped.load(Ordering::SeqCst) {
        let (client, source) = match listener.accept() {
            Ok((c, peer)) => (c, peer.ip()),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(5));
                continue;
            }
            Err(_) => continue,
        };
        if client.set_nonblocking(false).is_err() {
            continue;
        }
        if shared.blocked(source) {
            lock(&shared.held).push(client);
            continue;
        }
        let Ok(upstream) = TcpStream::connect(target) else {
            continue;
        };
        let _ = client.set_nodelay(true);
        let _ = upstream.set_nodelay(true);
        let (Ok(c2), Ok(u2), Ok(c3), Ok(u3)) = (
            client.try_clone(),
            upstream.try_clone(),
            client.try_clone(),
            upstream.try_clone(),
        ) else {
            continue;
        };
        lock(&shared.live).extend([(source, c3), (source, u3)]);
        if shared.blocked(source) {
            // Blocked while connecting: the cut may have missed these two.
            let _ = client.shutdown(Shutdown::Both);
            let _ = upstream.shutdown(Shutdown::Both);
            continue;
        }
        let (s1, s2) = (shared.clone(), shared.clone());
        std::thread::spawn(move || pipe(client, upstream, &s1));
        std::thread::spawn(move || pipe(u2, c2, &s2));
    }
}

/// Copies `from` to `to` until either closes or a fault cuts them, then closes both.
fn pipe(mut from: TcpStream, mut to: TcpStream, shared: &Shared) {
    let mut buf = [0u8; 16 * 1024];
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let delay = shared.delay_ms.load(Ordering::Relaxed);
        if delay > 0 {
            std::thread::sleep(Duration::from_millis(delay));
        }
        let loss = shared.loss_ppm.load(Ordering::Relaxed);
        if loss > 0 && rand::random::<u64>() % 1_000_000 < loss {
            break;
        }
        if to.write_all(&buf[..n]).is_err() {
            break;
        }
    }
    let _ = from.shutdown(Shutdown::Both);
    let _ = to.shutdown(Shutdown::Both);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn echo_server() -> String {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap().to_string();
        std::thread::spawn(move || {
            for mut s in l.incoming().flatten() {
                std::thread::spawn(move || {
                    let mut b = [0u8; 64];
                    while let Ok(n) = s.read(&mut b) {
                        if n == 0 || s.write_all(&b[..n]).is_err() {
                            break;
                        }
                    }
                });
            }
        });
        addr
    }

    /// Whether a message goes through `proxy` and back (the client's source is 127.0.0.1).
    fn round_trip(proxy: &str) -> bool {
        let Ok(mut s) = TcpStream::connect(proxy) else {
            return false;
        };
        s.set_read_timeout(Some(Duration::from_millis(300))).unwrap();
        let mut b = [0u8; 4];
        s.write_all(b"ping").is_ok() && s.read_exact(&mut b).is_ok() && &b == b"ping"
    }

    #[test]
    fn blocks_and_heals() {
        let proxy = FaultProxy::start("127.0.0.1:0", &echo_server()).unwrap();
        let me = IpAddr::V4(Ipv4Addr::LOCALHOST);
        assert!(round_trip(&proxy.addr));
        proxy.block_from(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 99)));
        assert!(round_trip(&proxy.addr), "another source's block does not touch us");
        proxy.block_from(me);
        assert!(!round_trip(&proxy.addr));
        proxy.heal();
        assert!(round_trip(&proxy.addr));
        proxy.block_all();
        assert!(!round_trip(&proxy.addr));
        proxy.heal();
        proxy.set_loss(1.0);
        assert!(!round_trip(&proxy.addr));
        proxy.heal();
        assert!(round_trip(&proxy.addr));
    }
}
