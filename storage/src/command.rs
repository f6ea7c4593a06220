//! The replicated command model: what the leader proposes and every replica applies.
//!
//! Commands are plain data. Applying one is deterministic: it never reads the
//! clock (times are carried in the command) and depends only on the stored state.

use serde::{Deserialize, Serialize};

/// One metadata file to store: exact bytes as uploaded or signed.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MetaFile {
    /// Role name (`root`, `targets`, `targets/<name>`, `snapshot`, `timestamp`).
    pub role: String,
    /// The `signed.version` of the file, as validated by the leader.
    pub version: u64,
    /// The exact file bytes.
    #[serde(with = "serde_bytes")]
    pub bytes: Vec<u8>,
}

impl std::fmt::Debug for MetaFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MetaFile")
            .field("role", &self.role)
            .field("version", &self.version)
            .field("len", &self.bytes.len())
            .finish()
    }
}

/// A state-machine command, replicated through Raft.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Command {
    /// Publish: files to write, versions they were validated against (role ->
    /// current version or `None` when absent), the new timestamp's expiry (if a
    /// timestamp is among the files) and the leader's wall-clock time for the
    /// changefeed's `CreatedAt`.
    Publish {
        /// The collection.
        gun: String,
        /// Files to write.
        files: Vec<MetaFile>,
        /// Compare-and-set preconditions: role -> current version the leader saw.
        expected: Vec<(String, Option<u64>)>,
        /// Expiry of the timestamp among `files`, if any.
        timestamp_expires_unix_nanos: Option<i64>,
        /// Leader's clock when proposing.
        at_unix_nanos: i64,
    },
    /// Delete everything stored for a GUN.
    DeleteGun {
        /// The collection.
        gun: String,
        /// Leader's clock when proposing.
        at_unix_nanos: i64,
    },
    /// Refreshed timestamp (and server-managed snapshot, if it was regenerated)
    /// for a GUN whose timestamp is due.
    RefreshTimestamp {
        /// The collection.
        gun: String,
        /// The new timestamp, and optionally a new snapshot.
        files: Vec<MetaFile>,
        /// Compare-and-set preconditions.
        expected: Vec<(String, Option<u64>)>,
        /// Expiry of the new timestamp.
        timestamp_expires_unix_nanos: i64,
        /// Leader's clock when proposing.
        at_unix_nanos: i64,
    },
    /// Public key the server (its signer) holds for (gun, role); `pending` keys
    /// are minted by `POST <role>.key` and become active when a root lists them.
    SetServerKey {
        /// The collection.
        gun: String,
        /// `timestamp` or `snapshot`.
        role: String,
        /// TUF key id.
        key_id: String,
        /// The public key JSON as served by `GET <role>.key`.
        #[serde(with = "serde_bytes")]
        public_key_json: Vec<u8>,
        /// Pending (minted, not yet in a root) or active.
        pending: bool,
    },
    /// A whole collection brought over from a Notary server (`seal-node import-notary`): every
    /// stored version of every role, its changefeed history and the server keys its root lists.
    /// Applied only to a GUN Seal holds nothing of (or, again, as a no-op to the same GUN holding
    /// exactly what this command writes), so an import is all or nothing per collection and can be
    /// resumed. See [`ImportedCollection`].
    ImportCollection(Box<ImportedCollection>),
}

/// What [`Command::ImportCollection`] writes: one collection as a Notary server held it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImportedCollection {
    /// The collection.
    pub gun: String,
    /// Every stored version of every role (the highest version of each role becomes current).
    /// Empty for a collection that was deleted and not re-created.
    pub files: Vec<MetaFile>,
    /// The collection's changefeed records, oldest first (Seal numbers them as it applies them).
    pub changes: Vec<ImportedChange>,
    /// The server-held keys (`timestamp`, and `snapshot` when server-managed) the current root
    /// lists, as active server keys.
    pub server_keys: Vec<(String, KeyEntry)>,
    /// Expiry of the current timestamp (when a timestamp is among `files`), for the refresher.
    pub timestamp_expires_unix_nanos: Option<i64>,
}

