//! Keys and signatures in Notary's dialect.
//!
//! Key types `ed25519`, `ecdsa` (P-256), `rsa`, `ecdsa-x509` and `rsa-x509`
//! (a PEM certificate, leaf first). A key's ID is the sha256 of the
//! canonical JSON `{"keytype":…,"keyval":{"private":null,"public":…}}`.
//!
//! The verification algorithm is chosen by the trusted key's type, never by
//! the signature's `method` field (NCC 2015): an ed25519 key verifies only
//! EdDSA, an ECDSA key only raw `r‖s` ECDSA over SHA-256, an RSA key only
//! RSA-PSS or PKCS#1 v1.5 over SHA-256.

use std::fmt;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use ed25519_dalek::Signer as _;
use p256::pkcs8::{DecodePrivateKey, DecodePublicKey, EncodePrivateKey, EncodePublicKey};
use sha2::{Digest, Sha256};
use time::OffsetDateTime;
use x509_cert::der::{Encode, Tagged};
use zeroize::Zeroizing;

use crate::cjson::{JsonView, Value};

/// A key ID: lowercase hex sha256.
pub type KeyId = String;

/// The key types Notary knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum KeyType {
    /// `ed25519`: 32 raw public key bytes.
    Ed25519,
    /// `ecdsa`: DER SubjectPublicKeyInfo of a P-256 key.
    Ecdsa,
    /// `rsa`: DER SubjectPublicKeyInfo of an RSA key.
    Rsa,
    /// `ecdsa-x509`: a PEM certificate (bundle) holding a P-256 key.
    EcdsaX509,
    /// `rsa-x509`: a PEM certificate (bundle) holding an RSA key.
    RsaX509,
}

impl KeyType {
    /// Notary's name of the key type.
    pub fn as_str(self) -> &'static str {
        match self {
            KeyType::Ed25519 => "ed25519",
            KeyType::Ecdsa => "ecdsa",
            KeyType::Rsa => "rsa",
            KeyType::EcdsaX509 => "ecdsa-x509",
            KeyType::RsaX509 => "rsa-x509",
        }
    }

    /// Parses Notary's name of a key type.
    pub fn parse(s: &str) -> Option<KeyType> {
        Some(match s {
            "ed25519" => KeyType::Ed25519,
            "ecdsa" => KeyType::Ecdsa,
            "rsa" => KeyType::Rsa,
            "ecdsa-x509" => KeyType::EcdsaX509,
            "rsa-x509" => KeyType::RsaX509,
            _ => return None,
        })
    }

    /// Whether the public part is a certificate.
    pub fn is_x509(self) -> bool {
        matches!(self, KeyType::EcdsaX509 | KeyType::RsaX509)
    }
}

impl fmt::Display for KeyType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What the leaf certificate of an x509 key says, for the update rules.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertInfo {
    /// The subject's common name.
    pub common_name: Option<String>,
    /// Start of validity.
    pub not_before: OffsetDateTime,
    /// End of validity.
    pub not_after: OffsetDateTime,
    /// Signed with a SHA-1 based algorithm.
    pub sha1_signed: bool,
    /// RSA modulus size in bits, for RSA keys.
    pub rsa_bits: Option<usize>,
    /// The DER SubjectPublicKeyInfo of the certified key.
    pub spki_der: Vec<u8>,
}

#[derive(Clone)]
enum Verifying {
    Ed25519(ed25519_dalek::VerifyingKey),
    /// The uncompressed SEC1 point of a validated P-256 key; verified with
    /// ring, whose P-256 is several times faster than the pure-Rust one.
    Ecdsa(Vec<u8>),
    Rsa(rsa::RsaPublicKey),
}

/// A public key as listed in root.json or a delegation, with its ID.
#[derive(Clone)]
pub struct PublicKey {
    key_type: KeyType,
    public: Vec<u8>,
    id: KeyId,
    verifying: Verifying,
    cert: Option<CertInfo>,
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({} {})", self.key_type, self.id)
    }
}

impl PartialEq for PublicKey {
    fn eq(&self, other: &Self) -> bool {
        self.key_type == other.key_type && self.public == other.public
    }
}
impl Eq for PublicKey {}

/// The key ID of a key of `key_type` with public bytes `public`.
pub fn key_id(key_type: KeyType, public: &[u8]) -> KeyId {
    key_id_of_base64(key_type, &B64.encode(public))
}

