//! The DER inside the PEM: PKCS#8 private keys in Notary's dialect, and
//! their PBES2 encryption (RFC 8018).
//!
//! Notary's dialect differs from the RFCs in two places:
//!
//! * **Ed25519.** Notary (tuf/utils/pkcs8.go) writes ed25519 keys under its
//!   own OID 1.3.6.1.4.1.11591.15.1 (not RFC 8410's 1.3.101.112), with no
//!   algorithm parameters, and the PKCS#8 `privateKey` OCTET STRING holds
//!   Notary's 96-byte serialization `public(32) ‖ seed(32) ‖ public(32)`
//!   (`public ‖` Go's `ed25519.PrivateKey`), not RFC 8410's nested OCTET
//!   STRING with the 32-byte seed. Notary's reader refuses RFC 8410 ed25519
//!   keys ("unsupported key type"), so Seal writes Notary's form and reads
//!   both.
//! * **ECDSA.** Notary writes PKCS#8 version 1 with no public key, which
//!   RFC 5958 (and the `pkcs8` crate) reject; this reader accepts version 0
//!   and 1 with or without the public key. Seal writes the standard version 0
//!   form with the SEC1 key inside, which Go's `x509.ParsePKCS8PrivateKey`
//!   (Notary's reader) and OpenSSL both read.
//!
//! Encryption is PBES2 with PBKDF2-HMAC-SHA1 and AES-256-CBC, the only
//! combination Notary's reader handles: it ignores any PRF field and always
//! derives with HMAC-SHA1, so Seal writes no PRF field (DER's default is
//! HMAC-SHA1). Reading accepts any PBKDF2 PRF of the SHA family and any
//! AES-CBC key size, as OpenSSL writes them.

use pkcs5::pbes2;
use pkcs8::der::asn1::{AnyRef, ObjectIdentifier, OctetStringRef};
use pkcs8::der::{Decode, Encode, Reader, SliceReader, Tag, TagMode, TagNumber, Tagged};
use pkcs8::AlgorithmIdentifierRef;
use rand::RngCore;
use seal_tuf::PrivateKey;
use zeroize::Zeroizing;

/// Notary's private OID for ed25519 keys in PKCS#8.
const NOTARY_ED25519_OID: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.4.1.11591.15.1");
/// RFC 8410 id-Ed25519.
const ED25519_OID: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.101.112");
/// id-ecPublicKey.
const EC_PUBLIC_KEY_OID: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.2.1");
/// prime256v1 / secp256r1.
const P256_OID: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.3.1.7");
/// rsaEncryption.
const RSA_OID: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.1");

/// `SEQUENCE { INTEGER 0, SEQUENCE { OID 1.3.6.1.4.1.11591.15.1 }, OCTET STRING (96 bytes) }`
/// up to the 96 bytes: exactly what Go's `asn1.Marshal` gives for Notary's
/// `privateKeyInfo` of an ed25519 key.
const NOTARY_ED25519_PREFIX: [u8; 20] = [
    0x30, 0x72, 0x02, 0x01, 0x00, 0x30, 0x0b, 0x06, 0x09, 0x2b, 0x06, 0x01, 0x04, 0x01, 0xda, 0x47, 0x0f, 0x01, 0x04,
    0x60,
];
/// RFC 8410 PKCS#8 v1 of an Ed25519 key up to the 32-byte seed.
const RFC8410_ED25519_PREFIX: [u8; 16] = [
    0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20,
];

/// Length of the random PBKDF2 salt Seal writes (Notary writes 8 bytes;
/// RFC 8018 asks for at least 8; NIST SP 800-132 for at least 16).
pub(super) const SALT_LEN: usize = 16;
/// The highest PBKDF2 iteration count accepted when reading: a file asking
/// for more is treated as malformed rather than left to spin the CPU.
pub(super) const MAX_READ_ITERATIONS: u32 = 10_000_000;
const AES_BLOCK: usize = 16;

