//! TLS for Seal's services (rustls, ring provider): server configurations
//! from PEM files with mandatory or optional client certificates, and a
//! reloadable acceptor so certificates rotate without a restart (SIGHUP, or
//! a change of the files noticed by polling).

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::TlsAcceptor;

/// A TLS configuration problem, naming the file.
#[derive(Debug, thiserror::Error)]
#[error("TLS: {path}: {reason}")]
pub struct TlsError {
    /// The file concerned.
    pub path: String,
    /// What is wrong.
    pub reason: String,
}

fn err(path: &Path, reason: impl ToString) -> TlsError {
    TlsError {
        path: path.display().to_string(),
        reason: reason.to_string(),
    }
}

/// Certificates from a PEM file (at least one).
pub fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
        .map_err(|e| err(path, e))?
        .collect::<Result<_, _>>()
        .map_err(|e| err(path, e))?;
    if certs.is_empty() {
        return Err(err(path, "no certificate"));
    }
    Ok(certs)
}

/// The root store of a CA bundle.
pub fn load_roots(path: &Path) -> Result<rustls::RootCertStore, TlsError> {
    let mut roots = rustls::RootCertStore::empty();
    for c in load_certs(path)? {
        roots.add(c).map_err(|e| err(path, e))?;
    }
    Ok(roots)
}

pub use seal_proto::peer::{certificate_names, AllowedNames};

/// Verifies client certificates with `inner` (the chain to the client CA),
/// then requires an allowed name.
#[derive(Debug)]
struct AllowListVerifier {
    inner: Arc<dyn rustls::server::danger::ClientCertVerifier>,
    allowed: AllowedNames,
}

impl rustls::server::danger::ClientCertVerifier for AllowListVerifier {
    fn root_hint_subjects(&self) -> &[rustls::DistinguishedName] {
        self.inner.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::server::danger::ClientCertVerified, rustls::Error> {
        let verified = self.inner.verify_client_cert(end_entity, intermediates, now)?;
        if !self.allowed.permits(end_entity) {
            tracing::warn!(
                names = ?certificate_names(end_entity),
                "refused a client certificate whose names are not on the allow-list"
            );
            return Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::ApplicationVerificationFailure,
            ));
        }
        Ok(verified)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// A server configuration: `cert_file` (chain) and `key_file`, and when
/// `client_ca` is given, client certificates signed by it (and carrying a
/// name `allowed` permits) are required.
pub fn server_config(
    cert_file: &Path,
    key_file: &Path,
    client_ca: Option<&Path>,
    allowed: &AllowedNames,
) -> Result<rustls::ServerConfig, TlsError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let certs = load_certs(cert_file)?;
    let key = PrivateKeyDer::from_pem_file(key_file).map_err(|e| err(key_file, e))?;
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| err(cert_file, e))?;
    let builder = match client_ca {
        None => builder.with_no_client_auth(),
        Some(ca) => {
            let verifier =
                rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(load_roots(ca)?), provider)
                    .build()
                    .map_err(|e| err(ca, e))?;
            if allowed.0.is_empty() {
                builder.with_client_cert_verifier(verifier)
            } else {
                builder.with_client_cert_verifier(Arc::new(AllowListVerifier {
                    inner: verifier,
                    allowed: allowed.clone(),
                }))
            }
        }
    };
    builder.with_single_cert(certs, key).map_err(|e| err(key_file, e))
}

/// The files a TLS server is built from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// Certificate chain.
    pub cert: PathBuf,
    /// Private key.
    pub key: PathBuf,
    /// CA for client certificates (mutual TLS) if any.
    pub client_ca: Option<PathBuf>,
    /// Names client certificates must carry (empty: any the CA signed).
    pub allowed_client_names: AllowedNames,
    /// ALPN protocols to offer (`h2` for gRPC).
    pub alpn: Vec<Vec<u8>>,
}

impl TlsFiles {
    fn build(&self) -> Result<TlsAcceptor, TlsError> {
        let mut config = server_config(
            &self.cert,
            &self.key,
            self.client_ca.as_deref(),
            &self.allowed_client_names,
        )?;
        config.alpn_protocols = self.alpn.clone();
        Ok(TlsAcceptor::from(Arc::new(config)))
    }

    fn stamp(&self) -> Vec<Option<SystemTime>> {
        [Some(&self.cert), Some(&self.key), self.client_ca.as_ref()]
            .into_iter()
            .flatten()
            .map(|p| std::fs::metadata(p).and_then(|m| m.modified()).ok())
            .collect()
    }
}

/// An acceptor whose certificates can be replaced while serving: each new
/// connection uses the latest good configuration; a reload that fails keeps
/// the previous one and says why.
#[derive(Clone)]
pub struct ReloadableAcceptor {
    files: TlsFiles,
    current: Arc<RwLock<(TlsAcceptor, Vec<Option<SystemTime>>)>>,
}

impl ReloadableAcceptor {
    /// Builds the first configuration (an error here is fatal).
    pub fn new(files: TlsFiles) -> Result<ReloadableAcceptor, TlsError> {
        let acceptor = files.build()?;
        let stamp = files.stamp();
        Ok(ReloadableAcceptor {
            files,
            current: Arc::new(RwLock::new((acceptor, stamp))),
        })
    }

    /// The acceptor for the next connection.
    pub fn get(&self) -> TlsAcceptor {
        match self.current.read() {
            Ok(g) => g.0.clone(),
            Err(p) => p.into_inner().0.clone(),
        }
    }

    /// Rebuilds from the files now.
    pub fn reload(&self) -> Result<(), TlsError> {
        let acceptor = self.files.build()?;
        let stamp = self.files.stamp();
        let mut g = match self.current.write() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        *g = (acceptor, stamp);
        Ok(())
    }

    /// Whether the files changed since the last (re)load.
    pub fn changed(&self) -> bool {
        let now = self.files.stamp();
        match self.current.read() {
            Ok(g) => g.1 != now,
            Err(_) => true,
        }
    }

    /// Reloads on SIGHUP and when the files change (checked every `poll`),
    /// until the process ends.
    pub fn spawn_reloader(&self, poll: Duration) {
        let me = self.clone();
        tokio::spawn(async move {
            #[cfg(unix)]
            let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
            loop {
                #[cfg(unix)]
                let by_signal = async {
                    match hup.as_mut() {
                        Some(h) => {
                            h.recv().await;
                        }
                        None => std::future::pending::<()>().await,
                    }
                };
                #[cfg(not(unix))]
                let by_signal = std::future::pending::<()>();
                let signalled = tokio::select! {
                    _ = by_signal => true,
                    _ = tokio::time::sleep(poll) => false,
                };
                if signalled || me.changed() {
                    match me.reload() {
                        Ok(()) => tracing::info!("TLS certificates reloaded"),
                        Err(e) => tracing::error!(%e, "TLS reload failed; keeping the previous certificates"),
                    }
                }
            }
        });
    }
}
