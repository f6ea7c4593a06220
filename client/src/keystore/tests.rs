//! Key store tests: Notary's fixture keys, round trips checked with the
//! openssl binary, imports, passphrase handling, damaged files.

use std::path::PathBuf;
use std::process::Command;
use std::time::Instant;

use zeroize::Zeroizing;

use super::*;

const GUN: &str = "example.com/interop/app";
const ROOT_ID: &str = "ebdd8e3b6b65e2638700ae9e64b6de9a95853acb8242cecf882a4ed3ec518bba";
const TARGETS_ID: &str = "0ba3b4050c97cad994d8e58936e0ee45136b9711105b8f202cdfab5500621701";
const DELEGATION_ID: &str = "e2069a2d6863a8a5e1f061d8f9549ff3678315ffe94e3d8c89331c16480d1fd8";

/// (file stem, passphrase, role header, gun header) of the fixture keys.
const FIXTURE_KEYS: [(&str, &str, &str, Option<&str>); 3] = [
    (ROOT_ID, "rootpass", "root", None),
    (TARGETS_ID, "targetspass", "targets", Some(GUN)),
    (DELEGATION_ID, "delegpass", "targets/releases", None),
];

/// `keys/example.com_interop_app` of the Notary fixtures, or `None` (and a
/// message) when they are not here.
fn fixture_keys_dir() -> Option<PathBuf> {
    seal_testkit::notary_fixtures().map(|d| d.join("keys/example.com_interop_app"))
}

fn openssl_available() -> bool {
    let ok = Command::new("openssl")
        .arg("version")
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if !ok {
        eprintln!("openssl binary not installed: openssl cross-check skipped");
    }
    ok
}

fn fixture_passphrases() -> StaticPassphrases {
    StaticPassphrases::new([
        ("root", "rootpass"),
        ("targets", "targetspass"),
        ("delegation", "delegpass"),
    ])
}

fn temp_store() -> (tempfile::TempDir, KeyStore) {
    let dir = tempfile::tempdir().unwrap();
    let store = KeyStore::open(dir.path()).unwrap();
    (dir, store)
}

/// The DER body of a stored key file.
fn der_of(pem: &[u8]) -> Vec<u8> {
    pem::parse_all(pem).unwrap().remove(0).der.to_vec()
}

/// The file without its headers: OpenSSL refuses PEM headers other than
/// `Proc-Type` ("not proc type"), for Notary's own files too.
fn without_headers(pem: &[u8]) -> String {
    std::str::from_utf8(pem)
        .unwrap()
        .lines()
        .filter(|l| !l.contains(": ") && !l.is_empty())
        .map(|l| format!("{l}\n"))
        .collect()
}