/// [`key_id`] of the key whose public bytes have the standard base64 `public_b64`.
fn key_id_of_base64(key_type: KeyType, public_b64: &str) -> KeyId {
    // The canonical form of `key_json`, written directly: the key type and
    // base64 need no escaping, and the keys are already in sorted order.
    let mut h = Sha256::new();
    h.update(b"{\"keytype\":\"");
    h.update(key_type.as_str().as_bytes());
    h.update(b"\",\"keyval\":{\"private\":null,\"public\":\"");
    h.update(public_b64.as_bytes());
    h.update(b"\"}}");
    hex::encode(h.finalize())
}

/// The body Notary serves for `GET <role>.key` of a key of `key_type` with
/// public bytes `public`: Go struct order, public first.
pub fn notary_key_json(key_type: KeyType, public: &[u8]) -> Vec<u8> {
    format!(
        "{{\"keytype\":\"{}\",\"keyval\":{{\"public\":\"{}\",\"private\":null}}}}",
        key_type,
        B64.encode(public)
    )
    .into_bytes()
}

fn key_json(key_type: KeyType, public: &[u8]) -> Value {
    Value::object([
        ("keytype", Value::str(key_type.as_str())),
        (
            "keyval",
            Value::object([("private", Value::Null), ("public", Value::str(B64.encode(public)))]),
        ),
    ])
}

impl PublicKey {
    /// Builds a key from its type and public bytes (for x509 types, the PEM).
    pub fn new(key_type: KeyType, public: Vec<u8>) -> Result<PublicKey, KeyError> {
        PublicKey::with_id(key_type, public, None)
    }

    /// [`PublicKey::new`], given the key's ID when the caller has it.
    fn with_id(key_type: KeyType, public: Vec<u8>, id: Option<KeyId>) -> Result<PublicKey, KeyError> {
        let (verifying, cert) = match key_type {
            KeyType::Ed25519 => {
                let bytes: [u8; 32] = public
                    .as_slice()
                    .try_into()
                    .map_err(|_| KeyError::Malformed("ed25519 key is not 32 bytes".into()))?;
                let vk = ed25519_dalek::VerifyingKey::from_bytes(&bytes)
                    .map_err(|e| KeyError::Malformed(format!("ed25519 key: {e}")))?;
                (Verifying::Ed25519(vk), None)
            }
            KeyType::Ecdsa => (ecdsa_from_spki(&public)?, None),
            KeyType::Rsa => (rsa_from_spki(&public)?, None),
            KeyType::EcdsaX509 | KeyType::RsaX509 => {
                let cert = parse_leaf_cert(&public)?;
                let verifying = if key_type == KeyType::EcdsaX509 {
                    ecdsa_from_spki(&cert.spki_der)?
                } else {
                    rsa_from_spki(&cert.spki_der)?
                };
                (verifying, Some(cert))
            }
        };
        let id = id.unwrap_or_else(|| key_id(key_type, &public));
        debug_assert_eq!(id, key_id(key_type, &public));
        Ok(PublicKey {
            key_type,
            public,
            id,
            verifying,
            cert,
        })
    }

    /// The key of a PEM certificate: `ecdsa-x509`, else `rsa-x509`.
    pub fn from_certificate_pem(pem: Vec<u8>) -> Result<PublicKey, KeyError> {
        PublicKey::new(KeyType::EcdsaX509, pem.clone()).or_else(|_| PublicKey::new(KeyType::RsaX509, pem))
    }

    /// Parses `{"keytype":…,"keyval":{"public":…,"private":…}}`; a private
    /// part must be null or absent.
    pub fn from_value(v: &Value) -> Result<PublicKey, KeyError> {
        PublicKey::from_view(v, &[])
    }

