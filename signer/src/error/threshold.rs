//! Why a threshold operation failed: [`ThresholdError`], the one error of
//! the protocol, as coordinator and as participant.
//!
//! It becomes a `tonic::Status` only at the two gRPC edges of
//! [`crate::threshold`]: [`ThresholdError::into_status`] (in its
//! `service.rs`) for whoever called this signer — a peer running the
//! protocol, or a client of the signer — and `GrpcPeers` (in its
//! `transport.rs`) turns a peer's `Status` back into a
//! `ThresholdError`. The coordinator decides on variants: a policy refusal
//! ([`ThresholdError::Policy`] here, [`ThresholdError::Refused`] from a
//! peer) ends a signing, a peer that did not answer
//! ([`ThresholdError::Unreachable`]) is counted and left out.

use crate::policy::Refusal;

/// Why a peer did not answer a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Unanswered {
    /// It could not be reached or the connection failed (gRPC
    /// `Unavailable`; a peer that answers `Unavailable` itself, its share
    /// locked, is not told apart).
    Unavailable,
    /// No answer within the deadline.
    TimedOut,
    /// The call was cancelled.
    Cancelled,
}

/// Why a threshold operation failed.
///
/// The first variants are what the backend tells the signer's clients as
/// coordinator; the next ones what a participant answers a coordinator (in
/// its own words: their `Display` is the message the peer protocol sends);
/// the last, [`ThresholdError::Unreachable`], is a peer that did not answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ThresholdError {
    /// The backend only makes Ed25519 keys.
    #[error("the threshold key backend makes only ed25519 keys (FROST); {0} is not supported")]
    Unsupported(&'static str),
    /// Fewer signers answered than the operation needs.
    #[error("{operation} needs {needed} signers, {reachable} answered: {details}")]
    Unavailable {
        /// What was attempted: `key generation (DKG)`, `share refresh`,
        /// `threshold signing` or `share repair`.
        operation: &'static str,
        /// Signers needed.
        needed: usize,
        /// Signers that answered.
        reachable: usize,
        /// Why the others did not.
        details: String,
    },
    /// A signer's policy refused the message (or a peer refused a request
    /// as out of order: every `FailedPrecondition` a peer answers).
    #[error("signer {signer} refused: {message}")]
    Refused {
        /// The refusing signer's identifier.
        signer: u16,
        /// Its reason.
        message: String,
        /// Its high-water mark, when it said.
        high_water: Option<u64>,
    },
    /// The key is unknown here.
    #[error("threshold key {0} not found")]
    NotFound(String),
    /// This signer already holds a share of the key (a repair is for a
    /// signer that lost it).
    #[error("this signer already holds a share of threshold key {0}")]
    AlreadyHeld(String),
    /// Signers disagree, or sent something malformed.
    #[error("threshold protocol failure: {0}")]
    Protocol(String),
    /// Storage, encryption or another local failure.
    #[error("threshold backend: {0}")]
    Internal(String),

    /// A request this participant does not take as sent: malformed, or
    /// naming another cluster, key, participants or helpers.
    #[error("{0}")]
    InvalidArgument(String),
    /// What a request names is not held here: a key, or a DKG or repair
    /// session (never opened, expired, or already finished).
    #[error("{0}")]
    Missing(String),
    /// The signing session's nonces are gone (used, refused or expired):
    /// the coordinator has to open a new session.
    #[error("{0}")]
    SessionGone(String),
    /// The session, the package or the key is here already.
    #[error("{0}")]
    AlreadyExists(String),
    /// A request that does not fit its session's state (a round out of
    /// order, deltas missing).
    #[error("{0}")]
    OutOfOrder(String),
    /// This participant's signing policy refused the message.
    #[error("signing policy: {0}")]
    Policy(Refusal),
    /// A peer announced a mark further above this signer's own than
    /// `policy.max_version_jump`.
    #[error("mark {version} of {key_id} is more than {max_jump} above this signer's {own}")]
    MarkTooHigh {
        /// The key.
        key_id: String,
        /// The version announced.
        version: u64,
        /// This signer's mark (0: none).
        own: u64,
        /// The largest jump allowed.
        max_jump: u64,
    },
    /// The caller may not ask this: not a participant or helper of the
    /// session, or not the signer the session belongs to.
    #[error("{0}")]
    PermissionDenied(String),
    /// This participant holds as many sessions of the kind as it keeps.
    #[error("{0}")]
    Busy(String),
    /// This participant's share cannot be used now: the passphrase of its
    /// alias is not set, or does not decrypt it.
    #[error("{0}")]
    Locked(String),
    /// A participant could not deliver its round-2 packages or repair
    /// deltas to the others.
    #[error("{what} delivery failed: {details}")]
    DeliveryFailed {
        /// `round-2` or `repair delta`.
        what: &'static str,
        /// Which recipients failed, and how.
        details: String,
    },
    /// A step on this participant failed (storage, encryption, encoding,
    /// a task), or a peer answered an error of its own.
    #[error("{0}")]
    Failed(String),

    /// A peer (or this signer's own part) did not answer: unreachable, a
    /// transport failure, no answer in time, or cancelled. Another signer
    /// may do instead.
    #[error("{message}")]
    Unreachable {
        /// The signer called.
        signer: u16,
        /// How it did not answer.
        why: Unanswered,
        /// What the transport said.
        message: String,
    },
}