fn run(cmd: &mut Command) -> std::process::Output {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

#[test]
fn fixture_keys_decrypt_to_the_ids_they_are_named_by() {
    let Some(dir) = fixture_keys_dir() else { return };
    for (id, pass, role, gun) in FIXTURE_KEYS {
        let bytes = fs::read(dir.join(format!("{id}.key"))).unwrap();
        let (key, headers) = decrypt_pem(&bytes, pass).unwrap();
        assert_eq!(key.public_key().id(), id, "{role} key");
        assert!(matches!(key, PrivateKey::Ecdsa(_)));
        assert_eq!(headers.role.as_deref(), Some(role));
        assert_eq!(headers.gun.as_deref(), gun);
        // Notary wrote 2048 iterations, an 8-byte salt, no PRF field.
        assert_eq!(envelope::pbkdf2_params_of(&der_of(&bytes)), (8, 2048, true));
        // Seal's PEM writer gives back Notary's bytes exactly.
        let block = pem::parse_all(&bytes).unwrap().remove(0);
        let headers: Vec<(&str, &str)> = block.headers.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        assert_eq!(
            pem::encode(&block.label, &headers, &block.der).as_bytes(),
            bytes.as_slice()
        );
    }
}

#[test]
fn fixture_key_with_a_wrong_passphrase_is_refused() {
    let Some(dir) = fixture_keys_dir() else { return };
    let bytes = fs::read(dir.join(format!("{TARGETS_ID}.key"))).unwrap();
    let err = decrypt_pem(&bytes, "rootpass").unwrap_err();
    assert!(
        matches!(&err, KeyStoreError::WrongPassphrase { role, .. } if role == "targets"),
        "{err:?}"
    );
    assert_eq!(err.to_string(), "wrong passphrase for targets key");
}

#[test]
fn list_and_load_a_copy_of_notarys_private_dir() {
    let Some(dir) = fixture_keys_dir() else { return };
    let (trust, store) = temp_store();
    for (id, ..) in FIXTURE_KEYS {
        let name = format!("{id}.key");
        fs::copy(dir.join(&name), store.dir().join(&name)).unwrap();
    }
    fs::write(store.dir().join("README"), "not a key").unwrap();
    fs::create_dir(store.dir().join("old_layout.key")).unwrap();
    let listed = store.list().unwrap();
    let expected: Vec<StoredKey> = {
        let mut v: Vec<StoredKey> = FIXTURE_KEYS
            .iter()
            .map(|(id, _, role, gun)| StoredKey {
                id: id.to_string(),
                role: role.to_string(),
                gun: gun.map(str::to_owned),
                path: store.dir().join(format!("{id}.key")),
            })
            .collect();
        v.sort();
        v
    };
    assert_eq!(listed, expected);
    assert_eq!(listed[0].id, TARGETS_ID, "sorted by ID");

    let ids = |keys: Vec<StoredKey>| keys.into_iter().map(|k| k.id).collect::<Vec<_>>();
    assert_eq!(ids(store.keys_for("targets", Some(GUN)).unwrap()), [TARGETS_ID]);
    assert!(store.keys_for("targets", Some("other/gun")).unwrap().is_empty());
    assert_eq!(ids(store.keys_for("root", Some("any/gun")).unwrap()), [ROOT_ID]);
    assert_eq!(
        ids(store.keys_for("targets/releases", Some(GUN)).unwrap()),
        [DELEGATION_ID]
    );

    let mut pass = fixture_passphrases();
    for (id, _, role, _) in FIXTURE_KEYS {
        let (key, stored) = store.load(id, &mut pass).unwrap();
        assert_eq!(key.public_key().id(), id);
        assert_eq!(stored.role, role);
    }
    assert_eq!(store.find(ROOT_ID).unwrap().unwrap().role, "root");

    // A .key file that is not a key is reported, not skipped.
    fs::write(
        store.dir().join("releases-delegation.key"),
        fs::read(dir.join("releases-delegation.key")).unwrap(),
    )
    .unwrap();
    let err = store.list().unwrap_err();
    assert!(matches!(&err, KeyStoreError::Malformed { what, .. } if what.ends_with("releases-delegation.key")));
    let bad = store.dir().join(format!("{}.key", "a".repeat(64)));
    fs::remove_file(store.dir().join("releases-delegation.key")).unwrap();
    fs::write(&bad, "-----BEGIN ENCRYPTED PRIVATE KEY-----\nAAAA\n").unwrap();
    assert!(matches!(store.list(), Err(KeyStoreError::Malformed { .. })));
    drop(trust);
}

#[test]
fn generated_keys_round_trip_through_the_store() {
    let (_trust, store) = temp_store();
    let mut rng = rand::rngs::OsRng;
    let ecdsa = PrivateKey::generate_ecdsa(&mut rng);
    let ed25519 = PrivateKey::generate_ed25519(&mut rng);
    let mut pass = StaticPassphrases::new([("targets", "targets-pass"), ("delegation", "deleg-pass")]);
    let a = store
        .add(&ecdsa, "targets", Some("example.com/app"), &mut pass)
        .unwrap();
    let b = store.add(&ed25519, "targets/releases", None, &mut pass).unwrap();
    assert_eq!(a.id, ecdsa.public_key().id());
    assert_eq!(a.path, store.dir().join(format!("{}.key", a.id)));
    let mut listed = vec![a.clone(), b.clone()];
    listed.sort();
    assert_eq!(store.list().unwrap(), listed);

    for (key, stored) in [(&ecdsa, &a), (&ed25519, &b)] {
        let (loaded, s) = store.load(&stored.id, &mut pass).unwrap();
        assert_eq!(&s, stored);
        let sig = loaded.sign(b"signed bytes");
        let public = key.public_key();
        public.verify(&sig.method, b"signed bytes", &sig.sig).unwrap();
        assert_eq!(sig.keyid, public.id());

        let text = fs::read_to_string(&stored.path).unwrap();
        assert!(text.starts_with("-----BEGIN ENCRYPTED PRIVATE KEY-----\n"));
        assert!(text.contains(&format!("role: {}\n", stored.role)));
        assert_eq!(text.contains("gun: "), stored.gun.is_some());
        assert_eq!(
            envelope::pbkdf2_params_of(&der_of(text.as_bytes())),
            (16, PBKDF2_ITERATIONS, true)
        );
    }
    assert!(fs::read_to_string(&a.path)
        .unwrap()
        .contains("gun: example.com/app\nrole: targets\n\n"));

    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(fs::metadata(store.dir()).unwrap().permissions().mode() & 0o777, 0o700);
        assert_eq!(fs::metadata(&a.path).unwrap().permissions().mode() & 0o777, 0o600);
    }
    // Nothing but the two key files is left behind.
    assert_eq!(fs::read_dir(store.dir()).unwrap().count(), 2);
}

