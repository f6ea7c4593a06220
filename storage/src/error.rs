//! The error type of `seal-storage`.

use std::path::PathBuf;

/// Everything that can go wrong in `seal-storage`.
///
/// Variants carry the GUN, role, version or path they concern. Name errors
/// ([`Error::InvalidName`]) are the caller's fault and not retryable; RocksDB
/// and IO errors are environmental.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A GUN or role name that cannot be stored (empty, or containing NUL, the key separator).
    #[error("invalid {what} {name:?}: {reason}")]
    InvalidName {
        /// `"gun"` or `"role"`.
        what: &'static str,
        /// The offending name.
        name: String,
        /// Why it was refused.
        reason: &'static str,
    },
    /// RocksDB reported an error during `op`.
    #[error("rocksdb error during {op}: {source}")]
    Rocks {
        /// The operation that failed.
        op: &'static str,
        /// The underlying error.
        #[source]
        source: rocksdb::Error,
    },
    /// A stored value could not be decoded (corruption or a format change).
    #[error("corrupt value in column family {cf} (key {key_hex}): {reason}")]
    Corrupt {
        /// Column family name.
        cf: &'static str,
        /// Hex of the key.
        key_hex: String,
        /// What was wrong.
        reason: String,
    },
    /// A file (snapshot) could not be read or written.
    #[error("io error on {path}: {source}")]
    Io {
        /// The file concerned.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A snapshot file is malformed or fails its checksum.
    #[error("invalid snapshot {path}: {reason}")]
    InvalidSnapshot {
        /// The snapshot file.
        path: PathBuf,
        /// What was wrong.
        reason: String,
    },
    /// A snapshot install by a release of on-disk format 1 was interrupted: this release does not
    /// finish it (nor move such a database to format 2).
    #[error(
        "a snapshot install from {path} was interrupted under an earlier release (on-disk format 1): \
         start that release once to finish it, then this one"
    )]
    InstallUnrecoverable {
        /// The snapshot file the install was reading.
        path: PathBuf,
    },
    /// A column family expected by this version of Seal is missing from the database.
    #[error("column family {cf} missing")]
    MissingColumnFamily {
        /// Its name.
        cf: &'static str,
    },
    /// A value could not be encoded.
    #[error("encoding error for {what}: {reason}")]
    Encode {
        /// What was being encoded.
        what: &'static str,
        /// The encoder's message.
        reason: String,
    },
    /// The database was written by a newer Seal whose on-disk format this one cannot read.
    #[error(
        "{}: on-disk format {found} is newer than this Seal reads (up to {supported}): \
         run the newer release, or restore a backup made by this one",
        path.display()
    )]
    FormatTooNew {
        /// The database directory.
        path: PathBuf,
        /// The format version recorded in it.
        found: u32,
        /// The newest format this build reads.
        supported: u32,
    },
    /// The database belongs to another node id than the one opening it (a copied data directory).
    #[error(
        "{}: this data directory belongs to node {recorded}, not node {configured}: \
         a node's data directory cannot be reused by another node (restore a backup with \
         `seal-node restore` instead)",
        path.display()
    )]
    NodeIdMismatch {
        /// The database directory.
        path: PathBuf,
        /// The node id recorded in it.
        recorded: u64,
        /// The node id it was opened as.
        configured: u64,
    },
}

/// Result alias for this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

pub(crate) fn rocks(op: &'static str) -> impl FnOnce(rocksdb::Error) -> Error {
    move |source| Error::Rocks { op, source }
}
