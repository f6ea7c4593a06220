//! notary-signer's encrypted keys: JWE compact serialization, PBES2-HS256+A128KW key wrapping,
//! A256GCM content encryption, as the JOSE library Notary vendors (jose2go) writes them
//! (`{"alg","enc","p2c","p2s"}` header, 8,192 iterations, a 12-byte salt).
//!
//! Two key derivations are in the wild. Notary's release images were built with Go before
//! 1.15 and derive the key-encryption key by standard PBKDF2-HMAC-SHA256 (RFC 7518 §4.8). The
//! vendored jose2go hands Go's `hmac.New` a hash constructor that returns one shared hash for
//! the inner and outer hash; from Go 1.15, whose HMAC saves and restores marshalled inner and
//! outer states, that sharing changes the result of the first HMAC an instance computes: its
//! inner hash starts from the outer pad's state, so the first PBKDF2 block's `U_1` is
//! `H(K⊕opad ‖ H(K⊕opad ‖ salt ‖ INT(1)))` instead of `H(K⊕opad ‖ H(K⊕ipad ‖ salt ‖ INT(1)))`;
//! later `U_c` are standard (jose2go issue 26, "Go 1.15: broken PBSE2 KDF", fixed in jose2go
//! after Notary's last release). [`decrypt`] tries the standard derivation, then that one, and
//! says which one opened the key: AES key wrap's integrity check and GCM's tag make a wrong
//! derivation fail, never decrypt to something else.

use base64::Engine as _;
use hmac::{Hmac, Mac as _};
use openssl::aes::{unwrap_key, wrap_key, AesKey};
use openssl::symm::{decrypt_aead, encrypt_aead, Cipher};
use rand::RngCore as _;
use sha2::{Digest as _, Sha256};
use zeroize::Zeroizing;

/// The key wrapping notary-signer writes.
pub const ALG: &str = "PBES2-HS256+A128KW";
/// The content encryption notary-signer writes.
pub const ENC: &str = "A256GCM";
/// The iteration count notary-signer (jose2go) writes.
pub const NOTARY_ITERATIONS: u32 = 8192;
/// The most iterations an imported key may ask for (more is a denial of service).
pub const MAX_ITERATIONS: u64 = 10_000_000;

/// Which PBES2 key derivation opened a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kdf {
    /// RFC 7518 PBKDF2-HMAC-SHA256 (notary-signer built with Go before 1.15).
    Standard,
    /// jose2go's shared-hash HMAC under Go ≥ 1.15.
    Go115,
}

impl Kdf {
    /// How the report names it.
    pub fn as_str(self) -> &'static str {
        match self {
            Kdf::Standard => "standard PBES2",
            Kdf::Go115 => "Go 1.15 jose2go PBES2",
        }
    }
}

/// Why a notary-signer JWE could not be opened.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NotaryJweError {
    /// Not a JWE of the kind notary-signer writes (truncated, bad base64, other algorithms).
    #[error("malformed JWE: {0}")]
    Malformed(String),
    /// Neither derivation opened it: wrong passphrase, or tampered data.
    #[error("neither the standard nor the Go 1.15 PBES2 derivation opens it: wrong passphrase or corrupted key")]
    WrongPassphrase,
}

fn b64(part: &str, what: &str) -> Result<Vec<u8>, NotaryJweError> {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(part.trim_end_matches('='))
        .map_err(|e| NotaryJweError::Malformed(format!("truncated or corrupted: the {what} is not base64url ({e})")))
}

/// Derives the 16-byte key-encryption key.
pub fn derive(passphrase: &[u8], salt_input: &[u8], iterations: u32, kdf: Kdf) -> Zeroizing<[u8; 16]> {
    let mut salt = Vec::with_capacity(ALG.len() + 1 + salt_input.len());
    salt.extend_from_slice(ALG.as_bytes());
    salt.push(0);
    salt.extend_from_slice(salt_input);
    let mut out = Zeroizing::new([0u8; 16]);
    match kdf {
        Kdf::Standard => pbkdf2::pbkdf2_hmac::<Sha256>(passphrase, &salt, iterations, out.as_mut()),
        Kdf::Go115 => {
            // HMAC's padded key, as Go's HMAC pads it (a key longer than the block is hashed).
            let mut key = Zeroizing::new([0u8; 64]);
            if passphrase.len() > 64 {
                key[..32].copy_from_slice(&Sha256::digest(passphrase));
            } else {
                key[..passphrase.len()].copy_from_slice(passphrase);
            }
            let opad: Zeroizing<Vec<u8>> = Zeroizing::new(key.iter().map(|b| b ^ 0x5c).collect());
            let inner = Sha256::new()
                .chain_update(&*opad)
                .chain_update(&salt)
                .chain_update(1u32.to_be_bytes())
                .finalize();
            let mut u: [u8; 32] = Sha256::new().chain_update(&*opad).chain_update(inner).finalize().into();
            let mut t = u;
            let mac = Hmac::<Sha256>::new_from_slice(passphrase).unwrap_or_else(|_| unreachable!());
            for _ in 1..iterations {
                u = mac.clone().chain_update(u).finalize().into_bytes().into();
                t.iter_mut().zip(u.iter()).for_each(|(a, b)| *a ^= b);
            }
            out.copy_from_slice(&t[..16]);
        }
    }
    out
}