#[test]
fn openssl_reads_what_seal_writes() {
    if !openssl_available() {
        return;
    }
    let (trust, store) = temp_store();
    let key = PrivateKey::generate_ecdsa(&mut rand::rngs::OsRng);
    let mut pass = StaticPassphrases::new([("targets", "openssl-pass")]);
    let stored = store.add(&key, "targets", Some("example.com/app"), &mut pass).unwrap();
    let plain = trust.path().join("stripped.pem");
    fs::write(&plain, without_headers(&fs::read(&stored.path).unwrap())).unwrap();

    // The structure: PBES2, PBKDF2 with a 16-byte salt and 100000
    // iterations and no PRF field (HMAC-SHA1, all Notary reads), AES-256-CBC.
    let parsed = run(Command::new("openssl").arg("asn1parse").arg("-in").arg(&plain));
    let parsed = String::from_utf8(parsed.stdout).unwrap();
    for needle in [":PBES2", ":PBKDF2", ":aes-256-cbc", "INTEGER           :0186A0"] {
        assert!(parsed.contains(needle), "{needle} missing in\n{parsed}");
    }
    assert!(!parsed.contains("hmacWith"), "a PRF field was written:\n{parsed}");
    let salt_line = parsed.lines().find(|l| l.contains("prim: OCTET STRING")).unwrap();
    assert!(salt_line.contains("l=  16 "), "{salt_line}");

    // OpenSSL decrypts it (PBKDF2-HMAC-SHA1 by default) to standard PKCS#8.
    let out = run(Command::new("openssl")
        .args(["pkcs8", "-passin", "pass:openssl-pass", "-in"])
        .arg(&plain));
    let (back, headers) = decrypt_pem(&out.stdout, "").unwrap();
    assert_eq!(back.public_key(), key.public_key());
    assert_eq!(headers, Headers::default());
}

#[test]
fn openssl_decrypts_seals_ed25519_key_to_notarys_encoding() {
    if !openssl_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let key = PrivateKey::generate_ed25519(&mut rand::rngs::OsRng);
    let pem = encrypt_pem(&key, "ed-pass", "targets/releases", None).unwrap();
    let der = der_of(pem.as_bytes());
    let info = pkcs8::EncryptedPrivateKeyInfo::try_from(der.as_slice()).unwrap();
    let pkcs5::EncryptionScheme::Pbes2(params) = info.encryption_algorithm else {
        panic!("not PBES2")
    };
    let (pkcs5::pbes2::Kdf::Pbkdf2(kdf), pkcs5::pbes2::EncryptionScheme::Aes256Cbc { iv }) =
        (params.kdf, params.encryption)
    else {
        panic!("not PBKDF2 + AES-256-CBC")
    };
    // Derive with OpenSSL's own PBKDF2 over HMAC-SHA1, as Notary does...
    let derived = run(Command::new("openssl").args([
        "kdf",
        "-keylen",
        "32",
        "-kdfopt",
        "digest:SHA1",
        "-kdfopt",
        "pass:ed-pass",
        "-kdfopt",
        &format!("hexsalt:{}", hex::encode(kdf.salt)),
        "-kdfopt",
        &format!("iter:{}", kdf.iteration_count),
        "PBKDF2",
    ]));
    let aes_key: String = String::from_utf8(derived.stdout)
        .unwrap()
        .trim()
        .replace(':', "")
        .to_lowercase();
    assert_eq!(aes_key.len(), 64);
    let ct = dir.path().join("ct.bin");
    let pt = dir.path().join("pt.der");
    fs::write(&ct, info.encrypted_data).unwrap();
    // ...decrypt with OpenSSL's AES-256-CBC...
    run(Command::new("openssl")
        .args([
            "enc",
            "-d",
            "-aes-256-cbc",
            "-K",
            &aes_key,
            "-iv",
            &hex::encode(iv),
            "-in",
        ])
        .arg(&ct)
        .arg("-out")
        .arg(&pt));
    let plain = Zeroizing::new(fs::read(&pt).unwrap());
    // ...and find Notary's ed25519 PKCS#8: its OID, public ‖ seed ‖ public.
    assert_eq!(plain.as_slice(), envelope::private_key_to_der(&key).unwrap().as_slice());
    let parsed = run(Command::new("openssl")
        .args(["asn1parse", "-inform", "DER", "-in"])
        .arg(&pt));
    let parsed = String::from_utf8(parsed.stdout).unwrap();
    assert!(parsed.contains(":1.3.6.1.4.1.11591.15.1"), "{parsed}");
    assert!(parsed.contains("hl=2 l=  96 prim: OCTET STRING"), "{parsed}");
}

