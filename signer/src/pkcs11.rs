//! PKCS#11 key backend: keys are generated inside an HSM token and never leave
//! it; the signer only holds their `CKA_ID`s.
//!
//! How it talks to the module, and why:
//!
//! * **One module context per process.** `C_Initialize` is process-wide in
//!   PKCS#11, so loaded modules are kept in a process-wide table (keyed by the
//!   canonical module path), initialized once and never finalized.
//! * **Tokens by label.** SoftHSM (and some HSMs) reassign slot ids, so the
//!   token is found by its label on open, and again if its slot disappears.
//! * **Login is per application, not per session.** All sessions a process
//!   has with a token share one login state, and closing the last session
//!   logs the token out. A second [`Pkcs11Backend::open`] of a token this
//!   process already has open therefore shares the first one's sessions (a
//!   `C_Login` would answer "already logged in" without checking the PIN), and
//!   is refused if its PIN differs.
//! * **A bounded session pool.** A PKCS#11 session runs one operation at a
//!   time and `cryptoki::Session` is `Send` but not `Sync`, so each call leases
//!   a whole session from a pool of at most [`MAX_SESSIONS`]; callers beyond
//!   that wait (up to [`SESSION_WAIT`]). Several sessions let an HSM with
//!   several cores sign in parallel, which one `Mutex<Session>` would not.
//! * **Recovery.** A leased session is logged in again if the token logged
//!   out (without that, private keys are merely invisible and a sign would
//!   wrongly answer "not found"); when the module reports a session closed or
//!   invalid, it and the idle sessions are closed and the call is retried
//!   once on a fresh session.
//!
//! The PIN is only held in zeroized memory, and no error or log line carries
//! it or any key material.

#![forbid(unsafe_code)]

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock, PoisonError, Weak};
use std::time::{Duration, Instant};

use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::error::{Error as CkError, RvError};
use cryptoki::mechanism::eddsa::{EddsaParams, EddsaSignatureScheme};
use cryptoki::mechanism::Mechanism;
use cryptoki::object::{Attribute, AttributeType, KeyType, ObjectClass, ObjectHandle};
use cryptoki::session::{Session, SessionState, UserType};
use cryptoki::slot::Slot;
use cryptoki::types::AuthPin;
use p256::pkcs8::EncodePublicKey;
use rand::RngCore;
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use crate::backend::{Algorithm, BackendError, LocalBackend, NewKey};

/// Most sessions one token's pool opens at once.
pub const MAX_SESSIONS: usize = 8;
/// How long a call waits for a free session before giving up.
pub const SESSION_WAIT: Duration = Duration::from_secs(30);
/// Length of the random `CKA_ID` given to each key pair.
const ID_LEN: usize = 16;
/// `CKA_EC_PARAMS` of P-256: the DER OID 1.2.840.10045.3.1.7.
const P256_PARAMS: &[u8] = &[0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
/// `CKA_EC_PARAMS` of Ed25519 as the DER OID 1.3.101.112 (RFC 8410), which
/// SoftHSM 2.6 requires.
const ED25519_OID_PARAMS: &[u8] = &[0x06, 0x03, 0x2b, 0x65, 0x70];
/// `CKA_EC_PARAMS` of Ed25519 as the DER PrintableString `edwards25519`
/// (PKCS#11 3.0), tried when a token rejects the OID.
const ED25519_NAME_PARAMS: &[u8] = b"\x13\x0cedwards25519";

/// Where the HSM is and how to log in to it.
#[derive(Clone)]
pub struct Pkcs11Config {
    /// Path of the PKCS#11 module, e.g. `/usr/lib/softhsm/libsofthsm2.so`.
    pub module: PathBuf,
    /// Label of the token that holds the keys.
    pub token_label: String,
    /// The token's user PIN.
    pub pin: Zeroizing<String>,
}

impl fmt::Debug for Pkcs11Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pkcs11Config")
            .field("module", &self.module)
            .field("token_label", &self.token_label)
            .field("pin", &"<redacted>")
            .finish()
    }
}

