//! `Pkcs11Backend` against a real SoftHSM2 token, its signatures checked the
//! way Notary clients check them (`seal_tuf::PublicKey::verify`).
//!
//! SoftHSM reads `SOFTHSM2_CONF` once, when the module is initialized, and
//! a process can initialize a module only once; so one test function sets
//! the variable, creates every token it needs, and then runs the scenarios
//! in turn, each on its own token. Skipped (with a message) when SoftHSM2
//! is not installed.

use std::path::PathBuf;
use std::time::Instant;

use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::error::{Error as CkError, RvError};
use cryptoki::object::{Attribute, AttributeType, ObjectClass};
use cryptoki::session::Session;
use seal_signer::backend::{Algorithm, BackendError, LocalBackend, NewKey};
use seal_signer::pkcs11::{Pkcs11Backend, Pkcs11Config};
use seal_signer::testing::{softhsm_conf, softhsm_init_token, SOFTHSM_MODULE as MODULE};
use seal_tuf::PublicKey;
use zeroize::Zeroizing;

const PIN: &str = "2468-user-pin";
const SO_PIN: &str = "1357-so-pin";
const TOKENS: [&str; 6] = [
    "seal-sign",
    "seal-restart",
    "seal-pin",
    "seal-delete",
    "seal-concurrent",
    "seal-relogin",
];
const ALGORITHMS: [Algorithm; 2] = [Algorithm::Ecdsa, Algorithm::Ed25519];

struct SoftHsm {
    _dir: tempfile::TempDir,
    conf: PathBuf,
}

impl SoftHsm {
    /// Writes a private SoftHSM configuration and points this process at it,
    /// before anything loads the module; `None` if SoftHSM2 is not installed.
    fn start() -> Option<SoftHsm> {
        let dir = tempfile::tempdir().unwrap();
        let conf = softhsm_conf(dir.path())?;
        // Set before any thread of this binary touches the module.
        std::env::set_var("SOFTHSM2_CONF", &conf);
        Some(SoftHsm { _dir: dir, conf })
    }

    fn init_token(&self, label: &str) {
        softhsm_init_token(&self.conf, label, PIN, SO_PIN);
    }
}

fn config(label: &str, pin: &str) -> Pkcs11Config {
    Pkcs11Config {
        module: MODULE.into(),
        token_label: label.to_owned(),
        pin: Zeroizing::new(pin.to_owned()),
    }
}

fn open(label: &str) -> Pkcs11Backend {
    Pkcs11Backend::open(config(label, PIN)).unwrap()
}

fn method(algorithm: Algorithm) -> &'static str {
    match algorithm {
        Algorithm::Ecdsa => "ecdsa",
        Algorithm::Ed25519 => "eddsa",
    }
}

/// Verifies as a Notary client does: the listed public key, the signature method.
fn verify(algorithm: Algorithm, key: &NewKey, message: &[u8], signature: &[u8]) {
    let public = PublicKey::new(algorithm.key_type(), key.public.clone()).unwrap();
    public.verify(method(algorithm), message, signature).unwrap();
}

/// A session of the test's own on the token, to look at objects without
/// going through the backend. It shares the process's login state.
fn inspect(label: &str) -> Session {
    let ctx = Pkcs11::new(MODULE).unwrap();
    match ctx.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK)) {
        Ok(()) | Err(CkError::Pkcs11(RvError::CryptokiAlreadyInitialized, _)) => {}
        Err(e) => panic!("C_Initialize: {e}"),
    }
    let slot = ctx
        .get_slots_with_token()
        .unwrap()
        .into_iter()
        .find(|s| ctx.get_token_info(*s).unwrap().label() == label)
        .unwrap();
    ctx.open_ro_session(slot).unwrap()
}

#[test]
fn pkcs11_backend_on_softhsm() {
    let Some(hsm) = SoftHsm::start() else {
        return;
    };
    // SoftHSM lists the tokens it finds when initialized: make them all first.
    for label in TOKENS {
        hsm.init_token(label);
    }
    generates_in_token_and_signs_like_notary();
    restart_signs_with_existing_keys();
    wrong_pin_and_unknown_token_are_unavailable();
    delete_then_sign_is_not_found();
    concurrent_signing();
    logs_in_again_after_logout();
}