#[test]
fn keys_openssl_encrypts_with_sha1_or_sha256_prf_are_read() {
    if !openssl_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let key = PrivateKey::generate_ecdsa(&mut rand::rngs::OsRng);
    let plain = dir.path().join("plain.pem");
    fs::write(&plain, pem::encode("PRIVATE KEY", &[], &key.to_pkcs8_der().unwrap())).unwrap();
    for prf in ["hmacWithSHA1", "hmacWithSHA256"] {
        let out = run(Command::new("openssl")
            .args(["pkcs8", "-topk8", "-v2", "aes-256-cbc", "-v2prf", prf, "-iter", "3000"])
            .args(["-passout", "pass:from-openssl", "-in"])
            .arg(&plain));
        let (back, _) = decrypt_pem(&out.stdout, "from-openssl").unwrap();
        assert_eq!(back.public_key(), key.public_key(), "{prf}");
        assert!(matches!(
            decrypt_pem(&out.stdout, "not-it"),
            Err(KeyStoreError::WrongPassphrase { .. })
        ));
    }
}

#[test]
fn importing_openssls_sec1_delegation_key() {
    let Some(dir) = fixture_keys_dir() else { return };
    let (_trust, store) = temp_store();
    let sec1 = fs::read(dir.join("releases-delegation.key")).unwrap();
    let mut pass = StaticPassphrases::new([("delegation", "new-deleg-pass")]);
    let err = store.import_pem(&sec1, None, None, &mut pass).unwrap_err();
    assert!(matches!(err, KeyStoreError::MissingRole), "{err:?}");
    let stored = store
        .import_pem(&sec1, Some("targets/releases"), None, &mut pass)
        .unwrap();
    assert_eq!(stored.role, "targets/releases");
    assert_eq!(stored.gun, None);
    // The ID `delegation add` prints for the matching certificate: the
    // canonical ID of the plain key inside it.
    let crt = fs::read(dir.join("releases-delegation.crt")).unwrap();
    let cert_key = seal_tuf::PublicKey::new(seal_tuf::KeyType::EcdsaX509, crt).unwrap();
    assert_eq!(stored.id, cert_key.canonical_id());
    let (ours, _) = store.load(&stored.id, &mut pass).unwrap();
    assert_eq!(ours.public_key().id(), stored.id);
    if stored.id == DELEGATION_ID {
        // The same key Notary stored after its own `key import`.
        let notary_file = fs::read(dir.join(format!("{DELEGATION_ID}.key"))).unwrap();
        let (notarys, _) = decrypt_pem(&notary_file, "delegpass").unwrap();
        assert_eq!(ours.public_key(), notarys.public_key());
    } else {
        // As shipped, releases-delegation.{key,crt} are not the pair of the
        // recorded run (whose key, in e2069a2d….key and in targets.json, is
        // another P-256 key): `openssl ec -pubout` agrees with this ID.
        eprintln!(
            "note: fixture releases-delegation.key is key {}, not the run's {DELEGATION_ID}",
            stored.id
        );
    }
    assert!(matches!(
        store.import_pem(&sec1, Some("targets/releases"), None, &mut pass),
        Err(KeyStoreError::AlreadyExists { .. })
    ));
}

#[test]
fn importing_an_encrypted_notary_key_reencrypts_it_with_its_headers() {
    let Some(dir) = fixture_keys_dir() else { return };
    let (_trust, store) = temp_store();
    let notary_file = fs::read(dir.join(format!("{TARGETS_ID}.key"))).unwrap();
    let calls = std::cell::RefCell::new(Vec::new());
    let mut pass = |role: &str, id: &str, gun: Option<&str>, purpose: Purpose, _attempt: u32| {
        calls
            .borrow_mut()
            .push((role.to_owned(), id.to_owned(), gun.map(str::to_owned), purpose));
        Ok(Zeroizing::new(match purpose {
            Purpose::Decrypt => "targetspass".to_owned(),
            Purpose::Create => "a new passphrase".to_owned(),
        }))
    };
    let stored = store.import_pem(&notary_file, None, None, &mut pass).unwrap();
    assert_eq!(stored.id, TARGETS_ID);
    assert_eq!(stored.role, "targets");
    assert_eq!(stored.gun.as_deref(), Some(GUN));
    let calls = calls.into_inner();
    assert_eq!(calls.len(), 2);
    assert_eq!(
        calls[0],
        ("targets".into(), String::new(), Some(GUN.into()), Purpose::Decrypt)
    );
    assert_eq!(
        calls[1],
        ("targets".into(), TARGETS_ID.into(), Some(GUN.into()), Purpose::Create)
    );
    let (key, _) = store
        .load(
            TARGETS_ID,
            &mut StaticPassphrases::new([("targets", "a new passphrase")]),
        )
        .unwrap();
    assert_eq!(key.public_key().id(), TARGETS_ID);
    assert_eq!(
        envelope::pbkdf2_params_of(&der_of(&store.export_pem(TARGETS_ID).unwrap())).1,
        PBKDF2_ITERATIONS
    );
}

