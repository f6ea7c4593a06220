//! The software key backend: keys made in process, stored only encrypted
//! under a passphrase chosen by alias.
//!
//! The encrypted key is the handle the signer's store keeps. New keys are
//! wrapped under a key-encryption key derived once per process start from
//! the default alias's passphrase (the `seal-kw1` form, see [`kek`]), so
//! making a key costs an AES-GCM seal, not a 600,000-iteration KDF. Keys in
//! Notary's form (JWE compact, PBES2-HS256+A128KW with A256GCM, one KDF per
//! key), as earlier versions and notary-signer stored them, still sign.
//! Either form names its alias, so keys made under an older alias stay
//! usable while that alias's passphrase is configured, and
//! [`SoftwareBackend::rewrap`] re-encrypts them in the new form under the
//! current one (alias rotation). Derived KEKs are cached in memory, and so
//! are decrypted keys, at most [`KEY_CACHE_KEYS`] of them (zeroized on drop;
//! a key evicted is decrypted again at its next use: an AES-GCM open for the
//! `seal-kw1` form, a PBES2 derivation for Notary's).

pub mod kek;

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use base64::Engine as _;
use josekit::jwe::{JweHeader, PBES2_HS256_A128KW};
use rand::RngCore as _;
use sha2::{Digest as _, Sha256};
use zeroize::Zeroizing;

use seal_tuf::PrivateKey;

use crate::backend::{Algorithm, BackendError, LocalBackend, NewKey};

/// PBKDF2 iterations of the key-encryption keys Seal derives, and of PBES2
/// for secrets it encrypts as JWE (OWASP's figure for PBKDF2-HMAC-SHA256).
pub const PBES2_ITERATIONS: u64 = 600_000;
/// The most decrypted keys a backend keeps in memory. Without a bound every
/// key the signer ever used stayed decrypted in memory: a timestamp key per
/// collection, millions on a large notary. Timestamps are re-signed once per
/// lifetime (14 days by default), so the keys of collections that publish
/// rarely are used rarely; the bound keeps the keys in use.
pub const KEY_CACHE_KEYS: usize = 16_384;
/// Salt length for PBES2.
pub const PBES2_SALT_LEN: usize = 16;
/// The most iterations a stored key may ask for (a larger count is a
/// denial of service, not protection).
pub const MAX_PBES2_ITERATIONS: u64 = 10_000_000;
/// The fewest iterations a stored key may name.
pub const MIN_PBES2_ITERATIONS: u64 = 1000;

/// Why encryption or decryption failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum JweError {
    /// Not a JWE this code writes, or a parameter out of bounds.
    #[error("malformed encrypted key: {0}")]
    Malformed(String),
    /// Wrong passphrase or tampered ciphertext.
    #[error("cannot decrypt the key (wrong passphrase or corrupted data)")]
    Decrypt,
    /// The JOSE library failed.
    #[error("encryption failed: {0}")]
    Encrypt(String),
}

/// Encrypts `secret` under `passphrase`, naming `kid` in the header.
pub fn encrypt_secret(passphrase: &[u8], secret: &[u8], kid: &str, iterations: u64) -> Result<String, JweError> {
    let e = |e: josekit::JoseError| JweError::Encrypt(e.to_string());
    let mut encrypter = PBES2_HS256_A128KW.encrypter_from_bytes(passphrase).map_err(e)?;
    encrypter.set_salt_len(PBES2_SALT_LEN);
    encrypter.set_iter_count(usize::try_from(iterations).unwrap_or(usize::MAX));
    let mut salt = [0u8; PBES2_SALT_LEN];
    rand::rngs::OsRng.fill_bytes(&mut salt);
    let mut header = JweHeader::new();
    header.set_content_encryption("A256GCM");
    header.set_key_id(kid);
    header
        .set_claim(
            "p2s",
            Some(serde_json::Value::String(
                base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(salt),
            )),
        )
        .map_err(e)?;
    header
        .set_claim("p2c", Some(serde_json::Value::from(iterations)))
        .map_err(e)?;
    josekit::jwe::serialize_compact(secret, &header, &encrypter).map_err(e)
}