fn generates_in_token_and_signs_like_notary() {
    let backend = open("seal-sign");
    assert_eq!(backend.name(), "pkcs11");
    for algorithm in ALGORITHMS {
        let label = format!("docker.io/library/alpine/{}", algorithm.as_str());
        let key = backend.generate(algorithm, &label).unwrap();
        assert_eq!(key.handle.len(), 16);
        match algorithm {
            // DER SubjectPublicKeyInfo of an uncompressed P-256 point.
            Algorithm::Ecdsa => assert_eq!(key.public.len(), 91, "{}", hex::encode(&key.public)),
            Algorithm::Ed25519 => assert_eq!(key.public.len(), 32),
        }

        let message = br#"{"_type":"Timestamp","version":1}"#;
        let signature = backend.sign(algorithm, &key.handle, message).unwrap();
        assert_eq!(signature.len(), 64);
        verify(algorithm, &key, message, &signature);
        // The check can fail: another message does not verify.
        let public = PublicKey::new(algorithm.key_type(), key.public.clone()).unwrap();
        assert!(public.verify(method(algorithm), b"other", &signature).is_err());

        // The key is of one algorithm only.
        let other = if algorithm == Algorithm::Ecdsa {
            Algorithm::Ed25519
        } else {
            Algorithm::Ecdsa
        };
        let err = backend.sign(other, &key.handle, message).unwrap_err();
        assert!(matches!(err, BackendError::NotFound(_)), "{err}");

        // Latency, for the eye (not asserted).
        let rounds = 200u32;
        let start = Instant::now();
        let signatures: Vec<Vec<u8>> = (0..rounds)
            .map(|i| {
                backend
                    .sign(algorithm, &key.handle, format!("message {i}").as_bytes())
                    .unwrap()
            })
            .collect();
        let each = start.elapsed() / rounds;
        println!(
            "softhsm {} sign: {each:?} per signature ({rounds} in a row)",
            algorithm.as_str()
        );
        for (i, signature) in signatures.iter().enumerate() {
            verify(algorithm, &key, format!("message {i}").as_bytes(), signature);
        }

        check_objects("seal-sign", &key, &label);
    }
}

/// Reads the token's objects back with a session of the test's own.
fn check_objects(token: &str, key: &NewKey, label: &str) {
    let session = inspect(token);
    let private = session
        .find_objects(&[
            Attribute::Class(ObjectClass::PRIVATE_KEY),
            Attribute::Id(key.handle.clone()),
        ])
        .unwrap();
    let public = session
        .find_objects(&[
            Attribute::Class(ObjectClass::PUBLIC_KEY),
            Attribute::Id(key.handle.clone()),
        ])
        .unwrap();
    assert_eq!((private.len(), public.len()), (1, 1));
    let attrs = session
        .get_attributes(
            private[0],
            &[
                AttributeType::Sensitive,
                AttributeType::Extractable,
                AttributeType::AlwaysSensitive,
                AttributeType::NeverExtractable,
                AttributeType::Local,
                AttributeType::Token,
                AttributeType::Private,
                AttributeType::Sign,
                AttributeType::Label,
                AttributeType::Value,
            ],
        )
        .unwrap();
    let has = |wanted: &Attribute| attrs.iter().any(|a| a == wanted);
    for wanted in [
        Attribute::Sensitive(true),
        Attribute::Extractable(false),
        Attribute::AlwaysSensitive(true),
        Attribute::NeverExtractable(true),
        Attribute::Local(true),
        Attribute::Token(true),
        Attribute::Private(true),
        Attribute::Sign(true),
        Attribute::Label(label.as_bytes().to_vec()),
    ] {
        assert!(has(&wanted), "private key lacks {wanted:?}: {attrs:?}");
    }
    // The token refuses to reveal the private value.
    assert!(!attrs.iter().any(|a| matches!(a, Attribute::Value(_))), "{attrs:?}");
}

fn restart_signs_with_existing_keys() {
    let first = open("seal-restart");
    let keys: Vec<(Algorithm, NewKey)> = ALGORITHMS
        .iter()
        .map(|&a| (a, first.generate(a, &format!("restart/{}", a.as_str())).unwrap()))
        .collect();

    // A second open while the first is alive shares its login.
    let second = open("seal-restart");
    for (algorithm, key) in &keys {
        let signature = second.sign(*algorithm, &key.handle, b"while alive").unwrap();
        verify(*algorithm, key, b"while alive", &signature);
    }
    drop(first);
    drop(second);

    // All sessions closed (the token is logged out): a restart logs in afresh.
    let restarted = open("seal-restart");
    for (algorithm, key) in &keys {
        let signature = restarted.sign(*algorithm, &key.handle, b"after restart").unwrap();
        verify(*algorithm, key, b"after restart", &signature);
    }
}