#[test]
fn importing_unencrypted_pkcs8_takes_role_and_gun_from_headers_unless_given() {
    let (_trust, store) = temp_store();
    let mut pass = StaticPassphrases::new([("targets", "targets-pass"), ("delegation", "deleg-pass")]);
    let ecdsa = PrivateKey::generate_ecdsa(&mut rand::rngs::OsRng);
    let der = ecdsa.to_pkcs8_der().unwrap();
    let with_headers = pem::encode("PRIVATE KEY", &[("role", "targets"), ("gun", "a.example/b")], &der);
    let stored = store
        .import_pem(with_headers.as_bytes(), None, None, &mut pass)
        .unwrap();
    assert_eq!(
        (stored.role.as_str(), stored.gun.as_deref()),
        ("targets", Some("a.example/b"))
    );
    assert_eq!(stored.id, ecdsa.public_key().id());

    // Arguments win over headers; a leading comment and a certificate first are fine.
    let ed = PrivateKey::generate_ed25519(&mut rand::rngs::OsRng);
    let input = format!(
        "a comment\n{}{}",
        pem::encode("CERTIFICATE", &[], b"not parsed"),
        pem::encode("PRIVATE KEY", &[("role", "targets")], &ed.to_pkcs8_der().unwrap())
    );
    let stored = store
        .import_pem(input.as_bytes(), Some("targets/ops"), None, &mut pass)
        .unwrap();
    assert_eq!((stored.role.as_str(), stored.gun.as_deref()), ("targets/ops", None));
    assert_eq!(stored.id, ed.public_key().id());
    assert_eq!(
        store.load(&stored.id, &mut pass).unwrap().0.public_key(),
        ed.public_key()
    );

    // Notary's legacy unencrypted ed25519 block: its 96 raw bytes.
    let ed2 = PrivateKey::generate_ed25519(&mut rand::rngs::OsRng);
    let raw = envelope::private_key_to_der(&ed2).unwrap();
    let legacy = pem::encode("ED25519 PRIVATE KEY", &[("role", "targets/x")], &raw[20..]);
    let stored = store.import_pem(legacy.as_bytes(), None, None, &mut pass).unwrap();
    assert_eq!(stored.id, ed2.public_key().id());
}

#[test]
fn imports_of_other_key_kinds_are_refused_clearly() {
    let (_trust, store) = temp_store();
    let mut pass = StaticPassphrases::new([("delegation", "deleg-pass")]);
    let rsa = pem::encode("RSA PRIVATE KEY", &[], b"\x30\x00");
    let err = store
        .import_pem(rsa.as_bytes(), Some("targets/r"), None, &mut pass)
        .unwrap_err();
    assert!(
        matches!(&err, KeyStoreError::Unsupported(m) if m.contains("RSA")),
        "{err:?}"
    );

    // A SEC1 P-384 key: SEQUENCE { 1, OCTET STRING (48), [0] secp384r1 }.
    let mut p384 = vec![0x30, 0x40, 0x02, 0x01, 0x01, 0x04, 0x30];
    p384.extend_from_slice(&[0x11; 48]);
    p384.extend_from_slice(&[0xa0, 0x07, 0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x22]);
    p384[1] = (p384.len() - 2) as u8;
    let err = store
        .import_pem(
            pem::encode("EC PRIVATE KEY", &[], &p384).as_bytes(),
            Some("targets/r"),
            None,
            &mut pass,
        )
        .unwrap_err();
    assert!(
        matches!(&err, KeyStoreError::Unsupported(m) if m.contains("P-384")),
        "{err:?}"
    );

    let legacy = "-----BEGIN EC PRIVATE KEY-----\nProc-Type: 4,ENCRYPTED\nDEK-Info: AES-256-CBC,00\n\nAAAA\n-----END EC PRIVATE KEY-----\n";
    let err = store
        .import_pem(legacy.as_bytes(), Some("targets/r"), None, &mut pass)
        .unwrap_err();
    assert!(
        matches!(&err, KeyStoreError::Unsupported(m) if m.contains("Proc-Type")),
        "{err:?}"
    );

    let cert_only = pem::encode("CERTIFICATE", &[], b"x");
    let err = store
        .import_pem(cert_only.as_bytes(), Some("targets/r"), None, &mut pass)
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "PEM input: no private key among the PEM blocks (CERTIFICATE)"
    );

    let key = PrivateKey::generate_ecdsa(&mut rand::rngs::OsRng);
    let pkcs8 = pem::encode("PRIVATE KEY", &[], &key.to_pkcs8_der().unwrap());
    let err = store
        .import_pem(pkcs8.as_bytes(), Some("targets"), None, &mut pass)
        .unwrap_err();
    assert!(matches!(err, KeyStoreError::MissingGun { .. }), "{err:?}");
    assert!(store.list().unwrap().is_empty());
}