impl Pkcs11Config {
    /// Reads the PIN from `file` (surrounding whitespace trimmed) or from the
    /// environment variable `env_var` (looked up with `env`), never from the
    /// command line. Exactly one of them must provide it.
    pub fn pin_from(
        file: Option<&Path>,
        env_var: Option<&str>,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Zeroizing<String>, BackendError> {
        let from_env = env_var.and_then(|name| env(name).map(|value| (name, Zeroizing::new(value))));
        match (file, from_env) {
            (Some(path), Some((name, _))) => Err(unavailable(format!(
                "PKCS#11 PIN: both the file {} and the environment variable {name} are set; set only one",
                path.display()
            ))),
            (Some(path), None) => read_pin_file(path),
            (None, Some((name, pin))) if pin.is_empty() => Err(unavailable(format!(
                "PKCS#11 PIN: the environment variable {name} is empty"
            ))),
            (None, Some((_, pin))) => Ok(pin),
            (None, None) => Err(unavailable(match env_var {
                Some(name) => {
                    format!("PKCS#11 PIN: the environment variable {name} is not set and no PIN file is configured")
                }
                None => "PKCS#11 PIN: no PIN source configured (a PIN file or an environment variable)".to_owned(),
            })),
        }
    }
}

fn read_pin_file(path: &Path) -> Result<Zeroizing<String>, BackendError> {
    let raw = std::fs::read_to_string(path)
        .map(Zeroizing::new)
        .map_err(|e| unavailable(format!("PKCS#11 PIN file {}: {e}", path.display())))?;
    let pin = Zeroizing::new(raw.trim().to_owned());
    if pin.is_empty() {
        return Err(unavailable(format!("PKCS#11 PIN file {} is empty", path.display())));
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if let Ok(meta) = std::fs::metadata(path) {
            if meta.permissions().mode() & 0o077 != 0 {
                tracing::warn!(path = %path.display(), "the PKCS#11 PIN file is readable by group or others");
            }
        }
    }
    Ok(pin)
}

/// A [`LocalBackend`] whose keys live in a PKCS#11 token.
pub struct Pkcs11Backend {
    token: Arc<Token>,
}

impl fmt::Debug for Pkcs11Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pkcs11Backend")
            .field("module", &self.token.module)
            .field("token_label", &self.token.label)
            .field("token_serial", &self.token.serial)
            .finish()
    }
}

impl Pkcs11Backend {
    /// Loads the module, finds the token labelled `config.token_label` and
    /// logs in as its user. A wrong PIN, a missing module or token are
    /// [`BackendError::Unavailable`].
    pub fn open(config: Pkcs11Config) -> Result<Pkcs11Backend, BackendError> {
        if config.pin.is_empty() {
            return Err(unavailable("PKCS#11 PIN is empty".to_owned()));
        }
        let (module, ctx) = load_module(&config.module)?;
        let (slot, serial) = find_token(&ctx, &module, &config.token_label, None)?;
        let key = (module.clone(), config.token_label.clone(), serial.clone());

        static TOKENS: OnceLock<Mutex<HashMap<TokenKey, Weak<Token>>>> = OnceLock::new();
        let mut tokens = lock(TOKENS.get_or_init(Mutex::default));
        if let Some(token) = tokens.get(&key).and_then(Weak::upgrade) {
            if !same_secret(token.pin.as_bytes(), config.pin.as_bytes()) {
                return Err(unavailable(format!(
                    "PKCS#11 token {:?} is already open in this process with a different PIN",
                    config.token_label
                )));
            }
            return Ok(Pkcs11Backend { token });
        }

        let session = ctx.open_rw_session(slot).map_err(|e| {
            unavailable(format!(
                "opening a session on token {:?}: {}",
                config.token_label,
                describe(&e)
            ))
        })?;
        match session.login(UserType::User, Some(&AuthPin::from(config.pin.as_str()))) {
            Ok(()) => {}
            Err(CkError::Pkcs11(RvError::UserAlreadyLoggedIn, _)) => {
                return Err(unavailable(format!(
                    "PKCS#11 token {:?} is already logged in by another user of {} in this process; \
                     its PIN cannot be checked",
                    config.token_label,
                    module.display()
                )))
            }
            Err(e) => {
                return Err(unavailable(format!(
                    "login to PKCS#11 token {:?} failed: {}",
                    config.token_label,
                    describe(&e)
                )))
            }
        }
        tracing::info!(module = %module.display(), token = %config.token_label, slot = %slot, serial = %serial,
            "PKCS#11 token opened");
        let token = Arc::new(Token {
            ctx,
            module,
            label: config.token_label,
            serial,
            pin: config.pin,
            slot: Mutex::new(slot),
            pool: Mutex::new(Pool {
                idle: vec![session],
                open: 1,
            }),
            freed: Condvar::new(),
        });
        tokens.retain(|_, t| t.strong_count() > 0);
        tokens.insert(key, Arc::downgrade(&token));
        Ok(Pkcs11Backend { token })
    }
}

