//! Keys and signatures as securesystemslib writes them.
//!
//! | keytype | scheme | `keyval.public` | signature (`sig`, hex) |
//! |---|---|---|---|
//! | `ed25519` | `ed25519` | 32 bytes, hex | 64 bytes |
//! | `ecdsa` (or the old `ecdsa-sha2-nistp256`) | `ecdsa-sha2-nistp256` | PEM SubjectPublicKeyInfo | DER `ECDSA-Sig-Value` over SHA-256 |
//! | `ecdsa` (or `ecdsa-sha2-nistp384`) | `ecdsa-sha2-nistp384` | PEM SubjectPublicKeyInfo | DER over SHA-384 (verification only) |
//! | `rsa` | `rsassa-pss-sha256` | PEM SubjectPublicKeyInfo | RSA-PSS, MGF1-SHA-256, any salt length (securesystemslib signs with 32 bytes) |
//! | `rsa` | `rsa-pkcs1v15-sha256` | PEM SubjectPublicKeyInfo | PKCS#1 v1.5 over SHA-256 |
//!
//! The algorithm is chosen by the key's (keytype, scheme) pair, never by
//! anything in the signature. A key whose pair is unknown, or whose public
//! part does not decode, is kept (python-tuf and the spec let a role list
//! keys a client cannot use) but never verifies anything; the repository
//! side refuses such keys in uploads ([`Key::check_usable`]).
//!
//! A key's ID is not required to be the hash of the key (python-tuf does
//! not check it either); [`default_keyid`] computes the hash securesystemslib
//! uses for the keys it makes. Thresholds count distinct key *contents*, so
//! one key listed under two IDs counts once.

use std::fmt;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use ed25519_dalek::Signer as _;
use p256::pkcs8::{DecodePublicKey, EncodePublicKey, LineEnding};
use sha2::{Digest, Sha256};

use crate::cjson::Value;
use crate::keys::PrivateKey;
use crate::tuf1::cjson::to_canonical;
use crate::tuf1::error::Error;

/// keytype of Ed25519 keys.
pub const KEYTYPE_ED25519: &str = "ed25519";
/// keytype of ECDSA keys.
pub const KEYTYPE_ECDSA: &str = "ecdsa";
/// keytype of RSA keys.
pub const KEYTYPE_RSA: &str = "rsa";
/// Scheme of Ed25519 signatures.
pub const SCHEME_ED25519: &str = "ed25519";
/// Scheme of ECDSA P-256 / SHA-256 signatures (also an old keytype name).
pub const SCHEME_ECDSA_P256: &str = "ecdsa-sha2-nistp256";
/// Scheme of ECDSA P-384 / SHA-384 signatures.
pub const SCHEME_ECDSA_P384: &str = "ecdsa-sha2-nistp384";
/// Scheme of RSA-PSS / SHA-256 signatures.
pub const SCHEME_RSA_PSS_SHA256: &str = "rsassa-pss-sha256";
/// Scheme of RSA PKCS#1 v1.5 / SHA-256 signatures.
pub const SCHEME_RSA_PKCS1V15_SHA256: &str = "rsa-pkcs1v15-sha256";

#[derive(Clone)]
enum Verifier {
    Ed25519(ed25519_dalek::VerifyingKey),
    /// The uncompressed SEC1 point of a validated P-256 key.
    EcdsaP256(Vec<u8>),
    /// The SEC1 point of a P-384 key (ring validates it when verifying).
    EcdsaP384(Vec<u8>),
    RsaPss(rsa::RsaPublicKey),
    RsaPkcs1v15(rsa::RsaPublicKey),
    /// Why this key can verify nothing.
    Unusable(String),
}

/// A public key as listed in root's or a delegation's `keys`.
#[derive(Clone)]
pub struct Key {
    keyid: String,
    keytype: String,
    scheme: String,
    public: String,
    value: Value,
    verifier: Verifier,
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Key({} {}/{})", self.keyid, self.keytype, self.scheme)
    }
}

impl PartialEq for Key {
    fn eq(&self, other: &Self) -> bool {
        self.keyid == other.keyid && self.value == other.value
    }
}
impl Eq for Key {}

