//! Fuzzing the node's HTTP edge (feature `testing`): the bodies of the cargo-fuzz targets
//! `multipart` and `http_request` in `fuzz/`, here so that the unit tests below run the same code
//! over the checked-in seed inputs on every `cargo test`.
//!
//! * [`fuzz_multipart`] feeds a `Content-Type` value and a body to [`crate::multipart`]'s parser.
//! * [`FuzzNode`] is a single dev node (plain HTTP, in-process signer, data in a directory of the
//!   caller's); [`FuzzNode::exchange`] writes raw bytes to one connection served by the node's
//!   real router and connection code ([`crate::listen::serve_connection`]) and returns what the
//!   node answered; [`fuzz_http_request`] checks that the answer is well-formed HTTP.
//!
//! The property in both: no panic, whatever the bytes; and whatever the node answers parses as
//! HTTP/1 responses (or, after the HTTP/2 preface, as HTTP/2 frames).

use std::io;
use std::path::Path;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::config::{Env, UploadLimits};
use crate::listen::ConnectionLimits;
use crate::multipart::parse_upload;
use crate::server::{dev_config, start, Running};

/// The preface an HTTP/2 client opens a connection with (prior knowledge).
pub const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Limits small enough that a fuzzer reaches them.
const FUZZ_UPLOAD_LIMITS: UploadLimits = UploadLimits {
    max_body_bytes: 1 << 20,
    max_parts: 8,
    max_file_bytes: 64 * 1024,
    max_forward_bytes_in_flight: 1 << 20,
};

/// Parses `data` as an upload: the bytes up to the first `\n` are the `Content-Type` value, the
/// rest is the body. Panics if the parser panics or accepts more than its limits allow.
pub fn fuzz_multipart(data: &[u8]) {
    let (content_type, body) = match data.iter().position(|b| *b == b'\n') {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &[][..]),
    };
    let content_type = std::str::from_utf8(content_type).ok();
    let Ok(files) = parse_upload(content_type, body, &FUZZ_UPLOAD_LIMITS) else {
        return;
    };
    assert!(files.len() <= FUZZ_UPLOAD_LIMITS.max_parts, "{} parts", files.len());
    for f in &files {
        assert!(
            f.bytes.len() as u64 <= FUZZ_UPLOAD_LIMITS.max_file_bytes,
            "part {:?}: {} bytes",
            f.role,
            f.bytes.len()
        );
        assert!(seal_tuf::metadata::is_valid_role(&f.role), "accepted role {:?}", f.role);
        assert!(
            f.bytes.is_empty() || body.windows(f.bytes.len()).any(|w| w == f.bytes),
            "part {:?} is not part of the body",
            f.role
        );
    }
}

/// Sends `data` to `node` on one connection and panics unless the answer is well-formed.
pub fn fuzz_http_request(node: &FuzzNode, data: &[u8]) {
    let answer = node.exchange(data);
    let checked = if data.starts_with(H2_PREFACE) {
        check_h2_frames(&answer)
    } else {
        check_http1_responses(&answer)
    };
    if let Err(e) = checked {
        panic!(
            "malformed answer ({e}) to {:?}:\n{:?}",
            String::from_utf8_lossy(data),
            String::from_utf8_lossy(&answer)
        );
    }
}

/// A single dev node serving fuzz inputs, with its own runtime.
pub struct FuzzNode {
    runtime: tokio::runtime::Runtime,
    app: axum::Router,
    requests: Arc<Requests>,
    _running: Running,
}

/// The requests in progress, and how many of them wait for body bytes.
#[derive(Default)]
struct Requests {
    in_flight: AtomicUsize,
    waiting_for_body: AtomicUsize,
}

impl Requests {
    /// Whether every request in progress waits for its body.
    fn all_wait_for_body(&self) -> bool {
        self.in_flight.load(Ordering::SeqCst) == self.waiting_for_body.load(Ordering::SeqCst)
    }
}

/// How long [`FuzzNode::exchange`] waits, once the node has read every byte and every request
/// it started is answered or waits for body bytes that will not come, for more output before it
/// closes the connection.
const QUIET: Duration = Duration::from_millis(2);
/// The longest exchange.
const EXCHANGE_MAX: Duration = Duration::from_secs(5);

