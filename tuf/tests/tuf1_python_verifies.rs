//! The reverse direction of tuf1_python_fixtures: a repository signed by
//! seal-tuf (Ed25519 and DER ECDSA signatures, files written by
//! `tuf1::metadata::sign`, snapshot and timestamp made by `tuf1::repo`) is
//! verified by python-tuf 7.0.1's own client state machine.
//!
//! Runs python-tuf from the virtualenv `SEAL_TUF_VENV` names (with
//! `tuf==7.0.1` installed, see tests/tuf1/make_fixtures.py), else from one
//! made under cargo's target directory with `seal_testkit::python_venv`;
//! where neither can be had it says why it skipped (a failure under CI).

mod tuf1_support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use seal_tuf::tuf1::metadata::format_expires;
use serde_json::json;
use tuf1_support::*;

/// python-tuf's release these tests compare with.
const PYTHON_TUF: &[&str] = &["tuf==7.0.1", "securesystemslib[crypto]==1.6.0"];

/// The interpreter of a virtualenv with python-tuf: `SEAL_TUF_VENV`'s when set, else one made
/// (once) under cargo's target directory.
fn python() -> Option<PathBuf> {
    let venv = match std::env::var_os("SEAL_TUF_VENV") {
        Some(venv) => PathBuf::from(venv),
        None => seal_testkit::python_venv(
            &Path::new(env!("CARGO_TARGET_TMPDIR")).join("python-tuf-7.0.1"),
            PYTHON_TUF,
        )?,
    };
    Some(venv.join("bin/python"))
}

#[test]
fn encodings_and_matching_rules_match_python_tuf() {
    use std::io::Write;
    let Some(py) = python() else {
        return;
    };
    let mut strings: Vec<String> = (0u32..0x80).filter_map(char::from_u32).map(String::from).collect();
    strings.extend(
        [
            "\u{7f}",
            "\u{80}",
            "\u{2028}",
            "\u{2029}",
            "\u{feff}",
            "\u{ffff}",
            "\u{10000}",
            "\u{1f600}",
            "é",
            "\\\"",
        ]
        .map(String::from),
    );
    let object: serde_json::Map<String, serde_json::Value> = strings.iter().map(|k| (k.clone(), json!(k))).collect();
    let values = vec![
        json!(strings),
        serde_json::Value::Object(object),
        json!({"b": [1, -2, 0, 18446744073709551615u64, true, false, null, {}], "a": "", "": []}),
        json!({"z": 1, "\u{e9}": 2, "\u{10000}": 3, "\u{ffff}": 4, "Z": 5, "_": 6}),
    ];
    let keys = [ed(), ec()];
    let patterns = [
        "*", "*.tgz", "a/*", "a/*/c", "?", "??", "[ab]", "[!ab]", "[a-c]x", "[!a-c]", "[]]", "[!]]", "[]a]", "[a-]",
        "[-a]", "[z-a]", "[", "a[", "[!", "\\*", "**", "*a*", "a*b*c", ".*", "é?", "[é]", "x/**/y",
    ];
    let targets = [
        "", "a", "b", "c", "d", "ab", "ax", "dx", "]", "-", "[", "a[", "x.tgz", "a/b", "a/b/c", "a/bb/c", "\\x", "é",
        "éé", ".hidden", "abc", "aXbYc", "x/y", "x/q/y", "z",
    ];
    let paths: Vec<(&str, &str)> = targets
        .iter()
        .flat_map(|t| patterns.iter().map(move |p| (*t, *p)))
        .collect();
    let bins: Vec<(u32, String)> = (1..=32)
        .flat_map(|bits| ["", "a", "files/x.tgz", "é/ü"].map(|t| (bits, t.to_owned())))
        .collect();
    let doc = json!({"values": values, "keys": keys.iter().map(key_json).collect::<Vec<_>>(),
        "paths": paths, "bins": bins});
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/tuf1/check_encoding.py");
    let mut child = Command::new(&py)
        .arg(&script)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(&serde_json::to_vec(&doc).unwrap())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let lines: Vec<String> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(String::from)
        .collect();
    for (i, value) in values.iter().enumerate() {
        let ours = hex::encode(seal_tuf::tuf1::cjson::to_canonical(&v(value.clone())));
        assert_eq!(lines[i], ours, "value {i}: {value}");
    }
    for (i, k) in keys.iter().enumerate() {
        assert_eq!(lines[values.len() + i], k.keyid(), "key ID of {:?}", k.public());
    }
    let mut at = values.len() + keys.len();
    for (target, pattern) in &paths {
        let ours = if seal_tuf::tuf1::metadata::path_matches(target, pattern) {
            "1"
        } else {
            "0"
        };
        assert_eq!(lines[at], ours, "target {target:?} against pattern {pattern:?}");
        at += 1;
    }
    for (bits, target) in &bins {
        let s = seal_tuf::tuf1::SuccinctRoles {
            keys: seal_tuf::tuf1::metadata::RoleKeys {
                keyids: vec![],
                threshold: 1,
            },
            bit_length: *bits,
            name_prefix: "bin".into(),
        };
        assert_eq!(
            lines[at],
            s.role_for_target(target),
            "bit_length {bits}, target {target:?}"
        );
        at += 1;
    }
    assert_eq!(lines.len(), at);
}

