//! The openraft type configuration of Seal.

use seal_storage::{ApplyOutcome, Command};

openraft::declare_raft_types!(
    /// Seal's Raft types: commands are [`Command`]s, responses [`ApplyOutcome`]s,
    /// node ids `u64`, nodes [`openraft::BasicNode`] (their address), and
    /// snapshots are checkpoint directories streamed file by file.
    pub TypeConfig:
        D = Command,
        R = ApplyOutcome,
        NodeId = u64,
        Node = openraft::BasicNode,
        Entry = openraft::Entry<TypeConfig>,
        SnapshotData = crate::snapshot_data::SnapshotData,
        AsyncRuntime = openraft::TokioRuntime,
);

/// A log entry.
pub type Entry = openraft::Entry<TypeConfig>;
/// A log id.
pub type LogId = openraft::LogId<u64>;
/// A vote.
pub type Vote = openraft::Vote<u64>;
/// Membership as recorded with its log id.
pub type StoredMembership = openraft::StoredMembership<u64, openraft::BasicNode>;
/// Snapshot metadata.
pub type SnapshotMeta = openraft::SnapshotMeta<u64, openraft::BasicNode>;
/// A snapshot with its data.
pub type Snapshot = openraft::Snapshot<TypeConfig>;
/// Storage errors as openraft wants them.
pub type StorageError = openraft::StorageError<u64>;
/// The Raft handle.
pub type Raft = openraft::Raft<TypeConfig>;
