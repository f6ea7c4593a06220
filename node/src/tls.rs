//! HTTPS for the node's API with rustls (ring provider): certificates and
//! key from PEM files, optional client certificates checked against
//! `server.client_ca_file` (mutual TLS).

use std::path::Path;
use std::sync::Arc;

use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
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

/// Accepts TLS connections and serves `app` on each, until the task is aborted.
pub async fn serve(listener: TcpListener, acceptor: TlsAcceptor, app: Router) -> std::io::Result<()> {
    loop {
        let (tcp, peer) = listener.accept().await?;
        let acceptor = acceptor.clone();
        let service = TowerToHyperService::new(app.clone());
        tokio::spawn(async move {
            let tls = match acceptor.accept(tcp).await {
                Ok(t) => t,
                Err(e) => {
                    tracing::debug!(%peer, error = %e, "TLS handshake failed");
                    return;
                }
            };
            if let Err(e) = Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(tls), service)
                .await
            {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
        });
    }
}