#[test]
fn change_passphrase_remove_and_export() {
    let (_trust, store) = temp_store();
    let key = PrivateKey::generate_ecdsa(&mut rand::rngs::OsRng);
    let mut old = StaticPassphrases::new([("root", "old passphrase")]);
    let mut new = StaticPassphrases::new([("root", "new passphrase")]);
    // Root keys are stored without a GUN even if one is given.
    let stored = store.add(&key, "root", Some("example.com/app"), &mut old).unwrap();
    assert_eq!(stored.gun, None);
    let before = fs::read(&stored.path).unwrap();
    assert_eq!(store.export_pem(&stored.id).unwrap(), before);

    store.change_passphrase(&stored.id, &mut old, &mut new).unwrap();
    let after = store.export_pem(&stored.id).unwrap();
    assert_eq!(after, fs::read(&stored.path).unwrap());
    assert_ne!(after, before);
    assert!(String::from_utf8(after).unwrap().contains("role: root\n\n"));
    let err = store.load(&stored.id, &mut old).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!("wrong passphrase for root key {}", &stored.id[..7])
    );
    assert_eq!(
        store.load(&stored.id, &mut new).unwrap().0.public_key(),
        key.public_key()
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(fs::metadata(&stored.path).unwrap().permissions().mode() & 0o777, 0o600);
    }
    assert_eq!(fs::read_dir(store.dir()).unwrap().count(), 1, "no temporary file left");

    assert_eq!(store.remove(&stored.id).unwrap(), stored);
    assert!(!stored.path.exists());
    assert_eq!(store.find(&stored.id).unwrap(), None);
    assert!(matches!(store.remove(&stored.id), Err(KeyStoreError::NotFound(_))));
    assert!(matches!(store.export_pem(&stored.id), Err(KeyStoreError::NotFound(_))));
    assert!(matches!(
        store.load(&stored.id, &mut new),
        Err(KeyStoreError::NotFound(_))
    ));
}

#[test]
fn ids_must_be_full_and_files_must_hold_their_key() {
    let (_trust, store) = temp_store();
    for bad in ["../../etc/passwd", "ebdd8e3", &"A".repeat(64), ""] {
        assert!(matches!(store.find(bad), Err(KeyStoreError::InvalidId(_))), "{bad}");
        assert!(matches!(store.remove(bad), Err(KeyStoreError::InvalidId(_))), "{bad}");
    }
    // A key file renamed to another ID is caught on load.
    let key = PrivateKey::generate_ecdsa(&mut rand::rngs::OsRng);
    let mut pass = StaticPassphrases::new([("delegation", "deleg-pass")]);
    let stored = store.add(&key, "targets/a", None, &mut pass).unwrap();
    let other = "0".repeat(64);
    fs::rename(&stored.path, store.dir().join(format!("{other}.key"))).unwrap();
    let err = store.load(&other, &mut pass).unwrap_err();
    assert!(
        matches!(&err, KeyStoreError::Malformed { reason, .. } if reason.contains(&stored.id)),
        "{err}"
    );
}

