use super::*;
use crate::metadata::{SignedFile, MAX_VERSION};
use crate::time::parse_rfc3339;
use crate::verify::verify_threshold;

fn now() -> OffsetDateTime {
    parse_rfc3339("2026-12-07T00:00:00Z").unwrap()
}

/// A copy of `k` (private keys are not `Clone`).
fn dup(k: &PrivateKey) -> PrivateKey {
    PrivateKey::from_pkcs8_der(&k.to_pkcs8_der().unwrap()).unwrap()
}

fn key() -> PrivateKey {
    PrivateKey::generate_ecdsa(&mut rand::rngs::OsRng)
}

/// The private keys a test holds.
#[derive(Default)]
struct Held(Vec<PrivateKey>);

impl SigningKeys for Held {
    type Error = EditError;
    fn held(&mut self, listed: &[&PublicKey]) -> Result<Vec<(PrivateKey, KeyId)>, EditError> {
        Ok(listed
            .iter()
            .filter_map(|l| {
                self.0
                    .iter()
                    .find(|k| k.public_key().id() == l.canonical_id())
                    .map(|k| (dup(k), l.id().to_owned()))
            })
            .collect())
    }
    fn holds_any(&mut self, listed: &[&PublicKey]) -> Result<bool, EditError> {
        Ok(!self.held(listed)?.is_empty())
    }
}

/// A new collection's editor with a root, targets and snapshot key held
/// (and the timestamp key not, as the server holds it).
struct Fixture {
    keys: Held,
    root: PrivateKey,
    targets: PrivateKey,
    snapshot: PrivateKey,
    timestamp: PrivateKey,
}

impl Fixture {
    fn new() -> Fixture {
        let (root, targets, snapshot, timestamp) = (key(), key(), key(), key());
        Fixture {
            keys: Held(vec![dup(&root), dup(&targets), dup(&snapshot)]),
            root,
            targets,
            snapshot,
            timestamp,
        }
    }

    fn root(&self, version: u64) -> Root {
        new_root(
            version,
            now() + Lifetimes::default().root,
            &[
                (ROOT, &[self.root.public_key()], 1),
                (TARGETS, &[self.targets.public_key()], 1),
                (SNAPSHOT, &[self.snapshot.public_key()], 1),
                (TIMESTAMP, &[self.timestamp.public_key()], 1),
            ],
        )
    }

    /// A collection made by `init`, signed, then "published".
    fn published(&mut self) -> Editor {
        let mut e = Editor::init("example.com/app", now(), self.root(1));
        e.sign(&mut self.keys, &[]).unwrap();
        let targets = BTreeMap::from([(TARGETS.to_owned(), e.targets[TARGETS].clone())]);
        Editor::new(
            "example.com/app",
            now(),
            Collection {
                root: e.root.clone(),
                targets,
                snapshot: e.snapshot.clone(),
                files: e.files.clone(),
                published: true,
            },
        )
    }
}

fn parsed(e: &Editor, role: &str) -> SignedFile {
    SignedFile::parse(role, e.files()[role].clone()).unwrap()
}

fn delegate(e: &mut Editor, role: &str, key: &PrivateKey, paths: &[&str]) -> Option<EditWarning> {
    let edit = DelegationEdit {
        new_threshold: 1,
        add_keys: vec![key.public_key()],
        add_paths: paths.iter().map(|p| (*p).to_owned()).collect(),
        ..DelegationEdit::default()
    };
    e.edit_delegation(role, DelegationAction::Create, &edit).unwrap()
}

#[test]
fn new_root_lists_each_roles_keys_and_threshold() {
    let (a, b, t) = (key().public_key(), key().public_key(), key().public_key());
    let r = new_root(
        3,
        now(),
        &[
            (ROOT, &[a.clone(), b.clone()], 2),
            (TARGETS, std::slice::from_ref(&t), 1),
        ],
    );
    assert_eq!(r.version, 3);
    assert_eq!(r.expires, now());
    assert!(!r.consistent_snapshot);
    assert_eq!(r.roles[ROOT].keyids, [a.id(), b.id()]);
    assert_eq!(r.roles[ROOT].threshold, 2);
    assert_eq!(r.roles[TARGETS].keyids, [t.id()]);
    assert_eq!(r.keys.len(), 3);
}

