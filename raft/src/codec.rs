//! Encoding of openraft values stored as bytes in `seal-storage`, and error mapping.
//!
//! Log entries, votes, log ids and memberships are stored with `postcard`: a
//! compact, deterministic binary serde format (varints, no field names), so a
//! publish carrying a few KiB of metadata costs a few KiB in the log rather
//! than the 3-4x of JSON number arrays or base64; metadata bytes are
//! `serde_bytes`, so they are copied verbatim.

use openraft::{AnyError, ErrorSubject, ErrorVerb, StorageIOError};
use serde::{de::DeserializeOwned, Serialize};

use crate::types::StorageError;

/// Encode a value.
pub(crate) fn encode<T: Serialize>(v: &T, subject: ErrorSubject<u64>) -> Result<Vec<u8>, StorageError> {
    postcard::to_allocvec(v).map_err(|e| io_err(subject, ErrorVerb::Write, &e))
}

/// Decode a value. A log entry that does not decode names the likely cause: a command of a newer
/// release (docs/operations.md, "Upgrades": such a node must be upgraded, not left to guess).
pub(crate) fn decode<T: DeserializeOwned>(bytes: &[u8], subject: ErrorSubject<u64>) -> Result<T, StorageError> {
    postcard::from_bytes(bytes).map_err(|e| match subject {
        ErrorSubject::Log(_) | ErrorSubject::LogIndex(_) => io_err(
            subject,
            ErrorVerb::Read,
            &UnknownEntry(format!(
                "{e}: a log entry this release cannot read, most likely a command of a newer Seal \
                 release: upgrade this node"
            )),
        ),
        _ => io_err(subject, ErrorVerb::Read, &e),
    })
}

/// Why a log entry could not be read.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct UnknownEntry(String);

/// Wrap an error as an openraft storage error.
pub(crate) fn io_err<E: std::error::Error + 'static>(
    subject: ErrorSubject<u64>,
    verb: ErrorVerb,
    e: &E,
) -> StorageError {
    StorageError::IO {
        source: StorageIOError::new(subject, verb, AnyError::new(e)),
    }
}

/// Map a blocking task's join failure.
pub(crate) fn join_err(subject: ErrorSubject<u64>, verb: ErrorVerb, e: &tokio::task::JoinError) -> StorageError {
    io_err(subject, verb, e)
}
