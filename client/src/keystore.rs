//! The trust directory's private key store, in Notary's file format.
//!
//! Keys live in `<trust_dir>/private/<key id>.key` (directory 0700, files
//! 0600), where the key ID is the canonical one: the ID of the plain key
//! (`PrivateKey::public_key().id()`), also for root keys that metadata lists
//! as certificates. Each file is a PEM `ENCRYPTED PRIVATE KEY` block with a
//! `role:` header and, for keys of one collection, a `gun:` header, holding a
//! PKCS#8 `EncryptedPrivateKeyInfo`: PBES2, PBKDF2-HMAC-SHA1, AES-256-CBC.
//! Notary v0.7's CLI reads the files Seal writes and Seal reads Notary's, so
//! an existing `~/.notary` works unchanged; the only difference is the KDF
//! strength Seal writes (see [`PBKDF2_ITERATIONS`]). The PKCS#8 dialect
//! (Notary's own ed25519 encoding) is described in `envelope.rs`.
//!
//! Passphrases come from a [`PassphraseSource`]: [`EnvOrPrompt`] for the CLI
//! (Seal's and Notary's environment variables, then the terminal),
//! [`StaticPassphrases`] for tests and library callers.

mod envelope;
mod passphrase;
mod pem;

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use seal_tuf::metadata::{ROOT, SNAPSHOT, TARGETS, TIMESTAMP};
use seal_tuf::PrivateKey;

pub use passphrase::{
    passphrase_vars, role_alias, EnvOrPrompt, PassphraseSource, Purpose, StaticPassphrases, MIN_PASSPHRASE_LEN,
};

/// PBKDF2 iterations Seal uses when it encrypts a key.
///
/// Notary writes 2048 iterations of HMAC-SHA1, cheap enough to guess
/// passphrases at millions per second on a GPU. Notary's reader honours the
/// count stored in the file (only the PRF is fixed, to HMAC-SHA1), so Seal
/// can write a far stronger count and Notary still reads the key: 100,000
/// costs a stolen key file's attacker ~50× more per guess, and a user a few
/// tens of milliseconds per key load in a release build.
pub const PBKDF2_ITERATIONS: u32 = 100_000;

/// Highest PBKDF2 iteration count accepted when reading; more is malformed.
pub const MAX_PBKDF2_ITERATIONS: u32 = envelope::MAX_READ_ITERATIONS;

/// How many passphrases are tried before a load gives up.
pub const MAX_ATTEMPTS: u32 = 3;

/// Key files larger than this are refused (a real one is under 1 KiB).
const MAX_KEY_FILE_LEN: u64 = 64 * 1024;

const ENCRYPTED_LABEL: &str = "ENCRYPTED PRIVATE KEY";
const PKCS8_LABEL: &str = "PRIVATE KEY";
const SEC1_LABEL: &str = "EC PRIVATE KEY";
/// Notary's legacy unencrypted ed25519 block: its 96 raw private bytes.
const NOTARY_ED25519_LABEL: &str = "ED25519 PRIVATE KEY";
const RSA_LABEL: &str = "RSA PRIVATE KEY";

/// Roles whose keys belong to one collection and so need a GUN.
const COLLECTION_ROLES: [&str; 3] = [TARGETS, SNAPSHOT, TIMESTAMP];

/// The role Notary gives an imported key that names none.
const DEFAULT_IMPORT_ROLE: &str = "delegation";

/// Where Notary before v0.4 kept non-root keys, `private/tuf_keys/<gun>/`;
/// an exported `path:` under it names the key's GUN.
const LEGACY_NON_ROOT_DIR: &str = "tuf_keys";

/// What [`KeyStore::import_all`] did with each key block.
#[derive(Debug, Default)]
pub struct ImportOutcome {
    /// The keys stored.
    pub imported: Vec<StoredKey>,
    /// The blocks refused ("key block 2 (path …)") and why.
    pub refused: Vec<(String, KeyStoreError)>,
}