    /// [`PublicKey::from_value`] from either JSON tree. A key whose type and public bytes are
    /// those of a key in `known` (keys already built and checked, such as the server's own) is
    /// that key, cloned, instead of being decoded and checked again.
    pub(crate) fn from_view<V: JsonView>(v: &V, known: &[&PublicKey]) -> Result<PublicKey, KeyError> {
        let kt = v
            .get("keytype")
            .and_then(V::as_str)
            .ok_or_else(|| KeyError::Malformed("missing keytype".into()))?;
        let key_type = KeyType::parse(kt).ok_or_else(|| KeyError::UnknownType(kt.to_owned()))?;
        let keyval = v
            .get("keyval")
            .ok_or_else(|| KeyError::Malformed("missing keyval".into()))?;
        match keyval.get("private") {
            None => {}
            Some(p) if p.is_null() => {}
            Some(_) => return Err(KeyError::Malformed("public key carries private material".into())),
        }
        let public_b64 = keyval
            .get("public")
            .and_then(V::as_str)
            .ok_or_else(|| KeyError::Malformed("missing keyval.public".into()))?;
        let public = B64
            .decode(public_b64)
            .map_err(|e| KeyError::Malformed(format!("keyval.public is not base64: {e}")))?;
        if let Some(k) = known.iter().find(|k| k.key_type == key_type && k.public == public) {
            return Ok((*k).clone());
        }
        // The standard engine decodes only canonical base64 (padding required, no stray
        // bits), so the string read is the base64 the key ID hashes: no need to encode it.
        PublicKey::with_id(key_type, public, Some(key_id_of_base64(key_type, public_b64)))
    }

    /// Parses the JSON body Notary serves for `GET <role>.key`.
    pub fn from_json(bytes: &[u8]) -> Result<PublicKey, KeyError> {
        let v = Value::parse(bytes).map_err(|e| KeyError::Malformed(e.0))?;
        PublicKey::from_value(&v)
    }

    /// The key as metadata lists it (`private` null).
    pub fn to_value(&self) -> Value {
        key_json(self.key_type, &self.public)
    }

    /// The body Notary serves for `GET <role>.key`: Go struct order, public first.
    pub fn to_notary_key_json(&self) -> Vec<u8> {
        notary_key_json(self.key_type, &self.public)
    }

    /// The key ID.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The key type.
    pub fn key_type(&self) -> KeyType {
        self.key_type
    }

    /// The public bytes (for x509 types, the PEM certificate bundle).
    pub fn public_bytes(&self) -> &[u8] {
        &self.public
    }

    /// The leaf certificate's facts, for x509 keys.
    pub fn cert(&self) -> Option<&CertInfo> {
        self.cert.as_ref()
    }

    /// The ID Notary's CLI prints for an x509 key: that of the plain key
    /// inside the certificate. For other keys, the key ID itself.
    pub fn canonical_id(&self) -> KeyId {
        match (&self.cert, self.key_type) {
            (Some(c), KeyType::EcdsaX509) => key_id(KeyType::Ecdsa, &c.spki_der),
            (Some(c), KeyType::RsaX509) => key_id(KeyType::Rsa, &c.spki_der),
            _ => self.id.clone(),
        }
    }

    /// Verifies `sig` over `msg` with the algorithm this key's type
    /// dictates. `method` only selects between the two RSA paddings and must
    /// belong to the key's family.
    pub fn verify(&self, method: &str, msg: &[u8], sig: &[u8]) -> Result<(), KeyError> {
        let bad = || KeyError::BadSignature(self.id.clone());
        match &self.verifying {
            Verifying::Ed25519(vk) => {
                if method != "eddsa" {
                    return Err(KeyError::MethodMismatch {
                        key_type: self.key_type,
                        method: method.to_owned(),
                    });
                }
                let sig = ed25519_dalek::Signature::from_slice(sig).map_err(|_| bad())?;
                vk.verify_strict(msg, &sig).map_err(|_| bad())
            }
            Verifying::Ecdsa(point) => {
                if method != "ecdsa" {
                    return Err(KeyError::MethodMismatch {
                        key_type: self.key_type,
                        method: method.to_owned(),
                    });
                }
                ring::signature::UnparsedPublicKey::new(&ring::signature::ECDSA_P256_SHA256_FIXED, point)
                    .verify(msg, sig)
                    .map_err(|_| bad())
            }
            Verifying::Rsa(pk) => {
                // Notary's RSA verifiers count no signature of a key shorter
                // than 2048 bits.
                if rsa::traits::PublicKeyParts::size(pk) * 8 < MIN_RSA_BITS {
                    return Err(KeyError::WeakKey {
                        keyid: self.id.clone(),
                        bits: rsa::traits::PublicKeyParts::size(pk) * 8,
                    });
                }
                let digest = Sha256::digest(msg);
                let ok = match method {
                    "rsapss" => pk.verify(rsa::Pss::new::<Sha256>(), &digest, sig).is_ok(),
                    "rsapkcs1v15" => pk.verify(rsa::Pkcs1v15Sign::new::<Sha256>(), &digest, sig).is_ok(),
                    _ => {
                        return Err(KeyError::MethodMismatch {
                            key_type: self.key_type,
                            method: method.to_owned(),
                        })
                    }
                };
                if ok {
                    Ok(())
                } else {
                    Err(bad())
                }
            }
        }
    }
}

