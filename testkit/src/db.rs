//! Real database servers for tests: MariaDB and PostgreSQL from Debian's packages, each started
//! in its own temporary directory on a free loopback port (and a unix socket in that directory),
//! stopped and removed when dropped; and Notary's schemas (server and signer, both dialects),
//! written here from the tables Notary's migrations define (the state after all of them).
//!
//! A missing server binary is a skip (a failure under `CI=true`), as [`crate::skip`] says.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// notary-server's tables in MySQL/MariaDB: `tuf_files` (with `sha256`), `change_category`
/// and `changefeed`.
pub const SERVER_SCHEMA_MYSQL: &str = "
CREATE TABLE tuf_files (
  id INT NOT NULL AUTO_INCREMENT,
  created_at TIMESTAMP NULL DEFAULT NULL,
  updated_at TIMESTAMP NULL DEFAULT NULL,
  deleted_at TIMESTAMP NULL DEFAULT NULL,
  gun VARCHAR(255) NOT NULL,
  role VARCHAR(255) NOT NULL,
  version INT NOT NULL,
  data LONGBLOB NOT NULL,
  sha256 CHAR(64) DEFAULT NULL,
  PRIMARY KEY (id),
  UNIQUE KEY gun (gun, role, version),
  INDEX sha256 (sha256)
) ENGINE=InnoDB DEFAULT CHARSET=utf8;
CREATE TABLE change_category (category VARCHAR(20) NOT NULL, PRIMARY KEY (category)) ENGINE=InnoDB DEFAULT CHARSET=utf8;
INSERT INTO change_category VALUES ('update'), ('deletion');
CREATE TABLE changefeed (
  id INT NOT NULL AUTO_INCREMENT,
  created_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP,
  gun VARCHAR(255) NOT NULL,
  version INT NOT NULL,
  sha256 CHAR(64) DEFAULT NULL,
  category VARCHAR(20) NOT NULL DEFAULT 'update',
  PRIMARY KEY (id),
  FOREIGN KEY (category) REFERENCES change_category (category),
  INDEX idx_changefeed_gun (gun)
) ENGINE=InnoDB DEFAULT CHARSET=utf8;
";

/// notary-server's tables in PostgreSQL.
pub const SERVER_SCHEMA_POSTGRES: &str = "
CREATE TABLE tuf_files (
  id SERIAL PRIMARY KEY,
  created_at TIMESTAMP NULL DEFAULT NULL,
  updated_at TIMESTAMP NULL DEFAULT NULL,
  deleted_at TIMESTAMP NULL DEFAULT NULL,
  gun VARCHAR(255) NOT NULL,
  role VARCHAR(255) NOT NULL,
  version INTEGER NOT NULL,
  data BYTEA NOT NULL,
  sha256 CHAR(64) DEFAULT NULL,
  UNIQUE (gun, role, version)
);
CREATE INDEX tuf_files_sha256_idx ON tuf_files (sha256);
CREATE TABLE change_category (category VARCHAR(20) PRIMARY KEY);
INSERT INTO change_category VALUES ('update'), ('deletion');
CREATE TABLE changefeed (
  id SERIAL PRIMARY KEY,
  created_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP,
  gun VARCHAR(255) NOT NULL,
  version INTEGER NOT NULL,
  sha256 CHAR(64) DEFAULT NULL,
  category VARCHAR(20) NOT NULL DEFAULT 'update' REFERENCES change_category
);
CREATE INDEX idx_changefeed_gun ON changefeed (gun);
";

/// notary-signer's `private_keys` in MySQL/MariaDB (with `gun`, `role`, `last_used`).
pub const SIGNER_SCHEMA_MYSQL: &str = "
CREATE TABLE private_keys (
  id INT NOT NULL AUTO_INCREMENT,
  created_at TIMESTAMP NULL DEFAULT NULL,
  updated_at TIMESTAMP NULL DEFAULT NULL,
  deleted_at TIMESTAMP NULL DEFAULT NULL,
  key_id VARCHAR(255) NOT NULL,
  encryption_alg VARCHAR(255) NOT NULL,
  keywrap_alg VARCHAR(255) NOT NULL,
  algorithm VARCHAR(50) NOT NULL,
  passphrase_alias VARCHAR(50) NOT NULL,
  public BLOB NOT NULL,
  private BLOB NOT NULL,
  gun VARCHAR(255) NOT NULL,
  role VARCHAR(255) NOT NULL,
  last_used DATETIME NULL DEFAULT NULL,
  PRIMARY KEY (id),
  UNIQUE KEY key_id (key_id),
  UNIQUE KEY key_id_2 (key_id, algorithm)
) ENGINE=InnoDB DEFAULT CHARSET=utf8;
";