impl LocalBackend for Pkcs11Backend {
    fn name(&self) -> &'static str {
        "pkcs11"
    }

    fn generate(&self, algorithm: Algorithm, label: &str) -> Result<NewKey, BackendError> {
        self.token
            .run("generating a key", |session| generate_in(session, algorithm, label))
    }

    fn sign(&self, algorithm: Algorithm, handle: &[u8], message: &[u8]) -> Result<Vec<u8>, BackendError> {
        if handle.is_empty() {
            return Err(BackendError::NotFound("empty PKCS#11 key handle".to_owned()));
        }
        self.token
            .run("signing", |session| sign_in(session, algorithm, handle, message))
    }

    fn delete(&self, handle: &[u8]) -> Result<(), BackendError> {
        if handle.is_empty() {
            return Err(BackendError::NotFound("empty PKCS#11 key handle".to_owned()));
        }
        self.token.run("deleting a key", |session| delete_in(session, handle))
    }
}

/// An open, logged-in token and its session pool.
struct Token {
    ctx: Pkcs11,
    module: PathBuf,
    label: String,
    serial: String,
    pin: Zeroizing<String>,
    slot: Mutex<Slot>,
    pool: Mutex<Pool>,
    freed: Condvar,
}

/// (canonical module path, token label, token serial number).
type TokenKey = (PathBuf, String, String);

struct Pool {
    idle: Vec<Session>,
    /// Sessions open, idle or leased.
    open: usize,
}

/// A session leased from the pool; goes back (or is closed if it broke) on drop.
struct Lease<'a> {
    token: &'a Token,
    session: Option<Session>,
    healthy: bool,
}

impl Drop for Lease<'_> {
    fn drop(&mut self) {
        if let Some(session) = self.session.take() {
            let mut pool = lock(&self.token.pool);
            if self.healthy {
                pool.idle.push(session);
                drop(pool);
            } else {
                pool.open -= 1;
                drop(pool);
                drop(session);
            }
            self.token.freed.notify_one();
        }
    }
}

/// Why an operation on a session failed.
enum OpError {
    Ck(CkError),
    Backend(BackendError),
}

impl From<CkError> for OpError {
    fn from(e: CkError) -> OpError {
        OpError::Ck(e)
    }
}

impl From<BackendError> for OpError {
    fn from(e: BackendError) -> OpError {
        OpError::Backend(e)
    }
}

impl Token {
    /// Runs `op` on a leased, logged-in session; retries once on a fresh
    /// session if the module says the session or the login is gone.
    fn run<T>(&self, what: &str, op: impl Fn(&Session) -> Result<T, OpError>) -> Result<T, BackendError> {
        let mut retried = false;
        loop {
            let mut lease = self.lease()?;
            let Some(session) = lease.session.as_ref() else {
                return Err(unavailable("PKCS#11 session lease is empty".to_owned()));
            };
            match op(session) {
                Ok(value) => return Ok(value),
                Err(OpError::Backend(e)) => return Err(e),
                Err(OpError::Ck(e)) => {
                    let dead = session_is_dead(&e);
                    lease.healthy = !dead;
                    if dead {
                        // Whatever killed this session (a token reset, an
                        // HSM restart) most likely killed the idle ones too.
                        self.close_idle();
                    }
                    let logged_out = matches!(e, CkError::Pkcs11(RvError::UserNotLoggedIn, _));
                    if !retried && (dead || logged_out) {
                        tracing::warn!(token = %self.label, error = %describe(&e), "PKCS#11 session lost; retrying");
                        retried = true;
                        continue;
                    }
                    return Err(map_error(what, &self.label, &e));
                }
            }
        }
    }

