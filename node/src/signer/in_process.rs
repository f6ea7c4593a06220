//! seal-signer's core in the node's process: `trust_service.type = "local"`
//! (development, a single node). Keys are software keys in the signer's own
//! RocksDB store under `signer.keys_dir`, encrypted under the node's signer
//! passphrase, and every signature passes the signer's policy (role, GUN,
//! version above the key's high-water mark, expiry, the file it names), as
//! in a signer process. Key files of the node's earlier key store are
//! taken in when first asked for (see `legacy`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use seal_signer::backend::{Blocking, KeyBackend};
use seal_signer::core::SignerCore;
use seal_signer::metrics::Metrics;
use seal_signer::policy::{Claimed, PolicyConfig};
use seal_signer::software::{Passphrases, SoftwareBackend};
use seal_signer::store::{KeyRecord, Store};
use zeroize::Zeroizing;

use super::{CryptoService, KeyDescription, PublicKeyInfo, SignScope, Signature, SignatureMethod, SignerError};
use crate::config::KeyAlgorithm;

/// The alias the node's signer passphrase is known by in the key store.
const ALIAS: &str = "node";

/// The signer core, in process.
#[derive(Clone)]
pub struct InProcessSigner {
    core: Arc<SignerCore>,
    store: Arc<Store>,
    software: Arc<SoftwareBackend>,
    keys_dir: PathBuf,
    passphrase: Arc<Zeroizing<String>>,
}

impl InProcessSigner {
    /// Opens (creating if needed) the key store in `<keys_dir>/store`, with
    /// keys encrypted under `passphrase`; key files an earlier version of
    /// the node kept in `keys_dir` itself are taken in when first asked
    /// for. `policy` bounds what is signed; its lifetimes must admit the
    /// node's own.
    pub fn open(keys_dir: &Path, passphrase: Zeroizing<String>, policy: PolicyConfig) -> Result<Self, SignerError> {
        if passphrase.is_empty() {
            return Err(SignerError::Crypto {
                message: "the key passphrase must not be empty".into(),
            });
        }
        let store_dir = keys_dir.join("store");
        std::fs::create_dir_all(&store_dir).map_err(|e| SignerError::Storage {
            path: store_dir.clone(),
            message: e.to_string(),
        })?;
        let store = Arc::new(Store::open(&store_dir).map_err(|e| SignerError::Storage {
            path: store_dir.clone(),
            message: e.to_string(),
        })?);
        let passphrases = Passphrases::new(ALIAS, BTreeMap::from([(ALIAS.to_owned(), passphrase.clone())]))
            .map_err(|e| SignerError::Crypto { message: e.to_string() })?;
        let software = Arc::new(SoftwareBackend::new(passphrases));
        let backends: Vec<Arc<dyn KeyBackend>> = vec![Arc::new(Blocking(software.clone()))];
        let metrics = Metrics::new().map_err(|e| SignerError::Crypto {
            message: format!("signer metrics: {e}"),
        })?;
        let core = SignerCore::new(store.clone(), backends, "software", policy, metrics)
            .map_err(|e| SignerError::Crypto { message: e.to_string() })?;
        Ok(InProcessSigner {
            core: Arc::new(core),
            store,
            software,
            keys_dir: keys_dir.to_path_buf(),
            passphrase: Arc::new(passphrase),
        })
    }

    /// Takes in the earlier store's key file of `key_id` if the signer's
    /// store lacks the key.
    async fn take_in(&self, key_id: &str) -> Result<(), SignerError> {
        if self.store.key(key_id).ok().flatten().is_some() {
            return Ok(());
        }
        let me = self.clone();
        let id = key_id.to_owned();
        tokio::task::spawn_blocking(move || {
            super::legacy::import(&me.keys_dir, &id, me.passphrase.as_bytes(), &me.software, &me.store)
        })
        .await
        .map_err(|e| SignerError::Crypto {
            message: format!("signer task failed: {e}"),
        })??;
        Ok(())
    }

    /// The number of keys held.
    pub fn len(&self) -> usize {
        self.store.keys().map(|k| k.len()).unwrap_or(0)
    }

    /// Whether no key is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

fn algorithm(record: &KeyRecord) -> Result<KeyAlgorithm, SignerError> {
    match record.algorithm.as_str() {
        "ed25519" => Ok(KeyAlgorithm::Ed25519),
        "ecdsa" => Ok(KeyAlgorithm::Ecdsa),
        other => Err(SignerError::BadKeyFile {
            key_id: record.key_id.clone(),
            message: format!("unknown algorithm {other}"),
        }),
    }
}

fn describe(record: &KeyRecord) -> Result<KeyDescription, SignerError> {
    Ok(KeyDescription {
        info: PublicKeyInfo::new(algorithm(record)?, record.public.clone()),
        gun: record.gun.clone(),
        role: record.role.clone(),
    })
}

/// The signer's error as the node's seam names it; `key_id` is the key the
/// call was about.
fn from_core(key_id: &str, e: seal_signer::Error) -> SignerError {
    use seal_signer::Error as E;
    if e.is_refusal() {
        return SignerError::Refused {
            high_water: e.high_water(),
            message: e.to_string(),
        };
    }
    match e {
        E::KeyNotFound(key_id) => SignerError::KeyNotFound { key_id },
        E::UnsupportedAlgorithm(algorithm) => SignerError::UnsupportedAlgorithm { algorithm },
        // A key that cannot be decrypted (wrong passphrase) or used.
        E::Backend(b) => SignerError::BadKeyFile {
            key_id: key_id.to_owned(),
            message: b.to_string(),
        },
        other => SignerError::Crypto {
            message: other.to_string(),
        },
    }
}

#[async_trait]
impl CryptoService for InProcessSigner {
    async fn create_key(&self, gun: &str, role: &str, algorithm: KeyAlgorithm) -> Result<PublicKeyInfo, SignerError> {
        let record = self
            .core
            .create_key(algorithm.as_str(), gun, role)
            .await
            .map_err(|e| from_core("", e))?;
        Ok(describe(&record)?.info)
    }

    async fn get_key(&self, key_id: &str) -> Result<KeyDescription, SignerError> {
        self.take_in(key_id).await?;
        describe(&self.core.key(key_id).map_err(|e| from_core(key_id, e))?)
    }

    async fn sign(&self, key_id: &str, message: &[u8], scope: SignScope<'_>) -> Result<Signature, SignerError> {
        let claimed = Claimed {
            gun: Some(scope.gun.to_owned()),
            role: Some(scope.role.to_owned()),
            named: scope
                .named
                .and_then(|bytes| Some((seal_tuf::metadata::named_role(scope.role)?.to_owned(), bytes.to_vec())))
                .into_iter()
                .collect(),
        };
        self.take_in(key_id).await?;
        let signed = self
            .core
            .sign(key_id, &claimed, message)
            .await
            .map_err(|e| from_core(key_id, e))?;
        let method = match signed.method {
            "eddsa" => SignatureMethod::Eddsa,
            _ => SignatureMethod::Ecdsa,
        };
        Ok(Signature {
            key_id: signed.record.key_id,
            method,
            signature: signed.signature,
        })
    }

    async fn delete_key(&self, key_id: &str) -> Result<(), SignerError> {
        self.core.delete_key(key_id).await.map_err(|e| from_core(key_id, e))?;
        // A key file of the earlier store must not bring the key back.
        match super::legacy::path_of(&self.keys_dir, key_id) {
            Some(path) => super::legacy::retire(&path),
            None => Ok(()),
        }
    }
}
