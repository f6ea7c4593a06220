//! TUF attacks against the TUF 1.0 client workflow, one test each: every
//! test fails if the protection it names is removed.

mod tuf1_support;

use std::collections::BTreeMap;

use seal_tuf::tuf1::{Error, SearchStep, SigningKey, TargetSearch, TimestampUpdate, TrustedSet};
use serde_json::json;
use time::Duration;
use tuf1_support::*;

fn session(repo: &Repo) -> TrustedSet {
    TrustedSet::new(&repo.root).unwrap()
}

fn full(repo: &Repo) -> TrustedSet {
    let mut s = session(repo);
    s.update_timestamp(&repo.timestamp, NOW).unwrap();
    s.update_snapshot(&repo.snapshot, NOW).unwrap();
    s.update_targets(&repo.targets["targets"], NOW).unwrap();
    s
}

#[test]
fn a_fresh_repository_verifies() {
    let repo = simple_repo();
    let set = full(&repo);
    assert!(set.targets("targets").unwrap().signed().targets.contains_key("a.txt"));
}

#[test]
fn timestamp_rollback_is_refused() {
    let mut repo = simple_repo();
    let old_ts = repo.timestamp.clone();
    repo.publish(EXPIRES);
    let mut s = session(&repo);
    s.load_previous_timestamp(&repo.timestamp).unwrap();
    let err = s.update_timestamp(&old_ts, NOW).unwrap_err();
    assert_eq!(
        err,
        Error::Rollback {
            role: "timestamp".into(),
            trusted: 2,
            got: 1
        }
    );
}

#[test]
fn same_timestamp_version_keeps_the_trusted_one() {
    let repo = simple_repo();
    let mut s = session(&repo);
    s.load_previous_timestamp(&repo.timestamp).unwrap();
    assert_eq!(
        s.update_timestamp(&repo.timestamp, NOW).unwrap(),
        TimestampUpdate::Unchanged
    );
    s.update_snapshot(&repo.snapshot, NOW).unwrap();
}

#[test]
fn snapshot_version_rollback_inside_the_timestamp_is_refused() {
    let repo = simple_repo();
    // A timestamp at version 5 naming snapshot version 1, previously trusted
    // one at version 4 naming snapshot 3.
    let ts = |version: u64, sn: u64| {
        signed(
            json!({"_type":"timestamp","spec_version":"1.0","version":version,
                   "expires":"2030-01-01T00:00:00Z","meta":{"snapshot.json":{"version":sn}}}),
            &[&repo.keys.timestamp],
        )
    };
    let mut s = session(&repo);
    s.load_previous_timestamp(&ts(4, 3)).unwrap();
    assert_eq!(
        s.update_timestamp(&ts(5, 1), NOW).unwrap_err(),
        Error::Rollback {
            role: "snapshot".into(),
            trusted: 3,
            got: 1
        }
    );
}

#[test]
fn freeze_expired_timestamp_snapshot_targets_and_root() {
    let repo = simple_repo();
    let after = EXPIRES + Duration::seconds(1);
    // Root is checked first when the timestamp arrives.
    let err = session(&repo).update_timestamp(&repo.timestamp, after).unwrap_err();
    assert!(matches!(err, Error::Expired { ref role, .. } if role == "root"));

    let mut keys = RootKeys::new();
    keys.root_threshold = 1;
    let t = signed(
        targets_json(1, NOW + Duration::hours(1), json!({}), None),
        &[&keys.targets],
    );
    let mut repo = Repo::new(keys, BTreeMap::from([("targets".to_owned(), t)]));
    repo.publish(NOW + Duration::hours(2));
    let later = NOW + Duration::minutes(90);
    let mut s = session(&repo);
    s.update_timestamp(&repo.timestamp, later).unwrap();
    s.update_snapshot(&repo.snapshot, later).unwrap();
    let err = s.update_targets(&repo.targets["targets"], later).unwrap_err();
    assert!(
        matches!(err, Error::Expired { ref role, .. } if role == "targets"),
        "{err:?}"
    );

    let much_later = NOW + Duration::hours(3);
    let err = session(&repo)
        .update_timestamp(&repo.timestamp, much_later)
        .unwrap_err();
    assert!(
        matches!(err, Error::Expired { ref role, .. } if role == "timestamp"),
        "{err:?}"
    );
    // A timestamp loaded in time cannot carry an expired snapshot through.
    let mut s = session(&repo);
    s.update_timestamp(&repo.timestamp, later).unwrap();
    let err = s.update_snapshot(&repo.snapshot, much_later).unwrap_err();
    assert!(
        matches!(err, Error::Expired { ref role, .. } if role == "timestamp"),
        "{err:?}"
    );
}

