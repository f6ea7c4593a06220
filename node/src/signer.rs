//! The signing seam: [`CryptoService`], which the node calls to create
//! server-held keys (timestamp, snapshot) and to sign with them. It mirrors
//! Notary's signer gRPC API (`CreateKey`, `GetKeyInfo`, `Sign`,
//! `DeleteKey`). Two implementations: [`crate::remote_signer`] calls
//! signers over mutual TLS; [`InProcessSigner`] (development and a single
//! node with `trust_service.type = "local"`) runs seal-signer's own core in
//! the node's process — the same key store, software backend and signing
//! policy a signer process runs, so the code that signs in development is
//! the code that signs in production.

use std::path::PathBuf;

use async_trait::async_trait;

/// Key algorithms a signer can be asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyAlgorithm {
    /// Ed25519.
    Ed25519,
    /// ECDSA over P-256.
    Ecdsa,
    /// RSA (remote signers only).
    Rsa,
}

impl KeyAlgorithm {
    /// Notary's name of the algorithm.
    pub fn as_str(self) -> &'static str {
        match self {
            KeyAlgorithm::Ed25519 => "ed25519",
            KeyAlgorithm::Ecdsa => "ecdsa",
            KeyAlgorithm::Rsa => "rsa",
        }
    }

    /// The TUF key type of a public key of this algorithm.
    pub fn key_type(self) -> seal_tuf::KeyType {
        match self {
            KeyAlgorithm::Ed25519 => seal_tuf::KeyType::Ed25519,
            KeyAlgorithm::Ecdsa => seal_tuf::KeyType::Ecdsa,
            KeyAlgorithm::Rsa => seal_tuf::KeyType::Rsa,
        }
    }
}

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

mod in_process;
mod legacy;

pub use in_process::InProcessSigner;

#[cfg(test)]
mod tests {
    use super::*;
    use base64::engine::general_purpose::STANDARD as B64;
    use base64::Engine as _;
    use ed25519_dalek::Verifier as _;
    use p256::pkcs8::DecodePublicKey;
    use seal_testkit::notary_fixtures as fixtures_dir;
    use seal_tuf::{FileMeta, Timestamp};
    use zeroize::Zeroizing;

    const FIXTURE_TS_KEY: &str =
        r#"{"keytype":"ed25519","keyval":{"public":"LN3wHx8BGVJVVsVJgmYsiEUUyGETPz3xYv3rIAoGiDQ=","private":null}}"#;

    fn pass() -> Zeroizing<String> {
        Zeroizing::new("correct horse".to_string())
    }

    fn open(dir: &std::path::Path, passphrase: Zeroizing<String>) -> Result<InProcessSigner, SignerError> {
        InProcessSigner::open(dir, passphrase, seal_signer::policy::PolicyConfig::default())
    }

    /// A timestamp of `version` for `gun` and the snapshot file it names,
    /// as the node asks its signer to sign them.
    fn timestamp(version: u64) -> (Vec<u8>, Vec<u8>) {
        let snapshot = br#"{"signed":{"_type":"Snapshot","version":1},"signatures":[]}"#.to_vec();
        let content = Timestamp {
            version,
            expires: time::OffsetDateTime::now_utc() + time::Duration::days(1),
            meta: [(seal_tuf::metadata::SNAPSHOT.to_owned(), FileMeta::for_bytes(&snapshot))].into(),
        }
        .to_value()
        .to_canonical();
        (content, snapshot)
    }