/// Why a private key DER could not be read.
#[derive(Debug)]
pub(super) enum KeyDerError {
    /// Not the expected ASN.1 structure at all (after decryption: the sign
    /// of a wrong passphrase).
    Structure(String),
    /// A well-formed key of a kind Seal does not sign with.
    Unsupported(String),
    /// A recognised kind, but the key itself is invalid.
    Invalid(String),
}

/// Why an `EncryptedPrivateKeyInfo` could not be decrypted.
#[derive(Debug)]
pub(super) enum DecryptError {
    /// Not a well-formed `EncryptedPrivateKeyInfo`, or absurd parameters.
    Malformed(String),
    /// A scheme other than PBES2 with PBKDF2 and AES-CBC.
    Unsupported(String),
    /// The padding did not check out: wrong passphrase (or a damaged file).
    WrongPassphrase,
}

/// The key as the PKCS#8 DER Notary writes and reads (see the module docs).
pub(super) fn private_key_to_der(key: &PrivateKey) -> Result<Zeroizing<Vec<u8>>, String> {
    match key {
        PrivateKey::Ecdsa(_) => key.to_pkcs8_der().map_err(|e| e.to_string()),
        PrivateKey::Ed25519(k) => {
            let seed = Zeroizing::new(k.to_bytes());
            let public = k.verifying_key().to_bytes();
            let mut der = Zeroizing::new(Vec::with_capacity(NOTARY_ED25519_PREFIX.len() + 96));
            der.extend_from_slice(&NOTARY_ED25519_PREFIX);
            der.extend_from_slice(&public);
            der.extend_from_slice(seed.as_slice());
            der.extend_from_slice(&public);
            Ok(der)
        }
    }
}

/// The fields of a PKCS#8 `PrivateKeyInfo` / `OneAsymmetricKey` that matter.
struct Pkcs8Fields<'a> {
    algorithm: AlgorithmIdentifierRef<'a>,
    private_key: &'a [u8],
    public_key: Option<&'a [u8]>,
}

fn parse_pkcs8(der: &[u8]) -> pkcs8::der::Result<Pkcs8Fields<'_>> {
    let mut reader = SliceReader::new(der)?;
    let fields = reader.sequence(|r| {
        let version = u8::decode(r)?;
        if version > 1 {
            return Err(Tag::Integer.value_error());
        }
        let algorithm = AlgorithmIdentifierRef::decode(r)?;
        let private_key = OctetStringRef::decode(r)?.as_bytes();
        let mut public_key = None;
        // [0] attributes and [1] publicKey (RFC 5958), in any version.
        while !r.is_finished() {
            let field = AnyRef::decode(r)?;
            let is_public_key = field.tag()
                == Tag::ContextSpecific {
                    constructed: false,
                    number: TagNumber::N1,
                };
            if is_public_key {
                match field.value().split_first() {
                    Some((0, bits)) => public_key = Some(bits),
                    _ => return Err(Tag::BitString.value_error()),
                }
            }
        }
        Ok(Pkcs8Fields {
            algorithm,
            private_key,
            public_key,
        })
    })?;
    reader.finish(fields)
}

/// Reads an unencrypted PKCS#8 private key: ECDSA P-256, Ed25519 in
/// Notary's form or RFC 8410's.
pub(super) fn key_from_pkcs8(der: &[u8]) -> Result<PrivateKey, KeyDerError> {
    let fields = parse_pkcs8(der).map_err(|e| KeyDerError::Structure(format!("not a PKCS#8 private key: {e}")))?;
    let oid = fields.algorithm.oid;
    if oid == EC_PUBLIC_KEY_OID {
        if let Some(params) = fields.algorithm.parameters {
            let curve = params
                .decode_as::<ObjectIdentifier>()
                .map_err(|_| KeyDerError::Unsupported("EC key with explicit curve parameters".into()))?;
            if curve != P256_OID {
                return Err(unsupported_curve(curve));
            }
        }
        key_from_sec1(fields.private_key)
    } else if oid == NOTARY_ED25519_OID {
        key_from_notary_ed25519(fields.private_key)
    } else if oid == ED25519_OID {
        let seed = OctetStringRef::from_der(fields.private_key)
            .map_err(|e| KeyDerError::Invalid(format!("ed25519 private key: {e}")))?;
        let seed: &[u8; 32] = seed
            .as_bytes()
            .try_into()
            .map_err(|_| KeyDerError::Invalid("ed25519 private key is not 32 bytes".into()))?;
        let key = ed25519_from_seed(seed)?;
        if let Some(public) = fields.public_key {
            if key.public_key().public_bytes() != public {
                return Err(KeyDerError::Invalid(
                    "ed25519 private key does not match its public key".into(),
                ));
            }
        }
        Ok(key)
    } else if oid == RSA_OID {
        Err(rsa_unsupported())
    } else {
        Err(KeyDerError::Unsupported(format!("private key algorithm {oid}")))
    }
}

