//! What Notary's server and Go client accept although a strict reading
//! would not, and Seal therefore accepts too (docs/architecture.md lists
//! each case with its decision): updates that carry no role file, roles
//! whose `keyids` is `null`, and root certificates whose CN Go parses
//! leniently or matches as a wildcard.

use std::collections::BTreeMap;

use seal_tuf::cjson::Value;
use seal_tuf::client::{Limits, Repo, TrustPin};
use seal_tuf::metadata::{Root, Targets};
use seal_tuf::testing::{printable_cn_cert, RootKey, TestRepo};
use seal_tuf::update::{cn_matches, valid_root_keys, validate_update, StoredFiles};
use seal_tuf::{Error, KeyType, PrivateKey, PublicKey, SignedFile, UpdateError, UpdateErrorKind};
use time::macros::datetime;
use time::{Duration, OffsetDateTime};

const GUN: &str = "example.com/compat/app";
const NOW: OffsetDateTime = datetime!(2026-11-22 12:00:00 UTC);

/// What the server stores after the first publish (the snapshot key the
/// server's when `server_snapshot`).
fn published(repo: &mut TestRepo, server_snapshot: bool) -> StoredFiles {
    if server_snapshot {
        repo.server_snapshot = Some(repo.snapshot.public_key());
    }
    repo.stored_after_first_publish(&[("v1", b"one")])
}

fn invalid(e: UpdateError) -> (UpdateErrorKind, String) {
    match e {
        UpdateError::Invalid { kind, msg, .. } => (kind, msg),
        other => panic!("expected INVALID_UPDATE, got {other:?}"),
    }
}

/// Why the first publish of `repo` to `gun` is refused.
fn first_publish_refused(gun: &str, repo: &TestRepo) -> (UpdateErrorKind, String) {
    let r = validate_update(
        gun,
        &BTreeMap::new(),
        repo.first_publish(&[]),
        NOW,
        &repo.server_keys(false),
    );
    invalid(r.unwrap_err())
}

#[test]
fn an_update_without_role_files_is_accepted_and_changes_nothing() {
    let mut repo = TestRepo::new(GUN, NOW);
    let stored = published(&mut repo, true);
    let keys = repo.server_keys(true);
    // The Notary client's empty changelist, and a body holding only a timestamp.
    let timestamp_only = vec![("timestamp".to_owned(), repo.timestamp_file(9, b"whatever"))];
    for uploads in [Vec::new(), timestamp_only] {
        let plan = validate_update(GUN, &stored, uploads, NOW, &keys).unwrap();
        assert!(plan.changes_nothing());
        assert!(plan.files.is_empty());
    }
    // An update with a role file is not such an update.
    let t = repo.targets_file(3, &[]);
    let plan = validate_update(GUN, &stored, vec![("targets".into(), t)], NOW, &keys).unwrap();
    assert!(!plan.changes_nothing());
}

#[test]
fn an_update_without_role_files_gets_notarys_answers_where_notary_refuses_it() {
    // The client holds the snapshot key: Notary cannot make a snapshot.
    let mut repo = TestRepo::new(GUN, NOW);
    let stored = published(&mut repo, false);
    let (kind, msg) = invalid(validate_update(GUN, &stored, Vec::new(), NOW, &repo.server_keys(false)).unwrap_err());
    assert_eq!(kind, UpdateErrorKind::BadHierarchy);
    assert_eq!(
        msg,
        "no snapshot was included in update and server does not hold current snapshot key for repository"
    );
    // No collection yet.
    let (kind, msg) =
        invalid(validate_update(GUN, &BTreeMap::new(), Vec::new(), NOW, &repo.server_keys(true)).unwrap_err());
    assert_eq!(kind, UpdateErrorKind::Validation);
    assert_eq!(msg, "no pre-existing root and no root provided in update.");
}

