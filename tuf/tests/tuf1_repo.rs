//! The repository side of TUF 1.0: what owners may upload and what the
//! service generates, each rule with a test that fails without it.

mod tuf1_support;

use std::collections::BTreeMap;

use seal_tuf::tuf1::repo::{
    next_snapshot, next_timestamp, validate_first_root, validate_root, validate_targets, Limits, RepoState,
};
use seal_tuf::tuf1::{Error, Metadata, Snapshot, Timestamp, TrustedSet};
use serde_json::json;
use time::Duration;
use tuf1_support::*;

fn state(repo: &Repo) -> RepoState {
    RepoState {
        root: repo.root_md(),
        targets: repo.targets_mds(),
        snapshot: Some(Metadata::from_bytes("snapshot", &repo.snapshot).unwrap()),
        timestamp: Some(Metadata::from_bytes("timestamp", &repo.timestamp).unwrap()),
    }
}

#[test]
fn a_first_root_is_version_1_self_signed_and_complete() {
    let keys = RootKeys::new();
    let lim = Limits::default();
    let good = signed(keys.root_json(1, EXPIRES), &keys.root_signers());
    assert_eq!(validate_first_root(&good, NOW, &lim).unwrap().version(), 1);

    let v2 = signed(keys.root_json(2, EXPIRES), &keys.root_signers());
    assert_eq!(
        validate_first_root(&v2, NOW, &lim).unwrap_err(),
        Error::WrongVersion {
            role: "root".into(),
            expected: 1,
            got: 2
        }
    );
    let unsigned = signed(keys.root_json(1, EXPIRES), &[&keys.targets]);
    assert!(matches!(
        validate_first_root(&unsigned, NOW, &lim),
        Err(Error::Threshold { valid: 0, .. })
    ));
    let expired = signed(keys.root_json(1, NOW), &keys.root_signers());
    assert!(matches!(
        validate_first_root(&expired, NOW, &lim),
        Err(Error::Expired { .. })
    ));
    let mut body = keys.root_json(1, EXPIRES);
    body.as_object_mut().unwrap().remove("consistent_snapshot");
    let err = validate_first_root(&signed(body, &keys.root_signers()), NOW, &lim).unwrap_err();
    assert!(
        matches!(err, Error::Format { ref field, .. } if field == "signed.consistent_snapshot"),
        "{err:?}"
    );
    assert!(matches!(
        validate_first_root(&good, NOW, &Limits { root: 100, ..lim }),
        Err(Error::TooLarge { max: 100, .. })
    ));
}

#[test]
fn root_rotation_needs_both_thresholds_and_the_next_version() {
    let repo = simple_repo();
    let cur = repo.root_md();
    let lim = Limits::default();
    let mut keys = RootKeys::new();
    let new_root_key = ec();
    keys.root = vec![new_root_key];
    keys.timestamp = ec();
    let body = keys.root_json(2, EXPIRES);
    let both = signed(body.clone(), &[&repo.keys.root[0], &keys.root[0]]);
    assert_eq!(validate_root(&cur, &both, NOW, &lim).unwrap().version(), 2);

    let only_new = signed(body.clone(), &[&keys.root[0]]);
    assert!(matches!(
        validate_root(&cur, &only_new, NOW, &lim),
        Err(Error::Threshold { valid: 0, .. })
    ));
    let only_old = signed(body.clone(), &[&repo.keys.root[0]]);
    assert!(matches!(
        validate_root(&cur, &only_old, NOW, &lim),
        Err(Error::Threshold { valid: 0, .. })
    ));
    let v3 = signed(keys.root_json(3, EXPIRES), &[&repo.keys.root[0], &keys.root[0]]);
    assert_eq!(
        validate_root(&cur, &v3, NOW, &lim).unwrap_err(),
        Error::WrongVersion {
            role: "root".into(),
            expected: 2,
            got: 3
        }
    );
    let expired = signed(keys.root_json(2, NOW), &[&repo.keys.root[0], &keys.root[0]]);
    assert!(matches!(
        validate_root(&cur, &expired, NOW, &lim),
        Err(Error::Expired { .. })
    ));
    assert!(matches!(
        validate_root(&cur, &both, NOW, &Limits { root: 100, ..lim }),
        Err(Error::TooLarge { max: 100, .. })
    ));
}