#[test]
fn mix_and_match_snapshot_or_targets_is_refused_by_hash() {
    let mut repo = simple_repo();
    let old_snapshot = repo.snapshot.clone();
    let old_targets = repo.targets["targets"].clone();
    // The owners publish targets v2; an attacker serves the new timestamp
    // with the old snapshot, or the new snapshot with the old targets.
    repo.targets.insert(
        "targets".into(),
        signed(targets_json(2, EXPIRES, json!({}), None), &[&repo.keys.targets]),
    );
    repo.publish(EXPIRES);
    let mut s = session(&repo);
    s.update_timestamp(&repo.timestamp, NOW).unwrap();
    let err = s.update_snapshot(&old_snapshot, NOW).unwrap_err();
    assert!(
        matches!(err, Error::LengthMismatch { .. } | Error::HashMismatch { .. }),
        "{err:?}"
    );
    s.update_snapshot(&repo.snapshot, NOW).unwrap();
    let err = s.update_targets(&old_targets, NOW).unwrap_err();
    assert!(
        matches!(err, Error::LengthMismatch { .. } | Error::HashMismatch { .. }),
        "{err:?}"
    );
}

#[test]
fn snapshot_and_targets_versions_must_be_the_ones_named() {
    let repo = simple_repo();
    // Without hashes in the timestamp, only the version ties them together.
    let ts = signed(
        json!({"_type":"timestamp","spec_version":"1.0.31","version":9,
               "expires":"2030-01-01T00:00:00Z","meta":{"snapshot.json":{"version":2}}}),
        &[&repo.keys.timestamp],
    );
    let mut s = session(&repo);
    s.update_timestamp(&ts, NOW).unwrap();
    assert_eq!(
        s.update_snapshot(&repo.snapshot, NOW).unwrap_err(),
        Error::WrongVersion {
            role: "snapshot".into(),
            expected: 2,
            got: 1
        }
    );
    let sn = signed(
        json!({"_type":"snapshot","spec_version":"1.0.31","version":1,
               "expires":"2030-01-01T00:00:00Z","meta":{"targets.json":{"version":3}}}),
        &[&repo.keys.snapshot],
    );
    let ts = signed(
        json!({"_type":"timestamp","spec_version":"1.0.31","version":9,
               "expires":"2030-01-01T00:00:00Z","meta":{"snapshot.json":{"version":1}}}),
        &[&repo.keys.timestamp],
    );
    let mut s = session(&repo);
    s.update_timestamp(&ts, NOW).unwrap();
    s.update_snapshot(&sn, NOW).unwrap();
    assert_eq!(
        s.update_targets(&repo.targets["targets"], NOW).unwrap_err(),
        Error::WrongVersion {
            role: "targets".into(),
            expected: 3,
            got: 1
        }
    );
}

fn snapshot_with(repo: &Repo, version: u64, meta: serde_json::Value) -> (Vec<u8>, Vec<u8>) {
    let sn = signed(
        json!({"_type":"snapshot","spec_version":"1.0.31","version":version,
               "expires":"2030-01-01T00:00:00Z","meta":meta}),
        &[&repo.keys.snapshot],
    );
    let ts = signed(
        json!({"_type":"timestamp","spec_version":"1.0.31","version":version,
               "expires":"2030-01-01T00:00:00Z","meta":{"snapshot.json":{"version":version}}}),
        &[&repo.keys.timestamp],
    );
    (sn, ts)
}

