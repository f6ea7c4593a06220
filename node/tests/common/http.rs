//! HTTP for the node's tests: seal-testkit's one small client for plain
//! HTTP, and a rustls client for the tests of a node serving HTTPS.

#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

// Each test and example including this file uses a part of it.
#[allow(unused_imports)]
pub use seal_testkit::http::{multipart, request, try_request, HttpError, Response};

/// Hex sha256.
pub fn sha256_hex(b: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(b))
}

/// A rustls client that trusts only `cert` (a self-signed server certificate).
pub fn https_client(cert: &seal_testkit::pki::SelfSigned) -> std::sync::Arc<rustls::ClientConfig> {
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert.der.clone().into()).unwrap();
    let client = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    std::sync::Arc::new(client)
}

/// `GET path` over HTTPS on a new connection: the whole answer, or why not.
pub fn https_answer(addr: &str, client: &std::sync::Arc<rustls::ClientConfig>, path: &str) -> Result<String, String> {
    let tcp = TcpStream::connect(addr).map_err(|e| e.to_string())?;
    tcp.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    let conn =
        rustls::ClientConnection::new(client.clone(), "localhost".try_into().unwrap()).map_err(|e| e.to_string())?;
    let mut tls = rustls::StreamOwned::new(conn, tcp);
    write!(
        tls,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )
    .map_err(|e| e.to_string())?;
    let mut out = String::new();
    match tls.read_to_string(&mut out) {
        Ok(_) => Ok(out),
        // Some servers close without close_notify; what was read is the answer.
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof && !out.is_empty() => Ok(out),
        Err(e) => Err(e.to_string()),
    }
}

/// `GET path` over HTTPS on a new connection: the status line, or why not.
pub fn https_get(addr: &str, client: &std::sync::Arc<rustls::ClientConfig>, path: &str) -> Result<String, String> {
    https_answer(addr, client, path)?
        .lines()
        .next()
        .map(str::to_owned)
        .ok_or_else(|| "empty answer".to_owned())
}
