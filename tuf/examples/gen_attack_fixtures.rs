//! Writes the adversarial fixtures under `fixtures/tuf-attacks/`: one
//! trusted base collection and, per attack, the files an attacker would
//! serve or upload. Run once and commit the output:
//!
//! ```sh
//! cargo run -p seal-tuf --features testing --example gen_attack_fixtures -- fixtures/tuf-attacks
//! ```
//!
//! The keys are fresh on every run; the files are made at
//! 2026-11-22T00:00:00Z and tests verify them at 2026-11-22T12:00:00Z.

use std::path::{Path, PathBuf};

use seal_tuf::cjson::Value;
use seal_tuf::generate::sign;
use seal_tuf::keys::PrivateKey;
use seal_tuf::metadata::{SignedFile, Timestamp, MAX_VERSION};
use seal_tuf::testing::{RootKey, TestRepo};
use time::macros::datetime;
use time::Duration;

const GUN: &str = "example.com/attacks/app";

fn write(dir: &Path, name: &str, bytes: &[u8]) {
    let path = dir.join(name);
    std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
    std::fs::write(&path, bytes).expect("write");
}

/// Replaces the `signed` value of a file and re-signs it with `keys`.
fn resign(role: &str, signed: Value, keys: &[(&PrivateKey, &str)]) -> Vec<u8> {
    sign(role, signed, keys).into_bytes()
}

fn set(v: &Value, key: &str, new: Value) -> Value {
    let mut m = v.as_object().expect("object").clone();
    m.insert(key.to_owned(), new);
    Value::Object(m)
}