/// The `kid` of an encrypted key, read without any key derivation, after
/// checking the algorithms and the iteration count.
pub fn jwe_kid(jwe: &str) -> Result<String, JweError> {
    let header_b64 = jwe.split('.').next().unwrap_or_default();
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(header_b64)
        .map_err(|e| JweError::Malformed(format!("header: {e}")))?;
    let header: serde_json::Value =
        serde_json::from_slice(&bytes).map_err(|e| JweError::Malformed(format!("header: {e}")))?;
    if header["alg"] != "PBES2-HS256+A128KW" || header["enc"] != "A256GCM" {
        return Err(JweError::Malformed("unexpected JWE algorithms".into()));
    }
    match header["p2c"].as_u64() {
        Some(n) if (MIN_PBES2_ITERATIONS..=MAX_PBES2_ITERATIONS).contains(&n) => {}
        _ => return Err(JweError::Malformed("unacceptable PBES2 iteration count".into())),
    }
    Ok(header["kid"].as_str().unwrap_or_default().to_owned())
}

/// Decrypts what [`encrypt_secret`] made.
pub fn decrypt_secret(passphrase: &[u8], jwe: &str) -> Result<Zeroizing<Vec<u8>>, JweError> {
    jwe_kid(jwe)?;
    let decrypter = PBES2_HS256_A128KW
        .decrypter_from_bytes(passphrase)
        .map_err(|e| JweError::Malformed(e.to_string()))?;
    let (payload, _) = josekit::jwe::deserialize_compact(jwe, &decrypter).map_err(|_| JweError::Decrypt)?;
    Ok(Zeroizing::new(payload))
}

/// Passphrases by alias, and the alias new keys are encrypted under.
pub struct Passphrases {
    default_alias: String,
    by_alias: BTreeMap<String, Zeroizing<String>>,
}

impl Passphrases {
    /// `default_alias` must be among `by_alias`.
    pub fn new(
        default_alias: &str,
        by_alias: BTreeMap<String, Zeroizing<String>>,
    ) -> Result<Passphrases, BackendError> {
        if !by_alias.contains_key(default_alias) {
            return Err(BackendError::Unavailable(format!(
                "no passphrase for the default alias {default_alias:?}: set SEAL_SIGNER_{}",
                default_alias.to_uppercase()
            )));
        }
        Ok(Passphrases {
            default_alias: default_alias.to_owned(),
            by_alias,
        })
    }

    /// The alias new secrets are encrypted under.
    pub(crate) fn default_alias(&self) -> &str {
        &self.default_alias
    }

    /// The passphrase of `alias`, if configured.
    pub(crate) fn get(&self, alias: &str) -> Option<&Zeroizing<String>> {
        self.by_alias.get(alias)
    }

    /// Reads the passphrase of each alias from `SEAL_SIGNER_<ALIAS>` or
    /// Notary's `NOTARY_SIGNER_<ALIAS>` through `env`; aliases without one
    /// are left out.
    pub fn from_env(
        default_alias: &str,
        aliases: &[String],
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Passphrases, BackendError> {
        let mut by_alias = BTreeMap::new();
        let mut all: Vec<&str> = aliases.iter().map(String::as_str).collect();
        all.push(default_alias);
        for alias in all {
            let upper = alias.to_uppercase();
            let p = env(&format!("SEAL_SIGNER_{upper}")).or_else(|| env(&format!("NOTARY_SIGNER_{upper}")));
            if let Some(p) = p.filter(|p| !p.is_empty()) {
                by_alias.insert(alias.to_owned(), Zeroizing::new(p));
            }
        }
        Passphrases::new(default_alias, by_alias)
    }
}

/// The alias a software key handle is encrypted under, in either form
/// (`seal-kw1` or JWE), read without any key derivation.
pub fn handle_alias(handle: &[u8]) -> Result<String, BackendError> {
    if kek::is_wrapped(handle) {
        return kek::Wrapped::parse(handle, MIN_PBES2_ITERATIONS, MAX_PBES2_ITERATIONS)
            .map(|w| w.alias)
            .map_err(|e| BackendError::Crypto(e.to_string()));
    }
    let jwe = std::str::from_utf8(handle).map_err(|_| BackendError::Crypto("encrypted key is not text".into()))?;
    jwe_kid(jwe).map_err(|e| BackendError::Crypto(e.to_string()))
}

/// Decrypts a software key handle of either form with `passphrase` (one
/// key derivation): for operators' tools and tests, never on a signing path.
pub fn open_handle(passphrase: &[u8], handle: &[u8]) -> Result<Zeroizing<Vec<u8>>, BackendError> {
    if kek::is_wrapped(handle) {
        let w = kek::Wrapped::parse(handle, MIN_PBES2_ITERATIONS, MAX_PBES2_ITERATIONS)
            .map_err(|e| BackendError::Crypto(e.to_string()))?;
        let salt = w.salt_bytes().map_err(|e| BackendError::Crypto(e.to_string()))?;
        let kek = kek::derive(passphrase, &salt, w.iterations()).map_err(|e| BackendError::Crypto(e.to_string()))?;
        return w.open(&kek).map_err(|e| BackendError::Crypto(e.to_string()));
    }
    let jwe = std::str::from_utf8(handle).map_err(|_| BackendError::Crypto("encrypted key is not text".into()))?;
    decrypt_secret(passphrase, jwe).map_err(|e| BackendError::Crypto(e.to_string()))
}

/// A KEK in the cache: by alias, salt and iteration count.
type KekId = (String, [u8; kek::SALT_LEN], u32);

/// Keys in software, encrypted at rest.
pub struct SoftwareBackend {
    passphrases: Passphrases,
    iterations: u64,
    /// The salt of this process's KEK for the default alias (new keys).
    salt: [u8; kek::SALT_LEN],
    /// KEKs derived so far, each once: this process's, and those of older
    /// salts that opened a key.
    keks: Mutex<HashMap<KekId, Arc<kek::KekBytes>>>,
    /// Held while deriving, so concurrent first uses of one salt derive once.
    deriving: Mutex<()>,
    /// Passphrase key derivations run (KEKs, and PBES2 of JWE keys).
    kdf_runs: AtomicU64,
    cache: Mutex<KeyCache>,
}

/// Decrypted keys by the SHA-256 of their handle, at most `capacity`,
/// evicted in CLOCK order: a key used since the sweep last passed it gets
/// a second round, so keys in use stay and keys used once go first.
struct KeyCache {
    capacity: usize,
    /// Each key and whether it was used since the sweep last passed it.
    entries: HashMap<[u8; 32], (Arc<PrivateKey>, bool)>,
    /// The sweep's order; may name keys since removed (skipped).
    order: VecDeque<[u8; 32]>,
}

impl KeyCache {
    fn new(capacity: usize) -> KeyCache {
        KeyCache {
            capacity: capacity.max(1),
            entries: HashMap::new(),
            order: VecDeque::new(),
        }
    }