/// Everything that can go wrong in the key store.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeyStoreError {
    /// No key file with this ID.
    #[error("no private key with ID {0} in the key store")]
    NotFound(String),
    /// The ID is not 64 lowercase hex digits (only full IDs are accepted).
    #[error("not a full key ID: {0:?} (a key ID is 64 lowercase hex digits)")]
    InvalidId(String),
    /// A key with this ID is already stored (remove it first to replace it).
    #[error("a private key with ID {id} is already stored at {}", path.display())]
    AlreadyExists {
        /// The key ID.
        id: String,
        /// Its file.
        path: PathBuf,
    },
    /// The passphrase did not decrypt the key.
    #[error("wrong passphrase for {}{}", key_label(role, id), variable.as_ref().map(|v| format!(" (from {v})")).unwrap_or_default())]
    WrongPassphrase {
        /// The key's role (empty when unknown).
        role: String,
        /// The key's ID (empty when not yet known, as for an import).
        id: String,
        /// The environment variable the passphrase came from, if any.
        variable: Option<String>,
    },
    /// No passphrase is available: none in the environment and no terminal.
    #[error("no passphrase for the {role} key: set {var}, or run on a terminal to be prompted")]
    NoPassphrase {
        /// The key's role.
        role: String,
        /// What to set, usually the `SEAL_<ALIAS>_PASSPHRASE` variable.
        var: String,
    },
    /// A new passphrase was refused (too short, mismatched, empty).
    #[error("passphrase rejected: {0}")]
    PassphraseRejected(String),
    /// A key file or PEM input that cannot be read.
    #[error("{what}: {reason}")]
    Malformed {
        /// The file path, or "PEM input".
        what: String,
        /// Why.
        reason: String,
    },
    /// A well-formed key or encryption Seal does not handle (RSA, other
    /// curves, scrypt, legacy PEM encryption…).
    #[error("unsupported: {0}")]
    Unsupported(String),
    /// An import with no role given and no `role:` header.
    #[error("no role for the key: give one (for example targets/releases) or a \"role:\" header in the PEM")]
    MissingRole,
    /// A targets, snapshot or timestamp key without a GUN.
    #[error("a {role} key belongs to one collection: a GUN is required")]
    MissingGun {
        /// The role.
        role: String,
    },
    /// A role or GUN that cannot be written as a PEM header.
    #[error("invalid {field} {value:?}: {reason}")]
    InvalidHeader {
        /// `role` or `gun`.
        field: &'static str,
        /// The value given.
        value: String,
        /// Why it was refused.
        reason: &'static str,
    },
    /// A file system error.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The error.
        #[source]
        source: io::Error,
    },
    /// Encoding or encrypting a key failed (should not happen).
    #[error("cannot encode the private key: {0}")]
    Encoding(String),
}

/// "targets key 0ba3b40", leaving out unknown parts.
fn key_label(role: &str, id: &str) -> String {
    let short = id.get(..7).unwrap_or(id);
    match (role.is_empty(), short.is_empty()) {
        (false, false) => format!("{role} key {short}"),
        (false, true) => format!("{role} key"),
        (true, false) => format!("key {short}"),
        (true, true) => "the key".to_owned(),
    }
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> KeyStoreError + '_ {
    move |source| KeyStoreError::Io {
        path: path.to_owned(),
        source,
    }
}

/// The `role:` and `gun:` headers of a key PEM.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Headers {
    /// The `role:` header.
    pub role: Option<String>,
    /// The `gun:` header.
    pub gun: Option<String>,
}

/// A key file, as listed (read without its passphrase).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct StoredKey {
    /// The canonical key ID (the file stem).
    pub id: String,
    /// The `role:` header.
    pub role: String,
    /// The `gun:` header (none for root keys and shared delegation keys).
    pub gun: Option<String>,
    /// The file.
    pub path: PathBuf,
}