/// One changefeed record of an imported collection, with Notary's time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImportedChange {
    /// Notary's `created_at`, as Unix nanoseconds.
    pub created_at_unix_nanos: i64,
    /// The timestamp version (0 for a deletion).
    pub version: u64,
    /// Hex sha256 of the timestamp (empty for a deletion).
    pub sha256: String,
    /// Update or deletion.
    pub category: ChangeCategory,
}

impl Command {
    /// The collection the command changes.
    pub fn gun(&self) -> &str {
        match self {
            Command::Publish { gun, .. }
            | Command::RefreshTimestamp { gun, .. }
            | Command::DeleteGun { gun, .. }
            | Command::SetServerKey { gun, .. } => gun,
            Command::ImportCollection(c) => &c.gun,
        }
    }

    /// About how many bytes the command occupies in the log: its files, names and key.
    pub fn approx_bytes(&self) -> u64 {
        let files = |files: &[MetaFile]| -> usize { files.iter().map(|f| f.role.len() + 8 + f.bytes.len()).sum() };
        let n = match self {
            Command::Publish { gun, files: f, .. } | Command::RefreshTimestamp { gun, files: f, .. } => {
                gun.len() + files(f)
            }
            Command::DeleteGun { gun, .. } => gun.len(),
            Command::SetServerKey {
                gun,
                role,
                key_id,
                public_key_json,
                ..
            } => gun.len() + role.len() + key_id.len() + public_key_json.len(),
            Command::ImportCollection(c) => {
                c.gun.len()
                    + files(&c.files)
                    + c.changes.iter().map(|ch| 24 + ch.sha256.len()).sum::<usize>()
                    + c.server_keys
                        .iter()
                        .map(|(r, k)| r.len() + k.key_id.len() + k.public_key_json.len())
                        .sum::<usize>()
            }
        };
        // Fixed fields and framing.
        n as u64 + 32
    }
}

/// The result of applying a [`Command`]. Only [`ApplyOutcome::Applied`] changed state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ApplyOutcome {
    /// Written.
    Applied,
    /// A compare-and-set precondition failed: the stored version is not the expected one.
    Conflict {
        /// The collection.
        gun: String,
        /// The role whose version differed.
        role: String,
        /// What the proposer validated against.
        expected: Option<u64>,
        /// What is stored.
        actual: Option<u64>,
    },
    /// A file's version is not strictly greater than the stored current version.
    OldVersion {
        /// The collection.
        gun: String,
        /// The role.
        role: String,
        /// The version in the command.
        version: u64,
        /// The stored current version.
        current: u64,
    },
    /// The command is malformed (bad names, duplicate roles, missing timestamp expiry...).
    Rejected {
        /// Why.
        reason: String,
    },
}

/// One server-held key for (gun, role).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyEntry {
    /// TUF key id.
    pub key_id: String,
    /// Public key JSON as served.
    #[serde(with = "serde_bytes")]
    pub public_key_json: Vec<u8>,
}

/// The keys the server holds for one (gun, role).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServerKeys {
    /// The key a root lists (or the first one minted before any root).
    pub active: Option<KeyEntry>,
    /// Keys minted by `POST <role>.key`, oldest first, not yet activated.
    pub pending: Vec<KeyEntry>,
}

/// Kind of a changefeed record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ChangeCategory {
    /// A timestamp was written.
    #[serde(rename = "update")]
    Update,
    /// The GUN was deleted.
    #[serde(rename = "deletion")]
    Deletion,
}

/// One changefeed record, serialising to Notary's JSON shape
/// (`{"ID","CreatedAt","GUN","Version","SHA256","Category"}`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChangeRecord {
    /// Sequence number as a decimal string (Notary's `ID`), starting at 1.
    #[serde(rename = "ID")]
    pub id: String,
    /// RFC 3339 UTC time with up to nanosecond precision, trailing zeros trimmed (Go's `RFC3339Nano`).
    #[serde(rename = "CreatedAt")]
    pub created_at: String,
    /// The collection.
    #[serde(rename = "GUN")]
    pub gun: String,
    /// Timestamp version (0 for a deletion).
    #[serde(rename = "Version")]
    pub version: u64,
    /// Hex sha256 of the timestamp bytes ("" for a deletion).
    #[serde(rename = "SHA256")]
    pub sha256: String,
    /// `update` or `deletion`.
    #[serde(rename = "Category")]
    pub category: ChangeCategory,
}
