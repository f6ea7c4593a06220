//! Reading a Notary server's database: MySQL/MariaDB or PostgreSQL, Notary's schema (the
//! `tuf_files` table of every version of every role of every GUN, and the `changefeed`).
//!
//! The queries are written here from what Notary's migrations define (`tuf_files`: `gun`, `role`,
//! `version`, `data`, `sha256`, gorm's `created_at`/`updated_at`/`deleted_at`; `changefeed`:
//! `id`, `created_at`, `gun`, `version`, `sha256`, `category`). Rows whose `deleted_at` is set are
//! what Notary itself never serves (gorm's soft delete), so they are counted and left out; a
//! deleted collection's rows are hard-deleted by Notary and only its changefeed remains.
//! Times are read as Unix microseconds in UTC (MySQL stores whole seconds, PostgreSQL
//! microseconds).

use sqlx::mysql::{MySqlConnectOptions, MySqlPool, MySqlPoolOptions};
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::{ConnectOptions as _, Row as _};

use super::ImportError;

/// One row of `tuf_files`.
#[derive(Debug, Clone)]
pub struct FileRow {
    /// Its `id`, for reports.
    pub id: i64,
    /// The role.
    pub role: String,
    /// The `version` column.
    pub version: i64,
    /// The exact bytes Notary served.
    pub data: Vec<u8>,
    /// The `sha256` column (hex), which Notary's checksum URLs look up.
    pub sha256: Option<String>,
}

/// One row of `changefeed`.
#[derive(Debug, Clone)]
pub struct ChangeRow {
    /// Its `id` (Notary's change id).
    pub id: i64,
    /// `created_at` as Unix microseconds (UTC), when set.
    pub created_at_micros: Option<i64>,
    /// The timestamp version (0 for a deletion).
    pub version: i64,
    /// Hex sha256 of the timestamp.
    pub sha256: Option<String>,
    /// `update` or `deletion`.
    pub category: String,
}

/// A connection pool to a Notary server's database.
#[derive(Debug, Clone)]
pub enum NotaryDb {
    /// MySQL or MariaDB (`mysql://…`).
    MySql(MySqlPool),
    /// PostgreSQL (`postgres://…`), password authentication by md5 or SCRAM.
    Postgres(PgPool),
}

/// Totals of a Notary database, for the report.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Totals {
    /// `tuf_files` rows Notary serves.
    pub files: u64,
    /// `tuf_files` rows soft-deleted (`deleted_at` set): never served, not imported.
    pub soft_deleted: u64,
    /// `changefeed` rows.
    pub changes: u64,
}

fn db_error(what: &'static str) -> impl Fn(sqlx::Error) -> ImportError {
    move |e| ImportError::Database {
        what,
        reason: e.to_string(),
    }
}

/// `$body` with `$pool` bound to this database's pool: sqlx's row types
/// differ per database, so the one body is compiled once for each.
macro_rules! on_pool {
    ($db:expr, $pool:ident => $body:expr) => {
        match $db {
            NotaryDb::MySql($pool) => $body,
            NotaryDb::Postgres($pool) => $body,
        }
    };
}

impl NotaryDb {
    /// Connects to `url`: `mysql://user:pw@host:port/db` (or `?socket=/path`) or
    /// `postgres://user:pw@host:port/db` (or `?host=/socket/dir`).
    pub async fn connect(url: &str) -> Result<NotaryDb, ImportError> {
        let converted = seal_signer::import::go_mysql_dsn(url);
        let url = converted.as_deref().unwrap_or(url);
        let scheme = url.split("://").next().unwrap_or_default();
        match scheme {
            "mysql" | "mariadb" => {
                let url = url.replacen("mariadb://", "mysql://", 1);
                let opts: MySqlConnectOptions = url.parse().map_err(db_error("database URL"))?;
                // Times are read in UTC whatever the server's zone (Notary's driver wrote UTC).
                let opts = opts.timezone(Some("+00:00".into())).disable_statement_logging();
                let pool = MySqlPoolOptions::new()
                    .max_connections(2)
                    .connect_with(opts)
                    .await
                    .map_err(db_error("connecting to MySQL"))?;
                Ok(NotaryDb::MySql(pool))
            }
            "postgres" | "postgresql" => {
                let opts: PgConnectOptions = url.parse().map_err(db_error("database URL"))?;
                let pool = PgPoolOptions::new()
                    .max_connections(2)
                    .connect_with(opts.disable_statement_logging())
                    .await
                    .map_err(db_error("connecting to PostgreSQL"))?;
                Ok(NotaryDb::Postgres(pool))
            }
            _ => Err(ImportError::Database {
                what: "database URL",
                reason: "expected mysql://… or postgres://…".into(),
            }),
        }
    }