    fn get(&mut self, digest: &[u8; 32]) -> Option<Arc<PrivateKey>> {
        let entry = self.entries.get_mut(digest)?;
        entry.1 = true;
        Some(entry.0.clone())
    }

    fn insert(&mut self, digest: [u8; 32], key: Arc<PrivateKey>) {
        if let Some(entry) = self.entries.get_mut(&digest) {
            *entry = (key, true);
            return;
        }
        while self.entries.len() >= self.capacity {
            let Some(victim) = self.order.pop_front() else {
                break;
            };
            match self.entries.get_mut(&victim) {
                Some(entry) if entry.1 => {
                    entry.1 = false;
                    self.order.push_back(victim);
                }
                Some(_) => {
                    self.entries.remove(&victim);
                }
                None => {}
            }
        }
        self.entries.insert(digest, (key, false));
        self.order.push_back(digest);
        if self.order.len() > 2 * self.capacity {
            // Removed keys' names: drop them (each name once, in order).
            let entries = &self.entries;
            let mut seen = std::collections::HashSet::new();
            self.order.retain(|d| entries.contains_key(d) && seen.insert(*d));
        }
    }

    fn remove(&mut self, digest: &[u8; 32]) {
        self.entries.remove(digest);
    }

    fn len(&self) -> usize {
        self.entries.len()
    }
}

impl SoftwareBackend {
    /// A backend encrypting under `passphrases`. Derives the default
    /// alias's KEK now (one 600,000-iteration PBKDF2, a fraction of a
    /// second), so neither the first new key nor the first signature waits
    /// for it.
    pub fn new(passphrases: Passphrases) -> SoftwareBackend {
        SoftwareBackend::with_iterations(passphrases, PBES2_ITERATIONS)
    }

    /// The same with a chosen iteration count (tests use fewer; at least
    /// [`MIN_PBES2_ITERATIONS`]).
    pub fn with_iterations(passphrases: Passphrases, iterations: u64) -> SoftwareBackend {
        let iterations = iterations.clamp(MIN_PBES2_ITERATIONS, MAX_PBES2_ITERATIONS);
        let backend = SoftwareBackend {
            passphrases,
            iterations,
            salt: kek::new_salt(),
            keks: Mutex::new(HashMap::new()),
            deriving: Mutex::new(()),
            kdf_runs: AtomicU64::new(0),
            cache: Mutex::new(KeyCache::new(KEY_CACHE_KEYS)),
        };
        let alias = backend.passphrases.default_alias.clone();
        if let Some(passphrase) = backend.passphrases.get(&alias) {
            // A failure here is met again, and reported, by the first wrap.
            if let Ok(derived) = backend.derive(passphrase.as_bytes(), &backend.salt, backend.kek_iterations()) {
                if let Ok(mut keks) = backend.keks.lock() {
                    keks.insert((alias, backend.salt, backend.kek_iterations()), Arc::new(derived));
                }
            }
        }
        backend
    }