#[test]
fn a_root_that_would_lock_its_owners_out_is_refused() {
    let repo = simple_repo();
    let cur = repo.root_md();
    let lim = Limits::default();
    // A threshold above the keys listed.
    let keys = RootKeys::new();
    let signers = [&repo.keys.root[0], &keys.root[0]];
    let mut body = keys.root_json(2, EXPIRES);
    body["roles"]["timestamp"]["threshold"] = json!(2);
    let err = validate_root(&cur, &signed(body, &signers), NOW, &lim).unwrap_err();
    assert!(
        matches!(err, Error::Format { ref field, .. } if field == "signed.roles.timestamp.threshold"),
        "{err:?}"
    );
    // A key no client can use.
    let mut body = keys.root_json(2, EXPIRES);
    body["keys"][keys.snapshot.keyid()]["scheme"] = json!("rsassa-pss-sha256");
    let err = validate_root(&cur, &signed(body, &signers), NOW, &lim).unwrap_err();
    assert!(matches!(err, Error::Key { .. }), "{err:?}");
    // A key ID listed in a role but absent from keys.
    let mut body = keys.root_json(2, EXPIRES);
    body["roles"]["targets"]["keyids"] = json!(["ab".repeat(32)]);
    let err = validate_root(&cur, &signed(body, &signers), NOW, &lim).unwrap_err();
    assert!(matches!(err, Error::Format { .. }), "{err:?}");
    // Without consistent_snapshot (tough requires the field).
    let mut body = keys.root_json(2, EXPIRES);
    body.as_object_mut().unwrap().remove("consistent_snapshot");
    let err = validate_root(&cur, &signed(body, &signers), NOW, &lim).unwrap_err();
    assert!(
        matches!(err, Error::Format { ref field, .. } if field == "signed.consistent_snapshot"),
        "{err:?}"
    );
    // Two signatures under one key ID: python-tuf refuses the whole file.
    let body = keys.root_json(2, EXPIRES);
    let dup = signed(body, &[&repo.keys.root[0], &keys.root[0], &keys.root[0]]);
    let err = validate_root(&cur, &dup, NOW, &lim).unwrap_err();
    assert!(
        matches!(err, Error::Format { ref field, .. } if field == "signatures"),
        "{err:?}"
    );
}

fn delegating(repo_keys: RootKeys) -> (Repo, SigningKeyPair) {
    let a = ed();
    let top = signed(
        targets_json(
            1,
            EXPIRES,
            json!({}),
            Some(json!({"keys": keys_json(&[&a]), "roles": [
                {"name": "a", "keyids": [a.keyid()], "threshold": 1, "terminating": false, "paths": ["a/*"]}]})),
        ),
        &[&repo_keys.targets],
    );
    let a_md = signed(targets_json(1, EXPIRES, json!({}), None), &[&a]);
    (
        Repo::new(
            repo_keys,
            BTreeMap::from([("targets".to_owned(), top), ("a".to_owned(), a_md)]),
        ),
        SigningKeyPair { a },
    )
}

struct SigningKeyPair {
    a: seal_tuf::tuf1::SigningKey,
}

#[test]
fn targets_uploads_need_the_delegated_keys_and_a_higher_version() {
    let (repo, k) = delegating(RootKeys::new());
    let st = state(&repo);
    let lim = Limits::default();
    let v2 = signed(
        targets_json(2, EXPIRES, json!({"a/x": target_entry(b"x")}), None),
        &[&k.a],
    );
    assert_eq!(validate_targets(&st, "a", &v2, NOW, &lim).unwrap().version(), 2);
    let v1 = signed(targets_json(1, EXPIRES, json!({}), None), &[&k.a]);
    assert_eq!(
        validate_targets(&st, "a", &v1, NOW, &lim).unwrap_err(),
        Error::WrongVersion {
            role: "a".into(),
            expected: 2,
            got: 1
        }
    );
    let by_targets_key = signed(targets_json(2, EXPIRES, json!({}), None), &[&repo.keys.targets]);
    assert!(matches!(
        validate_targets(&st, "a", &by_targets_key, NOW, &lim),
        Err(Error::Threshold { valid: 0, .. })
    ));
    assert!(matches!(
        validate_targets(&st, "nope", &v2, NOW, &lim),
        Err(Error::NotDelegated { .. })
    ));
    let expired = signed(targets_json(2, NOW - Duration::seconds(1), json!({}), None), &[&k.a]);
    assert!(matches!(
        validate_targets(&st, "a", &expired, NOW, &lim),
        Err(Error::Expired { .. })
    ));
    assert!(matches!(
        validate_targets(&st, "a", &v2, NOW, &Limits { targets: 10, ..lim }),
        Err(Error::TooLarge { .. })
    ));
    // The top-level targets is checked against root.
    let top2 = signed(targets_json(2, EXPIRES, json!({}), None), &[&repo.keys.targets]);
    validate_targets(&st, "targets", &top2, NOW, &lim).unwrap();
    let top2_bad = signed(targets_json(2, EXPIRES, json!({}), None), &[&k.a]);
    assert!(matches!(
        validate_targets(&st, "targets", &top2_bad, NOW, &lim),
        Err(Error::Threshold { .. })
    ));
}

