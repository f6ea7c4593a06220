//! Interop with the real Notary v0.7.0: the metadata it wrote parses,
//! re-serialises byte for byte and verifies; the uploads its CLI made
//! validate as updates in the order the transcripts show.
//!
//! The fixtures are read where they lie (`SEAL_NOTARY_FIXTURES`, else
//! `../shared/fixtures/notary` beside the project); without them these
//! tests say that they skipped (and fail under `CI=true`).

use std::collections::BTreeMap;
use std::path::PathBuf;

use seal_tuf::client::{Limits, Repo, TrustPin};
use seal_tuf::metadata::{Root, SignedFile, Snapshot, Targets, Timestamp};
use seal_tuf::update::{validate_update, ServerKeys, SnapshotPlan};
use seal_tuf::{PublicKey, UpdateError};
use time::macros::datetime;
use time::OffsetDateTime;

const GUN: &str = "example.com/interop/app";
const NOW: OffsetDateTime = datetime!(2026-11-22 00:00:00 UTC);

fn fixtures() -> Option<PathBuf> {
    seal_testkit::notary_fixtures()
}

fn state(dir: &std::path::Path, name: &str) -> BTreeMap<String, Vec<u8>> {
    let base = dir.join("metadata/example.com_interop_app").join(name);
    let mut out = BTreeMap::new();
    for role in ["root", "targets", "snapshot", "timestamp", "targets/releases"] {
        if let Ok(b) = std::fs::read(base.join(format!("{role}.json"))) {
            out.insert(role.to_owned(), b);
        }
    }
    out
}

#[test]
fn every_fixture_file_parses_and_reserialises_byte_identically() {
    let Some(dir) = fixtures() else { return };
    for st in ["1-after-first-publish", "2-final"] {
        for (role, bytes) in state(&dir, st) {
            let file = SignedFile::parse(&role, bytes.clone()).unwrap();
            assert_eq!(file.reserialize(), bytes, "{st}/{role}");
            // The typed model writes the same canonical `signed` back.
            let typed = match role.as_str() {
                "root" => Root::from_signed(file.signed()).unwrap().to_value(),
                "snapshot" => Snapshot::from_signed(file.signed()).unwrap().to_value(),
                "timestamp" => Timestamp::from_signed(file.signed()).unwrap().to_value(),
                r => Targets::from_signed(r, file.signed()).unwrap().to_value(),
            };
            assert_eq!(typed.to_canonical(), file.canonical_signed(), "{st}/{role}");
        }
    }
}

#[test]
fn key_bodies_and_ids_match_notary() {
    let Some(dir) = fixtures() else { return };
    let base = dir.join("metadata/example.com_interop_app/2-final");
    let ts = std::fs::read(base.join("timestamp.key")).unwrap();
    let k = PublicKey::from_json(&ts).unwrap();
    assert_eq!(
        k.id(),
        "f483ad6878ad3fca5b5cbacdf4ab77ba9719a156608755b59b1ef156a2aec6d5"
    );
    assert_eq!(k.to_notary_key_json(), ts);
    let root = SignedFile::parse("root", std::fs::read(base.join("root.json")).unwrap()).unwrap();
    let root = Root::from_signed(root.signed()).unwrap();
    let rk = &root.keys["d5ea59fd3ad46140545a70ba910d0420574c4cc2bc8fba268e0888cc5e0e7445"];
    // The CLI names the root key file by the plain key's ID inside the certificate.
    assert!(rk.canonical_id().starts_with("ebdd8e3b"), "{}", rk.canonical_id());
    assert_eq!(rk.cert().unwrap().common_name.as_deref(), Some(GUN));
    let targets = SignedFile::parse("targets", std::fs::read(base.join("targets.json")).unwrap()).unwrap();
    let targets = Targets::from_signed("targets", targets.signed()).unwrap();
    let dk = &targets.delegations.keys["da87ccfda339f798ae4cb38f5f9b2e95a22d0da7512cd6e00d485e160b886927"];
    assert!(dk.canonical_id().starts_with("e2069a2d"), "{}", dk.canonical_id());
}

