//! Errors of seal-tuf. Each variant carries what a reader needs: the role,
//! the version, the key.

use time::OffsetDateTime;

pub use crate::keys::KeyError;
use crate::keys::KeyId;

/// A metadata file that cannot be parsed, does not verify, or breaks a
/// TUF rule.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Not JSON, or JSON canonical form cannot carry (floats, duplicate keys).
    #[error("{role}: malformed JSON: {reason}")]
    Json {
        /// The role whose file it is.
        role: String,
        /// What the parser said.
        reason: String,
    },
    /// A field is missing or has the wrong shape.
    #[error("{role}: invalid field {field}: {reason}")]
    Field {
        /// The role whose file it is.
        role: String,
        /// The field's path.
        field: String,
        /// What is wrong.
        reason: String,
    },
    /// `_type` is not what the role requires.
    #[error("{role}: expected _type {expected}, found {found:?}")]
    WrongType {
        /// The role whose file it is.
        role: String,
        /// The type the role requires.
        expected: &'static str,
        /// The type found.
        found: String,
    },
    /// Not a valid role name.
    #[error("invalid role name {0:?}")]
    InvalidRole(String),
    /// A listed key does not parse or its ID does not match its content.
    #[error("{role}: key {keyid}: {reason}")]
    BadKey {
        /// The role listing the key.
        role: String,
        /// The key's ID as listed.
        keyid: KeyId,
        /// What is wrong.
        reason: String,
    },
    /// The file has no signatures at all.
    #[error("{role}: tuf: data has no signatures")]
    NoSignatures {
        /// The role whose file it is.
        role: String,
    },
    /// Fewer valid signatures from distinct trusted keys than the threshold.
    #[error("{role}: valid signatures did not meet threshold ({valid} of {threshold})")]
    Threshold {
        /// The role whose file it is.
        role: String,
        /// Distinct trusted keys whose signature verified.
        valid: usize,
        /// The threshold.
        threshold: u32,
    },
    /// The file expired.
    #[error("{role}: metadata expired at {expires}")]
    Expired {
        /// The role whose file it is.
        role: String,
        /// When it expired.
        expires: OffsetDateTime,
    },
    /// A version lower than one already trusted (rollback).
    #[error("{role}: version {got} is lower than trusted version {trusted}")]
    Rollback {
        /// The role whose file it is.
        role: String,
        /// The version trusted so far.
        trusted: u64,
        /// The version offered.
        got: u64,
    },
    /// A version whose increment would overflow (Cure53 TUF-01-002).
    #[error("{role}: version {version} is too large")]
    VersionTooLarge {
        /// The role whose file it is.
        role: String,
        /// The version.
        version: u128,
    },
    /// The bytes do not match the hashes or length that vouch for them.
    #[error("{role}: {reason}")]
    HashMismatch {
        /// The role whose file it is.
        role: String,
        /// Which check failed.
        reason: String,
    },
    /// A file longer than its limit (endless-data attack).
    #[error("{role}: {size} bytes exceeds the limit of {limit}")]
    TooLarge {
        /// The role whose file it is.
        role: String,
        /// Its size, or the size announced.
        size: u64,
        /// The limit.
        limit: u64,
    },
    /// A role that the metadata above it does not vouch for.
    #[error("{role}: {reason}")]
    Untrusted {
        /// The role.
        role: String,
        /// Why it is not trusted.
        reason: String,
    },
    /// A delegation lists a target outside the paths it was delegated.
    #[error("{role}: target {target:?} is outside the delegated paths")]
    PathNotDelegated {
        /// The delegated role.
        role: String,
        /// The offending target name.
        target: String,
    },
    /// An upload carries more signatures than keys that could count for it.
    #[error("{role}: {count} signatures, more than the {max} its keys allow")]
    TooManySignatures {
        /// The role whose file it is.
        role: String,
        /// Signatures carried.
        count: usize,
        /// The most allowed.
        max: usize,
    },
    /// An upload carries two signatures naming the same key.
    #[error("{role}: two signatures by key {keyid}")]
    DuplicateSignature {
        /// The role whose file it is.
        role: String,
        /// The key named twice.
        keyid: KeyId,
    },
    /// An upload holds more entries of some kind than the server accepts.
    #[error("{role}: {count} {what}, more than the {max} allowed")]
    TooMany {
        /// The role whose file it is.
        role: String,
        /// What was counted (`keys`, `delegations`, `targets`).
        what: &'static str,
        /// How many the file holds.
        count: usize,
        /// The most allowed.
        max: usize,
    },
    /// A version that jumps further above the current one than allowed.
    #[error("{role}: version {version} jumps more than {max_jump} above {current}")]
    VersionJump {
        /// The role.
        role: String,
        /// The uploaded version.
        version: u64,
        /// The current version (0: none yet).
        current: u64,
        /// The largest jump allowed.
        max_jump: u64,
    },
    /// An x509 root certificate is not acceptable for this GUN.
    #[error("{role}: certificate of key {keyid}: {reason}")]
    BadCertificate {
        /// The role.
        role: String,
        /// The key.
        keyid: KeyId,
        /// Why.
        reason: String,
    },
    /// The server holds no key the root lists for a role it must sign
    /// (enough of them to reach the role's threshold).
    #[error("{role}: the server holds none of the keys the root lists")]
    NoServerKey {
        /// The role.
        role: String,
    },
}