#[test]
fn init_signs_root_targets_and_a_first_snapshot_at_version_one() {
    let mut f = Fixture::new();
    let mut e = Editor::init("example.com/app", now(), f.root(1));
    let changed = e.sign(&mut f.keys, &[]).unwrap();
    assert_eq!(changed, [ROOT, TARGETS, SNAPSHOT]);
    let lt = Lifetimes::default();
    let root = Root::from_signed(parsed(&e, ROOT).signed()).unwrap();
    assert_eq!((root.version, root.expires), (1, now() + lt.root));
    let targets = Targets::from_signed(TARGETS, parsed(&e, TARGETS).signed()).unwrap();
    assert_eq!((targets.version, targets.expires), (1, now() + lt.targets));
    let snap = Snapshot::from_signed(parsed(&e, SNAPSHOT).signed()).unwrap();
    assert_eq!((snap.version, snap.expires), (1, now() + lt.snapshot));
    assert_eq!(snap.meta[ROOT], FileMeta::for_bytes(&e.files()[ROOT]));
    assert_eq!(snap.meta[TARGETS], FileMeta::for_bytes(&e.files()[TARGETS]));
    for (role, k) in [(ROOT, &f.root), (TARGETS, &f.targets), (SNAPSHOT, &f.snapshot)] {
        verify_threshold(&parsed(&e, role), &[&k.public_key()], 1).unwrap();
    }
    // Unpublished: everything but the timestamp goes up on the first publish.
    let up: Vec<String> = e.upload(&[]).into_iter().map(|(r, _)| r).collect();
    assert_eq!(up, [ROOT, SNAPSHOT, TARGETS]);
}

#[test]
fn a_target_edit_bumps_targets_and_the_snapshot_only() {
    let mut f = Fixture::new();
    let mut e = f.published();
    let root_before = e.files()[ROOT].clone();
    e.add_target(TARGETS, "v1", FileMeta::for_bytes(b"one")).unwrap();
    let changed = e.sign(&mut f.keys, &[]).unwrap();
    assert_eq!(changed, [TARGETS, SNAPSHOT]);
    assert_eq!(e.files()[ROOT], root_before);
    let t = Targets::from_signed(TARGETS, parsed(&e, TARGETS).signed()).unwrap();
    assert_eq!(t.version, 2);
    assert_eq!(t.targets["v1"], FileMeta::for_bytes(b"one"));
    let s = Snapshot::from_signed(parsed(&e, SNAPSHOT).signed()).unwrap();
    assert_eq!(s.version, 2);
    assert_eq!(s.meta[TARGETS], FileMeta::for_bytes(&e.files()[TARGETS]));
    let up: Vec<String> = e.upload(&changed).into_iter().map(|(r, _)| r).collect();
    assert_eq!(up, [TARGETS, SNAPSHOT]);

    e.remove_target(TARGETS, "v1").unwrap();
    e.sign(&mut f.keys, &[]).unwrap();
    let t = Targets::from_signed(TARGETS, parsed(&e, TARGETS).signed()).unwrap();
    assert_eq!(t.version, 3);
    assert!(t.targets.is_empty());
}

#[test]
fn without_the_snapshot_key_no_snapshot_is_made() {
    let mut f = Fixture::new();
    let mut e = f.published();
    f.keys.0.retain(|k| k.public_key().id() != f.snapshot.public_key().id());
    e.add_target(TARGETS, "v1", FileMeta::for_bytes(b"one")).unwrap();
    assert_eq!(e.sign(&mut f.keys, &[]).unwrap(), [TARGETS]);
}