    /// Takes an idle session, or opens one if fewer than [`MAX_SESSIONS`]
    /// are open, or waits for one; then makes sure it is logged in.
    fn lease(&self) -> Result<Lease<'_>, BackendError> {
        let deadline = Instant::now() + SESSION_WAIT;
        let mut pool = lock(&self.pool);
        let session = loop {
            if let Some(session) = pool.idle.pop() {
                break session;
            }
            if pool.open < MAX_SESSIONS {
                pool.open += 1;
                drop(pool);
                match self.open_session() {
                    Ok(session) => break session,
                    Err(e) => {
                        lock(&self.pool).open -= 1;
                        self.freed.notify_one();
                        return Err(e);
                    }
                }
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(unavailable(format!(
                    "all {MAX_SESSIONS} sessions on PKCS#11 token {:?} stayed busy for {}s",
                    self.label,
                    SESSION_WAIT.as_secs()
                )));
            }
            pool = self
                .freed
                .wait_timeout(pool, deadline - now)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        };
        let mut lease = Lease {
            token: self,
            session: Some(session),
            healthy: true,
        };
        if let Some(session) = lease.session.as_ref() {
            if let Err(e) = self.ensure_login(session) {
                lease.healthy = !session_is_dead(&e);
                return Err(map_error("logging in", &self.label, &e));
            }
        }
        Ok(lease)
    }

    /// Closes every idle session.
    fn close_idle(&self) {
        let mut pool = lock(&self.pool);
        let idle = std::mem::take(&mut pool.idle);
        pool.open -= idle.len();
        drop(pool);
        drop(idle);
        self.freed.notify_all();
    }

    /// Opens a read-write session, finding the token's slot again if the
    /// module no longer knows the old one.
    fn open_session(&self) -> Result<Session, BackendError> {
        let slot = *lock(&self.slot);
        match self.ctx.open_rw_session(slot) {
            Ok(session) => Ok(session),
            Err(CkError::Pkcs11(
                RvError::SlotIdInvalid
                | RvError::TokenNotPresent
                | RvError::TokenNotRecognized
                | RvError::DeviceRemoved,
                _,
            )) => {
                let (slot, _) = find_token(&self.ctx, &self.module, &self.label, Some(&self.serial))?;
                tracing::warn!(token = %self.label, slot = %slot, "PKCS#11 token moved to another slot");
                *lock(&self.slot) = slot;
                self.ctx
                    .open_rw_session(slot)
                    .map_err(|e| map_error("opening a session", &self.label, &e))
            }
            Err(e) => Err(map_error("opening a session", &self.label, &e)),
        }
    }

    /// Logs the token in again if it was logged out (login state is shared by
    /// all of this process's sessions with the token).
    fn ensure_login(&self, session: &Session) -> Result<(), CkError> {
        match session.get_session_info()?.session_state() {
            SessionState::RoUser | SessionState::RwUser => Ok(()),
            _ => {
                tracing::warn!(token = %self.label, "PKCS#11 token was logged out; logging in again");
                match session.login(UserType::User, Some(&AuthPin::from(self.pin.as_str()))) {
                    Ok(()) | Err(CkError::Pkcs11(RvError::UserAlreadyLoggedIn, _)) => Ok(()),
                    Err(e) => Err(e),
                }
            }
        }
    }
}

/// What every private key Seal keeps in the token is, made there or
/// imported: a token object, private, sensitive, not extractable, for
/// signing only, under `id` and `label`.
fn private_template(key_type: KeyType, id: &[u8], label: &str) -> Vec<Attribute> {
    vec![
        Attribute::Class(ObjectClass::PRIVATE_KEY),
        Attribute::KeyType(key_type),
        Attribute::Token(true),
        Attribute::Private(true),
        Attribute::Sensitive(true),
        Attribute::Extractable(false),
        Attribute::Sign(true),
        Attribute::Derive(false),
        Attribute::Id(id.to_vec()),
        Attribute::Label(label.as_bytes().to_vec()),
    ]
}

/// Its public half: a public token object for verifying, on `curve`.
fn public_template(key_type: KeyType, curve: &[u8], id: &[u8], label: &str) -> Vec<Attribute> {
    vec![
        Attribute::Class(ObjectClass::PUBLIC_KEY),
        Attribute::KeyType(key_type),
        Attribute::Token(true),
        Attribute::Private(false),
        Attribute::Verify(true),
        Attribute::EcParams(curve.to_vec()),
        Attribute::Id(id.to_vec()),
        Attribute::Label(label.as_bytes().to_vec()),
    ]
}

