//! Software keys wrapped under a key-encryption key (KEK): the handle form
//! `seal-kw1`.
//!
//! A KEK is PBKDF2-HMAC-SHA256 of an alias's passphrase over a random
//! 16-byte salt (600,000 iterations, as Notary's per-key PBES2); each private
//! key is sealed under it with AES-256-GCM, a fresh random 96-bit nonce, and
//! the form, the alias and the key ID as associated data. The handle is JSON
//! and carries its KEK's salt and iteration count, so one derivation opens
//! every key wrapped under that salt: a backend derives one KEK per process
//! start for new keys, and one per older salt it meets, instead of one per
//! key.

use base64::Engine as _;
use rand::RngCore as _;
use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM, NONCE_LEN};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

/// The `v` of handles this module writes.
pub const VERSION: &str = "seal-kw1";
/// Salt length of a KEK's derivation.
pub const SALT_LEN: usize = 16;
/// A KEK: 256 bits.
pub type KekBytes = Zeroizing<[u8; 32]>;

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

/// Why a wrapped key cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum KwError {
    /// Not a `seal-kw1` handle, or a field out of bounds.
    #[error("malformed wrapped key: {0}")]
    Malformed(String),
    /// The AEAD refused it: wrong passphrase, tampered ciphertext, or a
    /// handle whose alias or key ID was changed.
    #[error("cannot unwrap the key (wrong passphrase or corrupted data)")]
    Open,
}

/// A private key wrapped under a KEK, as stored (JSON).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Wrapped {
    /// Always [`VERSION`].
    pub v: String,
    /// The alias whose passphrase the KEK comes from.
    pub alias: String,
    /// The TUF key ID of the wrapped key.
    pub kid: String,
    /// PBKDF2 iterations of the KEK.
    pub iter: u64,
    /// The KEK's salt (base64).
    pub salt: String,
    /// The AES-GCM nonce (base64).
    pub nonce: String,
    /// Ciphertext and tag (base64).
    pub ct: String,
}

/// Whether `handle` is in this form rather than a JWE.
pub fn is_wrapped(handle: &[u8]) -> bool {
    handle.first() == Some(&b'{')
}

/// Derives the KEK of `passphrase` and `salt` (OpenSSL's PBKDF2: a generic
/// Rust PBKDF2 is compiled in the calling crate's profile, ten times slower
/// in debug builds, and a debug signer must start within a node's timeouts).
pub fn derive(passphrase: &[u8], salt: &[u8; SALT_LEN], iterations: u32) -> Result<KekBytes, KwError> {
    let mut kek = Zeroizing::new([0u8; 32]);
    openssl::pkcs5::pbkdf2_hmac(
        passphrase,
        salt,
        usize::try_from(iterations).unwrap_or(usize::MAX),
        openssl::hash::MessageDigest::sha256(),
        kek.as_mut(),
    )
    .map_err(|e| KwError::Malformed(format!("key derivation failed: {e}")))?;
    Ok(kek)
}

/// A fresh random salt.
pub fn new_salt() -> [u8; SALT_LEN] {
    let mut salt = [0u8; SALT_LEN];
    rand::rngs::OsRng.fill_bytes(&mut salt);
    salt
}

/// The associated data: the form, the alias and the key ID, unambiguously
/// (a JSON array).
fn associated_data(alias: &str, kid: &str) -> Vec<u8> {
    serde_json::to_vec(&[VERSION, alias, kid]).unwrap_or_default()
}

fn aead_key(kek: &KekBytes) -> Result<LessSafeKey, KwError> {
    UnboundKey::new(&AES_256_GCM, kek.as_ref())
        .map(LessSafeKey::new)
        .map_err(|_| KwError::Malformed("bad KEK length".into()))
}

/// Seals `secret` (key `kid`) under `kek`, the KEK of `alias` with `salt`
/// and `iterations`.
pub fn seal(
    kek: &KekBytes,
    alias: &str,
    kid: &str,
    iterations: u32,
    salt: &[u8; SALT_LEN],
    secret: &[u8],
) -> Result<Wrapped, KwError> {
    let mut nonce = [0u8; NONCE_LEN];
    rand::rngs::OsRng.fill_bytes(&mut nonce);
    let mut buf = Zeroizing::new(secret.to_vec());
    aead_key(kek)?
        .seal_in_place_append_tag(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(associated_data(alias, kid)),
            &mut *buf,
        )
        .map_err(|_| KwError::Malformed("sealing failed".into()))?;
    Ok(Wrapped {
        v: VERSION.to_owned(),
        alias: alias.to_owned(),
        kid: kid.to_owned(),
        iter: u64::from(iterations),
        salt: B64.encode(salt),
        nonce: B64.encode(nonce),
        ct: B64.encode(buf.as_slice()),
    })
}

impl Wrapped {
    /// Parses a stored handle, checking the version, the salt and nonce
    /// lengths and that `iter` lies in `min..=max`.
    pub fn parse(handle: &[u8], min_iter: u64, max_iter: u64) -> Result<Wrapped, KwError> {
        let w: Wrapped = serde_json::from_slice(handle).map_err(|e| KwError::Malformed(e.to_string()))?;
        if w.v != VERSION {
            return Err(KwError::Malformed(format!("unknown version {:?}", w.v)));
        }
        if !(min_iter..=max_iter).contains(&w.iter) {
            return Err(KwError::Malformed(format!("unacceptable iteration count {}", w.iter)));
        }
        w.salt_bytes()?;
        w.nonce_bytes()?;
        Ok(w)
    }

    /// The salt.
    pub fn salt_bytes(&self) -> Result<[u8; SALT_LEN], KwError> {
        fixed(&self.salt, "salt")
    }

    fn nonce_bytes(&self) -> Result<[u8; NONCE_LEN], KwError> {
        fixed(&self.nonce, "nonce")
    }

    /// The iteration count as PBKDF2 takes it.
    pub fn iterations(&self) -> u32 {
        u32::try_from(self.iter).unwrap_or(u32::MAX)
    }

    /// Opens the handle with `kek`.
    pub fn open(&self, kek: &KekBytes) -> Result<Zeroizing<Vec<u8>>, KwError> {
        let nonce = Nonce::assume_unique_for_key(self.nonce_bytes()?);
        let mut buf = Zeroizing::new(
            B64.decode(&self.ct)
                .map_err(|_| KwError::Malformed("ciphertext is not base64".into()))?,
        );
        let plain = aead_key(kek)?
            .open_in_place(nonce, Aad::from(associated_data(&self.alias, &self.kid)), &mut buf)
            .map_err(|_| KwError::Open)?;
        Ok(Zeroizing::new(plain.to_vec()))
    }

    /// The stored bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }
}

fn fixed<const N: usize>(b64: &str, what: &str) -> Result<[u8; N], KwError> {
    B64.decode(b64)
        .ok()
        .and_then(|v| <[u8; N]>::try_from(v.as_slice()).ok())
        .ok_or_else(|| KwError::Malformed(format!("{what} is not {N} bytes of base64")))
}