#[test]
fn snapshot_may_not_drop_or_roll_back_a_role() {
    let repo = simple_repo();
    let (old, _) = snapshot_with(&repo, 1, json!({"targets.json":{"version":4},"a.json":{"version":2}}));
    let (dropped, ts) = snapshot_with(&repo, 2, json!({"targets.json":{"version":4}}));
    let mut s = session(&repo);
    s.load_previous_snapshot(&old).unwrap();
    s.update_timestamp(&ts, NOW).unwrap();
    assert_eq!(
        s.update_snapshot(&dropped, NOW).unwrap_err(),
        Error::MissingMeta {
            referrer: "snapshot".into(),
            file: "a.json".into()
        }
    );
    let (lowered, ts) = snapshot_with(&repo, 2, json!({"targets.json":{"version":3},"a.json":{"version":2}}));
    let mut s = session(&repo);
    s.load_previous_snapshot(&old).unwrap();
    s.update_timestamp(&ts, NOW).unwrap();
    assert_eq!(
        s.update_snapshot(&lowered, NOW).unwrap_err(),
        Error::Rollback {
            role: "targets.json".into(),
            trusted: 4,
            got: 3
        }
    );
}

#[test]
fn rotating_the_snapshot_key_recovers_from_a_fast_forward() {
    let mut repo = simple_repo();
    // An attacker with the snapshot key made clients trust targets v99.
    let (ff, _) = snapshot_with(&repo, 1, json!({"targets.json":{"version":99}}));
    // The owners rotate the snapshot key in root v2.
    let old_root = repo.root.clone();
    let mut keys = std::mem::replace(&mut repo.keys, RootKeys::new());
    keys.snapshot = ed();
    let root2 = signed(keys.root_json(2, EXPIRES), &keys.root_signers());
    repo.keys = keys;
    repo.root = root2.clone();
    repo.publish(EXPIRES);

    let mut s = TrustedSet::new(&old_root).unwrap();
    s.load_previous_snapshot(&ff).unwrap();
    // (Without a rotation the fast-forwarded snapshot blocks every update:
    // an_unchanged_root_keeps_the_previous_snapshot_as_reference.)
    s.update_root(&root2).unwrap();
    assert!(s.snapshot().is_none(), "the fast-forwarded snapshot is dropped");
    s.update_timestamp(&repo.timestamp, NOW).unwrap();
    s.update_snapshot(&repo.snapshot, NOW).unwrap();
    s.update_targets(&repo.targets["targets"], NOW).unwrap();
}

#[test]
fn an_unchanged_root_keeps_the_previous_snapshot_as_reference() {
    let repo = simple_repo();
    let (ff, _) = snapshot_with(&repo, 1, json!({"targets.json":{"version":99}}));
    let keys = &repo.keys;
    let root2 = signed(keys.root_json(2, EXPIRES), &keys.root_signers());
    let mut s = TrustedSet::new(&repo.root).unwrap();
    s.load_previous_snapshot(&ff).unwrap();
    s.update_root(&root2).unwrap();
    assert!(s.snapshot().is_some());
    s.update_timestamp(&repo.timestamp, NOW).unwrap();
    assert!(matches!(
        s.update_snapshot(&repo.snapshot, NOW),
        Err(Error::Rollback {
            trusted: 99,
            got: 1,
            ..
        })
    ));
}

