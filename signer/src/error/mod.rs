//! The signer's errors: [`Error`], what a signer operation can fail with,
//! whatever called it, and the errors of the key backends
//! ([`BackendError`]) and of the threshold protocol ([`ThresholdError`]) it
//! wraps. The gRPC services turn it into a `tonic::Status` in one
//! place (`service`), with notary-signer's status codes; an in-process
//! caller (a node running its signer in process) matches on it directly.

mod backend;
mod threshold;

pub use backend::BackendError;
pub use threshold::{ThresholdError, Unanswered};

use crate::policy::Refusal;
use crate::store::StoreError;

/// Why a signer operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// No key with this ID is held here.
    #[error("key {0} not found")]
    KeyNotFound(String),
    /// The algorithm asked for (Notary's name) is not one the signer makes.
    #[error("algorithm {0:?} is not supported")]
    UnsupportedAlgorithm(String),
    /// The request is malformed.
    #[error("{0}")]
    InvalidArgument(String),
    /// The caller may not do this.
    #[error("{0}")]
    PermissionDenied(String),
    /// This signer's signing policy refused the content.
    #[error("signing policy: {0}")]
    Refused(#[from] Refusal),
    /// The key backend failed (an HSM gone, a passphrase missing, …).
    #[error(transparent)]
    Backend(#[from] BackendError),
    /// The threshold backend failed (too few signers, a participant's
    /// refusal, a protocol failure).
    #[error(transparent)]
    Threshold(#[from] ThresholdError),
    /// The key store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A database (notary-signer's, being imported) could not be read.
    #[error("{0}")]
    Database(String),
    /// The configuration cannot be used.
    #[error("{0}")]
    Config(String),
    /// A file or socket could not be used.
    #[error("{what}: {source}")]
    Io {
        /// What was being done, and on what.
        what: String,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// Any other local failure (a task that died, a record that is wrong).
    #[error("{0}")]
    Internal(String),
}

impl Error {
    /// An [`Error::Io`] for `what`.
    pub fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> Error {
        let what = what.into();
        move |source| Error::Io { what, source }
    }

    /// The last version signed with the key, when the refusal says: a node
    /// regenerates metadata above it.
    pub fn high_water(&self) -> Option<u64> {
        match self {
            Error::Refused(Refusal::NotNewer { high_water, .. }) => Some(*high_water),
            Error::Threshold(t) => t.high_water(),
            _ => None,
        }
    }

    /// Whether this is a refusal by a signing policy (this signer's or a
    /// threshold participant's).
    pub fn is_refusal(&self) -> bool {
        matches!(
            self,
            Error::Refused(_) | Error::Threshold(ThresholdError::Refused { .. } | ThresholdError::Policy(_))
        )
    }
}

/// A signer result.
pub type Result<T, E = Error> = std::result::Result<T, E>;
