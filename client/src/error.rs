//! The client's errors: one variant per kind of failure a user must tell
//! apart, each with a one-line message that names what failed.

use std::path::PathBuf;

use crate::keystore::KeyStoreError;

/// Anything a client operation can fail with.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The key store refused (missing key, wrong passphrase, bad file).
    #[error("{0}")]
    KeyStore(#[from] KeyStoreError),
    /// The server could not be reached.
    #[error("{server} is unreachable: {reason}")]
    Offline {
        /// The server's URL.
        server: String,
        /// What the transport said.
        reason: String,
    },
    /// The server answered with an error (Notary's error body).
    #[error("server answered {status}: {code}: {message}{detail}")]
    Server {
        /// HTTP status.
        status: u16,
        /// Notary's error code, e.g. `INVALID_UPDATE`.
        code: String,
        /// Notary's message.
        message: String,
        /// The detail, prefixed with ": " when present.
        detail: String,
    },
    /// The server could not answer (see `unavailable`), and the cached
    /// trust data cannot stand in for it: expired, or not verifying.
    #[error("{unavailable}; the cached trust data of {gun} cannot be used: {cached}")]
    CacheUnusable {
        /// The collection.
        gun: String,
        /// Why the server could not be used.
        unavailable: Box<ClientError>,
        /// Why the cache could not be used.
        cached: Box<ClientError>,
    },
    /// The server has no trust data for the collection.
    #[error("{server} does not have trust data for {gun}")]
    NotFound {
        /// The server's URL.
        server: String,
        /// The collection.
        gun: String,
    },
    /// Metadata failed verification (tampered, replayed, frozen, oversized…).
    #[error("trust data failed verification: {0}")]
    Tuf(#[from] seal_tuf::Error),
    /// A key could not be used.
    #[error("{0}")]
    Key(#[from] seal_tuf::KeyError),
    /// The collection has never been initialised here.
    #[error("repository {0} is not initialized: run `seal init {0}` first")]
    NotInitialized(String),
    /// The trust directory holds no private key for a role that must sign.
    #[error("no private key for role {role} of {gun} in the trust directory: cannot sign {role}")]
    MissingKey {
        /// The role.
        role: String,
        /// The collection.
        gun: String,
    },
    /// An edit of the collection's metadata was refused.
    #[error("{0}")]
    Edit(seal_tuf::EditError),
    /// Bad input from the user.
    #[error("{0}")]
    Invalid(String),
    /// A local file could not be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

impl ClientError {
    /// An IO error on `path`.
    pub fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> ClientError {
        let path = path.into();
        move |source| ClientError::Io { path, source }
    }
}

impl From<seal_tuf::EditError> for ClientError {
    /// The editor's refusals, with the variants the client already has
    /// for the same failures kept.
    fn from(e: seal_tuf::EditError) -> ClientError {
        match e {
            seal_tuf::EditError::Tuf(e) => ClientError::Tuf(e),
            seal_tuf::EditError::NotInitialized(gun) => ClientError::NotInitialized(gun),
            seal_tuf::EditError::MissingKey { role, gun } => ClientError::MissingKey { role, gun },
            other => ClientError::Edit(other),
        }
    }
}
