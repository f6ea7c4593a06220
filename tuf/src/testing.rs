//! Test support (feature `testing`): a throw-away PKI and a builder for
//! signed repositories in Notary's layout, so tests and benchmarks of every
//! Seal crate make their own keys and metadata.

use std::collections::BTreeMap;

use time::{Duration, OffsetDateTime};

use crate::cjson::Value;
use crate::editor::new_root;
use crate::generate::sign;
use crate::keys::{KeyType, PrivateKey, PublicKey};
use crate::metadata::{
    DelegatedRole, Delegations, FileMeta, Root, Snapshot, Targets, Timestamp, ROOT, SNAPSHOT, TARGETS, TIMESTAMP,
};
use crate::update::ServerKeys;

/// Meta entries (length, sha256, sha512) for named byte strings.
fn meta_of(files: &[(&str, &[u8])]) -> BTreeMap<String, FileMeta> {
    files
        .iter()
        .map(|(n, b)| ((*n).to_owned(), FileMeta::for_bytes(b)))
        .collect()
}

/// A root key: an ECDSA key and its self-signed certificate for a GUN.
pub struct RootKey {
    /// The private key.
    pub private: PrivateKey,
    /// The `ecdsa-x509` public key listed in root.json.
    pub public: PublicKey,
}

impl RootKey {
    /// A root key for `gun` whose certificate is valid from `not_before` to `not_after`.
    pub fn new(gun: &str, not_before: OffsetDateTime, not_after: OffsetDateTime) -> RootKey {
        let private = PrivateKey::generate_ecdsa(&mut rand::rngs::OsRng);
        let public = crate::certs::root_key(&private, gun, not_before, not_after).expect("root certificate");
        RootKey { private, public }
    }
}

impl RootKey {
    /// A root key whose certificate's subject (and issuer) CN is `cn` as a
    /// PrintableString, as other tools write `docker/*`: Go parses `*` and
    /// `&` there although DER does not allow them. The certificate is
    /// properly self-signed. `cn` may hold any ASCII byte: this is also how
    /// tests make certificates Go refuses.
    pub fn with_printable_cn(cn: &str, not_before: OffsetDateTime, not_after: OffsetDateTime) -> RootKey {
        let private = PrivateKey::generate_ecdsa(&mut rand::rngs::OsRng);
        let pem = printable_cn_cert(&private, cn, not_before, not_after);
        let public = PublicKey::new(KeyType::EcdsaX509, pem).expect("certificate key");
        RootKey { private, public }
    }
}

/// The PEM of a self-signed certificate for `private` (an ECDSA key) whose
/// subject and issuer CN is `cn` written as a PrintableString whatever its
/// bytes: see [`RootKey::with_printable_cn`].
pub fn printable_cn_cert(
    private: &PrivateKey,
    cn: &str,
    not_before: OffsetDateTime,
    not_after: OffsetDateTime,
) -> Vec<u8> {
    use p256::ecdsa::signature::Signer;
    use x509_cert::der::{Decode, Encode, EncodePem};
    assert!(cn.is_ascii(), "a PrintableString is ASCII");
    // rcgen writes only DER-valid PrintableStrings: write a placeholder
    // of the same length, replace its bytes, and sign again.
    let placeholder: String = "X".repeat(cn.len());
    let kp = rcgen::KeyPair::try_from(private.to_pkcs8_der().expect("pkcs8").as_slice()).expect("key pair");
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
    params.distinguished_name = rcgen::DistinguishedName::new();
    params.distinguished_name.push(
        rcgen::DnType::CommonName,
        rcgen::DnValue::PrintableString(placeholder.as_str().try_into().expect("printable")),
    );
    params.not_before = not_before;
    params.not_after = not_after;
    params.key_usages = vec![rcgen::KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::CodeSigning];
    let der = params.self_signed(&kp).expect("certificate").der().to_vec();
    let mut tagged = vec![0x13, u8::try_from(cn.len()).expect("short CN")];
    let mut find = tagged.clone();
    find.extend_from_slice(placeholder.as_bytes());
    tagged.extend_from_slice(cn.as_bytes());
    let mut patched = der.clone();
    let mut replaced = 0;
    let mut i = 0;
    while i + find.len() <= patched.len() {
        if patched[i..i + find.len()] == find[..] {
            patched[i..i + find.len()].copy_from_slice(&tagged);
            replaced += 1;
            i += find.len();
        } else {
            i += 1;
        }
    }
    assert_eq!(replaced, 2, "the CN appears in the issuer and the subject");
    let mut cert = x509_cert::Certificate::from_der(&patched).expect("patched certificate");
    let tbs = cert.tbs_certificate.to_der().expect("tbs");
    let PrivateKey::Ecdsa(sk) = private else {
        panic!("printable_cn_cert needs an ECDSA key")
    };
    let sig: p256::ecdsa::Signature = sk.sign(&tbs);
    cert.signature = x509_cert::der::asn1::BitString::from_bytes(sig.to_der().as_bytes()).expect("signature");
    cert.to_pem(x509_cert::der::pem::LineEnding::LF)
        .expect("pem")
        .into_bytes()
}