    /// How many passphrase key derivations this backend has run: one at
    /// start, one per older KEK salt met, one per JWE key opened — not one
    /// per key made.
    pub fn kdf_runs(&self) -> u64 {
        self.kdf_runs.load(Ordering::Relaxed)
    }

    /// How many decrypted keys this backend holds in memory now.
    pub fn cached_keys(&self) -> usize {
        self.cache.lock().map_or(0, |c| c.len())
    }

    fn kek_iterations(&self) -> u32 {
        u32::try_from(self.iterations).unwrap_or(u32::MAX)
    }

    fn derive(
        &self,
        passphrase: &[u8],
        salt: &[u8; kek::SALT_LEN],
        iterations: u32,
    ) -> Result<kek::KekBytes, BackendError> {
        self.kdf_runs.fetch_add(1, Ordering::Relaxed);
        kek::derive(passphrase, salt, iterations).map_err(|e| BackendError::Crypto(e.to_string()))
    }

    fn passphrase(&self, alias: &str) -> Result<&Zeroizing<String>, BackendError> {
        self.passphrases.by_alias.get(alias).ok_or_else(|| {
            BackendError::Unavailable(format!(
                "a key is encrypted under alias {alias:?}, whose passphrase is not configured (SEAL_SIGNER_{})",
                alias.to_uppercase()
            ))
        })
    }

    /// The KEK of `id`, if derived already.
    fn cached_kek(&self, id: &KekId) -> Result<Option<Arc<kek::KekBytes>>, BackendError> {
        Ok(self.keks.lock().map_err(|_| poisoned())?.get(id).cloned())
    }

    fn wrap(&self, key: &PrivateKey) -> Result<Vec<u8>, BackendError> {
        let der = key.to_pkcs8_der().map_err(|e| BackendError::Crypto(e.to_string()))?;
        let alias = &self.passphrases.default_alias;
        let id = (alias.clone(), self.salt, self.kek_iterations());
        let kek = match self.cached_kek(&id)? {
            Some(k) => k,
            None => {
                // Only if deriving at start failed; derive it now.
                let derived = Arc::new(self.derive(self.passphrase(alias)?.as_bytes(), &self.salt, id.2)?);
                self.keks.lock().map_err(|_| poisoned())?.insert(id, derived.clone());
                derived
            }
        };
        let kid = seal_tuf::keys::key_id(key.key_type(), key.public_key().public_bytes());
        let wrapped = kek::seal(&kek, alias, &kid, self.kek_iterations(), &self.salt, &der)
            .map_err(|e| BackendError::Crypto(e.to_string()))?;
        Ok(wrapped.to_bytes())
    }

    /// Opens a `seal-kw1` handle: the KEK of its (alias, salt) is derived
    /// at most once per process, and kept only once it has opened a key.
    fn open_wrapped(&self, handle: &[u8]) -> Result<PrivateKey, BackendError> {
        let w = kek::Wrapped::parse(handle, MIN_PBES2_ITERATIONS, MAX_PBES2_ITERATIONS)
            .map_err(|e| BackendError::Crypto(e.to_string()))?;
        let salt = w.salt_bytes().map_err(|e| BackendError::Crypto(e.to_string()))?;
        let id = (w.alias.clone(), salt, w.iterations());
        let refused = |e: kek::KwError| match e {
            kek::KwError::Open => BackendError::Unavailable(format!(
                "cannot decrypt a key under alias {:?}: wrong passphrase or corrupted key",
                w.alias
            )),
            other => BackendError::Crypto(other.to_string()),
        };
        let der = match self.cached_kek(&id)? {
            Some(k) => w.open(&k).map_err(refused)?,
            None => {
                let _deriving = self.deriving.lock().map_err(|_| poisoned())?;
                match self.cached_kek(&id)? {
                    Some(k) => w.open(&k).map_err(refused)?,
                    None => {
                        let k = self.derive(self.passphrase(&w.alias)?.as_bytes(), &salt, id.2)?;
                        let der = w.open(&k).map_err(refused)?;
                        self.keks.lock().map_err(|_| poisoned())?.insert(id, Arc::new(k));
                        der
                    }
                }
            }
        };
        let key = PrivateKey::from_pkcs8_der(&der).map_err(|e| BackendError::Crypto(e.to_string()))?;
        if seal_tuf::keys::key_id(key.key_type(), key.public_key().public_bytes()) != w.kid {
            return Err(BackendError::Crypto(format!(
                "wrapped key is not key {} that its handle names",
                w.kid
            )));
        }
        Ok(key)
    }