/// The key ID securesystemslib computes: the hex sha256 of the canonical
/// JSON of `{"keytype","scheme","keyval":{"public"}}`.
pub fn default_keyid(keytype: &str, scheme: &str, public: &str) -> String {
    hex::encode(Sha256::digest(to_canonical(&key_value(keytype, scheme, public))))
}

fn key_value(keytype: &str, scheme: &str, public: &str) -> Value {
    Value::object([
        ("keytype", Value::str(keytype)),
        ("scheme", Value::str(scheme)),
        ("keyval", Value::object([("public", Value::str(public))])),
    ])
}

/// The DER inside a PEM `PUBLIC KEY` block.
fn pem_spki(pem: &str) -> Result<Vec<u8>, String> {
    const BEGIN: &str = "-----BEGIN PUBLIC KEY-----";
    const END: &str = "-----END PUBLIC KEY-----";
    let start = pem.find(BEGIN).ok_or("no PEM PUBLIC KEY block")? + BEGIN.len();
    let len = pem[start..].find(END).ok_or("unterminated PEM block")?;
    let body: String = pem[start..start + len]
        .chars()
        .filter(|c| !c.is_ascii_whitespace())
        .collect();
    B64.decode(body).map_err(|e| format!("PEM body is not base64: {e}"))
}

fn verifier(keytype: &str, scheme: &str, public: &str) -> Result<Verifier, String> {
    match (keytype, scheme) {
        (KEYTYPE_ED25519, SCHEME_ED25519) => {
            let bytes = hex::decode(public).map_err(|e| format!("ed25519 public key is not hex: {e}"))?;
            let bytes: [u8; 32] = bytes
                .as_slice()
                .try_into()
                .map_err(|_| "ed25519 public key is not 32 bytes".to_owned())?;
            ed25519_dalek::VerifyingKey::from_bytes(&bytes)
                .map(Verifier::Ed25519)
                .map_err(|e| format!("ed25519 public key: {e}"))
        }
        (KEYTYPE_ECDSA | SCHEME_ECDSA_P256, SCHEME_ECDSA_P256) => {
            let der = pem_spki(public)?;
            let vk = p256::ecdsa::VerifyingKey::from_public_key_der(&der)
                .map_err(|e| format!("not a P-256 SubjectPublicKeyInfo: {e}"))?;
            Ok(Verifier::EcdsaP256(vk.to_encoded_point(false).as_bytes().to_vec()))
        }
        (KEYTYPE_ECDSA | SCHEME_ECDSA_P384, SCHEME_ECDSA_P384) => {
            use x509_cert::der::Decode as _;
            // id-ecPublicKey with the secp384r1 curve.
            const EC: &str = "1.2.840.10045.2.1";
            const P384: &str = "1.3.132.0.34";
            let der = pem_spki(public)?;
            let spki = x509_cert::spki::SubjectPublicKeyInfoRef::from_der(&der)
                .map_err(|e| format!("not a SubjectPublicKeyInfo: {e}"))?;
            let curve = spki
                .algorithm
                .parameters
                .and_then(|p| p.decode_as::<x509_cert::der::asn1::ObjectIdentifier>().ok());
            if spki.algorithm.oid.to_string() != EC || curve.map(|c| c.to_string()).as_deref() != Some(P384) {
                return Err("not a P-384 SubjectPublicKeyInfo".to_owned());
            }
            let point = spki
                .subject_public_key
                .as_bytes()
                .ok_or("P-384 key is not a whole number of bytes")?;
            if point.len() != 97 || point[0] != 0x04 {
                return Err("P-384 key is not an uncompressed point".to_owned());
            }
            Ok(Verifier::EcdsaP384(point.to_vec()))
        }
        (KEYTYPE_RSA, SCHEME_RSA_PSS_SHA256 | SCHEME_RSA_PKCS1V15_SHA256) => {
            let der = pem_spki(public)?;
            let pk = rsa::RsaPublicKey::from_public_key_der(&der)
                .map_err(|e| format!("not an RSA SubjectPublicKeyInfo: {e}"))?;
            Ok(if scheme == SCHEME_RSA_PSS_SHA256 {
                Verifier::RsaPss(pk)
            } else {
                Verifier::RsaPkcs1v15(pk)
            })
        }
        _ => Err(format!("unsupported keytype/scheme {keytype}/{scheme}")),
    }
}

