//! A TCP proxy that can partition the node behind it: peers are given the proxy's address, and
//! [`FaultProxy::block`] cuts every connection through it and black-holes new ones (accepted,
//! never answered, as a dropped network would) until [`FaultProxy::heal`];
//! [`FaultProxy::block_from`] does the same for connections from one source address only (each
//! node connects to its peers from its own `raft.source_ip`).

use std::collections::HashSet;
use std::io::{Read, Write};
use std::net::{IpAddr, Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[derive(Default)]
struct Shared {
    blocked: AtomicBool,
    blocked_from: Mutex<HashSet<IpAddr>>,
    stopped: AtomicBool,
    /// Both ends of every forwarded connection with its client's address, shut down on `block`.
    live: Mutex<Vec<(IpAddr, TcpStream)>>,
    /// Connections accepted while blocked, closed on `heal`.
    held: Mutex<Vec<TcpStream>>,
}

pub struct FaultProxy {
    /// The address to give peers.
    pub addr: String,
    shared: Arc<Shared>,
}

impl FaultProxy {
    /// A proxy on a free loopback port forwarding to `target`.
    pub fn start(target: &str) -> FaultProxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let shared = Arc::new(Shared::default());
        let target = target.to_owned();
        let s = shared.clone();
        std::thread::spawn(move || accept_loop(listener, &target, &s));
        FaultProxy { addr, shared }
    }

    /// Cuts every connection through the proxy and holds new ones unanswered.
    pub fn block(&self) {
        self.shared.blocked.store(true, Ordering::SeqCst);
        self.cut(|_| true);
    }

    /// Like [`FaultProxy::block`], for connections from `source` only.
    pub fn block_from(&self, source: IpAddr) {
        self.shared.blocked_from.lock().unwrap().insert(source);
        self.cut(|ip| ip == source);
    }

    fn cut(&self, which: impl Fn(IpAddr) -> bool) {
        self.shared.live.lock().unwrap().retain(|(ip, s)| {
            if which(*ip) {
                let _ = s.shutdown(Shutdown::Both);
            }
            !which(*ip)
        });
    }

    /// Forwards again; connections held while blocked are closed, so their clients reconnect.
    pub fn heal(&self) {
        self.shared.blocked.store(false, Ordering::SeqCst);
        self.shared.blocked_from.lock().unwrap().clear();
        for s in self.shared.held.lock().unwrap().drain(..) {
            let _ = s.shutdown(Shutdown::Both);
        }
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.shared.stopped.store(true, Ordering::SeqCst);
        self.block();
        self.heal();
    }
}

fn accept_loop(listener: TcpListener, target: &str, shared: &Arc<Shared>) {
    while !shared.stopped.load(Ordering::SeqCst) {
        let (client, source) = match listener.accept() {
            Ok((c, peer)) => (c, peer.ip()),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(5));
                continue;
            }
            Err(_) => continue,
        };
        client.set_nonblocking(false).unwrap();
        let blocked = || shared.blocked.load(Ordering::SeqCst) || shared.blocked_from.lock().unwrap().contains(&source);
        if blocked() {
            shared.held.lock().unwrap().push(client);
            continue;
        }
        let Ok(upstream) = TcpStream::connect(target) else {
            continue;
        };
        let _ = client.set_nodelay(true);
        let _ = upstream.set_nodelay(true);
        {
            let mut live = shared.live.lock().unwrap();
            live.push((source, client.try_clone().unwrap()));
            live.push((source, upstream.try_clone().unwrap()));
        }
        if blocked() {
            // Blocked while connecting: `block` may have drained `live` before the push.
            let _ = client.shutdown(Shutdown::Both);
            let _ = upstream.shutdown(Shutdown::Both);
            continue;
        }
        let (c2, u2) = (client.try_clone().unwrap(), upstream.try_clone().unwrap());
        std::thread::spawn(move || pipe(client, upstream));
        std::thread::spawn(move || pipe(u2, c2));
    }
}

/// Copies `from` to `to` until either closes, then closes both.
fn pipe(mut from: TcpStream, mut to: TcpStream) {
    let mut buf = [0u8; 16 * 1024];
    loop {
        match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if to.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
        }
    }
    let _ = from.shutdown(Shutdown::Both);
    let _ = to.shutdown(Shutdown::Both);
}