/// Keys and metadata of one test collection, signed like Notary's CLI does.
pub struct TestRepo {
    /// The GUN.
    pub gun: String,
    /// `now` the repository was made at.
    pub now: OffsetDateTime,
    /// Root keys (the root role uses all of them with `root_threshold`).
    pub root_keys: Vec<RootKey>,
    /// Root role threshold.
    pub root_threshold: u32,
    /// Targets key.
    pub targets: PrivateKey,
    /// Snapshot key (client-held unless the test hands it to the server).
    pub snapshot: PrivateKey,
    /// Timestamp key (the server's).
    pub timestamp: PrivateKey,
    /// Delegations of the top-level targets role.
    pub delegations: Vec<(DelegatedRole, PrivateKey)>,
    /// The server's timestamp key, listed in the root instead of `timestamp`
    /// when set (as `GET timestamp.key` returned it).
    pub server_timestamp: Option<PublicKey>,
    /// The server's snapshot key, listed instead of `snapshot` when set
    /// (after `key rotate snapshot -r`).
    pub server_snapshot: Option<PublicKey>,
}

impl TestRepo {
    /// A collection with one root certificate valid 10 years, ECDSA
    /// targets and snapshot keys and an Ed25519 timestamp key.
    pub fn new(gun: &str, now: OffsetDateTime) -> TestRepo {
        let mut rng = rand::rngs::OsRng;
        TestRepo {
            gun: gun.to_owned(),
            now,
            root_keys: vec![RootKey::new(gun, now - Duration::hours(1), now + Duration::days(3650))],
            root_threshold: 1,
            targets: PrivateKey::generate_ecdsa(&mut rng),
            snapshot: PrivateKey::generate_ecdsa(&mut rng),
            timestamp: PrivateKey::generate_ed25519(&mut rng),
            delegations: Vec::new(),
            server_timestamp: None,
            server_snapshot: None,
        }
    }

    /// Adds a delegation `name` (a child of `targets`) with `paths`, signed by a new ECDSA key.
    pub fn delegate(&mut self, name: &str, paths: &[&str]) {
        let key = PrivateKey::generate_ecdsa(&mut rand::rngs::OsRng);
        let d = DelegatedRole {
            name: name.to_owned(),
            keyids: vec![key.public_key().id().to_owned()],
            threshold: 1,
            paths: paths.iter().map(|p| (*p).to_owned()).collect(),
            path_hash_prefixes: Vec::new(),
        };
        self.delegations.push((d, key));
    }

    /// The keys the server holds: the timestamp key, and the snapshot key when `server_snapshot`.
    pub fn server_keys(&self, server_snapshot: bool) -> ServerKeys {
        ServerKeys {
            timestamp: vec![self.timestamp.public_key()],
            snapshot: if server_snapshot {
                vec![self.snapshot.public_key()]
            } else {
                Vec::new()
            },
        }
    }

    /// The root metadata at `version`: the root keys with
    /// `root_threshold`, one key for each other role, expiring in 10 years.
    pub fn root(&self, version: u64) -> Root {
        let root_keys: Vec<PublicKey> = self.root_keys.iter().map(|k| k.public.clone()).collect();
        let key = |own: &PrivateKey, server: Option<&PublicKey>| [server.cloned().unwrap_or_else(|| own.public_key())];
        new_root(
            version,
            self.now + Duration::days(3650),
            &[
                (ROOT, &root_keys, self.root_threshold),
                (TARGETS, &key(&self.targets, None), 1),
                (SNAPSHOT, &key(&self.snapshot, self.server_snapshot.as_ref()), 1),
                (TIMESTAMP, &key(&self.timestamp, self.server_timestamp.as_ref()), 1),
            ],
        )
    }