#[test]
fn uploaded_delegations_must_be_usable() {
    let repo = simple_repo();
    let st = state(&repo);
    let lim = Limits::default();
    let b = ed();
    let up = |deleg: serde_json::Value| signed(targets_json(2, EXPIRES, json!({}), Some(deleg)), &[&repo.keys.targets]);
    let role = |name: &str, threshold: u64| {
        json!({"keys": keys_json(&[&b]), "roles": [
            {"name": name, "keyids": [b.keyid()], "threshold": threshold, "terminating": false, "paths": ["*"]}]})
    };
    validate_targets(&st, "targets", &up(role("b", 1)), NOW, &lim).unwrap();
    for bad in ["../b", "a/b", ".hidden", "", "b\u{0}"] {
        let err = validate_targets(&st, "targets", &up(role(bad, 1)), NOW, &lim).unwrap_err();
        assert!(matches!(err, Error::Format { .. }), "{bad:?}: {err:?}");
    }
    let err = validate_targets(&st, "targets", &up(role("b", 2)), NOW, &lim).unwrap_err();
    assert!(
        matches!(err, Error::Format { ref reason, .. } if reason.contains("threshold")),
        "{err:?}"
    );
    let bins = |bits: u32| {
        json!({"keys": keys_json(&[&b]), "succinct_roles":
            {"keyids": [b.keyid()], "threshold": 1, "bit_length": bits, "name_prefix": "bin"}})
    };
    validate_targets(&st, "targets", &up(bins(8)), NOW, &lim).unwrap();
    let err = validate_targets(&st, "targets", &up(bins(20)), NOW, &lim).unwrap_err();
    assert!(matches!(err, Error::Format { .. }), "{err:?}");
}

#[test]
fn the_next_snapshot_never_drops_or_lowers_a_role() {
    let (repo, _) = delegating(RootKeys::new());
    let st = state(&repo);
    let cur = st.snapshot.as_ref().unwrap();
    let mut without_a = st.targets.clone();
    without_a.remove("a");
    assert_eq!(
        next_snapshot(&st.root, Some(cur), &without_a, EXPIRES, &[&repo.keys.snapshot]).unwrap_err(),
        Error::MissingMeta {
            referrer: "snapshot".into(),
            file: "a.json".into()
        }
    );
    // A snapshot claiming a.json is at version 5 already.
    let sn5 = signed(
        json!({"_type":"snapshot","spec_version":"1.0.31","version":3,"expires":"2030-01-01T00:00:00Z",
               "meta":{"targets.json":{"version":1},"a.json":{"version":5}}}),
        &[&repo.keys.snapshot],
    );
    let sn5: Metadata<Snapshot> = Metadata::from_bytes("snapshot", &sn5).unwrap();
    assert!(matches!(
        next_snapshot(&st.root, Some(&sn5), &st.targets, EXPIRES, &[&repo.keys.snapshot]),
        Err(Error::Rollback { trusted: 5, got: 1, .. })
    ));
    // Signed with a key root does not list for snapshot.
    assert!(matches!(
        next_snapshot(&st.root, Some(cur), &st.targets, EXPIRES, &[&repo.keys.timestamp]),
        Err(Error::Signing(_))
    ));
    let next = next_snapshot(&st.root, Some(cur), &st.targets, EXPIRES, &[&repo.keys.snapshot]).unwrap();
    let next: Metadata<Snapshot> = Metadata::from_bytes("snapshot", &next).unwrap();
    assert_eq!(next.version(), cur.version() + 1);
    let a = &next.signed().meta["a.json"];
    assert_eq!((a.version, a.length), (1, Some(repo.targets["a"].len() as u64)));
}

