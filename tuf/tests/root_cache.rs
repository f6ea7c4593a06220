//! The parsed root a node keeps per collection (`UpdatePlan::root`, passed back to
//! `validate_update_cached`) is only a hint: a cached root whose bytes are not the stored
//! root's must not change any verdict, and a matching one must give the verdict of a
//! validation that parses the stored root itself.

use std::sync::Arc;

use seal_tuf::testing::TestRepo;
use seal_tuf::update::{validate_update_cached, validate_update_with, ParsedRoot, UpdateLimits};
use seal_tuf::{UpdateError, UpdateErrorKind};
use time::macros::datetime;
use time::OffsetDateTime;

const GUN: &str = "example.com/cache/app";
const NOW: OffsetDateTime = datetime!(2026-12-07 12:00:00 UTC);
const T: &[(&str, &[u8])] = &[("v1", b"one")];

fn kind(e: UpdateError) -> (UpdateErrorKind, String) {
    match e {
        UpdateError::Invalid { kind, msg, .. } => (kind, msg),
        other => panic!("expected INVALID_UPDATE, got {other:?}"),
    }
}

#[test]
fn a_matching_cached_root_gives_the_uncached_verdict_and_is_handed_back() {
    let repo = TestRepo::new(GUN, NOW);
    let stored = repo.stored_after_first_publish(T);
    let t3 = repo.targets_file(3, T);
    let s3 = repo.snapshot_file(3, &[("root", &stored["root"]), ("targets", &t3)]);
    let upload = vec![("targets".to_owned(), t3), ("snapshot".to_owned(), s3)];
    let keys = repo.server_keys(false);
    let limits = UpdateLimits::default();

    let plain = validate_update_with(GUN, &stored, upload.clone(), NOW, &keys, &limits).unwrap();
    assert_eq!(plain.root.bytes(), stored["root"].as_slice());
    let cached = Arc::new(ParsedRoot::parse(stored["root"].clone()).unwrap());
    let with_cache = validate_update_cached(GUN, &stored, upload, NOW, &keys, &limits, Some(cached.clone())).unwrap();
    assert!(
        Arc::ptr_eq(&with_cache.root, &cached),
        "the matching cached root is the plan's root"
    );
    assert_eq!(with_cache.versions, plain.versions);
    assert_eq!(with_cache.expected, plain.expected);
    assert_eq!(with_cache.snapshot, plain.snapshot);
    assert_eq!(with_cache.timestamp_key_ids, plain.timestamp_key_ids);
    let bytes = |p: &seal_tuf::update::UpdatePlan| p.files.iter().map(|f| f.bytes().to_vec()).collect::<Vec<_>>();
    assert_eq!(bytes(&with_cache), bytes(&plain));
}

#[test]
fn a_cached_root_that_is_not_the_stored_one_is_ignored() {
    let owner = TestRepo::new(GUN, NOW);
    let stored = owner.stored_after_first_publish(T);
    // Another root for the same GUN, with keys the stored root does not list: an upload signed
    // by its keys would pass if validation believed the cached root.
    let intruder = TestRepo::new(GUN, NOW);
    let intruder_root = intruder.root_file(1);
    let t3 = intruder.targets_file(3, T);
    let s3 = intruder.snapshot_file(3, &[("root", &intruder_root), ("targets", &t3)]);
    let upload = vec![("targets".to_owned(), t3), ("snapshot".to_owned(), s3)];
    let keys = owner.server_keys(false);
    let limits = UpdateLimits::default();
    let wrong = Arc::new(ParsedRoot::parse(intruder_root).unwrap());

    let plain = kind(validate_update_with(GUN, &stored, upload.clone(), NOW, &keys, &limits).unwrap_err());
    let with_cache = kind(validate_update_cached(GUN, &stored, upload, NOW, &keys, &limits, Some(wrong)).unwrap_err());
    assert_eq!(plain.0, UpdateErrorKind::BadTargets, "{}", plain.1);
    assert_eq!(with_cache, plain);
}

#[test]
fn a_snapshot_listing_another_root_is_refused_with_the_cached_root() {
    let repo = TestRepo::new(GUN, NOW);
    let stored = repo.stored_after_first_publish(T);
    let other_root = repo.root_file(2); // a root never uploaded: other bytes than the stored one
    let t3 = repo.targets_file(3, T);
    let s3 = repo.snapshot_file(3, &[("root", &other_root), ("targets", &t3)]);
    let upload = vec![("targets".to_owned(), t3), ("snapshot".to_owned(), s3)];
    let keys = repo.server_keys(false);
    let cached = Arc::new(ParsedRoot::parse(stored["root"].clone()).unwrap());

    let e = kind(
        validate_update_cached(GUN, &stored, upload, NOW, &keys, &UpdateLimits::default(), Some(cached)).unwrap_err(),
    );
    assert_eq!(e.0, UpdateErrorKind::BadSnapshot);
    assert!(e.1.contains("snapshot entry for root"), "{}", e.1);
}

#[test]
fn an_uploaded_root_becomes_the_plans_root() {
    let repo = TestRepo::new(GUN, NOW);
    let stored = repo.stored_after_first_publish(T);
    let root2 = repo.root_file(2);
    let t3 = repo.targets_file(3, T);
    let s3 = repo.snapshot_file(3, &[("root", &root2), ("targets", &t3)]);
    let upload = vec![
        ("root".to_owned(), root2.clone()),
        ("targets".to_owned(), t3),
        ("snapshot".to_owned(), s3),
    ];
    let cached = Arc::new(ParsedRoot::parse(stored["root"].clone()).unwrap());
    let plan = validate_update_cached(
        GUN,
        &stored,
        upload,
        NOW,
        &repo.server_keys(false),
        &UpdateLimits::default(),
        Some(cached),
    )
    .unwrap();
    assert_eq!(plan.root.bytes(), root2.as_slice());
    assert_eq!(plan.root.root().version, 2);
}