/// The python-tuf exception each seal-tuf error corresponds to.
fn python_name(e: &seal_tuf::tuf1::Error) -> &'static str {
    use seal_tuf::tuf1::Error as E;
    match e {
        E::Rollback { .. } | E::WrongVersion { .. } => "BadVersionNumberError",
        E::Expired { .. } => "ExpiredMetadataError",
        E::LengthMismatch { .. } | E::HashMismatch { .. } => "LengthOrHashMismatchError",
        E::Threshold { .. } => "UnsignedMetadataError",
        E::MissingMeta { .. } => "RepositoryError",
        _ => "other",
    }
}

/// The seal-tuf side of a case: the workflow over the case's files.
type SealSteps = Box<dyn Fn(&dyn Fn(&str) -> Vec<u8>) -> Result<(), seal_tuf::tuf1::Error>>;

/// One attack, as files, python-tuf steps, and the seal-tuf workflow.
struct Case {
    name: &'static str,
    files: Vec<(&'static str, Vec<u8>)>,
    steps: serde_json::Value,
    seal: SealSteps,
}

#[test]
fn python_tuf_and_seal_refuse_the_same_attacks_for_the_same_reason() {
    use seal_tuf::tuf1::TrustedSet;
    let Some(py) = python() else {
        return;
    };
    let past = time::macros::datetime!(2021-01-01 0:00 UTC);
    let mut repo = simple_repo();
    let (root, ts1, sn1, t1) = (
        repo.root.clone(),
        repo.timestamp.clone(),
        repo.snapshot.clone(),
        repo.targets["targets"].clone(),
    );
    repo.targets.insert(
        "targets".into(),
        signed(targets_json(2, EXPIRES, json!({}), None), &[&repo.keys.targets]),
    );
    repo.publish(EXPIRES);
    let (ts2, sn2, t2) = (
        repo.timestamp.clone(),
        repo.snapshot.clone(),
        repo.targets["targets"].clone(),
    );
    let k = &repo.keys;
    let ts_naming = |version: u64, sn: u64, expires: &str| {
        signed(
            json!({"_type":"timestamp","spec_version":"1.0.31","version":version,"expires":expires,
                   "meta":{"snapshot.json":{"version":sn}}}),
            &[&k.timestamp],
        )
    };
    let sn_listing = |version: u64, meta: serde_json::Value| {
        signed(
            json!({"_type":"snapshot","spec_version":"1.0.31","version":version,
                   "expires":"2030-01-01T00:00:00Z","meta":meta}),
            &[&k.snapshot],
        )
    };
    let cases = vec![
        Case {
            name: "timestamp rollback",
            files: vec![("root", root.clone()), ("ts1", ts1.clone()), ("ts2", ts2.clone())],
            steps: json!([["init", "root"], ["timestamp", "ts2"], ["timestamp", "ts1"]]),
            seal: Box::new(|f| {
                let mut s = TrustedSet::new(&f("root"))?;
                s.load_previous_timestamp(&f("ts2"))?;
                s.update_timestamp(&f("ts1"), NOW).map(|_| ())
            }),
        },
        Case {
            name: "expired timestamp",
            files: vec![("root", root.clone()), ("ts", ts_naming(3, 1, &format_expires(past)))],
            steps: json!([["init", "root"], ["timestamp", "ts"]]),
            seal: Box::new(|f| {
                let mut s = TrustedSet::new(&f("root"))?;
                s.update_timestamp(&f("ts"), NOW).map(|_| ())
            }),
        },
        Case {
            name: "old snapshot under the new timestamp",
            files: vec![("root", root.clone()), ("ts2", ts2.clone()), ("sn1", sn1.clone())],
            steps: json!([["init", "root"], ["timestamp", "ts2"], ["snapshot", "sn1"]]),
            seal: Box::new(|f| {
                let mut s = TrustedSet::new(&f("root"))?;
                s.update_timestamp(&f("ts2"), NOW)?;
                s.update_snapshot(&f("sn1"), NOW).map(|_| ())
            }),
        },
        Case {
            name: "old targets under the new snapshot",
            files: vec![
                ("root", root.clone()),
                ("ts2", ts2.clone()),
                ("sn2", sn2.clone()),
                ("t1", t1.clone()),
            ],
            steps: json!([
                ["init", "root"],
                ["timestamp", "ts2"],
                ["snapshot", "sn2"],
                ["targets", "t1"]
            ]),
            seal: Box::new(|f| {
                let mut s = TrustedSet::new(&f("root"))?;
                s.update_timestamp(&f("ts2"), NOW)?;
                s.update_snapshot(&f("sn2"), NOW)?;
                s.update_targets(&f("t1"), NOW).map(|_| ())
            }),
        },
        Case {
            name: "snapshot version other than the timestamp names",
            files: vec![
                ("root", root.clone()),
                ("ts", ts_naming(5, 2, "2030-01-01T00:00:00Z")),
                ("sn1", sn1.clone()),
            ],
            steps: json!([["init", "root"], ["timestamp", "ts"], ["snapshot", "sn1"]]),
            seal: Box::new(|f| {
                let mut s = TrustedSet::new(&f("root"))?;
                s.update_timestamp(&f("ts"), NOW)?;
                s.update_snapshot(&f("sn1"), NOW).map(|_| ())
            }),
        },
        Case {
            name: "snapshot dropping a role the cached one lists",
            files: vec![
                ("root", root.clone()),
                ("ts", ts_naming(5, 3, "2030-01-01T00:00:00Z")),
                (
                    "cached",
                    sn_listing(2, json!({"targets.json":{"version":1},"x.json":{"version":1}})),
                ),
                ("sn", sn_listing(3, json!({"targets.json":{"version":1}}))),
            ],
            steps: json!([
                ["init", "root"],
                ["timestamp", "ts"],
                ["snapshot_cached", "cached"],
                ["snapshot", "sn"]
            ]),
            seal: Box::new(|f| {
                let mut s = TrustedSet::new(&f("root"))?;
                s.load_previous_snapshot(&f("cached"))?;
                s.update_timestamp(&f("ts"), NOW)?;
                s.update_snapshot(&f("sn"), NOW).map(|_| ())
            }),
        },
        Case {
            name: "snapshot lowering a role the cached one lists",
            files: vec![
                ("root", root.clone()),
                ("ts", ts_naming(5, 3, "2030-01-01T00:00:00Z")),
                ("cached", sn_listing(2, json!({"targets.json":{"version":4}}))),
                ("sn", sn_listing(3, json!({"targets.json":{"version":1}}))),
            ],
            steps: json!([
                ["init", "root"],
                ["timestamp", "ts"],
                ["snapshot_cached", "cached"],
                ["snapshot", "sn"]
            ]),
            seal: Box::new(|f| {
                let mut s = TrustedSet::new(&f("root"))?;
                s.load_previous_snapshot(&f("cached"))?;
                s.update_timestamp(&f("ts"), NOW)?;
                s.update_snapshot(&f("sn"), NOW).map(|_| ())
            }),
        },
        Case {
            name: "timestamp signed by the snapshot key",
            files: vec![
                ("root", root.clone()),
                (
                    "ts",
                    signed(
                        json!({"_type":"timestamp","spec_version":"1.0.31","version":9,
                               "expires":"2030-01-01T00:00:00Z","meta":{"snapshot.json":{"version":1}}}),
                        &[&k.snapshot],
                    ),
                ),
            ],
            steps: json!([["init", "root"], ["timestamp", "ts"]]),
            seal: Box::new(|f| {
                let mut s = TrustedSet::new(&f("root"))?;
                s.update_timestamp(&f("ts"), NOW).map(|_| ())
            }),
        },
        Case {
            name: "the current repository",
            files: vec![
                ("root", root.clone()),
                ("ts2", ts2.clone()),
                ("sn2", sn2.clone()),
                ("t2", t2.clone()),
            ],
            steps: json!([
                ["init", "root"],
                ["timestamp", "ts2"],
                ["snapshot", "sn2"],
                ["targets", "t2"]
            ]),
            seal: Box::new(|f| {
                let mut s = TrustedSet::new(&f("root"))?;
                s.update_timestamp(&f("ts2"), NOW)?;
                s.update_snapshot(&f("sn2"), NOW)?;
                s.update_targets(&f("t2"), NOW).map(|_| ())
            }),
        },
    ];
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/tuf1/run_steps.py");
    for case in cases {
        let dir = TempDir(std::env::temp_dir().join(format!(
            "seal-tuf1-case-{}-{}",
            std::process::id(),
            case.name.replace(' ', "-")
        )));
        std::fs::create_dir_all(&dir.0).unwrap();
        for (name, bytes) in &case.files {
            std::fs::write(dir.0.join(name), bytes).unwrap();
        }
        std::fs::write(dir.0.join("steps.json"), serde_json::to_vec(&case.steps).unwrap()).unwrap();
        let out = Command::new(&py).arg(&script).arg(&dir.0).output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let theirs = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        let files: BTreeMap<&str, Vec<u8>> = case.files.iter().cloned().collect();
        let read = |n: &str| files[n].clone();
        let ours = match (case.seal)(&read) {
            Ok(()) => "ok",
            Err(e) => python_name(&e),
        };
        assert_eq!(
            ours, theirs,
            "{}: seal-tuf and python-tuf decide differently",
            case.name
        );
    }
}

struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Root v1 → v2 (root key rotated from Ed25519 to ECDSA), targets
/// delegating `rel/*` (terminating) and `h/*` to a role using 8 succinct
/// hash bins; a target whose `custom` holds U+2028, a quote, a backslash
/// and a newline, and an unrecognised field in targets' `signed`.
fn write_repo(dir: &Path) -> String {
    let mut keys = RootKeys::new();
    let root1 = signed(keys.root_json(1, EXPIRES), &keys.root_signers());
    let old_root_key = keys.root.remove(0);
    keys.root = vec![ec()];
    let root2 = signed(keys.root_json(2, EXPIRES), &[&old_root_key, &keys.root[0]]);
    let (rel, hashed, bins) = (ec(), ed(), ec());
    let bin_path = "h/pkg-1.0.tar.gz";
    let mut top = targets_json(
        1,
        EXPIRES,
        json!({"top.txt": target_entry(b"top")}),
        Some(json!({"keys": keys_json(&[&rel, &hashed]), "roles": [
            {"name": "rel", "keyids": [rel.keyid()], "threshold": 1, "terminating": true, "paths": ["rel/*"]},
            {"name": "hashed", "keyids": [hashed.keyid()], "threshold": 1, "terminating": false,
             "path_hash_prefixes": [""]},
        ]})),
    );
    top["x-seal-extra"] = json!({"kept": [1, 2, 3]});
    let mut entry = target_entry(b"release");
    entry["custom"] = json!({"note": "a\u{2028}b \"q\" \\ \n é"});
    let mut targets = BTreeMap::from([
        ("targets".to_owned(), signed(top, &[&keys.targets])),
        (
            "rel".to_owned(),
            signed(targets_json(1, EXPIRES, json!({"rel/app.tgz": entry}), None), &[&rel]),
        ),
        (
            "hashed".to_owned(),
            signed(
                targets_json(
                    1,
                    EXPIRES,
                    json!({}),
                    Some(json!({"keys": keys_json(&[&bins]), "succinct_roles": {
                        "keyids": [bins.keyid()], "threshold": 1, "bit_length": 3, "name_prefix": "bin"}})),
                ),
                &[&hashed],
            ),
        ),
    ]);
    let succinct = seal_tuf::tuf1::SuccinctRoles {
        keys: seal_tuf::tuf1::metadata::RoleKeys {
            keyids: vec![],
            threshold: 1,
        },
        bit_length: 3,
        name_prefix: "bin".into(),
    };
    let bin_name = succinct.role_for_target(bin_path);
    for name in succinct.role_names() {
        let files = if name == bin_name {
            json!({bin_path: target_entry(b"binned")})
        } else {
            json!({})
        };
        targets.insert(name.clone(), signed(targets_json(1, EXPIRES, files, None), &[&bins]));
    }
    let mut repo = Repo::new(keys, targets);
    repo.root = root2.clone();
    repo.snapshot.clear();
    repo.timestamp.clear();
    repo.publish(EXPIRES);

    std::fs::write(dir.join("1.root.json"), &root1).unwrap();
    std::fs::write(dir.join("2.root.json"), &root2).unwrap();
    std::fs::write(dir.join("timestamp.json"), &repo.timestamp).unwrap();
    std::fs::write(dir.join("snapshot.json"), &repo.snapshot).unwrap();
    for (name, bytes) in &repo.targets {
        std::fs::write(dir.join(format!("{name}.json")), bytes).unwrap();
    }
    bin_name
}

#[test]
fn python_tuf_verifies_what_seal_signs() {
    let Some(py) = python() else {
        return;
    };
    let dir = TempDir(std::env::temp_dir().join(format!(
        "seal-tuf1-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    )));
    std::fs::create_dir_all(&dir.0).unwrap();
    let bin = write_repo(&dir.0);
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/tuf1/verify_with_python_tuf.py");
    for (target, role) in [
        ("top.txt", "targets"),
        ("rel/app.tgz", "rel"),
        ("h/pkg-1.0.tar.gz", bin.as_str()),
    ] {
        let out = Command::new(&py)
            .arg(&script)
            .arg(&dir.0)
            .arg(target)
            .arg(role)
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "python-tuf refused seal-tuf's repository for {target}:\n{stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(stdout.starts_with(&format!("ok {role}")), "{stdout}");
        if role == "rel" {
            assert!(
                stdout.contains(r#""a\u2028b \"q\" \\ \n \u00e9""#),
                "custom survives: {stdout}"
            );
        }
    }
    // Negative control: a timestamp whose signature lost its last byte's
    // value is refused by python-tuf, so the checks above can fail.
    let ts = std::fs::read_to_string(dir.0.join("timestamp.json")).unwrap();
    let at = ts.find("\"sig\":\"").unwrap() + 7;
    let end = at + ts[at..].find('"').unwrap();
    let last = &ts[end - 2..end];
    let flipped = if last == "00" { "01" } else { "00" };
    let tampered = format!("{}{}{}", &ts[..end - 2], flipped, &ts[end..]);
    std::fs::write(dir.0.join("timestamp.json"), tampered).unwrap();
    let out = Command::new(&py)
        .arg(&script)
        .arg(&dir.0)
        .arg("top.txt")
        .arg("targets")
        .output()
        .unwrap();
    assert!(!out.status.success(), "python-tuf accepted a tampered timestamp");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("UnsignedMetadataError"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
