//! Key files of the node's earlier key store: one `<key id>.json` per key
//! in `signer.keys_dir`, the public key in clear and the PKCS#8 key as a
//! compact JWE under the signer passphrase (`kid` the key ID). The
//! in-process signer takes such a key into its store the first time the
//! key is asked for, then renames the file to `<key id>.json.imported`, so
//! it is read once and a key deleted later stays deleted.

use std::path::{Path, PathBuf};

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use serde::Deserialize;

use seal_signer::backend::Algorithm;
use seal_signer::software::SoftwareBackend;
use seal_signer::store::{KeyRecord, Store};

use super::SignerError;

/// The on-disk form of one key.
#[derive(Deserialize)]
struct KeyFile {
    key_id: String,
    algorithm: String,
    gun: String,
    role: String,
    /// Base64 of the public key bytes.
    public: String,
    /// Compact JWE of the PKCS#8 key.
    private_jwe: String,
}

/// Whether `s` is a key ID (64 lowercase hex digits), so it can name a file.
fn is_key_id(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// The key file of `key_id` in `dir`.
pub(super) fn path_of(dir: &Path, key_id: &str) -> Option<PathBuf> {
    is_key_id(key_id).then(|| dir.join(format!("{key_id}.json")))
}

/// Takes the key file of `key_id` in `dir`, if there is one, into `store`
/// as a software key of `software`; `Ok(false)` when there is none.
/// Blocks (one key derivation to read the file, one to store the key).
pub(super) fn import(
    dir: &Path,
    key_id: &str,
    passphrase: &[u8],
    software: &SoftwareBackend,
    store: &Store,
) -> Result<bool, SignerError> {
    let Some(path) = path_of(dir, key_id) else {
        return Ok(false);
    };
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        Err(e) => {
            return Err(SignerError::Storage {
                path,
                message: e.to_string(),
            })
        }
    };
    let bad = |message: String| SignerError::BadKeyFile {
        key_id: key_id.to_owned(),
        message,
    };
    let file: KeyFile = serde_json::from_str(&text).map_err(|e| bad(e.to_string()))?;
    let algorithm = Algorithm::parse(&file.algorithm).ok_or_else(|| bad("unknown algorithm".into()))?;
    let public = B64
        .decode(&file.public)
        .map_err(|_| bad("public key is not base64".into()))?;
    if file.key_id != key_id || seal_tuf::keys::key_id(algorithm.key_type(), &public) != key_id {
        return Err(bad("public key does not match the file name".into()));
    }
    let der = seal_signer::software::decrypt_secret(passphrase, &file.private_jwe).map_err(|e| bad(e.to_string()))?;
    let key = seal_tuf::PrivateKey::from_pkcs8_der(&der).map_err(|e| bad(e.to_string()))?;
    if key.key_type() != algorithm.key_type() || key.public_key().public_bytes() != public.as_slice() {
        return Err(bad("private key does not match the public key".into()));
    }
    let new = software.import(key).map_err(|e| bad(e.to_string()))?;
    let record = KeyRecord {
        key_id: key_id.to_owned(),
        gun: file.gun,
        role: file.role,
        algorithm: algorithm.as_str().to_owned(),
        public,
        backend: "software".to_owned(),
        handle: new.handle,
    };
    store.put_key(&record).map_err(|e| SignerError::Storage {
        path: path.clone(),
        message: e.to_string(),
    })?;
    retire(&path)?;
    tracing::info!(
        key_id,
        "key file of the earlier key store taken into the signer's store"
    );
    Ok(true)
}

/// Renames a key file that was taken in (or whose key was deleted) so it is
/// never read again.
pub(super) fn retire(path: &Path) -> Result<(), SignerError> {
    let mut done = path.as_os_str().to_owned();
    done.push(".imported");
    match std::fs::rename(path, &done) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(SignerError::Storage {
            path: path.to_path_buf(),
            message: e.to_string(),
        }),
    }
}