#[test]
fn duplicate_signatures_by_one_key_do_not_meet_a_threshold_of_two() {
    let mut keys = RootKeys::new();
    keys.root = vec![ed(), ec()];
    keys.root_threshold = 2;
    let body = keys.root_json(1, EXPIRES);
    let first = &keys.root[0];
    // The same key signing twice.
    let twice = signed(body.clone(), &[first, first]);
    assert_eq!(
        TrustedSet::new(&twice).unwrap_err(),
        Error::Threshold {
            role: "root".into(),
            valid: 1,
            threshold: 2
        }
    );
    // One key listed under two key IDs counts once.
    let mut body2 = body.clone();
    let alias = "00".repeat(32);
    body2["keys"][&alias] = key_json(first);
    body2["roles"]["root"]["keyids"] = json!([first.keyid(), alias]);
    let value = v(body2);
    let canonical = seal_tuf::tuf1::cjson::to_canonical(&value);
    let s1 = first.sign(&canonical).to_value();
    let mut s2 = first.sign(&canonical).to_value();
    if let seal_tuf::cjson::Value::Object(m) = &mut s2 {
        m.insert("keyid".into(), seal_tuf::cjson::Value::str(&alias));
    }
    let file = serde_json::to_vec(&json!({"signed": j(&value), "signatures": [j(&s1), j(&s2)]})).unwrap();
    assert!(matches!(
        TrustedSet::new(&file),
        Err(Error::Threshold {
            valid: 1,
            threshold: 2,
            ..
        })
    ));
    // Both keys: accepted.
    let both = signed(body, &keys.root_signers());
    TrustedSet::new(&both).unwrap();
}

#[test]
fn a_key_declared_with_the_wrong_type_verifies_nothing() {
    let keys = RootKeys::new();
    let mut body = keys.root_json(1, EXPIRES);
    let id = keys.root[0].keyid().to_owned();
    // The Ed25519 root key declared as an ECDSA key.
    body["keys"][&id]["keytype"] = json!("ecdsa");
    body["keys"][&id]["scheme"] = json!("ecdsa-sha2-nistp256");
    let file = signed(body, &keys.root_signers());
    assert!(matches!(TrustedSet::new(&file), Err(Error::Threshold { valid: 0, .. })));
}

#[test]
fn duplicate_json_keys_are_refused() {
    let repo = simple_repo();
    let text = String::from_utf8(repo.root.clone()).unwrap();
    let dup = text.replacen("{\"signatures\":", "{\"signatures\":[],\"signatures\":", 1);
    assert!(matches!(TrustedSet::new(dup.as_bytes()), Err(Error::Json { .. })));
    let dup = text.replacen("\"_type\":\"root\"", "\"_type\":\"root\",\"_type\":\"root\"", 1);
    assert!(matches!(TrustedSet::new(dup.as_bytes()), Err(Error::Json { .. })));
}

#[test]
fn a_role_signed_by_another_roles_key_is_refused() {
    let repo = simple_repo();
    let ts = signed(
        json!({"_type":"timestamp","spec_version":"1.0.31","version":2,
               "expires":"2030-01-01T00:00:00Z","meta":{"snapshot.json":{"version":1}}}),
        &[&repo.keys.snapshot],
    );
    assert!(matches!(
        session(&repo).update_timestamp(&ts, NOW),
        Err(Error::Threshold { valid: 0, .. })
    ));
    // A snapshot file offered as the timestamp is the wrong type.
    let err = session(&repo).update_timestamp(&repo.snapshot, NOW).unwrap_err();
    assert!(matches!(err, Error::WrongType { .. }), "{err:?}");
}

#[test]
fn steps_out_of_order_are_refused() {
    let repo = simple_repo();
    let mut s = session(&repo);
    assert!(matches!(s.update_snapshot(&repo.snapshot, NOW), Err(Error::Order(_))));
    assert!(matches!(
        s.update_targets(&repo.targets["targets"], NOW),
        Err(Error::Order(_))
    ));
    s.update_timestamp(&repo.timestamp, NOW).unwrap();
    assert!(matches!(s.update_root(&repo.root), Err(Error::Order(_))));
}

