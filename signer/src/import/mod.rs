//! `seal-signer import-notary`: notary-signer's keys into this signer's store, as software keys
//! re-encrypted under Seal's default alias (or, with a `pkcs11` key backend, as non-extractable
//! objects in the token), keeping their key IDs (so the roots clients trust stay
//! valid and Seal keeps signing timestamps with the same keys).
//!
//! notary-signer keeps its keys in the `private_keys` table (MySQL/MariaDB or PostgreSQL): key ID,
//! `algorithm` (`ecdsa`: the plaintext is a DER SEC1 P-256 key; `ed25519`: 64 bytes, seed then
//! public key), `public` (DER SubjectPublicKeyInfo, or the 32 raw Ed25519 bytes), `gun`, `role`,
//! the JWE of the private key ([`jwe`]) and the `passphrase_alias` whose passphrase
//! (`NOTARY_SIGNER_<ALIAS>`, read from the environment, never from argv) opens it. Rows with
//! `deleted_at` set are keys notary-signer deleted: counted, not imported.
//!
//! Each key is checked before it is stored: it decrypts (the derivation used is reported), it is
//! the algorithm its row says, its public key is the row's `public`, and its TUF key ID is the
//! row's `key_id`. A key that fails is named with its reason and not stored; the others are.
//! A key already held with the same public key is left as it is (so the import can be re-run).

pub mod jwe;

use sqlx::mysql::MySqlPoolOptions;
use sqlx::postgres::PgPoolOptions;
use sqlx::{ConnectOptions as _, Row as _};
use zeroize::Zeroizing;

use seal_tuf::keys::key_id;
use seal_tuf::{KeyType, PrivateKey};

use crate::config::SignerConfig;
use crate::error::Error;
use crate::software::{Passphrases, SoftwareBackend};
use crate::store::{KeyRecord, Store};

/// One row of notary-signer's `private_keys` (not soft-deleted).
#[derive(Debug, Clone)]
pub struct KeyRow {
    /// The TUF key ID.
    pub key_id: String,
    /// `ecdsa` or `ed25519` (what notary-signer generates).
    pub algorithm: String,
    /// The alias whose passphrase encrypts it.
    pub passphrase_alias: String,
    /// The public key as TUF lists it.
    pub public: Vec<u8>,
    /// The JWE.
    pub private: String,
    /// The collection.
    pub gun: String,
    /// The role.
    pub role: String,
}

/// What an import did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeyImportReport {
    /// Keys stored now: key ID, GUN, role, algorithm, derivation used.
    pub imported: Vec<String>,
    /// Keys this signer already held.
    pub already_held: u64,
    /// Rows notary-signer had deleted (`deleted_at` set).
    pub soft_deleted: u64,
    /// Keys not imported, each with its reason.
    pub failed: Vec<String>,
}

impl std::fmt::Display for KeyImportReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for line in &self.imported {
            writeln!(f, "imported {line}")?;
        }
        for line in &self.failed {
            writeln!(f, "FAILED {line}")?;
        }
        write!(
            f,
            "keys imported: {}\nalready held: {}\nsoft-deleted rows skipped: {}\nfailed: {}",
            self.imported.len(),
            self.already_held,
            self.soft_deleted,
            self.failed.len()
        )
    }
}

fn db_err(what: &str) -> impl Fn(sqlx::Error) -> String + '_ {
    move |e| format!("Notary signer database: {what}: {e}")
}

const KEYS_QUERY: &str = "SELECT key_id, algorithm, passphrase_alias, public, private, gun, role FROM private_keys \
                          WHERE deleted_at IS NULL ORDER BY id";
const DELETED_QUERY: &str = "SELECT COUNT(*) FROM private_keys WHERE deleted_at IS NOT NULL";

