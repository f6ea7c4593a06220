//! `seal-signer backup` of a running signer and `seal-signer restore` into
//! a new data directory, as real processes: the restored signer signs with
//! a restored software key (same passphrase) and still refuses a rollback
//! below the high-water mark the backup carried; and the refusals (an
//! existing out directory, a data directory with no store, a restore over
//! an existing store, a directory that is not a backup), each one line,
//! exit 1, nothing written.

mod common;

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

use common::{client, timestamp};
use seal_signer::client::ClientError;
use seal_signer::testing::{spawn_signer, TestPki};

const PASSPHRASE: &str = "a signer passphrase for tests";

fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_seal-signer"))
}

fn seal_signer(args: &[&dyn AsRef<std::ffi::OsStr>]) -> Output {
    std::process::Command::new(bin())
        .args(args.iter().map(|a| a.as_ref()))
        .output()
        .expect("run seal-signer")
}

/// Asserts `out` is a failure (exit 1) with one line on stderr containing
/// `needle`, and nothing on stdout.
fn assert_refused(out: &Output, needle: &str) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "stderr: {stderr}");
    assert_eq!(stderr.trim_end().lines().count(), 1, "one line: {stderr}");
    assert!(stderr.contains(needle), "{needle:?} in {stderr}");
    assert!(out.stdout.is_empty(), "{}", String::from_utf8_lossy(&out.stdout));
}

fn write_config(dir: &Path, name: &str, pki: &TestPki, data: &Path) -> PathBuf {
    let (cert, key) = pki.leaf("signer");
    let config = dir.join(format!("{name}.json"));
    std::fs::write(
        &config,
        serde_json::json!({
            "server": {"grpc_addr": "127.0.0.1:0", "tls_cert_file": cert, "tls_key_file": key,
                       "client_ca_file": pki.ca_file(), "allowed_client_names": ["node*"]},
            "storage": {"data_dir": data},
            "default_alias": "main",
            // Bare timestamps stand for a Notary server as client.
            "policy": {"notary_compat": true},
        })
        .to_string(),
    )
    .unwrap();
    config
}

