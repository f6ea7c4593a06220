//! The signing seam: [`CryptoService`], which the node calls to create
//! server-held keys (timestamp, snapshot) and to sign with them, and
//! [`LocalSigner`], an in-process implementation.
//!
//! The trait mirrors Notary's signer gRPC API (`CreateKey`, `GetKeyInfo`,
//! `Sign`, `DeleteKey`) so that a remote signer can implement it later.
//!
//! `LocalSigner` holds ed25519 and ECDSA P-256 keys. Each key is one file,
//! `<key id>.json`, in its directory: public part in clear, private part as a
//! compact JWE (PBES2-HS256+A128KW, A256GCM, 600,000 PBKDF2 iterations,
//! explicit 16-byte salt) under the passphrase given to [`LocalSigner::open`].
//! On start the public parts are indexed; a private key is decrypted on first
//! use and kept in memory (zeroized on drop), so a restart with many keys
//! does not pay 600,000 iterations per key up front.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use async_trait::async_trait;
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use p256::pkcs8::DecodePublicKey;
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::config::KeyAlgorithm;

/// An error of a signing service.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SignerError {
    /// No key with this id (gRPC `NotFound`).
    #[error("key {key_id} not found")]
    KeyNotFound {
        /// The key id asked for.
        key_id: String,
    },
    /// The algorithm is not supported by this service.
    #[error("algorithm {algorithm} is not supported")]
    UnsupportedAlgorithm {
        /// Notary's name of the algorithm.
        algorithm: String,
    },
    /// A key file could not be read or written.
    #[error("key store {path}: {message}")]
    Storage {
        /// The file or directory.
        path: PathBuf,
        /// The IO error.
        message: String,
    },
    /// A key file is malformed or cannot be decrypted (wrong passphrase).
    #[error("key file for {key_id}: {message}")]
    BadKeyFile {
        /// The key id of the file.
        key_id: String,
        /// What is wrong.
        message: String,
    },
    /// A cryptographic operation failed.
    #[error("crypto failure: {message}")]
    Crypto {
        /// What failed.
        message: String,
    },
    /// The service is unreachable (remote signers).
    #[error("signer unavailable: {message}")]
    Unavailable {
        /// Why.
        message: String,
    },
    /// The signer's policy refused to sign (a Seal signer checks what it
    /// signs). `high_water` is the last version it signed with that key,
    /// when it said: metadata regenerated above it will be signed.
    #[error("signer refused: {message}")]
    Refused {
        /// The signer's reason.
        message: String,
        /// The last version the signer signed with the key.
        high_water: Option<u64>,
    },
}

/// A public key as Notary describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicKeyInfo {
    /// Hex sha256 of the key's canonical JSON.
    pub key_id: String,
    /// The key's algorithm.
    pub algorithm: KeyAlgorithm,
    /// The public key bytes: 32 raw bytes for ed25519, DER
    /// SubjectPublicKeyInfo for ECDSA.
    pub public_key: Vec<u8>,
}

impl PublicKeyInfo {
    /// Builds the info of a public key, computing its id.
    pub fn new(algorithm: KeyAlgorithm, public_key: Vec<u8>) -> PublicKeyInfo {
        let key_id = seal_tuf::keys::key_id(algorithm.key_type(), &public_key);
        PublicKeyInfo {
            key_id,
            algorithm,
            public_key,
        }
    }

    /// The JSON body Notary serves for `<role>.key`:
    /// `{"keytype":"ed25519","keyval":{"public":"<b64>","private":null}}`.
    pub fn to_notary_json(&self) -> String {
        String::from_utf8(seal_tuf::keys::notary_key_json(
            self.algorithm.key_type(),
            &self.public_key,
        ))
        .unwrap_or_default()
    }
}

/// A key's description, as `GetKeyInfo` returns it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyDescription {
    /// The public key.
    pub info: PublicKeyInfo,
    /// The collection the key was created for.
    pub gun: String,
    /// The role the key was created for.
    pub role: String,
}

/// The signature method, as written in TUF signatures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignatureMethod {
    /// Ed25519 (`eddsa`).
    Eddsa,
    /// ECDSA P-256 over SHA-256, raw `r‖s` (`ecdsa`).
    Ecdsa,
}

impl SignatureMethod {
    /// The method name in TUF metadata.
    pub fn as_str(self) -> &'static str {
        match self {
            SignatureMethod::Eddsa => "eddsa",
            SignatureMethod::Ecdsa => "ecdsa",
        }
    }
}