fn ecdsa_from_spki(der: &[u8]) -> Result<Verifying, KeyError> {
    let vk = p256::ecdsa::VerifyingKey::from_public_key_der(der)
        .map_err(|e| KeyError::Malformed(format!("ecdsa key is not a P-256 SubjectPublicKeyInfo: {e}")))?;
    Ok(Verifying::Ecdsa(vk.to_encoded_point(false).as_bytes().to_vec()))
}

/// The shortest RSA key whose signatures count, as in Notary.
pub const MIN_RSA_BITS: usize = 2048;

fn rsa_from_spki(der: &[u8]) -> Result<Verifying, KeyError> {
    let pk = rsa::RsaPublicKey::from_public_key_der(der)
        .map_err(|e| KeyError::Malformed(format!("rsa key is not a SubjectPublicKeyInfo: {e}")))?;
    Ok(Verifying::Rsa(pk))
}

use x509_cert::der::asn1::ObjectIdentifier as Oid;

/// A key or signature problem.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    /// The key's bytes do not decode as its type says.
    #[error("malformed key: {0}")]
    Malformed(String),
    /// A key type Notary does not know.
    #[error("unknown key type {0:?}")]
    UnknownType(String),
    /// The signature's method does not belong to the key's type.
    #[error("signature method {method:?} does not match key type {key_type}")]
    MethodMismatch {
        /// The trusted key's type.
        key_type: KeyType,
        /// The method the signature claimed.
        method: String,
    },
    /// The signature does not verify.
    #[error("signature by key {0} does not verify")]
    BadSignature(KeyId),
    /// An RSA key too short for its signatures to count.
    #[error("key {keyid} is a {bits}-bit RSA key: signatures count only from keys of at least 2048 bits")]
    WeakKey {
        /// The key.
        keyid: KeyId,
        /// Its modulus size.
        bits: usize,
    },
}

const OID_CN: Oid = Oid::new_unwrap("2.5.4.3");
const OID_RSA_ENCRYPTION: Oid = Oid::new_unwrap("1.2.840.113549.1.1.1");
const SHA1_SIG_OIDS: [Oid; 4] = [
    Oid::new_unwrap("1.2.840.113549.1.1.5"), // sha1WithRSAEncryption
    Oid::new_unwrap("1.3.14.3.2.29"),        // sha1WithRSA (ISO), which Go reads as SHA1WithRSA
    Oid::new_unwrap("1.2.840.10045.4.1"),    // ecdsa-with-SHA1
    Oid::new_unwrap("1.2.840.10040.4.3"),    // dsa-with-sha1
];

/// `x509_cert::Certificate::load_pem_chain`, each block read by [`cert_from_pem`]: the same
/// blocks, accepted and refused alike (the same loop, with its `len() - 1` written as the
/// wrapping subtraction it is in a release build, so an empty input is an error here too
/// rather than an overflow in a debug build).
fn load_pem_chain(mut input: &[u8]) -> Result<Vec<x509_cert::Certificate>, x509_cert::der::Error> {
    const END: &[u8] = b"-----END CERTIFICATE-----";
    while let [rest @ .., b'\r' | b'\n'] = input {
        input = rest;
    }
    let mut certs = Vec::new();
    let mut position = 0;
    while position < input.len().wrapping_sub(1) {
        let rest = &input[position..];
        let end = rest
            .windows(END.len())
            .position(|w| w == END)
            .ok_or(x509_cert::der::pem::Error::PostEncapsulationBoundary)?
            + END.len();
        certs.push(cert_from_pem(&rest[..end])?);
        position += end;
    }
    Ok(certs)
}