#[test]
fn delegated_targets_stay_inside_every_delegated_path_on_the_way() {
    let mut f = Fixture::new();
    let mut e = f.published();
    let (ci, nightly) = (key(), key());
    assert_eq!(delegate(&mut e, "targets/ci", &ci, &["builds/"]), None);
    assert_eq!(
        e.add_target("targets/ci/nightly", "builds/1", FileMeta::for_bytes(b"1")),
        Err(EditError::NoSuchDelegation {
            gun: "example.com/app".into(),
            role: "targets/ci/nightly".into(),
            target: "builds/1".into()
        })
    );
    assert_eq!(
        e.edit_delegation(
            "targets/ci/nightly",
            DelegationAction::Create,
            &DelegationEdit::default()
        ),
        Err(EditError::ParentMissing {
            role: "targets/ci/nightly".into(),
            parent: "targets/ci".into()
        })
    );
    e.add_target("targets/ci", "builds/1", FileMeta::for_bytes(b"1"))
        .unwrap();
    delegate(&mut e, "targets/ci/nightly", &nightly, &[""]);
    // `""` covers everything below, but not beyond what targets/ci covers.
    let outside = e.add_target("targets/ci/nightly", "docs/1", FileMeta::for_bytes(b"d"));
    assert_eq!(
        outside.unwrap_err().to_string(),
        "target docs/1 is outside the paths delegated to targets/ci/nightly"
    );
    e.add_target("targets/ci/nightly", "builds/n", FileMeta::for_bytes(b"n"))
        .unwrap();
    // Removal needs no path check.
    e.remove_target("targets/ci/nightly", "docs/1").unwrap();
    f.keys.0.extend([dup(&ci), dup(&nightly)]);
    let changed = e.sign(&mut f.keys, &[]).unwrap();
    assert_eq!(changed, [TARGETS, "targets/ci", "targets/ci/nightly", SNAPSHOT]);
    verify_threshold(&parsed(&e, "targets/ci/nightly"), &[&nightly.public_key()], 1).unwrap();
    let t = Targets::from_signed(TARGETS, parsed(&e, TARGETS).signed()).unwrap();
    assert_eq!(t.delegation("targets/ci").unwrap().paths, ["builds/"]);
}

#[test]
fn delegation_keys_paths_and_thresholds_change_as_notary_changes_them() {
    let mut f = Fixture::new();
    let mut e = f.published();
    let (a, b) = (key(), key());
    delegate(&mut e, "targets/team", &a, &["x/", "y/"]);
    delegate(&mut e, "targets/team", &b, &["x/", "z/"]);
    let d = e.targets[TARGETS].delegation("targets/team").unwrap().clone();
    assert_eq!(d.keyids, [a.public_key().id(), b.public_key().id()]);
    assert_eq!(d.paths, ["x/", "y/", "z/"]);
    let edit = DelegationEdit {
        remove_keys: vec![a.public_key().canonical_id()],
        remove_paths: vec!["y/".into()],
        new_threshold: 2,
        ..DelegationEdit::default()
    };
    let warning = e
        .edit_delegation("targets/team", DelegationAction::Update, &edit)
        .unwrap();
    assert_eq!(
        warning.unwrap().to_string(),
        "role targets/team has fewer keys than its threshold of 2; it will not be usable until keys are added to it"
    );
    let t = &e.targets[TARGETS];
    let d = t.delegation("targets/team").unwrap();
    assert_eq!(
        (d.keyids.clone(), d.paths.clone(), d.threshold),
        (
            vec![b.public_key().id().to_owned()],
            vec!["x/".to_owned(), "z/".to_owned()],
            2
        )
    );
    // The removed key is listed by no role: it leaves the delegation keys.
    assert_eq!(t.delegations.keys.keys().collect::<Vec<_>>(), [b.public_key().id()]);
    let clear = DelegationEdit {
        clear_all_paths: true,
        ..DelegationEdit::default()
    };
    // A delete with something to remove is an update.
    e.edit_delegation("targets/team", DelegationAction::Delete, &clear)
        .unwrap();
    assert!(e.targets[TARGETS].delegation("targets/team").unwrap().paths.is_empty());
    assert_eq!(
        e.edit_delegation("targets/other", DelegationAction::Update, &clear),
        Err(EditError::NotDelegated {
            role: "targets/other".into(),
            parent: TARGETS.into()
        })
    );
    assert_eq!(
        e.edit_delegation("releases", DelegationAction::Create, &clear),
        Err(EditError::NotDelegationRole("releases".into()))
    );
}

