//! HTTPS for the node's API with rustls (ring provider): certificates and
//! key from PEM files, optional client certificates checked against
//! `server.client_ca_file` (mutual TLS). [`crate::listen`] serves on it.
//!
//! The certificates are reloaded while serving, as the signer's are: on
//! SIGHUP and when the files change (checked every
//! [`RELOAD_POLL`]); each new connection uses the latest good configuration,
//! and a reload that fails keeps the previous one and logs why.

use std::path::Path;
use std::time::Duration;

use seal_signer::tls::{AllowedNames, TlsFiles};
pub use seal_signer::tls::{ReloadableAcceptor, TlsError};

/// How often the certificate files are checked for a change.
pub const RELOAD_POLL: Duration = Duration::from_secs(5);

/// Builds the acceptor from PEM files (HTTP/2 and HTTP/1.1 offered); call
/// [`ReloadableAcceptor::spawn_reloader`] to follow changes.
pub fn acceptor(cert_file: &Path, key_file: &Path, client_ca: Option<&Path>) -> Result<ReloadableAcceptor, TlsError> {
    ReloadableAcceptor::new(TlsFiles {
        cert: cert_file.to_owned(),
        key: key_file.to_owned(),
        client_ca: client_ca.map(Path::to_owned),
        allowed_client_names: AllowedNames::default(),
        alpn: vec![b"h2".to_vec(), b"http/1.1".to_vec()],
    })
}

/// Keeps SIGHUP from ending a node that has no certificates to reload
/// (its default action is to terminate the process): logs it instead (the
/// log level is reloaded on the same signal, by `server::spawn_log_level_reloader`).
pub fn ignore_hangup() {
    #[cfg(unix)]
    tokio::spawn(async {
        let Ok(mut hup) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) else {
            return;
        };
        while hup.recv().await.is_some() {
            tracing::info!("SIGHUP: no TLS certificates to reload");
        }
    });
}
