//! `seal-signer import-notary` against notary-signer's `private_keys` table in real MariaDB and
//! PostgreSQL: keys wrapped as notary-signer wraps them (JWE PBES2-HS256+A128KW, 8,192
//! iterations, A256GCM), with the standard and with the Go 1.15 derivation, under two aliases;
//! each imported key keeps its ID, is re-encrypted under Seal's alias and signs; a soft-deleted
//! row is skipped; a truncated JWE, a wrong passphrase and an alias without a passphrase are
//! each named, and nothing of them is stored; running it again keeps what is held.

use std::process::Command;

use seal_signer::backend::{Algorithm, LocalBackend as _};
use seal_signer::import::jwe::{self, Kdf};
use seal_signer::software::{Passphrases, SoftwareBackend};
use seal_signer::store::Store;
use seal_signer::testing::TestPki;
use seal_testkit::db::{DbServer, Kind, SIGNER_SCHEMA_MYSQL, SIGNER_SCHEMA_POSTGRES};
use seal_testkit::process::run_to_end;
use seal_tuf::PrivateKey;

/// A notary-signer row: key, its plaintext as notary-signer stores it, alias, gun, role, JWE.
struct Row {
    key: PrivateKey,
    alias: &'static str,
    role: &'static str,
    jwe: String,
    deleted: bool,
}

fn plaintext(key: &PrivateKey) -> Vec<u8> {
    match key {
        // x509.MarshalECPrivateKey: DER SEC1.
        PrivateKey::Ecdsa(k) => {
            use p256::pkcs8::DecodePrivateKey as _;
            let der = key.to_pkcs8_der().unwrap();
            let secret = p256::SecretKey::from_pkcs8_der(&der).unwrap();
            let _ = k;
            secret.to_sec1_der().unwrap().to_vec()
        }
        // Go's ed25519.PrivateKey: seed, then public key.
        PrivateKey::Ed25519(k) => [k.to_bytes().as_slice(), k.verifying_key().as_bytes()].concat(),
    }
}

fn rows() -> Vec<Row> {
    let mut rng = rand::rngs::OsRng;
    let row = |key: PrivateKey, alias, role, kdf, passphrase: &str| {
        let jwe = jwe::encrypt(&plaintext(&key), passphrase.as_bytes(), kdf).unwrap();
        Row {
            key,
            alias,
            role,
            jwe,
            deleted: false,
        }
    };
    let mut truncated = row(
        PrivateKey::generate_ecdsa(&mut rng),
        "alpha",
        "timestamp",
        Kdf::Standard,
        "alpha pass",
    );
    truncated.jwe.truncate(truncated.jwe.len() - 20);
    let mut deleted = row(
        PrivateKey::generate_ecdsa(&mut rng),
        "alpha",
        "timestamp",
        Kdf::Standard,
        "alpha pass",
    );
    deleted.deleted = true;
    vec![
        row(
            PrivateKey::generate_ecdsa(&mut rng),
            "alpha",
            "timestamp",
            Kdf::Standard,
            "alpha pass",
        ),
        row(
            PrivateKey::generate_ed25519(&mut rng),
            "beta",
            "snapshot",
            Kdf::Go115,
            "beta pass",
        ),
        row(
            PrivateKey::generate_ecdsa(&mut rng),
            "beta",
            "timestamp",
            Kdf::Go115,
            "beta pass",
        ),
        truncated,
        // Encrypted under another passphrase than alpha's.
        row(
            PrivateKey::generate_ecdsa(&mut rng),
            "alpha",
            "snapshot",
            Kdf::Standard,
            "not alpha's",
        ),
        row(
            PrivateKey::generate_ecdsa(&mut rng),
            "gamma",
            "timestamp",
            Kdf::Standard,
            "gamma pass",
        ),
        deleted,
    ]
}