/// notary-signer's `private_keys` in PostgreSQL.
pub const SIGNER_SCHEMA_POSTGRES: &str = "
CREATE TABLE private_keys (
  id SERIAL PRIMARY KEY,
  created_at TIMESTAMP NULL DEFAULT NULL,
  updated_at TIMESTAMP NULL DEFAULT NULL,
  deleted_at TIMESTAMP NULL DEFAULT NULL,
  key_id VARCHAR(255) NOT NULL,
  encryption_alg VARCHAR(255) NOT NULL,
  keywrap_alg VARCHAR(255) NOT NULL,
  algorithm VARCHAR(50) NOT NULL,
  passphrase_alias VARCHAR(50) NOT NULL,
  public BYTEA NOT NULL,
  private BYTEA NOT NULL,
  gun VARCHAR(255) NOT NULL,
  role VARCHAR(255) NOT NULL,
  last_used TIMESTAMP NULL DEFAULT NULL,
  CONSTRAINT key_id UNIQUE (key_id),
  CONSTRAINT key_id_2 UNIQUE (key_id, algorithm)
);
";

/// Which server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// MariaDB (speaks MySQL's protocol).
    MariaDb,
    /// PostgreSQL.
    Postgres,
}

/// A database server a test started; stopped and its directory removed on drop.
pub struct DbServer {
    /// Which server.
    pub kind: Kind,
    /// Its TCP port on 127.0.0.1.
    pub port: u16,
    /// Its directory (data, socket, log).
    pub dir: PathBuf,
    child: Child,
}