/// Makes a key pair under a fresh random `CKA_ID` (fresh on a retry too, so
/// that a half-made pair can never share the ID of the one returned).
fn generate_in(session: &Session, algorithm: Algorithm, label: &str) -> Result<NewKey, OpError> {
    let mut id = [0u8; ID_LEN];
    rand::rngs::OsRng.fill_bytes(&mut id);
    let id = id.as_slice();
    let (mechanism, key_type, params): (Mechanism, KeyType, &[&[u8]]) = match algorithm {
        Algorithm::Ecdsa => (Mechanism::EccKeyPairGen, KeyType::EC, &[P256_PARAMS]),
        Algorithm::Ed25519 => (
            Mechanism::EccEdwardsKeyPairGen,
            KeyType::EC_EDWARDS,
            &[ED25519_OID_PARAMS, ED25519_NAME_PARAMS],
        ),
    };
    let private_template = private_template(key_type, id, label);
    for (i, curve) in params.iter().enumerate() {
        let public_template = public_template(key_type, curve, id, label);
        match session.generate_key_pair(&mechanism, &public_template, &private_template) {
            Ok((public, private)) => return finish_generate(session, algorithm, id, public, private),
            Err(CkError::Pkcs11(RvError::MechanismInvalid, _)) => {
                return Err(BackendError::Unsupported(algorithm.as_str()).into())
            }
            // This encoding of the curve is refused: try the next one.
            Err(CkError::Pkcs11(
                rv @ (RvError::CurveNotSupported | RvError::DomainParamsInvalid | RvError::AttributeValueInvalid),
                _,
            )) if i + 1 < params.len() => {
                tracing::debug!(
                    algorithm = algorithm.as_str(),
                    ?rv,
                    "PKCS#11 token refused a curve encoding"
                );
            }
            Err(CkError::Pkcs11(RvError::CurveNotSupported | RvError::DomainParamsInvalid, _)) => {
                return Err(BackendError::Unsupported(algorithm.as_str()).into())
            }
            Err(e) => return Err(e.into()),
        }
    }
    Err(BackendError::Unsupported(algorithm.as_str()).into())
}

/// Reads back what the token made: checks the private key is protected as
/// asked and turns `CKA_EC_POINT` into the public key TUF lists. On failure
/// the new objects are destroyed.
fn finish_generate(
    session: &Session,
    algorithm: Algorithm,
    id: &[u8],
    public: ObjectHandle,
    private: ObjectHandle,
) -> Result<NewKey, OpError> {
    let checked = check_private_key(session, private).and_then(|()| {
        let attrs = session.get_attributes(public, &[AttributeType::EcPoint])?;
        let point = attrs.iter().find_map(|a| match a {
            Attribute::EcPoint(p) => Some(p.as_slice()),
            _ => None,
        });
        let point = point.ok_or_else(|| crypto("the token returned no CKA_EC_POINT".to_owned()))?;
        public_from_ec_point(algorithm, point).map_err(|e| OpError::Backend(crypto(e)))
    });
    match checked {
        Ok(public_key) => Ok(NewKey {
            public: public_key,
            handle: id.to_vec(),
        }),
        Err(e) => {
            for object in [private, public] {
                if let Err(d) = session.destroy_object(object) {
                    tracing::warn!(error = %describe(&d), "could not destroy a rejected PKCS#11 key object");
                }
            }
            Err(e)
        }
    }
}

fn check_private_key(session: &Session, private: ObjectHandle) -> Result<(), OpError> {
    let wanted = [
        AttributeType::Token,
        AttributeType::Private,
        AttributeType::Sensitive,
        AttributeType::Extractable,
    ];
    let attrs = session.get_attributes(private, &wanted)?;
    let ok = attrs.len() == wanted.len()
        && attrs.iter().all(|a| {
            matches!(
                a,
                Attribute::Token(true)
                    | Attribute::Private(true)
                    | Attribute::Sensitive(true)
                    | Attribute::Extractable(false)
            )
        });
    if ok {
        Ok(())
    } else {
        Err(crypto(format!(
            "the token did not make the private key persistent, private, sensitive and non-extractable: {attrs:?}"
        ))
        .into())
    }
}

fn sign_in(session: &Session, algorithm: Algorithm, handle: &[u8], message: &[u8]) -> Result<Vec<u8>, OpError> {
    let key_type = match algorithm {
        Algorithm::Ecdsa => KeyType::EC,
        Algorithm::Ed25519 => KeyType::EC_EDWARDS,
    };
    let found = session.find_objects(&[
        Attribute::Class(ObjectClass::PRIVATE_KEY),
        Attribute::KeyType(key_type),
        Attribute::Id(handle.to_vec()),
    ])?;
    let key = match found.as_slice() {
        [key] => *key,
        [] => return Err(not_found(algorithm, handle).into()),
        more => {
            return Err(crypto(format!(
                "{} private keys on the token share CKA_ID {}",
                more.len(),
                hex::encode(handle)
            ))
            .into())
        }
    };
    let signed = match algorithm {
        Algorithm::Ecdsa => session.sign(&Mechanism::Ecdsa, key, &Sha256::digest(message)),
        Algorithm::Ed25519 => session.sign(
            &Mechanism::Eddsa(EddsaParams::new(EddsaSignatureScheme::Pure)),
            key,
            message,
        ),
    };
    let signature = match signed {
        Ok(signature) => signature,
        // Deleted between the lookup and the signature.
        Err(CkError::Pkcs11(RvError::KeyHandleInvalid | RvError::ObjectHandleInvalid, _)) => {
            return Err(not_found(algorithm, handle).into())
        }
        Err(e) => return Err(e.into()),
    };
    if signature.len() != 64 {
        return Err(crypto(format!(
            "the token returned a {}-byte {} signature, not 64 bytes",
            signature.len(),
            algorithm.as_str()
        ))
        .into());
    }
    Ok(signature)
}

