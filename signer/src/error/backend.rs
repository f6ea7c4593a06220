//! Why a key backend (software keys, PKCS#11) failed.

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
