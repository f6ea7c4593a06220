//! The seam between the signer core and where private keys live: in
//! software (encrypted at rest), in an HSM through PKCS#11, or as FROST
//! shares over several signers. The core calls every backend through
//! [`KeyBackend`]; backends whose keys are on this machine implement the
//! blocking [`LocalBackend`] and are run on the blocking pool by
//! [`Blocking`].

use std::sync::Arc;

pub use crate::error::BackendError;
use crate::error::{Error, Result};
use crate::policy::Claimed;
use crate::store::KeyRecord;

/// Key algorithms the signer makes keys for (Notary's names).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Algorithm {
    /// ECDSA over P-256; signatures are raw `r‖s` over SHA-256.
    Ecdsa,
    /// Ed25519 (pure).
    Ed25519,
}

impl Algorithm {
    /// Notary's name: `ecdsa` or `ed25519`.
    pub fn as_str(self) -> &'static str {
        match self {
            Algorithm::Ecdsa => "ecdsa",
            Algorithm::Ed25519 => "ed25519",
        }
    }

    /// Parses Notary's name.
    pub fn parse(s: &str) -> Option<Algorithm> {
        match s {
            "ecdsa" => Some(Algorithm::Ecdsa),
            "ed25519" => Some(Algorithm::Ed25519),
            _ => None,
        }
    }

    /// The TUF key type of public keys of this algorithm.
    pub fn key_type(self) -> seal_tuf::KeyType {
        match self {
            Algorithm::Ecdsa => seal_tuf::KeyType::Ecdsa,
            Algorithm::Ed25519 => seal_tuf::KeyType::Ed25519,
        }
    }
}

/// A key made by a backend.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewKey {
    /// The public key as TUF lists it: DER SubjectPublicKeyInfo for ECDSA,
    /// the 32 raw bytes for Ed25519.
    pub public: Vec<u8>,
    /// What the backend needs to find the private key again (for software
    /// keys the encrypted key itself; for PKCS#11 the object's `CKA_ID`).
    /// Never secret in clear.
    pub handle: Vec<u8>,
}

/// A backend whose keys are on this machine (software, PKCS#11). Calls
/// block (an HSM round trip, a KDF): [`Blocking`] runs them off the async
/// executor.
pub trait LocalBackend: Send + Sync {
    /// The backend's name in config and metrics (`software`, `pkcs11`).
    fn name(&self) -> &'static str;
    /// Makes a key; `label` names it for operators (e.g. `<gun>/<role>`).
    fn generate(&self, algorithm: Algorithm, label: &str) -> std::result::Result<NewKey, BackendError>;
    /// Signs `message` with the key `handle` names: ECDSA returns raw
    /// `r‖s` (64 bytes) over SHA-256 of `message`, Ed25519 the 64-byte
    /// signature of `message`.
    fn sign(&self, algorithm: Algorithm, handle: &[u8], message: &[u8]) -> std::result::Result<Vec<u8>, BackendError>;
    /// Destroys the key `handle` names.
    fn delete(&self, handle: &[u8]) -> std::result::Result<(), BackendError>;
}

/// Where a key lives, as the signer core sees every backend.
#[async_trait::async_trait]
pub trait KeyBackend: Send + Sync {
    /// The backend's name in config, key records and metrics.
    fn name(&self) -> &'static str;
    /// Makes a key of `algorithm` for `gun`/`role`.
    async fn generate(&self, algorithm: Algorithm, gun: &str, role: &str) -> Result<NewKey>;
    /// Signs `message` with `key` (see [`LocalBackend::sign`] for the
    /// signature formats); `claimed` is what the caller said it signs, for
    /// backends whose participants check the policy themselves.
    async fn sign(&self, key: &KeyRecord, claimed: &Claimed, message: &[u8]) -> Result<Vec<u8>>;
    /// Destroys this signer's part of `key`.
    async fn delete(&self, key: &KeyRecord) -> Result<()>;
    /// Whether the backend checks the signing policy and records high-water
    /// marks itself, for every participant (threshold keys): the core then
    /// only checks the policy before starting and records nothing.
    fn records_high_water(&self) -> bool {
        false
    }
}

/// A [`LocalBackend`] behind [`KeyBackend`]: each call runs on tokio's
/// blocking pool.
#[derive(Clone)]
pub struct Blocking(pub Arc<dyn LocalBackend>);

impl Blocking {
    async fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce(&dyn LocalBackend) -> Result<T, BackendError> + Send + 'static,
    ) -> Result<T> {
        let backend = self.0.clone();
        tokio::task::spawn_blocking(move || f(backend.as_ref()))
            .await
            .map_err(|e| Error::Internal(format!("signing task failed: {e}")))?
            .map_err(Error::Backend)
    }
}

fn algorithm_of(key: &KeyRecord) -> Result<Algorithm> {
    Algorithm::parse(&key.algorithm)
        .ok_or_else(|| Error::Internal(format!("key {} has unknown algorithm {}", key.key_id, key.algorithm)))
}

#[async_trait::async_trait]
impl KeyBackend for Blocking {
    fn name(&self) -> &'static str {
        self.0.name()
    }

    async fn generate(&self, algorithm: Algorithm, gun: &str, role: &str) -> Result<NewKey> {
        let label = format!("{gun}/{role}");
        self.run(move |b| b.generate(algorithm, &label)).await
    }

    async fn sign(&self, key: &KeyRecord, _claimed: &Claimed, message: &[u8]) -> Result<Vec<u8>> {
        let algorithm = algorithm_of(key)?;
        let (handle, message) = (key.handle.clone(), message.to_vec());
        self.run(move |b| b.sign(algorithm, &handle, &message)).await
    }

    async fn delete(&self, key: &KeyRecord) -> Result<()> {
        let handle = key.handle.clone();
        self.run(move |b| b.delete(&handle)).await
    }
}