#[test]
fn deleting_a_delegation_removes_it_and_everything_below() {
    let mut f = Fixture::new();
    let mut e = f.published();
    let (a, b) = (key(), key());
    delegate(&mut e, "targets/a", &a, &[""]);
    delegate(&mut e, "targets/b", &b, &[""]);
    e.add_target("targets/a", "t", FileMeta::for_bytes(b"t")).unwrap();
    f.keys.0.push(dup(&a));
    e.sign(&mut f.keys, &[]).unwrap();
    delegate(&mut e, "targets/a/sub", &a, &[""]);
    e.add_target("targets/a/sub", "s", FileMeta::for_bytes(b"s")).unwrap();
    e.sign(&mut f.keys, &[]).unwrap();
    assert!(e.files().contains_key("targets/a/sub"));

    let w = e
        .edit_delegation("targets/a", DelegationAction::Delete, &DelegationEdit::default())
        .unwrap();
    assert_eq!(w, None);
    assert_eq!(e.removed().iter().collect::<Vec<_>>(), ["targets/a", "targets/a/sub"]);
    let changed = e.sign(&mut f.keys, &[]).unwrap();
    assert_eq!(changed, [TARGETS, SNAPSHOT]);
    assert!(!e.files().contains_key("targets/a"));
    let s = Snapshot::from_signed(parsed(&e, SNAPSHOT).signed()).unwrap();
    assert!(!s.meta.contains_key("targets/a") && !s.meta.contains_key("targets/a/sub"));
    let t = Targets::from_signed(TARGETS, parsed(&e, TARGETS).signed()).unwrap();
    assert_eq!(t.delegations.roles.len(), 1);
    assert_eq!(t.delegations.keys.keys().collect::<Vec<_>>(), [b.public_key().id()]);
}

#[test]
fn witness_needs_metadata() {
    let mut f = Fixture::new();
    let mut e = f.published();
    assert_eq!(
        e.witness("targets/none"),
        Err(EditError::CannotWitness {
            gun: "example.com/app".into(),
            role: "targets/none".into()
        })
    );
    e.witness(TARGETS).unwrap();
    assert_eq!(e.sign(&mut f.keys, &[]).unwrap(), [TARGETS, SNAPSHOT]);
}

#[test]
fn rotation_follows_notarys_rules() {
    let mut f = Fixture::new();
    let unpublished = Editor::init("g", now(), f.root(1));
    assert_eq!(
        unpublished.rotation(TARGETS, false),
        Err(EditError::NotPublished("g".into()))
    );
    let e = f.published();
    assert_eq!(e.rotation(TIMESTAMP, false), Err(EditError::TimestampKeyIsServers));
    assert_eq!(e.rotation(ROOT, true), Err(EditError::NotServerManageable(ROOT.into())));
    assert_eq!(
        e.rotation(TARGETS, true),
        Err(EditError::NotServerManageable(TARGETS.into()))
    );
    assert_eq!(e.rotation(TIMESTAMP, true), Ok(Rotation::Server));
    assert_eq!(e.rotation(SNAPSHOT, true), Ok(Rotation::Server));
    assert_eq!(e.rotation(SNAPSHOT, false), Ok(Rotation::Local));
    assert_eq!(e.rotation(TARGETS, false), Ok(Rotation::Local));
    assert_eq!(e.rotation(ROOT, false), Ok(Rotation::Root));
    assert_eq!(
        e.rotation("targets/x", false),
        Err(EditError::NotRotatable("targets/x".into()))
    );
}