fn wrong_pin_and_unknown_token_are_unavailable() {
    let wrong = Pkcs11Backend::open(config("seal-pin", "0000-wrong")).unwrap_err();
    assert!(
        matches!(&wrong, BackendError::Unavailable(m) if m.contains("PinIncorrect") && m.contains("seal-pin")),
        "{wrong}"
    );
    assert!(!wrong.to_string().contains("0000-wrong"));

    let unknown = Pkcs11Backend::open(config("no-such-token", PIN)).unwrap_err();
    assert!(
        matches!(&unknown, BackendError::Unavailable(m) if m.contains("no-such-token") && m.contains("seal-pin")),
        "{unknown}"
    );

    let empty = Pkcs11Backend::open(config("seal-pin", "")).unwrap_err();
    assert!(matches!(empty, BackendError::Unavailable(_)), "{empty}");

    // While the token is logged in, a wrong PIN is still refused.
    let backend = open("seal-pin");
    let wrong = Pkcs11Backend::open(config("seal-pin", "0000-wrong")).unwrap_err();
    assert!(
        matches!(&wrong, BackendError::Unavailable(m) if m.contains("different PIN")),
        "{wrong}"
    );
    let key = backend.generate(Algorithm::Ecdsa, "pin").unwrap();
    backend.sign(Algorithm::Ecdsa, &key.handle, b"still works").unwrap();
}

fn delete_then_sign_is_not_found() {
    let backend = open("seal-delete");
    for algorithm in ALGORITHMS {
        let key = backend.generate(algorithm, "to-delete").unwrap();
        let keep = backend.generate(algorithm, "to-keep").unwrap();
        backend.sign(algorithm, &key.handle, b"before").unwrap();

        backend.delete(&key.handle).unwrap();
        let err = backend.sign(algorithm, &key.handle, b"after").unwrap_err();
        assert!(
            matches!(&err, BackendError::NotFound(m) if m.contains(&hex::encode(&key.handle))),
            "{err}"
        );
        let err = backend.delete(&key.handle).unwrap_err();
        assert!(matches!(err, BackendError::NotFound(_)), "{err}");

        // Both objects are gone; the other key is untouched.
        let session = inspect("seal-delete");
        assert!(session
            .find_objects(&[Attribute::Id(key.handle.clone())])
            .unwrap()
            .is_empty());
        assert_eq!(
            session
                .find_objects(&[Attribute::Id(keep.handle.clone())])
                .unwrap()
                .len(),
            2
        );
        drop(session);
        backend.sign(algorithm, &keep.handle, b"kept").unwrap();
    }
    let err = backend.sign(Algorithm::Ecdsa, &[], b"x").unwrap_err();
    assert!(matches!(err, BackendError::NotFound(_)), "{err}");
}

fn concurrent_signing() {
    let backend = open("seal-concurrent");
    let keys: Vec<(Algorithm, NewKey)> = ALGORITHMS
        .iter()
        .map(|&a| (a, backend.generate(a, "concurrent").unwrap()))
        .collect();
    // 4 threads as the service's blocking pool would call, then more threads
    // than the pool has sessions (they wait for one).
    for threads in [4, 12] {
        let rounds = 50;
        let start = Instant::now();
        let signed: Vec<Vec<(usize, Vec<u8>)>> = std::thread::scope(|scope| {
            let workers: Vec<_> = (0..threads)
                .map(|thread| {
                    let (backend, keys) = (&backend, &keys);
                    scope.spawn(move || {
                        (0..rounds)
                            .map(|i| {
                                let (algorithm, key) = &keys[(thread + i) % keys.len()];
                                let message = format!("thread {thread} message {i}");
                                (i, backend.sign(*algorithm, &key.handle, message.as_bytes()).unwrap())
                            })
                            .collect()
                    })
                })
                .collect();
            workers.into_iter().map(|w| w.join().unwrap()).collect()
        });
        let elapsed = start.elapsed();
        for (thread, signatures) in signed.iter().enumerate() {
            for (i, signature) in signatures {
                let (algorithm, key) = &keys[(thread + i) % keys.len()];
                verify(
                    *algorithm,
                    key,
                    format!("thread {thread} message {i}").as_bytes(),
                    signature,
                );
            }
        }
        println!(
            "softhsm {threads} threads x {rounds} mixed signatures: {elapsed:?} ({:?} per signature)",
            elapsed / (threads * rounds) as u32
        );
    }
}

fn logs_in_again_after_logout() {
    let backend = open("seal-relogin");
    let key = backend.generate(Algorithm::Ed25519, "relogin").unwrap();
    // Logging out one session logs out every session of the process.
    let session = inspect("seal-relogin");
    session.logout().unwrap();
    drop(session);
    let signature = backend.sign(Algorithm::Ed25519, &key.handle, b"after logout").unwrap();
    verify(Algorithm::Ed25519, &key, b"after logout", &signature);
}
