//! seal-tuf: the TUF core of Seal, in Notary's dialect.
//!
//! Pure: no IO, no async, no clock (`now` is always an argument).
//!
//! * [`cjson`]: canonical JSON byte-identical to Notary's, parsing that
//!   refuses duplicate keys and non-integers.
//! * [`keys`]: public keys (`ed25519`, `ecdsa`, `rsa`, `*-x509`), key IDs,
//!   signature verification bound to the key's type, signing keys.
//! * [`metadata`]: the signed envelope and the four role types with
//!   delegations; [`time`] formats times as Notary does.
//! * [`verify`]: threshold signature checks shared by server and client.
//! * [`update`]: the server's validation of an upload, one pure function.
//! * [`history`]: a collection's stored history judged as a whole (current
//!   state as a client verifies it, the hash chain between versions).
//! * [`generate`]: the next snapshot and timestamp the server signs.
//! * [`editor`]: the client's edits of a collection (targets, delegations,
//!   key rotation) and its signing of them, with version bumps, default
//!   expiries and threshold counting.
//! * [`server`]: the server's own plans: timestamp refresh, the version
//!   above a signer's mark, which held key is active.
//! * [`client`]: the client's verification workflow (TOFU or pinning, root
//!   rotation, timestamp → snapshot → targets → delegations).
//! * [`tuf1`]: standard TUF 1.0 repositories (python-tuf, go-tuf, tough):
//!   canonical JSON, keys, metadata model and the client workflow.
#![warn(missing_docs)]
#![forbid(unsafe_code)]

#[cfg(feature = "certs")]
pub mod certs;
pub mod cjson;
pub mod client;
pub mod editor;
pub mod error;
pub mod generate;
pub mod history;
pub mod keys;
pub mod metadata;
pub mod server;
#[cfg(feature = "testing")]
pub mod testing;
pub mod time;
pub mod tuf1;
pub mod update;
pub mod verify;

pub use error::{EditError, EditWarning, Error, KeyError, UpdateError, UpdateErrorKind};
pub use keys::{KeyId, KeyType, PrivateKey, PublicKey, Signature};
pub use metadata::{FileMeta, Root, SignedFile, Snapshot, Targets, Timestamp};