    fn scope<'a>(gun: &'a str, named: &'a [u8]) -> SignScope<'a> {
        SignScope {
            gun,
            role: "timestamp",
            named: Some(named),
        }
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
        let signer = open(dir.path(), pass()).unwrap();
        let ed = signer
            .create_key("example.com/a", "timestamp", KeyAlgorithm::Ed25519)
            .await
            .unwrap();
        let ec = signer
            .create_key("example.com/b", "timestamp", KeyAlgorithm::Ecdsa)
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

        let (msg, snapshot) = timestamp(1);
        let sig = signer
            .sign(&ed.key_id, &msg, scope("example.com/a", &snapshot))
            .await
            .unwrap();
        assert_eq!(sig.method.as_str(), "eddsa");
        let vk = ed25519_dalek::VerifyingKey::from_bytes(&ed.public_key[..].try_into().unwrap()).unwrap();
        vk.verify(&msg, &ed25519_dalek::Signature::from_slice(&sig.signature).unwrap())
            .unwrap();

        let sig = signer
            .sign(&ec.key_id, &msg, scope("example.com/b", &snapshot))
            .await
            .unwrap();
        assert_eq!(sig.method.as_str(), "ecdsa");
        assert_eq!(sig.signature.len(), 64);
        let vk = p256::ecdsa::VerifyingKey::from_public_key_der(&ec.public_key).unwrap();
        vk.verify(&msg, &p256::ecdsa::Signature::from_slice(&sig.signature).unwrap())
            .unwrap();
        drop(signer);

        // The store holds no private key in clear: a key wrapped under a
        // KEK of 600,000 PBKDF2 iterations and a 16-byte salt, under the node's alias.
        {
            let store = seal_signer::store::Store::open(&dir.path().join("store")).unwrap();
            let record = store.key(&ed.key_id).unwrap().unwrap();
            let w = seal_signer::software::kek::Wrapped::parse(&record.handle, 600_000, 600_000).unwrap();
            assert_eq!(
                (w.v.as_str(), w.alias.as_str(), w.kid.as_str()),
                ("seal-kw1", "node", ed.key_id.as_str())
            );
            assert_eq!(w.salt_bytes().unwrap().len(), 16);
        }

        // Reload: same keys, same descriptions, signing still works.
        let signer = open(dir.path(), pass()).unwrap();
        assert_eq!(signer.len(), 2);
        let d = signer.get_key(&ed.key_id).await.unwrap();
        assert_eq!(d.info, ed);
        assert_eq!(d.gun, "example.com/a");
        assert_eq!(d.role, "timestamp");
        let (msg2, snapshot) = timestamp(2);
        let sig = signer
            .sign(&ec.key_id, &msg2, scope("example.com/b", &snapshot))
            .await
            .unwrap();
        vk.verify(&msg2, &p256::ecdsa::Signature::from_slice(&sig.signature).unwrap())
            .unwrap();
        drop(signer);

        // A wrong passphrase opens the store but cannot sign.
        let wrong = open(dir.path(), Zeroizing::new("nope".into())).unwrap();
        let (msg3, snapshot) = timestamp(3);
        assert!(matches!(
            wrong.sign(&ed.key_id, &msg3, scope("example.com/a", &snapshot)).await,
            Err(SignerError::BadKeyFile { .. })
        ));
        drop(wrong);

        let signer = open(dir.path(), pass()).unwrap();
        signer.delete_key(&ed.key_id).await.unwrap();
        signer.delete_key(&ed.key_id).await.unwrap();
        assert!(matches!(
            signer.get_key(&ed.key_id).await,
            Err(SignerError::KeyNotFound { .. })
        ));
        assert!(matches!(
            signer.sign(&ed.key_id, &msg3, scope("example.com/a", &snapshot)).await,
            Err(SignerError::KeyNotFound { .. })
        ));
        drop(signer);
        assert_eq!(open(dir.path(), pass()).unwrap().len(), 1);
    }

    /// The in-process signer is seal-signer's core: its policy applies, as
    /// in a signer process (the earlier in-process keystore signed anything).
    #[tokio::test]
    async fn the_signing_policy_applies_in_process() {
        let dir = tempfile::tempdir().unwrap();
        let signer = open(dir.path(), pass()).unwrap();
        let key = signer
            .create_key("example.com/a", "timestamp", KeyAlgorithm::Ed25519)
            .await
            .unwrap();
        let (v5, snapshot) = timestamp(5);
        signer
            .sign(&key.key_id, &v5, scope("example.com/a", &snapshot))
            .await
            .unwrap();
        // A rollback is refused, with the version already signed.
        let (v4, snapshot) = timestamp(4);
        let e = signer
            .sign(&key.key_id, &v4, scope("example.com/a", &snapshot))
            .await
            .unwrap_err();
        assert!(
            matches!(
                &e,
                SignerError::Refused {
                    high_water: Some(5),
                    ..
                }
            ),
            "{e:?}"
        );
        // So are another collection's metadata and content that is not metadata.
        let (v6, snapshot) = timestamp(6);
        assert!(matches!(
            signer
                .sign(&key.key_id, &v6, scope("example.com/other", &snapshot))
                .await,
            Err(SignerError::Refused { .. })
        ));
        assert!(matches!(
            signer
                .sign(
                    &key.key_id,
                    b"{\"_type\":\"Timestamp\"}",
                    scope("example.com/a", &snapshot)
                )
                .await,
            Err(SignerError::Refused { .. })
        ));
        // And a timestamp that does not list the snapshot it is bound to.
        let (v7, _) = timestamp(7);
        assert!(matches!(
            signer
                .sign(&key.key_id, &v7, scope("example.com/a", b"{\"other\":1}"))
                .await,
            Err(SignerError::Refused { .. })
        ));
    }