/// Reads the key rows and the soft-deleted count from one pool (the same SQL for both databases).
macro_rules! read_from {
    ($pool:expr) => {{
        let rows = sqlx::query(KEYS_QUERY)
            .fetch_all($pool)
            .await
            .map_err(db_err("reading private_keys"))?;
        let keys = rows
            .iter()
            .map(|r| {
                let private: Vec<u8> = r.try_get(4)?;
                Ok(KeyRow {
                    key_id: r.try_get(0)?,
                    algorithm: r.try_get(1)?,
                    passphrase_alias: r.try_get(2)?,
                    public: r.try_get(3)?,
                    private: String::from_utf8_lossy(&private).into_owned(),
                    gun: r.try_get(5)?,
                    role: r.try_get(6)?,
                })
            })
            .collect::<Result<Vec<_>, sqlx::Error>>()
            .map_err(db_err("reading private_keys"))?;
        let deleted: i64 = sqlx::query(DELETED_QUERY)
            .fetch_one($pool)
            .await
            .and_then(|r| r.try_get(0))
            .map_err(db_err("counting private_keys"))?;
        Ok((keys, u64::try_from(deleted).unwrap_or(0)))
    }};
}

/// Reads notary-signer's keys (not soft-deleted) and how many rows were soft-deleted.
pub async fn read_keys(url: &str) -> Result<(Vec<KeyRow>, u64), Error> {
    read_rows(url).await.map_err(Error::Database)
}

async fn read_rows(url: &str) -> Result<(Vec<KeyRow>, u64), String> {
    let converted = go_mysql_dsn(url);
    let url = converted.as_deref().unwrap_or(url);
    let scheme = url.split("://").next().unwrap_or_default();
    match scheme {
        "mysql" | "mariadb" => {
            let opts: sqlx::mysql::MySqlConnectOptions = url
                .replacen("mariadb://", "mysql://", 1)
                .parse()
                .map_err(db_err("database URL"))?;
            let pool = MySqlPoolOptions::new()
                .max_connections(1)
                .connect_with(opts.disable_statement_logging())
                .await
                .map_err(db_err("connecting"))?;
            read_from!(&pool)
        }
        "postgres" | "postgresql" => {
            let opts: sqlx::postgres::PgConnectOptions = url.parse().map_err(db_err("database URL"))?;
            let pool = PgPoolOptions::new()
                .max_connections(1)
                .connect_with(opts.disable_statement_logging())
                .await
                .map_err(db_err("connecting"))?;
            read_from!(&pool)
        }
        _ => Err("Notary signer database: expected mysql://… or postgres://…".into()),
    }
}

/// Opens one row's key with its alias passphrase and checks it against the row.
pub fn open_key(row: &KeyRow, passphrase: &[u8]) -> Result<(PrivateKey, jwe::Kdf), String> {
    let (plain, kdf) = jwe::decrypt(&row.private, passphrase).map_err(|e| e.to_string())?;
    let key = match row.algorithm.as_str() {
        "ecdsa" => {
            let secret =
                p256::SecretKey::from_sec1_der(&plain).map_err(|e| format!("not a DER SEC1 P-256 key: {e}"))?;
            PrivateKey::Ecdsa(p256::ecdsa::SigningKey::from(secret))
        }
        "ed25519" => {
            if plain.len() != 64 {
                return Err(format!("an ed25519 key of {} bytes, not 64", plain.len()));
            }
            let mut seed = Zeroizing::new([0u8; 32]);
            seed.copy_from_slice(&plain[..32]);
            let k = ed25519_dalek::SigningKey::from_bytes(&seed);
            if k.verifying_key().as_bytes() != &plain[32..] {
                return Err("the ed25519 key's public half is not its seed's".into());
            }
            PrivateKey::Ed25519(k)
        }
        other => {
            return Err(format!(
                "algorithm {other:?} is not one notary-signer generates (ecdsa, ed25519): not imported"
            ))
        }
    };
    let public = key.public_key();
    if public.public_bytes() != row.public.as_slice() {
        return Err("the decrypted key is not the row's public key".into());
    }
    let kt = if row.algorithm == "ecdsa" {
        KeyType::Ecdsa
    } else {
        KeyType::Ed25519
    };
    if key_id(kt, &row.public) != row.key_id {
        return Err(format!(
            "the key's TUF ID is {}, not the row's",
            key_id(kt, &row.public)
        ));
    }
    Ok((key, kdf))
}