#[test]
fn null_keyids_read_as_no_keys_and_let_the_role_sign_nothing() {
    let mut repo = TestRepo::new(GUN, NOW);
    repo.delegate("targets/releases", &[""]);
    let mut stored = published(&mut repo, true);
    let keys = repo.server_keys(true);
    let releases = repo.delegation_file("targets/releases", 1, &[("v2", b"two")]);
    stored.insert("targets/releases".into(), releases);

    // The parent with `"keyids": null` is accepted, its bytes kept as uploaded.
    let parent = repo.targets_file_without_keys_for(3, "targets/releases");
    assert!(String::from_utf8_lossy(&parent).contains(r#""keyids":null"#));
    let plan = validate_update(GUN, &stored, vec![("targets".into(), parent.clone())], NOW, &keys).unwrap();
    assert_eq!(plan.files.len(), 1);
    assert_eq!(plan.files[0].bytes(), parent.as_slice());
    let parsed = Targets::from_signed(
        "targets",
        SignedFile::parse("targets", parent.clone()).unwrap().signed(),
    )
    .unwrap();
    let d = parsed.delegation("targets/releases").unwrap();
    assert!(d.keyids.is_empty());
    assert_eq!(d.threshold, 1);

    // Once stored, the role can sign nothing, not even with its former key.
    stored.insert("targets".into(), parent.clone());
    let again = repo.delegation_file("targets/releases", 2, &[("evil", b"x")]);
    let (kind, msg) =
        invalid(validate_update(GUN, &stored, vec![("targets/releases".into(), again)], NOW, &keys).unwrap_err());
    assert_eq!(kind, UpdateErrorKind::BadTargets);
    assert!(msg.contains("threshold"), "{msg}");

    // A client verifying the same files refuses the role's file too.
    let snapshot = repo.snapshot_file(
        3,
        &[
            ("root", &stored["root"]),
            ("targets", &parent),
            ("targets/releases", &stored["targets/releases"]),
        ],
    );
    let mut client = Repo::new(GUN, TrustPin::Tofu, Limits::default());
    client.update_root(stored["root"].clone(), NOW).unwrap();
    client.update_timestamp(repo.timestamp_file(2, &snapshot), NOW).unwrap();
    client.update_snapshot(snapshot, NOW).unwrap();
    client.update_targets("targets", parent, NOW).unwrap();
    let err = client
        .update_targets("targets/releases", stored["targets/releases"].clone(), NOW)
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::Threshold {
                valid: 0,
                threshold: 1,
                ..
            }
        ),
        "{err:?}"
    );
}

#[test]
fn null_keyids_of_a_root_role_read_as_no_keys() {
    let repo = TestRepo::new(GUN, NOW);
    let with_keyids = |keyids: Value| {
        let mut v = repo.root(1).to_value();
        let Value::Object(signed) = &mut v else { unreachable!() };
        let Some(Value::Object(roles)) = signed.get_mut("roles") else {
            unreachable!()
        };
        let Some(Value::Object(targets)) = roles.get_mut("targets") else {
            unreachable!()
        };
        targets.insert("keyids".into(), keyids);
        v
    };
    let root = Root::from_signed(&with_keyids(Value::Null)).unwrap();
    assert!(root.role("targets").unwrap().keyids.is_empty());
    // A wrong type is still refused.
    let err = Root::from_signed(&with_keyids(Value::str("abc"))).unwrap_err();
    assert!(err.to_string().contains("keyids"), "{err}");
}

#[test]
fn cn_matching_is_notarys_match_cn_to_gun() {
    assert!(cn_matches("docker/*", "docker/repoName1"));
    assert!(cn_matches("docker/*", "docker/"));
    assert!(!cn_matches("docker/*", "dockerx/app"));
    assert!(!cn_matches("docker/*", "docker"));
    // Every trailing `*` is trimmed, as Go's strings.TrimRight does.
    assert!(cn_matches("docker/**", "docker/app"));
    assert!(cn_matches("*", "anything/at/all"));
    // A `*` elsewhere is a literal character.
    assert!(!cn_matches("do*er/app", "docker/app"));
    assert!(cn_matches("example.com/app", "example.com/app"));
    assert!(!cn_matches("example.com/app", "example.com/app2"));
}