fn listing(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(listing(&p));
        } else {
            out.push((p.clone(), std::fs::read(&p).unwrap()));
        }
    }
    out.sort();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_running_signer_backed_up_and_restored_signs_and_refuses_rollbacks() {
    let dir = tempfile::tempdir().unwrap();
    let pki = TestPki::new(dir.path(), "seal");
    let (node_cert, node_key) = pki.leaf("node");
    let ca = pki.ca_file();
    let data = dir.path().join("data");
    let config = write_config(dir.path(), "signer", &pki, &data);

    // A running signer holding two keys, one of which has signed (so it
    // has a high-water mark at version 3).
    let (_signer, port) = spawn_signer(bin(), &config, PASSPHRASE);
    let c = client(port, &ca, &node_cert, &node_key, Duration::from_secs(10));
    let gun = "example.com/app";
    let ts_key = c.create_key("ecdsa", gun, "timestamp").await.unwrap();
    c.create_key("ed25519", gun, "snapshot").await.unwrap();
    for v in 1..=3 {
        c.sign(&ts_key.key_id, &timestamp(v, time::Duration::days(14)), None, None)
            .await
            .unwrap();
    }

    // Backed up while it runs: it holds the database's lock, which an
    // ordinary open would need.
    assert!(
        seal_signer::store::Store::open(&data).is_err(),
        "the running signer holds the lock"
    );
    let backup = dir.path().join("backup");
    let out = seal_signer(&[&"backup", &"--config", &config, &"--out", &backup]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(
        stdout.contains("2 keys (2 software) and 1 high-water marks"),
        "{stdout}"
    );
    assert!(stdout.contains("aliases main"), "{stdout}");
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(backup.join("backup.json")).unwrap()).unwrap();
    assert_eq!(manifest["format"], "seal-signer-backup-v1");
    assert_eq!(
        (&manifest["keys"], &manifest["high_water_marks"], &manifest["backends"]),
        (
            &serde_json::json!(2),
            &serde_json::json!(1),
            &serde_json::json!({"software": 2})
        )
    );
    // The signer goes on signing after the backup.
    c.sign(&ts_key.key_id, &timestamp(4, time::Duration::days(14)), None, None)
        .await
        .unwrap();

    // Backups taken while the signer signs and syncs its marks are whole:
    // each opens and holds both keys and the one mark.
    let signing = {
        let (c, key_id) = (c.clone(), ts_key.key_id.clone());
        tokio::spawn(async move {
            for v in 5..=40 {
                c.sign(&key_id, &timestamp(v, time::Duration::days(14)), None, None)
                    .await
                    .unwrap();
            }
        })
    };
    for i in 0..3 {
        let during = dir.path().join(format!("during-{i}"));
        let out = tokio::task::spawn_blocking({
            let (config, during) = (config.clone(), during.clone());
            move || seal_signer(&[&"backup", &"--config", &config, &"--out", &during])
        })
        .await
        .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let m: serde_json::Value = serde_json::from_slice(&std::fs::read(during.join("backup.json")).unwrap()).unwrap();
        assert_eq!(
            (&m["keys"], &m["high_water_marks"]),
            (&serde_json::json!(2), &serde_json::json!(1))
        );
    }
    signing.await.unwrap();

    // Refusals of backup: an existing out directory (left as it was), a
    // data directory with no store (no out directory made).
    let before = listing(&backup);
    let again = seal_signer(&[&"backup", &"--config", &config, &"--out", &backup]);
    assert_refused(&again, "already exists");
    assert_eq!(listing(&backup), before, "an existing out directory is left as it was");
    let empty_config = write_config(dir.path(), "empty", &pki, &dir.path().join("no-store"));
    let nowhere = dir.path().join("backup-of-nothing");
    let out = seal_signer(&[&"backup", &"--config", &empty_config, &"--out", &nowhere]);
    assert_refused(&out, "no signer store here");
    assert!(!nowhere.exists());

    // Restored into a new data directory.
    let restored_data = dir.path().join("restored");
    let restored_config = write_config(dir.path(), "restored", &pki, &restored_data);
    let out = seal_signer(&[&"restore", &"--from", &backup, &"--config", &restored_config]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("2 keys (2 software)"));
    assert!(!dir.path().join("restored.restoring").exists());

    // Refusals of restore: over an existing store (unchanged), from a
    // directory that is not a backup (nothing made).
    let before = listing(&restored_data);
    let out = seal_signer(&[&"restore", &"--from", &backup, &"--config", &restored_config]);
    assert_refused(&out, "a signer store is already there");
    assert_eq!(listing(&restored_data), before);
    let third_data = dir.path().join("third");
    let third_config = write_config(dir.path(), "third", &pki, &third_data);
    for not_a_backup in [data.clone(), dir.path().join("missing"), backup.join("db")] {
        let out = seal_signer(&[&"restore", &"--from", &not_a_backup, &"--config", &third_config]);
        assert_refused(&out, "not a seal-signer backup");
        assert!(!third_data.exists());
        assert!(!dir.path().join("third.restoring").exists());
    }
    let bad_manifest = dir.path().join("bad-manifest");
    std::fs::create_dir(&bad_manifest).unwrap();
    let copy = seal_signer(&[&"backup", &"--config", &config, &"--out", &bad_manifest.join("b")]);
    assert!(copy.status.success());
    std::fs::write(bad_manifest.join("b/backup.json"), b"{\"format\": \"something else\"}").unwrap();
    let out = seal_signer(&[
        &"restore",
        &"--from",
        &bad_manifest.join("b"),
        &"--config",
        &third_config,
    ]);
    assert_refused(&out, "not a seal-signer backup");
    assert!(!third_data.exists());

    // A signer on the restored store: the key is there, a rollback to the
    // backed-up mark is refused, the next version is signed and verifies.
    let (_restored, port) = spawn_signer(bin(), &restored_config, PASSPHRASE);
    let r = client(port, &ca, &node_cert, &node_key, Duration::from_secs(10));
    let info = r.get_key_info(&ts_key.key_id).await.unwrap();
    assert_eq!(info.public, ts_key.public);
    match r
        .sign(&ts_key.key_id, &timestamp(3, time::Duration::days(14)), None, None)
        .await
    {
        Err(ClientError::Refused { message, high_water }) => {
            assert!(message.contains("not above"), "{message}");
            assert_eq!(high_water, Some(3));
        }
        other => panic!("a rollback to the backed-up mark must be refused, got {other:?}"),
    }
    let t5 = timestamp(5, time::Duration::days(14));
    let s = r.sign(&ts_key.key_id, &t5, None, None).await.unwrap();
    seal_tuf::PublicKey::new(seal_tuf::KeyType::Ecdsa, ts_key.public.clone())
        .unwrap()
        .verify("ecdsa", &t5, &s.signature)
        .unwrap();
}
