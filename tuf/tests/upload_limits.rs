//! Limits derived from the metadata itself: no more signatures than keys
//! that could count (plus a small allowance), no key named twice, each key
//! tried once, bounded keys, delegations and targets per file, and a
//! bounded version jump, so that no upload can cost the verifier more than
//! its keys justify or lock a role at the largest version.

use std::collections::BTreeMap;

use seal_tuf::testing::TestRepo;
use seal_tuf::update::{validate_update, validate_update_with, UpdateLimits};
use seal_tuf::verify::{verify_threshold, EXTRA_SIGNATURES};
use seal_tuf::{Error, SignedFile, UpdateError, UpdateErrorKind};
use time::macros::datetime;
use time::OffsetDateTime;

const GUN: &str = "example.com/limits/app";
const NOW: OffsetDateTime = datetime!(2026-11-22 12:00:00 UTC);

fn invalid(e: UpdateError) -> (UpdateErrorKind, String) {
    match e {
        UpdateError::Invalid { kind, msg, .. } => (kind, msg),
        other => panic!("expected INVALID_UPDATE, got {other:?}"),
    }
}

/// `bytes` (a signed file) with its signature list replaced by `count`
/// copies of its first signature, the first `garbled` of them garbled.
fn with_signatures(role: &str, bytes: &[u8], count: usize, garbled: usize) -> Vec<u8> {
    let file = SignedFile::parse(role, bytes.to_vec()).unwrap();
    let sig = file.signatures()[0].clone();
    let sigs = (0..count)
        .map(|i| {
            let mut s = sig.clone();
            if i < garbled {
                s.sig[0] ^= 0xff;
            }
            s
        })
        .collect();
    SignedFile::assemble(role, file.signed().clone(), sigs).into_bytes()
}

#[test]
fn a_root_with_thousands_of_signatures_by_its_one_key_is_refused_unverified() {
    let repo = TestRepo::new(GUN, NOW);
    let mut upload = repo.first_publish(&[]);
    upload[0].1 = with_signatures("root", &upload[0].1, 40_000, 40_000);
    let (kind, msg) =
        invalid(validate_update(GUN, &BTreeMap::new(), upload, NOW, &repo.server_keys(false)).unwrap_err());
    assert_eq!(kind, UpdateErrorKind::BadRoot);
    assert_eq!(
        msg,
        format!(
            "root: 40000 signatures, more than the {} its keys allow",
            1 + EXTRA_SIGNATURES
        )
    );
}

#[test]
fn two_signatures_naming_one_key_are_refused() {
    let repo = TestRepo::new(GUN, NOW);
    let stored = repo.stored_after_first_publish(&[]);
    let t = with_signatures("targets", &repo.targets_file(3, &[]), 2, 0);
    let (kind, msg) =
        invalid(validate_update(GUN, &stored, vec![("targets".into(), t)], NOW, &repo.server_keys(true)).unwrap_err());
    assert_eq!(kind, UpdateErrorKind::BadTargets);
    assert!(msg.contains("two signatures by key"), "{msg}");
}

#[test]
fn each_key_is_tried_once_however_many_signatures_name_it() {
    // A client reading a file whose first signature by the key is garbled
    // does not go on trying the same key on the others.
    let repo = TestRepo::new(GUN, NOW);
    let bytes = with_signatures("targets", &repo.targets_file(3, &[]), 1_000, 1);
    let file = SignedFile::parse("targets", bytes).unwrap();
    let key = repo.targets.public_key();
    let err = verify_threshold(&file, &[&key], 1).unwrap_err();
    assert!(matches!(err, Error::Threshold { valid: 0, .. }), "{err:?}");
    // The same signatures with the valid one first verify.
    let bytes = with_signatures("targets", &repo.targets_file(3, &[]), 1_000, 0);
    let file = SignedFile::parse("targets", bytes).unwrap();
    assert_eq!(verify_threshold(&file, &[&key], 1).unwrap(), 1);
}