/// Reads a SEC1 `ECPrivateKey` (PEM `EC PRIVATE KEY`, as `openssl ecparam
/// -genkey` writes): P-256 only.
pub(super) fn key_from_sec1(der: &[u8]) -> Result<PrivateKey, KeyDerError> {
    if let Some(curve) = sec1_curve(der) {
        if curve != P256_OID {
            return Err(unsupported_curve(curve));
        }
    }
    let secret = p256::SecretKey::from_sec1_der(der)
        .map_err(|e| KeyDerError::Invalid(format!("not a valid P-256 EC private key: {e}")))?;
    Ok(PrivateKey::Ecdsa(p256::ecdsa::SigningKey::from(&secret)))
}

/// Reads Notary's 96-byte ed25519 private bytes `public ‖ seed ‖ public`
/// (PEM `ED25519 PRIVATE KEY` in Notary's legacy files, and the inside of
/// its PKCS#8), checking both copies of the public key.
pub(super) fn key_from_notary_ed25519(bytes: &[u8]) -> Result<PrivateKey, KeyDerError> {
    if bytes.len() != 96 {
        return Err(KeyDerError::Invalid(format!(
            "Notary ed25519 private key is {} bytes, not 96",
            bytes.len()
        )));
    }
    let seed: &[u8; 32] = bytes[32..64]
        .try_into()
        .map_err(|_| KeyDerError::Invalid("ed25519 seed".into()))?;
    let key = ed25519_from_seed(seed)?;
    let public = key.public_key();
    if public.public_bytes() != &bytes[..32] || public.public_bytes() != &bytes[64..] {
        return Err(KeyDerError::Invalid(
            "ed25519 private key does not match its public key".into(),
        ));
    }
    Ok(key)
}

/// Builds the key through seal-tuf's RFC 8410 reader, so this crate needs
/// no direct ed25519 dependency.
fn ed25519_from_seed(seed: &[u8; 32]) -> Result<PrivateKey, KeyDerError> {
    let mut der = Zeroizing::new(Vec::with_capacity(RFC8410_ED25519_PREFIX.len() + 32));
    der.extend_from_slice(&RFC8410_ED25519_PREFIX);
    der.extend_from_slice(seed);
    match PrivateKey::from_pkcs8_der(&der) {
        Ok(key @ PrivateKey::Ed25519(_)) => Ok(key),
        _ => Err(KeyDerError::Invalid("invalid ed25519 private key".into())),
    }
}

/// The named curve in a SEC1 `ECPrivateKey`'s `[0] parameters`, if any.
fn sec1_curve(der: &[u8]) -> Option<ObjectIdentifier> {
    let mut reader = SliceReader::new(der).ok()?;
    reader
        .sequence(|r| {
            let _version = u8::decode(r)?;
            let _key = OctetStringRef::decode(r)?;
            let curve = r.context_specific::<ObjectIdentifier>(TagNumber::N0, TagMode::Explicit)?;
            while !r.is_finished() {
                AnyRef::decode(r)?;
            }
            Ok(curve)
        })
        .ok()
        .flatten()
}

