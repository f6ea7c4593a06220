//! Threshold signature checks, shared by the server's validation and the
//! client's verification.

use std::collections::{BTreeMap, BTreeSet};

use time::OffsetDateTime;

use crate::error::Error;
use crate::keys::{KeyId, PublicKey};
use crate::metadata::{RoleKeys, SignedFile};

/// Checks that `file` carries valid signatures from at least `threshold`
/// distinct keys among `trusted`. A signature counts once per underlying
/// key: the same key listed twice (for example bare and inside a
/// certificate) cannot meet a threshold of two. Returns how many verified.
pub fn verify_threshold(file: &SignedFile, trusted: &[&PublicKey], threshold: u32) -> Result<usize, Error> {
    if file.signatures().is_empty() {
        return Err(Error::NoSignatures {
            role: file.role().to_owned(),
        });
    }
    let mut counted: BTreeSet<KeyId> = BTreeSet::new();
    // Each trusted key is tried once, on the first signature naming it, so
    // the work is bounded by the keys that could count, not by how many
    // signatures the file carries.
    let mut tried: BTreeSet<&str> = BTreeSet::new();
    for sig in file.signatures() {
        let Some(key) = trusted.iter().find(|k| k.id() == sig.keyid) else {
            continue;
        };
        if !tried.insert(key.id()) {
            continue;
        }
        let underlying = key.canonical_id();
        if counted.contains(&underlying) {
            continue;
        }
        if key.verify(&sig.method, file.canonical_signed(), &sig.sig).is_ok() {
            counted.insert(underlying);
        }
    }
    if counted.len() < threshold as usize || threshold == 0 {
        return Err(Error::Threshold {
            role: file.role().to_owned(),
            valid: counted.len(),
            threshold,
        });
    }
    Ok(counted.len())
}

/// Signatures a file may carry beyond the keys that could count for it
/// (for example a rotation signed with a key the role no longer lists).
pub const EXTRA_SIGNATURES: usize = 4;

/// Refuses an uploaded file carrying more signatures than `could_count`
/// keys and [`EXTRA_SIGNATURES`], or two signatures naming one key: no
/// client makes such files, and they only cost the verifier.
pub fn check_signature_list(file: &SignedFile, could_count: usize) -> Result<(), Error> {
    let max = could_count.saturating_add(EXTRA_SIGNATURES);
    if file.signatures().len() > max {
        return Err(Error::TooManySignatures {
            role: file.role().to_owned(),
            count: file.signatures().len(),
            max,
        });
    }
    let mut seen = BTreeSet::new();
    for sig in file.signatures() {
        if !seen.insert(sig.keyid.as_str()) {
            return Err(Error::DuplicateSignature {
                role: file.role().to_owned(),
                keyid: sig.keyid.clone(),
            });
        }
    }
    Ok(())
}

/// The keys of `role_keys` found in `keys`, in listed order.
pub fn listed_keys<'a>(keys: &'a BTreeMap<KeyId, PublicKey>, role_keys: &RoleKeys) -> Vec<&'a PublicKey> {
    role_keys.keyids.iter().filter_map(|id| keys.get(id)).collect()
}

/// Refuses metadata that expired at or before `now`.
pub fn check_expiry(role: &str, expires: OffsetDateTime, now: OffsetDateTime) -> Result<(), Error> {
    if expires <= now {
        return Err(Error::Expired {
            role: role.to_owned(),
            expires,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cjson::Value;
    use crate::keys::PrivateKey;

    fn file(signers: &[&PrivateKey]) -> SignedFile {
        let signed = Value::object([("_type", Value::str("Targets"))]);
        let canonical = signed.to_canonical();
        let sigs = signers.iter().map(|k| k.sign(&canonical)).collect();
        SignedFile::assemble("targets", signed, sigs)
    }

    #[test]
    fn duplicate_signatures_by_one_key_count_once() {
        let mut rng = rand::rngs::OsRng;
        let a = PrivateKey::generate_ed25519(&mut rng);
        let b = PrivateKey::generate_ecdsa(&mut rng);
        let (pa, pb) = (a.public_key(), b.public_key());
        let f = file(&[&a, &a]);
        let err = verify_threshold(&f, &[&pa, &pb], 2).unwrap_err();
        assert!(matches!(
            err,
            Error::Threshold {
                valid: 1,
                threshold: 2,
                ..
            }
        ));
        let f = file(&[&a, &b]);
        assert_eq!(verify_threshold(&f, &[&pa, &pb], 2).unwrap(), 2);
    }

    #[test]
    fn untrusted_and_missing_signatures_are_refused() {
        let mut rng = rand::rngs::OsRng;
        let a = PrivateKey::generate_ed25519(&mut rng);
        let other = PrivateKey::generate_ed25519(&mut rng);
        let f = file(&[&other]);
        assert!(matches!(
            verify_threshold(&f, &[&a.public_key()], 1),
            Err(Error::Threshold { valid: 0, .. })
        ));
        let f = file(&[]);
        assert!(matches!(
            verify_threshold(&f, &[&a.public_key()], 1),
            Err(Error::NoSignatures { .. })
        ));
    }
}