fn delete_in(session: &Session, handle: &[u8]) -> Result<(), OpError> {
    let mut objects = Vec::new();
    for class in [ObjectClass::PRIVATE_KEY, ObjectClass::PUBLIC_KEY] {
        objects.extend(session.find_objects(&[Attribute::Class(class), Attribute::Id(handle.to_vec())])?);
    }
    if objects.is_empty() {
        return Err(BackendError::NotFound(format!("no PKCS#11 key with CKA_ID {}", hex::encode(handle))).into());
    }
    for object in objects {
        match session.destroy_object(object) {
            Ok(()) | Err(CkError::Pkcs11(RvError::ObjectHandleInvalid, _)) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// The public key as TUF lists it, from `CKA_EC_POINT`, which tokens return
/// either DER-wrapped in an OCTET STRING (SoftHSM, per the spec) or raw.
fn public_from_ec_point(algorithm: Algorithm, point: &[u8]) -> Result<Vec<u8>, String> {
    let candidates = der_octet_string(point).into_iter().chain([point]);
    match algorithm {
        Algorithm::Ecdsa => {
            for candidate in candidates {
                if let Ok(key) = p256::PublicKey::from_sec1_bytes(candidate) {
                    return key
                        .to_public_key_der()
                        .map(|der| der.as_bytes().to_vec())
                        .map_err(|e| format!("encoding the P-256 public key: {e}"));
                }
            }
            Err(format!("CKA_EC_POINT ({} bytes) is not a P-256 point", point.len()))
        }
        Algorithm::Ed25519 => {
            for candidate in candidates {
                if let Ok(bytes) = <[u8; 32]>::try_from(candidate) {
                    if ed25519_dalek::VerifyingKey::from_bytes(&bytes).is_ok() {
                        return Ok(bytes.to_vec());
                    }
                }
            }
            Err(format!(
                "CKA_EC_POINT ({} bytes) is not an Ed25519 public key",
                point.len()
            ))
        }
    }
}

/// The content of a DER OCTET STRING that spans all of `der`.
fn der_octet_string(der: &[u8]) -> Option<&[u8]> {
    let (&tag, rest) = der.split_first()?;
    let (&first, rest) = rest.split_first()?;
    if tag != 0x04 {
        return None;
    }
    let (len, content) = match first {
        0..=0x7f => (usize::from(first), rest),
        0x81 => {
            let (&len, rest) = rest.split_first()?;
            (usize::from(len), rest)
        }
        0x82 => {
            let (len, rest) = rest.split_at_checked(2)?;
            (usize::from(u16::from_be_bytes([len[0], len[1]])), rest)
        }
        _ => return None,
    };
    (content.len() == len).then_some(content)
}

/// Loads and initializes the module at `path` once per process.
fn load_module(path: &Path) -> Result<(PathBuf, Pkcs11), BackendError> {
    static MODULES: OnceLock<Mutex<HashMap<PathBuf, Pkcs11>>> = OnceLock::new();
    let canonical = path
        .canonicalize()
        .map_err(|e| unavailable(format!("PKCS#11 module {}: {e}", path.display())))?;
    let mut modules = lock(MODULES.get_or_init(Mutex::default));
    if let Some(ctx) = modules.get(&canonical) {
        return Ok((canonical, ctx.clone()));
    }
    let ctx = Pkcs11::new(&canonical)
        .map_err(|e| unavailable(format!("cannot load PKCS#11 module {}: {e}", canonical.display())))?;
    match ctx.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK)) {
        Ok(()) | Err(CkError::Pkcs11(RvError::CryptokiAlreadyInitialized, _)) => {}
        Err(e) => {
            return Err(unavailable(format!(
                "cannot initialize PKCS#11 module {}: {}",
                canonical.display(),
                describe(&e)
            )))
        }
    }
    modules.insert(canonical.clone(), ctx.clone());
    Ok((canonical, ctx))
}

/// The slot holding the one token labelled `label` (and, if given, with that
/// serial number), and the token's serial number.
fn find_token(ctx: &Pkcs11, module: &Path, label: &str, serial: Option<&str>) -> Result<(Slot, String), BackendError> {
    let fail = |e: CkError| unavailable(format!("listing the tokens of {}: {}", module.display(), describe(&e)));
    let mut labels = Vec::new();
    let mut found = Vec::new();
    for slot in ctx.get_slots_with_token().map_err(fail)? {
        let info = ctx.get_token_info(slot).map_err(fail)?;
        if info.label() == label && serial.is_none_or(|s| s == info.serial_number()) {
            found.push((slot, info.serial_number().to_owned()));
        }
        labels.push(info.label().to_owned());
    }
    match found.len() {
        1 => Ok(found.remove(0)),
        0 => Err(unavailable(format!(
            "no PKCS#11 token labelled {label:?} in {} (tokens: {labels:?})",
            module.display()
        ))),
        n => Err(unavailable(format!(
            "{n} PKCS#11 tokens in {} are labelled {label:?}; labels must be unique",
            module.display()
        ))),
    }
}

/// Errors after which a session is no use and the module may give a new one.
fn session_is_dead(e: &CkError) -> bool {
    matches!(
        e,
        CkError::Pkcs11(
            RvError::SessionHandleInvalid
                | RvError::SessionClosed
                | RvError::DeviceRemoved
                | RvError::DeviceError
                | RvError::TokenNotPresent,
            _
        )
    )
}

fn map_error(what: &str, label: &str, e: &CkError) -> BackendError {
    let message = format!("{what} on PKCS#11 token {label:?}: {}", describe(e));
    match e {
        CkError::Pkcs11(
            RvError::PinIncorrect
            | RvError::PinExpired
            | RvError::PinLocked
            | RvError::UserNotLoggedIn
            | RvError::UserAnotherAlreadyLoggedIn
            | RvError::UserPinNotInitialized
            | RvError::SessionHandleInvalid
            | RvError::SessionClosed
            | RvError::SessionCount
            | RvError::DeviceError
            | RvError::DeviceMemory
            | RvError::DeviceRemoved
            | RvError::TokenNotPresent
            | RvError::TokenNotRecognized
            | RvError::SlotIdInvalid
            | RvError::CryptokiNotInitialized
            | RvError::HostMemory
            | RvError::GeneralError,
            _,
        )
        | CkError::LibraryLoading(_) => BackendError::Unavailable(message),
        _ => BackendError::Crypto(message),
    }
}

/// `C_Login: PinIncorrect`: the function and the return value's name (the
/// `Display` of `RvError` is a paragraph of the spec).
fn describe(e: &CkError) -> String {
    match e {
        CkError::Pkcs11(rv, function) => format!("C_{function:?}: {rv:?}"),
        other => other.to_string(),
    }
}

fn not_found(algorithm: Algorithm, handle: &[u8]) -> BackendError {
    BackendError::NotFound(format!(
        "no {} private key with CKA_ID {} on the PKCS#11 token",
        algorithm.as_str(),
        hex::encode(handle)
    ))
}

fn unavailable(message: String) -> BackendError {
    BackendError::Unavailable(message)
}

fn crypto(message: String) -> BackendError {
    BackendError::Crypto(message)
}

/// Compares two secrets without an early exit on the first differing byte.
fn same_secret(a: &[u8], b: &[u8]) -> bool {
    let (a, b) = (Sha256::digest(a), Sha256::digest(b));
    a.iter().zip(b.iter()).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

#[path = "pkcs11_import.rs"]
mod import;

#[cfg(test)]
mod tests {
    use super::*;

    fn no_env(_: &str) -> Option<String> {
        None
    }

    #[test]
    fn pkcs11_pin_from_file_is_trimmed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pin");
        std::fs::write(&path, "  1234-5678\n").unwrap();
        let pin = Pkcs11Config::pin_from(Some(&path), Some("SEAL_PIN"), no_env).unwrap();
        assert_eq!(pin.as_str(), "1234-5678");
    }

    #[test]
    fn pkcs11_pin_from_env() {
        let env = |name: &str| (name == "SEAL_PIN").then(|| "9876".to_owned());
        let pin = Pkcs11Config::pin_from(None, Some("SEAL_PIN"), env).unwrap();
        assert_eq!(pin.as_str(), "9876");
    }

    #[test]
    fn pkcs11_pin_sources_are_exclusive_and_required() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pin");
        std::fs::write(&path, "1234\n").unwrap();
        let env = |_: &str| Some("9876".to_owned());

        let both = Pkcs11Config::pin_from(Some(&path), Some("SEAL_PIN"), env).unwrap_err();
        assert!(
            matches!(&both, BackendError::Unavailable(m) if m.contains("set only one")),
            "{both}"
        );
        assert!(!both.to_string().contains("1234") && !both.to_string().contains("9876"));

        let none = Pkcs11Config::pin_from(None, None, env).unwrap_err();
        assert!(
            matches!(&none, BackendError::Unavailable(m) if m.contains("no PIN source")),
            "{none}"
        );

        let unset = Pkcs11Config::pin_from(None, Some("SEAL_PIN"), no_env).unwrap_err();
        assert!(
            matches!(&unset, BackendError::Unavailable(m) if m.contains("SEAL_PIN is not set")),
            "{unset}"
        );

        let missing = Pkcs11Config::pin_from(Some(&dir.path().join("absent")), None, no_env).unwrap_err();
        assert!(matches!(missing, BackendError::Unavailable(_)));

        std::fs::write(&path, " \n").unwrap();
        let empty = Pkcs11Config::pin_from(Some(&path), None, no_env).unwrap_err();
        assert!(
            matches!(&empty, BackendError::Unavailable(m) if m.contains("empty")),
            "{empty}"
        );

        let empty_env = Pkcs11Config::pin_from(None, Some("SEAL_PIN"), |_: &str| Some(String::new())).unwrap_err();
        assert!(
            matches!(&empty_env, BackendError::Unavailable(m) if m.contains("empty")),
            "{empty_env}"
        );
    }

    #[test]
    fn pkcs11_config_debug_hides_the_pin() {
        let config = Pkcs11Config {
            module: "/m.so".into(),
            token_label: "t".into(),
            pin: Zeroizing::new("secret-pin".into()),
        };
        assert!(!format!("{config:?}").contains("secret-pin"));
    }

    #[test]
    fn pkcs11_ec_point_is_unwrapped_and_validated() {
        let secret = p256::SecretKey::from_slice(&[7u8; 32]).unwrap();
        let raw = secret.public_key().to_sec1_bytes().to_vec();
        assert_eq!(raw.len(), 65);
        let mut wrapped = vec![0x04, 0x41];
        wrapped.extend_from_slice(&raw);
        let spki = secret.public_key().to_public_key_der().unwrap().as_bytes().to_vec();
        assert_eq!(public_from_ec_point(Algorithm::Ecdsa, &wrapped).unwrap(), spki);
        assert_eq!(public_from_ec_point(Algorithm::Ecdsa, &raw).unwrap(), spki);
        assert!(public_from_ec_point(Algorithm::Ecdsa, &wrapped[..60]).is_err());

        let ed = ed25519_dalek::SigningKey::from_bytes(&[9u8; 32])
            .verifying_key()
            .to_bytes();
        let mut wrapped = vec![0x04, 0x20];
        wrapped.extend_from_slice(&ed);
        assert_eq!(public_from_ec_point(Algorithm::Ed25519, &wrapped).unwrap(), ed);
        assert_eq!(public_from_ec_point(Algorithm::Ed25519, &ed).unwrap(), ed);
        assert!(public_from_ec_point(Algorithm::Ed25519, &wrapped[..20]).is_err());
    }

    #[test]
    fn pkcs11_der_octet_string_needs_exact_length() {
        assert_eq!(der_octet_string(&[0x04, 0x02, 1, 2]), Some(&[1u8, 2][..]));
        assert_eq!(der_octet_string(&[0x04, 0x03, 1, 2]), None);
        assert_eq!(der_octet_string(&[0x03, 0x02, 1, 2]), None);
        let long = [&[0x04u8, 0x81, 0x80][..], &[0u8; 0x80]].concat();
        assert_eq!(der_octet_string(&long).map(<[u8]>::len), Some(0x80));
    }

    #[test]
    fn pkcs11_missing_module_is_unavailable() {
        let err = Pkcs11Backend::open(Pkcs11Config {
            module: "/nonexistent/libpkcs11.so".into(),
            token_label: "seal".into(),
            pin: Zeroizing::new("1234".into()),
        })
        .unwrap_err();
        assert!(
            matches!(&err, BackendError::Unavailable(m) if m.contains("/nonexistent/libpkcs11.so")),
            "{err}"
        );
    }
}
