//! `trust_service.type = "remote"`: the node's keys live in a signer
//! service (seal-signer, or Notary's notary-signer) reached over gRPC with
//! mutual TLS. The node never holds these private keys.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use seal_signer::client::{ClientConfig, ClientError, SignerClient};

use crate::config::{KeyAlgorithm, TrustServiceConfig};
use crate::signer::{CryptoService, KeyDescription, PublicKeyInfo, SignScope, Signature, SignatureMethod, SignerError};

/// The per-call deadline: a signer that does not answer in time is treated
/// as down (writes answer 503) rather than holding requests.
pub const SIGNER_TIMEOUT: Duration = Duration::from_secs(5);

/// A call that fails because the signer could not be reached (a signer
/// restarting, a dropped connection) is tried once more after this pause,
/// so every call is bounded by two deadlines and the pause. Key creation is
/// not retried: it is not idempotent. A retried `Sign` is safe: the signing
/// policy signs identical content again.
pub const RETRY_PAUSE: Duration = Duration::from_millis(200);

async fn retry_once<T, F, Fut>(call: F) -> Result<T, ClientError>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Result<T, ClientError>>,
{
    match call().await {
        Err(ClientError::Unavailable(_)) => {
            tokio::time::sleep(RETRY_PAUSE).await;
            call().await
        }
        other => other,
    }
}

/// How often the node asks the signer's health service whether it serves,
/// so health turns degraded (and back) without waiting for a write.
pub const HEALTH_PROBE_INTERVAL: Duration = Duration::from_secs(10);

/// A [`CryptoService`] backed by a remote signer.
pub struct RemoteSigner {
    client: SignerClient,
    /// Why the signer was last found unreachable; `None` once it answers.
    down: Arc<Mutex<Option<String>>>,
}

fn signer_error(e: ClientError) -> SignerError {
    match e {
        ClientError::NotFound(key_id) => SignerError::KeyNotFound { key_id },
        ClientError::Unavailable(message) => SignerError::Unavailable { message },
        ClientError::Refused { message, high_water } => SignerError::Refused { message, high_water },
        other => SignerError::Crypto {
            message: other.to_string(),
        },
    }
}

fn parse_algorithm(name: &str) -> Result<KeyAlgorithm, SignerError> {
    match name {
        "ed25519" => Ok(KeyAlgorithm::Ed25519),
        "ecdsa" => Ok(KeyAlgorithm::Ecdsa),
        "rsa" => Ok(KeyAlgorithm::Rsa),
        other => Err(SignerError::UnsupportedAlgorithm {
            algorithm: other.to_owned(),
        }),
    }
}

impl RemoteSigner {
    /// A client for the signer `config` names (`hostname`, `port`,
    /// `tls_ca_file`, `tls_client_cert`, `tls_client_key`, all required).
    pub fn new(config: &TrustServiceConfig) -> Result<RemoteSigner, String> {
        let need = |what: &str| format!("trust_service.{what} is required for a remote signer");
        let client = SignerClient::new(&ClientConfig {
            hostname: config.hostname.clone().ok_or_else(|| need("hostname"))?,
            port: config.port.ok_or_else(|| need("port"))?,
            ca_file: config.tls_ca_file.clone().ok_or_else(|| need("tls_ca_file"))?,
            cert_file: config.tls_client_cert.clone().ok_or_else(|| need("tls_client_cert"))?,
            key_file: config.tls_client_key.clone().ok_or_else(|| need("tls_client_key"))?,
            timeout: SIGNER_TIMEOUT,
        })
        .map_err(|e| e.to_string())?;
        Ok(RemoteSigner {
            client,
            down: Arc::new(Mutex::new(None)),
        })
    }

    /// Notes the outcome of a call: any answer means the signer is up,
    /// an unavailable error that it is down.
    fn observe<T>(&self, result: Result<T, ClientError>) -> Result<T, SignerError> {
        let down = match &result {
            Err(ClientError::Unavailable(message)) => Some(message.clone()),
            _ => None,
        };
        *self.down.lock().unwrap_or_else(|e| e.into_inner()) = down;
        result.map_err(signer_error)
    }

    /// Asks the signer's health service and records the answer.
    pub async fn probe(&self) {
        let result = self.client.check_health().await;
        if let Err(e) = &result {
            tracing::warn!(error = %e, "trust service not fully operational");
        }
        let _ = self.observe(result);
    }
}

/// Probes `signer` every [`HEALTH_PROBE_INTERVAL`] until `shutdown` fires.
pub async fn run_health_probe(signer: Arc<RemoteSigner>, shutdown: Arc<tokio::sync::Notify>) {
    loop {
        signer.probe().await;
        tokio::select! {
            _ = tokio::time::sleep(HEALTH_PROBE_INTERVAL) => {}
            _ = shutdown.notified() => return,
        }
    }
}

#[async_trait]
impl CryptoService for RemoteSigner {
    async fn create_key(&self, gun: &str, role: &str, algorithm: KeyAlgorithm) -> Result<PublicKeyInfo, SignerError> {
        let k = self.observe(self.client.create_key(algorithm.as_str(), gun, role).await)?;
        let info = PublicKeyInfo::new(parse_algorithm(&k.algorithm)?, k.public);
        if info.key_id != k.key_id {
            return Err(SignerError::Crypto {
                message: format!(
                    "the signer named key {} but its public key has ID {}",
                    k.key_id, info.key_id
                ),
            });
        }
        Ok(info)
    }

    async fn get_key(&self, key_id: &str) -> Result<KeyDescription, SignerError> {
        let k = self.observe(retry_once(|| self.client.get_key_info(key_id)).await)?;
        Ok(KeyDescription {
            info: PublicKeyInfo::new(parse_algorithm(&k.algorithm)?, k.public),
            // Notary's GetKeyInfo does not say which collection a key is for.
            gun: String::new(),
            role: k.role.unwrap_or_default(),
        })
    }

    async fn sign(&self, key_id: &str, message: &[u8], scope: SignScope<'_>) -> Result<Signature, SignerError> {
        let s =
            self.observe(retry_once(|| self.client.sign(key_id, message, Some(scope.gun), Some(scope.role))).await)?;
        let method = match s.method.as_str() {
            "eddsa" => SignatureMethod::Eddsa,
            "ecdsa" => SignatureMethod::Ecdsa,
            other => {
                return Err(SignerError::UnsupportedAlgorithm {
                    algorithm: other.to_owned(),
                })
            }
        };
        Ok(Signature {
            key_id: key_id.to_owned(),
            method,
            signature: s.signature,
        })
    }

    async fn delete_key(&self, key_id: &str) -> Result<(), SignerError> {
        self.observe(retry_once(|| self.client.delete_key(key_id)).await)
    }

    fn operational(&self) -> Result<(), String> {
        match &*self.down.lock().unwrap_or_else(|e| e.into_inner()) {
            Some(reason) => Err(format!("signer unavailable: {reason}")),
            None => Ok(()),
        }
    }
}
