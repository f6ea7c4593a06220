//! A repository made by python-tuf 7.0.1 (tests/tuf1/make_fixtures.py),
//! verified by seal-tuf's TUF 1.0 client workflow: root rotation,
//! fast-forward recovery, ed25519 / ECDSA (DER) / RSA-PSS signatures,
//! path delegations, succinct hash bins, and canonical JSON with U+2028.

use std::path::PathBuf;

use seal_tuf::tuf1::{Error, SearchStep, TargetSearch, TimestampUpdate, TrustedSet};
use time::macros::datetime;
use time::OffsetDateTime;

const NOW: OffsetDateTime = datetime!(2026-12-07 12:00 UTC);

fn fixture(name: &str) -> Vec<u8> {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/tuf1")
        .join(name);
    std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

fn updated_set() -> TrustedSet {
    let mut set = TrustedSet::new(&fixture("1.root.json")).unwrap();
    set.update_root(&fixture("2.root.json")).unwrap();
    assert_eq!(
        set.update_timestamp(&fixture("timestamp.json"), NOW).unwrap(),
        TimestampUpdate::Updated
    );
    set.update_snapshot(&fixture("snapshot.json"), NOW).unwrap();
    set.update_targets(&fixture("targets.json"), NOW).unwrap();
    set
}

/// Runs a search to the end, loading each role it asks for from the
/// fixtures; returns the role that listed the target and the roles loaded.
fn find(set: &mut TrustedSet, path: &str) -> (Option<(String, seal_tuf::tuf1::TargetFile)>, Vec<String>) {
    let mut search = TargetSearch::new(path);
    let mut loaded = Vec::new();
    loop {
        match search.next(set) {
            SearchStep::Load { role, delegator } => {
                set.update_delegated_targets(&role, &delegator, &fixture(&format!("{role}.json")), NOW)
                    .unwrap();
                loaded.push(role);
            }
            SearchStep::Found { role, target } => return (Some((role, target.clone())), loaded),
            SearchStep::NotFound => return (None, loaded),
        }
    }
}

#[test]
fn python_tuf_repository_verifies_and_targets_are_found() {
    let mut set = updated_set();
    assert_eq!(set.root().version(), 2);

    let (found, loaded) = find(&mut set, "files/hello.txt");
    let (role, target) = found.unwrap();
    assert_eq!(role, "targets");
    assert!(loaded.is_empty());
    target.verify("files/hello.txt", b"hello, tuf\n").unwrap();
    assert_eq!(target.hashes.len(), 2, "sha256 and sha512 both checked");

    let (found, loaded) = find(&mut set, "releases/app-1.0.tgz");
    let (role, target) = found.unwrap();
    assert_eq!(role, "releases", "RSA-PSS signed delegation");
    assert_eq!(loaded, ["releases"]);
    target
        .verify("releases/app-1.0.tgz", &fixture("targets/releases/app-1.0.tgz"))
        .unwrap();

    let bin = String::from_utf8(fixture("expected-bin.txt"))
        .unwrap()
        .trim()
        .to_owned();
    let (found, loaded) = find(&mut set, "hashed/pkg-1.0.tar.gz");
    let (role, target) = found.unwrap();
    assert_eq!(role, bin, "the bin python-tuf put it in");
    assert_eq!(loaded, ["hashed".to_owned(), bin.clone()]);
    target
        .verify("hashed/pkg-1.0.tar.gz", &fixture("targets/hashed/pkg-1.0.tar.gz"))
        .unwrap();
    assert!(target.verify("hashed/pkg-1.0.tar.gz", b"tampered").is_err());
}

#[test]
fn absent_targets_are_not_found_and_terminating_stops_the_search() {
    let mut set = updated_set();
    // `releases` is terminating for releases/*.tgz: `hashed` is never asked.
    let (found, loaded) = find(&mut set, "releases/other.tgz");
    assert!(found.is_none());
    assert_eq!(loaded, ["releases"]);
    // No role is trusted for this path: nothing is loaded.
    let (found, loaded) = find(&mut set, "elsewhere/x");
    assert!(found.is_none());
    assert!(loaded.is_empty());
    // A pattern never crosses `/`.
    let (found, _) = find(&mut set, "releases/sub/app-1.0.tgz");
    assert!(found.is_none());
}

#[test]
fn unrecognised_fields_and_canonical_escaping_survive() {
    let set = updated_set();
    let root = set.root();
    assert_eq!(
        root.signed_value().get("x-seal-note").and_then(|v| v.as_str()),
        Some("rotated root and timestamp keys")
    );
    let targets = set.targets("targets").unwrap();
    let canonical = String::from_utf8(targets.canonical_signed().to_vec()).unwrap();
    // python-tuf signed U+2028 and é raw, the quote and backslash escaped.
    assert!(
        canonical.contains("line\u{2028}sep \\\"quoted\\\" \\\\ é"),
        "{canonical}"
    );
    let custom = targets.signed().targets["files/hello.txt"].custom.clone().unwrap();
    assert_eq!(
        custom.get("note").and_then(|v| v.as_str()),
        Some("line\u{2028}sep \"quoted\" \\ é")
    );
}

#[test]
fn rotated_timestamp_key_drops_the_fast_forwarded_timestamp() {
    // A timestamp at version 7 naming snapshot 5, signed with root v1's
    // timestamp key, was trusted before the rotation.
    let mut set = TrustedSet::new(&fixture("1.root.json")).unwrap();
    set.load_previous_timestamp(&fixture("timestamp-v1-key.json")).unwrap();
    assert_eq!(set.timestamp().unwrap().version(), 7);
    // Without the rotation, version 1 is a rollback.
    let mut frozen = set.clone();
    let err = frozen.update_timestamp(&fixture("timestamp.json"), NOW).unwrap_err();
    // (timestamp.json is signed by root v2's key, which v1 does not trust.)
    assert!(matches!(err, Error::Threshold { .. }), "{err:?}");
    // Root v2 rotates the timestamp key: the old timestamp is dropped.
    set.update_root(&fixture("2.root.json")).unwrap();
    assert!(set.timestamp().is_none());
    set.update_timestamp(&fixture("timestamp.json"), NOW).unwrap();
    // And the v1-key timestamp no longer verifies under root v2.
    let mut again = TrustedSet::new(&fixture("2.root.json")).unwrap();
    assert!(matches!(
        again.load_previous_timestamp(&fixture("timestamp-v1-key.json")),
        Err(Error::Threshold { valid: 0, .. })
    ));
}

#[test]
fn root_v2_alone_is_a_valid_trust_anchor_but_v1_is_not_signed_by_v2() {
    let mut set = TrustedSet::new(&fixture("2.root.json")).unwrap();
    assert!(matches!(
        set.update_root(&fixture("1.root.json")),
        Err(Error::WrongVersion {
            expected: 3,
            got: 1,
            ..
        })
    ));
    // Skipping a version is refused too.
    let mut set = TrustedSet::new(&fixture("1.root.json")).unwrap();
    set.update_root(&fixture("2.root.json")).unwrap();
    assert!(matches!(
        set.update_root(&fixture("2.root.json")),
        Err(Error::WrongVersion { expected: 3, .. })
    ));
}

#[test]
fn expired_after_2099() {
    let later = datetime!(2099-01-01 0:00 UTC);
    let mut set = TrustedSet::new(&fixture("1.root.json")).unwrap();
    set.update_root(&fixture("2.root.json")).unwrap();
    let err = set.update_timestamp(&fixture("timestamp.json"), later).unwrap_err();
    assert!(
        matches!(err, Error::Expired { ref role, .. } if role == "root"),
        "{err:?}"
    );
}
