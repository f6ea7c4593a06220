//! The client nodes use to reach a signer (Seal's or Notary's): gRPC over
//! mutual TLS, with bounded timeouts.

use std::path::PathBuf;
use std::time::Duration;

use seal_proto::health::pb::health_check_response::ServingStatus;
use seal_proto::health::pb::health_client::HealthClient;
use seal_proto::health::pb::HealthCheckRequest;
use seal_proto::signer::key_management_client::KeyManagementClient;
use seal_proto::signer::signer_client::SignerClient as PbSignerClient;
use seal_proto::signer::{CreateKeyRequest, KeyId, SignatureRequest};
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

use crate::wire::{high_water_of, GUN_HEADER, ROLE_HEADER, UNAVAILABLE_HEADER};

/// Where the signer is and the TLS material to reach it.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// Host name or address.
    pub hostname: String,
    /// Port.
    pub port: u16,
    /// CA bundle that signed the signer's certificate.
    pub ca_file: PathBuf,
    /// The node's client certificate.
    pub cert_file: PathBuf,
    /// The node's client key.
    pub key_file: PathBuf,
    /// Per-call deadline.
    pub timeout: Duration,
    /// How long establishing a connection (TCP and TLS) may take.
    pub connect_timeout: Duration,
}

/// Why a call failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// Configuration or TLS material is unusable.
    #[error("signer client: {0}")]
    Config(String),
    /// The signer cannot be reached (or timed out).
    #[error("signer unavailable: {0}")]
    Unavailable(String),
    /// The signer answered, but its key backend cannot sign now (an HSM
    /// gone, too few threshold peers reachable): another signer may.
    #[error("signer cannot sign now: {0}")]
    BackendUnavailable(String),
    /// The key is unknown to the signer.
    #[error("signer: key not found: {0}")]
    NotFound(String),
    /// The signing policy refused; `high_water` is the last version the
    /// signer signed with that key, when it said.
    #[error("signer refused: {message}")]
    Refused {
        /// The signer's reason.
        message: String,
        /// The last version signed.
        high_water: Option<u64>,
    },
    /// Any other failure the signer reported.
    #[error("signer error: {0}")]
    Other(String),
}

fn status_error(s: tonic::Status) -> ClientError {
    use tonic::Code;
    match s.code() {
        Code::Unavailable if s.metadata().get(UNAVAILABLE_HEADER).is_some() => {
            ClientError::BackendUnavailable(s.message().to_owned())
        }
        // tonic reports a connection that failed under a call (a reset, a
        // peer gone mid-stream) as `Unknown: transport error`.
        Code::Unknown if s.message() == "transport error" => ClientError::Unavailable(s.message().to_owned()),
        Code::Unavailable | Code::DeadlineExceeded | Code::Cancelled => {
            ClientError::Unavailable(s.message().to_owned())
        }
        Code::NotFound => ClientError::NotFound(s.message().to_owned()),
        Code::FailedPrecondition => ClientError::Refused {
            message: s.message().to_owned(),
            high_water: high_water_of(&s),
        },
        _ => ClientError::Other(format!("{:?}: {}", s.code(), s.message())),
    }
}

/// A created or described key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteKey {
    /// Its ID.
    pub key_id: String,
    /// `ecdsa`, `ed25519`…
    pub algorithm: String,
    /// The public key as TUF lists it.
    pub public: Vec<u8>,
    /// Its role (only from `GetKeyInfo`).
    pub role: Option<String>,
}

impl RemoteKey {
    fn new(info: Option<seal_proto::signer::KeyInfo>, public: Vec<u8>, role: Option<String>) -> RemoteKey {
        let info = info.unwrap_or_default();
        RemoteKey {
            key_id: info.key_id.map(|k| k.id).unwrap_or_default(),
            algorithm: info.algorithm.map(|a| a.algorithm).unwrap_or_default(),
            public,
            role,
        }
    }
}

/// A signature from the signer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteSignature {
    /// Signing key.
    pub key_id: String,
    /// TUF method (`ecdsa`, `eddsa`).
    pub method: String,
    /// The signature bytes.
    pub signature: Vec<u8>,
}

/// A connection (lazily established, re-established as needed) to a signer.
#[derive(Clone)]
pub struct SignerClient {
    keys: KeyManagementClient<Channel>,
    signer: PbSignerClient<Channel>,
    health: HealthClient<Channel>,
}