#[test]
fn the_next_timestamp_never_names_an_older_snapshot() {
    let repo = simple_repo();
    let st = state(&repo);
    let ts = st.timestamp.as_ref().unwrap();
    let sn = st.snapshot.as_ref().unwrap();
    let ahead = signed(
        json!({"_type":"timestamp","spec_version":"1.0.31","version":4,"expires":"2030-01-01T00:00:00Z",
               "meta":{"snapshot.json":{"version":7}}}),
        &[&repo.keys.timestamp],
    );
    let ahead: Metadata<Timestamp> = Metadata::from_bytes("timestamp", &ahead).unwrap();
    assert_eq!(
        next_timestamp(&st.root, Some(&ahead), sn, EXPIRES, &[&repo.keys.timestamp]).unwrap_err(),
        Error::Rollback {
            role: "snapshot".into(),
            trusted: 7,
            got: 1
        }
    );
    assert!(matches!(
        next_timestamp(&st.root, Some(ts), sn, EXPIRES, &[&repo.keys.snapshot]),
        Err(Error::Signing(_))
    ));
    let next = next_timestamp(&st.root, Some(ts), sn, EXPIRES, &[&repo.keys.timestamp]).unwrap();
    let next: Metadata<Timestamp> = Metadata::from_bytes("timestamp", &next).unwrap();
    assert_eq!(next.version(), 2);
    assert_eq!(next.signed().snapshot_meta.version, 1);
    assert_eq!(next.signed().snapshot_meta.length, Some(repo.snapshot.len() as u64));
}

#[test]
fn a_publish_cycle_is_accepted_by_a_client_holding_the_previous_state() {
    let (mut repo, k) = delegating(RootKeys::new());
    let (old_ts, old_sn) = (repo.timestamp.clone(), repo.snapshot.clone());
    let st = state(&repo);
    let up = signed(
        targets_json(2, EXPIRES, json!({"a/new": target_entry(b"new")}), None),
        &[&k.a],
    );
    let md = validate_targets(&st, "a", &up, NOW, &Limits::default()).unwrap();
    repo.targets.insert("a".into(), md.bytes().to_vec());
    repo.publish(EXPIRES);

    let mut client = TrustedSet::new(&repo.root).unwrap();
    client.load_previous_timestamp(&old_ts).unwrap();
    client.load_previous_snapshot(&old_sn).unwrap();
    client.update_timestamp(&repo.timestamp, NOW).unwrap();
    client.update_snapshot(&repo.snapshot, NOW).unwrap();
    client.update_targets(&repo.targets["targets"], NOW).unwrap();
    let a = client
        .update_delegated_targets("a", "targets", &repo.targets["a"], NOW)
        .unwrap();
    assert!(a.signed().targets.contains_key("a/new"));
}

#[test]
fn one_upload_checks_each_role_against_its_delegators_new_version() {
    use seal_tuf::tuf1::repo::validate_upload;
    let (repo, k) = delegating(RootKeys::new());
    let st = state(&repo);
    let lim = Limits::default();
    // targets v2 hands `a` to a new key and adds `b` under a; a v2 and b v1
    // come in the same upload.
    let (a2, b) = (ec(), ed());
    let top = signed(
        targets_json(
            2,
            EXPIRES,
            json!({}),
            Some(json!({"keys": keys_json(&[&a2]), "roles": [
                {"name": "a", "keyids": [a2.keyid()], "threshold": 1, "terminating": false, "paths": ["a/*"]}]})),
        ),
        &[&repo.keys.targets],
    );
    let a_v2 = signed(
        targets_json(
            2,
            EXPIRES,
            json!({}),
            Some(json!({"keys": keys_json(&[&b]), "roles": [
                {"name": "b", "keyids": [b.keyid()], "threshold": 1, "terminating": false, "paths": ["a/b/*"]}]})),
        ),
        &[&a2],
    );
    let b_v1 = signed(targets_json(1, EXPIRES, json!({}), None), &[&b]);
    let files = BTreeMap::from([
        ("targets".to_owned(), top.clone()),
        ("a".to_owned(), a_v2.clone()),
        ("b".to_owned(), b_v1.clone()),
    ]);
    let next = validate_upload(&st, &files, NOW, &lim).unwrap();
    assert_eq!(next.targets["a"].version(), 2);
    assert_eq!(next.targets["b"].version(), 1);
    // Signed with a's old key, a v2 fails against targets v2.
    let a_old_key = signed(targets_json(2, EXPIRES, json!({}), None), &[&k.a]);
    let files = BTreeMap::from([("targets".to_owned(), top), ("a".to_owned(), a_old_key)]);
    assert!(matches!(
        validate_upload(&st, &files, NOW, &lim),
        Err(Error::Threshold { ref role, .. }) if role == "a"
    ));
    // b without the a that delegates it has no delegator.
    let files = BTreeMap::from([("b".to_owned(), b_v1)]);
    assert!(matches!(
        validate_upload(&st, &files, NOW, &lim),
        Err(Error::NotDelegated { ref role, .. }) if role == "b"
    ));
    // The service makes snapshot and timestamp itself.
    let files = BTreeMap::from([("snapshot".to_owned(), repo.snapshot.clone())]);
    assert!(matches!(
        validate_upload(&st, &files, NOW, &lim),
        Err(Error::Format { .. })
    ));
}