/// `Certificate::from_pem`, faster: the base64 is decoded in one pass and the certificate
/// read from the decoded slice, instead of through der's streaming PEM reader. Only a
/// success is taken from this path (the same bytes read by the same decoder give the same
/// certificate, and whatever follows it in the block is ignored by both); any failure is
/// left to `from_pem`, so errors are its own.
fn cert_from_pem(pem: &[u8]) -> Result<x509_cert::Certificate, x509_cert::der::Error> {
    use x509_cert::der::pem::{Decoder, PemLabel};
    use x509_cert::der::{Decode, DecodePem, SliceReader};
    let fast = || {
        let mut decoder = Decoder::new(pem).ok()?;
        if decoder.type_label() != x509_cert::Certificate::PEM_LABEL {
            return None;
        }
        let mut der = vec![0; decoder.remaining_len()];
        let der = decoder.decode(&mut der).ok()?;
        let mut reader = SliceReader::new(der).ok()?;
        x509_cert::Certificate::decode(&mut reader).ok()
    };
    match fast() {
        Some(cert) => Ok(cert),
        None => x509_cert::Certificate::from_pem(pem),
    }
}

fn parse_leaf_cert(pem: &[u8]) -> Result<CertInfo, KeyError> {
    let chain = load_pem_chain(pem).map_err(|e| KeyError::Malformed(format!("certificate: {e}")))?;
    let leaf = chain
        .first()
        .ok_or_else(|| KeyError::Malformed("no certificate in PEM".into()))?;
    let tbs = &leaf.tbs_certificate;
    // Every name attribute must be a string Go would parse; the last CN of
    // the subject wins, as in Go's pkix.Name.
    for rdn in tbs.issuer.0.iter() {
        for atv in rdn.0.iter() {
            go_directory_string(atv.value.tag(), atv.value.value())
                .map_err(|e| KeyError::Malformed(format!("certificate issuer attribute {}: {e}", atv.oid)))?;
        }
    }
    let mut common_name = None;
    for rdn in tbs.subject.0.iter() {
        for atv in rdn.0.iter() {
            let value = go_directory_string(atv.value.tag(), atv.value.value())
                .map_err(|e| KeyError::Malformed(format!("certificate subject attribute {}: {e}", atv.oid)))?;
            if atv.oid == OID_CN && value.is_some() {
                common_name = value;
            }
        }
    }
    let to_time = |t: &x509_cert::time::Time| {
        let secs = t.to_unix_duration().as_secs();
        OffsetDateTime::from_unix_timestamp(i64::try_from(secs).unwrap_or(i64::MAX))
            .map_err(|e| KeyError::Malformed(format!("certificate validity: {e}")))
    };
    let not_before = to_time(&tbs.validity.not_before)?;
    let not_after = to_time(&tbs.validity.not_after)?;
    let sha1_signed = SHA1_SIG_OIDS.contains(&leaf.signature_algorithm.oid);
    let spki_der = tbs
        .subject_public_key_info
        .to_der()
        .map_err(|e| KeyError::Malformed(format!("certificate key: {e}")))?;
    let rsa_bits = (tbs.subject_public_key_info.algorithm.oid == OID_RSA_ENCRYPTION)
        .then(|| rsa::RsaPublicKey::from_public_key_der(&spki_der).ok())
        .flatten()
        .map(|k| rsa::traits::PublicKeyParts::size(&k) * 8);
    Ok(CertInfo {
        common_name,
        not_before,
        not_after,
        sha1_signed,
        rsa_bits,
        spki_der,
    })
}