/// targets delegates, in order: `a` (a/*, not terminating), `t` (a/*,
/// terminating), `z` (a/*): a target in none of them is searched in a and
/// t only.
fn delegating_repo() -> (Repo, BTreeMap<String, SigningKey>) {
    let keys = RootKeys::new();
    let dk: BTreeMap<String, SigningKey> = ["a", "t", "z", "bins"].iter().map(|n| (n.to_string(), ed())).collect();
    let role = |name: &str, terminating: bool, paths: serde_json::Value| json!({"name": name, "keyids": [dk[name].keyid()], "threshold": 1, "terminating": terminating, "paths": paths});
    let all: Vec<&SigningKey> = dk.values().collect();
    let top = targets_json(
        1,
        EXPIRES,
        json!({}),
        Some(json!({"keys": keys_json(&all), "roles": [
            role("a", false, json!(["a/*"])),
            role("t", true, json!(["a/*"])),
            role("z", false, json!(["a/*"])),
            role("bins", false, json!(["h/*"])),
        ]})),
    );
    let mut targets = BTreeMap::from([("targets".to_owned(), signed(top, &[&keys.targets]))]);
    targets.insert(
        "a".into(),
        signed(
            targets_json(1, EXPIRES, json!({"a/1": target_entry(b"1")}), None),
            &[&dk["a"]],
        ),
    );
    targets.insert(
        "t".into(),
        signed(
            targets_json(1, EXPIRES, json!({"a/2": target_entry(b"2")}), None),
            &[&dk["t"]],
        ),
    );
    targets.insert(
        "z".into(),
        signed(
            targets_json(1, EXPIRES, json!({"a/3": target_entry(b"3")}), None),
            &[&dk["z"]],
        ),
    );
    // `bins` hands h/* to 16 succinct bins, all signed by the `bins` key.
    targets.insert(
        "bins".into(),
        signed(
            targets_json(
                1,
                EXPIRES,
                json!({}),
                Some(json!({"keys": keys_json(&[&dk["bins"]]), "succinct_roles": {
                    "keyids": [dk["bins"].keyid()], "threshold": 1, "bit_length": 4, "name_prefix": "bin"}})),
            ),
            &[&dk["bins"]],
        ),
    );
    let succinct = seal_tuf::tuf1::SuccinctRoles {
        keys: seal_tuf::tuf1::metadata::RoleKeys {
            keyids: vec![],
            threshold: 1,
        },
        bit_length: 4,
        name_prefix: "bin".into(),
    };
    for name in succinct.role_names() {
        let mut files = serde_json::Map::new();
        for p in ["h/x", "h/y", "h/z"] {
            if succinct.role_for_target(p) == name {
                files.insert(p.into(), target_entry(p.as_bytes()));
            }
        }
        targets.insert(
            name.clone(),
            signed(targets_json(1, EXPIRES, json!(files), None), &[&dk["bins"]]),
        );
    }
    (Repo::new(keys, targets), dk)
}

fn search(set: &mut TrustedSet, repo: &Repo, path: &str) -> (Option<String>, Vec<String>) {
    let mut s = TargetSearch::new(path);
    let mut loaded = Vec::new();
    loop {
        match s.next(set) {
            SearchStep::Load { role, delegator } => {
                set.update_delegated_targets(&role, &delegator, &repo.targets[&role], NOW)
                    .unwrap();
                loaded.push(role);
            }
            SearchStep::Found { role, .. } => return (Some(role), loaded),
            SearchStep::NotFound => return (None, loaded),
        }
    }
}

#[test]
fn delegation_search_is_preorder_and_honours_terminating() {
    let (repo, _) = delegating_repo();
    let mut set = full(&repo);
    assert_eq!(search(&mut set, &repo, "a/1"), (Some("a".into()), vec!["a".into()]));
    assert_eq!(search(&mut set, &repo, "a/2"), (Some("t".into()), vec!["t".into()]));
    // `z` lists a/3 but comes after the terminating `t`.
    assert_eq!(search(&mut set, &repo, "a/3"), (None, vec![]));
    let mut fresh = full(&repo);
    assert_eq!(search(&mut fresh, &repo, "a/3"), (None, vec!["a".into(), "t".into()]));
}