/// A signature made by a [`CryptoService`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signature {
    /// The signing key's id.
    pub key_id: String,
    /// The method.
    pub method: SignatureMethod,
    /// The signature bytes (64 for both methods).
    pub signature: Vec<u8>,
}

/// What a signature is for: the collection and role of the metadata being
/// signed. A remote Seal signer checks them against the key; local signing
/// ignores them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SignScope<'a> {
    /// The GUN.
    pub gun: &'a str,
    /// The role (`timestamp` or `snapshot`).
    pub role: &'a str,
    /// The bytes of the file the metadata names (the snapshot a timestamp
    /// lists, the targets a snapshot lists), to which a Seal signer binds
    /// the signature; `None` when there is none.
    pub named: Option<&'a [u8]>,
}

/// A service that creates server-held keys and signs with them.
#[async_trait]
pub trait CryptoService: Send + Sync {
    /// Creates a key for `role` of `gun`.
    async fn create_key(&self, gun: &str, role: &str, algorithm: KeyAlgorithm) -> Result<PublicKeyInfo, SignerError>;

    /// Describes a key.
    async fn get_key(&self, key_id: &str) -> Result<KeyDescription, SignerError>;

    /// Signs `message` (the canonical JSON of a `signed` section) with a key.
    async fn sign(&self, key_id: &str, message: &[u8], scope: SignScope<'_>) -> Result<Signature, SignerError>;

    /// Deletes a key; deleting an unknown key is not an error.
    async fn delete_key(&self, key_id: &str) -> Result<(), SignerError>;

    /// `Err` with the reason while the service cannot sign (health shows
    /// the node degraded). A local signer is always operational.
    fn operational(&self) -> Result<(), String> {
        Ok(())
    }
}

/// Private key material (seal-tuf's keys, zeroized on drop).
struct PrivateKey(seal_tuf::PrivateKey);

impl PrivateKey {
    fn generate(algorithm: KeyAlgorithm) -> Result<PrivateKey, SignerError> {
        let mut rng = rand::rngs::OsRng;
        match algorithm {
            KeyAlgorithm::Ed25519 => Ok(PrivateKey(seal_tuf::PrivateKey::generate_ed25519(&mut rng))),
            KeyAlgorithm::Ecdsa => Ok(PrivateKey(seal_tuf::PrivateKey::generate_ecdsa(&mut rng))),
            KeyAlgorithm::Rsa => Err(SignerError::UnsupportedAlgorithm {
                algorithm: "rsa".into(),
            }),
        }
    }

    fn algorithm(&self) -> KeyAlgorithm {
        match self.0.key_type() {
            seal_tuf::KeyType::Ed25519 => KeyAlgorithm::Ed25519,
            _ => KeyAlgorithm::Ecdsa,
        }
    }

    fn public_key(&self) -> Result<Vec<u8>, SignerError> {
        Ok(self.0.public_key().public_bytes().to_vec())
    }

    /// The key as PKCS#8 DER.
    fn secret_bytes(&self) -> Result<Zeroizing<Vec<u8>>, SignerError> {
        self.0
            .to_pkcs8_der()
            .map_err(|e| SignerError::Crypto { message: e.to_string() })
    }

    fn from_secret_bytes(algorithm: KeyAlgorithm, bytes: &[u8]) -> Option<PrivateKey> {
        let key = seal_tuf::PrivateKey::from_pkcs8_der(bytes).ok().map(PrivateKey)?;
        (key.algorithm() == algorithm).then_some(key)
    }