#[test]
fn damaged_files_are_errors_not_panics() {
    let (_trust, store) = temp_store();
    let key = PrivateKey::generate_ecdsa(&mut rand::rngs::OsRng);
    // A cheap iteration count keeps the many decryptions fast.
    let der = envelope::encrypt(&envelope::private_key_to_der(&key).unwrap(), b"pw", 1000).unwrap();
    let id = key.public_key().id().to_owned();
    let path = store.dir().join(format!("{id}.key"));
    let write = |der: &[u8]| {
        fs::write(
            &path,
            pem::encode("ENCRYPTED PRIVATE KEY", &[("role", "targets/x")], der),
        )
        .unwrap();
    };
    let mut pass = StaticPassphrases::new([("delegation", "pw")]);
    write(&der);
    store.load(&id, &mut pass).unwrap();

    // PBES2 has no MAC, so a flip in the IV can leave the key intact (the
    // PKCS#8 version byte 0 -> 1 is still a valid key): such a load must
    // still give the right key, which load() checks against the file name.
    // Every flip in the ciphertext proper must fail.
    let info = pkcs8::EncryptedPrivateKeyInfo::try_from(der.as_slice()).unwrap();
    let ciphertext_at = der.len() - info.encrypted_data.len();
    let (mut wrong, mut intact) = (0, 0);
    for i in 0..der.len() {
        for flip in [0x01u8, 0x80] {
            let mut bad = der.clone();
            bad[i] ^= flip;
            write(&bad);
            match store.load(&id, &mut pass) {
                Ok((k, _)) => {
                    assert!(i < ciphertext_at, "ciphertext byte {i} ^ {flip:#x} still loads");
                    assert_eq!(k.public_key(), key.public_key());
                    intact += 1;
                }
                Err(KeyStoreError::WrongPassphrase { .. }) => wrong += 1,
                Err(KeyStoreError::Malformed { .. } | KeyStoreError::Unsupported(_)) => {}
                Err(other) => panic!("byte {i}: unexpected {other:?}"),
            }
        }
    }
    assert!(wrong > 0, "ciphertext damage reads as a wrong passphrase");
    assert!(intact <= 2, "{intact} harmless flips");
    // Ciphertext cut short of a whole block, re-encoded as valid DER.
    let info = pkcs8::EncryptedPrivateKeyInfo::try_from(der.as_slice()).unwrap();
    let cut = &info.encrypted_data[..info.encrypted_data.len() - 5];
    let short = pkcs8::EncryptedPrivateKeyInfo {
        encryption_algorithm: info.encryption_algorithm.clone(),
        encrypted_data: cut,
    };
    write(&pkcs8::der::Encode::to_der(&short).unwrap());
    let err = store.load(&id, &mut pass).unwrap_err();
    assert!(
        matches!(&err, KeyStoreError::Malformed { reason, .. } if reason.contains("multiple")),
        "{err}"
    );
    // Not base64, not PEM.
    fs::write(&path, "garbage").unwrap();
    assert!(matches!(
        store.load(&id, &mut pass),
        Err(KeyStoreError::Malformed { .. })
    ));
}

#[test]
fn a_wrong_environment_passphrase_fails_at_once_and_prompts_get_three_tries() {
    let (_trust, store) = temp_store();
    let key = PrivateKey::generate_ecdsa(&mut rand::rngs::OsRng);
    let stored = store
        .add(
            &key,
            "targets",
            Some("g/h"),
            &mut StaticPassphrases::new([("targets", "right-pass")]),
        )
        .unwrap();

    let mut env = EnvOrPrompt::new(
        |k| (k == "NOTARY_TARGETS_PASSPHRASE").then(|| "wrong-pass".to_owned()),
        true,
    )
    .with_prompter(|_| panic!("must not prompt when the environment has a passphrase"));
    let err = store.load(&stored.id, &mut env).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "wrong passphrase for targets key {} (from NOTARY_TARGETS_PASSPHRASE)",
            &stored.id[..7]
        )
    );

    let mut env = EnvOrPrompt::new(
        |k| (k == "SEAL_TARGETS_PASSPHRASE").then(|| "right-pass".to_owned()),
        false,
    );
    store.load(&stored.id, &mut env).unwrap();

    let mut attempts = Vec::new();
    let mut typed = |_: &str, _: &str, _: Option<&str>, _: Purpose, attempt: u32| {
        attempts.push(attempt);
        Ok(Zeroizing::new(
            if attempt == 2 { "right-pass" } else { "nope" }.to_owned(),
        ))
    };
    store.load(&stored.id, &mut typed).unwrap();
    assert_eq!(attempts, [0, 1, 2]);

    let mut count = 0;
    let mut always_wrong = |_: &str, _: &str, _: Option<&str>, _: Purpose, _: u32| {
        count += 1;
        Ok(Zeroizing::new("nope".to_owned()))
    };
    assert!(matches!(
        store.load(&stored.id, &mut always_wrong),
        Err(KeyStoreError::WrongPassphrase { .. })
    ));
    assert_eq!(count, MAX_ATTEMPTS);

    let mut none = EnvOrPrompt::new(|_| None, false);
    let err = store.load(&stored.id, &mut none).unwrap_err();
    assert!(matches!(&err, KeyStoreError::NoPassphrase { var, .. } if var == "SEAL_TARGETS_PASSPHRASE"));
}

#[test]
fn add_checks_roles_guns_and_duplicates() {
    let (_trust, store) = temp_store();
    let key = PrivateKey::generate_ed25519(&mut rand::rngs::OsRng);
    let mut pass = StaticPassphrases::new([("snapshot", "snap-pass"), ("delegation", "d-pass")]);
    assert!(matches!(
        store.add(&key, "snapshot", None, &mut pass),
        Err(KeyStoreError::MissingGun { .. })
    ));
    assert!(matches!(
        store.add(&key, "snapshot", Some("bad\ngun"), &mut pass),
        Err(KeyStoreError::InvalidHeader { field: "gun", .. })
    ));
    assert!(matches!(
        store.add(&key, "", None, &mut pass),
        Err(KeyStoreError::InvalidHeader { field: "role", .. })
    ));
    let mut empty = StaticPassphrases::new([("delegation", "")]);
    assert!(matches!(
        store.add(&key, "targets/e", None, &mut empty),
        Err(KeyStoreError::PassphraseRejected(_))
    ));
    let stored = store.add(&key, "snapshot", Some("g/h"), &mut pass).unwrap();
    let err = store.add(&key, "targets/x", None, &mut pass).unwrap_err();
    assert!(matches!(&err, KeyStoreError::AlreadyExists { id, .. } if *id == stored.id));
}