impl SignerClient {
    /// A client for the signer `config` names. Connects on first use.
    pub fn new(config: &ClientConfig) -> Result<SignerClient, ClientError> {
        crate::install_crypto_provider();
        let read = |p: &PathBuf| std::fs::read(p).map_err(|e| ClientError::Config(format!("{}: {e}", p.display())));
        let tls = ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(read(&config.ca_file)?))
            .identity(Identity::from_pem(read(&config.cert_file)?, read(&config.key_file)?))
            .domain_name(config.hostname.clone());
        let endpoint = Endpoint::from_shared(format!("https://{}:{}", config.hostname, config.port))
            .map_err(|e| ClientError::Config(e.to_string()))?
            .tls_config(tls)
            .map_err(|e| ClientError::Config(e.to_string()))?
            .connect_timeout(config.connect_timeout)
            .timeout(config.timeout)
            .tcp_nodelay(true);
        let channel = endpoint.connect_lazy();
        Ok(SignerClient {
            keys: KeyManagementClient::new(channel.clone()),
            signer: PbSignerClient::new(channel.clone()),
            health: HealthClient::new(channel),
        })
    }

    /// Asks the signer's `grpc.health.v1.Health` whether both of Notary's
    /// signer services are serving.
    pub async fn check_health(&self) -> Result<(), ClientError> {
        for service in [
            seal_proto::HEALTH_SERVICE_KEY_MANAGEMENT,
            seal_proto::HEALTH_SERVICE_SIGNER,
        ] {
            let status = self
                .health
                .clone()
                .check(HealthCheckRequest {
                    service: service.to_owned(),
                })
                .await
                .map_err(status_error)?
                .into_inner()
                .status;
            if status != ServingStatus::Serving as i32 {
                return Err(ClientError::Unavailable(format!("{service} is not serving")));
            }
        }
        Ok(())
    }

    /// `CreateKey`.
    pub async fn create_key(&self, algorithm: &str, gun: &str, role: &str) -> Result<RemoteKey, ClientError> {
        let r = self
            .keys
            .clone()
            .create_key(CreateKeyRequest {
                algorithm: algorithm.to_owned(),
                gun: gun.to_owned(),
                role: role.to_owned(),
            })
            .await
            .map_err(status_error)?
            .into_inner();
        Ok(RemoteKey::new(r.key_info, r.public_key, None))
    }

    /// `GetKeyInfo`.
    pub async fn get_key_info(&self, key_id: &str) -> Result<RemoteKey, ClientError> {
        let r = self
            .keys
            .clone()
            .get_key_info(KeyId { id: key_id.to_owned() })
            .await
            .map_err(status_error)?
            .into_inner();
        Ok(RemoteKey::new(r.key_info, r.public_key, Some(r.role)))
    }

    /// `DeleteKey`.
    pub async fn delete_key(&self, key_id: &str) -> Result<(), ClientError> {
        self.keys
            .clone()
            .delete_key(KeyId { id: key_id.to_owned() })
            .await
            .map_err(status_error)?;
        Ok(())
    }

    /// `Sign`, saying which GUN and role the signature is for (a Seal
    /// signer checks them; Notary's ignores them).
    pub async fn sign(
        &self,
        key_id: &str,
        content: &[u8],
        gun: Option<&str>,
        role: Option<&str>,
    ) -> Result<RemoteSignature, ClientError> {
        self.sign_bound(key_id, content, gun, role, &[]).await
    }

    /// [`SignerClient::sign`] with the files the content names, by role
    /// (the snapshot for a timestamp, the targets for a snapshot), to which
    /// a Seal signer binds the signature.
    pub async fn sign_bound(
        &self,
        key_id: &str,
        content: &[u8],
        gun: Option<&str>,
        role: Option<&str>,
        named: &[(&str, &[u8])],
    ) -> Result<RemoteSignature, ClientError> {
        let mut req = tonic::Request::new(SignatureRequest {
            key_id: Some(KeyId { id: key_id.to_owned() }),
            content: content.to_vec(),
            named: named.iter().map(|(r, b)| ((*r).to_owned(), b.to_vec())).collect(),
        });
        for (name, value) in [(GUN_HEADER, gun), (ROLE_HEADER, role)] {
            if let Some(v) = value {
                let v = v
                    .parse()
                    .map_err(|_| ClientError::Config(format!("{name} value {v:?} is not a valid header")))?;
                req.metadata_mut().insert(name, v);
            }
        }
        let r = self.signer.clone().sign(req).await.map_err(status_error)?.into_inner();
        Ok(RemoteSignature {
            key_id: r.key_info.and_then(|k| k.key_id).map(|k| k.id).unwrap_or_default(),
            method: r.algorithm.map(|a| a.algorithm).unwrap_or_default(),
            signature: r.content,
        })
    }
}