    /// The SQL for this database: Notary's schema is the same in both, the
    /// dialects are not.
    fn sql(&self, mysql: &'static str, postgres: &'static str) -> &'static str {
        match self {
            NotaryDb::MySql(_) => mysql,
            NotaryDb::Postgres(_) => postgres,
        }
    }

    /// Every GUN with a served file or a changefeed record, sorted.
    pub async fn guns(&self) -> Result<Vec<String>, ImportError> {
        const Q: &str = "SELECT gun FROM tuf_files WHERE deleted_at IS NULL \
                         UNION SELECT gun FROM changefeed ORDER BY gun";
        on_pool!(self, p => sqlx::query(Q)
            .fetch_all(p)
            .await
            .map_err(db_error("listing GUNs"))?
            .iter()
            .map(|r| r.try_get::<String, _>(0))
            .collect::<Result<Vec<_>, _>>()
            .map_err(db_error("listing GUNs")))
    }

    /// Counts for the report.
    pub async fn totals(&self) -> Result<Totals, ImportError> {
        let q = self.sql(
            "SELECT CAST((SELECT COUNT(*) FROM tuf_files WHERE deleted_at IS NULL) AS SIGNED), \
             CAST((SELECT COUNT(*) FROM tuf_files WHERE deleted_at IS NOT NULL) AS SIGNED), \
             CAST((SELECT COUNT(*) FROM changefeed) AS SIGNED)",
            "SELECT CAST((SELECT COUNT(*) FROM tuf_files WHERE deleted_at IS NULL) AS BIGINT), \
             CAST((SELECT COUNT(*) FROM tuf_files WHERE deleted_at IS NOT NULL) AS BIGINT), \
             CAST((SELECT COUNT(*) FROM changefeed) AS BIGINT)",
        );
        let get = |a: Result<i64, sqlx::Error>| a.map(|n| u64::try_from(n).unwrap_or(0));
        on_pool!(self, p => {
            let r = sqlx::query(q).fetch_one(p).await.map_err(db_error("counting rows"))?;
            Ok(Totals {
                files: get(r.try_get(0)).map_err(db_error("counting rows"))?,
                soft_deleted: get(r.try_get(1)).map_err(db_error("counting rows"))?,
                changes: get(r.try_get(2)).map_err(db_error("counting rows"))?,
            })
        })
    }

    /// The served rows of `gun` (soft-deleted rows left out), by role and version.
    pub async fn files(&self, gun: &str) -> Result<Vec<FileRow>, ImportError> {
        let q = self.sql(
            "SELECT CAST(id AS SIGNED), role, CAST(version AS SIGNED), data, sha256 FROM tuf_files \
             WHERE gun = ? AND deleted_at IS NULL ORDER BY role, version",
            "SELECT CAST(id AS BIGINT), role, CAST(version AS BIGINT), data, CAST(sha256 AS TEXT) \
             FROM tuf_files WHERE gun = $1 AND deleted_at IS NULL ORDER BY role, version",
        );
        on_pool!(self, p => sqlx::query(q)
            .bind(gun)
            .fetch_all(p)
            .await
            .map_err(db_error("reading tuf_files"))?
            .iter()
            .map(|r| {
                Ok(FileRow {
                    id: r.try_get(0)?,
                    role: r.try_get(1)?,
                    version: r.try_get(2)?,
                    data: r.try_get(3)?,
                    sha256: r.try_get(4)?,
                })
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(db_error("reading tuf_files")))
    }

    /// The changefeed records of `gun`, oldest (lowest id) first.
    pub async fn changes(&self, gun: &str) -> Result<Vec<ChangeRow>, ImportError> {
        let q = self.sql(
            "SELECT CAST(id AS SIGNED), CAST(UNIX_TIMESTAMP(created_at) * 1000000 AS SIGNED), \
             CAST(version AS SIGNED), sha256, category FROM changefeed WHERE gun = ? ORDER BY id",
            "SELECT CAST(id AS BIGINT), CAST(EXTRACT(EPOCH FROM created_at) * 1000000 AS BIGINT), \
             CAST(version AS BIGINT), CAST(sha256 AS TEXT), CAST(category AS TEXT) FROM changefeed \
             WHERE gun = $1 ORDER BY id",
        );
        on_pool!(self, p => sqlx::query(q)
            .bind(gun)
            .fetch_all(p)
            .await
            .map_err(db_error("reading changefeed"))?
            .iter()
            .map(|r| {
                Ok(ChangeRow {
                    id: r.try_get(0)?,
                    created_at_micros: r.try_get(1)?,
                    version: r.try_get(2)?,
                    sha256: r.try_get(3)?,
                    category: r.try_get(4)?,
                })
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(db_error("reading changefeed")))
    }
}