#[test]
fn pbkdf2_cost_at_seal_iterations() {
    let key = PrivateKey::generate_ecdsa(&mut rand::rngs::OsRng);
    let plain = envelope::private_key_to_der(&key).unwrap();
    let start = Instant::now();
    let der = envelope::encrypt(&plain, b"timing", PBKDF2_ITERATIONS).unwrap();
    let encrypt = start.elapsed();
    let start = Instant::now();
    let back = envelope::decrypt(&der, b"timing").unwrap();
    let decrypt = start.elapsed();
    assert_eq!(back.as_slice(), plain.as_slice());
    println!("PBKDF2-HMAC-SHA1 x {PBKDF2_ITERATIONS}: encrypt {encrypt:?}, decrypt {decrypt:?}");
}

#[test]
fn import_all_follows_notarys_import_keys_block_by_block() {
    let (_trust, store) = temp_store();
    let mut pass = StaticPassphrases::new([
        ("targets", "targets-pass"),
        ("delegation", "deleg-pass"),
        ("root", "root-pass"),
    ]);
    let der = |k: &PrivateKey| k.to_pkcs8_der().unwrap();
    let (legacy, deleg, bare, root) = (
        PrivateKey::generate_ecdsa(&mut rand::rngs::OsRng),
        PrivateKey::generate_ecdsa(&mut rand::rngs::OsRng),
        PrivateKey::generate_ecdsa(&mut rand::rngs::OsRng),
        PrivateKey::generate_ecdsa(&mut rand::rngs::OsRng),
    );
    let legacy_path = format!("tuf_keys/a.example/app/{}", legacy.public_key().id());
    let input = [
        // A pre-0.4 export: the GUN comes from the path.
        pem::encode(
            "PRIVATE KEY",
            &[("role", "targets"), ("path", &legacy_path)],
            &der(&legacy),
        ),
        // A delegation key keeps no GUN, even when it has one.
        pem::encode(
            "PRIVATE KEY",
            &[("role", "targets/ops"), ("gun", "a.example/app")],
            &der(&deleg),
        ),
        // No role at all: a "delegation" key, and the fallback GUN is dropped.
        pem::encode("PRIVATE KEY", &[], &der(&bare)),
        // Not a private key: ignored.
        pem::encode("CERTIFICATE", &[], b"not parsed"),
        // The role given is only a fallback: the header wins.
        pem::encode("PRIVATE KEY", &[("role", "root")], &der(&root)),
    ]
    .concat();
    let outcome = store
        .import_all(
            input.as_bytes(),
            Some("targets/fallback"),
            Some("b.example/x"),
            &mut pass,
        )
        .unwrap();
    assert!(outcome.refused.is_empty(), "{:?}", outcome.refused);
    let got: Vec<(String, String, Option<String>)> = outcome
        .imported
        .iter()
        .map(|k| (k.id.clone(), k.role.clone(), k.gun.clone()))
        .collect();
    assert_eq!(
        got,
        [
            (
                legacy.public_key().id().to_owned(),
                "targets".into(),
                Some("a.example/app".into())
            ),
            (deleg.public_key().id().to_owned(), "targets/ops".into(), None),
            (bare.public_key().id().to_owned(), "targets/fallback".into(), None),
            (root.public_key().id().to_owned(), "root".into(), None),
        ]
    );
    let none = PrivateKey::generate_ecdsa(&mut rand::rngs::OsRng);
    let unlabelled = pem::encode("PRIVATE KEY", &[], &der(&none));
    let outcome = store.import_all(unlabelled.as_bytes(), None, None, &mut pass).unwrap();
    assert_eq!(outcome.imported[0].role, "delegation");
    // The same key twice: the second is refused, not silently dropped.
    let outcome = store.import_all(unlabelled.as_bytes(), None, None, &mut pass).unwrap();
    assert!(outcome.imported.is_empty());
    assert!(
        matches!(outcome.refused[..], [(ref what, KeyStoreError::AlreadyExists { .. })] if what == "key block 1"),
        "{:?}",
        outcome.refused
    );
    assert!(matches!(
        store.import_all(b"no PEM here", None, None, &mut pass),
        Err(KeyStoreError::Malformed { .. })
    ));
}