#[test]
fn a_rotated_key_replaces_the_old_one_in_a_new_root() {
    let mut f = Fixture::new();
    let mut e = f.published();
    let new_targets = key();
    let old = e.rotate_key(TARGETS, new_targets.public_key()).unwrap();
    assert_eq!(old, [f.targets.public_key().id()]);
    assert_eq!(e.root().version, 2);
    assert!(!e.root().keys.contains_key(f.targets.public_key().id()));
    assert_eq!(e.root().roles[TARGETS].keyids, [new_targets.public_key().id()]);
    // Targets is signed again, with the new key only.
    f.keys.0.push(dup(&new_targets));
    assert_eq!(e.sign(&mut f.keys, &[]).unwrap(), [ROOT, TARGETS, SNAPSHOT]);
    let t = parsed(&e, TARGETS);
    verify_threshold(&t, &[&new_targets.public_key()], 1).unwrap();
    assert!(verify_threshold(&t, &[&f.targets.public_key()], 1).is_err());

    // A new root key: the old one signs too.
    let new_root_key = key();
    let old_root = (dup(&f.root), f.root.public_key().id().to_owned());
    e.rotate_key(ROOT, new_root_key.public_key()).unwrap();
    f.keys.0 = vec![dup(&new_root_key), new_targets, dup(&f.snapshot)];
    e.sign(&mut f.keys, &[old_root]).unwrap();
    let r = parsed(&e, ROOT);
    verify_threshold(&r, &[&f.root.public_key()], 1).unwrap();
    verify_threshold(&r, &[&new_root_key.public_key()], 1).unwrap();
    assert_eq!(Root::from_signed(r.signed()).unwrap().version, 3);
}

#[test]
fn a_key_shared_by_two_roles_stays_in_the_root() {
    let mut f = Fixture::new();
    let shared = f.targets.public_key();
    let root = new_root(
        1,
        now(),
        &[
            (ROOT, &[f.root.public_key()], 1),
            (TARGETS, std::slice::from_ref(&shared), 1),
            (SNAPSHOT, std::slice::from_ref(&shared), 1),
        ],
    );
    let mut e = Editor::init("g", now(), root);
    e.sign(&mut f.keys, &[]).unwrap();
    e.rotate_key(TARGETS, key().public_key()).unwrap();
    assert!(e.root().keys.contains_key(shared.id()));
}

#[test]
fn signers_count_held_listed_keys_against_the_threshold() {
    let (a, b, c) = (key(), key(), key());
    let listed = [a.public_key(), b.public_key()];
    let listed: Vec<&PublicKey> = listed.iter().collect();
    let held = vec![(dup(&a), a.public_key().id().to_owned())];
    assert_eq!(signers("g", TARGETS, &held, &[], &listed, 1).unwrap().len(), 1);
    assert_eq!(
        signers("g", TARGETS, &held, &[], &listed, 2).unwrap_err().to_string(),
        "targets needs signatures from 2 keys; this trust directory holds 1"
    );
    assert_eq!(
        signers("g", TARGETS, &[], &[], &listed, 1).unwrap_err(),
        (EditError::MissingKey {
            role: TARGETS.into(),
            gun: "g".into()
        })
    );
    // Extra signers sign too, once each, but count only when listed.
    let extra = vec![
        (dup(&a), a.public_key().id().to_owned()),
        (dup(&c), c.public_key().id().to_owned()),
    ];
    let s = signers("g", ROOT, &held, &extra, &listed, 1).unwrap();
    assert_eq!(s.len(), 2);
    assert!(signers("g", ROOT, &[], &extra[1..], &listed, 1).is_err());
}

#[test]
fn versions_never_pass_the_maximum() {
    let mut f = Fixture::new();
    let mut e = f.published();
    e.targets.get_mut(TARGETS).unwrap().version = MAX_VERSION;
    e.witness(TARGETS).unwrap();
    assert_eq!(
        e.sign(&mut f.keys, &[]),
        Err(EditError::VersionOverflow(TARGETS.into()))
    );
    e.root.version = MAX_VERSION;
    assert!(matches!(
        e.rotate_key(TARGETS, key().public_key()),
        Err(EditError::Tuf(crate::Error::VersionTooLarge { .. }))
    ));
}
