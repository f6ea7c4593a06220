//! The reverse direction of tuf1_python_fixtures: a repository signed by
//! seal-tuf (Ed25519 and DER ECDSA signatures, files written by
//! `tuf1::metadata::sign`, snapshot and timestamp made by `tuf1::repo`) is
//! verified by python-tuf 7.0.1's own client state machine.
//!
//! Runs when `SEAL_TUF_VENV` names a virtualenv with `tuf==7.0.1`
//! installed (see tests/tuf1/make_fixtures.py); otherwise it prints why it
//! is skipped and passes.

mod tuf1_support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::json;
use tuf1_support::*;

fn python() -> Option<PathBuf> {
    let venv = std::env::var_os("SEAL_TUF_VENV")?;
    let py = Path::new(&venv).join("bin/python");
    py.exists().then_some(py)
}

#[test]
fn encodings_and_matching_rules_match_python_tuf() {
    use std::io::Write;
    let Some(py) = python() else {
        eprintln!("skipped: set SEAL_TUF_VENV to a virtualenv with tuf==7.0.1 to compare with securesystemslib");
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
        eprintln!(
            "skipped: set SEAL_TUF_VENV to a virtualenv with tuf==7.0.1 to run python-tuf against seal-tuf's output"
        );
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