fn unsupported_curve(curve: ObjectIdentifier) -> KeyDerError {
    let name = match curve.to_string().as_str() {
        "1.3.132.0.33" => "P-224".to_owned(),
        "1.3.132.0.34" => "P-384".to_owned(),
        "1.3.132.0.35" => "P-521".to_owned(),
        "1.3.132.0.10" => "secp256k1".to_owned(),
        other => other.to_owned(),
    };
    KeyDerError::Unsupported(format!(
        "EC keys on curve {name} (Seal signs with ECDSA P-256 or Ed25519 keys)"
    ))
}

pub(super) fn rsa_unsupported() -> KeyDerError {
    KeyDerError::Unsupported("RSA private keys (Seal signs with ECDSA P-256 or Ed25519 keys)".into())
}

/// PBES2 parameters as Notary reads them: PBKDF2 with no PRF field
/// (HMAC-SHA1), then AES-256-CBC.
pub(super) fn notary_params<'a>(salt: &'a [u8], iv: &'a [u8; AES_BLOCK], iterations: u32) -> pbes2::Parameters<'a> {
    pbes2::Parameters {
        kdf: pbes2::Kdf::Pbkdf2(pbes2::Pbkdf2Params {
            salt,
            iteration_count: iterations,
            key_length: None,
            prf: pbes2::Pbkdf2Prf::HmacWithSha1,
        }),
        encryption: pbes2::EncryptionScheme::Aes256Cbc { iv },
    }
}

/// Encrypts PKCS#8 DER into an `EncryptedPrivateKeyInfo` DER: PBES2,
/// PBKDF2-HMAC-SHA1 (no PRF field) with a random salt of [`SALT_LEN`]
/// bytes, AES-256-CBC with a random IV.
pub(super) fn encrypt(plain: &[u8], passphrase: &[u8], iterations: u32) -> Result<Vec<u8>, String> {
    let mut salt = [0u8; SALT_LEN];
    let mut iv = [0u8; AES_BLOCK];
    rand::rngs::OsRng.fill_bytes(&mut salt);
    rand::rngs::OsRng.fill_bytes(&mut iv);
    let params = notary_params(&salt, &iv, iterations);
    let mut buf = Zeroizing::new(Vec::with_capacity(plain.len() + AES_BLOCK));
    buf.extend_from_slice(plain);
    buf.resize(plain.len() + AES_BLOCK, 0);
    let ciphertext = params
        .encrypt_in_place(passphrase, &mut buf, plain.len())
        .map_err(|e| e.to_string())?
        .to_vec();
    pkcs8::EncryptedPrivateKeyInfo {
        encryption_algorithm: pkcs5::EncryptionScheme::Pbes2(params),
        encrypted_data: &ciphertext,
    }
    .to_der()
    .map_err(|e| e.to_string())
}