impl FuzzNode {
    /// Starts a dev node (`seal-node dev`'s configuration: plain HTTP on a free loopback port,
    /// in-process ed25519 signer, no authentication) with its data in `data_dir`.
    pub fn start(data_dir: &Path) -> Result<FuzzNode, String> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .map_err(|e| e.to_string())?;
        let env = Env::new();
        let running = runtime.block_on(async {
            let config = dev_config("127.0.0.1:0", data_dir, &env).map_err(|e| e.to_string())?;
            start(config, &env, true).await.map_err(|e| e.to_string())
        })?;
        let requests = Arc::new(Requests::default());
        let counting = requests.clone();
        let app = running.app().layer(axum::middleware::from_fn(
            move |req: axum::extract::Request, next: axum::middleware::Next| {
                let counting = counting.clone();
                async move {
                    let _guard = Counted::new(counting.clone());
                    let req = req.map(|body| {
                        axum::body::Body::new(WatchedBody {
                            inner: body,
                            requests: counting,
                            waiting: false,
                        })
                    });
                    next.run(req).await
                }
            },
        ));
        Ok(FuzzNode {
            runtime,
            app,
            requests,
            _running: running,
        })
    }

    /// Writes `request` to a new connection served as the node's listener serves one, and returns
    /// every byte the node wrote. The connection is closed (the node reads end of stream) once the
    /// node has read everything and stays quiet, or after 5 s. Panics if serving it panicked.
    pub fn exchange(&self, request: &[u8]) -> Vec<u8> {
        let shared = Arc::new(Shared::default());
        let io = FuzzIo {
            input: request.to_vec(),
            pos: 0,
            shared: shared.clone(),
        };
        let limits = ConnectionLimits {
            header_read_timeout: Duration::from_secs(2),
            idle_timeout: Duration::from_secs(2),
            ..ConnectionLimits::default()
        };
        let app = self.app.clone();
        self.runtime.block_on(async {
            let conn = tokio::spawn(crate::listen::serve_connection(io, app, limits));
            let started = Instant::now();
            let mut last_written = usize::MAX;
            let mut last_change = Instant::now();
            while !conn.is_finished() && started.elapsed() < EXCHANGE_MAX {
                tokio::time::sleep(Duration::from_millis(1)).await;
                let written = shared.output.lock().map(|o| o.len()).unwrap_or(0);
                if written != last_written {
                    last_written = written;
                    last_change = Instant::now();
                    continue;
                }
                if shared.starved.load(Ordering::SeqCst)
                    && self.requests.all_wait_for_body()
                    && last_change.elapsed() >= QUIET
                {
                    break;
                }
            }
            shared.close();
            match tokio::time::timeout(EXCHANGE_MAX, conn).await {
                Ok(Err(e)) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
                Ok(_) => {}
                Err(_) => panic!("the connection did not end within {EXCHANGE_MAX:?} of its end of stream"),
            }
        });
        let output = shared.output.lock().map(|o| o.clone()).unwrap_or_default();
        output
    }
}

/// Counts a request in progress for as long as it lives.
struct Counted(Arc<Requests>);

