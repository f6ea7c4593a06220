//! HTTPS for the node's API with rustls (ring provider): certificates and
//! key from PEM files, optional client certificates checked against
//! `server.client_ca_file` (mutual TLS). [`crate::listen`] serves on it.

use std::path::Path;
use std::sync::Arc;

use tokio_rustls::TlsAcceptor;

pub use seal_signer::tls::TlsError;

/// Builds the acceptor from PEM files (HTTP/2 and HTTP/1.1 offered).
pub fn acceptor(cert_file: &Path, key_file: &Path, client_ca: Option<&Path>) -> Result<TlsAcceptor, TlsError> {
    let mut config = seal_signer::tls::server_config(
        cert_file,
        key_file,
        client_ca,
        &seal_signer::tls::AllowedNames::default(),
    )?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}