#[test]
fn signatures_from_a_signer_service_are_assembled_and_checked() {
    use seal_tuf::tuf1::cjson::to_canonical;
    use seal_tuf::tuf1::keys::ecdsa_p256_raw_to_der;
    use seal_tuf::tuf1::repo::{assemble, timestamp_to_sign};
    use seal_tuf::tuf1::Signature;
    let repo = simple_repo();
    let st = state(&repo);
    let signed = timestamp_to_sign(st.timestamp.as_ref(), st.snapshot.as_ref().unwrap(), EXPIRES).unwrap();
    let canonical = to_canonical(&signed);
    // A Notary-style signer returns raw r‖s; TUF 1.0 wants DER.
    let raw = |k: &seal_tuf::tuf1::SigningKey| {
        let der = hex::decode(k.sign(&canonical).sig).unwrap();
        p256::ecdsa::Signature::from_der(&der).unwrap().to_bytes().to_vec()
    };
    let ts_key = &repo.keys.timestamp;
    let as_raw = Signature {
        keyid: ts_key.keyid().into(),
        sig: hex::encode(raw(ts_key)),
    };
    assert!(matches!(
        assemble(&st.root, "timestamp", &signed, std::slice::from_ref(&as_raw)),
        Err(Error::Signing(_))
    ));
    let as_der = Signature {
        keyid: ts_key.keyid().into(),
        sig: hex::encode(ecdsa_p256_raw_to_der(&raw(ts_key)).unwrap()),
    };
    let bytes = assemble(&st.root, "timestamp", &signed, std::slice::from_ref(&as_der)).unwrap();
    let md: Metadata<Timestamp> = Metadata::from_bytes("timestamp", &bytes).unwrap();
    assert_eq!(md.version(), 2);
    let mut client = TrustedSet::new(&repo.root).unwrap();
    client.update_timestamp(&bytes, NOW).unwrap();
    // Another key's signature under the timestamp key's ID does not count.
    let other = ec();
    let forged = Signature {
        keyid: ts_key.keyid().into(),
        sig: hex::encode(ecdsa_p256_raw_to_der(&raw(&other)).unwrap()),
    };
    assert!(matches!(
        assemble(&st.root, "timestamp", &signed, &[forged]),
        Err(Error::Signing(_))
    ));
    assert!(matches!(
        assemble(&st.root, "targets", &signed, &[as_der]),
        Err(Error::Order(_))
    ));
}

#[test]
fn an_upload_may_not_strand_a_role_it_leaves_alone() {
    use seal_tuf::tuf1::repo::validate_upload;
    let (repo, k) = delegating(RootKeys::new());
    let st = state(&repo);
    let lim = Limits::default();
    let deleg = |key: &seal_tuf::tuf1::SigningKey| {
        json!({"keys": keys_json(&[key]), "roles": [
            {"name": "a", "keyids": [key.keyid()], "threshold": 1, "terminating": false, "paths": ["a/*"]}]})
    };
    // targets v2 hands `a` to a new key, but `a` (signed by the old key)
    // is not re-signed: clients would refuse it.
    let new_key = ed();
    let top = signed(
        targets_json(2, EXPIRES, json!({}), Some(deleg(&new_key))),
        &[&repo.keys.targets],
    );
    let files = BTreeMap::from([("targets".to_owned(), top)]);
    assert!(matches!(
        validate_upload(&st, &files, NOW, &lim),
        Err(Error::Threshold { ref role, .. }) if role == "a"
    ));
    // The same delegation re-signed (only a new target): accepted.
    let top = signed(
        targets_json(2, EXPIRES, json!({"t": target_entry(b"t")}), Some(deleg(&k.a))),
        &[&repo.keys.targets],
    );
    let files = BTreeMap::from([("targets".to_owned(), top)]);
    validate_upload(&st, &files, NOW, &lim).unwrap();
    // A root rotating the targets key strands the current targets.
    let mut keys = RootKeys::new();
    keys.root = vec![ed()];
    let root2 = signed(keys.root_json(2, EXPIRES), &[&repo.keys.root[0], &keys.root[0]]);
    let files = BTreeMap::from([("root".to_owned(), root2)]);
    assert!(matches!(
        validate_upload(&st, &files, NOW, &lim),
        Err(Error::Threshold { ref role, .. }) if role == "targets"
    ));
}
