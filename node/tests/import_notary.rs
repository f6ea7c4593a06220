//! `seal-node import-notary` against real databases in Notary's schema (MariaDB, PostgreSQL with
//! md5 and with SCRAM passwords) holding the real Notary v0.7.0 fixtures' metadata: every row
//! read and verified, a row whose data does not match its sha256 named and its collection left
//! out, a soft-deleted row skipped, a deleted collection kept as its changefeed; then the same
//! database imported into a running three-node cluster through the `seal-node` binary, served
//! byte for byte by every node (current, by checksum, by version, changefeed with Notary's
//! times), and imported again as a no-op.

mod common;

use std::path::Path;
use std::process::Command;

use common::cluster::*;
use seal_node::import::{run, ImportOptions};
use seal_raft::ClusterTls;
use seal_testkit::db::{DbServer, Kind, SERVER_SCHEMA_MYSQL, SERVER_SCHEMA_POSTGRES};
use seal_testkit::process::run_to_end;
use sha2::{Digest as _, Sha256};

const APP: &str = "example.com/interop/app";
const GONE: &str = "example.com/interop/gone";
const BAD: &str = "example.com/interop/bad";

fn sha(b: &[u8]) -> String {
    hex::encode(Sha256::digest(b))
}

/// The fixture files the Notary database holds: (role, version, bytes).
fn fixture_files(fixtures: &Path) -> Vec<(String, i64, Vec<u8>)> {
    let dir = fixtures.join("metadata/example.com_interop_app");
    let read = |p: &str| std::fs::read(dir.join(p)).unwrap();
    vec![
        ("root".into(), 1, read("1-after-first-publish/root.json")),
        ("targets".into(), 2, read("1-after-first-publish/targets.json")),
        ("snapshot".into(), 2, read("1-after-first-publish/snapshot.json")),
        ("timestamp".into(), 1, read("1-after-first-publish/timestamp.json")),
        ("root".into(), 2, read("2-final/root.json")),
        ("targets".into(), 4, read("2-final/targets.json")),
        ("targets/releases".into(), 2, read("2-final/targets/releases.json")),
        ("snapshot".into(), 7, read("2-final/snapshot.json")),
        ("timestamp".into(), 6, read("2-final/timestamp.json")),
    ]
}

/// The changefeed times the fixtures record for timestamp versions 1 and 6 (to the microsecond,
/// as PostgreSQL keeps them; MySQL keeps whole seconds).
const TIMES: [(i64, &str); 2] = [(1, "2026-11-21 23:54:56.210447"), (6, "2026-11-21 23:54:56.635914")];

