//! One collection (GUN) as its publisher or a consumer sees it: verified
//! downloads through seal-tuf's client workflow, staged changes, publishing
//! signed updates, key rotation, deletion.
//!
//! Every download goes through [`seal_tuf::client::Repo`]: the trust anchor
//! is the root cached from an earlier run (or, on first contact, TOFU or the
//! pinned keys), versions never go below what the cache holds, hashes and
//! lengths come from the metadata above, and expired metadata is refused.
//!
//! * this file: the collection's settings, what the reads return, and the
//!   [`Repository`] handle with what both sides share;
//! * `read`: verified downloads, the offline cache, listings and lookups;
//! * `write`: `init`, staging, publishing and key rotation, which edit the
//!   metadata through [`seal_tuf::editor`] and sign it with the key store.

use std::collections::BTreeMap;

use seal_tuf::client::{Repo, TrustPin};
use seal_tuf::metadata::{DelegatedRole, ROOT};
use seal_tuf::{FileMeta, SignedFile};
use time::OffsetDateTime;

use crate::error::ClientError;
use crate::keystore::KeyStore;
use crate::layout::GunDir;
use crate::remote::{Remote, RemoteConfig};

mod read;
mod write;

/// Everything a command needs to know about where things are.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The trust directory.
    pub trust_dir: std::path::PathBuf,
    /// The server.
    pub remote: RemoteConfig,
    /// Root key IDs pinned per GUN (`trust_pinning.certs`).
    pub pinned: BTreeMap<String, Vec<String>>,
    /// Refuse trust on first use for unpinned GUNs (`trust_pinning.disable_tofu`).
    pub disable_tofu: bool,
}

/// A target as `list` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetEntry {
    /// The target's name.
    pub name: String,
    /// Its hashes and length.
    pub meta: FileMeta,
    /// The role that signs for it.
    pub role: String,
}

/// A delegation as `delegation list` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DelegationEntry {
    /// The role.
    pub role: DelegatedRole,
    /// Its keys' canonical IDs (what the CLI prints and names files by).
    pub canonical_ids: Vec<String>,
}

/// Metadata verified from the server in this run.
pub struct Verified {
    /// The verified state.
    pub repo: Repo,
    /// The exact bytes of every verified file, by role.
    pub files: BTreeMap<String, Vec<u8>>,
}

/// One collection.
pub struct Repository {
    gun: String,
    dir: GunDir,
    settings: Settings,
    keys: KeyStore,
    now: OffsetDateTime,
    warnings: std::cell::RefCell<Vec<String>>,
}

impl Repository {
    /// The collection `gun` under `settings`, with `now` as the time every
    /// expiry is judged against.
    pub fn new(settings: &Settings, gun: &str, now: OffsetDateTime) -> Result<Repository, ClientError> {
        let dir = GunDir::new(&settings.trust_dir, gun)?;
        let keys = KeyStore::open(&settings.trust_dir)?;
        Ok(Repository {
            gun: gun.to_owned(),
            dir,
            settings: settings.clone(),
            keys,
            now,
            warnings: std::cell::RefCell::new(Vec::new()),
        })
    }

    /// What the operations so far warned about and carried on (a server
    /// unreachable and the cache used instead, a delegation skipped), in
    /// order; each is one line. Taking them empties the list.
    pub fn take_warnings(&self) -> Vec<String> {
        std::mem::take(&mut *self.warnings.borrow_mut())
    }

    fn warn(&self, message: String) {
        self.warnings.borrow_mut().push(message);
    }

    /// The GUN.
    pub fn gun(&self) -> &str {
        &self.gun
    }

    /// The key store.
    pub fn keys(&self) -> &KeyStore {
        &self.keys
    }

    /// The local files of the collection.
    pub fn dir(&self) -> &GunDir {
        &self.dir
    }

    fn remote(&self) -> Result<Remote, ClientError> {
        let r = Remote::new(&self.settings.remote)?;
        r.ping()?;
        Ok(r)
    }

    /// How the first root is trusted: the keys `trust_pinning.certs` pins
    /// (the GUN's own entry, else the longest matching `prefix*` entry),
    /// else trust on first use, which `disable_tofu` refuses only when no
    /// root of the collection is cached yet (as in Notary).
    fn pin(&self) -> Result<TrustPin, ClientError> {
        if let Some(ids) = seal_tuf::client::pinned_keys(&self.gun, &self.settings.pinned) {
            return Ok(TrustPin::Keys(ids.clone()));
        }
        if self.settings.disable_tofu && self.dir.read_meta(ROOT)?.is_none() {
            return Err(ClientError::Invalid(format!(
                "trust on first use is disabled and no root key is pinned for {}",
                self.gun
            )));
        }
        Ok(TrustPin::Tofu)
    }
}

fn parse_role_file(role: &str, bytes: &[u8]) -> Result<SignedFile, ClientError> {
    Ok(SignedFile::parse(role, bytes.to_vec())?)
}
