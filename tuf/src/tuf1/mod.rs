//! Standard TUF 1.0 repositories (the dialect python-tuf, go-tuf and tough
//! speak), beside Notary's dialect in the rest of this crate.
//!
//! * [`cjson`]: canonical JSON as securesystemslib writes it (only `\` and
//!   `"` escaped), over [`crate::cjson::Value`]'s strict parser.
//! * [`keys`]: `ed25519`, `ecdsa-sha2-nistp256` (PEM keys, DER signatures)
//!   and `rsassa-pss-sha256` keys; signing keys for the service's roles.
//! * [`metadata`]: the envelope, Root/Timestamp/Snapshot/Targets, meta and
//!   target files, delegations with path patterns, hash prefixes and
//!   succinct hash bins; threshold verification.
//! * [`client`]: the client workflow of spec §5.3–5.6 as a pure trusted
//!   set, and the delegation search for a target.
//! * [`repo`]: the repository side: validating uploaded roots and targets
//!   roles, generating the next snapshot and timestamp.
//! * [`error`]: one error enum whose variants carry role, versions, keys.
//!
//! Pure: no IO, no clock; `now` is an argument.
//!
//! A repository is stored among Notary's collections under the name
//! [`collection`] gives it: `*tuf1/<repository>`. No Notary GUN holds `*`
//! (Notary's router refuses it), so the two namespaces never meet, and a
//! signer tells from a key's collection which dialect it signs.

pub mod cjson;
pub mod client;
pub mod error;
pub mod keys;
pub mod metadata;
pub mod repo;

pub use client::{SearchStep, TargetSearch, TimestampUpdate, TrustedSet};
pub use error::Error;
pub use keys::{Key, Signature, SigningKey};
pub use metadata::{
    DelegatedRole, DelegatedRoles, Delegations, MetaFile, Metadata, PathSpec, Root, Snapshot, SuccinctRoles,
    TargetFile, Targets, Timestamp,
};

/// The prefix of the collection names TUF 1.0 repositories are stored under.
pub const COLLECTION_PREFIX: &str = "*tuf1/";

/// The longest repository name accepted.
pub const MAX_REPOSITORY_NAME: usize = 128;

/// Whether `name` is acceptable as a repository name: 1 to
/// [`MAX_REPOSITORY_NAME`] ASCII letters, digits, `-`, `_` and `.`, starting
/// with a letter or digit (one URL path segment, never `.` or `..`).
pub fn is_valid_repository_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_REPOSITORY_NAME
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

/// The collection name repository `name` is stored under.
pub fn collection(name: &str) -> String {
    format!("{COLLECTION_PREFIX}{name}")
}

/// The repository a collection name stores, if it is one of a TUF 1.0
/// repository.
pub fn repository_of(collection: &str) -> Option<&str> {
    collection
        .strip_prefix(COLLECTION_PREFIX)
        .filter(|name| is_valid_repository_name(name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repository_names_and_collections() {
        for good in ["a", "pypi", "my-repo_1.2", "0"] {
            assert!(is_valid_repository_name(good), "{good}");
            assert_eq!(repository_of(&collection(good)), Some(good));
        }
        let long = "a".repeat(MAX_REPOSITORY_NAME + 1);
        for bad in ["", ".", "..", ".a", "-a", "a/b", "a b", "a*", "é", long.as_str()] {
            assert!(!is_valid_repository_name(bad), "{bad}");
            assert_eq!(repository_of(&collection(bad)), None);
        }
        assert_eq!(repository_of("pypi"), None);
        assert_eq!(repository_of("tuf1/pypi"), None);
    }
}