    fn sign(&self, message: &[u8]) -> (SignatureMethod, Vec<u8>) {
        let s = self.0.sign(message);
        let method = match self.0.key_type() {
            seal_tuf::KeyType::Ed25519 => SignatureMethod::Eddsa,
            _ => SignatureMethod::Ecdsa,
        };
        (method, s.sig)
    }
}

/// The on-disk form of one key.
#[derive(Serialize, Deserialize)]
struct KeyFile {
    key_id: String,
    algorithm: String,
    gun: String,
    role: String,
    /// Base64 of the public key bytes.
    public: String,
    /// Compact JWE of the secret bytes.
    private_jwe: String,
}

/// One indexed key: its description and, once decrypted, its private part.
struct Entry {
    description: KeyDescription,
    private_jwe: String,
    private: Option<Arc<PrivateKey>>,
}

struct Inner {
    dir: PathBuf,
    passphrase: Zeroizing<Vec<u8>>,
    keys: RwLock<HashMap<String, Entry>>,
}

/// The in-process signer: keys in a directory, encrypted under a passphrase.
#[derive(Clone)]
pub struct LocalSigner {
    inner: Arc<Inner>,
}

fn storage_err(path: &Path, e: impl std::fmt::Display) -> SignerError {
    SignerError::Storage {
        path: path.to_path_buf(),
        message: e.to_string(),
    }
}

fn lock_err() -> SignerError {
    SignerError::Crypto {
        message: "key index lock poisoned".into(),
    }
}

fn parse_algorithm(name: &str) -> Option<KeyAlgorithm> {
    match name {
        "ed25519" => Some(KeyAlgorithm::Ed25519),
        "ecdsa" => Some(KeyAlgorithm::Ecdsa),
        _ => None,
    }
}

/// Whether a string is a key id (64 lowercase hex digits), so that it can
/// safely name a file.
fn is_key_id(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

fn encrypt_secret(passphrase: &[u8], secret: &[u8], key_id: &str) -> Result<String, SignerError> {
    seal_signer::software::encrypt_secret(passphrase, secret, key_id, seal_signer::software::PBES2_ITERATIONS).map_err(
        |e| SignerError::Crypto {
            message: format!("encrypting key {key_id}: {e}"),
        },
    )
}

fn decrypt_secret(passphrase: &[u8], jwe: &str, key_id: &str) -> Result<Zeroizing<Vec<u8>>, SignerError> {
    seal_signer::software::decrypt_secret(passphrase, jwe).map_err(|e| SignerError::BadKeyFile {
        key_id: key_id.to_string(),
        message: e.to_string(),
    })
}

/// Writes `bytes` to `path` atomically (temporary file, fsync, rename),
/// readable by the owner only.
fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), SignerError> {
    let tmp = path.with_extension("json.tmp");
    {
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create(true).truncate(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        let mut f = options.open(&tmp).map_err(|e| storage_err(&tmp, e))?;
        f.write_all(bytes).map_err(|e| storage_err(&tmp, e))?;
        f.sync_all().map_err(|e| storage_err(&tmp, e))?;
    }
    std::fs::rename(&tmp, path).map_err(|e| storage_err(path, e))?;
    if let Some(parent) = path.parent() {
        if let Ok(d) = std::fs::File::open(parent) {
            let _ = d.sync_all();
        }
    }
    Ok(())
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, SignerError> + Send + 'static,
) -> Result<T, SignerError> {
    tokio::task::spawn_blocking(f).await.map_err(|e| SignerError::Crypto {
        message: format!("signer task failed: {e}"),
    })?
}

impl LocalSigner {
    /// Opens (creating if needed) the key directory `dir` and indexes the
    /// keys in it. The passphrase encrypts new keys and decrypts stored ones.
    pub fn open(dir: &Path, passphrase: Zeroizing<String>) -> Result<LocalSigner, SignerError> {
        if passphrase.is_empty() {
            return Err(SignerError::Crypto {
                message: "the key passphrase must not be empty".into(),
            });
        }
        std::fs::create_dir_all(dir).map_err(|e| storage_err(dir, e))?;
        let mut keys = HashMap::new();
        let entries = std::fs::read_dir(dir).map_err(|e| storage_err(dir, e))?;
        for entry in entries {
            let entry = entry.map_err(|e| storage_err(dir, e))?;
            let path = entry.path();
            let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
                continue;
            };
            let Some(id) = name.strip_suffix(".json") else {
                continue;
            };
            if !is_key_id(id) {
                continue;
            }
            let text = std::fs::read_to_string(&path).map_err(|e| storage_err(&path, e))?;
            let file: KeyFile = serde_json::from_str(&text).map_err(|e| SignerError::BadKeyFile {
                key_id: id.to_string(),
                message: e.to_string(),
            })?;
            let description = describe(&file)?;
            if description.info.key_id != id {
                return Err(SignerError::BadKeyFile {
                    key_id: id.to_string(),
                    message: "public key does not match the file name".into(),
                });
            }
            keys.insert(
                id.to_string(),
                Entry {
                    description,
                    private_jwe: file.private_jwe,
                    private: None,
                },
            );
        }
        Ok(LocalSigner {
            inner: Arc::new(Inner {
                dir: dir.to_path_buf(),
                passphrase: Zeroizing::new(passphrase.as_bytes().to_vec()),
                keys: RwLock::new(keys),
            }),
        })
    }

    /// The number of keys held.
    pub fn len(&self) -> usize {
        self.inner.keys.read().map(|k| k.len()).unwrap_or(0)
    }

    /// Whether no key is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The private key of `key_id`, decrypting it on first use.
    async fn private(&self, key_id: &str) -> Result<Arc<PrivateKey>, SignerError> {
        let (jwe, algorithm) = {
            let keys = self.inner.keys.read().map_err(|_| lock_err())?;
            let entry = keys.get(key_id).ok_or_else(|| SignerError::KeyNotFound {
                key_id: key_id.to_string(),
            })?;
            if let Some(p) = &entry.private {
                return Ok(p.clone());
            }
            (entry.private_jwe.clone(), entry.description.info.algorithm)
        };
        let inner = self.inner.clone();
        let id = key_id.to_string();
        let private = blocking(move || {
            let secret = decrypt_secret(&inner.passphrase, &jwe, &id)?;
            let key = PrivateKey::from_secret_bytes(algorithm, &secret).ok_or_else(|| SignerError::BadKeyFile {
                key_id: id.clone(),
                message: "invalid private key bytes".into(),
            })?;
            if PublicKeyInfo::new(algorithm, key.public_key()?).key_id != id {
                return Err(SignerError::BadKeyFile {
                    key_id: id,
                    message: "private key does not match the public key".into(),
                });
            }
            Ok(Arc::new(key))
        })
        .await?;
        let mut keys = self.inner.keys.write().map_err(|_| lock_err())?;
        match keys.get_mut(key_id) {
            Some(entry) => {
                entry.private = Some(private.clone());
                Ok(private)
            }
            None => Err(SignerError::KeyNotFound {
                key_id: key_id.to_string(),
            }),
        }
    }
}

fn describe(file: &KeyFile) -> Result<KeyDescription, SignerError> {
    let bad = |message: &str| SignerError::BadKeyFile {
        key_id: file.key_id.clone(),
        message: message.to_string(),
    };
    let algorithm = parse_algorithm(&file.algorithm).ok_or_else(|| bad("unknown algorithm"))?;
    let public = B64.decode(&file.public).map_err(|_| bad("public key is not base64"))?;
    match algorithm {
        KeyAlgorithm::Ed25519 if public.len() != 32 => return Err(bad("bad ed25519 public key")),
        KeyAlgorithm::Ecdsa if p256::PublicKey::from_public_key_der(&public).is_err() => {
            return Err(bad("bad ECDSA public key"))
        }
        _ => {}
    }
    Ok(KeyDescription {
        info: PublicKeyInfo::new(algorithm, public),
        gun: file.gun.clone(),
        role: file.role.clone(),
    })
}

#[async_trait]
impl CryptoService for LocalSigner {
    async fn create_key(&self, gun: &str, role: &str, algorithm: KeyAlgorithm) -> Result<PublicKeyInfo, SignerError> {
        let inner = self.inner.clone();
        let gun = gun.to_string();
        let role = role.to_string();
        let (description, jwe, key) = blocking(move || {
            let key = PrivateKey::generate(algorithm)?;
            let info = PublicKeyInfo::new(key.algorithm(), key.public_key()?);
            let jwe = encrypt_secret(&inner.passphrase, &key.secret_bytes()?, &info.key_id)?;
            let file = KeyFile {
                key_id: info.key_id.clone(),
                algorithm: algorithm.as_str().into(),
                gun: gun.clone(),
                role: role.clone(),
                public: B64.encode(&info.public_key),
                private_jwe: jwe.clone(),
            };
            let text = serde_json::to_vec_pretty(&file).map_err(|e| SignerError::Crypto { message: e.to_string() })?;
            write_atomic(&inner.dir.join(format!("{}.json", info.key_id)), &text)?;
            Ok((KeyDescription { info, gun, role }, jwe, key))
        })
        .await?;
        let info = description.info.clone();
        let mut keys = self.inner.keys.write().map_err(|_| lock_err())?;
        keys.insert(
            info.key_id.clone(),
            Entry {
                description,
                private_jwe: jwe,
                private: Some(Arc::new(key)),
            },
        );
        Ok(info)
    }

