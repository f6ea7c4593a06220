//! The seam between the signer service and where private keys live: in
//! software (encrypted at rest) or in an HSM through PKCS#11.

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

/// Why a backend failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BackendError {
    /// The backend cannot make keys of this algorithm.
    #[error("algorithm {0} is not supported by this key backend")]
    Unsupported(&'static str),
    /// The key the handle names is gone.
    #[error("key not found in the key backend: {0}")]
    NotFound(String),
    /// The backend (HSM, token, passphrase) is not usable.
    #[error("key backend unavailable: {0}")]
    Unavailable(String),
    /// A cryptographic operation failed.
    #[error("key backend failure: {0}")]
    Crypto(String),
}

/// Where private keys live. Calls block (an HSM round trip, a KDF): the
/// service runs them off the async executor.
pub trait KeyBackend: Send + Sync {
    /// The backend's name in config and metrics (`software`, `pkcs11`).
    fn name(&self) -> &'static str;
    /// Makes a key; `label` names it for operators (e.g. `<gun>/<role>`).
    fn generate(&self, algorithm: Algorithm, label: &str) -> Result<NewKey, BackendError>;
    /// Signs `message` with the key `handle` names: ECDSA returns raw
    /// `r‖s` (64 bytes) over SHA-256 of `message`, Ed25519 the 64-byte
    /// signature of `message`.
    fn sign(&self, algorithm: Algorithm, handle: &[u8], message: &[u8]) -> Result<Vec<u8>, BackendError>;
    /// Destroys the key `handle` names.
    fn delete(&self, handle: &[u8]) -> Result<(), BackendError>;
}