/// A subject attribute's value as Go reads it into `pkix.Name` (the Go
/// 1.15 `encoding/asn1` rules Notary v0.7 was built with): `Ok(None)` for a
/// value of a type Go leaves out of the name, an error for a string Go
/// refuses (which makes Go refuse the whole certificate).
///
/// Go is more lenient than DER: a PrintableString may hold `*` (wildcard
/// names such as `docker/*`) and `&`; a TeletexString is taken as its bytes.
pub fn go_directory_string(tag: x509_cert::der::Tag, value: &[u8]) -> Result<Option<String>, String> {
    use x509_cert::der::Tag;
    let utf8 = |what: &str| {
        String::from_utf8(value.to_vec())
            .map(Some)
            .map_err(|_| format!("{what} is not valid UTF-8"))
    };
    match tag {
        Tag::PrintableString => {
            if let Some(b) = value.iter().find(|b| !is_go_printable(**b)) {
                return Err(format!("PrintableString holds the byte 0x{b:02x}"));
            }
            utf8("PrintableString")
        }
        Tag::NumericString => {
            if value.iter().any(|b| !(b.is_ascii_digit() || *b == b' ')) {
                return Err("NumericString holds a byte other than a digit or space".into());
            }
            utf8("NumericString")
        }
        Tag::Ia5String => {
            if value.iter().any(|b| !b.is_ascii()) {
                return Err("IA5String holds a byte above 0x7f".into());
            }
            utf8("IA5String")
        }
        Tag::Utf8String => utf8("UTF8String"),
        // Go keeps a TeletexString's bytes as they are; a Go string that is
        // not UTF-8 can equal no GUN, so Seal refuses such a name outright.
        Tag::TeletexString => utf8("TeletexString"),
        Tag::BmpString => {
            if value.len() % 2 != 0 {
                return Err("BMPString has an odd length".into());
            }
            let value = value.strip_suffix(&[0, 0]).unwrap_or(value);
            let units: Vec<u16> = value
                .chunks_exact(2)
                .map(|c| u16::from_be_bytes([c[0], c[1]]))
                .collect();
            Ok(Some(
                char::decode_utf16(units)
                    .map(|c| c.unwrap_or(char::REPLACEMENT_CHARACTER))
                    .collect(),
            ))
        }
        _ => Ok(None),
    }
}

/// Go's `encoding/asn1` PrintableString alphabet as it parses: the ASN.1
/// set plus `*` and `&`.
fn is_go_printable(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'\''..=b')' | b'+'..=b'/' | b' ' | b':' | b'=' | b'?' | b'*' | b'&')
}

/// One signature of a metadata file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signature {
    /// The signing key's ID.
    pub keyid: KeyId,
    /// `eddsa`, `ecdsa`, `rsapss` or `rsapkcs1v15`.
    pub method: String,
    /// The raw signature bytes (base64 in JSON).
    pub sig: Vec<u8>,
}

/// A private key the server, signer or client signs with. The secret is
/// zeroized when the key is dropped.
pub enum PrivateKey {
    /// An Ed25519 key.
    Ed25519(ed25519_dalek::SigningKey),
    /// An ECDSA P-256 key.
    Ecdsa(p256::ecdsa::SigningKey),
}

impl fmt::Debug for PrivateKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PrivateKey({}, <secret>)", self.key_type())
    }
}

impl PrivateKey {
    /// A new random Ed25519 key.
    pub fn generate_ed25519<R: rand::CryptoRng + rand::RngCore>(rng: &mut R) -> PrivateKey {
        PrivateKey::Ed25519(ed25519_dalek::SigningKey::generate(rng))
    }

    /// A new random ECDSA P-256 key.
    pub fn generate_ecdsa<R: rand::CryptoRng + rand::RngCore>(rng: &mut R) -> PrivateKey {
        PrivateKey::Ecdsa(p256::ecdsa::SigningKey::random(rng))
    }

    /// The public key's type: `ed25519` or `ecdsa`.
    pub fn key_type(&self) -> KeyType {
        match self {
            PrivateKey::Ed25519(_) => KeyType::Ed25519,
            PrivateKey::Ecdsa(_) => KeyType::Ecdsa,
        }
    }

    /// The public half.
    pub fn public_key(&self) -> PublicKey {
        let public = match self {
            PrivateKey::Ed25519(k) => k.verifying_key().to_bytes().to_vec(),
            PrivateKey::Ecdsa(k) => match k.verifying_key().to_public_key_der() {
                Ok(der) => der.as_bytes().to_vec(),
                // Encoding a valid P-256 point cannot fail.
                Err(_) => Vec::new(),
            },
        };
        let verifying = match self {
            PrivateKey::Ed25519(k) => Verifying::Ed25519(k.verifying_key()),
            PrivateKey::Ecdsa(k) => Verifying::Ecdsa(k.verifying_key().to_encoded_point(false).as_bytes().to_vec()),
        };
        let key_type = self.key_type();
        PublicKey {
            key_type,
            id: key_id(key_type, &public),
            public,
            verifying,
            cert: None,
        }
    }

