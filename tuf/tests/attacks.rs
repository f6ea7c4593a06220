//! One test per attack in the TUF specification's list and per audit
//! finding Seal answers, each against a checked-in adversarial fixture
//! (`fixtures/tuf-attacks/`, made by `examples/gen_attack_fixtures.rs`).
//! Each test fails if the protection it names is removed.

use std::collections::BTreeMap;
use std::path::PathBuf;

use seal_tuf::client::{verify_target, Limits, Repo, TrustPin};
use seal_tuf::update::{validate_update, ServerKeys, StoredFiles};
use seal_tuf::{Error, PublicKey, SignedFile, UpdateError, UpdateErrorKind};
use time::macros::datetime;
use time::{Duration, OffsetDateTime};

const GUN: &str = "example.com/attacks/app";
const NOW: OffsetDateTime = datetime!(2026-11-22 12:00:00 UTC);

fn read(path: &str) -> Vec<u8> {
    let p = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_else(|| env!("CARGO_MANIFEST_DIR").into()))
        .join("../fixtures/tuf-attacks")
        .join(path);
    std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

fn base(role: &str) -> Vec<u8> {
    read(&format!("base/{role}.json"))
}

fn client(limits: Limits) -> Repo {
    let mut repo = Repo::new(GUN, TrustPin::Tofu, limits);
    repo.update_root(base("root"), NOW).unwrap();
    repo
}

fn trusted() -> Repo {
    let mut repo = client(Limits::default());
    repo.update_timestamp(base("timestamp"), NOW).unwrap();
    repo.update_snapshot(base("snapshot"), NOW).unwrap();
    repo.update_targets("targets", base("targets"), NOW).unwrap();
    repo.update_targets("targets/releases", base("targets/releases"), NOW)
        .unwrap();
    repo
}

fn stored() -> StoredFiles {
    let mut s = BTreeMap::new();
    for role in ["root", "targets", "targets/releases", "snapshot", "timestamp"] {
        s.insert(role.to_owned(), base(role));
    }
    s
}

fn server_keys() -> ServerKeys {
    ServerKeys {
        timestamp: vec![PublicKey::from_json(&read("base/timestamp.key")).unwrap()],
        snapshot: Vec::new(),
    }
}

fn invalid_kind(e: UpdateError) -> (UpdateErrorKind, String) {
    match e {
        UpdateError::Invalid { kind, msg, .. } => (kind, msg),
        other => panic!("expected INVALID_UPDATE, got {other:?}"),
    }
}

#[test]
fn the_base_collection_is_valid() {
    let repo = trusted();
    assert_eq!(repo.lookup("app", NOW).unwrap().unwrap().0, "targets");
    assert_eq!(repo.lookup("releases/1.0", NOW).unwrap().unwrap().0, "targets/releases");
}

#[test]
fn arbitrary_installation_is_caught_by_target_hashes() {
    let repo = trusted();
    let (_, meta) = repo.lookup("app", NOW).unwrap().unwrap();
    verify_target("app", &meta, &read("base/app")).unwrap();
    assert!(matches!(
        verify_target("app", &meta, &read("arbitrary-installation/app")),
        Err(Error::HashMismatch { .. })
    ));
}

#[test]
fn endless_data_is_cut_at_the_vouched_length_or_the_limit() {
    let mut repo = client(Limits::default());
    repo.update_timestamp(base("timestamp"), NOW).unwrap();
    assert!(matches!(
        repo.update_snapshot(read("endless-data/snapshot.json"), NOW),
        Err(Error::TooLarge { .. })
    ));
    let small = Limits {
        timestamp: 64 << 10,
        ..Limits::default()
    };
    let mut repo = client(small);
    assert!(matches!(
        repo.update_timestamp(read("endless-data/timestamp.json"), NOW),
        Err(Error::TooLarge { .. })
    ));
    repo.update_timestamp(base("timestamp"), NOW).unwrap();
    assert!(repo.max_size("snapshot") < 70_000);
}