/// Encrypts `key` as Seal writes key files: PEM `ENCRYPTED PRIVATE KEY` with
/// the headers `role:` and (if given) `gun:`, PBKDF2-HMAC-SHA1 with
/// [`PBKDF2_ITERATIONS`] and a 16-byte random salt, AES-256-CBC. Refuses an
/// empty passphrase (Seal never stores a key unencrypted).
pub fn encrypt_pem(key: &PrivateKey, passphrase: &str, role: &str, gun: Option<&str>) -> Result<String, KeyStoreError> {
    check_header("role", role)?;
    if let Some(gun) = gun {
        check_header("gun", gun)?;
    }
    if passphrase.is_empty() {
        return Err(KeyStoreError::PassphraseRejected(
            "empty passphrase (Seal does not store keys unencrypted)".into(),
        ));
    }
    let plain = envelope::private_key_to_der(key).map_err(KeyStoreError::Encoding)?;
    let der = envelope::encrypt(&plain, passphrase.as_bytes(), PBKDF2_ITERATIONS).map_err(KeyStoreError::Encoding)?;
    let mut headers = vec![("role", role)];
    if let Some(gun) = gun {
        headers.push(("gun", gun));
    }
    Ok(pem::encode(ENCRYPTED_LABEL, &headers, &der))
}

/// Reads the first private key PEM block in `pem`, decrypting it with
/// `passphrase` if it is an `ENCRYPTED PRIVATE KEY` (unencrypted `PRIVATE
/// KEY`, `EC PRIVATE KEY` and Notary's `ED25519 PRIVATE KEY` blocks are read
/// as they are), and returns the key with the block's headers.
pub fn decrypt_pem(pem: &[u8], passphrase: &str) -> Result<(PrivateKey, Headers), KeyStoreError> {
    let block = first_private_block(pem, "PEM input")?;
    let key = key_from_block(&block, Some(passphrase.as_bytes()), "PEM input")?;
    Ok((key, headers_of(&block)))
}

fn headers_of(block: &pem::Block) -> Headers {
    Headers {
        role: block.header("role").map(str::to_owned),
        gun: block.header("gun").map(str::to_owned),
    }
}

fn first_private_block(input: &[u8], what: &str) -> Result<pem::Block, KeyStoreError> {
    let malformed = |reason: String| KeyStoreError::Malformed {
        what: what.to_owned(),
        reason,
    };
    let blocks = pem::parse_all(input).map_err(malformed)?;
    let labels: Vec<String> = blocks.iter().map(|b| b.label.clone()).collect();
    match blocks.into_iter().find(|b| b.label.ends_with("PRIVATE KEY")) {
        Some(block) => Ok(block),
        None if labels.is_empty() => Err(malformed("no PEM block".into())),
        None => Err(malformed(format!(
            "no private key among the PEM blocks ({})",
            labels.join(", ")
        ))),
    }
}

