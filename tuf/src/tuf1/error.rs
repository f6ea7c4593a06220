//! The one error type of the TUF 1.0 core: each variant names the role and
//! carries the versions, keys or sizes a reader needs.

use time::OffsetDateTime;

/// Why TUF 1.0 metadata was refused.
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
    /// A field is missing, has the wrong type or a value the spec forbids.
    #[error("{role}: invalid field {field}: {reason}")]
    Format {
        /// The role whose file it is.
        role: String,
        /// The field's path, for example `signed.roles.root.threshold`.
        field: String,
        /// What is wrong.
        reason: String,
    },
    /// `_type` is not the one the role requires.
    #[error("{role}: expected _type {expected:?}, found {found:?}")]
    WrongType {
        /// The role whose file it is.
        role: String,
        /// The type the role requires.
        expected: &'static str,
        /// The type found.
        found: String,
    },
    /// `spec_version` is not 1.x.
    #[error("{role}: unsupported spec_version {found:?}")]
    SpecVersion {
        /// The role whose file it is.
        role: String,
        /// The version found.
        found: String,
    },
    /// A key that cannot be used: unknown type or scheme, malformed public part.
    #[error("key {keyid}: {reason}")]
    Key {
        /// The key's ID.
        keyid: String,
        /// What is wrong.
        reason: String,
    },
    /// Fewer valid signatures from distinct keys of the role than its threshold.
    #[error("{role}: {valid} valid signatures of distinct keys, threshold {threshold}")]
    Threshold {
        /// The role whose file it is.
        role: String,
        /// How many distinct keys of the role signed validly.
        valid: usize,
        /// The role's threshold.
        threshold: u64,
    },
    /// The delegating role does not delegate to this role.
    #[error("{delegator} does not delegate to {role}")]
    NotDelegated {
        /// The role asked for.
        role: String,
        /// The role that should have delegated it.
        delegator: String,
    },
    /// A version lower than one already trusted.
    #[error("{role}: version {got} is lower than trusted version {trusted}")]
    Rollback {
        /// The role (or meta file) whose version went back.
        role: String,
        /// The version trusted so far.
        trusted: u64,
        /// The version offered.
        got: u64,
    },
    /// A version other than the one required (root N+1, the version the
    /// timestamp or snapshot names, a new upload above the current one).
    #[error("{role}: expected version {expected}, got {got}")]
    WrongVersion {
        /// The role whose file it is.
        role: String,
        /// The version required (for an upload, the lowest acceptable).
        expected: u64,
        /// The version offered.
        got: u64,
    },
    /// The metadata expired at or before `now`.
    #[error("{role}: expired at {expires}")]
    Expired {
        /// The role whose file it is.
        role: String,
        /// When it expired.
        expires: OffsetDateTime,
    },
    /// The file's length differs from the one its referrer lists.
    #[error("{role}: length {got} differs from the expected {expected}")]
    LengthMismatch {
        /// The role (or target) whose file it is.
        role: String,
        /// The length listed.
        expected: u64,
        /// The length found.
        got: u64,
    },
    /// A hash differs from the one its referrer lists.
    #[error("{role}: {algorithm} hash {got} differs from the expected {expected}")]
    HashMismatch {
        /// The role (or target) whose file it is.
        role: String,
        /// The hash algorithm.
        algorithm: String,
        /// The hash listed.
        expected: String,
        /// The hash computed.
        got: String,
    },
    /// A hash algorithm this implementation cannot compute.
    #[error("{role}: unsupported hash algorithm {algorithm:?}")]
    UnsupportedHash {
        /// The role (or target) whose file it is.
        role: String,
        /// The algorithm named.
        algorithm: String,
    },
    /// The snapshot (or timestamp) lists no entry for a file it must list.
    #[error("{referrer} lists no meta for {file}")]
    MissingMeta {
        /// The role that should list it.
        referrer: String,
        /// The file, for example `targets.json`.
        file: String,
    },
    /// A file is larger than the limit for its role.
    #[error("{role}: {len} bytes exceeds the limit of {max}")]
    TooLarge {
        /// The role whose file it is.
        role: String,
        /// Its size.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// A step of the workflow was called out of order (for example a
    /// snapshot before a timestamp).
    #[error("out of order: {0}")]
    Order(&'static str),
    /// A signing key could not sign (for example a malformed private key).
    #[error("signing failed: {0}")]
    Signing(String),
}

impl Error {
    /// A [`Error::Format`] for `role` and `field`.
    pub(crate) fn format(role: &str, field: &str, reason: impl Into<String>) -> Error {
        Error::Format {
            role: role.to_owned(),
            field: field.to_owned(),
            reason: reason.into(),
        }
    }
}
