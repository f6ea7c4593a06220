//! Property tests: canonical JSON round-trips; a validated update never
//! lowers a version; no input makes parsing or validation panic.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use proptest::prelude::*;
use seal_tuf::cjson::Value;
use seal_tuf::testing::TestRepo;
use seal_tuf::update::{validate_update, StoredFiles};
use time::macros::datetime;
use time::OffsetDateTime;

const NOW: OffsetDateTime = datetime!(2026-11-22 12:00:00 UTC);

/// Strings without control characters: Notary's canonical encoder writes
/// those raw, which no JSON parser (Go's included) reads back.
fn text() -> impl Strategy<Value = String> {
    "[^\\x00-\\x1f]{0,12}"
}

fn value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|i| Value::Int(i.into())),
        any::<u64>().prop_map(|i| Value::Int(i.into())),
        text().prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 64, 8, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map(text(), inner, 0..6).prop_map(Value::Object),
        ]
    })
}

/// The same value written with whitespace and keys in reverse order.
fn noisy(v: &Value) -> String {
    match v {
        Value::Array(items) => format!("[ {} ]", items.iter().map(noisy).collect::<Vec<_>>().join(" ,\n ")),
        Value::Object(m) => format!(
            "{{ {} }}",
            m.iter()
                .rev()
                .map(|(k, v)| format!("{} :\t{}", serde_json::to_string(k).unwrap(), noisy(v)))
                .collect::<Vec<_>>()
                .join(" , ")
        ),
        Value::String(s) => serde_json::to_string(s).unwrap(),
        other => String::from_utf8(other.to_canonical()).unwrap(),
    }
}

proptest! {
    #[test]
    fn canonical_json_round_trips(v in value()) {
        let c = v.to_canonical();
        let back = Value::parse(&c).unwrap();
        prop_assert_eq!(&back, &v);
        prop_assert_eq!(back.to_canonical(), c.clone());
        // Any spelling of the same value has the same canonical form.
        let n = noisy(&v);
        prop_assert_eq!(Value::parse(n.as_bytes()).unwrap().to_canonical(), c);
    }

    #[test]
    fn strings_escape_only_quote_backslash_and_line_separators(
        s in "[\"\\\\\u{2027}\u{2028}\u{2029}\u{202a}\u{2100}é€a\n]{0,16}"
    ) {
        // Character by character, as Notary's canonical encoder writes strings.
        let mut want = String::from("\"");
        for c in s.chars() {
            match c {
                '"' => want.push_str("\\\""),
                '\\' => want.push_str("\\\\"),
                '\u{2028}' => want.push_str("\\u2028"),
                '\u{2029}' => want.push_str("\\u2029"),
                c => want.push(c),
            }
        }
        want.push('"');
        prop_assert_eq!(String::from_utf8(Value::String(s).to_canonical()).unwrap(), want);
    }

    #[test]
    fn parsing_never_panics(data in prop::collection::vec(any::<u8>(), 0..512)) {
        seal_tuf::testing::fuzz_parse(&data);
    }
}

fn repo() -> &'static TestRepo {
    static REPO: OnceLock<TestRepo> = OnceLock::new();
    REPO.get_or_init(|| TestRepo::new("example.com/prop/app", datetime!(2026-11-22 00:00:00 UTC)))
}

fn version_of(bytes: &[u8]) -> u64 {
    let f = seal_tuf::SignedFile::parse("x", bytes.to_vec()).unwrap();
    f.signed().get("version").and_then(Value::as_int).unwrap() as u64
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn a_validated_update_never_lowers_a_version(
        steps in prop::collection::vec((0u8..3, 1u64..12), 1..10)
    ) {
        let r = repo();
        let keys = r.server_keys(true);
        let mut stored: StoredFiles = BTreeMap::new();
        let first = r.first_publish(&[("a", b"a")]);
        validate_update(&r.gun, &stored, first.clone(), NOW, &keys).unwrap();
        for (role, bytes) in first {
            stored.insert(role, bytes);
        }
        for (which, version) in steps {
            let (role, bytes) = match which {
                0 => ("targets", r.targets_file(version, &[("b", b"b")])),
                1 => ("root", r.root_file(version)),
                _ => ("snapshot", r.snapshot_file(version, &[("root", &stored["root"]), ("targets", &stored["targets"])])),
            };
            let before = stored.get(role).map(|b| version_of(b));
            if let Ok(plan) = validate_update(&r.gun, &stored, vec![(role.to_owned(), bytes.clone())], NOW, &keys) {
                for f in &plan.files {
                    let new = version_of(f.bytes());
                    if let Some(old) = stored.get(f.role()).map(|b| version_of(b)) {
                        prop_assert!(new > old, "{} went from {} to {}", f.role(), old, new);
                    }
                }
                prop_assert!(before.is_none_or(|b| version > b));
                for f in plan.files {
                    stored.insert(f.role().to_owned(), f.into_bytes());
                }
            }
        }
    }

    #[test]
    fn validation_never_panics(data in prop::collection::vec(any::<u8>(), 0..600)) {
        let r = repo();
        let stored: StoredFiles = r.first_publish(&[("a", b"a")]).into_iter().collect();
        seal_tuf::testing::fuzz_validate(&stored, &r.server_keys(true), &r.gun, NOW, &data);
    }
}