    /// Signs a root `signed` value with every root key.
    pub fn sign_root(&self, signed: Value) -> Vec<u8> {
        let keys: Vec<(&PrivateKey, &str)> = self.root_keys.iter().map(|k| (&k.private, k.public.id())).collect();
        sign(ROOT, signed, &keys).into_bytes()
    }

    /// root.json at `version`, signed by every root key.
    pub fn root_file(&self, version: u64) -> Vec<u8> {
        self.sign_root(self.root(version).to_value())
    }

    /// A stored history of two publishes, as a server keeps it, in the order it was written:
    /// root 1; targets and snapshot 2 with timestamp 1; targets and snapshot 3 with timestamp 2
    /// (role, version, bytes).
    pub fn two_publishes(&self) -> Vec<(&'static str, u64, Vec<u8>)> {
        let root = self.root_file(1);
        let t2 = self.targets_file(2, &[("a", b"a")]);
        let s2 = self.snapshot_file(2, &[("root", &root), ("targets", &t2)]);
        let ts1 = self.timestamp_file(1, &s2);
        let t3 = self.targets_file(3, &[("a", b"a"), ("b", b"b")]);
        let s3 = self.snapshot_file(3, &[("root", &root), ("targets", &t3)]);
        let ts2 = self.timestamp_file(2, &s3);
        vec![
            (ROOT, 1, root),
            (TARGETS, 2, t2),
            (SNAPSHOT, 2, s2),
            (TIMESTAMP, 1, ts1),
            (TARGETS, 3, t3),
            (SNAPSHOT, 3, s3),
            (TIMESTAMP, 2, ts2),
        ]
    }

    /// The targets metadata at `version` listing `targets` (name, content).
    pub fn targets_meta(&self, version: u64, targets: &[(&str, &[u8])]) -> Targets {
        let mut dkeys = BTreeMap::new();
        for (_, k) in &self.delegations {
            let pk = k.public_key();
            dkeys.insert(pk.id().to_owned(), pk);
        }
        Targets {
            version,
            expires: self.now + Duration::days(1095),
            targets: meta_of(targets),
            delegations: Delegations {
                keys: dkeys,
                roles: self.delegations.iter().map(|(d, _)| d.clone()).collect(),
            },
        }
    }

    /// targets.json at `version`, signed with the targets key.
    pub fn targets_file(&self, version: u64, targets: &[(&str, &[u8])]) -> Vec<u8> {
        let t = self.targets_meta(version, targets);
        sign(
            TARGETS,
            t.to_value(),
            &[(&self.targets, self.targets.public_key().id())],
        )
        .into_bytes()
    }

    /// targets.json at `version` (no targets) as Go's client writes it once
    /// the only key of delegation `role` was removed: the role's `keyids`
    /// is `null` and `delegations.keys` holds no key for it.
    pub fn targets_file_without_keys_for(&self, version: u64, role: &str) -> Vec<u8> {
        let mut t = self.targets_meta(version, &[]);
        let removed: Vec<String> = t
            .delegations
            .roles
            .iter()
            .filter(|d| d.name == role)
            .flat_map(|d| d.keyids.clone())
            .collect();
        t.delegations.keys.retain(|id, _| !removed.contains(id));
        let mut v = t.to_value();
        if let Value::Object(signed) = &mut v {
            if let Some(Value::Object(delegations)) = signed.get_mut("delegations") {
                if let Some(Value::Array(roles)) = delegations.get_mut("roles") {
                    for r in roles.iter_mut() {
                        if let Value::Object(m) = r {
                            if m.get("name").and_then(Value::as_str) == Some(role) {
                                m.insert("keyids".to_owned(), Value::Null);
                            }
                        }
                    }
                }
            }
        }
        sign(TARGETS, v, &[(&self.targets, self.targets.public_key().id())]).into_bytes()
    }

