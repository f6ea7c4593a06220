//! `seal-signer serve --config signer.json`: the signer service;
//! `seal-signer rewrap --config signer.json`: re-encrypts software keys
//! and threshold shares under the default alias (with the signer stopped);
//! `seal-signer import-notary --config signer.json --database <url>`:
//! notary-signer's keys into this signer's store (with the signer stopped);
//! `seal-signer status --config signer.json`: asks every signer of a
//! threshold cluster what it is and which keys it holds shares of;
//! `seal-signer refresh-shares --config signer.json --key-id <id>`: new
//! shares of a threshold key on every signer, same group key;
//! `seal-signer repair-share --config signer.json --key-id <id>`: a signer
//! that lost its share gets it back from k others, same group key;
//! `seal-signer backup --config signer.json --out <dir>`: a copy of the
//! store, taken while the signer runs;
//! `seal-signer restore --from <dir> --config signer.json`: a new signer's
//! data directory seeded from a backup.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "seal-signer",
    version,
    about = "Seal's signer service (Notary-signer compatible)"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve gRPC over mutual TLS.
    Serve {
        /// The config file.
        #[arg(long)]
        config: PathBuf,
    },
    /// Re-encrypt every software key and threshold share under
    /// `default_alias` (after an alias rotation; the passphrases of the old
    /// aliases must still be set).
    /// Run it while the signer is stopped.
    Rewrap {
        /// The config file.
        #[arg(long)]
        config: PathBuf,
    },
    /// Import notary-signer's keys (its `private_keys` table in MySQL/MariaDB or PostgreSQL) as
    /// software keys under `default_alias`, keeping their key IDs. Each Notary alias's passphrase
    /// comes from NOTARY_SIGNER_<ALIAS>. Run it while the signer is stopped. Exits with 1 when a
    /// key failed (named in the report; the others are imported).
    ImportNotary {
        /// The config file.
        #[arg(long)]
        config: PathBuf,
        /// notary-signer's database, `mysql://…` or `postgres://…`; without it, read from
        /// SEAL_IMPORT_DATABASE_URL (where a URL with a password belongs).
        #[arg(long)]
        database: Option<String>,
    },
    /// Ask this threshold signer and each of its peers (over mutual TLS,
    /// with this signer's certificate) whether it answers and which keys it
    /// holds shares of. Exits with 1 when one does not answer or disagrees
    /// with this config.
    Status {
        /// The config file of one signer of the cluster.
        #[arg(long)]
        config: PathBuf,
        /// Where this signer answers (default: localhost and the port of
        /// `server.grpc_addr`); the host is the TLS name checked.
        #[arg(long)]
        addr: Option<String>,
        /// Print the report as one JSON object (field names in docs/signer.md).
        #[arg(long)]
        json: bool,
    },
    /// Have this running threshold signer replace every signer's share of a
    /// key by a new one (FROST share refresh with all signers); the group
    /// public key, and so root.json, stay the same.
    RefreshShares {
        /// The config file of one signer of the cluster (its certificate
        /// is the one allowed to ask).
        #[arg(long)]
        config: PathBuf,
        /// The threshold key.
        #[arg(long)]
        key_id: String,
        /// Where this signer answers (default: localhost and the port of
        /// `server.grpc_addr`).
        #[arg(long)]
        addr: Option<String>,
    },
    /// Have this running threshold signer, which lost its share of a key
    /// (started again with an empty data directory), get the same share
    /// back from k other signers holding it; the group public key, and so
    /// root.json, stay the same.
    RepairShare {
        /// The config file of the signer that lost its share (its
        /// certificate is the one allowed to ask).
        #[arg(long)]
        config: PathBuf,
        /// The threshold key.
        #[arg(long)]
        key_id: String,
        /// Where this signer answers (default: localhost and the port of
        /// `server.grpc_addr`).
        #[arg(long)]
        addr: Option<String>,
    },
    /// Back up this signer's store (key records, still encrypted, and
    /// high-water marks) to a new directory: `db/` and `backup.json`. Works
    /// while the signer runs.
    Backup {
        /// The signer's config file (its `storage.data_dir` is read).
        #[arg(long)]
        config: PathBuf,
        /// The directory to write; it must not exist.
        #[arg(long)]
        out: PathBuf,
    },
    /// Seed a signer's data directory from a backup (with the signer
    /// stopped; its `storage.data_dir` must hold no store yet).
    Restore {
        /// The backup directory (made by `seal-signer backup`).
        #[arg(long)]
        from: PathBuf,
        /// The config of the signer to restore.
        #[arg(long)]
        config: PathBuf,
    },
}