impl ThresholdError {
    /// The high-water mark a refusal tells, if any.
    pub fn high_water(&self) -> Option<u64> {
        match self {
            ThresholdError::Refused { high_water, .. } => *high_water,
            ThresholdError::Policy(Refusal::NotNewer { high_water, .. }) => Some(*high_water),
            _ => None,
        }
    }

    /// The class of failure, named as the peer protocol's status code for
    /// it (`Unavailable`, `InvalidArgument`, …); for messages only.
    pub(crate) fn kind(&self) -> &'static str {
        match self {
            ThresholdError::Unsupported(_) => "Unknown",
            ThresholdError::Unavailable { .. }
            | ThresholdError::Locked(_)
            | ThresholdError::DeliveryFailed { .. }
            | ThresholdError::Unreachable {
                why: Unanswered::Unavailable,
                ..
            } => "Unavailable",
            ThresholdError::Unreachable {
                why: Unanswered::TimedOut,
                ..
            } => "DeadlineExceeded",
            ThresholdError::Unreachable {
                why: Unanswered::Cancelled,
                ..
            } => "Cancelled",
            ThresholdError::Refused { .. }
            | ThresholdError::OutOfOrder(_)
            | ThresholdError::Policy(_)
            | ThresholdError::MarkTooHigh { .. } => "FailedPrecondition",
            ThresholdError::NotFound(_) | ThresholdError::Missing(_) => "NotFound",
            ThresholdError::AlreadyHeld(_) | ThresholdError::AlreadyExists(_) => "AlreadyExists",
            ThresholdError::Protocol(_) | ThresholdError::Internal(_) | ThresholdError::Failed(_) => "Internal",
            ThresholdError::InvalidArgument(_) => "InvalidArgument",
            ThresholdError::SessionGone(_) => "Aborted",
            ThresholdError::PermissionDenied(_) => "PermissionDenied",
            ThresholdError::Busy(_) => "ResourceExhausted",
        }
    }

    /// What signer `id` answered, for a list of failures: the kind and
    /// the signer's own words (a peer's refusal without the "signer N
    /// refused" this error adds).
    pub(crate) fn detail(&self, id: u16) -> String {
        match self {
            ThresholdError::Refused { message, .. } => format!("signer {id}: {}: {message}", self.kind()),
            other => format!("signer {id}: {}: {other}", other.kind()),
        }
    }
}
