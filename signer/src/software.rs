//! The software key backend: keys made in process, stored only encrypted
//! (JWE compact, PBES2-HS256+A128KW key wrapping with A256GCM content
//! encryption) under a passphrase chosen by alias, as Notary's signer does.
//!
//! The encrypted key is the handle the signer's store keeps; its JWE header
//! names the alias (`kid`), so keys made under an older alias stay usable
//! while that alias's passphrase is configured, and [`SoftwareBackend::rewrap`]
//! re-encrypts them under the current one (alias rotation). Decrypted keys
//! are cached in memory (zeroized on drop): a KDF per signature would put
//! hundreds of milliseconds on every timestamp.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use base64::Engine as _;
use josekit::jwe::{JweHeader, PBES2_HS256_A128KW};
use rand::RngCore as _;
use sha2::{Digest as _, Sha256};
use zeroize::Zeroizing;

use seal_tuf::PrivateKey;

use crate::backend::{Algorithm, BackendError, LocalBackend, NewKey};

/// PBES2 iterations for keys Seal encrypts (OWASP's figure for
/// PBKDF2-HMAC-SHA256). Paid once per key per process: keys are cached.
pub const PBES2_ITERATIONS: u64 = 600_000;
/// Salt length for PBES2.
pub const PBES2_SALT_LEN: usize = 16;
/// The most iterations a stored key may ask for (a larger count is a
/// denial of service, not protection).
pub const MAX_PBES2_ITERATIONS: u64 = 10_000_000;

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
        Some(n) if (1000..=MAX_PBES2_ITERATIONS).contains(&n) => {}
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

/// Keys in software, encrypted at rest.
pub struct SoftwareBackend {
    passphrases: Passphrases,
    iterations: u64,
    cache: Mutex<HashMap<[u8; 32], Arc<PrivateKey>>>,
}

impl SoftwareBackend {
    /// A backend encrypting under `passphrases`.
    pub fn new(passphrases: Passphrases) -> SoftwareBackend {
        SoftwareBackend::with_iterations(passphrases, PBES2_ITERATIONS)
    }

    /// The same with a chosen PBES2 iteration count (tests use fewer).
    pub fn with_iterations(passphrases: Passphrases, iterations: u64) -> SoftwareBackend {
        SoftwareBackend {
            passphrases,
            iterations,
            cache: Mutex::new(HashMap::new()),
        }
    }

    fn passphrase(&self, alias: &str) -> Result<&Zeroizing<String>, BackendError> {
        self.passphrases.by_alias.get(alias).ok_or_else(|| {
            BackendError::Unavailable(format!(
                "a key is encrypted under alias {alias:?}, whose passphrase is not configured (SEAL_SIGNER_{})",
                alias.to_uppercase()
            ))
        })
    }

    fn wrap(&self, key: &PrivateKey) -> Result<Vec<u8>, BackendError> {
        let der = key.to_pkcs8_der().map_err(|e| BackendError::Crypto(e.to_string()))?;
        let alias = &self.passphrases.default_alias;
        let jwe = encrypt_secret(self.passphrase(alias)?.as_bytes(), &der, alias, self.iterations)
            .map_err(|e| BackendError::Crypto(e.to_string()))?;
        Ok(jwe.into_bytes())
    }

    fn unwrap_key(&self, handle: &[u8]) -> Result<Arc<PrivateKey>, BackendError> {
        let digest: [u8; 32] = Sha256::digest(handle).into();
        if let Some(k) = self.cache.lock().map_err(|_| poisoned())?.get(&digest) {
            return Ok(k.clone());
        }
        let jwe = std::str::from_utf8(handle).map_err(|_| BackendError::Crypto("encrypted key is not text".into()))?;
        let alias = jwe_kid(jwe).map_err(|e| BackendError::Crypto(e.to_string()))?;
        let der = decrypt_secret(self.passphrase(&alias)?.as_bytes(), jwe).map_err(|e| match e {
            JweError::Decrypt => BackendError::Unavailable(format!(
                "cannot decrypt a key under alias {alias:?}: wrong passphrase or corrupted key"
            )),
            other => BackendError::Crypto(other.to_string()),
        })?;
        let key = Arc::new(PrivateKey::from_pkcs8_der(&der).map_err(|e| BackendError::Crypto(e.to_string()))?);
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
    /// default alias; `None` if it already is.
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

    /// Re-encrypts `handle` under the current default alias; `None` if it
    /// already is.
    pub fn rewrap(&self, handle: &[u8]) -> Result<Option<Vec<u8>>, BackendError> {
        let jwe = std::str::from_utf8(handle).map_err(|_| BackendError::Crypto("encrypted key is not text".into()))?;
        if jwe_kid(jwe).map_err(|e| BackendError::Crypto(e.to_string()))? == self.passphrases.default_alias {
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
            // The handle is a JWE, not a key.
            assert_eq!(std::str::from_utf8(&k.handle).unwrap().split('.').count(), 5);
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
        assert_eq!(jwe_kid(std::str::from_utf8(&rewrapped).unwrap()).unwrap(), "new");
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
}
