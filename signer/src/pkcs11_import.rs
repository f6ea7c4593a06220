//! Putting an existing private key into the PKCS#11 token (`seal-signer import-notary` with a
//! `pkcs11` key backend): the key is created as a token object with the same protection as the
//! keys the token generates (sensitive, not extractable, sign only), under a fresh random
//! `CKA_ID`, and read back and checked like a generated key. A child of `pkcs11` so that it
//! shares that module's session handling and checks.

use cryptoki::object::{Attribute, KeyType};
use cryptoki::session::Session;
use rand::RngCore as _;
use seal_tuf::PrivateKey;
use zeroize::Zeroizing;

use super::{
    finish_generate, private_template, public_template, OpError, Pkcs11Backend, ED25519_OID_PARAMS, ID_LEN, P256_PARAMS,
};
use crate::backend::{Algorithm, BackendError, NewKey};

impl Pkcs11Backend {
    /// Stores `key` in the token labelled `label`; returns its public key as TUF lists it and
    /// the handle (`CKA_ID`) the signer's store keeps.
    pub fn import_key(&self, key: &PrivateKey, label: &str) -> Result<NewKey, BackendError> {
        let (algorithm, secret, point) = match key {
            PrivateKey::Ecdsa(k) => (
                Algorithm::Ecdsa,
                Zeroizing::new(k.to_bytes().to_vec()),
                k.verifying_key().to_encoded_point(false).as_bytes().to_vec(),
            ),
            PrivateKey::Ed25519(k) => (
                Algorithm::Ed25519,
                Zeroizing::new(k.to_bytes().to_vec()),
                k.verifying_key().as_bytes().to_vec(),
            ),
        };
        self.token.run("importing a key", |session| {
            import_in(session, algorithm, &secret, &point, label)
        })
    }
}

/// DER OCTET STRING around `bytes` (short form: points are under 128 bytes).
fn octet_string(bytes: &[u8]) -> Vec<u8> {
    let mut out = vec![0x04, bytes.len() as u8];
    out.extend_from_slice(bytes);
    out
}

fn import_in(
    session: &Session,
    algorithm: Algorithm,
    secret: &[u8],
    point: &[u8],
    label: &str,
) -> Result<NewKey, OpError> {
    let mut id = [0u8; ID_LEN];
    rand::rngs::OsRng.fill_bytes(&mut id);
    let (key_type, params) = match algorithm {
        Algorithm::Ecdsa => (KeyType::EC, P256_PARAMS),
        Algorithm::Ed25519 => (KeyType::EC_EDWARDS, ED25519_OID_PARAMS),
    };
    let mut private = private_template(key_type, &id, label);
    private.push(Attribute::Value(secret.to_vec()));
    private.push(Attribute::EcParams(params.to_vec()));
    let private = session.create_object(&private)?;
    let mut public = public_template(key_type, params, &id, label);
    public.push(Attribute::EcPoint(octet_string(point)));
    let public = session.create_object(&public);
    let public = match public {
        Ok(p) => p,
        Err(e) => {
            if let Err(d) = session.destroy_object(private) {
                tracing::warn!(error = %d, "could not destroy a half-imported PKCS#11 key");
            }
            return Err(e.into());
        }
    };
    finish_generate(session, algorithm, &id, public, private)
}