    async fn get_key(&self, key_id: &str) -> Result<KeyDescription, SignerError> {
        let keys = self.inner.keys.read().map_err(|_| lock_err())?;
        keys.get(key_id)
            .map(|e| e.description.clone())
            .ok_or_else(|| SignerError::KeyNotFound {
                key_id: key_id.to_string(),
            })
    }

    async fn sign(&self, key_id: &str, message: &[u8], _scope: SignScope<'_>) -> Result<Signature, SignerError> {
        let key = self.private(key_id).await?;
        let (method, signature) = key.sign(message);
        Ok(Signature {
            key_id: key_id.to_string(),
            method,
            signature,
        })
    }

    async fn delete_key(&self, key_id: &str) -> Result<(), SignerError> {
        if !is_key_id(key_id) {
            return Ok(());
        }
        let removed = {
            let mut keys = self.inner.keys.write().map_err(|_| lock_err())?;
            keys.remove(key_id)
        };
        if removed.is_some() {
            let path = self.inner.dir.join(format!("{key_id}.json"));
            let p = path.clone();
            blocking(move || match std::fs::remove_file(&p) {
                Ok(()) => Ok(()),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
                Err(e) => Err(storage_err(&p, e)),
            })
            .await?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::tests::fixtures_dir;
    use ed25519_dalek::Verifier as _;

    const SCOPE: SignScope<'static> = SignScope {
        gun: "example.com/app",
        role: "timestamp",
        named: None,
    };

    const FIXTURE_TS_KEY: &str =
        r#"{"keytype":"ed25519","keyval":{"public":"LN3wHx8BGVJVVsVJgmYsiEUUyGETPz3xYv3rIAoGiDQ=","private":null}}"#;

    fn pass() -> Zeroizing<String> {
        Zeroizing::new("correct horse".to_string())
    }

    #[test]
    fn key_id_of_fixture_timestamp_key() {
        let public = B64.decode("LN3wHx8BGVJVVsVJgmYsiEUUyGETPz3xYv3rIAoGiDQ=").unwrap();
        let info = PublicKeyInfo::new(KeyAlgorithm::Ed25519, public);
        assert_eq!(
            info.key_id,
            "f483ad6878ad3fca5b5cbacdf4ab77ba9719a156608755b59b1ef156a2aec6d5"
        );
        assert_eq!(info.to_notary_json(), FIXTURE_TS_KEY);
        if let Some(dir) = fixtures_dir() {
            let served = std::fs::read_to_string(
                dir.join("metadata/example.com_interop_app/1-after-first-publish/timestamp.key"),
            )
            .unwrap();
            assert_eq!(served.trim_end(), FIXTURE_TS_KEY);
        }
    }

    #[test]
    fn ecdsa_key_ids_and_der_match_fixture_root() {
        let Some(dir) = fixtures_dir() else { return };
        let text =
            std::fs::read_to_string(dir.join("metadata/example.com_interop_app/1-after-first-publish/root.json"))
                .unwrap();
        let root: serde_json::Value = serde_json::from_str(&text).unwrap();
        let mut ecdsa_seen = 0;
        for (id, key) in root["signed"]["keys"].as_object().unwrap() {
            let keytype = key["keytype"].as_str().unwrap();
            let public = key["keyval"]["public"].as_str().unwrap();
            let kt = seal_tuf::KeyType::parse(keytype).unwrap();
            assert_eq!(&seal_tuf::keys::key_id(kt, &B64.decode(public).unwrap()), id);
            if keytype == "ecdsa" {
                ecdsa_seen += 1;
                let der = B64.decode(public).unwrap();
                let vk = p256::ecdsa::VerifyingKey::from_public_key_der(&der).unwrap();
                assert_eq!(
                    p256::pkcs8::EncodePublicKey::to_public_key_der(&vk).unwrap().as_bytes(),
                    &der[..]
                );
            }
        }
        assert!(ecdsa_seen > 0);
    }

    #[tokio::test]
    async fn create_sign_verify_reload_delete() {
        let dir = tempfile::tempdir().unwrap();
        let signer = LocalSigner::open(dir.path(), pass()).unwrap();
        let ed = signer
            .create_key("example.com/a", "timestamp", KeyAlgorithm::Ed25519)
            .await
            .unwrap();
        let ec = signer
            .create_key("example.com/a", "snapshot", KeyAlgorithm::Ecdsa)
            .await
            .unwrap();
        assert_eq!(ed.public_key.len(), 32);
        assert!(ec
            .to_notary_json()
            .starts_with("{\"keytype\":\"ecdsa\",\"keyval\":{\"public\":\"MFkw"));
        assert!(matches!(
            signer.create_key("example.com/a", "timestamp", KeyAlgorithm::Rsa).await,
            Err(SignerError::UnsupportedAlgorithm { .. })
        ));

        let msg = b"{\"_type\":\"Timestamp\"}";
        let sig = signer.sign(&ed.key_id, msg, SCOPE).await.unwrap();
        assert_eq!(sig.method.as_str(), "eddsa");
        let vk = ed25519_dalek::VerifyingKey::from_bytes(&ed.public_key[..].try_into().unwrap()).unwrap();
        vk.verify(msg, &ed25519_dalek::Signature::from_slice(&sig.signature).unwrap())
            .unwrap();

        let sig = signer.sign(&ec.key_id, msg, SCOPE).await.unwrap();
        assert_eq!(sig.method.as_str(), "ecdsa");
        assert_eq!(sig.signature.len(), 64);
        let vk = p256::ecdsa::VerifyingKey::from_public_key_der(&ec.public_key).unwrap();
        vk.verify(msg, &p256::ecdsa::Signature::from_slice(&sig.signature).unwrap())
            .unwrap();

        // The file holds no private key in clear, and a JWE with the set parameters.
        let file_text = std::fs::read_to_string(dir.path().join(format!("{}.json", ed.key_id))).unwrap();
        let file: KeyFile = serde_json::from_str(&file_text).unwrap();
        let header_b64 = file.private_jwe.split('.').next().unwrap();
        let header: serde_json::Value = serde_json::from_slice(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(header_b64)
                .unwrap(),
        )
        .unwrap();
        assert_eq!(header["alg"], "PBES2-HS256+A128KW");
        assert_eq!(header["enc"], "A256GCM");
        assert_eq!(header["p2c"], 600_000);
        assert_eq!(
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(header["p2s"].as_str().unwrap())
                .unwrap()
                .len(),
            16
        );
        drop(signer);

        // Reload: same keys, same descriptions, signing still works.
        let signer = LocalSigner::open(dir.path(), pass()).unwrap();
        assert_eq!(signer.len(), 2);
        let d = signer.get_key(&ed.key_id).await.unwrap();
        assert_eq!(d.info, ed);
        assert_eq!(d.gun, "example.com/a");
        assert_eq!(d.role, "timestamp");
        let sig = signer.sign(&ec.key_id, msg, SCOPE).await.unwrap();
        vk.verify(msg, &p256::ecdsa::Signature::from_slice(&sig.signature).unwrap())
            .unwrap();

        // A wrong passphrase indexes the keys but cannot sign.
        let wrong = LocalSigner::open(dir.path(), Zeroizing::new("nope".into())).unwrap();
        assert!(matches!(
            wrong.sign(&ed.key_id, msg, SCOPE).await,
            Err(SignerError::BadKeyFile { .. })
        ));

        signer.delete_key(&ed.key_id).await.unwrap();
        signer.delete_key(&ed.key_id).await.unwrap();
        assert!(matches!(
            signer.get_key(&ed.key_id).await,
            Err(SignerError::KeyNotFound { .. })
        ));
        assert!(matches!(
            signer.sign(&ed.key_id, msg, SCOPE).await,
            Err(SignerError::KeyNotFound { .. })
        ));
        assert!(!dir.path().join(format!("{}.json", ed.key_id)).exists());
        assert_eq!(LocalSigner::open(dir.path(), pass()).unwrap().len(), 1);
    }

    #[test]
    fn private_keys_zeroize_on_drop() {
        fn zeroize_on_drop<T: zeroize::ZeroizeOnDrop>() {}
        zeroize_on_drop::<ed25519_dalek::SigningKey>();
        zeroize_on_drop::<p256::ecdsa::SigningKey>();
        zeroize_on_drop::<Zeroizing<Vec<u8>>>();
    }

    #[test]
    fn empty_passphrase_refused() {
        let dir = tempfile::tempdir().unwrap();
        assert!(LocalSigner::open(dir.path(), Zeroizing::new(String::new())).is_err());
    }

    #[test]
    fn tampered_file_refused() {
        let dir = tempfile::tempdir().unwrap();
        let id = "f483ad6878ad3fca5b5cbacdf4ab77ba9719a156608755b59b1ef156a2aec6d5";
        let file = KeyFile {
            key_id: id.into(),
            algorithm: "ed25519".into(),
            gun: "g".into(),
            role: "timestamp".into(),
            // Not the key this id names.
            public: B64.encode([7u8; 32]),
            private_jwe: "x".into(),
        };
        std::fs::write(
            dir.path().join(format!("{id}.json")),
            serde_json::to_vec(&file).unwrap(),
        )
        .unwrap();
        assert!(matches!(
            LocalSigner::open(dir.path(), pass()),
            Err(SignerError::BadKeyFile { .. })
        ));
    }
}