/// Opens a notary-signer JWE with `passphrase`: the plaintext and the derivation that worked.
pub fn decrypt(jwe: &str, passphrase: &[u8]) -> Result<(Zeroizing<Vec<u8>>, Kdf), NotaryJweError> {
    let parts: Vec<&str> = jwe.trim().split('.').collect();
    let [header_b64, ek, iv, ct, tag] = parts[..] else {
        return Err(NotaryJweError::Malformed(format!(
            "{} parts, not the 5 of a JWE compact serialization",
            parts.len()
        )));
    };
    let header: serde_json::Value = serde_json::from_slice(&b64(header_b64, "header")?)
        .map_err(|e| NotaryJweError::Malformed(format!("header: {e}")))?;
    if header["alg"] != ALG || header["enc"] != ENC {
        return Err(NotaryJweError::Malformed(format!(
            "algorithms {} / {}, not {ALG} / {ENC}",
            header["alg"], header["enc"]
        )));
    }
    let iterations = header["p2c"]
        .as_u64()
        .filter(|n| (1..=MAX_ITERATIONS).contains(n))
        .ok_or_else(|| NotaryJweError::Malformed("p2c missing or out of bounds".into()))?;
    let salt = b64(header["p2s"].as_str().unwrap_or_default(), "p2s")?;
    let ek = b64(ek, "encrypted key")?;
    let iv = b64(iv, "iv")?;
    let ct = b64(ct, "ciphertext")?;
    let tag = b64(tag, "tag")?;
    if ek.len() != 40 || iv.len() != 12 || tag.len() != 16 || ct.is_empty() {
        return Err(NotaryJweError::Malformed(
            "truncated: encrypted key, iv, ciphertext or tag has the wrong length".into(),
        ));
    }
    let iterations = u32::try_from(iterations).unwrap_or(u32::MAX);
    for kdf in [Kdf::Standard, Kdf::Go115] {
        let kek = derive(passphrase, &salt, iterations, kdf);
        let Ok(aes) = AesKey::new_decrypt(kek.as_ref()) else {
            continue;
        };
        let mut cek = Zeroizing::new([0u8; 32]);
        if !matches!(unwrap_key(&aes, None, cek.as_mut(), &ek), Ok(32)) {
            continue;
        }
        if let Ok(plain) = decrypt_aead(
            Cipher::aes_256_gcm(),
            cek.as_ref(),
            Some(&iv),
            header_b64.as_bytes(),
            &ct,
            &tag,
        ) {
            return Ok((Zeroizing::new(plain), kdf));
        }
    }
    Err(NotaryJweError::WrongPassphrase)
}