fn client_verifies(files: &BTreeMap<String, Vec<u8>>) -> Repo {
    let mut repo = Repo::new(GUN, TrustPin::Tofu, Limits::default());
    repo.update_root(files["root"].clone(), NOW).unwrap();
    repo.update_timestamp(files["timestamp"].clone(), NOW).unwrap();
    repo.update_snapshot(files["snapshot"].clone(), NOW).unwrap();
    repo.update_targets("targets", files["targets"].clone(), NOW).unwrap();
    if let Some(b) = files.get("targets/releases") {
        repo.update_targets("targets/releases", b.clone(), NOW).unwrap();
    }
    repo
}

#[test]
fn both_fixture_states_verify_as_a_client() {
    let Some(dir) = fixtures() else { return };
    let s1 = client_verifies(&state(&dir, "1-after-first-publish"));
    let (role, meta) = s1.lookup("v1", NOW).unwrap().unwrap();
    assert_eq!(role, "targets");
    assert_eq!(meta.length, 17);
    assert_eq!(
        meta.sha256_hex().unwrap(),
        "0a2b5b8deeb5d5390939742f1e00b4208e6a0f74ab3ef1042ec0186a48f8f677"
    );
    let payload = std::fs::read(dir.join("targets-payloads/v1.txt")).unwrap();
    seal_tuf::client::verify_target("v1", &meta, &payload).unwrap();

    let s2 = client_verifies(&state(&dir, "2-final"));
    let (role, meta) = s2.lookup("v2", NOW).unwrap().unwrap();
    assert_eq!(role, "targets/releases");
    assert_eq!(meta.length, 29);
    assert!(s2.lookup("v1", NOW).unwrap().is_none(), "v1 was removed");
    // The timestamps expire on 2026-12-05: past that, a client refuses them.
    let mut late = Repo::new(GUN, TrustPin::Tofu, Limits::default());
    let files = state(&dir, "2-final");
    let later = datetime!(2026-12-06 00:00:00 UTC);
    late.update_root(files["root"].clone(), later).unwrap();
    assert!(matches!(
        late.update_timestamp(files["timestamp"].clone(), later),
        Err(seal_tuf::Error::Expired { .. })
    ));
}

#[test]
fn a_client_rotates_from_state_one_root_to_state_two_root() {
    let Some(dir) = fixtures() else { return };
    let s1 = state(&dir, "1-after-first-publish");
    let s2 = state(&dir, "2-final");
    let mut repo = client_verifies(&s1);
    repo.update_root(s2["root"].clone(), NOW).unwrap();
    assert_eq!(repo.root().unwrap().version, 2);
    // And never back.
    assert!(matches!(
        repo.update_root(s1["root"].clone(), NOW),
        Err(seal_tuf::Error::Rollback { .. })
    ));
}

/// Splits a multipart/form-data body into (filename, content) pairs.
fn multipart(body: &[u8]) -> Vec<(String, Vec<u8>)> {
    let text = body;
    let first_line_end = text.windows(2).position(|w| w == b"\r\n").unwrap();
    let delim = [b"\r\n".as_slice(), &text[..first_line_end]].concat();
    let mut parts = Vec::new();
    let mut rest = &text[first_line_end..];
    while let Some(hdr_end) = rest.windows(4).position(|w| w == b"\r\n\r\n") {
        let headers = String::from_utf8_lossy(&rest[..hdr_end]).to_string();
        let content_start = hdr_end + 4;
        let Some(len) = rest[content_start..]
            .windows(delim.len())
            .position(|w| w == delim.as_slice())
        else {
            break;
        };
        let content = rest[content_start..content_start + len].to_vec();
        let filename = headers
            .split("filename=\"")
            .nth(1)
            .and_then(|s| s.split('"').next())
            .unwrap()
            .to_owned();
        parts.push((filename, content));
        rest = &rest[content_start + len + delim.len()..];
        if rest.starts_with(b"--") {
            break;
        }
    }
    parts
}