    /// Writes a key file as the node's earlier key store did.
    fn legacy_key_file(dir: &std::path::Path, key: &seal_tuf::PrivateKey, gun: &str) -> String {
        let public = key.public_key().public_bytes().to_vec();
        let (algorithm, kt) = match key.key_type() {
            seal_tuf::KeyType::Ed25519 => ("ed25519", seal_tuf::KeyType::Ed25519),
            _ => ("ecdsa", seal_tuf::KeyType::Ecdsa),
        };
        let key_id = seal_tuf::keys::key_id(kt, &public);
        let jwe = seal_signer::software::encrypt_secret(
            pass().as_bytes(),
            &key.to_pkcs8_der().unwrap(),
            &key_id,
            seal_signer::software::PBES2_ITERATIONS,
        )
        .unwrap();
        let file = serde_json::json!({
            "key_id": key_id, "algorithm": algorithm, "gun": gun, "role": "timestamp",
            "public": B64.encode(&public), "private_jwe": jwe,
        });
        std::fs::write(
            dir.join(format!("{key_id}.json")),
            serde_json::to_vec_pretty(&file).unwrap(),
        )
        .unwrap();
        key_id
    }

    #[tokio::test]
    async fn key_files_of_the_earlier_store_are_taken_in_once() {
        let dir = tempfile::tempdir().unwrap();
        let key = seal_tuf::PrivateKey::generate_ecdsa(&mut rand::rngs::OsRng);
        let id = legacy_key_file(dir.path(), &key, "example.com/old");
        let signer = open(dir.path(), pass()).unwrap();
        let d = signer.get_key(&id).await.unwrap();
        assert_eq!(d.info.public_key, key.public_key().public_bytes());
        assert_eq!((d.gun.as_str(), d.role.as_str()), ("example.com/old", "timestamp"));
        assert!(!dir.path().join(format!("{id}.json")).exists());
        assert!(dir.path().join(format!("{id}.json.imported")).exists());
        let (msg, snapshot) = timestamp(1);
        let sig = signer
            .sign(&id, &msg, scope("example.com/old", &snapshot))
            .await
            .unwrap();
        key.public_key().verify("ecdsa", &msg, &sig.signature).unwrap();
        // Deleted stays deleted, even with the old file put back.
        signer.delete_key(&id).await.unwrap();
        std::fs::rename(
            dir.path().join(format!("{id}.json.imported")),
            dir.path().join(format!("{id}.json")),
        )
        .unwrap();
        signer.delete_key(&id).await.unwrap();
        assert!(matches!(
            signer.get_key(&id).await,
            Err(SignerError::KeyNotFound { .. })
        ));
    }

    #[test]
    fn empty_passphrase_refused() {
        let dir = tempfile::tempdir().unwrap();
        assert!(open(dir.path(), Zeroizing::new(String::new())).is_err());
    }

    #[tokio::test]
    async fn tampered_file_refused() {
        let dir = tempfile::tempdir().unwrap();
        let id = "f483ad6878ad3fca5b5cbacdf4ab77ba9719a156608755b59b1ef156a2aec6d5";
        let file = serde_json::json!({
            "key_id": id, "algorithm": "ed25519", "gun": "g", "role": "timestamp",
            // Not the key this id names.
            "public": B64.encode([7u8; 32]), "private_jwe": "x",
        });
        std::fs::write(
            dir.path().join(format!("{id}.json")),
            serde_json::to_vec(&file).unwrap(),
        )
        .unwrap();
        let signer = open(dir.path(), pass()).unwrap();
        assert!(matches!(signer.get_key(id).await, Err(SignerError::BadKeyFile { .. })));
        // Refused, and left where it is for the operator to look at.
        assert!(dir.path().join(format!("{id}.json")).exists());
    }
}