/// Decrypts an `EncryptedPrivateKeyInfo` DER into the PKCS#8 DER it holds.
pub(super) fn decrypt(der: &[u8], passphrase: &[u8]) -> Result<Zeroizing<Vec<u8>>, DecryptError> {
    let info = pkcs8::EncryptedPrivateKeyInfo::try_from(der)
        .map_err(|e| DecryptError::Malformed(format!("not a PKCS#8 EncryptedPrivateKeyInfo: {e}")))?;
    let params = match &info.encryption_algorithm {
        pkcs5::EncryptionScheme::Pbes2(params) => params,
        other => {
            return Err(DecryptError::Unsupported(format!(
                "encryption scheme {} (only PBES2 is supported)",
                other.oid()
            )))
        }
    };
    match &params.kdf {
        pbes2::Kdf::Pbkdf2(kdf) => {
            if kdf.iteration_count == 0 || kdf.iteration_count > MAX_READ_ITERATIONS {
                return Err(DecryptError::Malformed(format!(
                    "PBKDF2 iteration count {} is outside 1..={MAX_READ_ITERATIONS}",
                    kdf.iteration_count
                )));
            }
            match kdf.prf {
                pbes2::Pbkdf2Prf::HmacWithSha1
                | pbes2::Pbkdf2Prf::HmacWithSha224
                | pbes2::Pbkdf2Prf::HmacWithSha256
                | pbes2::Pbkdf2Prf::HmacWithSha384
                | pbes2::Pbkdf2Prf::HmacWithSha512 => {}
                other => {
                    return Err(DecryptError::Unsupported(format!("PBKDF2 PRF {}", other.oid())));
                }
            }
        }
        other => {
            return Err(DecryptError::Unsupported(format!(
                "key derivation {} (only PBKDF2 is supported)",
                other.oid()
            )))
        }
    }
    match params.encryption {
        pbes2::EncryptionScheme::Aes128Cbc { .. }
        | pbes2::EncryptionScheme::Aes192Cbc { .. }
        | pbes2::EncryptionScheme::Aes256Cbc { .. } => {}
        other => {
            return Err(DecryptError::Unsupported(format!(
                "cipher {} (only AES-CBC is supported)",
                other.oid()
            )))
        }
    }
    let ciphertext = info.encrypted_data;
    if ciphertext.is_empty() || ciphertext.len() % AES_BLOCK != 0 {
        return Err(DecryptError::Malformed(format!(
            "encrypted data is {} bytes, not a positive multiple of {AES_BLOCK}",
            ciphertext.len()
        )));
    }
    let mut buf = Zeroizing::new(ciphertext.to_vec());
    let len = match params.decrypt_in_place(passphrase, &mut buf) {
        Ok(plain) => plain.len(),
        Err(pkcs5::Error::DecryptFailed | pkcs5::Error::EncryptFailed) => return Err(DecryptError::WrongPassphrase),
        Err(e) => return Err(DecryptError::Malformed(e.to_string())),
    };
    buf.truncate(len);
    Ok(buf)
}