/// Loads the config at `path` and runs the threshold-key operation `f` on it (named `what` in
/// errors), printing its report.
fn key_operation<F, Fut>(path: &std::path::Path, what: &str, f: F) -> ExitCode
where
    F: FnOnce(seal_signer::config::SignerConfig) -> Fut,
    Fut: std::future::Future<Output = Result<String, seal_signer::Error>>,
{
    let config = match load(path) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let outcome = tokio::runtime::Runtime::new()
        .map_err(seal_signer::Error::io("starting the runtime"))
        .and_then(|rt| rt.block_on(f(config)));
    match outcome {
        Ok(report) => {
            println!("{report}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("seal-signer: {what}: {e}");
            ExitCode::FAILURE
        }
    }
}

fn load(path: &std::path::Path) -> Result<seal_signer::config::SignerConfig, ExitCode> {
    seal_signer::config::SignerConfig::load(path).map_err(|e| {
        eprintln!("seal-signer: {e}");
        ExitCode::FAILURE
    })
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Rewrap { config } => {
            let config = match load(&config) {
                Ok(c) => c,
                Err(code) => return code,
            };
            match seal_signer::admin::rewrap(&config, &|k: &str| std::env::var(k).ok()) {
                Ok(report) => {
                    println!("{report}");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("seal-signer: rewrap: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::ImportNotary { config, database } => {
            let config = match load(&config) {
                Ok(c) => c,
                Err(code) => return code,
            };
            let env = |k: &str| std::env::var(k).ok();
            let Some(url) = database.or_else(|| env("SEAL_IMPORT_DATABASE_URL")) else {
                eprintln!("seal-signer: import-notary: --database or SEAL_IMPORT_DATABASE_URL is required");
                return ExitCode::from(2);
            };
            let rows = tokio::runtime::Runtime::new()
                .map_err(seal_signer::Error::io("starting the runtime"))
                .and_then(|rt| rt.block_on(seal_signer::import::read_keys(&url)));
            match rows.and_then(|(rows, deleted)| seal_signer::import::import_keys(&config, &rows, deleted, &env)) {
                Ok(report) => {
                    println!("{report}");
                    if report.failed.is_empty() {
                        ExitCode::SUCCESS
                    } else {
                        ExitCode::FAILURE
                    }
                }
                Err(e) => {
                    eprintln!("seal-signer: import-notary: {e}");
                    ExitCode::from(2)
                }
            }
        }
        Command::Status { config, addr, json } => {
            let config = match load(&config) {
                Ok(c) => c,
                Err(code) => return code,
            };
            let report = tokio::runtime::Runtime::new()
                .map_err(seal_signer::Error::io("starting the runtime"))
                .and_then(|rt| rt.block_on(seal_signer::admin::status(&config, addr.as_deref())));
            match report {
                Ok(report) => {
                    if json {
                        println!("{}", report.to_json());
                    } else {
                        print!("{report}");
                    }
                    if report.all_well() {
                        ExitCode::SUCCESS
                    } else {
                        ExitCode::FAILURE
                    }
                }
                Err(e) => {
                    eprintln!("seal-signer: status: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::RefreshShares { config, key_id, addr } => {
            key_operation(&config, "refresh-shares", |config| async move {
                let public = seal_signer::admin::refresh_shares(&config, &key_id, addr.as_deref()).await?;
                Ok(format!(
                    "refreshed every signer's share of {key_id}; group public key unchanged: {}",
                    hex::encode(public)
                ))
            })
        }
        Command::RepairShare { config, key_id, addr } => key_operation(&config, "repair-share", |config| async move {
            let public = seal_signer::admin::repair_share(&config, &key_id, addr.as_deref()).await?;
            Ok(format!(
                "repaired this signer's share of {key_id}; group public key unchanged: {}",
                hex::encode(public)
            ))
        }),
        Command::Backup { config, out } => {
            let config = match load(&config) {
                Ok(c) => c,
                Err(code) => return code,
            };
            match seal_signer::backup::backup(&config.storage.data_dir, &out) {
                Ok(manifest) => {
                    println!(
                        "backup of {} written to {}: {}",
                        config.storage.data_dir.display(),
                        out.display(),
                        seal_signer::backup::describe(&manifest)
                    );
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("seal-signer: backup: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Restore { from, config } => {
            let config = match load(&config) {
                Ok(c) => c,
                Err(code) => return code,
            };
            match seal_signer::backup::restore(&from, &config.storage.data_dir) {
                Ok(manifest) => {
                    println!(
                        "restored {} into {}: {} Start the signer with `seal-signer serve`.",
                        from.display(),
                        config.storage.data_dir.display(),
                        seal_signer::backup::describe(&manifest)
                    );
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("seal-signer: restore: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Serve { config } => {
            let config = match load(&config) {
                Ok(c) => c,
                Err(code) => return code,
            };
            match seal_signer::server::run(&config, &|k: &str| std::env::var(k).ok()) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("seal-signer: {e}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}