    /// Opens a JWE handle (Notary's form): one PBES2 derivation.
    fn open_jwe(&self, handle: &[u8]) -> Result<PrivateKey, BackendError> {
        let jwe = std::str::from_utf8(handle).map_err(|_| BackendError::Crypto("encrypted key is not text".into()))?;
        let alias = jwe_kid(jwe).map_err(|e| BackendError::Crypto(e.to_string()))?;
        let passphrase = self.passphrase(&alias)?;
        self.kdf_runs.fetch_add(1, Ordering::Relaxed);
        let der = decrypt_secret(passphrase.as_bytes(), jwe).map_err(|e| match e {
            JweError::Decrypt => BackendError::Unavailable(format!(
                "cannot decrypt a key under alias {alias:?}: wrong passphrase or corrupted key"
            )),
            other => BackendError::Crypto(other.to_string()),
        })?;
        PrivateKey::from_pkcs8_der(&der).map_err(|e| BackendError::Crypto(e.to_string()))
    }

    fn unwrap_key(&self, handle: &[u8]) -> Result<Arc<PrivateKey>, BackendError> {
        let digest: [u8; 32] = Sha256::digest(handle).into();
        if let Some(k) = self.cache.lock().map_err(|_| poisoned())?.get(&digest) {
            return Ok(k.clone());
        }
        let key = Arc::new(if kek::is_wrapped(handle) {
            self.open_wrapped(handle)?
        } else {
            self.open_jwe(handle)?
        });
        self.cache.lock().map_err(|_| poisoned())?.insert(digest, key.clone());
        Ok(key)
    }

    /// Takes in a key made elsewhere (a key file of an older key store, a
    /// key imported from another signer): encrypts it under the default
    /// alias and returns it as a new key of this backend.
    pub fn import(&self, key: PrivateKey) -> Result<NewKey, BackendError> {
        let public = key.public_key().public_bytes().to_vec();
        let handle = self.wrap(&key)?;
        let digest: [u8; 32] = Sha256::digest(&handle).into();
        self.cache.lock().map_err(|_| poisoned())?.insert(digest, Arc::new(key));
        Ok(NewKey { public, handle })
    }

    /// Re-encrypts a secret [`encrypt_secret`] made under the current
    /// default alias; `None` if it already is. The result stays a JWE
    /// (threshold shares are stored in that form).
    pub fn rewrap_secret(&self, jwe: &str) -> Result<Option<String>, BackendError> {
        let alias = jwe_kid(jwe).map_err(|e| BackendError::Crypto(e.to_string()))?;
        if alias == self.passphrases.default_alias {
            return Ok(None);
        }
        let secret = decrypt_secret(self.passphrase(&alias)?.as_bytes(), jwe).map_err(|e| match e {
            JweError::Decrypt => BackendError::Unavailable(format!(
                "cannot decrypt a secret under alias {alias:?}: wrong passphrase or corrupted data"
            )),
            other => BackendError::Crypto(other.to_string()),
        })?;
        let default = &self.passphrases.default_alias;
        encrypt_secret(self.passphrase(default)?.as_bytes(), &secret, default, self.iterations)
            .map(Some)
            .map_err(|e| BackendError::Crypto(e.to_string()))
    }

    /// Re-encrypts `handle` in the `seal-kw1` form under the current
    /// default alias; `None` if it already is in that form under that
    /// alias. JWE keys are moved to the new form whatever their alias.
    pub fn rewrap(&self, handle: &[u8]) -> Result<Option<Vec<u8>>, BackendError> {
        if kek::is_wrapped(handle) && handle_alias(handle)? == self.passphrases.default_alias {
            return Ok(None);
        }
        let key = self.unwrap_key(handle)?;
        self.wrap(&key).map(Some)
    }
}

fn poisoned() -> BackendError {
    BackendError::Unavailable("key cache lock poisoned".into())
}

impl LocalBackend for SoftwareBackend {
    fn name(&self) -> &'static str {
        "software"
    }

    fn generate(&self, algorithm: Algorithm, _label: &str) -> Result<NewKey, BackendError> {
        let mut rng = rand::rngs::OsRng;
        let key = match algorithm {
            Algorithm::Ecdsa => PrivateKey::generate_ecdsa(&mut rng),
            Algorithm::Ed25519 => PrivateKey::generate_ed25519(&mut rng),
        };
        self.import(key)
    }

