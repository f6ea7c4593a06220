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