impl Key {
    /// Parses a key object listed under `keyid`. A wrong JSON shape is an
    /// error; an unknown type or undecodable public part gives a key that
    /// verifies nothing.
    pub fn from_value(role: &str, field: &str, keyid: &str, v: &Value) -> Result<Key, Error> {
        let string = |name: &str| {
            v.get(name)
                .and_then(Value::as_str)
                .map(str::to_owned)
                .ok_or_else(|| Error::format(role, &format!("{field}.{name}"), "missing or not a string"))
        };
        if v.as_object().is_none() {
            return Err(Error::format(role, field, "not an object"));
        }
        let keytype = string("keytype")?;
        let scheme = string("scheme")?;
        let public = v
            .get("keyval")
            .filter(|kv| kv.as_object().is_some())
            .ok_or_else(|| Error::format(role, &format!("{field}.keyval"), "missing or not an object"))?
            .get("public")
            .and_then(Value::as_str)
            .ok_or_else(|| Error::format(role, &format!("{field}.keyval.public"), "missing or not a string"))?
            .to_owned();
        let verifier = verifier(&keytype, &scheme, &public).unwrap_or_else(Verifier::Unusable);
        Ok(Key {
            keyid: keyid.to_owned(),
            keytype,
            scheme,
            public,
            value: v.clone(),
            verifier,
        })
    }

    /// A key with the given parts, under its default key ID.
    pub fn new(keytype: &str, scheme: &str, public: &str) -> Result<Key, Error> {
        let keyid = default_keyid(keytype, scheme, public);
        let verifier = verifier(keytype, scheme, public).map_err(|reason| Error::Key {
            keyid: keyid.clone(),
            reason,
        })?;
        Ok(Key {
            keyid,
            keytype: keytype.to_owned(),
            scheme: scheme.to_owned(),
            public: public.to_owned(),
            value: key_value(keytype, scheme, public),
            verifier,
        })
    }

    /// The ID the key is listed under.
    pub fn keyid(&self) -> &str {
        &self.keyid
    }

    /// `keytype`.
    pub fn keytype(&self) -> &str {
        &self.keytype
    }

    /// `scheme`.
    pub fn scheme(&self) -> &str {
        &self.scheme
    }

    /// `keyval.public`.
    pub fn public(&self) -> &str {
        &self.public
    }

    /// The key object as listed, unknown fields included.
    pub fn to_value(&self) -> &Value {
        &self.value
    }

    /// Refuses a key that can verify nothing (unknown type or scheme,
    /// malformed public part), for uploads that list keys.
    pub fn check_usable(&self) -> Result<(), Error> {
        match &self.verifier {
            Verifier::Unusable(reason) => Err(Error::Key {
                keyid: self.keyid.clone(),
                reason: reason.clone(),
            }),
            _ => Ok(()),
        }
    }

    /// What identifies the key material, whatever ID it is listed under.
    pub(crate) fn identity(&self) -> Option<Vec<u8>> {
        use rsa::pkcs8::EncodePublicKey as _;
        match &self.verifier {
            Verifier::Ed25519(k) => Some([b"ed25519:".as_slice(), k.as_bytes()].concat()),
            Verifier::EcdsaP256(p) => Some([b"p256:".as_slice(), p].concat()),
            Verifier::EcdsaP384(p) => Some([b"p384:".as_slice(), p].concat()),
            Verifier::RsaPss(k) | Verifier::RsaPkcs1v15(k) => k
                .to_public_key_der()
                .ok()
                .map(|d| [b"rsa:".as_slice(), d.as_bytes()].concat()),
            Verifier::Unusable(_) => None,
        }
    }