fn main() {
    let out = PathBuf::from(std::env::args().nth(1).unwrap_or_else(|| "fixtures/tuf-attacks".into()));
    let now = datetime!(2026-11-22 00:00:00 UTC);
    let mut repo = TestRepo::new(GUN, now);
    // Two root keys with threshold 2, so that one compromised key is below threshold.
    repo.root_keys
        .push(RootKey::new(GUN, now - Duration::hours(1), now + Duration::days(3650)));
    repo.root_threshold = 2;
    repo.delegate("targets/releases", &["releases/"]);

    let app = b"the real application\n".as_slice();
    let other = b"some other trusted file\n".as_slice();
    let rel = b"release 1.0\n".as_slice();
    let base = out.join("base");
    let root = repo.root_file(1);
    let targets = repo.targets_file(2, &[("app", app), ("other", other)]);
    let releases = repo.delegation_file("targets/releases", 1, &[("releases/1.0", rel)]);
    let snapshot = repo.snapshot_file(
        2,
        &[("root", &root), ("targets", &targets), ("targets/releases", &releases)],
    );
    let timestamp = repo.timestamp_file(2, &snapshot);
    write(&base, "root.json", &root);
    write(&base, "targets.json", &targets);
    write(&base, "targets/releases.json", &releases);
    write(&base, "snapshot.json", &snapshot);
    write(&base, "timestamp.json", &timestamp);
    write(&base, "app", app);
    write(&base, "other", other);
    write(
        &base,
        "timestamp.key",
        &repo.timestamp.public_key().to_notary_key_json(),
    );

    let ts_key = (&repo.timestamp, repo.timestamp.public_key().id().to_owned());
    let ts_keys = [(ts_key.0, ts_key.1.as_str())];
    let attacker = PrivateKey::generate_ed25519(&mut rand::rngs::OsRng);
    let attacker_id = attacker.public_key().id().to_owned();

    // Arbitrary installation: a mirror serves other bytes for "app".
    write(&out, "arbitrary-installation/app", b"malware\n");

    // Endless data: a snapshot padded beyond the length the timestamp vouches
    // for, and a validly signed timestamp padded beyond a 64 KiB limit.
    let mut endless = snapshot.clone();
    endless.extend(std::iter::repeat_n(b' ', 70_000));
    write(&out, "endless-data/snapshot.json", &endless);
    let mut endless_ts = timestamp.clone();
    endless_ts.extend(std::iter::repeat_n(b' ', 70_000));
    write(&out, "endless-data/timestamp.json", &endless_ts);

    // Extraneous dependencies: the releases delegation signs a target outside "releases/".
    let evil = repo.delegation_file(
        "targets/releases",
        2,
        &[("releases/1.0", rel), ("tools/compiler", b"backdoored compiler\n")],
    );
    let evil_snapshot = repo.snapshot_file(
        3,
        &[("root", &root), ("targets", &targets), ("targets/releases", &evil)],
    );
    write(&out, "extraneous-dependencies/targets/releases.json", &evil);
    write(&out, "extraneous-dependencies/snapshot.json", &evil_snapshot);
    write(
        &out,
        "extraneous-dependencies/timestamp.json",
        &repo.timestamp_file(3, &evil_snapshot),
    );

    // Fast-forward: a timestamp at the integer maximum, signed by the (compromised) timestamp key.
    let ts = SignedFile::parse("timestamp", timestamp.clone()).expect("timestamp");
    let ff = set(ts.signed(), "version", Value::Int((MAX_VERSION + 1).into()));
    write(&out, "fast-forward/timestamp.json", &resign("timestamp", ff, &ts_keys));
    // and targets at the maximum Seal accepts, so the next version would overflow Go's int64.
    let t = SignedFile::parse("targets", targets.clone()).expect("targets");
    let ff_t = set(t.signed(), "version", Value::Int(u64::MAX.into()));
    let tk = (&repo.targets, repo.targets.public_key().id().to_owned());
    write(
        &out,
        "fast-forward/targets.json",
        &resign("targets", ff_t, &[(tk.0, tk.1.as_str())]),
    );

    // Indefinite freeze: a correctly signed timestamp that has expired.
    let expired = Timestamp {
        version: 3,
        expires: now + Duration::hours(6),
        meta: Timestamp::from_signed(ts.signed()).expect("ts").meta,
    };
    write(
        &out,
        "indefinite-freeze/timestamp.json",
        &resign("timestamp", expired.to_value(), &ts_keys),
    );

    // Malicious mirror: a newer timestamp signed by a key the root does not list.
    let mirror = set(ts.signed(), "version", Value::Int(3));
    write(
        &out,
        "malicious-mirror/timestamp.json",
        &resign("timestamp", mirror.clone(), &[(&attacker, attacker_id.as_str())]),
    );
    // The same, claiming the trusted timestamp key's ID.
    write(
        &out,
        "malicious-mirror/timestamp-forged-keyid.json",
        &resign("timestamp", mirror, &[(&attacker, ts_key.1.as_str())]),
    );

    // Mix-and-match: targets of a later state served with the base snapshot.
    write(
        &out,
        "mix-and-match/targets.json",
        &repo.targets_file(3, &[("app", b"app 2.0\n")]),
    );

    // Rollback: an older, still valid timestamp and snapshot.
    let old_snapshot = repo.snapshot_file(1, &[("root", &root), ("targets", &targets)]);
    write(&out, "rollback/snapshot.json", &old_snapshot);
    write(&out, "rollback/timestamp.json", &repo.timestamp_file(1, &old_snapshot));

    // Key compromise below threshold: root v2 (with the attacker's timestamp key) signed by one of two root keys.
    let mut r2 = repo.root(2);
    let apk = attacker.public_key();
    r2.roles.get_mut("timestamp").expect("ts role").keyids = vec![apk.id().to_owned()];
    r2.keys.insert(apk.id().to_owned(), apk);
    let one = [(&repo.root_keys[0].private, repo.root_keys[0].public.id())];
    write(
        &out,
        "key-compromise-below-threshold/root.json",
        &resign("root", r2.to_value(), &one),
    );

    // Wrong software: the bytes of the trusted target "other" offered as "app".
    write(&out, "wrong-software/app", other);

    // NCC 2015: the signature's method field claims another algorithm than the key's type.
    let mut bad_method = SignedFile::parse("targets", targets.clone())
        .expect("targets")
        .signatures()[0]
        .clone();
    bad_method.method = "eddsa".into();
    let f = SignedFile::assemble("targets", t.signed().clone(), vec![bad_method]);
    write(&out, "method-mismatch/targets.json", f.bytes());

    // NCC 2015: an expired root must not extend a freeze.
    let mut expired_root = repo.root(1);
    expired_root.expires = now + Duration::hours(6);
    write(&out, "expired-root/root.json", &repo.sign_root(expired_root.to_value()));

    // Cure53 TUF-01-001: a duplicated field ("version" twice) in signed targets.
    let text = String::from_utf8(targets.clone()).expect("utf8");
    let dup = text.replacen("\"version\":2", "\"version\":2,\"version\":9", 1);
    write(&out, "duplicate-fields/targets.json", dup.as_bytes());

    // Cure53 TUF-01-002 is the fast-forward case above.
    println!("wrote {}", out.display());
}
