//! The gRPC services, Notary-signer compatible: `KeyManagement`
//! (`CreateKey`, `DeleteKey`, `GetKeyInfo`) and `Signer` (`Sign`), with the
//! signing policy applied before every signature.
//!
//! Status codes follow notary-signer: an unknown key is `NotFound`, an
//! unsupported algorithm `Unknown`, other failures `Internal`. A policy
//! refusal is `FailedPrecondition` with the reason in the message; the
//! high-water mark is in the `x-seal-high-water` response metadata so an
//! honest node can skip a version that was signed but never committed.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use seal_proto::signer::{
    key_management_server::KeyManagement, signer_server::Signer, Algorithm as PbAlgorithm, CreateKeyRequest,
    GetKeyInfoResponse, KeyId, KeyInfo, PublicKey as PbPublicKey, Signature as PbSignature, SignatureRequest, Void,
};
use tonic::{Request, Response, Status};

use crate::backend::{Algorithm, BackendError, KeyBackend};
use crate::metrics::Metrics;
use crate::policy::{self, Claimed, KeyScope, PolicyConfig};
use crate::store::{KeyRecord, Store};
use crate::threshold::{ThresholdBackend, BACKEND_NAME as THRESHOLD};
use crate::tls::AllowedNames;

/// Request metadata a Seal node sends with `Sign`: the GUN it signs for.
pub const GUN_HEADER: &str = "x-seal-gun";
/// Request metadata a Seal node sends with `Sign`: the role it signs for.
pub const ROLE_HEADER: &str = "x-seal-role";
/// Response metadata on a `NotNewer` refusal: the last version signed.
pub const HIGH_WATER_HEADER: &str = "x-seal-high-water";
/// Response metadata on an `Unavailable` answer that this signer gave
/// itself (value `backend`): it is up, but its key backend cannot sign now
/// (an HSM gone, too few threshold peers). A node tries another signer but
/// does not count this one as down; a transport failure carries no such
/// metadata.
pub const UNAVAILABLE_HEADER: &str = "x-seal-unavailable";

/// `Unavailable` from the signer itself, marked with [`UNAVAILABLE_HEADER`].
pub(crate) fn backend_unavailable(message: String) -> Status {
    let mut status = Status::unavailable(message);
    status.metadata_mut().insert(
        UNAVAILABLE_HEADER,
        tonic::metadata::MetadataValue::from_static("backend"),
    );
    status
}

/// Shared state of both services.
pub struct SignerCore {
    store: Arc<Store>,
    backends: BTreeMap<&'static str, Arc<dyn KeyBackend>>,
    new_keys: &'static str,
    policy: PolicyConfig,
    metrics: Metrics,
    // Per key: check, sign and record the high-water mark as one step.
    sign_locks: std::sync::Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    // When set, new keys are FROST threshold keys made with the peers.
    threshold: Option<Arc<ThresholdBackend>>,
    // Who may call DeleteKey (`server.admin_client_names`); empty: nobody.
    admins: AllowedNames,
}

impl SignerCore {
    /// A signer keeping records in `store`, making new keys in the backend
    /// named `new_keys` (one of `backends`).
    pub fn new(
        store: Arc<Store>,
        backends: Vec<Arc<dyn KeyBackend>>,
        new_keys: &str,
        policy: PolicyConfig,
        metrics: Metrics,
    ) -> Result<SignerCore, String> {
        let backends: BTreeMap<&'static str, Arc<dyn KeyBackend>> =
            backends.into_iter().map(|b| (b.name(), b)).collect();
        let new_keys = *backends
            .keys()
            .find(|n| **n == new_keys)
            .ok_or_else(|| format!("key backend {new_keys:?} is not configured"))?;
        Ok(SignerCore {
            store,
            backends,
            new_keys,
            policy,
            metrics,
            sign_locks: std::sync::Mutex::new(HashMap::new()),
            threshold: None,
            admins: AllowedNames(Vec::new()),
        })
    }

    /// Makes new keys as FROST threshold keys with `threshold`'s peers, and
    /// signs with them (keys of the other backends stay usable).
    pub fn with_threshold(mut self, threshold: Arc<ThresholdBackend>) -> SignerCore {
        self.threshold = Some(threshold);
        self
    }

    /// Lets the certificates carrying one of `admins` delete keys.
    pub fn with_admins(mut self, admins: AllowedNames) -> SignerCore {
        self.admins = admins;
        self
    }

    /// The threshold backend, if configured.
    pub fn threshold(&self) -> Option<&Arc<ThresholdBackend>> {
        self.threshold.as_ref()
    }

    fn threshold_backend(&self) -> Result<Arc<ThresholdBackend>, Status> {
        self.threshold
            .clone()
            .ok_or_else(|| Status::internal("key backend \"threshold\" is not configured on this signer"))
    }