    /// Whether `sig` is this key's valid signature over `msg`.
    pub fn verify(&self, msg: &[u8], sig: &[u8]) -> bool {
        match &self.verifier {
            Verifier::Ed25519(vk) => ed25519_dalek::Signature::from_slice(sig)
                .map(|s| vk.verify_strict(msg, &s).is_ok())
                .unwrap_or(false),
            Verifier::EcdsaP256(point) => {
                ring::signature::UnparsedPublicKey::new(&ring::signature::ECDSA_P256_SHA256_ASN1, point)
                    .verify(msg, sig)
                    .is_ok()
            }
            Verifier::EcdsaP384(point) => {
                ring::signature::UnparsedPublicKey::new(&ring::signature::ECDSA_P384_SHA384_ASN1, point)
                    .verify(msg, sig)
                    .is_ok()
            }
            Verifier::RsaPss(pk) => pss_sha256_verify_any_salt(pk, msg, sig),
            Verifier::RsaPkcs1v15(pk) => pk
                .verify(rsa::Pkcs1v15Sign::new::<Sha256>(), &Sha256::digest(msg), sig)
                .is_ok(),
            Verifier::Unusable(_) => false,
        }
    }
}

/// RSASSA-PSS verification (RFC 8017 §9.1.2) with SHA-256 and MGF1-SHA-256
/// and the salt length read from the signature, as securesystemslib
/// verifies (`PSS.AUTO`): it signs with a 32-byte salt, other signers
/// (Go's `rsa.PSSSaltLengthAuto`) with the longest salt that fits. Salt
/// length does not affect the scheme's security; only public data is
/// handled here.
fn pss_sha256_verify_any_salt(pk: &rsa::RsaPublicKey, msg: &[u8], sig: &[u8]) -> bool {
    use rsa::traits::PublicKeyParts;
    use rsa::BigUint;
    const H_LEN: usize = 32;
    let k = pk.size();
    if sig.len() != k {
        return false;
    }
    let s = BigUint::from_bytes_be(sig);
    if &s >= pk.n() {
        return false;
    }
    let m = s.modpow(pk.e(), pk.n()).to_bytes_be();
    if m.len() > k {
        return false;
    }
    let mut em_full = vec![0u8; k - m.len()];
    em_full.extend_from_slice(&m);
    let mod_bits = pk.n().bits();
    let em_bits = mod_bits.saturating_sub(1);
    let em_len = em_bits.div_ceil(8);
    // The octets above emLen (at most one) must be zero.
    if em_full[..k - em_len].iter().any(|b| *b != 0) {
        return false;
    }
    let em = &em_full[k - em_len..];
    if em_len < H_LEN + 2 || em[em_len - 1] != 0xbc {
        return false;
    }
    let (masked_db, rest) = em.split_at(em_len - H_LEN - 1);
    let h = &rest[..H_LEN];
    let unused_bits = 8 * em_len - em_bits;
    let top_mask = 0xffu8.checked_shr(unused_bits as u32).unwrap_or(0);
    if masked_db[0] & !top_mask != 0 {
        return false;
    }
    let mut db = masked_db.to_vec();
    let mut counter: u32 = 0;
    let mut at = 0;
    while at < db.len() {
        let block = Sha256::new()
            .chain_update(h)
            .chain_update(counter.to_be_bytes())
            .finalize();
        for (d, m) in db[at..].iter_mut().zip(block.iter()) {
            *d ^= m;
        }
        at += H_LEN;
        counter += 1;
    }
    db[0] &= top_mask;
    let Some(one) = db.iter().position(|b| *b != 0) else {
        return false;
    };
    if db[one] != 0x01 {
        return false;
    }
    let salt = &db[one + 1..];
    let h2 = Sha256::new()
        .chain_update([0u8; 8])
        .chain_update(Sha256::digest(msg))
        .chain_update(salt)
        .finalize();
    h2[..] == *h
}

/// One entry of a metadata file's `signatures`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signature {
    /// The signing key's ID.
    pub keyid: String,
    /// The signature, hex as written.
    pub sig: String,
}

impl Signature {
    /// The signature as a JSON object.
    pub fn to_value(&self) -> Value {
        Value::object([("keyid", Value::str(&self.keyid)), ("sig", Value::str(&self.sig))])
    }
}

