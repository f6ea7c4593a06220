//! The one small HTTP/1.1 client of Seal's process tests and seal-chaos:
//! blocking, one connection per request as Notary's CLI makes them, plain
//! HTTP on loopback. It tells a request that never left (the operation
//! certainly did not happen) from one whose answer was lost (it may have).
//!
//! [`send`] is the whole client; [`try_request`] and [`request`] are the
//! tests' shorthands with a 30 s wait, the second panicking on failure.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::Duration;

/// How long a client waits to connect.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// How long [`try_request`] and [`request`] wait for an answer.
pub const TEST_TIMEOUT: Duration = Duration::from_secs(30);

/// An HTTP response.
#[derive(Debug, Clone)]
pub struct Response {
    /// The status code.
    pub status: u16,
    /// Headers, names lower-cased.
    pub headers: BTreeMap<String, String>,
    /// The body (de-chunked).
    pub body: Vec<u8>,
}

impl Response {
    /// A header's value.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(&name.to_ascii_lowercase()).map(String::as_str)
    }

    /// The body as text (invalid UTF-8 replaced).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The Notary error code of an error body (`errors[0].code`), or "".
    pub fn error_code(&self) -> String {
        let v: serde_json::Value = serde_json::from_slice(&self.body).unwrap_or_default();
        v["errors"][0]["code"].as_str().unwrap_or("").to_owned()
    }

    /// `status` and the body as text, cut short, for error messages.
    pub fn summary(&self) -> String {
        let text = String::from_utf8_lossy(&self.body);
        let text: String = text.chars().take(200).collect();
        format!("{} {}", self.status, text.trim())
    }
}

/// Why a request got no response.
#[derive(Debug)]
pub enum HttpError {
    /// The connection was never made: the server never saw the request.
    NotSent(String),
    /// The request may have reached the server, but no (whole) answer came back.
    NoAnswer(String),
}

impl std::error::Error for HttpError {}

impl std::fmt::Display for HttpError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HttpError::NotSent(e) => write!(f, "not sent: {e}"),
            HttpError::NoAnswer(e) => write!(f, "no answer: {e}"),
        }
    }
}

/// [`send`] with [`TEST_TIMEOUT`].
pub fn try_request(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Result<Response, HttpError> {
    send(addr, method, path, headers, body, TEST_TIMEOUT)
}

/// [`try_request`], panicking (with the method and path) when no answer comes.
#[track_caller]
pub fn request(addr: &str, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Response {
    try_request(addr, method, path, headers, body).unwrap_or_else(|e| panic!("{method} {path}: {e}"))
}

/// `GET /_notary_server/health` on the node at `addr` answered 200.
pub fn healthy(addr: &str) -> bool {
    send(addr, "GET", "/_notary_server/health", &[], &[], Duration::from_secs(2)).is_ok_and(|r| r.status == 200)
}

/// Sends one request to `addr` (`host:port`) and reads the whole answer, waiting at most
/// `timeout` for it.
pub fn send(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
    timeout: Duration,
) -> Result<Response, HttpError> {
    let sock: SocketAddr = addr
        .to_socket_addrs()
        .map_err(|e| HttpError::NotSent(format!("address {addr}: {e}")))?
        .next()
        .ok_or_else(|| HttpError::NotSent(format!("address {addr}: no address")))?;
    let mut s = TcpStream::connect_timeout(&sock, CONNECT_TIMEOUT).map_err(|e| HttpError::NotSent(e.to_string()))?;
    let no_answer = |e: std::io::Error| HttpError::NoAnswer(e.to_string());
    s.set_read_timeout(Some(timeout)).map_err(no_answer)?;
    s.set_write_timeout(Some(timeout)).map_err(no_answer)?;
    let _ = s.set_nodelay(true);
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).map_err(no_answer)?;
    s.write_all(body).map_err(no_answer)?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).map_err(no_answer)?;
    parse(&raw, method == "HEAD").map_err(|e| HttpError::NoAnswer(e.to_owned()))
}

/// A response read to the end of the connection; `head` for the answer to a HEAD request
/// (headers only, whatever its Content-Length says).
fn parse(raw: &[u8], head_request: bool) -> Result<Response, &'static str> {
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or("the connection closed before the response headers ended")?;
    let head = String::from_utf8_lossy(&raw[..split]);
    let mut lines = head.split("\r\n");
    let status: u16 = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|c| c.parse().ok())
        .ok_or("a bad status line")?;
    let mut headers = BTreeMap::new();
    for l in lines {
        if let Some((k, v)) = l.split_once(':') {
            headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_owned());
        }
    }
    let rest = &raw[split + 4..];
    let body = if head_request || status == 204 || status == 304 {
        Vec::new()
    } else if headers.get("transfer-encoding").is_some_and(|t| t.contains("chunked")) {
        dechunk(rest)?
    } else if let Some(len) = headers.get("content-length") {
        let len: usize = len.parse().map_err(|_| "a bad Content-Length")?;
        if rest.len() < len {
            return Err("the connection closed before the body ended");
        }
        rest[..len].to_vec()
    } else {
        rest.to_vec()
    };
    Ok(Response { status, headers, body })
}

fn dechunk(mut b: &[u8]) -> Result<Vec<u8>, &'static str> {
    let mut out = Vec::new();
    loop {
        let eol = b.windows(2).position(|w| w == b"\r\n").ok_or("a truncated chunk")?;
        let n = usize::from_str_radix(String::from_utf8_lossy(&b[..eol]).trim(), 16).map_err(|_| "a bad chunk size")?;
        if n == 0 {
            return Ok(out);
        }
        let data = b.get(eol + 2..eol + 2 + n).ok_or("a truncated chunk")?;
        out.extend_from_slice(data);
        b = b.get(eol + 2 + n + 2..).ok_or("a truncated chunk")?;
    }
}

/// A multipart/form-data body with one part per role, as the Notary CLI sends;
/// returns the content type and the body.
pub fn multipart(files: &[(String, Vec<u8>)]) -> (String, Vec<u8>) {
    let boundary = "a1d52fff367cf5b48540c8ca5c1fdb443949f851ec1779623269744e286e";
    let mut body = Vec::new();
    for (role, bytes) in files {
        body.extend_from_slice(
            format!(
                "--{boundary}\r\nContent-Disposition: form-data; name=\"files\"; filename=\"{role}\"\r\n\
                 Content-Type: application/octet-stream\r\n\r\n"
            )
            .as_bytes(),
        );
        body.extend_from_slice(bytes);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={boundary}"), body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_lengths_and_chunks_and_refuses_truncation() {
        let r = parse(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nX-A: b\r\n\r\nabcdef", false).unwrap();
        assert_eq!(
            (r.status, r.body.as_slice(), r.header("x-a")),
            (200, &b"abc"[..], Some("b"))
        );
        let r = parse(
            b"HTTP/1.1 404 Not Found\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n",
            false,
        )
        .unwrap();
        assert_eq!(r.body, b"abcde");
        let r = parse(b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\n", true).unwrap();
        assert!(r.body.is_empty());
        assert!(parse(b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nabc", false).is_err());
        assert!(parse(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n9\r\nabc", false).is_err());
        assert!(parse(b"HTTP/1.1 200 OK\r\nContent-", false).is_err());
    }
}
