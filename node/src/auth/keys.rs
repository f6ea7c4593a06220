//! Token signing keys: their kinds (from a certificate's key), the josekit
//! verifier for an algorithm, Docker's libtrust key IDs, and the Ed25519 key
//! encoding josekit signs with (shared with the development token server).

use josekit::jws::JwsVerifier;
use rustls::pki_types::pem::PemObject;
use sha2::Digest as _;

use super::TokenError;

/// The type of a token signing key, from its certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyKind {
    /// ECDSA over P-256: `ES256`.
    EcdsaP256,
    /// ECDSA over P-384: `ES384`.
    EcdsaP384,
    /// RSA: `RS256`, `RS384`, `RS512`, `PS256`, `PS384`, `PS512`.
    Rsa,
    /// Ed25519: `EdDSA`.
    Ed25519,
}

const OID_EC_PUBLIC_KEY: &str = "1.2.840.10045.2.1";
const OID_P256: &str = "1.2.840.10045.3.1.7";
const OID_P384: &str = "1.3.132.0.34";
const OID_RSA: &str = "1.2.840.113549.1.1.1";
const OID_ED25519: &str = "1.3.101.112";

impl KeyKind {
    /// The kind of the key in a `SubjectPublicKeyInfo`.
    pub fn of_spki(spki: &x509_cert::spki::SubjectPublicKeyInfoOwned) -> Result<KeyKind, TokenError> {
        let unsupported = |reason: String| TokenError::UnsupportedKey { reason };
        match spki.algorithm.oid.to_string().as_str() {
            OID_RSA => Ok(KeyKind::Rsa),
            OID_ED25519 => Ok(KeyKind::Ed25519),
            OID_EC_PUBLIC_KEY => {
                let curve = spki
                    .algorithm
                    .parameters
                    .as_ref()
                    .and_then(|p| p.decode_as::<x509_cert::der::asn1::ObjectIdentifier>().ok())
                    .ok_or_else(|| unsupported("EC key without a named curve".into()))?;
                match curve.to_string().as_str() {
                    OID_P256 => Ok(KeyKind::EcdsaP256),
                    OID_P384 => Ok(KeyKind::EcdsaP384),
                    other => Err(unsupported(format!("EC curve {other}"))),
                }
            }
            other => Err(unsupported(format!("key algorithm {other}"))),
        }
    }

    /// Whether a token of algorithm `alg` may be signed with this kind of key.
    pub fn allows(self, alg: &str) -> bool {
        match self {
            KeyKind::EcdsaP256 => alg == "ES256",
            KeyKind::EcdsaP384 => alg == "ES384",
            KeyKind::Rsa => matches!(alg, "RS256" | "RS384" | "RS512" | "PS256" | "PS384" | "PS512"),
            KeyKind::Ed25519 => alg == "EdDSA",
        }
    }

    /// The algorithm Seal's token server signs with for this kind of key.
    pub fn signing_algorithm(self) -> &'static str {
        match self {
            KeyKind::EcdsaP256 => "ES256",
            KeyKind::EcdsaP384 => "ES384",
            KeyKind::Rsa => "RS256",
            KeyKind::Ed25519 => "EdDSA",
        }
    }
}

impl std::fmt::Display for KeyKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            KeyKind::EcdsaP256 => "ECDSA P-256",
            KeyKind::EcdsaP384 => "ECDSA P-384",
            KeyKind::Rsa => "RSA",
            KeyKind::Ed25519 => "Ed25519",
        })
    }
}

/// A josekit verifier of `alg` for the key in `spki_der`.
pub fn verifier_for(alg: &str, spki_der: &[u8]) -> Result<Box<dyn JwsVerifier>, TokenError> {
    use josekit::jws::{EdDSA, ES256, ES384, PS256, PS384, PS512, RS256, RS384, RS512};
    let v: Result<Box<dyn JwsVerifier>, josekit::JoseError> = match alg {
        "ES256" => ES256.verifier_from_der(spki_der).map(|v| Box::new(v) as _),
        "ES384" => ES384.verifier_from_der(spki_der).map(|v| Box::new(v) as _),
        "RS256" => RS256.verifier_from_der(spki_der).map(|v| Box::new(v) as _),
        "RS384" => RS384.verifier_from_der(spki_der).map(|v| Box::new(v) as _),
        "RS512" => RS512.verifier_from_der(spki_der).map(|v| Box::new(v) as _),
        "PS256" => PS256.verifier_from_der(spki_der).map(|v| Box::new(v) as _),
        "PS384" => PS384.verifier_from_der(spki_der).map(|v| Box::new(v) as _),
        "PS512" => PS512.verifier_from_der(spki_der).map(|v| Box::new(v) as _),
        "EdDSA" => EdDSA.verifier_from_der(spki_der).map(|v| Box::new(v) as _),
        other => return Err(TokenError::UnsupportedAlgorithm { alg: other.into() }),
    };
    v.map_err(|e| TokenError::UnsupportedKey { reason: e.to_string() })
}

/// Docker's libtrust key id of a public key: the first 240 bits of the
/// SHA-256 of its DER `SubjectPublicKeyInfo`, in base32, in groups of four
/// characters joined by `:`.
pub fn libtrust_key_id(spki_der: &[u8]) -> String {
    const ALPHABET: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let digest = sha2::Sha256::digest(spki_der);
    // 30 bytes = 240 bits = 48 base32 characters, no padding.
    let mut chars = Vec::with_capacity(48);
    for chunk in digest[..30].chunks(5) {
        let mut n: u64 = 0;
        for b in chunk {
            n = (n << 8) | u64::from(*b);
        }
        for i in (0..8).rev() {
            chars.push(ALPHABET[((n >> (i * 5)) & 31) as usize]);
        }
    }
    chars
        .chunks(4)
        .map(|c| String::from_utf8_lossy(c).into_owned())
        .collect::<Vec<_>>()
        .join(":")
}

/// An Ed25519 private key in PEM (PKCS#8 version 1 or 2) re-encoded as
/// version-1 PKCS#8 DER (RFC 8410), the form josekit reads; `None` when
/// the PEM is not an Ed25519 PKCS#8 key.
pub fn ed25519_pkcs8_v1(key_pem: &[u8]) -> Option<zeroize::Zeroizing<Vec<u8>>> {
    use ed25519_dalek::pkcs8::DecodePrivateKey as _;
    use rustls::pki_types::PrivatePkcs8KeyDer;
    /// `SEQUENCE { INTEGER 0, SEQUENCE { OID 1.3.101.112 }, OCTET STRING { OCTET STRING (32) } }`.
    const PREFIX: [u8; 16] = [
        0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20,
    ];
    let der = PrivatePkcs8KeyDer::from_pem_slice(key_pem).ok()?;
    let key = ed25519_dalek::SigningKey::from_pkcs8_der(der.secret_pkcs8_der()).ok()?;
    let mut out = zeroize::Zeroizing::new(Vec::with_capacity(48));
    out.extend_from_slice(&PREFIX);
    out.extend_from_slice(key.as_bytes());
    Some(out)
}
