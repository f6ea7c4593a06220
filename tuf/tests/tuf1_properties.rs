//! Property tests of the TUF 1.0 core: files round-trip through JSON with
//! the same canonical bytes (control characters included), path matching
//! never panics, and no byte-level change to a signed file both parses and
//! verifies with a different meaning.

mod tuf1_support;

use proptest::prelude::*;
use seal_tuf::cjson::Value;
use seal_tuf::tuf1::cjson::{to_canonical, to_json};
use seal_tuf::tuf1::metadata::path_matches;
use seal_tuf::tuf1::TrustedSet;
use tuf1_support::*;

fn value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|i| Value::Int(i.into())),
        any::<u64>().prop_map(|i| Value::Int(i.into())),
        any::<String>().prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 64, 8, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map(any::<String>(), inner, 0..6).prop_map(Value::Object),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn files_round_trip_to_the_same_canonical_bytes(v in value()) {
        let back = Value::parse(&to_json(&v)).unwrap();
        prop_assert_eq!(to_canonical(&back), to_canonical(&v));
        prop_assert_eq!(back, v);
    }

    #[test]
    fn path_matching_never_panics(target in "[a-c/\\[\\]!*?\\-é]{0,12}", pattern in "[a-c/\\[\\]!*?\\-é]{0,12}") {
        let _ = path_matches(&target, &pattern);
        // A pattern without wildcards matches exactly itself.
        if !pattern.contains(['*', '?', '[']) {
            prop_assert_eq!(path_matches(&target, &pattern), target == pattern);
        }
        prop_assert!(path_matches(&target, &target.split('/').map(|_| "*").collect::<Vec<_>>().join("/")));
    }
}

#[test]
fn no_single_byte_change_to_a_root_verifies_with_another_meaning() {
    let repo = simple_repo();
    let original = TrustedSet::new(&repo.root).unwrap();
    let canonical = original.root().canonical_signed().to_vec();
    let bytes = repo.root.clone();
    let mut verified = 0;
    for i in 0..bytes.len() {
        for delta in [1u8, 0x20, 0x80] {
            let mut b = bytes.clone();
            b[i] ^= delta;
            if let Ok(set) = TrustedSet::new(&b) {
                verified += 1;
                assert_eq!(
                    set.root().canonical_signed(),
                    canonical.as_slice(),
                    "byte {i} ^ {delta:#x} changed the signed meaning"
                );
            }
        }
    }
    // Changes to the signature list's hex case still verify, so the loop
    // did look at accepted files.
    assert!(verified > 0);
}
