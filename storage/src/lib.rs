//! `seal-storage`: Seal's on-disk state in two RocksDB instances: the Raft database (log, Raft
//! metadata, the node's own records) and, inside its directory, the state machine's.
//!
//! * [`keys`] names the column families and key encodings (Raft log and
//!   metadata, and the state machine: metadata files by version, checksum
//!   index, current versions, changefeed, timestamp-expiry index, server keys).
//! * [`command`] is the replicated command model ([`Command`], [`ApplyOutcome`]).
//! * [`Store`] opens the database, offers the byte-level Raft log API used by
//!   `seal-raft`, and applies commands deterministically, each as one atomic
//!   write batch (compare-and-set on versions, no clock reads).
//! * `local`: the node's own records beside the replicated state (on-disk format version,
//!   node id, cluster id) and checkpoints of the whole database, for backups.
//! * [`Reader`] serves lock-free reads of the state machine.
//! * `state`: the state machine's own database, one generation directory at a time.
//! * [`snapshot`] makes state-machine snapshots as RocksDB checkpoints and installs them
//!   crash-safely as a new generation; and the [`StateDigest`] by which replicas are compared
//!   ([`Store::state_digest`]).
//! * `faults` (feature `fault-injection`, tests only) delays synced writes
//!   to simulate a slow disk (`set_sync_delay`).
//!
//! This crate knows nothing of openraft or TUF: the Raft layer passes its log
//! ids as opaque bytes, and the node validates metadata before proposing.
#![warn(missing_docs)]
#![forbid(unsafe_code)]

pub mod archive;
mod cache;
pub mod command;
pub mod error;
#[cfg(feature = "fault-injection")]
pub mod faults;
mod import;
pub mod keys;
mod local;
pub mod snapshot;
mod state;
mod store;

pub use cache::{CurrentFile, CACHE_BYTES};
pub use command::{
    ApplyOutcome, ChangeCategory, ChangeRecord, Command, ImportedChange, ImportedCollection, KeyEntry, MetaFile,
    ServerKeys,
};
pub use error::{Error, Result};
#[cfg(feature = "fault-injection")]
pub use faults::set_sync_delay;
pub use keys::rfc3339_nanos;
pub use local::FORMAT_VERSION;
pub use snapshot::{crash_point, dir_size, CheckpointInfo, StateDigest, INSTALL_STEPS};
pub use state::{
    copy_checkpoint, MAX_TOTAL_WAL_BYTES, MEMTABLE_BUDGET_BYTES, RAFT_BLOCK_CACHE_BYTES, STATE_BLOCK_CACHE_BYTES,
};
pub use store::{Applied, MemoryUsage, RaftMetaKey, Reader, Store};