impl Counted {
    fn new(requests: Arc<Requests>) -> Counted {
        requests.in_flight.fetch_add(1, Ordering::SeqCst);
        Counted(requests)
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

/// A request body that counts itself while its reader waits for bytes.
struct WatchedBody {
    inner: axum::body::Body,
    requests: Arc<Requests>,
    waiting: bool,
}

impl WatchedBody {
    fn set_waiting(&mut self, waiting: bool) {
        if waiting != self.waiting {
            self.waiting = waiting;
            if waiting {
                self.requests.waiting_for_body.fetch_add(1, Ordering::SeqCst);
            } else {
                self.requests.waiting_for_body.fetch_sub(1, Ordering::SeqCst);
            }
        }
    }
}

impl hyper::body::Body for WatchedBody {
    type Data = axum::body::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<hyper::body::Frame<Self::Data>, Self::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        self.set_waiting(polled.is_pending());
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for WatchedBody {
    fn drop(&mut self) {
        self.set_waiting(false);
    }
}

/// What the test side and the connection share.
#[derive(Default)]
struct Shared {
    output: Mutex<Vec<u8>>,
    /// The node read every input byte and asked for more.
    starved: AtomicBool,
    /// End of stream is to be read once the input is consumed.
    eof: AtomicBool,
    waker: Mutex<Option<Waker>>,
}

impl Shared {
    fn close(&self) {
        self.eof.store(true, Ordering::SeqCst);
        if let Some(w) = self.waker.lock().ok().and_then(|mut w| w.take()) {
            w.wake();
        }
    }
}

/// The node's side of the connection: reads the input, then waits (no end of stream) until
/// closed; collects what is written.
struct FuzzIo {
    input: Vec<u8>,
    pos: usize,
    shared: Arc<Shared>,
}

impl AsyncRead for FuzzIo {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        if self.pos < self.input.len() {
            let n = buf.remaining().min(self.input.len() - self.pos);
            let start = self.pos;
            buf.put_slice(&self.input[start..start + n]);
            self.pos += n;
            return Poll::Ready(Ok(()));
        }
        if let Ok(mut w) = self.shared.waker.lock() {
            *w = Some(cx.waker().clone());
        }
        if self.shared.eof.load(Ordering::SeqCst) {
            return Poll::Ready(Ok(()));
        }
        self.shared.starved.store(true, Ordering::SeqCst);
        Poll::Pending
    }
}

impl AsyncWrite for FuzzIo {
    fn poll_write(self: Pin<&mut Self>, _: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
        match self.shared.output.lock() {
            Ok(mut out) => {
                out.extend_from_slice(data);
                Poll::Ready(Ok(data.len()))
            }
            Err(_) => Poll::Ready(Err(io::Error::other("output lock poisoned"))),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Checks that `out` is a sequence of well-formed HTTP/1.x responses: a status line, header
/// lines, and a body as the headers frame it (none for 1xx, 204 and 304; chunked; of
/// `Content-Length`; or up to the end). A response whose `Content-Length` body is absent is taken
/// as the answer to a `HEAD` when what follows it is another response or nothing.
pub fn check_http1_responses(mut out: &[u8]) -> Result<(), String> {
    while !out.is_empty() {
        let head_end = find(out, b"\r\n\r\n").ok_or("a response head without its blank line")?;
        let head = &out[..head_end];
        let mut rest = &out[head_end + 4..];
        let mut lines = crlf_lines(head).into_iter();
        let status = parse_status_line(lines.next().unwrap_or_default())?;
        let mut content_length = None;
        let mut chunked = false;
        for line in lines {
            let colon = line
                .iter()
                .position(|b| *b == b':')
                .ok_or("a header line without ':'")?;
            let (name, value) = (&line[..colon], &line[colon + 1..]);
            if name.is_empty() || !name.iter().all(|b| is_token_byte(*b)) {
                return Err(format!("header name {:?}", String::from_utf8_lossy(name)));
            }
            if value.iter().any(|b| (*b < 0x20 && *b != b'\t') || *b == 0x7f) {
                return Err(format!("header value {:?}", String::from_utf8_lossy(value)));
            }
            let value = String::from_utf8_lossy(value).trim().to_ascii_lowercase();
            if name.eq_ignore_ascii_case(b"content-length") {
                let n: usize = value.parse().map_err(|_| format!("Content-Length {value:?}"))?;
                if content_length.is_some_and(|m| m != n) {
                    return Err("two different Content-Length headers".into());
                }
                content_length = Some(n);
            } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
                chunked = value.split(',').map(str::trim).any(|c| c == "chunked");
            }
        }
        if chunked && content_length.is_some() {
            return Err("both Content-Length and chunked".into());
        }
        let bodiless = (100..200).contains(&status) || status == 204 || status == 304;
        if bodiless {
        } else if chunked {
            rest = skip_chunked(rest)?;
        } else if let Some(n) = content_length {
            let next_is_response = |r: &[u8]| r.is_empty() || r.starts_with(b"HTTP/1.");
            if rest.len() >= n && next_is_response(&rest[n..]) {
                rest = &rest[n..];
            } else if !next_is_response(rest) {
                return Err(format!("a body of {} bytes where Content-Length says {n}", rest.len()));
            }
        } else {
            rest = &[];
        }
        out = rest;
    }
    Ok(())
}

/// `head` split at each CRLF.
fn crlf_lines(mut head: &[u8]) -> Vec<&[u8]> {
    let mut lines = Vec::new();
    while let Some(i) = find(head, b"\r\n") {
        lines.push(&head[..i]);
        head = &head[i + 2..];
    }
    lines.push(head);
    lines
}

fn parse_status_line(line: &[u8]) -> Result<u16, String> {
    let bad = || format!("status line {:?}", String::from_utf8_lossy(line));
    let rest = line
        .strip_prefix(b"HTTP/1.1 ")
        .or_else(|| line.strip_prefix(b"HTTP/1.0 "))
        .ok_or_else(bad)?;
    if rest.len() < 3 || !rest[..3].iter().all(u8::is_ascii_digit) {
        return Err(bad());
    }
    let reason = &rest[3..];
    if !(reason.is_empty() || reason[0] == b' ') || reason.iter().any(|b| (*b < 0x20 && *b != b'\t') || *b == 0x7f) {
        return Err(bad());
    }
    let code = std::str::from_utf8(&rest[..3])
        .ok()
        .and_then(|s| s.parse::<u16>().ok())
        .ok_or_else(bad)?;
    if !(100..600).contains(&code) {
        return Err(bad());
    }
    Ok(code)
}

/// The bytes after a chunked body at the start of `body`.
fn skip_chunked(mut body: &[u8]) -> Result<&[u8], String> {
    loop {
        let eol = find(body, b"\r\n").ok_or("a chunk size line without CRLF")?;
        let size_text = String::from_utf8_lossy(&body[..eol]);
        let size_text = size_text.split(';').next().unwrap_or_default().trim();
        let size = usize::from_str_radix(size_text, 16).map_err(|_| format!("chunk size {size_text:?}"))?;
        body = &body[eol + 2..];
        if size == 0 {
            // Trailers, then a blank line.
            loop {
                let eol = find(body, b"\r\n").ok_or("chunked trailers without their blank line")?;
                let line = &body[..eol];
                body = &body[eol + 2..];
                if line.is_empty() {
                    return Ok(body);
                }
            }
        }
        if body.len() < size + 2 || &body[size..size + 2] != b"\r\n" {
            return Err(format!("a chunk of {size} bytes not followed by CRLF"));
        }
        body = &body[size + 2..];
    }
}

/// Checks that `out` is a sequence of whole HTTP/2 frames, the first of them the server's
/// SETTINGS.
pub fn check_h2_frames(mut out: &[u8]) -> Result<(), String> {
    let mut first = true;
    while !out.is_empty() {
        if out.len() < 9 {
            return Err(format!("{} bytes of a frame header", out.len()));
        }
        let len = usize::from(out[0]) << 16 | usize::from(out[1]) << 8 | usize::from(out[2]);
        let kind = out[3];
        if first && kind != 0x4 {
            return Err(format!("first frame of type {kind}, not SETTINGS"));
        }
        first = false;
        if out.len() < 9 + len {
            return Err(format!("a frame of {len} bytes with {} present", out.len() - 9));
        }
        out = &out[9 + len..];
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn seeds(target: &str) -> Vec<(PathBuf, Vec<u8>)> {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/seeds").join(target);
        let mut out: Vec<_> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .map(|e| {
                let p = e.unwrap().path();
                let bytes = std::fs::read(&p).unwrap();
                (p, bytes)
            })
            .collect();
        out.sort();
        assert!(!out.is_empty(), "no seeds in {}", dir.display());
        out
    }

    #[test]
    fn multipart_seeds_and_odd_bodies_parse_or_are_refused() {
        let mut accepted = 0;
        for (path, data) in seeds("multipart") {
            fuzz_multipart(&data);
            let (ct, body) = data.split_at(data.iter().position(|b| *b == b'\n').unwrap());
            if parse_upload(std::str::from_utf8(ct).ok(), &body[1..], &FUZZ_UPLOAD_LIMITS).is_ok() {
                accepted += 1;
            } else {
                panic!("seed {} is refused", path.display());
            }
        }
        assert!(accepted > 0);
        for odd in [
            &b""[..],
            b"\n",
            b"multipart/form-data; boundary=x\n--x",
            b"multipart/form-data; boundary=x\n--x\r\n\r\n--x--",
            b"multipart/form-data; boundary=\"\"\n----\r\n",
            b"multipart/form-data; boundary=x\n--x\r\nContent-Disposition: form-data; filename=\"root\"\r\n\r\n{}\r\n--x--\r\n",
        ] {
            fuzz_multipart(odd);
        }
    }

    #[test]
    fn the_checker_tells_responses_from_garbage() {
        let ok = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n";
        check_http1_responses(ok).unwrap();
        check_http1_responses(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n").unwrap();
        // A HEAD answer: a length, no body.
        check_http1_responses(b"HTTP/1.1 200 OK\r\ncontent-length: 9\r\n\r\n").unwrap();
        for bad in [
            &b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}x"[..],
            b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\n{}",
            b"HTTP/1.1 2000 OK\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nbad header\r\n\r\n",
            b"HTTP/1.1 200 OK\r\n",
            b"hello",
        ] {
            assert!(
                check_http1_responses(bad).is_err(),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
        check_h2_frames(&[0, 0, 0, 4, 0, 0, 0, 0, 0]).unwrap();
        assert!(check_h2_frames(&[0, 0, 6, 4, 0, 0, 0, 0, 0]).is_err());
    }

    #[test]
    fn http_seeds_and_odd_requests_get_well_formed_answers() {
        let dir = tempfile::tempdir().unwrap();
        let node = FuzzNode::start(dir.path()).unwrap();
        for (path, data) in seeds("http_request") {
            let answer = node.exchange(&data);
            assert!(
                answer.starts_with(b"HTTP/1.1 "),
                "{}: {:?}",
                path.display(),
                String::from_utf8_lossy(&answer)
            );
            fuzz_http_request(&node, &data);
        }
        for odd in [
            &b""[..],
            b"GET / HTTP/1.1\r\n\r\n",
            b"GET /v2/ HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nshort",
            b"POST /v2/a/b/_trust/tuf/ HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
            b"\x00\xff\r\n\r\n",
            H2_PREFACE,
        ] {
            fuzz_http_request(&node, odd);
        }
    }
}