/// Decodes a private key block. A wrong passphrase is reported with the
/// block's role and no ID; callers fill in what they know.
fn key_from_block(block: &pem::Block, passphrase: Option<&[u8]>, what: &str) -> Result<PrivateKey, KeyStoreError> {
    use envelope::KeyDerError;
    let malformed = |reason: String| KeyStoreError::Malformed {
        what: what.to_owned(),
        reason,
    };
    let wrong = || KeyStoreError::WrongPassphrase {
        role: block.header("role").unwrap_or_default().to_owned(),
        id: String::new(),
        variable: None,
    };
    if block.header("Proc-Type").is_some_and(|v| v.contains("ENCRYPTED")) {
        return Err(KeyStoreError::Unsupported(format!(
            "legacy PEM encryption (Proc-Type: 4,ENCRYPTED) of a {} block; convert the key to PKCS#8 first \
             (openssl pkcs8 -topk8 -v2 aes-256-cbc)",
            block.label
        )));
    }
    let plain_err = |e: KeyDerError| match e {
        KeyDerError::Structure(m) | KeyDerError::Invalid(m) => malformed(m),
        KeyDerError::Unsupported(m) => KeyStoreError::Unsupported(m),
    };
    match block.label.as_str() {
        ENCRYPTED_LABEL => {
            let Some(passphrase) = passphrase else {
                return Err(KeyStoreError::NoPassphrase {
                    role: block.header("role").unwrap_or("unknown").to_owned(),
                    var: "a passphrase".into(),
                });
            };
            let plain = envelope::decrypt(&block.der, passphrase).map_err(|e| match e {
                envelope::DecryptError::WrongPassphrase => wrong(),
                envelope::DecryptError::Malformed(m) => malformed(m),
                envelope::DecryptError::Unsupported(m) => KeyStoreError::Unsupported(m),
            })?;
            // Garbage after a wrong passphrase that happened to end in valid
            // padding is no PKCS#8 structure: still a wrong passphrase.
            envelope::key_from_pkcs8(&plain).map_err(|e| match e {
                KeyDerError::Structure(_) => wrong(),
                other => plain_err(other),
            })
        }
        PKCS8_LABEL => envelope::key_from_pkcs8(&block.der).map_err(plain_err),
        SEC1_LABEL => envelope::key_from_sec1(&block.der).map_err(plain_err),
        NOTARY_ED25519_LABEL => envelope::key_from_notary_ed25519(&block.der).map_err(plain_err),
        RSA_LABEL => Err(plain_err(envelope::rsa_unsupported())),
        other => Err(KeyStoreError::Unsupported(format!("{other} PEM blocks"))),
    }
}

/// Refuses role and GUN values that Go's PEM reader would not give back
/// unchanged (it trims, and splits at line ends).
fn check_header(field: &'static str, value: &str) -> Result<(), KeyStoreError> {
    let reason = if value.is_empty() {
        Some("empty")
    } else if value.chars().any(char::is_control) {
        Some("contains a control character")
    } else if value.trim() != value {
        Some("has leading or trailing white space")
    } else {
        None
    };
    match reason {
        Some(reason) => Err(KeyStoreError::InvalidHeader {
            field,
            value: value.to_owned(),
            reason,
        }),
        None => Ok(()),
    }
}

/// The GUN a key of `role` is stored with: none for root keys (they serve
/// every collection, and Notary writes them without one), required for
/// targets, snapshot and timestamp keys, as given for delegation keys.
fn effective_gun<'a>(role: &str, gun: Option<&'a str>) -> Result<Option<&'a str>, KeyStoreError> {
    check_header("role", role)?;
    if role == ROOT {
        return Ok(None);
    }
    if let Some(gun) = gun {
        check_header("gun", gun)?;
    }
    if gun.is_none() && COLLECTION_ROLES.contains(&role) {
        return Err(KeyStoreError::MissingGun { role: role.to_owned() });
    }
    Ok(gun)
}