#[test]
fn extraneous_dependencies_outside_delegated_paths_are_refused() {
    // The server refuses the upload (Notary accepted it).
    let uploads = vec![
        (
            "targets/releases".to_owned(),
            read("extraneous-dependencies/targets/releases.json"),
        ),
        ("snapshot".to_owned(), read("extraneous-dependencies/snapshot.json")),
    ];
    let (kind, msg) = invalid_kind(validate_update(GUN, &stored(), uploads, NOW, &server_keys()).unwrap_err());
    assert_eq!(kind, UpdateErrorKind::BadTargets);
    assert!(msg.contains("tools/compiler"), "{msg}");
    // A client served those files never resolves the extraneous target.
    let mut repo = client(Limits::default());
    repo.update_timestamp(read("extraneous-dependencies/timestamp.json"), NOW)
        .unwrap();
    repo.update_snapshot(read("extraneous-dependencies/snapshot.json"), NOW)
        .unwrap();
    repo.update_targets("targets", base("targets"), NOW).unwrap();
    repo.update_targets(
        "targets/releases",
        read("extraneous-dependencies/targets/releases.json"),
        NOW,
    )
    .unwrap();
    assert!(repo.lookup("tools/compiler", NOW).unwrap().is_none());
    assert!(repo.lookup("releases/1.0", NOW).unwrap().is_some());
    // Nor lists it, under any role.
    let listed = repo.list_targets(&[]);
    assert!(!listed.contains_key("tools/compiler"), "{listed:?}");
    assert_eq!(listed["releases/1.0"].0, "targets/releases");
    assert_eq!(listed["app"].0, "targets");
    let releases = repo.list_targets(&["targets/releases".to_owned()]);
    assert_eq!(releases.keys().collect::<Vec<_>>(), ["releases/1.0"]);
    let roles: Vec<&str> = repo.roles_preorder().into_iter().map(|(r, _)| r).collect();
    assert_eq!(roles, ["targets", "targets/releases"]);
}

#[test]
fn fast_forward_to_the_integer_maximum_is_refused() {
    let mut repo = client(Limits::default());
    assert!(matches!(
        repo.update_timestamp(read("fast-forward/timestamp.json"), NOW),
        Err(Error::VersionTooLarge { .. })
    ));
    let uploads = vec![("targets".to_owned(), read("fast-forward/targets.json"))];
    let (kind, msg) = invalid_kind(validate_update(GUN, &stored(), uploads, NOW, &server_keys()).unwrap_err());
    assert_eq!(kind, UpdateErrorKind::BadTargets);
    assert!(msg.contains("too large"), "{msg}");
}

#[test]
fn indefinite_freeze_is_refused() {
    let mut repo = client(Limits::default());
    assert!(matches!(
        repo.update_timestamp(read("indefinite-freeze/timestamp.json"), NOW),
        Err(Error::Expired { .. })
    ));
    // Metadata trusted earlier stops being usable once it expires.
    let repo = trusted();
    assert!(matches!(
        repo.lookup("app", NOW + Duration::days(15)),
        Err(Error::Expired { .. })
    ));
}

#[test]
fn malicious_mirror_signatures_do_not_count() {
    for f in [
        "malicious-mirror/timestamp.json",
        "malicious-mirror/timestamp-forged-keyid.json",
    ] {
        let mut repo = client(Limits::default());
        assert!(
            matches!(
                repo.update_timestamp(read(f), NOW),
                Err(Error::Threshold { valid: 0, .. })
            ),
            "{f}"
        );
    }
}

#[test]
fn mix_and_match_is_caught_by_snapshot_hashes() {
    let mut repo = client(Limits::default());
    repo.update_timestamp(base("timestamp"), NOW).unwrap();
    repo.update_snapshot(base("snapshot"), NOW).unwrap();
    assert!(matches!(
        repo.update_targets("targets", read("mix-and-match/targets.json"), NOW),
        Err(Error::HashMismatch { .. })
    ));
}