impl Error {
    /// The role the error is about, when there is one.
    pub fn role(&self) -> Option<&str> {
        match self {
            Error::Json { role, .. }
            | Error::Field { role, .. }
            | Error::WrongType { role, .. }
            | Error::BadKey { role, .. }
            | Error::NoSignatures { role }
            | Error::Threshold { role, .. }
            | Error::Expired { role, .. }
            | Error::Rollback { role, .. }
            | Error::VersionTooLarge { role, .. }
            | Error::HashMismatch { role, .. }
            | Error::TooLarge { role, .. }
            | Error::Untrusted { role, .. }
            | Error::PathNotDelegated { role, .. }
            | Error::BadCertificate { role, .. }
            | Error::TooManySignatures { role, .. }
            | Error::DuplicateSignature { role, .. }
            | Error::TooMany { role, .. }
            | Error::VersionJump { role, .. }
            | Error::NoServerKey { role } => Some(role),
            Error::InvalidRole(_) => None,
        }
    }
}

/// Notary's classification of an invalid update (the `Name` in the
/// INVALID_UPDATE error body).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpdateErrorKind {
    /// `ErrValidation`: the update as a whole is unusable.
    Validation,
    /// `ErrBadHierarchy`: a role is missing what it needs (snapshot key, parent).
    BadHierarchy,
    /// `ErrBadRoot`
    BadRoot,
    /// `ErrBadTargets`
    BadTargets,
    /// `ErrBadSnapshot`
    BadSnapshot,
}

impl UpdateErrorKind {
    /// Notary's name for the error, as it appears in the error body.
    pub fn notary_name(self) -> &'static str {
        match self {
            UpdateErrorKind::Validation => "ErrValidation",
            UpdateErrorKind::BadHierarchy => "ErrBadHierarchy",
            UpdateErrorKind::BadRoot => "ErrBadRoot",
            UpdateErrorKind::BadTargets => "ErrBadTargets",
            UpdateErrorKind::BadSnapshot => "ErrBadSnapshot",
        }
    }
}

/// Why an uploaded update is refused. Maps 1:1 to Notary's answers.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum UpdateError {
    /// 400 INVALID_ROLE: a part's name is not a role.
    #[error("invalid role {0:?}")]
    InvalidRole(String),
    /// 400 MALFORMED_JSON: a part does not parse as JSON.
    #[error("malformed JSON in {role}: {reason}")]
    MalformedJson {
        /// The part's role.
        role: String,
        /// The parser's message.
        reason: String,
    },
    /// 400 INVALID_UPDATE with Notary's error name and message.
    #[error("{}: {msg}", kind.notary_name())]
    Invalid {
        /// Notary's classification.
        kind: UpdateErrorKind,
        /// The role concerned, when there is one.
        role: Option<String>,
        /// The message (Notary's `Error.Msg`).
        msg: String,
    },
    /// 400 VERSION: a role's version is not above every stored version.
    #[error("{role}: version {version} is not above the current version {current}")]
    OldVersion {
        /// The role.
        role: String,
        /// The uploaded version.
        version: u64,
        /// The current stored version.
        current: u64,
    },
}

impl UpdateError {
    pub(crate) fn invalid(kind: UpdateErrorKind, role: Option<&str>, msg: impl Into<String>) -> Self {
        UpdateError::Invalid {
            kind,
            role: role.map(str::to_owned),
            msg: msg.into(),
        }
    }