fn role_of_path(file: &str) -> Option<String> {
    let stem = file.strip_suffix(".json")?;
    let parts: Vec<&str> = stem.split('.').collect();
    match parts.as_slice() {
        [role] => Some((*role).to_owned()),
        [role, sum] if sum.len() == 64 => Some((*role).to_owned()),
        [v, role] if v.parse::<u64>().is_ok() => Some((*role).to_owned()),
        _ => None,
    }
}

fn version(bytes: &[u8]) -> u64 {
    let v: serde_json::Value = serde_json::from_slice(bytes).unwrap();
    v["signed"]["version"].as_u64().unwrap()
}

/// Replays a transcript: every upload is validated against what the real
/// server held at that moment (uploads plus the files it generated, as the
/// later GETs show). Returns the number of uploads validated and the
/// final stored files.
fn replay(dir: &std::path::Path, gun: &str, now: OffsetDateTime) -> (usize, BTreeMap<String, Vec<u8>>) {
    let jsonl = std::fs::read_to_string(dir.join("http.jsonl")).unwrap();
    let prefix = format!("/v2/{gun}/_trust/tuf/");
    let mut stored: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    let mut keys = ServerKeys::default();
    let mut validated = 0;
    for line in jsonl.lines() {
        let ex: serde_json::Value = serde_json::from_str(line).unwrap();
        let Some(n) = ex["n"].as_u64() else { continue };
        let path = ex["path"].as_str().unwrap();
        let Some(file) = path.split('?').next().unwrap().strip_prefix(&prefix) else {
            continue;
        };
        let method = ex["method"].as_str().unwrap();
        let status = ex["status"].as_u64().unwrap();
        let body = |kind: &str| std::fs::read(dir.join(format!("bodies/{n:04}-{kind}.bin"))).unwrap();
        match (method, file, status) {
            ("POST", "", 200) => {
                let uploads = multipart(&body("req"));
                let plan = validate_update(gun, &stored, uploads.clone(), now, &keys)
                    .unwrap_or_else(|e| panic!("exchange {n}: {e}"));
                if !uploads.iter().any(|(r, _)| r == "snapshot") {
                    assert!(matches!(plan.snapshot, SnapshotPlan::Generate { .. }), "exchange {n}");
                }
                for (role, bytes) in uploads {
                    stored.insert(role, bytes);
                }
                validated += 1;
            }
            ("DELETE", "", 200) => stored.clear(),
            (_, "timestamp.key" | "snapshot.key", 200) => {
                let k = PublicKey::from_json(&body("resp")).unwrap();
                if file == "timestamp.key" {
                    keys.timestamp.push(k);
                } else {
                    keys.snapshot.push(k);
                }
            }
            ("GET", f, 200) => {
                let Some(role) = role_of_path(f) else { continue };
                let b = body("resp");
                let newer = stored.get(&role).is_none_or(|cur| version(&b) >= version(cur));
                if newer {
                    stored.insert(role, b);
                }
            }
            _ => {}
        }
    }
    (validated, stored)
}

#[test]
fn cli_session_uploads_validate_in_transcript_order() {
    let Some(dir) = fixtures() else { return };
    let (validated, stored) = replay(&dir.join("transcript"), GUN, NOW);
    // first publish, delegation add, delegation publish, snapshot key
    // rotation, remove v1, witness
    assert_eq!(validated, 6);
    assert!(stored.is_empty(), "the session ends with delete --remote");
}