    /// Signs `msg` (for metadata: the canonical bytes of `signed`) and
    /// returns the signature with its method, under `keyid` (which differs
    /// from the plain key's ID when the key is listed as a certificate).
    pub fn sign_as(&self, keyid: &str, msg: &[u8]) -> Signature {
        match self {
            PrivateKey::Ed25519(k) => Signature {
                keyid: keyid.to_owned(),
                method: "eddsa".into(),
                sig: k.sign(msg).to_bytes().to_vec(),
            },
            PrivateKey::Ecdsa(k) => {
                let sig: p256::ecdsa::Signature = k.sign(msg);
                Signature {
                    keyid: keyid.to_owned(),
                    method: "ecdsa".into(),
                    sig: sig.to_bytes().to_vec(),
                }
            }
        }
    }

    /// Signs `msg` under this key's own ID.
    pub fn sign(&self, msg: &[u8]) -> Signature {
        let id = self.public_key().id;
        self.sign_as(&id, msg)
    }

    /// The key as unencrypted PKCS#8 DER (zeroized on drop).
    pub fn to_pkcs8_der(&self) -> Result<Zeroizing<Vec<u8>>, KeyError> {
        let doc = match self {
            PrivateKey::Ed25519(k) => k.to_pkcs8_der(),
            PrivateKey::Ecdsa(k) => k.to_pkcs8_der(),
        }
        .map_err(|e| KeyError::Malformed(format!("pkcs8: {e}")))?;
        Ok(Zeroizing::new(doc.as_bytes().to_vec()))
    }

    /// Reads an unencrypted PKCS#8 DER private key (Ed25519 or P-256).
    pub fn from_pkcs8_der(der: &[u8]) -> Result<PrivateKey, KeyError> {
        if let Ok(k) = ed25519_dalek::SigningKey::from_pkcs8_der(der) {
            return Ok(PrivateKey::Ed25519(k));
        }
        if let Ok(k) = p256::ecdsa::SigningKey::from_pkcs8_der(der) {
            return Ok(PrivateKey::Ecdsa(k));
        }
        Err(KeyError::Malformed("not a PKCS#8 Ed25519 or P-256 private key".into()))
    }
}

#[cfg(test)]
mod tests {
    /// The key types `PrivateKey` holds wipe their secrets on drop (the
    /// signer's key cache and the client's key store hold `PrivateKey`s).
    #[test]
    fn private_keys_zeroize_on_drop() {
        fn zeroize_on_drop<T: zeroize::ZeroizeOnDrop>() {}
        zeroize_on_drop::<ed25519_dalek::SigningKey>();
        zeroize_on_drop::<p256::ecdsa::SigningKey>();
        zeroize_on_drop::<zeroize::Zeroizing<Vec<u8>>>();
    }

    #[test]
    fn certificate_chains_read_as_x509_cert_reads_them() {
        let mut rng = rand::rngs::OsRng;
        let from = OffsetDateTime::from_unix_timestamp(1_700_000_000).unwrap();
        let until = OffsetDateTime::from_unix_timestamp(2_000_000_000).unwrap();
        let mut pem = |cn: &str| {
            let key = PrivateKey::generate_ecdsa(&mut rng);
            String::from_utf8(crate::certs::self_signed_cert(&key, cn, from, until).unwrap()).unwrap()
        };
        let (a, b) = (pem("example.com/a"), pem("example.com/b"));
        let lines: Vec<&str> = a.lines().collect();
        let with_lines = |f: &dyn Fn(&mut Vec<String>)| {
            let mut l: Vec<String> = lines.iter().map(|s| s.to_string()).collect();
            f(&mut l);
            l.join("\n") + "\n"
        };
        let cases = [
            a.clone(),
            format!("{a}{b}"),
            format!("{a}\n{b}\n\n"),
            a.replace('\n', "\r\n"),
            format!("junk{a}"),
            format!("{a}junk"),
            format!("{a}\n-----BEGIN CERTIFICATE-----\n"),
            a.replace("CERTIFICATE", "PUBLIC KEY"),
            a.replace("-----END CERTIFICATE-----", ""),
            with_lines(&|l| {
                l[2] = l[2]
                    .replacen('A', "!", 1)
                    .replacen(|c: char| c.is_ascii_alphanumeric(), "!", 1)
            }),
            with_lines(&|l| {
                let n = l.len();
                l[n - 2] = "@@@@".into();
            }),
            with_lines(&|l| {
                let n = l.len();
                l.insert(n - 1, "AAAA".into());
            }),
            with_lines(&|l| {
                l.remove(3);
            }),
            with_lines(&|l| l[1].truncate(60)),
            "x".into(),
        ];
        for case in &cases {
            let ours = load_pem_chain(case.as_bytes());
            let theirs = x509_cert::Certificate::load_pem_chain(case.as_bytes());
            match (ours, theirs) {
                (Ok(o), Ok(t)) => assert_eq!(o, t, "{case}"),
                (Err(o), Err(t)) => assert_eq!(o.to_string(), t.to_string(), "{case}"),
                (o, t) => panic!("{case}: {o:?} against {t:?}"),
            }
        }
        assert_eq!(load_pem_chain(format!("{a}{b}").as_bytes()).unwrap().len(), 2);
        // An input that is empty once its trailing line ends are stripped is refused, as a
        // release build of x509-cert refuses it (its loop underflows there in a debug build).
        for empty in [&b""[..], b"\n", b"\r\n\n"] {
            let e = load_pem_chain(empty).unwrap_err();
            assert_eq!(e.to_string(), load_pem_chain(b"xx").unwrap_err().to_string());
            // An uploaded x509 key with such a certificate is refused, not a panic.
            assert!(PublicKey::new(KeyType::EcdsaX509, empty.to_vec()).is_err());
            assert!(PublicKey::new(KeyType::RsaX509, empty.to_vec()).is_err());
        }
    }