#[test]
fn rollback_is_refused() {
    let mut repo = trusted();
    assert!(matches!(
        repo.update_timestamp(read("rollback/timestamp.json"), NOW),
        Err(Error::Rollback { trusted: 2, got: 1, .. })
    ));
    // Also across restarts, from the versions the client cached.
    let mut fresh = client(Limits::default());
    fresh.set_floor("timestamp", 2);
    assert!(matches!(
        fresh.update_timestamp(read("rollback/timestamp.json"), NOW),
        Err(Error::Rollback { .. })
    ));
    // And the server refuses an old snapshot.
    let uploads = vec![("snapshot".to_owned(), read("rollback/snapshot.json"))];
    let err = validate_update(GUN, &stored(), uploads, NOW, &server_keys()).unwrap_err();
    assert!(
        matches!(err, UpdateError::Invalid { .. } | UpdateError::OldVersion { .. }),
        "{err:?}"
    );
}

#[test]
fn key_compromise_below_threshold_cannot_rotate_the_root() {
    let mut repo = trusted();
    assert!(matches!(
        repo.update_root(read("key-compromise-below-threshold/root.json"), NOW),
        Err(Error::Threshold {
            valid: 1,
            threshold: 2,
            ..
        })
    ));
    let uploads = vec![("root".to_owned(), read("key-compromise-below-threshold/root.json"))];
    let (kind, _) = invalid_kind(validate_update(GUN, &stored(), uploads, NOW, &server_keys()).unwrap_err());
    assert_eq!(kind, UpdateErrorKind::BadRoot);
}

#[test]
fn wrong_software_is_caught_by_the_target_name() {
    let repo = trusted();
    let (_, app) = repo.lookup("app", NOW).unwrap().unwrap();
    let (_, other) = repo.lookup("other", NOW).unwrap().unwrap();
    let offered = read("wrong-software/app");
    verify_target("other", &other, &offered).unwrap();
    assert!(verify_target("app", &app, &offered).is_err());
}

#[test]
fn signature_method_cannot_choose_the_algorithm_ncc_2015() {
    let uploads = vec![("targets".to_owned(), read("method-mismatch/targets.json"))];
    let (kind, msg) = invalid_kind(validate_update(GUN, &stored(), uploads, NOW, &server_keys()).unwrap_err());
    assert_eq!(kind, UpdateErrorKind::BadTargets);
    assert!(msg.contains("threshold"), "{msg}");
    let file = SignedFile::parse("targets", read("method-mismatch/targets.json")).unwrap();
    let root = seal_tuf::Root::from_signed(SignedFile::parse("root", base("root")).unwrap().signed()).unwrap();
    let key = root.role_key_list("targets")[0];
    let sig = &file.signatures()[0];
    assert!(matches!(
        key.verify(&sig.method, file.canonical_signed(), &sig.sig),
        Err(seal_tuf::KeyError::MethodMismatch { .. })
    ));
}

#[test]
fn an_expired_root_never_extends_a_freeze_ncc_2015() {
    let mut repo = Repo::new(GUN, TrustPin::Tofu, Limits::default());
    assert!(matches!(
        repo.update_root(read("expired-root/root.json"), NOW),
        Err(Error::Expired { .. })
    ));
    let uploads = vec![("root".to_owned(), read("expired-root/root.json"))];
    let (kind, _) = invalid_kind(validate_update(GUN, &BTreeMap::new(), uploads, NOW, &server_keys()).unwrap_err());
    assert_eq!(kind, UpdateErrorKind::BadRoot);
}

#[test]
fn duplicate_fields_are_refused_cure53_tuf_01_001() {
    assert!(matches!(
        SignedFile::parse("targets", read("duplicate-fields/targets.json")),
        Err(Error::Json { .. })
    ));
    let uploads = vec![("targets".to_owned(), read("duplicate-fields/targets.json"))];
    assert!(matches!(
        validate_update(GUN, &stored(), uploads, NOW, &server_keys()).unwrap_err(),
        UpdateError::MalformedJson { .. }
    ));
}
