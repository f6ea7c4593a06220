//! The signer core: key records, key backends and the signing policy, with
//! no transport. The gRPC services ([`crate::service`]) call it for remote
//! nodes; a node whose signer runs in process (development, a single node)
//! calls it directly, so the code that signs in development is the code
//! that signs in production.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use crate::backend::{Algorithm, KeyBackend};
use crate::error::{Error, Result};
use crate::metrics::Metrics;
use crate::policy::{self, Claimed, KeyScope, PolicyConfig};
use crate::store::{KeyRecord, Store};

/// A signature the core made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signed {
    /// The key's record.
    pub record: KeyRecord,
    /// Notary's name of the signature method: `ecdsa` or `eddsa`.
    pub method: &'static str,
    /// The signature: raw `r‖s` for ECDSA, 64 bytes for Ed25519.
    pub signature: Vec<u8>,
}

/// Key records, backends and policy, shared by every way in.
pub struct SignerCore {
    store: Arc<Store>,
    backends: BTreeMap<&'static str, Arc<dyn KeyBackend>>,
    new_keys: &'static str,
    policy: PolicyConfig,
    metrics: Metrics,
    // Per key: check, sign and record the high-water mark as one step.
    sign_locks: std::sync::Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
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
    ) -> Result<SignerCore> {
        let backends: BTreeMap<&'static str, Arc<dyn KeyBackend>> =
            backends.into_iter().map(|b| (b.name(), b)).collect();
        let new_keys = *backends
            .keys()
            .find(|n| **n == new_keys)
            .ok_or_else(|| Error::Config(format!("key backend {new_keys:?} is not configured")))?;
        Ok(SignerCore {
            store,
            backends,
            new_keys,
            policy,
            metrics,
            sign_locks: std::sync::Mutex::new(HashMap::new()),
        })
    }

    /// The metrics.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// The name of the backend new keys are made in.
    pub fn new_keys_backend(&self) -> &'static str {
        self.new_keys
    }

    fn backend(&self, name: &str) -> Result<Arc<dyn KeyBackend>> {
        self.backends
            .get(name)
            .cloned()
            .ok_or_else(|| Error::Internal(format!("key backend {name:?} is not configured on this signer")))
    }

    /// The lock that serialises signing with `key_id`.
    fn sign_lock(&self, key_id: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut locks = self.sign_locks.lock().unwrap_or_else(|e| e.into_inner());
        locks.entry(key_id.to_owned()).or_default().clone()
    }

    /// The record of `key_id`.
    pub fn key(&self, key_id: &str) -> Result<KeyRecord> {
        self.store
            .key(key_id)?
            .ok_or_else(|| Error::KeyNotFound(key_id.to_owned()))
    }

    /// Makes a key of `algorithm` (Notary's name) for `gun`/`role` in the
    /// backend new keys go to, and records it.
    pub async fn create_key(&self, algorithm: &str, gun: &str, role: &str) -> Result<KeyRecord> {
        let algorithm = Algorithm::parse(algorithm).ok_or_else(|| Error::UnsupportedAlgorithm(algorithm.to_owned()))?;
        if gun.is_empty() || role.is_empty() {
            return Err(Error::InvalidArgument("a key needs a gun and a role".to_owned()));
        }
        let backend = self.backend(self.new_keys)?;
        let new = backend.generate(algorithm, gun, role).await?;
        let record = KeyRecord {
            key_id: seal_tuf::keys::key_id(algorithm.key_type(), &new.public),
            gun: gun.to_owned(),
            role: role.to_owned(),
            algorithm: algorithm.as_str().to_owned(),
            public: new.public,
            backend: self.new_keys.to_owned(),
            handle: new.handle,
        };
        self.store.put_key(&record)?;
        tracing::info!(key_id = %record.key_id, gun = %record.gun, role = %record.role, backend = self.new_keys, "created key");
        Ok(record)
    }

    /// Signs `content` with `key_id` if the signing policy allows it for
    /// what the caller `claimed`; the key's high-water mark is durable
    /// before the signature is returned.
    pub async fn sign(&self, key_id: &str, claimed: &Claimed, content: &[u8]) -> Result<Signed> {
        let record = self.key(key_id)?;
        let algorithm = Algorithm::parse(&record.algorithm)
            .ok_or_else(|| Error::Internal(format!("key {key_id} has unknown algorithm {}", record.algorithm)))?;
        let backend = self.backend(&record.backend)?;
        let scope = KeyScope {
            gun: record.gun.clone(),
            role: record.role.clone(),
        };
        let lock = self.sign_lock(key_id);
        let _guard = lock.lock().await;
        let last = self.store.high_water(key_id)?;
        let now = time::OffsetDateTime::now_utc();
        let approved = match policy::decide(&scope, claimed, content, last.as_ref(), now, &self.policy) {
            Ok(a) => a,
            Err(refusal) => {
                self.metrics.refused(refusal.reason());
                tracing::warn!(key_id, gun = %record.gun, role = %record.role, %refusal, "refused to sign");
                return Err(refusal.into());
            }
        };
        let started = std::time::Instant::now();
        let signature = backend.sign(&record, claimed, content).await.inspect_err(|e| {
            tracing::warn!(key_id, backend = backend.name(), %e, "signing failed");
        })?;
        if let (Some(approved), false) = (approved, backend.records_high_water()) {
            // Durable before the signature leaves.
            let store = self.store.clone();
            let id = key_id.to_owned();
            tokio::task::spawn_blocking(move || store.set_high_water(&id, &approved.high_water))
                .await
                .map_err(|e| Error::Internal(format!("signing task failed: {e}")))??;
        }
        self.metrics.signed(backend.name(), started.elapsed());
        let method = match algorithm {
            Algorithm::Ecdsa => "ecdsa",
            Algorithm::Ed25519 => "eddsa",
        };
        Ok(Signed {
            record,
            method,
            signature,
        })
    }

    /// Deletes this signer's part of `key_id`; a key not held is no error
    /// (as in notary-signer). Who may ask is the caller's business (the
    /// gRPC service allows only `server.admin_client_names`).
    pub async fn delete_key(&self, key_id: &str) -> Result<()> {
        let Some(record) = self.store.key(key_id)? else {
            return Ok(());
        };
        self.backend(&record.backend)?.delete(&record).await?;
        self.store.delete_key(key_id)?;
        tracing::info!(key_id, "deleted key");
        Ok(())
    }
}
