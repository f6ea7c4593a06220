//! Keep-alive GETs from many connections, as wrk makes them: each
//! connection sends a request, reads the whole answer, and sends the next.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::stats::{micros, Run};

/// A read workload against one server.
#[derive(Debug, Clone)]
pub struct ReadLoad {
    /// The server.
    pub addr: SocketAddr,
    /// The paths requests ask for: each request one of them at random
    /// (uniformly; one path: always that one).
    pub paths: Vec<String>,
    /// Open connections, each with one request in flight.
    pub connections: usize,
    /// Client threads the connections are spread over.
    pub threads: usize,
    /// The timed window.
    pub duration: Duration,
}

/// How long connections get to open before the clock starts.
const SETTLE: Duration = Duration::from_millis(300);

impl ReadLoad {
    /// Runs the workload and returns what completed inside the window.
    pub fn run(&self) -> Result<Run, String> {
        if self.paths.is_empty() {
            return Err("no path to read".into());
        }
        let requests: Arc<[Box<[u8]>]> = self
            .paths
            .iter()
            .map(|path| {
                format!(
                    "GET {path} HTTP/1.1\r\nHost: {}\r\nUser-Agent: seal-bench\r\n\r\n",
                    self.addr
                )
                .into_bytes()
                .into_boxed_slice()
            })
            .collect();
        let start = Instant::now() + SETTLE;
        let deadline = start + self.duration;
        let threads = self.threads.clamp(1, self.connections.max(1));
        let workers: Vec<_> = (0..threads)
            .map(|t| {
                // Connections t, t + threads, …: spread evenly.
                let conns = (t..self.connections).step_by(threads).count();
                let (addr, requests) = (self.addr, requests.clone());
                std::thread::spawn(move || -> Result<Vec<(u64, Vec<u32>)>, String> {
                    let rt = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                        .map_err(|e| format!("runtime: {e}"))?;
                    rt.block_on(async move {
                        let tasks: Vec<_> = (0..conns)
                            .map(|c| {
                                let seed = ((t * 7919 + c) as u64) ^ 0x9E37_79B9_7F4A_7C15;
                                tokio::spawn(connection(addr, requests.clone(), seed, start, deadline))
                            })
                            .collect();
                        let mut out = Vec::new();
                        for t in tasks {
                            out.push(t.await.map_err(|e| format!("connection task: {e}"))?);
                        }
                        Ok(out)
                    })
                })
            })
            .collect();
        let mut parts = Vec::new();
        for w in workers {
            parts.extend(w.join().map_err(|_| "a client thread panicked".to_owned())??);
        }
        let run = Run::merge(self.duration, parts);
        if run.ok == 0 {
            return Err(format!(
                "no request for {} on {} succeeded ({} errors)",
                self.paths[0], self.addr, run.errors
            ));
        }
        Ok(run)
    }
}

/// A uniform index below `len` from a xorshift64 state (`len` ≥ 1).
pub(crate) fn next_index(state: &mut u64, len: usize) -> usize {
    if len == 1 {
        return 0;
    }
    let mut x = *state;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    *state = x;
    (x % len as u64) as usize
}