impl Drop for DbServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn find(candidates: &[&str]) -> Option<PathBuf> {
    candidates.iter().map(PathBuf::from).find(|p| p.is_file())
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

fn temp_dir(kind: &str) -> PathBuf {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u32(std::process::id());
    let dir = std::env::temp_dir().join(format!("seal-{kind}-{:016x}", h.finish()));
    std::fs::create_dir_all(&dir).expect("create the database directory");
    dir
}

/// Runs a set-up command, removing `dir` (the server's directory) before panicking on failure.
fn run_in(dir: &Path, cmd: &mut Command, what: &str) {
    let out = cmd.output();
    if out.as_ref().is_ok_and(|o| o.status.success()) {
        return;
    }
    let _ = std::fs::remove_dir_all(dir);
    match out {
        Ok(o) => panic!(
            "{what}: {}\n{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        ),
        Err(e) => panic!("{what}: {e}"),
    }
}

fn run(cmd: &mut Command, what: &str) {
    let out = cmd.output().unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(
        out.status.success(),
        "{what}: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn pg_bin() -> Option<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
        .filter(|p| p.join("postgres").is_file())
        .collect();
    dirs.sort();
    dirs.pop()
}

impl DbServer {
    /// A MariaDB server, or `None` after [`crate::skip`] when it is not installed.
    pub fn mariadb() -> Option<DbServer> {
        let (Some(server), Some(install)) = (
            find(&["/usr/sbin/mariadbd", "/usr/sbin/mysqld"]),
            find(&["/usr/bin/mariadb-install-db", "/usr/bin/mysql_install_db"]),
        ) else {
            crate::skip("MariaDB is not installed (apt-get install mariadb-server)");
            return None;
        };
        let dir = temp_dir("mariadb");
        let data = dir.join("data");
        let mut install_cmd = Command::new(install);
        install_cmd
            .arg("--no-defaults")
            .arg(format!("--datadir={}", data.display()))
            .args(["--auth-root-authentication-method=normal", "--skip-test-db"]);
        if is_root() {
            install_cmd.arg("--user=root");
        }
        // Several tests of one binary installing at once have failed now and then (1 run in
        // about 8 here): one install at a time per process, and a second try on a clean
        // directory before giving up with the installer's output.
        static INSTALL: std::sync::Mutex<()> = std::sync::Mutex::new(());
        {
            let _one = INSTALL.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            let first = install_cmd.output().map(|o| o.status.success()).unwrap_or(false);
            if !first {
                let _ = std::fs::remove_dir_all(&data);
                run_in(&dir, &mut install_cmd, "mariadb-install-db");
            }
        }
        let port = crate::free_port();
        let mut cmd = Command::new(server);
        cmd.arg("--no-defaults")
            .arg(format!("--datadir={}", data.display()))
            .arg(format!("--socket={}", dir.join("sock").display()))
            .arg(format!("--port={port}"))
            .args([
                "--bind-address=127.0.0.1",
                "--innodb-buffer-pool-size=32M",
                "--skip-log-bin",
            ])
            .arg(format!("--pid-file={}", dir.join("pid").display()))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("log")).expect("log file"));
        if is_root() {
            cmd.arg("--user=root");
        }
        let child = cmd.spawn().expect("start mariadbd");
        let server = DbServer {
            kind: Kind::MariaDb,
            port,
            dir,
            child,
        };
        server.wait_ready();
        Some(server)
    }

    /// A PostgreSQL server (password authentication over TCP: md5, or SCRAM for users whose
    /// password is stored as SCRAM), or `None` after [`crate::skip`] when it is not installed.
    /// Run as root, it runs as `nobody` (PostgreSQL refuses root).
    pub fn postgres() -> Option<DbServer> {
        let Some(bin) = pg_bin() else {
            crate::skip("PostgreSQL is not installed (apt-get install postgresql)");
            return None;
        };
        let dir = temp_dir("postgres");
        let as_user = |program: PathBuf| -> Command {
            if is_root() {
                let mut c = Command::new("setpriv");
                c.args(["--reuid=nobody", "--regid=nogroup", "--clear-groups"])
                    .arg(program);
                c
            } else {
                Command::new(program)
            }
        };
        if is_root() {
            run(Command::new("chown").arg("nobody").arg(&dir), "chown");
        }
        let data = dir.join("data");
        run_in(
            &dir,
            as_user(bin.join("initdb")).arg("-D").arg(&data).args([
                "-U",
                "postgres",
                "--auth-local=trust",
                "--auth-host=md5",
                "-E",
                "UTF8",
            ]),
            "initdb",
        );
        let port = crate::free_port();
        let child = as_user(bin.join("postgres"))
            .arg("-D")
            .arg(&data)
            .arg("-k")
            .arg(&dir)
            .arg("-p")
            .arg(port.to_string())
            .args(["-c", "listen_addresses=127.0.0.1", "-c", "fsync=off"])
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("log")).expect("log file"))
            .spawn()
            .expect("start postgres");
        let server = DbServer {
            kind: Kind::Postgres,
            port,
            dir,
            child,
        };
        server.wait_ready();
        Some(server)
    }

    fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if self.try_sql("SELECT 1", None).is_ok() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{:?} did not start: {}",
                self.kind,
                std::fs::read_to_string(self.dir.join("log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    fn try_sql(&self, sql: &str, database: Option<&str>) -> Result<String, String> {
        let out = match self.kind {
            Kind::MariaDb => {
                let mut c = Command::new("mariadb");
                c.arg("--no-defaults")
                    .arg(format!("--socket={}", self.dir.join("sock").display()))
                    .args(["-uroot", "-e", sql]);
                if let Some(db) = database {
                    c.arg(db);
                }
                c.output()
            }
            Kind::Postgres => {
                let psql = pg_bin().map_or_else(|| PathBuf::from("psql"), |b| b.join("psql"));
                Command::new(psql)
                    .arg("-h")
                    .arg(&self.dir)
                    .args([
                        "-p",
                        &self.port.to_string(),
                        "-U",
                        "postgres",
                        "-v",
                        "ON_ERROR_STOP=1",
                        "-d",
                    ])
                    .arg(database.unwrap_or("postgres"))
                    .args(["-c", sql])
                    .output()
            }
        }
        .map_err(|e| e.to_string())?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).into_owned())
        }
    }

    /// Runs `sql` as the superuser (in `database`, if given); panics on an error.
    pub fn sql(&self, sql: &str, database: Option<&str>) -> String {
        self.try_sql(sql, database)
            .unwrap_or_else(|e| panic!("{:?}: {sql}: {e}", self.kind))
    }

    /// Makes `database` with Notary's `schema` and a user `user`/`password` owning it; for
    /// PostgreSQL, `scram` picks how the password is stored (and so how the user logs in:
    /// SCRAM-SHA-256, or md5 as Notary's old driver needs). Returns the URL to connect with.
    pub fn create_database(&self, database: &str, schema: &str, user: &str, password: &str, scram: bool) -> String {
        match self.kind {
            Kind::MariaDb => {
                self.sql(
                    &format!(
                        "CREATE DATABASE {database}; CREATE USER IF NOT EXISTS '{user}'@'%' IDENTIFIED BY '{password}'; \
                         GRANT ALL ON {database}.* TO '{user}'@'%';"
                    ),
                    None,
                );
                self.sql(schema, Some(database));
                format!("mysql://{user}:{password}@127.0.0.1:{}/{database}", self.port)
            }
            Kind::Postgres => {
                let encryption = if scram { "scram-sha-256" } else { "md5" };
                self.sql(
                    &format!("SET password_encryption = '{encryption}'; CREATE USER {user} PASSWORD '{password}';"),
                    None,
                );
                self.sql(&format!("CREATE DATABASE {database} OWNER {user}"), None);
                self.sql(&format!("SET ROLE {user};\n{schema}"), Some(database));
                format!("postgres://{user}:{password}@127.0.0.1:{}/{database}", self.port)
            }
        }
    }

    /// The server's log so far (for failure messages).
    pub fn log(&self) -> String {
        std::fs::read_to_string(Path::new(&self.dir).join("log")).unwrap_or_default()
    }
}