/// The DER form securesystemslib expects of an ECDSA P-256 signature given
/// as raw `r‖s` (64 bytes), as Notary's signer API returns it.
pub fn ecdsa_p256_raw_to_der(raw: &[u8]) -> Result<Vec<u8>, Error> {
    p256::ecdsa::Signature::from_slice(raw)
        .map(|s| s.to_der().as_bytes().to_vec())
        .map_err(|e| Error::Signing(format!("not a raw P-256 signature: {e}")))
}

/// A private key the service signs with (Ed25519 or ECDSA P-256), with its
/// public key in TUF 1.0 form under its default key ID.
pub struct SigningKey {
    inner: PrivateKey,
    public: Key,
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SigningKey({:?}, <secret>)", self.public)
    }
}

impl SigningKey {
    /// Wraps a private key: Ed25519 keys get scheme `ed25519`, P-256 keys
    /// `ecdsa-sha2-nistp256` with a PEM public key.
    pub fn new(inner: PrivateKey) -> Result<SigningKey, Error> {
        let public = match &inner {
            PrivateKey::Ed25519(k) => Key::new(
                KEYTYPE_ED25519,
                SCHEME_ED25519,
                &hex::encode(k.verifying_key().as_bytes()),
            )?,
            PrivateKey::Ecdsa(k) => {
                let pem = k
                    .verifying_key()
                    .to_public_key_pem(LineEnding::LF)
                    .map_err(|e| Error::Signing(format!("P-256 public key PEM: {e}")))?;
                Key::new(KEYTYPE_ECDSA, SCHEME_ECDSA_P256, &pem)?
            }
        };
        Ok(SigningKey { inner, public })
    }

    /// A new random Ed25519 key.
    pub fn generate_ed25519<R: rand::CryptoRng + rand::RngCore>(rng: &mut R) -> Result<SigningKey, Error> {
        SigningKey::new(PrivateKey::Ed25519(ed25519_dalek::SigningKey::generate(rng)))
    }

    /// A new random ECDSA P-256 key.
    pub fn generate_ecdsa<R: rand::CryptoRng + rand::RngCore>(rng: &mut R) -> Result<SigningKey, Error> {
        SigningKey::new(PrivateKey::Ecdsa(p256::ecdsa::SigningKey::random(rng)))
    }

    /// The public key.
    pub fn public(&self) -> &Key {
        &self.public
    }

    /// The key ID.
    pub fn keyid(&self) -> &str {
        self.public.keyid()
    }