    /// The lock that serialises signing with `key_id`.
    fn sign_lock(&self, key_id: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut locks = self.sign_locks.lock().unwrap_or_else(|e| e.into_inner());
        locks.entry(key_id.to_owned()).or_default().clone()
    }

    /// The metrics.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    fn backend(&self, name: &str) -> Result<Arc<dyn KeyBackend>, Status> {
        self.backends
            .get(name)
            .cloned()
            .ok_or_else(|| Status::internal(format!("key backend {name:?} is not configured on this signer")))
    }

    fn record(&self, key_id: &str) -> Result<KeyRecord, Status> {
        self.store
            .key(key_id)
            .map_err(|e| Status::internal(e.to_string()))?
            .ok_or_else(|| Status::not_found(format!("key {key_id} not found")))
    }
}

fn key_info(r: &KeyRecord) -> KeyInfo {
    KeyInfo {
        key_id: Some(KeyId { id: r.key_id.clone() }),
        algorithm: Some(PbAlgorithm {
            algorithm: r.algorithm.clone(),
        }),
    }
}

/// A policy refusal as the gRPC status Seal's signers answer with:
/// `FailedPrecondition`, with the high-water mark in [`HIGH_WATER_HEADER`]
/// for a version refusal.
pub(crate) fn refusal_status(refusal: &policy::Refusal) -> Status {
    let mut status = Status::failed_precondition(format!("signing policy: {refusal}"));
    if let policy::Refusal::NotNewer { high_water, .. } = refusal {
        if let Ok(v) = high_water.to_string().parse() {
            status.metadata_mut().insert(HIGH_WATER_HEADER, v);
        }
    }
    status
}

