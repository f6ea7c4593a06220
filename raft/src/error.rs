//! Error types of `seal-raft`.

use std::path::PathBuf;

/// Errors opening, running or shutting down a [`crate::SealRaft`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The storage layer failed.
    #[error("storage error in {data_dir}: {source}")]
    Storage {
        /// The node's data directory.
        data_dir: PathBuf,
        /// The underlying error.
        #[source]
        source: seal_storage::Error,
    },
    /// A file or directory under the data directory could not be used.
    #[error("io error on {path}: {source}")]
    Io {
        /// The path concerned.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The Raft configuration is invalid.
    #[error("invalid raft config: {reason}")]
    Config {
        /// openraft's explanation.
        reason: String,
    },
    /// openraft stopped with a fatal error (storage failure, panic, shutdown).
    #[error("raft node {node_id} fatal: {reason}")]
    Fatal {
        /// This node.
        node_id: u64,
        /// openraft's explanation.
        reason: String,
    },
    /// Initializing the single-voter membership failed.
    #[error("initializing raft node {node_id} failed: {reason}")]
    Initialize {
        /// This node.
        node_id: u64,
        /// openraft's explanation.
        reason: String,
    },
    /// The cluster's TLS material could not be loaded or is unusable.
    #[error("raft TLS: {what} {path:?}: {reason}")]
    Tls {
        /// Which piece: `CA certificate`, `certificate`, `private key`, `certificate and key`, or
        /// `configuration`.
        what: &'static str,
        /// The file concerned, if one.
        path: Option<PathBuf>,
        /// What is wrong with it.
        reason: String,
    },
    /// The Raft gRPC server could not listen on its address.
    #[error("cannot listen for raft RPCs on {addr:?}: {source}")]
    Bind {
        /// The configured address.
        addr: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A wait (for a leader, for shutdown) timed out.
    #[error("timed out after {millis} ms waiting for {what}")]
    Timeout {
        /// What was awaited.
        what: &'static str,
        /// How long.
        millis: u64,
    },
}

/// Why a [`crate::SealRaft::write`] did not produce an [`seal_storage::ApplyOutcome`].
///
/// [`WriteError::is_retryable`] tells apart what the caller may retry (possibly
/// on another node) from what is fatal for this node.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum WriteError {
    /// This node is not the leader; retry on the leader, if known.
    #[error("not the leader; forward to {leader_id:?} at {leader_addr:?}")]
    ForwardToLeader {
        /// The leader's id, if known.
        leader_id: Option<u64>,
        /// The leader's address, if known.
        leader_addr: Option<String>,
    },
    /// The Raft node is shutting down or has failed; this node cannot write any more.
    #[error("raft node {node_id} fatal: {reason}")]
    Fatal {
        /// This node.
        node_id: u64,
        /// openraft's explanation.
        reason: String,
    },
    /// openraft refused the write for another reason (e.g. a membership change in progress).
    #[error("raft refused the write: {reason}")]
    Refused {
        /// openraft's explanation.
        reason: String,
    },
}

impl WriteError {
    /// Whether the same write may succeed if retried (later, or on the leader).
    pub fn is_retryable(&self) -> bool {
        matches!(self, WriteError::ForwardToLeader { .. } | WriteError::Refused { .. })
    }
}

/// Why a membership operation ([`crate::SealRaft::initialize`], [`crate::SealRaft::add_learner`],
/// [`crate::SealRaft::change_membership`]) did not happen.
///
/// [`MembershipError::is_retryable`] tells apart what may succeed later or on another node from a
/// request that is wrong in itself.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MembershipError {
    /// This node is not the leader; retry on the leader, if known.
    #[error("not the leader; forward to {leader_id:?} at {leader_addr:?}")]
    ForwardToLeader {
        /// The leader's id, if known.
        leader_id: Option<u64>,
        /// The leader's address, if known.
        leader_addr: Option<String>,
    },
    /// Another membership change is not finished yet; retry once it is.
    #[error("a membership change is in progress: {reason}")]
    InProgress {
        /// openraft's explanation (the log ids concerned).
        reason: String,
    },
    /// `initialize` on a node that already has a log or a vote: the cluster exists.
    #[error("raft node {node_id} is already initialized: {reason}")]
    AlreadyInitialized {
        /// This node.
        node_id: u64,
        /// openraft's explanation (its last log id and vote).
        reason: String,
    },
    /// `initialize` with a membership that does not contain this node.
    #[error("raft node {node_id} is not among the initial members {members:?}")]
    NotInMembers {
        /// This node.
        node_id: u64,
        /// The ids that were given.
        members: Vec<u64>,
    },
    /// The new membership has no voter.
    #[error("a membership needs at least one voter")]
    EmptyMembership,
    /// A node to make a voter is not a learner yet: add it as a learner first.
    #[error("node {node_id} is not a learner: add it as a learner before making it a voter")]
    LearnerNotFound {
        /// The node concerned.
        node_id: u64,
    },
    /// The node to change is not in the membership.
    #[error("node {node_id} is not a member of the cluster")]
    NotAMember {
        /// The node concerned.
        node_id: u64,
    },
    /// The node to promote is a voter already.
    #[error("node {node_id} is already a voter")]
    AlreadyVoter {
        /// The node concerned.
        node_id: u64,
    },
    /// A node's Raft address is not `host:port`.
    #[error("node {node_id}: invalid raft address {addr:?}: {reason}")]
    InvalidAddress {
        /// The node concerned.
        node_id: u64,
        /// The address given.
        addr: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The Raft node is shutting down or has failed.
    #[error("raft node {node_id} fatal: {reason}")]
    Fatal {
        /// This node.
        node_id: u64,
        /// openraft's explanation.
        reason: String,
    },
    /// The node to add cannot join this cluster: it belongs to another cluster, holds data of
    /// one, or is another node than the id given.
    #[error("node {node_id} at {addr} cannot join this cluster: {reason}")]
    CannotJoin {
        /// The node concerned.
        node_id: u64,
        /// Its Raft address.
        addr: String,
        /// Why, naming both clusters' ids where known.
        reason: String,
    },
}

impl MembershipError {
    /// Whether the same request may succeed if retried (later, or on the leader).
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            MembershipError::ForwardToLeader { .. } | MembershipError::InProgress { .. }
        )
    }
}
