//! Self-signed root certificates as Notary's client makes them (feature
//! `certs`): common name = the GUN, usage digital signature and key
//! encipherment, extended usage code signing.

use time::OffsetDateTime;

use crate::error::KeyError;
use crate::keys::{KeyType, PrivateKey, PublicKey};

/// A self-signed certificate for `key` (an ECDSA key) with common name `cn`,
/// valid from `not_before` to `not_after`, as PEM.
pub fn self_signed_cert(
    key: &PrivateKey,
    cn: &str,
    not_before: OffsetDateTime,
    not_after: OffsetDateTime,
) -> Result<Vec<u8>, KeyError> {
    let bad = |what: &str, e: rcgen::Error| KeyError::Malformed(format!("{what}: {e}"));
    let der = key.to_pkcs8_der()?;
    let kp = rcgen::KeyPair::try_from(der.as_slice()).map_err(|e| bad("key pair", e))?;
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).map_err(|e| bad("certificate", e))?;
    params.distinguished_name = rcgen::DistinguishedName::new();
    params.distinguished_name.push(rcgen::DnType::CommonName, cn);
    params.not_before = not_before;
    params.not_after = not_after;
    params.key_usages = vec![
        rcgen::KeyUsagePurpose::DigitalSignature,
        rcgen::KeyUsagePurpose::KeyEncipherment,
    ];
    params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::CodeSigning];
    let cert = params.self_signed(&kp).map_err(|e| bad("self-signed certificate", e))?;
    Ok(cert.pem().into_bytes())
}

/// The `ecdsa-x509` root key of `gun` for `key`: its self-signed
/// certificate (see [`self_signed_cert`]), valid from `not_before` to
/// `not_after`.
pub fn root_key(
    key: &PrivateKey,
    gun: &str,
    not_before: OffsetDateTime,
    not_after: OffsetDateTime,
) -> Result<PublicKey, KeyError> {
    PublicKey::new(KeyType::EcdsaX509, self_signed_cert(key, gun, not_before, not_after)?)
}