#[test]
fn hash_bins_are_found_through_succinct_roles() {
    let (repo, _) = delegating_repo();
    let mut set = full(&repo);
    for p in ["h/x", "h/y", "h/z"] {
        let (found, loaded) = search(&mut set, &repo, p);
        let bin = found.unwrap();
        assert!(bin.starts_with("bin-") && bin.len() == 5, "{bin}");
        assert!(loaded.is_empty() || loaded.last() == Some(&bin));
    }
    // A bin signed by another key is refused.
    let (repo, dk) = delegating_repo();
    let mut set = full(&repo);
    set.update_delegated_targets("bins", "targets", &repo.targets["bins"], NOW)
        .unwrap();
    let forged = signed(targets_json(1, EXPIRES, json!({}), None), &[&dk["a"]]);
    let err = set.update_delegated_targets("bin-0", "bins", &forged, NOW).unwrap_err();
    // The snapshot lists bin-0 with a hash, so the forgery fails there first.
    assert!(
        matches!(err, Error::LengthMismatch { .. } | Error::HashMismatch { .. }),
        "{err:?}"
    );
    // A name outside the bins is not delegated.
    let err = set
        .update_delegated_targets("bin-10", "bins", &repo.targets["bin-0"], NOW)
        .unwrap_err();
    assert!(matches!(err, Error::MissingMeta { .. }), "{err:?}");
}

#[test]
fn a_role_not_delegated_by_the_named_parent_is_refused() {
    let (repo, _) = delegating_repo();
    let mut set = full(&repo);
    set.update_delegated_targets("a", "targets", &repo.targets["a"], NOW)
        .unwrap();
    let err = set
        .update_delegated_targets("t", "a", &repo.targets["t"], NOW)
        .unwrap_err();
    assert_eq!(
        err,
        Error::NotDelegated {
            role: "t".into(),
            delegator: "a".into()
        }
    );
}

#[test]
fn delegation_cycles_and_the_search_bound_end_the_search() {
    // a delegates to b, b to a, both for every path.
    let keys = RootKeys::new();
    let (ka, kb) = (ed(), ed());
    let deleg = |name: &str, k: &SigningKey| {
        json!({"keys": keys_json(&[k]), "roles": [
            {"name": name, "keyids": [k.keyid()], "threshold": 1, "terminating": false, "paths": ["*"]}]})
    };
    let targets = BTreeMap::from([
        (
            "targets".to_owned(),
            signed(
                targets_json(1, EXPIRES, json!({}), Some(deleg("a", &ka))),
                &[&keys.targets],
            ),
        ),
        (
            "a".to_owned(),
            signed(targets_json(1, EXPIRES, json!({}), Some(deleg("b", &kb))), &[&ka]),
        ),
        (
            "b".to_owned(),
            signed(targets_json(1, EXPIRES, json!({}), Some(deleg("a", &ka))), &[&kb]),
        ),
    ]);
    let repo = Repo::new(keys, targets);
    let mut set = full(&repo);
    let (found, loaded) = search(&mut set, &repo, "x");
    assert!(found.is_none());
    assert_eq!(loaded, ["a", "b"]);
    // With a bound of 1 role after the top-level one, b is never loaded.
    let mut set = full(&repo);
    let mut s = TargetSearch::with_max_delegations("x", 1);
    let mut loaded = Vec::new();
    while let SearchStep::Load { role, delegator } = s.next(&set) {
        set.update_delegated_targets(&role, &delegator, &repo.targets[&role], NOW)
            .unwrap();
        loaded.push(role);
    }
    assert_eq!(loaded, ["a"]);
}

#[test]
fn spec_version_and_expires_must_be_well_formed() {
    let repo = simple_repo();
    for (field, value) in [
        ("spec_version", json!("2.0.0")),
        ("spec_version", json!("1")),
        ("expires", json!("2030-01-01T00:00:00.5Z")),
        ("version", json!(0)),
        ("version", json!(true)),
    ] {
        let mut body = repo.keys.root_json(1, EXPIRES);
        body[field] = value.clone();
        let file = signed(body, &repo.keys.root_signers());
        let err = TrustedSet::new(&file).unwrap_err();
        assert!(
            matches!(err, Error::SpecVersion { .. } | Error::Format { .. }),
            "{field}={value}: {err:?}"
        );
    }
    // 1.x of any minor version is accepted.
    let mut body = repo.keys.root_json(1, EXPIRES);
    body["spec_version"] = json!("1.99");
    TrustedSet::new(&signed(body, &repo.keys.root_signers())).unwrap();
}