    fn sign(&self, algorithm: Algorithm, handle: &[u8], message: &[u8]) -> Result<Vec<u8>, BackendError> {
        let key = self.unwrap_key(handle)?;
        if key.key_type() != algorithm.key_type() {
            return Err(BackendError::Crypto(format!(
                "stored key is {}, not {}",
                key.key_type(),
                algorithm.as_str()
            )));
        }
        Ok(key.sign(message).sig)
    }

    fn delete(&self, handle: &[u8]) -> Result<(), BackendError> {
        let digest: [u8; 32] = Sha256::digest(handle).into();
        self.cache.lock().map_err(|_| poisoned())?.remove(&digest);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn passphrases(default: &str) -> Passphrases {
        let env = |k: &str| match k {
            "SEAL_SIGNER_OLD" => Some("old passphrase".to_owned()),
            "NOTARY_SIGNER_NEW" => Some("new passphrase".to_owned()),
            _ => None,
        };
        Passphrases::from_env(default, &["old".into(), "new".into()], env).unwrap()
    }

    #[test]
    fn the_key_cache_is_bounded_and_keeps_keys_in_use() {
        let key = || Arc::new(PrivateKey::generate_ed25519(&mut rand::rngs::OsRng));
        let mut c = KeyCache::new(3);
        for i in 0..3u8 {
            c.insert([i; 32], key());
        }
        // Key 0 in use; keys 3 and 4 arrive: 1 and 2 (unused) go, 0 stays.
        assert!(c.get(&[0; 32]).is_some());
        c.insert([3; 32], key());
        assert!(c.get(&[0; 32]).is_some());
        c.insert([4; 32], key());
        assert_eq!(c.len(), 3);
        assert!(c.get(&[0; 32]).is_some());
        assert!(c.get(&[1; 32]).is_none() && c.get(&[2; 32]).is_none());
        // Removal and reinsertion, many times over: the bound and the sweep's order hold.
        for round in 0..100u8 {
            c.remove(&[3; 32]);
            c.insert([3; 32], key());
            c.insert([100u8.wrapping_add(round); 32], key());
            assert!(c.len() <= 3);
            assert!(c.order.len() <= 6, "{}", c.order.len());
        }
    }

    #[test]
    fn keys_evicted_from_the_cache_still_sign_without_a_passphrase_derivation() {
        let mut b = SoftwareBackend::with_iterations(passphrases("old"), 1000);
        b.cache = Mutex::new(KeyCache::new(4));
        let keys: Vec<NewKey> = (0..10)
            .map(|i| b.generate(Algorithm::Ecdsa, &format!("g{i}/timestamp")).unwrap())
            .collect();
        assert_eq!(b.cached_keys(), 4);
        let kdf_runs = b.kdf_runs();
        for round in 0..2 {
            for k in &keys {
                let public = seal_tuf::PublicKey::new(Algorithm::Ecdsa.key_type(), k.public.clone()).unwrap();
                let sig = b.sign(Algorithm::Ecdsa, &k.handle, b"message").unwrap();
                public.verify("ecdsa", b"message", &sig).unwrap();
                assert!(b.cached_keys() <= 4, "round {round}");
            }
        }
        // Evicted keys were opened again under the KEK already derived.
        assert_eq!(b.kdf_runs(), kdf_runs);
    }

    #[test]
    fn keys_sign_verifiably_and_survive_a_restart() {
        let b = SoftwareBackend::with_iterations(passphrases("old"), 1000);
        for alg in [Algorithm::Ecdsa, Algorithm::Ed25519] {
            let k = b.generate(alg, "g/timestamp").unwrap();
            let public = seal_tuf::PublicKey::new(alg.key_type(), k.public.clone()).unwrap();
            let method = if alg == Algorithm::Ecdsa { "ecdsa" } else { "eddsa" };
            let sig = b.sign(alg, &k.handle, b"message").unwrap();
            public.verify(method, b"message", &sig).unwrap();
            // A new process (empty cache) decrypts the stored handle.
            let b2 = SoftwareBackend::with_iterations(passphrases("old"), 1000);
            let sig = b2.sign(alg, &k.handle, b"again").unwrap();
            public.verify(method, b"again", &sig).unwrap();
            // The handle is a wrapped key naming its alias and key ID, not a key.
            let w = kek::Wrapped::parse(&k.handle, 1000, 1000).unwrap();
            assert_eq!((w.v.as_str(), w.alias.as_str()), (kek::VERSION, "old"));
            assert_eq!(w.kid, seal_tuf::keys::key_id(alg.key_type(), &k.public));
        }
    }

    #[test]
    fn alias_rotation_rewraps_and_wrong_passphrases_fail_cleanly() {
        let old = SoftwareBackend::with_iterations(passphrases("old"), 1000);
        let k = old.generate(Algorithm::Ecdsa, "g/snapshot").unwrap();
        let new = SoftwareBackend::with_iterations(passphrases("new"), 1000);
        // Still usable under the old alias, then rewrapped under the new.
        new.sign(Algorithm::Ecdsa, &k.handle, b"m").unwrap();
        let rewrapped = new.rewrap(&k.handle).unwrap().expect("rewrapped");
        assert_eq!(handle_alias(&rewrapped).unwrap(), "new");
        assert_eq!(new.rewrap(&rewrapped).unwrap(), None);
        let only_new = SoftwareBackend::with_iterations(
            Passphrases::new(
                "new",
                BTreeMap::from([("new".to_owned(), Zeroizing::new("new passphrase".to_owned()))]),
            )
            .unwrap(),
            1000,
        );
        only_new.sign(Algorithm::Ecdsa, &rewrapped, b"m").unwrap();
        assert!(matches!(
            only_new.sign(Algorithm::Ecdsa, &k.handle, b"m"),
            Err(BackendError::Unavailable(_))
        ));
        let wrong = SoftwareBackend::with_iterations(
            Passphrases::new(
                "new",
                BTreeMap::from([("new".to_owned(), Zeroizing::new("wrong".to_owned()))]),
            )
            .unwrap(),
            1000,
        );
        assert!(matches!(
            wrong.sign(Algorithm::Ecdsa, &rewrapped, b"m"),
            Err(BackendError::Unavailable(_))
        ));
        assert!(Passphrases::from_env("absent", &[], |_| None).is_err());
    }

    fn backend(alias: &str, passphrase: &str) -> SoftwareBackend {
        SoftwareBackend::with_iterations(
            Passphrases::new(
                alias,
                BTreeMap::from([(alias.to_owned(), Zeroizing::new(passphrase.to_owned()))]),
            )
            .unwrap(),
            1000,
        )
    }

    fn verifies(alg: Algorithm, public: &[u8], sig: &[u8]) -> bool {
        let public = seal_tuf::PublicKey::new(alg.key_type(), public.to_vec()).unwrap();
        let method = if alg == Algorithm::Ecdsa { "ecdsa" } else { "eddsa" };
        public.verify(method, b"m", sig).is_ok()
    }

    /// Edits one field of a `seal-kw1` handle.
    fn edited(handle: &[u8], edit: impl FnOnce(&mut kek::Wrapped)) -> Vec<u8> {
        let mut w = kek::Wrapped::parse(handle, 1000, 1000).unwrap();
        edit(&mut w);
        w.to_bytes()
    }

    #[test]
    fn wrapped_keys_round_trip_and_refuse_wrong_passphrases_and_tampering() {
        let b = backend("main", "right");
        let k = b.generate(Algorithm::Ecdsa, "g/timestamp").unwrap();
        let other = b.generate(Algorithm::Ecdsa, "h/timestamp").unwrap();
        // A fresh process with the right passphrase opens it.
        let fresh = backend("main", "right");
        assert!(verifies(
            Algorithm::Ecdsa,
            &k.public,
            &fresh.sign(Algorithm::Ecdsa, &k.handle, b"m").unwrap()
        ));

        let wrong = backend("main", "wrong");
        let e = wrong.sign(Algorithm::Ecdsa, &k.handle, b"m").unwrap_err();
        assert!(
            matches!(&e, BackendError::Unavailable(m) if m.contains("wrong passphrase")),
            "{e}"
        );

        // Flipped ciphertext, another key's ID or another alias in the
        // associated data: refused, not a wrong key.
        let flipped = edited(&k.handle, |w| {
            let mut ct = base64::engine::general_purpose::STANDARD.decode(&w.ct).unwrap();
            ct[3] ^= 1;
            w.ct = base64::engine::general_purpose::STANDARD.encode(ct);
        });
        let other_kid = kek::Wrapped::parse(&other.handle, 1000, 1000).unwrap().kid;
        let swapped_kid = edited(&k.handle, |w| w.kid = other_kid.clone());
        // The ciphertext of one key under the other's key ID and nonce.
        let moved_ct = edited(&other.handle, |w| {
            w.ct = kek::Wrapped::parse(&k.handle, 1000, 1000).unwrap().ct;
        });
        for bad in [&flipped, &swapped_kid, &moved_ct] {
            let fresh = backend("main", "right");
            assert!(
                matches!(
                    fresh.sign(Algorithm::Ecdsa, bad, b"m"),
                    Err(BackendError::Unavailable(_))
                ),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
        // The same passphrase under another alias: the alias is bound too.
        let renamed = edited(&k.handle, |w| w.alias = "second".into());
        let two = SoftwareBackend::with_iterations(
            Passphrases::new(
                "main",
                BTreeMap::from([
                    ("main".to_owned(), Zeroizing::new("right".to_owned())),
                    ("second".to_owned(), Zeroizing::new("right".to_owned())),
                ]),
            )
            .unwrap(),
            1000,
        );
        assert!(matches!(
            two.sign(Algorithm::Ecdsa, &renamed, b"m"),
            Err(BackendError::Unavailable(_))
        ));
        // Malformed handles and out-of-bounds iteration counts: clear errors, no KDF.
        let before = fresh.kdf_runs();
        for bad in [
            b"{".to_vec(),
            edited(&k.handle, |w| w.v = "seal-kw9".into()),
            edited(&k.handle, |w| w.iter = MAX_PBES2_ITERATIONS + 1),
            edited(&k.handle, |w| w.salt = "AAAA".into()),
        ] {
            assert!(matches!(
                fresh.sign(Algorithm::Ecdsa, &bad, b"m"),
                Err(BackendError::Crypto(_))
            ));
        }
        assert_eq!(fresh.kdf_runs(), before);
    }

    #[test]
    fn making_many_keys_derives_one_kek_and_reading_them_one_more() {
        let b = backend("main", "p");
        assert_eq!(b.kdf_runs(), 1, "the KEK is derived at start");
        let keys: Vec<NewKey> = (0..40)
            .map(|i| {
                let alg = if i % 2 == 0 {
                    Algorithm::Ecdsa
                } else {
                    Algorithm::Ed25519
                };
                b.generate(alg, "g/timestamp").unwrap()
            })
            .collect();
        assert_eq!(b.kdf_runs(), 1, "no derivation per key made");
        // A restarted signer: its own KEK, plus the older salt once.
        let restarted = backend("main", "p");
        for (i, k) in keys.iter().enumerate() {
            let alg = if i % 2 == 0 {
                Algorithm::Ecdsa
            } else {
                Algorithm::Ed25519
            };
            assert!(verifies(alg, &k.public, &restarted.sign(alg, &k.handle, b"m").unwrap()));
        }
        assert_eq!(restarted.kdf_runs(), 2);
        // Keys made by the restarted signer open with the KEK it derived at start.
        let fresh_key = restarted.generate(Algorithm::Ecdsa, "h/timestamp").unwrap();
        let third = backend("main", "p");
        third.sign(Algorithm::Ecdsa, &keys[0].handle, b"m").unwrap();
        third.sign(Algorithm::Ecdsa, &fresh_key.handle, b"m").unwrap();
        assert_eq!(third.kdf_runs(), 3);
    }

    #[test]
    fn jwe_keys_still_sign_and_rewrap_moves_them_to_the_new_form() {
        let b = backend("main", "p");
        let key = PrivateKey::generate_ecdsa(&mut rand::rngs::OsRng);
        let public = key.public_key().public_bytes().to_vec();
        let jwe = encrypt_secret(b"p", &key.to_pkcs8_der().unwrap(), "main", 1000).unwrap();
        let sig = b.sign(Algorithm::Ecdsa, jwe.as_bytes(), b"m").unwrap();
        assert!(verifies(Algorithm::Ecdsa, &public, &sig));
        assert_eq!(handle_alias(jwe.as_bytes()).unwrap(), "main");
        // Under the default alias already, yet moved to the new form.
        let moved = backend("main", "p").rewrap(jwe.as_bytes()).unwrap().expect("rewrapped");
        assert!(kek::is_wrapped(&moved));
        assert_eq!(handle_alias(&moved).unwrap(), "main");
        let fresh = backend("main", "p");
        assert!(verifies(
            Algorithm::Ecdsa,
            &public,
            &fresh.sign(Algorithm::Ecdsa, &moved, b"m").unwrap()
        ));
        assert_eq!(fresh.rewrap(&moved).unwrap(), None);
        // A JWE under another alias moves to the default alias's new form.
        let old_jwe = encrypt_secret(b"old passphrase", &key.to_pkcs8_der().unwrap(), "old", 1000).unwrap();
        let rotated = SoftwareBackend::with_iterations(passphrases("new"), 1000)
            .rewrap(old_jwe.as_bytes())
            .unwrap()
            .expect("rewrapped");
        assert_eq!(handle_alias(&rotated).unwrap(), "new");
        let new_only = backend("new", "new passphrase");
        assert!(verifies(
            Algorithm::Ecdsa,
            &public,
            &new_only.sign(Algorithm::Ecdsa, &rotated, b"m").unwrap()
        ));
    }
}