fn ten_years() -> (OffsetDateTime, OffsetDateTime) {
    (NOW - Duration::hours(1), NOW + Duration::days(3650))
}

#[test]
fn a_wildcard_printable_string_cn_names_every_gun_under_its_prefix() {
    let (nb, na) = ten_years();
    let key = RootKey::with_printable_cn("docker/*", nb, na);
    assert_eq!(key.public.cert().unwrap().common_name.as_deref(), Some("docker/*"));

    // A whole first publish of docker/repoName1 signed by it validates.
    let gun = "docker/repoName1";
    let mut repo = TestRepo::new(gun, NOW);
    repo.root_keys = vec![key];
    let plan = validate_update(
        gun,
        &BTreeMap::new(),
        repo.first_publish(&[]),
        NOW,
        &repo.server_keys(false),
    )
    .unwrap();
    assert_eq!(plan.files.len(), 3);
    let root = Root::from_signed(SignedFile::parse("root", repo.root_file(1)).unwrap().signed()).unwrap();
    assert_eq!(valid_root_keys(&root, gun, Some(NOW)).len(), 1);

    // The same root for a GUN outside the prefix is refused, naming the CN.
    let other = "example.com/app";
    assert!(valid_root_keys(&root, other, Some(NOW)).is_empty());
    let (kind, msg) = first_publish_refused(other, &repo);
    assert_eq!(kind, UpdateErrorKind::BadRoot);
    assert!(
        msg.contains(r#"certificate CN "docker/*" does not match "example.com/app""#),
        "{msg}"
    );

    // And a client pins it the same way.
    let mut client = Repo::new(gun, TrustPin::Tofu, Limits::default());
    client.update_root(repo.root_file(1), NOW).unwrap();
}

#[test]
fn printable_strings_follow_gos_alphabet() {
    let (nb, na) = ten_years();
    // `&` is outside ASCII's PrintableString set and inside Go's.
    let key = RootKey::with_printable_cn("docker/a&b", nb, na);
    assert_eq!(key.public.cert().unwrap().common_name.as_deref(), Some("docker/a&b"));
    // `@`, `_` and `!` are outside both: Go refuses the certificate.
    for bad in ["docker/a@b", "docker/a_b", "docker/a!b"] {
        let private = PrivateKey::generate_ecdsa(&mut rand::rngs::OsRng);
        let pem = printable_cn_cert(&private, bad, nb, na);
        let err = PublicKey::new(KeyType::EcdsaX509, pem).unwrap_err().to_string();
        assert!(err.contains("PrintableString holds the byte"), "{bad}: {err}");
    }
}

#[test]
fn what_notary_refuses_in_a_root_certificate_is_still_refused() {
    let (nb, na) = ten_years();
    let gun = "docker/repoName1";
    // Expired.
    let mut repo = TestRepo::new(gun, NOW);
    repo.root_keys = vec![RootKey::with_printable_cn(
        "docker/*",
        NOW - Duration::days(20),
        NOW - Duration::days(1),
    )];
    let (kind, msg) = first_publish_refused(gun, &repo);
    assert_eq!(kind, UpdateErrorKind::BadRoot);
    assert!(msg.contains("certificate has expired"), "{msg}");
    // Wrong CN.
    repo.root_keys = vec![RootKey::with_printable_cn("library/*", nb, na)];
    let (kind, msg) = first_publish_refused(gun, &repo);
    assert_eq!(kind, UpdateErrorKind::BadRoot);
    assert!(msg.contains("does not match"), "{msg}");
}

#[test]
fn a_root_certificate_gets_notarys_day_of_leeway_and_is_valid_through_not_after() {
    let gun = "example.com/skew/app";
    let check = |not_before: OffsetDateTime, not_after: OffsetDateTime| {
        let mut repo = TestRepo::new(gun, NOW);
        repo.root_keys = vec![RootKey::new(gun, not_before, not_after)];
        validate_update(
            gun,
            &BTreeMap::new(),
            repo.first_publish(&[]),
            NOW,
            &repo.server_keys(false),
        )
    };
    let far = NOW + Duration::days(3650);
    // Made on a clock 12 hours ahead: accepted, as Notary does.
    check(NOW + Duration::hours(12), far).unwrap();
    // More than a day ahead: not valid yet.
    let (_, msg) = invalid(check(NOW + Duration::days(2), far).unwrap_err());
    assert!(msg.contains("certificate is not valid yet"), "{msg}");
    // A window that ends before it starts is refused whatever the clock.
    let (_, msg) = invalid(check(NOW + Duration::hours(2), NOW + Duration::hours(1)).unwrap_err());
    assert!(msg.contains("validity window is invalid"), "{msg}");
}

#[test]
fn signatures_of_rsa_keys_under_2048_bits_do_not_count() {
    use rsa::pkcs8::EncodePublicKey;
    use sha2::{Digest, Sha256};
    let msg = b"canonical bytes";
    for (bits, counts) in [(1024, false), (2048, true)] {
        let sk = rsa::RsaPrivateKey::new(&mut rand::rngs::OsRng, bits).unwrap();
        let der = sk.to_public_key().to_public_key_der().unwrap();
        let pk = PublicKey::new(KeyType::Rsa, der.as_bytes().to_vec()).unwrap();
        let sig = sk
            .sign(rsa::Pkcs1v15Sign::new::<Sha256>(), &Sha256::digest(msg))
            .unwrap();
        let r = pk.verify("rsapkcs1v15", msg, &sig);
        assert_eq!(r.is_ok(), counts, "{bits} bits: {r:?}");
        if !counts {
            assert!(r.unwrap_err().to_string().contains("1024-bit RSA key"));
        }
    }
}

#[test]
fn versions_are_notarys_every_role_from_one_and_a_first_root_at_most_two() {
    let mut repo = TestRepo::new(GUN, NOW);
    let stored = published(&mut repo, false);
    let keys = repo.server_keys(false);
    // Version 0 of a role with nothing stored yet: Notary's "version cannot be less than one".
    let t0 = repo.targets_file(0, &[]);
    let err = Targets::from_signed("targets", SignedFile::parse("targets", t0).unwrap().signed()).unwrap_err();
    assert!(err.to_string().contains("cannot be less than one"), "{err}");
    repo.delegate("targets/new", &[""]);
    let parent = repo.targets_file(3, &[]);
    let child = repo.delegation_file("targets/new", 0, &[]);
    let snap = repo.snapshot_file(
        3,
        &[("root", &stored["root"]), ("targets", &parent), ("targets/new", &child)],
    );
    let uploads = vec![
        ("targets".into(), parent),
        ("targets/new".into(), child),
        ("snapshot".into(), snap),
    ];
    let (kind, msg) = invalid(validate_update(GUN, &stored, uploads, NOW, &keys).unwrap_err());
    assert_eq!(kind, UpdateErrorKind::BadTargets);
    assert!(msg.contains("cannot be less than one"), "{msg}");

    // A first root: version 1 or 2, as Notary measures it against 1.
    let fresh = TestRepo::new("example.com/compat/first", NOW);
    for (version, ok) in [(1, true), (2, true), (3, false), (7, false)] {
        let root = fresh.root_file(version);
        let t = fresh.targets_file(2, &[]);
        let s = fresh.snapshot_file(2, &[("root", &root), ("targets", &t)]);
        let uploads = vec![("root".into(), root), ("targets".into(), t), ("snapshot".into(), s)];
        let r = validate_update(&fresh.gun, &BTreeMap::new(), uploads, NOW, &fresh.server_keys(false));
        assert_eq!(r.is_ok(), ok, "first root version {version}: {r:?}");
        if !ok {
            let (kind, msg) = invalid(r.unwrap_err());
            assert_eq!(kind, UpdateErrorKind::BadRoot);
            assert!(msg.contains("must be 1 or 2"), "{msg}");
        }
    }
}