fn is_key_id(id: &str) -> bool {
    id.len() == 64 && id.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

fn check_id(id: &str) -> Result<(), KeyStoreError> {
    if is_key_id(id) {
        Ok(())
    } else {
        Err(KeyStoreError::InvalidId(id.to_owned()))
    }
}

/// The trust directory's `private/` key store.
#[derive(Debug, Clone)]
pub struct KeyStore {
    dir: PathBuf,
}

impl KeyStore {
    /// Opens `<trust_dir>/private`, creating it (mode 0700) if absent.
    pub fn open(trust_dir: &Path) -> Result<KeyStore, KeyStoreError> {
        let dir = trust_dir.join("private");
        let mut builder = fs::DirBuilder::new();
        builder.recursive(true);
        #[cfg(unix)]
        std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
        builder.create(&dir).map_err(io_err(&dir))?;
        Ok(KeyStore { dir })
    }

    /// The `private/` directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn path_of(&self, id: &str) -> PathBuf {
        self.dir.join(format!("{id}.key"))
    }

    /// Every `*.key` file, read from its headers only (no passphrase),
    /// sorted by key ID. Other files and directories are ignored; a `.key`
    /// file that cannot be read is an error, not skipped.
    pub fn list(&self) -> Result<Vec<StoredKey>, KeyStoreError> {
        let mut keys = Vec::new();
        for entry in fs::read_dir(&self.dir).map_err(io_err(&self.dir))? {
            let entry = entry.map_err(io_err(&self.dir))?;
            let path = entry.path();
            let name = entry.file_name();
            let Some(stem) = name.to_str().and_then(|n| n.strip_suffix(".key")) else {
                continue;
            };
            if stem.starts_with('.') || !fs::metadata(&path).map_err(io_err(&path))?.is_file() {
                continue;
            }
            if !is_key_id(stem) {
                return Err(KeyStoreError::Malformed {
                    what: path.display().to_string(),
                    reason: "the file name is not <64 hex digit key ID>.key".into(),
                });
            }
            let bytes = read_key_file(&path)?;
            keys.push(stored_key(stem, &path, &bytes)?.0);
        }
        keys.sort();
        Ok(keys)
    }

    /// The key with this full ID, if stored.
    pub fn find(&self, id: &str) -> Result<Option<StoredKey>, KeyStoreError> {
        Ok(self.read(id)?.map(|(stored, _)| stored))
    }

    fn read(&self, id: &str) -> Result<Option<(StoredKey, pem::Block)>, KeyStoreError> {
        check_id(id)?;
        let path = self.path_of(id);
        let bytes = match read_key_file(&path) {
            Ok(bytes) => bytes,
            Err(KeyStoreError::Io { source, .. }) if source.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        stored_key(id, &path, &bytes).map(Some)
    }

    fn get(&self, id: &str) -> Result<(StoredKey, pem::Block), KeyStoreError> {
        self.read(id)?.ok_or_else(|| KeyStoreError::NotFound(id.to_owned()))
    }

    /// The keys of `role` usable for collection `gun`: those stored with that
    /// GUN, and those stored with none (root keys, shared delegation keys).
    pub fn keys_for(&self, role: &str, gun: Option<&str>) -> Result<Vec<StoredKey>, KeyStoreError> {
        Ok(self
            .list()?
            .into_iter()
            .filter(|k| k.role == role && (k.gun.is_none() || k.gun.as_deref() == gun))
            .collect())
    }

    /// Decrypts the key `id`, asking `pass` up to [`MAX_ATTEMPTS`] times,
    /// and checks that the file holds the key its name says.
    pub fn load(&self, id: &str, pass: &mut dyn PassphraseSource) -> Result<(PrivateKey, StoredKey), KeyStoreError> {
        let (stored, block) = self.get(id)?;
        let key = decrypt_with(&block, &stored.role, id, stored.gun.as_deref(), pass, &stored.path)?;
        let actual = key.public_key().id().to_owned();
        if actual != id {
            return Err(KeyStoreError::Malformed {
                what: stored.path.display().to_string(),
                reason: format!("the file holds key {actual}, not the key its name says"),
            });
        }
        Ok((key, stored))
    }

    /// Stores `key` for `role` (and `gun`, see below) encrypted under a new
    /// passphrase from `pass` ([`Purpose::Create`]); the file is written
    /// atomically (temporary file, then rename). Root keys are stored without
    /// a GUN; targets, snapshot and timestamp keys need one; delegation keys
    /// take one if given. A key already stored is an error.
    pub fn add(
        &self,
        key: &PrivateKey,
        role: &str,
        gun: Option<&str>,
        pass: &mut dyn PassphraseSource,
    ) -> Result<StoredKey, KeyStoreError> {
        let gun = effective_gun(role, gun)?;
        let id = key.public_key().id().to_owned();
        let path = self.path_of(&id);
        if fs::symlink_metadata(&path).is_ok() {
            return Err(KeyStoreError::AlreadyExists { id, path });
        }
        let passphrase = pass.passphrase(role, &id, gun, Purpose::Create, 0)?;
        let pem = encrypt_pem(key, &passphrase, role, gun)?;
        write_atomic(&self.dir, &path, pem.as_bytes())?;
        Ok(StoredKey {
            id,
            role: role.to_owned(),
            gun: gun.map(str::to_owned),
            path,
        })
    }

    /// Imports a private key PEM: `EC PRIVATE KEY` (SEC1, as openssl
    /// writes), `PRIVATE KEY` (PKCS#8), `ENCRYPTED PRIVATE KEY` (decrypted
    /// first with a [`Purpose::Decrypt`] passphrase), or Notary's legacy
    /// `ED25519 PRIVATE KEY`; the first private key block in the input is
    /// used. `role` and `gun` default to the block's `role:` and `gun:`
    /// headers. The key is then stored as by [`KeyStore::add`], under a new
    /// passphrase. RSA keys and curves other than P-256 are refused.
    pub fn import_pem(
        &self,
        pem: &[u8],
        role: Option<&str>,
        gun: Option<&str>,
        pass: &mut dyn PassphraseSource,
    ) -> Result<StoredKey, KeyStoreError> {
        let block = first_private_block(pem, "PEM input")?;
        let role = role
            .or(block.header("role"))
            .filter(|r| !r.is_empty())
            .ok_or(KeyStoreError::MissingRole)?;
        let gun = effective_gun(role, gun.or(block.header("gun")).filter(|g| !g.is_empty()))?;
        let key = if block.label == ENCRYPTED_LABEL {
            decrypt_with(&block, role, "", gun, pass, Path::new("PEM input"))?
        } else {
            key_from_block(&block, None, "PEM input")?
        };
        self.add(&key, role, gun, pass)
    }

    /// Imports every private key block of `pem` as Notary's `key import`
    /// does (`ImportKeys`), where [`KeyStore::import_pem`] takes one key:
    ///
    /// * the block's `role:` and `gun:` headers win; `role` and `gun` are
    ///   only fallbacks, and a key with no role at all is a `delegation`
    ///   key, as in Notary;
    /// * a `path:` header (what `key export` writes) names the key: its
    ///   last component must be the key's canonical ID. A legacy path
    ///   `tuf_keys/<gun>/<id>` gives the GUN;
    /// * targets, snapshot and timestamp keys without a GUN are refused;
    ///   root and delegation keys are stored without one;
    /// * encrypted blocks are decrypted ([`Purpose::Decrypt`]) and every key
    ///   is stored as by [`KeyStore::add`].
    ///
    /// Blocks that are not private keys are ignored. A refused block does
    /// not stop the others: the outcome lists what was stored and what was
    /// refused, and why.
    pub fn import_all(
        &self,
        pem: &[u8],
        role: Option<&str>,
        gun: Option<&str>,
        pass: &mut dyn PassphraseSource,
    ) -> Result<ImportOutcome, KeyStoreError> {
        let blocks = pem::parse_all(pem).map_err(|reason| KeyStoreError::Malformed {
            what: "PEM input".into(),
            reason,
        })?;
        let mut outcome = ImportOutcome::default();
        for (index, block) in blocks.iter().enumerate() {
            if !block.label.ends_with("PRIVATE KEY") {
                continue;
            }
            let label = match block.header("path").filter(|p| !p.is_empty()) {
                Some(p) => format!("key block {} (path {p})", index + 1),
                None => format!("key block {}", index + 1),
            };
            match self.import_block(block, role, gun, pass) {
                Ok(stored) => outcome.imported.push(stored),
                Err(e) => outcome.refused.push((label, e)),
            }
        }
        if outcome.imported.is_empty() && outcome.refused.is_empty() {
            return Err(KeyStoreError::Malformed {
                what: "PEM input".into(),
                reason: "no private key PEM block".into(),
            });
        }
        Ok(outcome)
    }

    fn import_block(
        &self,
        block: &pem::Block,
        fallback_role: Option<&str>,
        fallback_gun: Option<&str>,
        pass: &mut dyn PassphraseSource,
    ) -> Result<StoredKey, KeyStoreError> {
        let non_empty = |v: Option<&str>| v.filter(|v| !v.is_empty()).map(str::to_owned);
        let mut gun = non_empty(block.header("gun"));
        // A legacy path (`tuf_keys/<gun>/<id>`) names the GUN.
        let path = non_empty(block.header("path")).map(|p| match p.rsplit_once('/') {
            Some((dir, base)) => {
                if let Some(legacy) = dir.strip_prefix(LEGACY_NON_ROOT_DIR) {
                    let legacy = legacy.trim_matches('/');
                    if !legacy.is_empty() {
                        gun = Some(legacy.to_owned());
                    }
                }
                base.to_owned()
            }
            None => p,
        });
        let gun = gun.or_else(|| non_empty(fallback_gun));
        let role = non_empty(block.header("role"))
            .or_else(|| non_empty(fallback_role))
            .unwrap_or_else(|| DEFAULT_IMPORT_ROLE.to_owned());
        // Notary keeps a GUN only on the keys of one collection.
        let gun = if COLLECTION_ROLES.contains(&role.as_str()) {
            Some(gun.ok_or_else(|| KeyStoreError::MissingGun { role: role.clone() })?)
        } else {
            None
        };
        let gun = effective_gun(&role, gun.as_deref())?;
        let key = decrypt_with(
            block,
            &role,
            path.as_deref().unwrap_or(""),
            gun,
            pass,
            Path::new("PEM input"),
        )?;
        let id = key.public_key().id().to_owned();
        if let Some(path) = path.filter(|p| *p != id) {
            return Err(KeyStoreError::Malformed {
                what: "PEM input".into(),
                reason: format!("the path header names key {path}, but the block holds key {id}"),
            });
        }
        self.add(&key, &role, gun, pass)
    }

    /// The key `id` as Notary's `key export` writes it: each PEM block of
    /// its file, re-encoded with a `path:` header naming the key (its file
    /// name in the store, without `.key`), so that Notary's and Seal's
    /// `key import` put it back under the same name.
    pub fn export_notary(&self, id: &str) -> Result<Vec<u8>, KeyStoreError> {
        let (stored, _) = self.get(id)?;
        let bytes = read_key_file(&stored.path)?;
        let blocks = pem::parse_all(&bytes).map_err(|reason| KeyStoreError::Malformed {
            what: stored.path.display().to_string(),
            reason,
        })?;
        let mut out = String::new();
        for block in &blocks {
            let mut headers: Vec<(&str, &str)> = block
                .headers
                .iter()
                .filter(|(k, _)| k != "path")
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect();
            headers.push(("path", id));
            out.push_str(&pem::encode(&block.label, &headers, &block.der));
        }
        Ok(out.into_bytes())
    }

    /// The stored file's bytes, unchanged (still encrypted).
    pub fn export_pem(&self, id: &str) -> Result<Vec<u8>, KeyStoreError> {
        let (stored, _) = self.get(id)?;
        read_key_file(&stored.path)
    }

    /// Deletes the key file and returns what it was.
    pub fn remove(&self, id: &str) -> Result<StoredKey, KeyStoreError> {
        let (stored, _) = self.get(id)?;
        fs::remove_file(&stored.path).map_err(io_err(&stored.path))?;
        Ok(stored)
    }

    /// Re-encrypts the key under a new passphrase (asked from `new` with
    /// [`Purpose::Create`]) after decrypting it with `old`, keeping its role
    /// and GUN, and replaces the file atomically.
    pub fn change_passphrase(
        &self,
        id: &str,
        old: &mut dyn PassphraseSource,
        new: &mut dyn PassphraseSource,
    ) -> Result<(), KeyStoreError> {
        let (key, stored) = self.load(id, old)?;
        let passphrase = new.passphrase(&stored.role, id, stored.gun.as_deref(), Purpose::Create, 0)?;
        let pem = encrypt_pem(&key, &passphrase, &stored.role, stored.gun.as_deref())?;
        write_atomic(&self.dir, &stored.path, pem.as_bytes())
    }
}

/// Decrypts `block` (or reads it, if unencrypted), asking `pass` up to
/// [`MAX_ATTEMPTS`] times.
fn decrypt_with(
    block: &pem::Block,
    role: &str,
    id: &str,
    gun: Option<&str>,
    pass: &mut dyn PassphraseSource,
    path: &Path,
) -> Result<PrivateKey, KeyStoreError> {
    let what = path.display().to_string();
    if block.label != ENCRYPTED_LABEL {
        return key_from_block(block, None, &what);
    }
    for attempt in 0..MAX_ATTEMPTS {
        let passphrase = pass.passphrase(role, id, gun, Purpose::Decrypt, attempt)?;
        match key_from_block(block, Some(passphrase.as_bytes()), &what) {
            Err(KeyStoreError::WrongPassphrase { .. }) => continue,
            other => return other,
        }
    }
    Err(KeyStoreError::WrongPassphrase {
        role: role.to_owned(),
        id: id.to_owned(),
        variable: None,
    })
}

fn read_key_file(path: &Path) -> Result<Vec<u8>, KeyStoreError> {
    let file = fs::File::open(path).map_err(io_err(path))?;
    let len = file.metadata().map_err(io_err(path))?.len();
    if len > MAX_KEY_FILE_LEN {
        return Err(KeyStoreError::Malformed {
            what: path.display().to_string(),
            reason: format!("{len} bytes is too large for a key file"),
        });
    }
    let mut bytes = Vec::with_capacity(len as usize);
    io::Read::read_to_end(&mut io::Read::take(file, MAX_KEY_FILE_LEN), &mut bytes).map_err(io_err(path))?;
    Ok(bytes)
}

/// The listing entry of a key file, and its PEM block.
fn stored_key(id: &str, path: &Path, bytes: &[u8]) -> Result<(StoredKey, pem::Block), KeyStoreError> {
    let what = path.display().to_string();
    let block = first_private_block(bytes, &what)?;
    let role = block
        .header("role")
        .filter(|r| !r.is_empty())
        .ok_or_else(|| KeyStoreError::Malformed {
            what: what.clone(),
            reason: "no role: header".into(),
        })?
        .to_owned();
    let gun = block.header("gun").filter(|g| !g.is_empty()).map(str::to_owned);
    let stored = StoredKey {
        id: id.to_owned(),
        role,
        gun,
        path: path.to_owned(),
    };
    Ok((stored, block))
}

/// Writes `bytes` to `path` by way of a 0600 temporary file in `dir`, synced
/// and renamed over `path`.
fn write_atomic(dir: &Path, path: &Path, bytes: &[u8]) -> Result<(), KeyStoreError> {
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("key");
    let tmp = dir.join(format!(".{name}.{:016x}.tmp", rand::random::<u64>()));
    let mut options = fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let result = (|| {
        let mut file = options.open(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        drop(file);
        fs::rename(&tmp, path)
    })();
    if let Err(source) = result {
        let _ = fs::remove_file(&tmp);
        return Err(KeyStoreError::Io {
            path: path.to_owned(),
            source,
        });
    }
    // Make the rename durable; a failure here loses nothing already written.
    if let Ok(d) = fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

#[cfg(test)]
mod tests;