    pub(crate) fn from_error(kind: UpdateErrorKind, e: &Error) -> Self {
        // Notary's own wording where its clients may match on it.
        let msg = match e {
            Error::NoSignatures { .. } => "tuf: data has no signatures".to_owned(),
            other => other.to_string(),
        };
        UpdateError::Invalid {
            kind,
            role: e.role().map(str::to_owned),
            msg,
        }
    }
}

/// Why an edit of a collection (see [`crate::editor`]) is refused. The
/// messages are the ones Seal's CLI has always printed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EditError {
    /// The metadata an edit builds on breaks a TUF rule (a version that
    /// cannot grow, a snapshot that cannot be made).
    #[error(transparent)]
    Tuf(#[from] Error),
    /// The collection has no `targets` metadata to edit.
    #[error("repository {0} is not initialized")]
    NotInitialized(String),
    /// A target edit names a delegated role not delegated all the way from `targets`.
    #[error("cannot add or remove {target} in {role}: {gun} has no such delegation")]
    NoSuchDelegation {
        /// The collection.
        gun: String,
        /// The role named.
        role: String,
        /// The target.
        target: String,
    },
    /// A target outside the paths delegated to the role (or to a role above it).
    #[error("target {target} is outside the paths delegated to {role}")]
    PathNotDelegated {
        /// The role.
        role: String,
        /// The target.
        target: String,
    },
    /// A witness of a role that has no metadata.
    #[error("cannot witness {role}: it has no metadata in {gun}")]
    CannotWitness {
        /// The collection.
        gun: String,
        /// The role.
        role: String,
    },
    /// A delegation change of a role that is not `targets/…`.
    #[error("{0:?} is not a delegation role")]
    NotDelegationRole(String),
    /// A delegation whose parent role has no metadata.
    #[error("cannot delegate {role}: its parent {parent} has no metadata yet")]
    ParentMissing {
        /// The delegated role.
        role: String,
        /// Its parent.
        parent: String,
    },
    /// An update of a delegation that does not exist.
    #[error("{role} is not delegated in {parent}")]
    NotDelegated {
        /// The role.
        role: String,
        /// The parent that does not delegate it.
        parent: String,
    },
    /// A key rotation before the first publish.
    #[error("{0} has not been published yet: publish it before rotating keys")]
    NotPublished(String),
    /// A local timestamp key.
    #[error("the timestamp key is always held by the server: use --server-managed (-r)")]
    TimestampKeyIsServers,
    /// A server-held root or targets key.
    #[error("only snapshot and timestamp keys can be server-managed, not {0}")]
    NotServerManageable(String),
    /// A rotation of something that is not a base role.
    #[error("{0:?} is not a role whose key can be rotated (root, targets, snapshot, timestamp)")]
    NotRotatable(String),
    /// A role to sign has no metadata.
    #[error("{0}: no metadata")]
    NoMetadata(String),
    /// A delegated role to sign whose parent has no metadata.
    #[error("{0}: its parent role has no metadata")]
    ParentGone(String),
    /// A delegated role to sign that its parent no longer delegates.
    #[error("{0} is no longer delegated; cannot sign it")]
    NoLongerDelegated(String),
    /// A role to sign whose next version would pass the largest allowed.
    #[error("{0}: version would overflow")]
    VersionOverflow(String),
    /// No private key is held for a role that must sign.
    #[error("no private key for role {role} of {gun}: cannot sign {role}")]
    MissingKey {
        /// The role.
        role: String,
        /// The collection.
        gun: String,
    },
    /// The held keys cannot meet the role's threshold.
    #[error("{role} needs signatures from {threshold} keys; this trust directory holds {held}")]
    BelowThreshold {
        /// The role.
        role: String,
        /// Its threshold.
        threshold: u32,
        /// The held keys that count for it.
        held: usize,
    },
}

/// What an edit allowed but a user should hear about.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EditWarning {
    /// A delegation left with fewer keys than its threshold (as Notary
    /// allows): it signs nothing until keys are added.
    #[error("role {role} has fewer keys than its threshold of {threshold}; it will not be usable until keys are added to it")]
    BelowThreshold {
        /// The role.
        role: String,
        /// Its threshold.
        threshold: u32,
    },
}