#[test]
fn versions_may_not_jump_further_than_the_limit() {
    let repo = TestRepo::new(GUN, NOW);
    let stored = repo.stored_after_first_publish(&[]);
    let keys = repo.server_keys(true);
    let limits = UpdateLimits::default();
    let up = |v: u64| vec![("targets".to_owned(), repo.targets_file(v, &[]))];
    // Stored targets is version 2.
    validate_update_with(GUN, &stored, up(2 + limits.max_version_jump), NOW, &keys, &limits).unwrap();
    let (kind, msg) =
        invalid(validate_update_with(GUN, &stored, up(3 + limits.max_version_jump), NOW, &keys, &limits).unwrap_err());
    assert_eq!(kind, UpdateErrorKind::Validation);
    assert_eq!(msg, "targets: version 1000003 jumps more than 1000000 above 2");
    // The largest version, which would lock the role, is out of reach.
    let max = i64::MAX as u64 - 1;
    assert!(validate_update_with(GUN, &stored, up(max), NOW, &keys, &limits).is_err());
    // A role with nothing stored counts from 0.
    let mut repo = repo;
    repo.delegate("targets/new", &[""]);
    let parent = repo.targets_file(3, &[]);
    let child = repo.delegation_file("targets/new", limits.max_version_jump + 1, &[]);
    let err = validate_update_with(
        GUN,
        &stored,
        vec![("targets".into(), parent), ("targets/new".into(), child)],
        NOW,
        &keys,
        &limits,
    )
    .unwrap_err();
    assert!(invalid(err).1.contains("jumps more than 1000000 above 0"));
}

#[test]
fn keys_delegations_and_targets_per_file_are_bounded() {
    let mut repo = TestRepo::new(GUN, NOW);
    let stored = repo.stored_after_first_publish(&[]);
    let keys = repo.server_keys(true);
    for i in 0..3 {
        repo.delegate(&format!("targets/d{i}"), &[""]);
    }
    let limits = UpdateLimits {
        max_keys: 5,
        max_delegations: 2,
        max_targets: 3,
        ..UpdateLimits::default()
    };
    let t = repo.targets_file(3, &[]);
    let (kind, msg) =
        invalid(validate_update_with(GUN, &stored, vec![("targets".into(), t)], NOW, &keys, &limits).unwrap_err());
    assert_eq!(kind, UpdateErrorKind::BadTargets);
    assert_eq!(msg, "targets: 3 delegations, more than the 2 allowed");
    repo.delegations.truncate(2);
    let many: Vec<(String, Vec<u8>)> = (0..4).map(|i| (format!("t{i}"), vec![i as u8])).collect();
    let many: Vec<(&str, &[u8])> = many.iter().map(|(n, b)| (n.as_str(), b.as_slice())).collect();
    let t = repo.targets_file(3, &many);
    let (_, msg) =
        invalid(validate_update_with(GUN, &stored, vec![("targets".into(), t)], NOW, &keys, &limits).unwrap_err());
    assert_eq!(msg, "targets: 4 targets, more than the 3 allowed");
    // Within every limit: accepted.
    let t = repo.targets_file(3, &many[..3]);
    validate_update_with(GUN, &stored, vec![("targets".into(), t)], NOW, &keys, &limits).unwrap();
    // Keys: a root listing more keys than allowed.
    let limits = UpdateLimits {
        max_keys: 3,
        ..UpdateLimits::default()
    };
    let fresh = TestRepo::new("example.com/limits/other", NOW);
    let err = validate_update_with(
        &fresh.gun,
        &BTreeMap::new(),
        fresh.first_publish(&[]),
        NOW,
        &fresh.server_keys(false),
        &limits,
    )
    .unwrap_err();
    assert_eq!(invalid(err).1, "root: 4 keys, more than the 3 allowed");
}
