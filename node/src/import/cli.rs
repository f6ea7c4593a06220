//! The `seal-node import-notary` command line.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;
use seal_raft::ClusterTls;

use super::{run, ImportOptions};

/// The environment variable holding the Notary database URL (so a password stays out of argv).
pub const DATABASE_URL_ENV: &str = "SEAL_IMPORT_DATABASE_URL";

/// `seal-node import-notary`.
#[derive(Debug, Args)]
pub struct ImportArgs {
    /// The Notary server's database, `mysql://user@host/db` or `postgres://user@host/db`
    /// (`?socket=` / `?host=` for a unix socket). Without it, read from SEAL_IMPORT_DATABASE_URL,
    /// which is where a URL with a password belongs (argv is visible to every local user).
    #[arg(long)]
    pub database: Option<String>,
    /// Any node of the running cluster.
    #[command(flatten)]
    pub access: crate::cluster::ClusterAccess,
    /// Instead of a running cluster: the config of a stopped single node (no `raft.addr`) to
    /// import into through its own log.
    #[arg(long, conflicts_with_all = ["addr", "dev_data_dir"])]
    pub config: Option<PathBuf>,
    /// Instead of a running cluster: a stopped `seal-node dev` data directory.
    #[arg(long, conflicts_with_all = ["addr", "config"])]
    pub dev_data_dir: Option<PathBuf>,
    /// Collections sent to the leader at once.
    #[arg(long, default_value_t = 16)]
    pub concurrency: usize,
    /// Only read and verify every collection; write nothing (no cluster needed).
    #[arg(long)]
    pub check: bool,
}

/// Runs the command; the report goes to stdout, progress and errors to stderr. Exits with 1
/// when any collection failed (the others are imported), 2 when nothing could be done.
pub fn main(args: ImportArgs, env: impl Fn(&str) -> Option<String>) -> ExitCode {
    let fail = |e: &dyn std::fmt::Display| {
        eprintln!("seal-node import-notary: {e}");
        ExitCode::from(2)
    };
    let Some(database_url) = args.database.or_else(|| env(DATABASE_URL_ENV)) else {
        return fail(&format!("--database or {DATABASE_URL_ENV} is required"));
    };
    let node_env = crate::config::process_env();
    let local = match (&args.config, &args.dev_data_dir) {
        (Some(path), _) => match crate::config::NodeConfig::load(path, &node_env) {
            Ok(config) => Some(super::LocalTarget {
                config,
                env: node_env.clone(),
                dev: false,
            }),
            Err(e) => return fail(&e),
        },
        (None, Some(dir)) => match crate::server::dev_config("127.0.0.1:0", dir, &node_env) {
            Ok(config) => Some(super::LocalTarget {
                config,
                env: node_env.clone(),
                dev: true,
            }),
            Err(e) => return fail(&e),
        },
        (None, None) => None,
    };
    let (addr, tls) = match args.access.given() {
        Some(given) => given,
        None if args.check || local.is_some() => (
            String::new(),
            ClusterTls {
                ca_file: PathBuf::new(),
                cert_file: PathBuf::new(),
                key_file: PathBuf::new(),
            },
        ),
        _ => return fail(&"--addr, --ca, --cert and --key are required (or --config, --dev-data-dir, --check)"),
    };
    let opts = ImportOptions {
        database_url,
        addr,
        tls,
        concurrency: args.concurrency,
        check_only: args.check,
        local,
        progress: true,
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => return fail(&format!("cannot start the runtime: {e}")),
    };
    match runtime.block_on(run(&opts)) {
        Ok(report) => {
            print!("{}", report.render());
            if report.failed.is_empty() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Err(e) => fail(&e),
    }
}