async fn fill(url: &str, kind: Kind, rows: &[Row]) {
    let sql = match kind {
        Kind::MariaDb => {
            "INSERT INTO private_keys (created_at, deleted_at, key_id, encryption_alg, keywrap_alg, algorithm, \
             passphrase_alias, public, private, gun, role) VALUES (NOW(), IF(?, NOW(), NULL), ?, 'A256GCM', \
             'PBES2-HS256+A128KW', ?, ?, ?, ?, ?, ?)"
        }
        Kind::Postgres => {
            "INSERT INTO private_keys (created_at, deleted_at, key_id, encryption_alg, keywrap_alg, algorithm, \
             passphrase_alias, public, private, gun, role) VALUES (NOW(), CASE WHEN $1 THEN NOW() END, $2, \
             'A256GCM', 'PBES2-HS256+A128KW', $3, $4, $5, $6, $7, $8)"
        }
    };
    macro_rules! insert {
        ($pool:expr) => {{
            let pool = $pool;
            for r in rows {
                let public = r.key.public_key();
                sqlx::query(sql)
                    .bind(r.deleted)
                    .bind(public.id())
                    .bind(public.key_type().as_str())
                    .bind(r.alias)
                    .bind(public.public_bytes().to_vec())
                    .bind(r.jwe.as_bytes().to_vec())
                    .bind("example.com/app")
                    .bind(r.role)
                    .execute(&pool)
                    .await
                    .unwrap();
            }
            pool.close().await;
        }};
    }
    match kind {
        Kind::MariaDb => insert!(sqlx::mysql::MySqlPoolOptions::new().connect(url).await.unwrap()),
        Kind::Postgres => insert!(sqlx::postgres::PgPoolOptions::new().connect(url).await.unwrap()),
    }
}

fn import(config: &std::path::Path, url: &str) -> (i32, String, String) {
    run_to_end(
        Command::new(env!("CARGO_BIN_EXE_seal-signer"))
            .args(["import-notary", "--config"])
            .arg(config)
            .env("SEAL_IMPORT_DATABASE_URL", url)
            .env("SEAL_SIGNER_MAIN", "seal passphrase")
            .env("NOTARY_SIGNER_ALPHA", "alpha pass")
            .env("NOTARY_SIGNER_BETA", "beta pass")
            .env_remove("NOTARY_SIGNER_GAMMA"),
    )
}

#[test]
fn notary_signer_keys_of_both_derivations_are_imported_and_bad_ones_named() {
    let mut servers = Vec::new();
    if let Some(db) = DbServer::mariadb() {
        let url = db.create_database("notarysigner", SIGNER_SCHEMA_MYSQL, "signer", "pw", false);
        servers.push((db, url, Kind::MariaDb));
    }
    if let Some(db) = DbServer::postgres() {
        let url = db.create_database("notarysigner", SIGNER_SCHEMA_POSTGRES, "signer", "pw", false);
        servers.push((db, url, Kind::Postgres));
    }
    for (_db, url, kind) in &servers {
        let rows = rows();
        tokio::runtime::Runtime::new()
            .unwrap()
            .block_on(fill(url, *kind, &rows));
        let dir = tempfile::tempdir().unwrap();
        let pki = TestPki::new(dir.path(), "import");
        let (cert, key) = pki.leaf("signer");
        let config = dir.path().join("signer.json");
        std::fs::write(
            &config,
            serde_json::json!({
                "server": {"grpc_addr": "127.0.0.1:0", "tls_cert_file": cert, "tls_key_file": key,
                           "client_ca_file": pki.ca_file()},
                "storage": {"data_dir": dir.path().join("data")},
            })
            .to_string(),
        )
        .unwrap();
        let (code, out, err) = import(&config, url);
        assert_eq!(code, 1, "{kind:?}: some keys fail\n{out}\n{err}");
        let id = |i: usize| rows[i].key.public_key().id().to_owned();
        for (i, kdf) in [
            (0, "standard PBES2"),
            (1, "Go 1.15 jose2go PBES2"),
            (2, "Go 1.15 jose2go PBES2"),
        ] {
            assert!(
                out.contains(&format!("imported {} ", id(i)))
                    && out.lines().any(|l| l.contains(&id(i)) && l.contains(kdf)),
                "{kind:?}: key {i} with {kdf}:\n{out}"
            );
        }
        for (i, why) in [
            (3, "malformed JWE: truncated"),
            (4, "wrong passphrase or corrupted key"),
            (5, "alias \"gamma\" has no passphrase: set NOTARY_SIGNER_GAMMA"),
        ] {
            assert!(
                out.lines()
                    .any(|l| l.starts_with(&format!("FAILED {}", id(i))) && l.contains(why)),
                "{kind:?}: key {i} should fail with {why:?}:\n{out}"
            );
        }
        for line in [
            "keys imported: 3",
            "already held: 0",
            "soft-deleted rows skipped: 1",
            "failed: 3",
        ] {
            assert!(out.contains(line), "{kind:?}: {line:?} missing:\n{out}");
        }

        // Stored under Seal's alias, keeping the key IDs; they sign; the failed ones are absent.
        {
            let store = Store::open(&dir.path().join("data")).unwrap();
            let held: Vec<String> = store.keys().unwrap().into_iter().map(|r| r.key_id).collect();
            assert_eq!(held.len(), 3, "{held:?}");
            let passphrases = Passphrases::from_env("main", &[], |k| {
                (k == "SEAL_SIGNER_MAIN").then(|| "seal passphrase".to_owned())
            })
            .unwrap();
            let software = SoftwareBackend::new(passphrases);
            for (i, row) in rows.iter().enumerate().take(3) {
                let record = store.key(&id(i)).unwrap().expect("imported key");
                assert_eq!((record.role.as_str(), record.backend.as_str()), (row.role, "software"));
                assert_eq!(seal_signer::software::handle_alias(&record.handle).unwrap(), "main");
                let alg = Algorithm::parse(&record.algorithm).unwrap();
                let sig = software.sign(alg, &record.handle, b"next timestamp").unwrap();
                let method = if alg == Algorithm::Ecdsa { "ecdsa" } else { "eddsa" };
                row.key.public_key().verify(method, b"next timestamp", &sig).unwrap();
            }
            for i in 3..7 {
                assert!(
                    store.key(&id(i)).unwrap().is_none(),
                    "{kind:?}: key {i} must not be stored"
                );
            }
        }

        // Again: what is held stays, the failures are named again.
        let (code, out, _) = import(&config, url);
        assert_eq!(code, 1);
        assert!(out.contains("keys imported: 0\nalready held: 3"), "{out}");
    }
}