/// Fills a Notary server database: the fixture collection, the same collection under another
/// GUN with one row's data altered, a soft-deleted row, and a collection deleted in Notary
/// (its rows hard-deleted, its changefeed ending in a deletion record).
async fn fill(url: &str, kind: Kind, fixtures: &Path) {
    use sqlx::Executor as _;
    let files = fixture_files(fixtures);
    let (file_sql, change_sql) = match kind {
        Kind::MariaDb => (
            "INSERT INTO tuf_files (created_at, updated_at, deleted_at, gun, role, version, data, sha256) \
             VALUES (CAST(? AS DATETIME(6)), CAST(? AS DATETIME(6)), CAST(? AS DATETIME(6)), ?, ?, ?, ?, ?)",
            "INSERT INTO changefeed (created_at, gun, version, sha256, category) \
             VALUES (CAST(? AS DATETIME(6)), ?, ?, ?, ?)",
        ),
        Kind::Postgres => (
            "INSERT INTO tuf_files (created_at, updated_at, deleted_at, gun, role, version, data, sha256) \
             VALUES (CAST($1 AS TIMESTAMP), CAST($2 AS TIMESTAMP), CAST($3 AS TIMESTAMP), $4, $5, $6, $7, $8)",
            "INSERT INTO changefeed (created_at, gun, version, sha256, category) \
             VALUES (CAST($1 AS TIMESTAMP), $2, $3, $4, $5)",
        ),
    };
    macro_rules! fill_with {
        ($pool:expr) => {{
            let pool = $pool;
            let at = "2026-11-21 23:54:56";
            for gun in [APP, BAD] {
                for (role, version, data) in &files {
                    let mut stored = data.clone();
                    let sum = sha(data);
                    if gun == BAD && role == "targets" && *version == 4 {
                        // The data no longer matches its sha256 column.
                        let n = stored.len();
                        stored[n - 3] ^= 1;
                    }
                    sqlx::query(file_sql)
                        .bind(at)
                        .bind(at)
                        .bind(None::<String>)
                        .bind(gun)
                        .bind(role)
                        .bind(*version as i32)
                        .bind(stored)
                        .bind(sum)
                        .execute(&pool)
                        .await
                        .unwrap();
                }
                for (version, time) in TIMES {
                    let ts = &files.iter().find(|f| f.0 == "timestamp" && f.1 == version).unwrap().2;
                    sqlx::query(change_sql)
                        .bind(time)
                        .bind(gun)
                        .bind(version as i32)
                        .bind(sha(ts))
                        .bind("update")
                        .execute(&pool)
                        .await
                        .unwrap();
                }
            }
            // A row Notary soft-deleted: never served, never imported.
            sqlx::query(file_sql)
                .bind(at)
                .bind(at)
                .bind(Some(at))
                .bind(APP)
                .bind("timestamp")
                .bind(99i32)
                .bind(b"not metadata".to_vec())
                .bind(sha(b"not metadata"))
                .execute(&pool)
                .await
                .unwrap();
            // A collection deleted in Notary: only its changefeed remains.
            for (version, sum, category) in [(1i32, "ab".repeat(32), "update"), (0, String::new(), "deletion")] {
                sqlx::query(change_sql)
                    .bind("2026-11-22 08:00:00.5")
                    .bind(GONE)
                    .bind(version)
                    .bind(sum)
                    .bind(category)
                    .execute(&pool)
                    .await
                    .unwrap();
            }
            pool.close().await;
        }};
    }
    match kind {
        Kind::MariaDb => {
            let pool = sqlx::mysql::MySqlPoolOptions::new().connect(url).await.unwrap();
            pool.execute("SET time_zone = '+00:00'").await.unwrap();
            fill_with!(pool)
        }
        Kind::Postgres => fill_with!(sqlx::postgres::PgPoolOptions::new().connect(url).await.unwrap()),
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Runtime::new().unwrap()
}

/// A database of each kind, filled: MariaDB, and PostgreSQL with an md5 and a SCRAM login
/// (two databases in one server).
fn databases(fixtures: &Path) -> Vec<(DbServer, Vec<String>, &'static str)> {
    let mut out = Vec::new();
    if let Some(db) = DbServer::mariadb() {
        // A password with a space, percent-encoded in the URL.
        let url = db
            .create_database("notaryserver", SERVER_SCHEMA_MYSQL, "server", "pw one", false)
            .replace("pw one", "pw%20one");
        runtime().block_on(fill(&url, Kind::MariaDb, fixtures));
        out.push((db, vec![url], "mariadb"));
    }
    if let Some(db) = DbServer::postgres() {
        let md5 = db.create_database("notary_md5", SERVER_SCHEMA_POSTGRES, "server_md5", "pw1", false);
        let scram = db.create_database("notary_scram", SERVER_SCHEMA_POSTGRES, "server_scram", "pw2", true);
        // The md5 user really logs in by md5 and the other by SCRAM.
        let kinds = db.sql(
            "SELECT rolname, left(rolpassword, 5) FROM pg_authid WHERE rolname LIKE 'server_%' ORDER BY 1",
            None,
        );
        assert!(
            kinds.contains("server_md5   | md5") && kinds.contains("server_scram | SCRAM"),
            "{kinds}"
        );
        for url in [&md5, &scram] {
            runtime().block_on(fill(url, Kind::Postgres, fixtures));
        }
        out.push((db, vec![md5, scram], "postgres"));
    }
    out
}

#[test]
fn every_row_is_read_and_verified_and_the_bad_one_is_named() {
    let Some(fixtures) = seal_testkit::notary_fixtures() else {
        return;
    };
    for (db, urls, name) in databases(&fixtures) {
        for url in &urls {
            let opts = ImportOptions {
                database_url: url.to_owned(),
                addr: String::new(),
                tls: ClusterTls {
                    ca_file: "".into(),
                    cert_file: "".into(),
                    key_file: "".into(),
                },
                concurrency: 4,
                check_only: true,
                local: None,
                progress: false,
            };
            let report = runtime()
                .block_on(run(&opts))
                .unwrap_or_else(|e| panic!("{name}: {e}\n{}", db.log()));
            let text = report.render();
            assert_eq!(report.collections, 3, "{name}: {text}");
            assert_eq!(report.verified, 2, "{name}: {text}");
            assert_eq!(report.soft_deleted_rows, 1, "{name}: {text}");
            // The fixture collection (9 files, 2 changes) and the deleted one (2 changes).
            assert_eq!((report.file_versions, report.changes), (9, 4), "{name}: {text}");
            assert_eq!(report.failed.len(), 1, "{name}: {text}");
            let (gun, problems) = &report.failed[0];
            assert_eq!(gun, BAD);
            assert!(
                problems
                    .iter()
                    .any(|p| p.contains("(targets version 4): data does not match its sha256")),
                "{name}: {problems:?}"
            );
            assert!(text.contains(&format!("FAILED {BAD}: {BAD}: tuf_files row")), "{text}");
        }
    }
}

#[test]
fn an_unreachable_database_or_a_wrong_password_is_one_clear_error() {
    let Some(db) = DbServer::postgres() else {
        return;
    };
    let url = db.create_database("notary", SERVER_SCHEMA_POSTGRES, "server", "right", true);
    let opts = |u: &str| ImportOptions {
        database_url: u.to_owned(),
        addr: String::new(),
        tls: ClusterTls {
            ca_file: "".into(),
            cert_file: "".into(),
            key_file: "".into(),
        },
        concurrency: 1,
        check_only: true,
        local: None,
        progress: false,
    };
    let e = runtime()
        .block_on(run(&opts(&url.replace("right", "wrong"))))
        .unwrap_err()
        .to_string();
    assert!(e.contains("connecting to PostgreSQL") && e.contains("password"), "{e}");
    let e = runtime().block_on(run(&opts("sqlite://x"))).unwrap_err().to_string();
    assert!(e.contains("expected mysql://"), "{e}");
}

fn import_cmd(tls: &Tls, addr: &str, url: &str) -> (i32, String, String) {
    run_to_end(
        Command::new(env!("CARGO_BIN_EXE_seal-node"))
            .args(["import-notary", "--addr", addr, "--ca"])
            .arg(&tls.ca)
            .arg("--cert")
            .arg(&tls.cert)
            .arg("--key")
            .arg(&tls.key)
            .env("SEAL_IMPORT_DATABASE_URL", url),
    )
}

#[test]
fn a_mariadb_notary_database_is_imported_into_a_running_cluster_and_again_as_a_no_op() {
    let Some(fixtures) = seal_testkit::notary_fixtures() else {
        return;
    };
    let Some(db) = DbServer::mariadb() else {
        return;
    };
    let url = db.create_database("notaryserver", SERVER_SCHEMA_MYSQL, "server", "pw", false);
    runtime().block_on(fill(&url, Kind::MariaDb, &fixtures));
    let _one = one_cluster_at_a_time();
    let cluster = start_cluster(0);
    let leader = eventually("a leader", || leader_of(&cluster.tls, &cluster.raft[0]));
    // Through a follower's address: the importer finds the leader.
    let follower = &cluster.raft[if leader == 1 { 1 } else { 0 }];
    let (code, out, err) = import_cmd(&cluster.tls, follower, &url);
    assert_eq!(code, 1, "one collection fails, the others are imported\n{out}\n{err}");
    for line in [
        "collections: 3",
        "imported: 2",
        "already imported: 0",
        "failed: 1",
        "file versions: 9",
        "changefeed records: 4",
        "soft-deleted rows skipped: 1",
    ] {
        assert!(out.contains(line), "{line:?} missing:\n{out}");
    }
    assert!(out.contains(&format!("FAILED {BAD}")), "{out}");
    // The fixture's timestamp key lived in Notary's memory: the signer cannot hold it.
    assert!(
        out.contains(&format!("WARNING {APP}: the signer holds none of the timestamp keys")),
        "{out}"
    );
    assert!(
        err.contains("import-notary: 3/3 collections"),
        "progress on stderr: {err}"
    );

    let files = fixture_files(&fixtures);
    for node in &cluster.nodes {
        // A follower applies the commands shortly after the leader answered.
        eventually(&format!("{} applied the import", node.addr), || {
            let feed = node.get(&format!("/v2/{GONE}/_trust/changefeed?change_id=0&records=10"));
            let feed: serde_json::Value = serde_json::from_slice(&feed.body).ok()?;
            (feed["records"].as_array()?.len() == 2 && node.get(&tuf(APP, "root.json")).status == 200).then_some(())
        });
        for (role, version, bytes) in &files {
            let by_sum = node.get(&tuf(APP, &format!("{role}.{}.json", sha(bytes))));
            assert_eq!(
                (by_sum.status, &by_sum.body),
                (200, bytes),
                "{role} by checksum on {}",
                node.addr
            );
            let by_version = node.get(&tuf(APP, &format!("{version}.{role}.json")));
            assert_eq!(
                (by_version.status, &by_version.body),
                (200, bytes),
                "{version}.{role} on {}",
                node.addr
            );
        }
        for role in ["root", "targets", "snapshot", "targets/releases"] {
            let current = node.get(&tuf(APP, &format!("{role}.json")));
            let want = files.iter().filter(|f| f.0 == role).max_by_key(|f| f.1).unwrap();
            assert_eq!(
                (current.status, &current.body),
                (200, &want.2),
                "current {role} on {}",
                node.addr
            );
        }
        // Nothing of the collection that failed.
        assert_eq!(node.get(&tuf(BAD, "root.json")).status, 404);
        let feed = node.get(&format!("/v2/{APP}/_trust/changefeed?change_id=0&records=10"));
        let feed: serde_json::Value = serde_json::from_slice(&feed.body).unwrap();
        let times: Vec<&str> = feed["records"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["CreatedAt"].as_str().unwrap())
            .collect();
        // MySQL keeps whole seconds.
        assert_eq!(times, ["2026-11-21T23:54:56Z", "2026-11-21T23:54:56Z"], "{feed}");
        let gone = node.get(&format!("/v2/{GONE}/_trust/changefeed?change_id=0&records=10"));
        let gone: serde_json::Value = serde_json::from_slice(&gone.body).unwrap();
        assert_eq!(gone["records"][1]["Category"], "deletion", "{gone}");
        assert_eq!(gone["records"][1]["Version"], 0, "{gone}");
        assert_eq!(gone["records"][1]["SHA256"], "", "{gone}");
        assert_eq!(node.get(&tuf(GONE, "root.json")).status, 404);
    }

    // Every node holds the same state; running the import again adds nothing.
    let digest = |addr: &str| -> String {
        let (ok, out, err) = cluster_cmd(&cluster.tls, addr, &["status", "--digest"]);
        assert!(ok, "{err}");
        out.lines()
            .find_map(|l| l.strip_prefix("state digest: "))
            .unwrap()
            .to_owned()
    };
    eventually("every node at the same state digest", || {
        let d: Vec<String> = cluster.raft.iter().map(|a| digest(a)).collect();
        d.iter().all(|x| x == &d[0]).then_some(())
    });
    // Again, with the database named as Notary's own config names it (a Go MySQL DSN).
    let (creds, rest) = url.trim_start_matches("mysql://").split_once('@').unwrap();
    let (host, db_name) = rest.split_once('/').unwrap();
    let dsn = format!("{creds}@tcp({host})/{db_name}?parseTime=True");
    let (code, out, err) = import_cmd(&cluster.tls, &cluster.raft[0], &dsn);
    assert_eq!(code, 1, "{out}\n{err}");
    assert!(out.contains("imported: 0\nalready imported: 2"), "{out}");
    for node in &cluster.nodes {
        let feed = node.get(&format!("/v2/{APP}/_trust/changefeed?change_id=0&records=10"));
        let feed: serde_json::Value = serde_json::from_slice(&feed.body).unwrap();
        assert_eq!(feed["records"].as_array().unwrap().len(), 2, "{feed}");
    }
}

// ----------------------------------------------------------------------------------------------
// End to end: notary-signer's keys and notary-server's collections into a 3-node cluster and its
// signer, then a trust directory that trusted the collections against Notary keeps working.

mod e2e {
    use std::path::{Path, PathBuf};
    use std::process::Command;

    use base64::Engine as _;
    use seal_signer::import::jwe::{self, Kdf};
    use seal_signer::testing::{spawn_signer, TestPki};
    use seal_testkit::db::{DbServer, Kind, SERVER_SCHEMA_MYSQL, SIGNER_SCHEMA_MYSQL};
    use seal_tuf::testing::{RootKey, TestRepo};
    use seal_tuf::{PrivateKey, SignedFile};
    use time::{Duration, OffsetDateTime};

    use super::common::cluster::*;
    use super::common::{signer_binary, Node};
    use super::{runtime, sha};

    pub const APP: &str = "e2e.example.com/app";
    pub const MANAGED: &str = "e2e.example.com/managed";
    pub const DELETED: &str = "e2e.example.com/deleted";

    /// Files of one collection as Notary stored them: (role, version, bytes).
    pub type Files = Vec<(String, i64, Vec<u8>)>;

    /// What the test made: the collections' files and keys.
    pub struct Made {
        pub app: TestRepo,
        pub app_files: Files,
        pub managed: TestRepo,
        pub managed_files: Files,
        /// (gun, key, role, alias, derivation) of notary-signer's rows.
        pub signer_keys: Vec<(&'static str, PrivateKey, &'static str, &'static str, Kdf)>,
    }

    fn f(role: &str, version: i64, bytes: &[u8]) -> (String, i64, Vec<u8>) {
        (role.to_owned(), version, bytes.to_vec())
    }

    /// APP: a client-held snapshot, a root rotation (the root key replaced, the new root signed
    /// by the old and the new key), a delegation; MANAGED: a server-managed snapshot.
    pub fn make() -> Made {
        let now = OffsetDateTime::now_utc();
        let mut rng = rand::rngs::OsRng;
        let mut app = TestRepo::new(APP, now);
        app.timestamp = PrivateKey::generate_ecdsa(&mut rng);
        let r1 = app.root_file(1);
        let t2 = app.targets_file(2, &[("v1", b"v1 content")]);
        let s2 = app.snapshot_file(2, &[("root", &r1), ("targets", &t2)]);
        let ts1 = app.timestamp_file(1, &s2);
        let old = app.root_keys.remove(0);
        app.root_keys
            .push(RootKey::new(APP, now - Duration::hours(1), now + Duration::days(3650)));
        let signed = app.root(2).to_value();
        app.root_keys.insert(0, old);
        let r2 = app.sign_root(signed);
        app.root_keys.remove(0);
        app.delegate("targets/releases", &[""]);
        let t3 = app.targets_file(3, &[("v1", b"v1 content")]);
        let rel1 = app.delegation_file("targets/releases", 1, &[("v2", b"v2 content")]);
        let s3 = app.snapshot_file(3, &[("root", &r2), ("targets", &t3), ("targets/releases", &rel1)]);
        let ts2 = app.timestamp_file(2, &s3);
        let app_files = vec![
            f("root", 1, &r1),
            f("targets", 2, &t2),
            f("snapshot", 2, &s2),
            f("timestamp", 1, &ts1),
            f("root", 2, &r2),
            f("targets", 3, &t3),
            f("targets/releases", 1, &rel1),
            f("snapshot", 3, &s3),
            f("timestamp", 2, &ts2),
        ];

        let managed = TestRepo::new(MANAGED, now);
        let r1 = managed.root_file(1);
        let t2 = managed.targets_file(2, &[("m1", b"m1 content")]);
        let s2 = managed.snapshot_file(2, &[("root", &r1), ("targets", &t2)]);
        let ts1 = managed.timestamp_file(1, &s2);
        let managed_files = vec![
            f("root", 1, &r1),
            f("targets", 2, &t2),
            f("snapshot", 2, &s2),
            f("timestamp", 1, &ts1),
        ];
        let signer_keys = vec![
            (APP, copy(&app.timestamp), "timestamp", "alpha", Kdf::Standard),
            (MANAGED, copy(&managed.timestamp), "timestamp", "alpha", Kdf::Go115),
            (MANAGED, copy(&managed.snapshot), "snapshot", "beta", Kdf::Go115),
        ];
        Made {
            app,
            app_files,
            managed,
            managed_files,
            signer_keys,
        }
    }

    fn copy(key: &PrivateKey) -> PrivateKey {
        PrivateKey::from_pkcs8_der(&key.to_pkcs8_der().unwrap()).unwrap()
    }

    fn plaintext(key: &PrivateKey) -> Vec<u8> {
        match key {
            PrivateKey::Ecdsa(_) => {
                use p256::pkcs8::DecodePrivateKey as _;
                let secret = p256::SecretKey::from_pkcs8_der(&key.to_pkcs8_der().unwrap()).unwrap();
                secret.to_sec1_der().unwrap().to_vec()
            }
            PrivateKey::Ed25519(k) => [k.to_bytes().as_slice(), k.verifying_key().as_bytes()].concat(),
        }
    }

    pub fn passphrase(alias: &str) -> String {
        format!("{alias} notary-signer passphrase")
    }

    /// notary-server's and notary-signer's databases in one MariaDB.
    pub async fn fill(server_url: &str, signer_url: &str, made: &Made) {
        let pool = sqlx::mysql::MySqlPoolOptions::new().connect(server_url).await.unwrap();
        for (gun, files) in [(APP, &made.app_files), (MANAGED, &made.managed_files)] {
            for (role, version, data) in files {
                sqlx::query(
                    "INSERT INTO tuf_files (created_at, updated_at, gun, role, version, data, sha256) \
                     VALUES (NOW(), NOW(), ?, ?, ?, ?, ?)",
                )
                .bind(gun)
                .bind(role)
                .bind(*version as i32)
                .bind(data.clone())
                .bind(sha(data))
                .execute(&pool)
                .await
                .unwrap();
                if role == "timestamp" {
                    sqlx::query("INSERT INTO changefeed (gun, version, sha256) VALUES (?, ?, ?)")
                        .bind(gun)
                        .bind(*version as i32)
                        .bind(sha(data))
                        .execute(&pool)
                        .await
                        .unwrap();
                }
            }
        }
        for (version, sum, category) in [(1i32, "cd".repeat(32), "update"), (0, String::new(), "deletion")] {
            sqlx::query("INSERT INTO changefeed (gun, version, sha256, category) VALUES (?, ?, ?, ?)")
                .bind(DELETED)
                .bind(version)
                .bind(sum)
                .bind(category)
                .execute(&pool)
                .await
                .unwrap();
        }
        pool.close().await;
        let pool = sqlx::mysql::MySqlPoolOptions::new().connect(signer_url).await.unwrap();
        for (gun, key, role, alias, kdf) in &made.signer_keys {
            let public = key.public_key();
            let jwe = jwe::encrypt(&plaintext(key), passphrase(alias).as_bytes(), *kdf).unwrap();
            sqlx::query(
                "INSERT INTO private_keys (created_at, key_id, encryption_alg, keywrap_alg, algorithm, \
                 passphrase_alias, public, private, gun, role) VALUES (NOW(), ?, 'A256GCM', 'PBES2-HS256+A128KW', \
                 ?, ?, ?, ?, ?, ?)",
            )
            .bind(public.id())
            .bind(public.key_type().as_str())
            .bind(*alias)
            .bind(public.public_bytes().to_vec())
            .bind(jwe.into_bytes())
            .bind(*gun)
            .bind(*role)
            .execute(&pool)
            .await
            .unwrap();
        }
        pool.close().await;
    }

    /// The `seal` client binary cargo built beside this test (`cargo build -p seal-client`).
    pub fn client_binary() -> Option<PathBuf> {
        let exe = std::env::current_exe().unwrap();
        let bin = exe.parent().and_then(Path::parent).unwrap().join("seal");
        if bin.exists() {
            Some(bin)
        } else {
            seal_testkit::skip(&format!(
                "{} is missing: cargo build -p seal-client --bins",
                bin.display()
            ));
            None
        }
    }

    /// A trust directory as Notary's CLI left it: each collection's metadata as it last
    /// verified it from Notary (APP before its root rotation), and the publisher's keys.
    pub fn trust_dir(dir: &Path, seal: &Path, made: &Made) {
        let pem = |key: &PrivateKey| {
            let b64 = base64::engine::general_purpose::STANDARD.encode(&*key.to_pkcs8_der().unwrap());
            let lines: Vec<&str> = b64
                .as_bytes()
                .chunks(64)
                .map(|c| std::str::from_utf8(c).unwrap())
                .collect();
            format!(
                "-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n",
                lines.join("\n")
            )
        };
        for (gun, files, upto) in [(APP, &made.app_files, 4), (MANAGED, &made.managed_files, 4)] {
            let meta = dir.join("tuf").join(gun).join("metadata");
            std::fs::create_dir_all(&meta).unwrap();
            for (role, _, bytes) in &files[..upto] {
                std::fs::write(meta.join(format!("{role}.json")), bytes).unwrap();
            }
        }
        for (gun, key, role) in [
            (APP, &made.app.targets, "targets"),
            (APP, &made.app.snapshot, "snapshot"),
            (MANAGED, &made.managed.targets, "targets"),
        ] {
            let file = dir.join(format!("{}-{role}.pem", gun.replace('/', "_")));
            std::fs::write(&file, pem(key)).unwrap();
            let out = client(seal, dir, "http://unused", &["key", "import", "-r", role, "-g", gun])
                .arg(&file)
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "key import: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            std::fs::remove_file(file).unwrap();
        }
    }

    pub fn client(seal: &Path, trust: &Path, server: &str, args: &[&str]) -> Command {
        let mut c = Command::new(seal);
        c.args(["-s", server, "-d"])
            .arg(trust)
            .args(args)
            .env("SEAL_TARGETS_PASSPHRASE", "publisher targets passphrase")
            .env("SEAL_SNAPSHOT_PASSPHRASE", "publisher snapshot passphrase")
            .env("SEAL_ROOT_PASSPHRASE", "publisher root passphrase");
        c
    }

    /// A 3-node cluster whose signer imported notary-signer's keys before it started.
    pub struct ImportedCluster {
        pub nodes: Vec<Node>,
        pub tls: Tls,
        pub raft: Vec<String>,
        pub signer_report: String,
        _signer: Signer,
        pub dir: tempfile::TempDir,
    }

    pub fn start(signer_url: &str) -> ImportedCluster {
        let dir = tempfile::tempdir().unwrap();
        let pki = TestPki::new(dir.path(), "cluster");
        let (node_cert, node_key) = pki.leaf("seal-node");
        let (cert, key) = pki.leaf("signer");
        let config = dir.path().join("signer.json");
        std::fs::write(
            &config,
            serde_json::json!({
                "server": {"grpc_addr": "127.0.0.1:0", "tls_cert_file": cert, "tls_key_file": key,
                           "client_ca_file": pki.ca_file(), "allowed_client_names": ["seal-node"]},
                "storage": {"data_dir": dir.path().join("signer-data")},
            })
            .to_string(),
        )
        .unwrap();
        let (code, signer_report, err) = seal_testkit::process::run_to_end(
            Command::new(signer_binary())
                .args(["import-notary", "--config"])
                .arg(&config)
                .env("SEAL_IMPORT_DATABASE_URL", signer_url)
                .env("SEAL_SIGNER_MAIN", "cluster test passphrase")
                .env("NOTARY_SIGNER_ALPHA", passphrase("alpha"))
                .env("NOTARY_SIGNER_BETA", passphrase("beta")),
        );
        assert_eq!(code, 0, "seal-signer import-notary: {signer_report}\n{err}");
        let (child, signer_port) = spawn_signer(&signer_binary(), &config, "cluster test passphrase");
        let tls = Tls {
            ca: pki.ca_file(),
            cert: node_cert,
            key: node_key,
            signer_port,
        };
        let raft: Vec<String> = (0..3).map(|_| format!("127.0.0.1:{}", free_port())).collect();
        let bootstrap: Vec<(u64, String)> = (1..=3).map(|i| (i as u64, raft[i - 1].clone())).collect();
        let mut nodes: Vec<Node> = (1..=3u64)
            .map(|i| spawn(dir.path(), &format!("n{i}"), config_for(i, &raft, &tls, &bootstrap)))
            .collect();
        for n in &mut nodes {
            eventually(&format!("{} healthy", n.addr), || {
                assert!(n.running(), "seal-node {} exited while starting", n.addr);
                healthy(n).then_some(())
            });
        }
        ImportedCluster {
            nodes,
            tls,
            raft,
            signer_report,
            _signer: Signer(child),
            dir,
        }
    }

    fn config_for(i: u64, raft: &[String], tls: &Tls, bootstrap: &[(u64, String)]) -> serde_json::Value {
        let mut json = config(i, &raft[i as usize - 1], tls, bootstrap);
        // The signer's first signature with each imported key decrypts it (600,000 PBES2
        // iterations): in a debug build on a loaded machine that can take longer than the
        // default 1 s attempt, which would fail the publish that needs it.
        json["trust_service"]["attempt_timeout_ms"] = 15_000.into();
        json["trust_service"]["call_timeout_ms"] = 30_000.into();
        json
    }

    pub fn databases(made: &Made) -> Option<(DbServer, String, String)> {
        let db = DbServer::mariadb()?;
        assert_eq!(db.kind, Kind::MariaDb);
        let server = db.create_database("notaryserver", SERVER_SCHEMA_MYSQL, "server", "server pw", false);
        let signer = db.create_database("notarysigner", SIGNER_SCHEMA_MYSQL, "signer", "signer pw", false);
        let (server, signer) = (server.replace(' ', "%20"), signer.replace(' ', "%20"));
        runtime().block_on(fill(&server, &signer, made));
        Some((db, server, signer))
    }

    /// The served file's signature is by `key` and verifies.
    pub fn signed_by(bytes: &[u8], role: &str, key: &PrivateKey) -> bool {
        let file = SignedFile::parse(role, bytes.to_vec()).unwrap();
        let public = key.public_key();
        seal_tuf::verify::verify_threshold(&file, &[&public], 1).is_ok()
    }
}

#[test]
fn a_notary_deployment_moves_to_a_cluster_and_its_clients_keep_working() {
    use e2e::*;
    let Some(seal) = client_binary() else {
        return;
    };
    let made = make();
    let Some((_db, server_url, signer_url)) = databases(&made) else {
        return;
    };
    let _one = one_cluster_at_a_time();
    let cluster = start(&signer_url);
    for line in [
        "keys imported: 3",
        "failed: 0",
        "standard PBES2",
        "Go 1.15 jose2go PBES2",
    ] {
        assert!(
            cluster.signer_report.contains(line),
            "{line:?}:\n{}",
            cluster.signer_report
        );
    }
    let (code, out, err) = import_cmd(&cluster.tls, &cluster.raft[2], &server_url);
    assert_eq!(code, 0, "{out}\n{err}");
    for line in ["collections: 3", "imported: 3", "failed: 0", "file versions: 13"] {
        assert!(out.contains(line), "{line:?}:\n{out}");
    }
    assert!(!out.contains("WARNING"), "{out}");

    for node in &cluster.nodes {
        eventually(&format!("{} applied the import", node.addr), || {
            (node.get(&tuf(APP, "root.json")).status == 200 && node.get(&tuf(MANAGED, "root.json")).status == 200)
                .then_some(())
        });
    }
    let trust = cluster.dir.path().join("trust");
    trust_dir(&trust, &seal, &made);
    let server = format!("http://{}", cluster.nodes[1].addr);
    let run = |args: &[&str], stdin: Option<&[u8]>| -> (bool, String, String) {
        let mut c = client(&seal, &trust, &server, args);
        c.stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        let mut child = c.spawn().unwrap();
        {
            use std::io::Write as _;
            let mut input = child.stdin.take().unwrap();
            input.write_all(stdin.unwrap_or_default()).unwrap();
        }
        let out = child.wait_with_output().unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let quiet = |what: &str, err: &str| {
        assert!(
            !err.to_lowercase().contains("warn"),
            "{what}: the client warned:\n{err}"
        );
    };

    // APP: the trust directory holds root v1; Seal serves the rotated root v2, a delegation.
    let (ok, out, err) = run(&["list", APP], None);
    assert!(ok, "list {APP}: {err}");
    quiet("list", &err);
    assert!(
        out.contains("v1") && out.contains("v2") && out.contains("targets/releases"),
        "{out}"
    );
    let (ok, out, err) = run(&["verify", APP, "v2"], Some(b"v2 content"));
    assert!(ok && out == "v2 content", "verify: {out} {err}");
    quiet("verify", &err);
    let (ok, _, err) = run(&["verify", APP, "v2"], Some(b"tampered"));
    assert!(!ok, "verify accepted other content: {err}");

    // A publish: the client signs targets and its snapshot; Seal's signer the next timestamp,
    // with the key imported from notary-signer.
    let content = cluster.dir.path().join("v3");
    std::fs::write(&content, b"v3 content").unwrap();
    let (ok, _, err) = run(&["add", APP, "v3", content.to_str().unwrap()], None);
    assert!(ok, "add: {err}");
    let (ok, _, err) = run(&["publish", APP], None);
    assert!(ok, "publish: {err}");
    quiet("publish", &err);
    for node in &cluster.nodes {
        let ts = eventually("the new timestamp everywhere", || {
            let r = node.get(&tuf(APP, "timestamp.json"));
            let v: serde_json::Value = serde_json::from_slice(&r.body).ok()?;
            (v["signed"]["version"] == 3).then_some(r.body)
        });
        assert!(
            signed_by(&ts, "timestamp", &made.app.timestamp),
            "timestamp not by the imported key"
        );
    }
    let (ok, out, err) = run(&["list", APP], None);
    assert!(ok && out.contains("v3"), "{out} {err}");

    // MANAGED: the server-managed snapshot and the timestamp are signed by imported keys.
    let content = cluster.dir.path().join("m2");
    std::fs::write(&content, b"m2 content").unwrap();
    let (ok, _, err) = run(&["add", MANAGED, "m2", content.to_str().unwrap()], None);
    assert!(ok, "add: {err}");
    let (ok, _, err) = run(&["publish", MANAGED], None);
    assert!(ok, "publish {MANAGED}: {err}");
    quiet("publish", &err);
    let node = &cluster.nodes[0];
    let snap = eventually("the new snapshot", || {
        let r = node.get(&tuf(MANAGED, "snapshot.json"));
        let v: serde_json::Value = serde_json::from_slice(&r.body).ok()?;
        (v["signed"]["version"] == 3).then_some(r.body)
    });
    assert!(signed_by(&snap, "snapshot", &made.managed.snapshot));
    let ts = node.get(&tuf(MANAGED, "timestamp.json")).body;
    assert!(signed_by(&ts, "timestamp", &made.managed.timestamp));
    let (ok, out, err) = run(&["list", MANAGED], None);
    assert!(ok && out.contains("m1") && out.contains("m2"), "{out} {err}");
    quiet("list", &err);

    // DELETED stays deleted.
    assert_eq!(node.get(&tuf(DELETED, "root.json")).status, 404);
    let feed = node.get(&format!("/v2/{DELETED}/_trust/changefeed?change_id=0&records=10"));
    let feed: serde_json::Value = serde_json::from_slice(&feed.body).unwrap();
    assert_eq!(feed["records"][1]["Category"], "deletion", "{feed}");
}

/// Import speed, for docs/benchmarks.md (not a timed test: it prints what it measured).
/// `cargo test -p seal-node --test import_notary -- --ignored --nocapture import_speed`
/// (`SEAL_IMPORT_BENCH_COLLECTIONS`, default 500, each 19 file versions).
#[test]
#[ignore]
fn import_speed() {
    use e2e::*;
    let Some(db) = DbServer::mariadb() else {
        return;
    };
    let n: usize = std::env::var("SEAL_IMPORT_BENCH_COLLECTIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(500);
    let server_url = db.create_database("notaryserver", SERVER_SCHEMA_MYSQL, "server", "pw", false);
    let signer_url = db.create_database(
        "notarysigner",
        seal_testkit::db::SIGNER_SCHEMA_MYSQL,
        "signer",
        "pw",
        false,
    );
    let now = time::OffsetDateTime::now_utc();
    let made = std::time::Instant::now();
    let mut rows: Vec<(String, String, i32, Vec<u8>)> = Vec::new();
    for c in 0..n {
        let gun = format!("bench.example.com/c{c:05}");
        let repo = seal_tuf::testing::TestRepo::new(&gun, now);
        let root = repo.root_file(1);
        rows.push((gun.clone(), "root".into(), 1, root.clone()));
        for v in 1..=6u64 {
            let t = repo.targets_file(v + 1, &[("t", format!("{c} {v}").as_bytes())]);
            let s = repo.snapshot_file(v + 1, &[("root", &root), ("targets", &t)]);
            let ts = repo.timestamp_file(v, &s);
            rows.push((gun.clone(), "targets".into(), v as i32 + 1, t));
            rows.push((gun.clone(), "snapshot".into(), v as i32 + 1, s));
            rows.push((gun.clone(), "timestamp".into(), v as i32, ts));
        }
    }
    let files = rows.len();
    runtime().block_on(async {
        let pool = sqlx::mysql::MySqlPoolOptions::new().connect(&server_url).await.unwrap();
        for (gun, role, version, data) in &rows {
            sqlx::query(
                "INSERT INTO tuf_files (created_at, gun, role, version, data, sha256) VALUES (NOW(), ?, ?, ?, ?, ?)",
            )
            .bind(gun)
            .bind(role)
            .bind(version)
            .bind(data.clone())
            .bind(sha(data))
            .execute(&pool)
            .await
            .unwrap();
            if role == "timestamp" {
                sqlx::query("INSERT INTO changefeed (gun, version, sha256) VALUES (?, ?, ?)")
                    .bind(gun)
                    .bind(version)
                    .bind(sha(data))
                    .execute(&pool)
                    .await
                    .unwrap();
            }
        }
    });
    eprintln!(
        "made and loaded {n} collections, {files} file versions in {:.1?}",
        made.elapsed()
    );
    let _one = one_cluster_at_a_time();
    let cluster = start(&signer_url);
    let started = std::time::Instant::now();
    let (code, out, err) = import_cmd(&cluster.tls, &cluster.raft[0], &server_url);
    let secs = started.elapsed().as_secs_f64();
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(out.contains(&format!("imported: {n}")), "{out}");
    eprintln!(
        "{out}\nwall clock of `seal-node import-notary` (process start to exit): {secs:.2}s, {:.0} file versions/s",
        files as f64 / secs
    );
}

#[test]
fn a_stopped_single_node_imports_through_its_own_log_and_a_running_one_is_refused() {
    let Some(fixtures) = seal_testkit::notary_fixtures() else {
        return;
    };
    let Some(db) = DbServer::postgres() else {
        return;
    };
    let url = db.create_database("notary", SERVER_SCHEMA_POSTGRES, "server", "pw", true);
    runtime().block_on(fill(&url, Kind::Postgres, &fixtures));
    let dir = tempfile::tempdir().unwrap();
    let mut node = common::Node::dev(dir.path());
    let offline = |url: &str| {
        run_to_end(
            Command::new(env!("CARGO_BIN_EXE_seal-node"))
                .args(["import-notary", "--dev-data-dir"])
                .arg(dir.path())
                .env("SEAL_IMPORT_DATABASE_URL", url),
        )
    };
    // While the node runs, its database is locked: nothing is written.
    let (code, out, err) = offline(&url);
    assert_eq!(code, 2, "{out}\n{err}");
    assert!(err.contains("is the node still running?"), "{err}");

    node.kill9();
    let (code, out, err) = offline(&url);
    assert_eq!(code, 1, "{out}\n{err}");
    assert!(
        out.contains("imported: 2\n") && out.contains(&format!("FAILED {BAD}")),
        "{out}"
    );
    node.restart();
    let files = fixture_files(&fixtures);
    let root = &files.iter().find(|f| f.0 == "root" && f.1 == 2).unwrap().2;
    let served = node.get(&tuf(APP, "root.json"));
    assert_eq!((served.status, &served.body), (200, root));
    let v1 = &files.iter().find(|f| f.0 == "root" && f.1 == 1).unwrap().2;
    assert_eq!(&node.get(&tuf(APP, &format!("root.{}.json", sha(v1)))).body, v1);
    let feed = node.get(&format!("/v2/{APP}/_trust/changefeed?change_id=0&records=10"));
    let feed: serde_json::Value = serde_json::from_slice(&feed.body).unwrap();
    // PostgreSQL keeps microseconds.
    assert_eq!(feed["records"][0]["CreatedAt"], "2026-11-21T23:54:56.210447Z", "{feed}");
    assert_eq!(node.get(&tuf(BAD, "root.json")).status, 404);
    // Again, stopped: nothing new.
    node.kill9();
    let (code, out, _) = offline(&url);
    assert_eq!(code, 1);
    assert!(out.contains("imported: 0\nalready imported: 2"), "{out}");
}