#[test]
fn testclient_uploads_including_root_key_rotation_validate() {
    let Some(dir) = fixtures() else { return };
    let (validated, stored) = replay(
        &dir.join("transcript/testclient-py"),
        "example.com/testclient/repo",
        datetime!(2026-11-22 01:00:00 UTC),
    );
    assert_eq!(validated, 7);
    let root = SignedFile::parse("root", stored["root"].clone()).unwrap();
    assert_eq!(Root::from_signed(root.signed()).unwrap().version, 3);
}

#[test]
fn generated_snapshot_matches_what_notary_generated() {
    // After the snapshot key moved to the server, publishing root v2 made
    // Notary generate snapshot v5; Seal's generation gives the same meta.
    let Some(dir) = fixtures() else { return };
    let t = dir.join("transcript");
    let read = |n: u32, kind: &str| std::fs::read(t.join(format!("bodies/{n:04}-{kind}.bin"))).unwrap();
    let mut stored = BTreeMap::new();
    stored.insert("root".to_owned(), read(21, "resp"));
    stored.insert("timestamp".to_owned(), read(31, "resp"));
    stored.insert("snapshot".to_owned(), read(26, "resp"));
    stored.insert("targets".to_owned(), read(19, "resp"));
    stored.insert("targets/releases".to_owned(), read(27, "resp"));
    let keys = ServerKeys {
        timestamp: vec![PublicKey::from_json(&read(2, "resp")).unwrap()],
        snapshot: vec![PublicKey::from_json(&read(29, "resp")).unwrap()],
    };
    let uploads = multipart(&read(32, "req"));
    let plan = validate_update(GUN, &stored, uploads, NOW, &keys).unwrap();
    let ours = plan
        .next_snapshot(&stored, NOW, time::Duration::days(1095))
        .unwrap()
        .unwrap();
    let theirs = SignedFile::parse("snapshot", read(35, "resp")).unwrap();
    let theirs = Snapshot::from_signed(theirs.signed()).unwrap();
    assert_eq!(ours.version, theirs.version);
    assert_eq!(ours.meta, theirs.meta);
    let ts = plan
        .next_timestamp(&stored, &read(35, "resp"), NOW, time::Duration::days(14))
        .unwrap();
    let theirs_ts = SignedFile::parse("timestamp", read(34, "resp")).unwrap();
    let theirs_ts = Timestamp::from_signed(theirs_ts.signed()).unwrap();
    assert_eq!(ts.version, theirs_ts.version);
    assert_eq!(ts.meta, theirs_ts.meta);
}

#[test]
fn notary_error_messages_for_refused_uploads() {
    let Some(dir) = fixtures() else { return };
    let s1 = state(&dir, "1-after-first-publish");
    let keys = ServerKeys::default();
    let err = validate_update(
        "example.com/newgun",
        &BTreeMap::new(),
        vec![("targets".into(), s1["targets"].clone())],
        NOW,
        &keys,
    )
    .unwrap_err();
    assert_eq!(
        err,
        UpdateError::Invalid {
            kind: seal_tuf::UpdateErrorKind::Validation,
            role: None,
            msg: "no pre-existing root and no root provided in update.".into()
        }
    );
    let mut unsigned: serde_json::Value = serde_json::from_slice(&s1["targets"]).unwrap();
    unsigned["signatures"] = serde_json::json!([]);
    let err = validate_update(
        GUN,
        &s1,
        vec![("targets".into(), serde_json::to_vec(&unsigned).unwrap())],
        NOW,
        &keys,
    )
    .unwrap_err();
    match err {
        UpdateError::Invalid { kind, msg, .. } => {
            assert_eq!(kind.notary_name(), "ErrBadTargets");
            assert_eq!(msg, "tuf: data has no signatures");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        validate_update(GUN, &s1, vec![("bogus".into(), b"{}".to_vec())], NOW, &keys).unwrap_err(),
        UpdateError::InvalidRole("bogus".into())
    );
    assert!(matches!(
        validate_update(GUN, &s1, vec![("targets".into(), b"{not json".to_vec())], NOW, &keys).unwrap_err(),
        UpdateError::MalformedJson { .. }
    ));
}
