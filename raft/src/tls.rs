//! The cluster's mutual TLS, shared by the Raft transport ([`crate::grpc`]), the admin and
//! forwarding services ([`crate::admin`]) and the port serving them (`server.rs`).
//!
//! Every node holds a certificate and key signed by the cluster's CA ([`ClusterTls`]). The server
//! requires a client certificate chaining to that CA; the client trusts only that CA (no system
//! roots) and checks the server's certificate against the host part of the peer's Raft address
//! (a DNS name or an IP address, which must be among the certificate's subject alternative names).
//! rustls with the ring provider does both, through tonic's `tls-ring` feature.
//!

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, UnixTime};
use rustls::server::WebPkiClientVerifier;
use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Identity, Server, ServerTlsConfig};

use crate::error::Error;

/// How long the server waits for a client's TLS handshake (a connection that never completes one
/// holds a slot under the connection cap this long at most).
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The cluster's mutual-TLS material: three PEM files.
///
/// All three are mandatory: a node accepts Raft RPCs only from peers presenting a certificate
/// signed by `ca_file`, and sends them only to peers presenting one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterTls {
    /// The cluster CA's certificate (PEM); the only trust anchor for peers.
    pub ca_file: PathBuf,
    /// This node's certificate (PEM, optionally followed by intermediates), signed by the CA.
    /// Used both as server and as client certificate, so its subject alternative names must
    /// include the host of this node's Raft address.
    pub cert_file: PathBuf,
    /// This node's private key (PEM: PKCS#8, PKCS#1 or SEC1).
    pub key_file: PathBuf,
}

impl ClusterTls {
    /// Read and check the three files: the CA file holds usable CA certificates, the key parses,
    /// and this node's certificate chains to the CA (valid now, usable for client
    /// authentication), so that a wrong file fails the start with its name rather than every RPC.
    pub(crate) fn load(&self) -> Result<TlsMaterial, Error> {
        let tls_err = |what: &'static str, path: &Path| {
            let path = path.to_path_buf();
            move |reason: String| Error::Tls {
                what,
                path: Some(path.clone()),
                reason,
            }
        };
        let ca_err = tls_err("CA certificate", &self.ca_file);
        let cert_err = tls_err("certificate", &self.cert_file);
        let key_err = tls_err("private key", &self.key_file);

        let ca_pem = std::fs::read(&self.ca_file).map_err(|e| ca_err(e.to_string()))?;
        let mut roots = rustls::RootCertStore::empty();
        for cert in pem_certificates(&ca_pem).map_err(&ca_err)? {
            roots
                .add(cert)
                .map_err(|e| ca_err(format!("not a usable CA certificate: {e}")))?;
        }
        let cert_pem = std::fs::read(&self.cert_file).map_err(|e| cert_err(e.to_string()))?;
        let chain = pem_certificates(&cert_pem).map_err(&cert_err)?;
        let key_pem = std::fs::read(&self.key_file).map_err(|e| key_err(e.to_string()))?;
        PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| key_err(format!("no usable PEM private key: {e}")))?;

        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
            .build()
            .map_err(|e| ca_err(e.to_string()))?;
        verifier
            .verify_client_cert(&chain[0], &chain[1..], UnixTime::now())
            .map_err(|e| {
                cert_err(format!(
                    "not accepted under the cluster CA {}: {e}",
                    self.ca_file.display()
                ))
            })?;

        let material = TlsMaterial {
            ca: Certificate::from_pem(ca_pem),
            identity: Identity::from_pem(cert_pem, key_pem),
        };
        // Build both sides once now (this checks, e.g., that the key is usable with the certificate).
        let bad = |side: &str, e: &dyn std::error::Error| Error::Tls {
            what: "certificate and key",
            path: Some(self.key_file.clone()),
            reason: format!("{side}: {}", error_chain(e)),
        };
        Server::builder()
            .tls_config(material.server_config())
            .map_err(|e| bad("as a server", &e))?;
        Endpoint::from_static("https://localhost")
            .tls_config(material.client_config("localhost"))
            .map_err(|e| bad("as a client", &e))?;
        Ok(material)
    }
}

/// The certificates of a PEM file, at least one.
fn pem_certificates(pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("unreadable PEM: {e}"))?;
    if certs.is_empty() {
        return Err("no PEM certificate".into());
    }
    Ok(certs)
}

/// Loaded TLS material: the CA certificate and this node's identity.
#[derive(Clone)]
pub(crate) struct TlsMaterial {
    ca: Certificate,
    identity: Identity,
}

impl std::fmt::Debug for TlsMaterial {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsMaterial").finish_non_exhaustive()
    }
}

impl TlsMaterial {
    pub(crate) fn server_config(&self) -> ServerTlsConfig {
        install_crypto_provider();
        ServerTlsConfig::new()
            .identity(self.identity.clone())
            .client_ca_root(self.ca.clone())
            .client_auth_optional(false)
            .timeout(TLS_HANDSHAKE_TIMEOUT)
    }

    pub(crate) fn client_config(&self, server_name: &str) -> ClientTlsConfig {
        install_crypto_provider();
        ClientTlsConfig::new()
            .ca_certificate(self.ca.clone())
            .identity(self.identity.clone())
            .domain_name(server_name)
    }
}

/// The host part of a Raft address `host:port` (`[v6]:port` for IPv6), as TLS checks it.
/// Installs ring as the process's rustls provider, which tonic's TLS takes as its own. A build
/// that compiles in a second rustls provider (a test dependency can) leaves rustls without a
/// default, so the choice is made here, before any TLS configuration is built.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

pub(crate) fn peer_host(addr: &str) -> Result<&str, String> {
    let (host, port) = addr.rsplit_once(':').ok_or_else(|| "expected host:port".to_string())?;
    port.parse::<u16>().map_err(|_| format!("invalid port {port:?}"))?;
    let host = match host.strip_prefix('[') {
        Some(inner) => inner
            .strip_suffix(']')
            .ok_or_else(|| "unbalanced '[' in host".to_string())?,
        None if host.contains(':') => return Err("an IPv6 address must be written [addr]:port".into()),
        None => host,
    };
    if host.is_empty() {
        return Err("empty host".into());
    }
    if let Some(c) = host.chars().find(|c| c.is_whitespace() || "/@?#[]".contains(*c)) {
        return Err(format!("unexpected {c:?} in host (give host:port, no scheme or path)"));
    }
    Ok(host)
}

/// An error followed by its chain of causes.
pub(crate) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peer_hosts() {
        assert_eq!(peer_host("127.0.0.1:7001"), Ok("127.0.0.1"));
        assert_eq!(peer_host("node-1.seal.internal:7001"), Ok("node-1.seal.internal"));
        assert_eq!(peer_host("[::1]:7001"), Ok("::1"));
        for bad in [
            "127.0.0.1",
            "127.0.0.1:",
            "127.0.0.1:70000",
            ":7001",
            "::1:7001",
            "[::1:7001",
            "https://n1:7001",
            "n1/x:7001",
            "a b:1",
        ] {
            assert!(peer_host(bad).is_err(), "{bad:?} accepted");
        }
    }
}