    /// A delegated role's file at `version`, signed with its key.
    pub fn delegation_file(&self, name: &str, version: u64, targets: &[(&str, &[u8])]) -> Vec<u8> {
        let (_, key) = self
            .delegations
            .iter()
            .find(|(d, _)| d.name == name)
            .expect("delegation");
        let t = Targets {
            version,
            expires: self.now + Duration::days(1095),
            targets: meta_of(targets),
            delegations: Delegations::default(),
        };
        sign(name, t.to_value(), &[(key, key.public_key().id())]).into_bytes()
    }

    /// snapshot.json at `version` listing `files` (role, exact bytes), signed with the snapshot key.
    pub fn snapshot_file(&self, version: u64, files: &[(&str, &[u8])]) -> Vec<u8> {
        let s = Snapshot {
            version,
            expires: self.now + Duration::days(1095),
            meta: meta_of(files),
        };
        sign(
            SNAPSHOT,
            s.to_value(),
            &[(&self.snapshot, self.snapshot.public_key().id())],
        )
        .into_bytes()
    }

    /// timestamp.json at `version` for `snapshot`, signed with the timestamp key.
    pub fn timestamp_file(&self, version: u64, snapshot: &[u8]) -> Vec<u8> {
        let mut meta = BTreeMap::new();
        meta.insert(SNAPSHOT.to_owned(), FileMeta::for_bytes(snapshot));
        let t = Timestamp {
            version,
            expires: self.now + Duration::days(14),
            meta,
        };
        sign(
            TIMESTAMP,
            t.to_value(),
            &[(&self.timestamp, self.timestamp.public_key().id())],
        )
        .into_bytes()
    }

    /// The first publish as Notary's CLI makes it: root v1, targets v2 and
    /// snapshot v2 listing `targets`.
    pub fn first_publish(&self, targets: &[(&str, &[u8])]) -> Vec<(String, Vec<u8>)> {
        let root = self.root_file(1);
        let t = self.targets_file(2, targets);
        let s = self.snapshot_file(2, &[(ROOT, &root), (TARGETS, &t)]);
        vec![
            (ROOT.to_owned(), root),
            (TARGETS.to_owned(), t),
            (SNAPSHOT.to_owned(), s),
        ]
    }
}

impl TestRepo {
    /// What the server stores once the first publish of `targets` was
    /// accepted: root v1, targets and snapshot v2, timestamp v1.
    pub fn stored_after_first_publish(&self, targets: &[(&str, &[u8])]) -> crate::update::StoredFiles {
        let root = self.root_file(1);
        let t = self.targets_file(2, targets);
        let snapshot = self.snapshot_file(2, &[(ROOT, &root), (TARGETS, &t)]);
        let timestamp = self.timestamp_file(1, &snapshot);
        BTreeMap::from([
            (ROOT.to_owned(), root),
            (TARGETS.to_owned(), t),
            (SNAPSHOT.to_owned(), snapshot),
            (TIMESTAMP.to_owned(), timestamp),
        ])
    }
}

/// Fuzz body: parse `data` as every role's file; must never panic.
pub fn fuzz_parse(data: &[u8]) {
    use crate::metadata::{Root, Snapshot, Targets, Timestamp};
    for role in [ROOT, TARGETS, SNAPSHOT, TIMESTAMP, "targets/a"] {
        if let Ok(f) = crate::metadata::SignedFile::parse(role, data.to_vec()) {
            let _ = f.reserialize();
            let _ = Root::from_signed(f.signed());
            let _ = Targets::from_signed(role, f.signed());
            let _ = Snapshot::from_signed(f.signed());
            let _ = Timestamp::from_signed(f.signed());
        }
    }
    let _ = PublicKey::from_json(data);
}

/// Fuzz body: validate `data` as an uploaded role (chosen by its first
/// byte) against `stored`; must never panic.
pub fn fuzz_validate(
    stored: &crate::update::StoredFiles,
    keys: &ServerKeys,
    gun: &str,
    now: OffsetDateTime,
    data: &[u8],
) {
    let Some((&sel, rest)) = data.split_first() else {
        return;
    };
    let role = [
        ROOT,
        TARGETS,
        SNAPSHOT,
        TIMESTAMP,
        "targets/releases",
        "targets/releases/x",
    ][usize::from(sel) % 6];
    let _ = crate::update::validate_update(gun, stored, vec![(role.to_owned(), rest.to_vec())], now, keys);
    let _ = crate::update::validate_update(
        gun,
        &Default::default(),
        vec![(role.to_owned(), rest.to_vec())],
        now,
        keys,
    );
}