    use super::*;

    #[test]
    fn fixture_timestamp_key_id() {
        let body = br#"{"keytype":"ed25519","keyval":{"public":"LN3wHx8BGVJVVsVJgmYsiEUUyGETPz3xYv3rIAoGiDQ=","private":null}}"#;
        let k = PublicKey::from_json(body).unwrap();
        assert_eq!(
            k.id(),
            "f483ad6878ad3fca5b5cbacdf4ab77ba9719a156608755b59b1ef156a2aec6d5"
        );
        assert_eq!(k.to_notary_key_json(), body.to_vec());
    }

    #[test]
    fn key_id_is_the_sha256_of_the_canonical_key() {
        let public: Vec<u8> = (0..=255u8).cycle().take(300).collect();
        for kt in ["ed25519", "ecdsa", "rsa", "ecdsa-x509", "rsa-x509"] {
            let kt = KeyType::parse(kt).unwrap();
            for len in [0, 1, 2, 3, 32, 91, 300] {
                let canonical = key_json(kt, &public[..len]).to_canonical();
                assert_eq!(key_id(kt, &public[..len]), hex::encode(Sha256::digest(canonical)));
            }
        }
    }

    #[test]
    fn sign_and_verify_each_generated_type() {
        let mut rng = rand::rngs::OsRng;
        for k in [
            PrivateKey::generate_ed25519(&mut rng),
            PrivateKey::generate_ecdsa(&mut rng),
        ] {
            let pk = k.public_key();
            let s = k.sign(b"msg");
            assert_eq!(s.keyid, pk.id());
            pk.verify(&s.method, b"msg", &s.sig).unwrap();
            assert!(pk.verify(&s.method, b"other", &s.sig).is_err());
            let der = k.to_pkcs8_der().unwrap();
            let back = PrivateKey::from_pkcs8_der(&der).unwrap();
            assert_eq!(back.public_key(), pk);
        }
    }

    #[test]
    fn method_field_cannot_pick_the_algorithm() {
        let mut rng = rand::rngs::OsRng;
        let k = PrivateKey::generate_ed25519(&mut rng);
        let s = k.sign(b"m");
        let err = k.public_key().verify("ecdsa", b"m", &s.sig).unwrap_err();
        assert!(matches!(err, KeyError::MethodMismatch { .. }));
        let k = PrivateKey::generate_ecdsa(&mut rng);
        let s = k.sign(b"m");
        let err = k.public_key().verify("rsapss", b"m", &s.sig).unwrap_err();
        assert!(matches!(err, KeyError::MethodMismatch { .. }));
    }

    #[test]
    fn private_material_in_a_public_key_is_refused() {
        let v = Value::parse(br#"{"keytype":"ed25519","keyval":{"public":"LN3wHx8BGVJVVsVJgmYsiEUUyGETPz3xYv3rIAoGiDQ=","private":"AAAA"}}"#).unwrap();
        assert!(PublicKey::from_value(&v).is_err());
    }
}