/// Writes `plaintext` as notary-signer writes it (8,192 iterations, 12-byte salt) with the
/// chosen derivation: what tests and migration rehearsals need to make a notary-signer
/// database; Seal never stores keys this way.
pub fn encrypt(plaintext: &[u8], passphrase: &[u8], kdf: Kdf) -> Result<String, NotaryJweError> {
    let enc = |e: &dyn std::fmt::Display| NotaryJweError::Malformed(format!("encrypting: {e}"));
    let mut rng = rand::rngs::OsRng;
    let mut salt = [0u8; 12];
    rng.fill_bytes(&mut salt);
    let b = |bytes: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
    let header = format!(
        r#"{{"alg":"{ALG}","enc":"{ENC}","p2c":{NOTARY_ITERATIONS},"p2s":"{}"}}"#,
        b(&salt)
    );
    let header_b64 = b(header.as_bytes());
    let kek = derive(passphrase, &salt, NOTARY_ITERATIONS, kdf);
    let mut cek = Zeroizing::new([0u8; 32]);
    rng.fill_bytes(cek.as_mut());
    let aes = AesKey::new_encrypt(kek.as_ref()).map_err(|_| enc(&"AES key"))?;
    let mut ek = [0u8; 40];
    wrap_key(&aes, None, &mut ek, cek.as_ref()).map_err(|_| enc(&"key wrap"))?;
    let mut iv = [0u8; 12];
    rng.fill_bytes(&mut iv);
    let mut tag = [0u8; 16];
    let ct = encrypt_aead(
        Cipher::aes_256_gcm(),
        cek.as_ref(),
        Some(&iv),
        header_b64.as_bytes(),
        plaintext,
        &mut tag,
    )
    .map_err(|e| enc(&e))?;
    Ok(format!("{header_b64}.{}.{}.{}.{}", b(&ek), b(&iv), b(&ct), b(&tag)))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 6070-style check of the standard derivation against an independent PBKDF2: the
    /// test vector of RFC 7914 §11 (PBKDF2-HMAC-SHA256, "passwd"/"salt", 1 iteration).
    #[test]
    fn the_standard_derivation_is_pbkdf2() {
        let mut out = [0u8; 64];
        pbkdf2::pbkdf2_hmac::<Sha256>(b"passwd", b"salt", 1, &mut out);
        assert_eq!(hex::encode(&out[..16]), "55ac046e56e3089fec1691c22544b605");
    }

    #[test]
    fn the_go115_derivation_differs_only_in_its_first_block_start() {
        // With one iteration the result is U_1 alone; check it against the formula computed
        // with a plain HMAC whose "inner" pad is the outer one.
        let salt = b"0123456789ab";
        let k = derive(b"pw", salt, 1, Kdf::Go115);
        let mut key = [0u8; 64];
        key[..2].copy_from_slice(b"pw");
        let opad: Vec<u8> = key.iter().map(|b| b ^ 0x5c).collect();
        let mut full_salt = ALG.as_bytes().to_vec();
        full_salt.push(0);
        full_salt.extend_from_slice(salt);
        let inner = Sha256::new()
            .chain_update(&opad)
            .chain_update(&full_salt)
            .chain_update([0, 0, 0, 1])
            .finalize();
        let u1 = Sha256::new().chain_update(&opad).chain_update(inner).finalize();
        assert_eq!(k.as_ref(), &u1[..16]);
        assert_ne!(derive(b"pw", salt, 1, Kdf::Standard), k);
        // Later iterations are standard HMACs: the two derivations keep differing.
        assert_ne!(
            derive(b"pw", salt, 8192, Kdf::Standard),
            derive(b"pw", salt, 8192, Kdf::Go115)
        );
    }

    #[test]
    fn both_derivations_round_trip_and_are_named() {
        for kdf in [Kdf::Standard, Kdf::Go115] {
            let jwe = encrypt(b"secret key bytes", b"alias passphrase", kdf).unwrap();
            let (plain, used) = decrypt(&jwe, b"alias passphrase").unwrap();
            assert_eq!((&plain[..], used), (&b"secret key bytes"[..], kdf));
            assert_eq!(decrypt(&jwe, b"wrong"), Err(NotaryJweError::WrongPassphrase));
        }
    }

    #[test]
    fn a_standard_notary_jwe_opens_with_an_independent_jose_library() {
        // josekit (OpenSSL) implements RFC 7518's PBES2: it must read what `encrypt` writes
        // with the standard derivation, and must not read the Go 1.15 variant.
        let decrypter = josekit::jwe::PBES2_HS256_A128KW.decrypter_from_bytes(b"pw").unwrap();
        let jwe = encrypt(b"payload", b"pw", Kdf::Standard).unwrap();
        let (payload, _) = josekit::jwe::deserialize_compact(&jwe, &decrypter).unwrap();
        assert_eq!(payload, b"payload");
        let broken = encrypt(b"payload", b"pw", Kdf::Go115).unwrap();
        assert!(josekit::jwe::deserialize_compact(&broken, &decrypter).is_err());
    }

    #[test]
    fn truncated_and_foreign_jwes_are_malformed() {
        let jwe = encrypt(b"payload", b"pw", Kdf::Standard).unwrap();
        let truncated = &jwe[..jwe.len() - 10];
        assert!(matches!(decrypt(truncated, b"pw"), Err(NotaryJweError::Malformed(_))));
        let four: String = jwe.rsplit_once('.').unwrap().0.to_owned();
        assert!(matches!(decrypt(&four, b"pw"), Err(NotaryJweError::Malformed(_))));
        assert!(matches!(decrypt("", b"pw"), Err(NotaryJweError::Malformed(_))));
    }
}