    /// Signs `msg` (the canonical bytes of `signed`): raw Ed25519, or DER
    /// ECDSA as securesystemslib writes it.
    pub fn sign(&self, msg: &[u8]) -> Signature {
        let sig = match &self.inner {
            PrivateKey::Ed25519(k) => k.sign(msg).to_bytes().to_vec(),
            PrivateKey::Ecdsa(k) => {
                let sig: p256::ecdsa::Signature = k.sign(msg);
                sig.to_der().as_bytes().to_vec()
            }
        };
        Signature {
            keyid: self.keyid().to_owned(),
            sig: hex::encode(sig),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sign_and_verify_generated_keys() {
        let mut rng = rand::rngs::OsRng;
        for k in [
            SigningKey::generate_ed25519(&mut rng).unwrap(),
            SigningKey::generate_ecdsa(&mut rng).unwrap(),
        ] {
            let s = k.sign(b"msg");
            let sig = hex::decode(&s.sig).unwrap();
            assert!(k.public().verify(b"msg", &sig));
            assert!(!k.public().verify(b"other", &sig));
            assert_eq!(
                k.keyid(),
                default_keyid(k.public().keytype(), k.public().scheme(), k.public().public())
            );
        }
    }

    #[test]
    fn ecdsa_signatures_are_der_not_raw() {
        let mut rng = rand::rngs::OsRng;
        let k = SigningKey::generate_ecdsa(&mut rng).unwrap();
        let sig = hex::decode(k.sign(b"m").sig).unwrap();
        assert_eq!(sig[0], 0x30, "DER SEQUENCE");
        let raw = p256::ecdsa::Signature::from_der(&sig).unwrap().to_bytes();
        assert!(!k.public().verify(b"m", &raw));
        assert!(k.public().verify(b"m", &ecdsa_p256_raw_to_der(&raw).unwrap()));
        assert!(ecdsa_p256_raw_to_der(&raw[..63]).is_err());
    }

    #[test]
    fn rsa_pss_accepts_every_salt_length_and_nothing_else() {
        use rsa::pkcs8::EncodePublicKey as _;
        let mut rng = rand::rngs::OsRng;
        let sk = rsa::RsaPrivateKey::new(&mut rng, 2048).unwrap();
        let pem = sk.to_public_key().to_public_key_pem(LineEnding::LF).unwrap();
        let key = Key::new(KEYTYPE_RSA, SCHEME_RSA_PSS_SHA256, &pem).unwrap();
        let digest = Sha256::digest(b"m");
        for salt in [0, 20, 32, 64, 222] {
            let sig = sk
                .sign_with_rng(&mut rng, rsa::Pss::new_with_salt::<Sha256>(salt), &digest)
                .unwrap();
            assert!(key.verify(b"m", &sig), "salt {salt}");
            assert!(!key.verify(b"n", &sig), "salt {salt}");
            let mut bad = sig.clone();
            bad[100] ^= 1;
            assert!(!key.verify(b"m", &bad));
        }
        let sig = sk.sign(rsa::Pkcs1v15Sign::new::<Sha256>(), &digest).unwrap();
        assert!(!key.verify(b"m", &sig), "PKCS#1 v1.5 is not PSS");
        let pkcs = Key::new(KEYTYPE_RSA, SCHEME_RSA_PKCS1V15_SHA256, &pem).unwrap();
        assert!(pkcs.verify(b"m", &sig));
        assert!(!key.verify(b"m", &[]));
        assert!(!key.verify(b"m", &[0xff; 256]));
    }

    #[test]
    fn ecdsa_p384_verifies_der_over_sha384() {
        use ring::signature::{EcdsaKeyPair, KeyPair, ECDSA_P384_SHA384_ASN1_SIGNING};
        let rng = ring::rand::SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P384_SHA384_ASN1_SIGNING, &rng).unwrap();
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P384_SHA384_ASN1_SIGNING, pkcs8.as_ref(), &rng).unwrap();
        // SubjectPublicKeyInfo: id-ecPublicKey, secp384r1, the point.
        let mut der = hex::decode("3076301006072a8648ce3d020106052b81040022036200").unwrap();
        der.extend_from_slice(pair.public_key().as_ref());
        let pem = format!(
            "-----BEGIN PUBLIC KEY-----\n{}\n-----END PUBLIC KEY-----\n",
            B64.encode(&der)
        );
        let key = Key::new(KEYTYPE_ECDSA, SCHEME_ECDSA_P384, &pem).unwrap();
        let sig = pair.sign(&rng, b"m").unwrap();
        assert!(key.verify(b"m", sig.as_ref()));
        assert!(!key.verify(b"n", sig.as_ref()));
        // The same key under the P-256 scheme, and a P-256 key under P-384, are unusable.
        assert!(Key::new(KEYTYPE_ECDSA, SCHEME_ECDSA_P256, &pem).is_err());
        let p256 = SigningKey::generate_ecdsa(&mut rand::rngs::OsRng).unwrap();
        assert!(Key::new(KEYTYPE_ECDSA, SCHEME_ECDSA_P384, p256.public().public()).is_err());
    }

    #[test]
    fn key_type_must_match_scheme() {
        let mut rng = rand::rngs::OsRng;
        let k = SigningKey::generate_ecdsa(&mut rng).unwrap();
        let sig = hex::decode(k.sign(b"m").sig).unwrap();
        // The same PEM declared as an Ed25519 key, or an RSA key, verifies nothing.
        for (kt, scheme) in [
            ("ed25519", "ecdsa-sha2-nistp256"),
            ("rsa", "rsassa-pss-sha256"),
            ("ecdsa", "ed25519"),
        ] {
            let v = key_value(kt, scheme, k.public().public());
            let key = Key::from_value("root", "keys.x", "x", &v).unwrap();
            assert!(key.check_usable().is_err());
            assert!(!key.verify(b"m", &sig));
        }
    }
}