#[test]
fn with_a_pkcs11_backend_the_keys_go_into_the_token() {
    use seal_signer::pkcs11::{Pkcs11Backend, Pkcs11Config};
    use seal_signer::testing::{softhsm_conf, softhsm_init_token, SOFTHSM_MODULE};
    let Some(db) = DbServer::postgres() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let Some(conf) = softhsm_conf(dir.path()) else {
        return;
    };
    softhsm_init_token(&conf, "import", "1234", "5678");
    // SoftHSM reads its configuration once per process, when the module is loaded.
    std::env::set_var("SOFTHSM2_CONF", &conf);
    let url = db.create_database("notarysigner", SIGNER_SCHEMA_POSTGRES, "signer", "pw", true);
    let rows = rows();
    tokio::runtime::Runtime::new()
        .unwrap()
        .block_on(fill(&url, Kind::Postgres, &rows));
    let pki = TestPki::new(dir.path(), "import");
    let (cert, key) = pki.leaf("signer");
    let config = dir.path().join("signer.json");
    std::fs::write(
        &config,
        serde_json::json!({
            "server": {"grpc_addr": "127.0.0.1:0", "tls_cert_file": cert, "tls_key_file": key,
                       "client_ca_file": pki.ca_file()},
            "storage": {"data_dir": dir.path().join("data")},
            "key_backend": {"type": "pkcs11", "module": SOFTHSM_MODULE, "token_label": "import", "pin_env": "HSM_PIN"},
        })
        .to_string(),
    )
    .unwrap();
    let (code, report, err) = run_to_end(
        Command::new(env!("CARGO_BIN_EXE_seal-signer"))
            .args(["import-notary", "--config"])
            .arg(&config)
            .env("SEAL_IMPORT_DATABASE_URL", &url)
            .env("SOFTHSM2_CONF", &conf)
            .env("HSM_PIN", "1234")
            .env("NOTARY_SIGNER_ALPHA", "alpha pass")
            .env("NOTARY_SIGNER_BETA", "beta pass")
            .env_remove("SEAL_SIGNER_MAIN"),
    );
    assert_eq!(code, 1, "{report}\n{err}");
    assert!(report.contains("keys imported: 3"), "{report}");
    assert_eq!(report.matches(", into the PKCS#11 token").count(), 3, "{report}");

    let store = Store::open(&dir.path().join("data")).unwrap();
    let hsm = Pkcs11Backend::open(Pkcs11Config {
        module: SOFTHSM_MODULE.into(),
        token_label: "import".into(),
        pin: zeroize::Zeroizing::new("1234".into()),
    })
    .unwrap();
    for row in rows.iter().take(3) {
        let public = row.key.public_key();
        let record = store.key(public.id()).unwrap().expect("imported key");
        assert_eq!(record.backend, "pkcs11");
        let alg = Algorithm::parse(&record.algorithm).unwrap();
        let sig = hsm.sign(alg, &record.handle, b"next timestamp").unwrap();
        let method = if alg == Algorithm::Ecdsa { "ecdsa" } else { "eddsa" };
        public.verify(method, b"next timestamp", &sig).unwrap();
    }
}