/// One connection's loop: the errors it saw and the latency of each
/// successful request, in microseconds.
async fn connection(
    addr: SocketAddr,
    requests: Arc<[Box<[u8]>]>,
    mut seed: u64,
    start: Instant,
    deadline: Instant,
) -> (u64, Vec<u32>) {
    let mut latencies = Vec::with_capacity(1 << 16);
    let mut errors = 0u64;
    let mut buf: Vec<u8> = Vec::with_capacity(16 * 1024);
    let mut stream = TcpStream::connect(addr).await.ok();
    tokio::time::sleep_until(start.into()).await;
    while Instant::now() < deadline {
        let s = match stream.as_mut() {
            Some(s) => s,
            None => match TcpStream::connect(addr).await {
                Ok(s) => stream.insert(s),
                Err(_) => {
                    errors += 1;
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            },
        };
        let _ = s.set_nodelay(true);
        let request = &requests[next_index(&mut seed, requests.len())];
        let sent = Instant::now();
        if s.write_all(request).await.is_err() {
            stream = None;
            errors += 1;
            continue;
        }
        buf.clear();
        let answer = loop {
            match parse_response(&buf) {
                Ok(Parsed::Incomplete) => {}
                Ok(Parsed::Done { status, close }) => break Ok((status, close)),
                Err(e) => break Err(e),
            }
            buf.reserve(8 * 1024);
            match s.read_buf(&mut buf).await {
                Ok(0) => break Err("closed"),
                Ok(_) => {}
                Err(_) => break Err("read failed"),
            }
        };
        let done = Instant::now();
        match answer {
            Ok((status, close)) => {
                if done <= deadline {
                    if (200..300).contains(&status) {
                        latencies.push(micros(done - sent));
                    } else {
                        errors += 1;
                    }
                }
                if close {
                    stream = None;
                }
            }
            Err(_) => {
                stream = None;
                // A keep-alive connection the server closed while idle is
                // not an error: the request is sent again on a new one.
                if !buf.is_empty() {
                    errors += 1;
                }
            }
        }
    }
    (errors, latencies)
}

/// How far an answer in a buffer has arrived.
#[derive(Debug, PartialEq, Eq)]
pub enum Parsed {
    /// More bytes are needed.
    Incomplete,
    /// The whole answer is in the buffer.
    Done {
        /// Its status code.
        status: u16,
        /// The server will close the connection after it.
        close: bool,
    },
}

/// Parses the HTTP/1.1 answer at the start of `buf` (a Content-Length or
/// chunked body).
pub fn parse_response(buf: &[u8]) -> Result<Parsed, &'static str> {
    let Some(head_end) = memchr::memmem::find(buf, b"\r\n\r\n") else {
        return Ok(Parsed::Incomplete);
    };
    let head = std::str::from_utf8(&buf[..head_end]).map_err(|_| "header is not UTF-8")?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status: u16 = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or("bad status line")?;
    let (mut length, mut chunked, mut close) = (None, false, status_line.starts_with("HTTP/1.0"));
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            return Err("bad header line");
        };
        let value = value.trim();
        if name.eq_ignore_ascii_case("content-length") {
            length = Some(value.parse::<usize>().map_err(|_| "bad Content-Length")?);
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            chunked = value.eq_ignore_ascii_case("chunked");
        } else if name.eq_ignore_ascii_case("connection") {
            close = value.eq_ignore_ascii_case("close");
        }
    }
    let body = head_end + 4;
    let complete = if chunked {
        chunked_end(buf, body)?.is_some()
    } else {
        buf.len() >= body + length.unwrap_or(0)
    };
    Ok(if complete {
        Parsed::Done { status, close }
    } else {
        Parsed::Incomplete
    })
}

/// Where a chunked body starting at `pos` ends, once all of it is in `buf`.
fn chunked_end(buf: &[u8], mut pos: usize) -> Result<Option<usize>, &'static str> {
    loop {
        let Some(eol) = memchr::memmem::find(&buf[pos..], b"\r\n") else {
            return Ok(None);
        };
        let line = std::str::from_utf8(&buf[pos..pos + eol]).map_err(|_| "bad chunk size")?;
        let size_hex = line.split(';').next().unwrap_or_default().trim();
        let size = usize::from_str_radix(size_hex, 16).map_err(|_| "bad chunk size")?;
        pos += eol + 2;
        if size == 0 {
            // Trailers, if any, end with an empty line.
            return Ok(if buf[pos..].starts_with(b"\r\n") {
                Some(pos + 2)
            } else {
                memchr::memmem::find(&buf[pos..], b"\r\n\r\n").map(|e| pos + e + 4)
            });
        }
        pos += size + 2;
        if pos > buf.len() {
            return Ok(None);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_paths_cover_every_index_and_stay_in_range() {
        let mut state = 0x9E37_79B9_7F4A_7C15;
        let mut seen = [0u32; 7];
        for _ in 0..7_000 {
            seen[next_index(&mut state, 7)] += 1;
        }
        assert!(seen.iter().all(|n| (700..1_300).contains(n)), "{seen:?}");
        assert_eq!(next_index(&mut state, 1), 0);
    }

    /// Every proper prefix of `answer` is incomplete; the whole is done with a 200, kept open.
    fn complete_only_whole(answer: &[u8]) {
        for cut in 0..answer.len() {
            assert_eq!(parse_response(&answer[..cut]), Ok(Parsed::Incomplete), "{cut}");
        }
        let done = Parsed::Done {
            status: 200,
            close: false,
        };
        assert_eq!(parse_response(answer), Ok(done));
    }

    #[test]
    fn answers_are_complete_only_with_their_whole_body() {
        complete_only_whole(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello");
        let c = b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\nConnection: close\r\n\r\n";
        assert_eq!(
            parse_response(c),
            Ok(Parsed::Done {
                status: 404,
                close: true
            })
        );
    }

    #[test]
    fn chunked_answers_end_at_the_last_chunk() {
        complete_only_whole(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n3;x=y\r\nabc\r\n0\r\n\r\n",
        );
        assert!(parse_response(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n").is_err());
        assert!(parse_response(b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n").is_err());
    }
}