/// Imports `rows` into `config`'s store (the signer must be stopped). `env` gives
/// `NOTARY_SIGNER_<ALIAS>` for each Notary alias and Seal's own alias passphrases.
pub fn import_keys(
    config: &SignerConfig,
    rows: &[KeyRow],
    soft_deleted: u64,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<KeyImportReport, Error> {
    // Software keys are encrypted under Seal's own alias and passphrase.
    let software = Passphrases::from_env(&config.default_alias, &config.aliases, env).map(SoftwareBackend::new);
    // With a PKCS#11 key backend the keys go into the token; otherwise they are software keys.
    let hsm = crate::server::pkcs11_backend(config, env)?;
    if hsm.is_none() {
        software.as_ref().map_err(|e| Error::Backend(e.clone()))?;
    }
    let store = Store::open(&config.storage.data_dir)?;
    let mut report = KeyImportReport {
        soft_deleted,
        ..KeyImportReport::default()
    };
    for row in rows {
        let name = format!("{} ({} {} {})", row.key_id, row.gun, row.role, row.algorithm);
        let var = format!("NOTARY_SIGNER_{}", row.passphrase_alias.to_uppercase());
        let Some(passphrase) = env(&var).filter(|p| !p.is_empty()).map(Zeroizing::new) else {
            report.failed.push(format!(
                "{name}: alias {:?} has no passphrase: set {var}",
                row.passphrase_alias
            ));
            continue;
        };
        if let Some(held) = store.key(&row.key_id)? {
            if held.public == row.public {
                report.already_held += 1;
            } else {
                report
                    .failed
                    .push(format!("{name}: this signer holds another key under the same ID"));
            }
            continue;
        }
        let (key, kdf) = match open_key(row, passphrase.as_bytes()) {
            Ok(k) => k,
            Err(e) => {
                report.failed.push(format!("{name}: {e}"));
                continue;
            }
        };
        let (backend, handle, into) = match &hsm {
            Some(hsm) => match hsm.import_key(&key, &format!("{} {}", row.gun, row.role)) {
                Ok(new) if new.public == row.public => ("pkcs11", new.handle, ", into the PKCS#11 token"),
                Ok(_) => {
                    report
                        .failed
                        .push(format!("{name}: the token reports another public key for it"));
                    continue;
                }
                Err(e) => {
                    report
                        .failed
                        .push(format!("{name}: storing it in the PKCS#11 token: {e}"));
                    continue;
                }
            },
            None => {
                let software = software.as_ref().map_err(|e| Error::Backend(e.clone()))?;
                match software.import(key) {
                    Ok(new) => ("software", new.handle, ""),
                    Err(e) => {
                        report
                            .failed
                            .push(format!("{name}: encrypting it under Seal's alias: {e}"));
                        continue;
                    }
                }
            }
        };
        store.put_key(&KeyRecord {
            key_id: row.key_id.clone(),
            gun: row.gun.clone(),
            role: row.role.clone(),
            algorithm: row.algorithm.clone(),
            public: row.public.clone(),
            backend: backend.into(),
            handle,
        })?;
        report
            .imported
            .push(format!("{name}, opened by the {} derivation{into}", kdf.as_str()));
    }
    Ok(report)
}

/// Notary's own `storage.db_url` for MySQL is a Go driver DSN, `user:pw@tcp(host:port)/db?…`:
/// the same as `mysql://user:pw@host:port/db` (its Go-only parameters such as `parseTime` are
/// dropped), so that it can be copied from Notary's config as it is. `None` for anything else.
pub fn go_mysql_dsn(dsn: &str) -> Option<String> {
    if dsn.contains("://") {
        return None;
    }
    let (user, rest) = dsn.rsplit_once("@tcp(")?;
    let (host, rest) = rest.split_once(')')?;
    let db = rest.strip_prefix('/')?.split('?').next()?;
    Some(format!("mysql://{user}@{host}/{db}"))
}

#[cfg(test)]
mod dsn_tests {
    use super::go_mysql_dsn;

    #[test]
    fn notarys_go_dsn_reads_as_a_mysql_url() {
        assert_eq!(
            go_mysql_dsn("server@tcp(mysql:3306)/notaryserver?parseTime=True").as_deref(),
            Some("mysql://server@mysql:3306/notaryserver")
        );
        assert_eq!(
            go_mysql_dsn("server:pw@tcp(127.0.0.1:3306)/notaryserver").as_deref(),
            Some("mysql://server:pw@127.0.0.1:3306/notaryserver")
        );
        assert_eq!(go_mysql_dsn("mysql://server@host/db"), None);
        assert_eq!(go_mysql_dsn("postgres://server@host/db"), None);
        assert_eq!(go_mysql_dsn("nonsense"), None);
    }
}