/// The high-water mark a refusal carries in [`HIGH_WATER_HEADER`], if any.
pub(crate) fn high_water_of(status: &Status) -> Option<u64> {
    status
        .metadata()
        .get(HIGH_WATER_HEADER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
}

fn backend_status(e: BackendError) -> Status {
    match e {
        BackendError::NotFound(m) => Status::not_found(m),
        BackendError::Unavailable(m) => backend_unavailable(m),
        other => Status::internal(other.to_string()),
    }
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T, Status> + Send + 'static) -> Result<T, Status> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Status::internal(format!("signing task failed: {e}")))?
}

/// The `KeyManagement` service.
#[derive(Clone)]
pub struct KeyManagementService(pub Arc<SignerCore>);

/// The `Signer` service.
#[derive(Clone)]
pub struct SignerService(pub Arc<SignerCore>);

#[tonic::async_trait]
impl KeyManagement for KeyManagementService {
    async fn create_key(&self, request: Request<CreateKeyRequest>) -> Result<Response<PbPublicKey>, Status> {
        let req = request.into_inner();
        let algorithm = Algorithm::parse(&req.algorithm)
            .ok_or_else(|| Status::unknown(format!("algorithm {:?} is not supported", req.algorithm)))?;
        if req.gun.is_empty() || req.role.is_empty() {
            return Err(Status::invalid_argument("a key needs a gun and a role"));
        }
        let core = self.0.clone();
        if let Some(threshold) = core.threshold.clone() {
            let (key_id, public) = threshold
                .create_key(algorithm, &req.gun, &req.role)
                .await
                .map_err(|e| e.into_status())?;
            let record = core.record(&key_id)?;
            tracing::info!(key_id = %record.key_id, gun = %record.gun, role = %record.role, backend = THRESHOLD, "created key");
            return Ok(Response::new(PbPublicKey {
                key_info: Some(key_info(&record)),
                public_key: public,
            }));
        }
        let backend = core.backend(core.new_keys)?;
        let label = format!("{}/{}", req.gun, req.role);
        let new = blocking(move || backend.generate(algorithm, &label).map_err(backend_status)).await?;
        let record = KeyRecord {
            key_id: seal_tuf::keys::key_id(algorithm.key_type(), &new.public),
            gun: req.gun,
            role: req.role,
            algorithm: algorithm.as_str().to_owned(),
            public: new.public,
            backend: core.new_keys.to_owned(),
            handle: new.handle,
        };
        core.store
            .put_key(&record)
            .map_err(|e| Status::internal(e.to_string()))?;
        tracing::info!(key_id = %record.key_id, gun = %record.gun, role = %record.role, backend = core.new_keys, "created key");
        Ok(Response::new(PbPublicKey {
            key_info: Some(key_info(&record)),
            public_key: record.public,
        }))
    }

    async fn delete_key(&self, request: Request<KeyId>) -> Result<Response<Void>, Status> {
        // Server nodes never delete keys: a compromised node must not be able
        // to destroy every server-held key (and threshold high-water marks).
        let admin = !self.0.admins.0.is_empty() && self.0.admins.check_request(&request).is_ok();
        if !admin {
            self.0.metrics.refused("delete_key_not_admin");
            tracing::warn!("DeleteKey refused: the caller is not in server.admin_client_names");
            return Err(Status::permission_denied(
                "DeleteKey is only for the certificates named in the signer's server.admin_client_names",
            ));
        }
        let id = request.into_inner().id;
        let Some(record) = self.0.store.key(&id).map_err(|e| Status::internal(e.to_string()))? else {
            // Notary's signer answers success for a key it does not hold.
            return Ok(Response::new(Void {}));
        };
        if record.backend == THRESHOLD {
            // Only this signer's share goes; the other signers keep theirs.
            self.0.threshold_backend()?.forget(&id);
        } else {
            let backend = self.0.backend(&record.backend)?;
            let handle = record.handle.clone();
            blocking(move || backend.delete(&handle).map_err(backend_status)).await?;
        }
        self.0
            .store
            .delete_key(&id)
            .map_err(|e| Status::internal(e.to_string()))?;
        tracing::info!(key_id = %id, "deleted key");
        Ok(Response::new(Void {}))
    }

    async fn get_key_info(&self, request: Request<KeyId>) -> Result<Response<GetKeyInfoResponse>, Status> {
        let record = self.0.record(&request.into_inner().id)?;
        Ok(Response::new(GetKeyInfoResponse {
            key_info: Some(key_info(&record)),
            public_key: record.public.clone(),
            role: record.role,
        }))
    }
}

#[tonic::async_trait]
impl Signer for SignerService {
    async fn sign(&self, request: Request<SignatureRequest>) -> Result<Response<PbSignature>, Status> {
        let header = |name: &str| {
            request
                .metadata()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        let mut claimed = Claimed {
            gun: header(GUN_HEADER),
            role: header(ROLE_HEADER),
            named: Default::default(),
        };
        let req = request.into_inner();
        claimed.named = req.named.into_iter().collect();
        let id = req.key_id.map(|k| k.id).unwrap_or_default();
        let core = self.0.clone();
        let record = core.record(&id)?;
        let algorithm = Algorithm::parse(&record.algorithm)
            .ok_or_else(|| Status::internal(format!("key {id} has unknown algorithm {}", record.algorithm)))?;
        let scope = KeyScope {
            gun: record.gun.clone(),
            role: record.role.clone(),
        };
        let lock = core.sign_lock(&id);
        let _guard = lock.lock().await;
        let last = core
            .store
            .high_water(&id)
            .map_err(|e| Status::internal(e.to_string()))?;
        let now = time::OffsetDateTime::now_utc();
        let approved = match policy::decide(&scope, &claimed, &req.content, last.as_ref(), now, &core.policy) {
            Ok(a) => a,
            Err(refusal) => {
                core.metrics.refused(refusal.reason());
                tracing::warn!(key_id = %id, gun = %record.gun, role = %record.role, %refusal, "refused to sign");
                return Err(refusal_status(&refusal));
            }
        };
        let started = std::time::Instant::now();
        if record.backend == THRESHOLD {
            // Every participant (this signer too) checks the policy again and
            // records its own high-water mark before it contributes a share.
            let sig = core
                .threshold_backend()?
                .sign(&record, &claimed, &req.content)
                .await
                .map_err(|e| {
                    tracing::warn!(key_id = %id, %e, "threshold signing failed");
                    e.into_status()
                })?;
            core.metrics.signed(THRESHOLD, started.elapsed());
            return Ok(Response::new(PbSignature {
                key_info: Some(key_info(&record)),
                algorithm: Some(PbAlgorithm {
                    algorithm: "eddsa".to_owned(),
                }),
                content: sig,
            }));
        }
        let backend = core.backend(&record.backend)?;
        let handle = record.handle.clone();
        let content = req.content;
        let store = core.store.clone();
        let key_id = id.clone();
        let sig = blocking(move || {
            let sig = backend.sign(algorithm, &handle, &content).map_err(backend_status)?;
            // Durable before the signature leaves.
            if let Some(approved) = approved {
                store
                    .set_high_water(&key_id, &approved.high_water)
                    .map_err(|e| Status::internal(e.to_string()))?;
            }
            Ok(sig)
        })
        .await?;
        core.metrics.signed(&record.backend, started.elapsed());
        let method = match algorithm {
            Algorithm::Ecdsa => "ecdsa",
            Algorithm::Ed25519 => "eddsa",
        };
        Ok(Response::new(PbSignature {
            key_info: Some(key_info(&record)),
            algorithm: Some(PbAlgorithm {
                algorithm: method.to_owned(),
            }),
            content: sig,
        }))
    }
}