/// Test helpers: inspect what was written.
#[cfg(test)]
pub(super) fn pbkdf2_params_of(der: &[u8]) -> (usize, u32, bool) {
    let info = pkcs8::EncryptedPrivateKeyInfo::try_from(der).unwrap();
    let pkcs5::EncryptionScheme::Pbes2(params) = info.encryption_algorithm else {
        panic!("not PBES2")
    };
    let pbes2::Kdf::Pbkdf2(kdf) = params.kdf else {
        panic!("not PBKDF2")
    };
    assert!(matches!(params.encryption, pbes2::EncryptionScheme::Aes256Cbc { .. }));
    (
        kdf.salt.len(),
        kdf.iteration_count,
        kdf.prf == pbes2::Pbkdf2Prf::HmacWithSha1,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ed25519_is_written_in_notarys_form_and_read_back() {
        let key = PrivateKey::generate_ed25519(&mut rand::rngs::OsRng);
        let der = private_key_to_der(&key).unwrap();
        assert_eq!(der.len(), 116);
        assert_eq!(&der[..20], &NOTARY_ED25519_PREFIX);
        let public = key.public_key();
        assert_eq!(&der[20..52], public.public_bytes());
        assert_eq!(&der[84..116], public.public_bytes());
        // The prefix is what a DER encoder makes of Notary's structure.
        let fields = parse_pkcs8(&der).unwrap();
        assert_eq!(fields.algorithm.oid, NOTARY_ED25519_OID);
        assert!(fields.algorithm.parameters.is_none());
        assert_eq!(fields.private_key.len(), 96);
        let back = key_from_pkcs8(&der).unwrap();
        assert_eq!(back.public_key(), public);
        // A damaged public half is caught.
        let mut bad = der.to_vec();
        bad[100] ^= 1;
        assert!(matches!(key_from_pkcs8(&bad), Err(KeyDerError::Invalid(_))));
    }

    #[test]
    fn rfc8410_ed25519_and_pkcs8_v2_are_read() {
        let key = PrivateKey::generate_ed25519(&mut rand::rngs::OsRng);
        // seal-tuf (ed25519-dalek) writes RFC 8410 v2 with the public key.
        let rfc = key.to_pkcs8_der().unwrap();
        assert_eq!(key_from_pkcs8(&rfc).unwrap().public_key(), key.public_key());
    }

    #[test]
    fn notarys_ecdsa_pkcs8_version_1_without_public_key_is_read() {
        let key = PrivateKey::generate_ecdsa(&mut rand::rngs::OsRng);
        let mut der = key.to_pkcs8_der().unwrap().to_vec();
        // INTEGER 0 → INTEGER 1, as Notary's convertTUFKeyToPKCS8 writes.
        let at = der.windows(3).position(|w| w == [0x02, 0x01, 0x00]).unwrap();
        der[at + 2] = 1;
        assert!(
            PrivateKey::from_pkcs8_der(&der).is_err(),
            "the pkcs8 crate refuses this"
        );
        assert_eq!(key_from_pkcs8(&der).unwrap().public_key(), key.public_key());
    }

    #[test]
    fn encrypt_decrypt_and_parameters() {
        let key = PrivateKey::generate_ecdsa(&mut rand::rngs::OsRng);
        let plain = private_key_to_der(&key).unwrap();
        let der = encrypt(&plain, b"passphrase", 1000).unwrap();
        assert_eq!(pbkdf2_params_of(&der), (SALT_LEN, 1000, true));
        assert_eq!(decrypt(&der, b"passphrase").unwrap().as_slice(), plain.as_slice());
        // A wrong passphrase fails the padding check (or, 1 in ~256, yields
        // garbage that is no PKCS#8).
        match decrypt(&der, b"wrong") {
            Err(DecryptError::WrongPassphrase) => {}
            Ok(garbage) => assert!(matches!(key_from_pkcs8(&garbage), Err(KeyDerError::Structure(_)))),
            Err(other) => panic!("{other:?}"),
        }
    }

    /// An `EncryptedPrivateKeyInfo` with these PBKDF2 iterations over one
    /// dummy block (no key derivation is run to build it).
    fn with_iterations(iterations: u32) -> Vec<u8> {
        let (salt, iv, block) = ([1u8; 16], [2u8; 16], [3u8; 16]);
        let params = notary_params(&salt, &iv, iterations);
        pkcs8::EncryptedPrivateKeyInfo {
            encryption_algorithm: params.into(),
            encrypted_data: &block,
        }
        .to_der()
        .unwrap()
    }

    #[test]
    fn absurd_iteration_counts_are_malformed() {
        for iterations in [0, MAX_READ_ITERATIONS + 1, u32::MAX] {
            let der = with_iterations(iterations);
            assert!(
                matches!(decrypt(&der, b"pw"), Err(DecryptError::Malformed(m)) if m.contains("iteration")),
                "{iterations}"
            );
        }
        // Within the cap, the count is honoured (the dummy block then fails
        // as a wrong passphrase would).
        assert!(matches!(
            decrypt(&with_iterations(1), b"pw"),
            Err(DecryptError::WrongPassphrase)
        ));
    }

    #[test]
    fn sha256_prf_and_aes128_are_read() {
        let salt = [7u8; 16];
        let iv = [9u8; 16];
        let params = pbes2::Parameters::pbkdf2_sha256_aes128cbc(1000, &salt, &iv).unwrap();
        let ct = params.encrypt(b"pw", b"hello world").unwrap();
        let der = pkcs8::EncryptedPrivateKeyInfo {
            encryption_algorithm: params.into(),
            encrypted_data: &ct,
        }
        .to_der()
        .unwrap();
        assert_eq!(decrypt(&der, b"pw").unwrap().as_slice(), b"hello world");
    }

    #[test]
    fn other_key_kinds_are_unsupported() {
        assert!(matches!(
            key_from_pkcs8(b"\x30\x03\x02\x01\x00"),
            Err(KeyDerError::Structure(_))
        ));
        // PKCS#8 header of an RSA key with a dummy body.
        let rsa = [
            0x30, 0x13, 0x02, 0x01, 0x00, 0x30, 0x0d, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01,
            0x05, 0x00, 0x04, 0x00,
        ];
        let mut rsa = rsa.to_vec();
        rsa[1] = (rsa.len() - 2) as u8;
        assert!(matches!(key_from_pkcs8(&rsa), Err(KeyDerError::Unsupported(m)) if m.contains("RSA")));
    }
}
