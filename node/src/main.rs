//! `seal-node`: Seal's server node.
//!
//! * `seal-node dev` — one node, no config: plain HTTP on 127.0.0.1:4443,
//!   data in `./seal-data`, in-process signer. For development only.
//! * `seal-node serve --config <file>` — a node from a Notary-style JSON config.
//! * `seal-node check-config --config <file>` — load and check that config as `serve` would,
//!   print `config OK: <summary>` (exit 0) or the error (exit 1); starts and opens nothing.
//! * `seal-node cluster init|add-learner|promote|remove|status --addr <raft addr> --ca … --cert …
//!   --key …` — administer a cluster (see docs/cluster.md); `status --digest` adds the state
//!   digest of the node asked.
//! * `seal-node import-notary --database <url> --addr <raft addr> --ca … --cert … --key …` —
//!   import a Notary server's database into a running cluster (docs/migration.md).
//!
//! The development token issuer is another binary, `seal-token-server`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use seal_node::config::{process_env, NodeConfig};
use seal_node::server::{dev_config, start};

/// mimalloc instead of glibc's malloc: per-thread free lists without glibc's arena locking and
/// consolidation, which took about a tenth of the node's CPU under reads (docs/benchmarks.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "seal-node",
    version,
    about = "Seal server node: a Notary-compatible trust server on Raft"
)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Start a single development node: plain HTTP, local signer, no config.
    Dev {
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1:4443")]
        addr: String,
        /// Data directory (RocksDB, keys).
        #[arg(long, default_value = "./seal-data")]
        data_dir: PathBuf,
    },
    /// Start a node from a JSON config file (Notary server's keys plus Seal's).
    Serve {
        /// The config file.
        #[arg(short, long)]
        config: PathBuf,
    },
    /// Load and check a config file as `serve` would (environment overrides included), then
    /// exit: `config OK: <summary>` and 0, or the error and 1. Starts and opens nothing.
    CheckConfig {
        /// The config file.
        #[arg(short, long)]
        config: PathBuf,
    },
    /// Administer a cluster through one node's Raft address (mutual TLS with the cluster CA).
    Cluster(ClusterArgs),
    /// Write a consistent copy of a node's data (a running cluster node through --addr, or a
    /// stopped node through --config) to a new directory (docs/operations.md).
    Backup(seal_node::operate::BackupArgs),
    /// Seed a new node from a backup: the single voter of a new cluster, with a new cluster id
    /// (docs/operations.md).
    Restore(seal_node::operate::RestoreArgs),
    /// Import a Notary server's collections (its MySQL/MariaDB or PostgreSQL database) into a
    /// running cluster, through its leader (docs/migration.md).
    ImportNotary(seal_node::import::cli::ImportArgs),
    /// Start a cluster on loopback for trying Seal out: 3 voters, 1 learner and a signer (or a
    /// k-of-n threshold signer cluster), with
    /// generated certificates, all under one directory; runs until Ctrl-C. Not for production.
    LocalCluster {
        /// Directory for certificates, configs, data and logs (reused if it exists).
        #[arg(long, default_value = "./seal-local-cluster")]
        dir: PathBuf,
        /// The signer's port; node i listens on base+i (HTTP) and base+10+i (Raft). 0 picks free
        /// ports (remembered in the directory).
        #[arg(long, default_value_t = 4450)]
        base_port: u16,
        /// How many signers: 1 (software keys), or n >= 2 holding every key as FROST shares
        /// (needs --threshold); every node lists them all and fails over between them.
        #[arg(long, default_value_t = 1)]
        signers: u16,
        /// With --signers n: how many signers sign together (2 <= k <= n).
        #[arg(long)]
        threshold: Option<u16>,
    },
}

#[derive(Args)]
struct ClusterArgs {
    #[command(subcommand)]
    action: ClusterCmd,
    /// The node to ask.
    #[command(flatten)]
    access: seal_node::cluster::ClusterAccess,
}

#[derive(Subcommand)]
enum ClusterCmd {
    /// Form a new cluster on the node asked, which must be among the members.
    Init {
        /// An initial voter, `id=host:port` (repeat for each).
        #[arg(long = "member", required = true)]
        members: Vec<String>,
    },
    /// Add a node as a learner (a read replica catching up with the log).
    AddLearner {
        /// Its node id.
        #[arg(long)]
        id: u64,
        /// Its Raft address.
        #[arg(long)]
        raft_addr: String,
    },
    /// Make a learner a voter.
    Promote {
        /// Its node id.
        #[arg(long)]
        id: u64,
    },
    /// Remove a voter or learner.
    Remove {
        /// Its node id.
        #[arg(long)]
        id: u64,
    },
    /// Show the leader, the term and every member's replication progress.
    Status {
        /// Also print the digest of the state machine of the node asked (which then answers
        /// itself rather than the leader) and the log index it covers: `state digest: <hex>` and
        /// `state digest index: <n>`. Reads that node's whole state.
        #[arg(long)]
        digest: bool,
        /// Print the same as one JSON object (field names in docs/cluster.md).
        #[arg(long)]
        json: bool,
    },
    /// After a majority of voters is lost for good: make this stopped node the single voter of
    /// a new cluster with its data (a new cluster id; docs/operations.md says what may be lost).
    ForceNew(seal_node::operate::ForceNewArgs),
}

/// Loads and checks the config `serve` runs with: its keys and values, then the refusal to
/// serve without TLS or authentication unless it says `"insecure": true`.
fn load_for_serving(path: &std::path::Path, env: &seal_node::config::Env) -> Result<NodeConfig, String> {
    let c = NodeConfig::load(path, env).map_err(|e| e.to_string())?;
    if !c.insecure && !c.insecure_reasons().is_empty() {
        return Err(format!(
            "refusing to serve with {}: anyone could read and write every collection in clear. \
             Configure TLS and auth, or set \"insecure\": true at the top of the config (development and tests only)",
            c.insecure_reasons().join(" and ")
        ));
    }
    Ok(c)
}

fn cluster_main(args: ClusterArgs) -> ExitCode {
    use seal_raft::AdminClient;
    let args = match args.action {
        ClusterCmd::ForceNew(force) => return seal_node::operate::force_new_main(force),
        _ => args,
    };
    let fail = |e: &dyn std::fmt::Display| {
        eprintln!("seal-node cluster: {e}");
        ExitCode::FAILURE
    };
    let Some((addr, tls)) = args.access.given() else {
        return fail(&"--addr, --ca, --cert and --key are required");
    };
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => return fail(&format!("cannot start the runtime: {e}")),
    };
    runtime.block_on(async move {
        let client = match AdminClient::new(&addr, &tls) {
            Ok(c) => c,
            Err(e) => return fail(&e),
        };
        let done = |r: Result<seal_raft::admin::AdminAnswer, seal_raft::AdminError>, what: &str| match r {
            Ok(a) => {
                println!("{what} (node {}, log index {})", a.answered_by, a.log_index);
                ExitCode::SUCCESS
            }
            Err(e) => fail(&e),
        };
        match args.action {
            ClusterCmd::Init { members } => {
                let mut map = std::collections::BTreeMap::new();
                for m in &members {
                    let parsed = m
                        .split_once('=')
                        .and_then(|(id, a)| Some((id.trim().parse::<u64>().ok()?, a.trim().to_owned())));
                    match parsed {
                        Some((id, a)) => {
                            map.insert(id, a);
                        }
                        None => return fail(&format!("--member {m:?}: expected id=host:port")),
                    }
                }
                done(client.init(&map).await, "cluster initialized")
            }
            ClusterCmd::AddLearner { id, raft_addr } => done(
                client.add_learner(id, &raft_addr).await,
                &format!("node {id} added as a learner"),
            ),
            ClusterCmd::Promote { id } => done(client.promote(id).await, &format!("node {id} is a voter")),
            ClusterCmd::Remove { id } => done(client.remove(id).await, &format!("node {id} removed")),
            ClusterCmd::Status { digest, json } => match if digest {
                client.status_with_digest().await
            } else {
                client.status().await
            } {
                Ok(s) if json => {
                    println!("{}", seal_node::cluster::format_status_json(&s));
                    ExitCode::SUCCESS
                }
                Ok(s) => {
                    print!("{}", seal_node::cluster::format_status(&s));
                    ExitCode::SUCCESS
                }
                Err(e) => fail(&e),
            },
            // Handled above: it works on a stopped node, not through a connection.
            ClusterCmd::ForceNew(_) => fail(&"force-new works on a stopped node: give --config"),
        }
    })
}

fn main() -> ExitCode {
    // One rustls provider for every TLS use of the process (node, Raft, admin, signer client),
    // chosen here rather than left to which of rustls's providers the build happens to enable.
    seal_signer::install_crypto_provider();
    let cli = Cli::parse();
    let env = process_env();
    let mut config_path = None;
    let (config, dev) = match cli.command {
        Cmd::Dev { addr, data_dir } => match dev_config(&addr, &data_dir, &env) {
            Ok(c) => (c, true),
            Err(e) => {
                eprintln!("seal-node: {e}");
                return ExitCode::FAILURE;
            }
        },
        Cmd::Serve { config } => match load_for_serving(&config, &env) {
            Ok(c) => {
                config_path = Some(config);
                (c, false)
            }
            Err(e) => {
                eprintln!("seal-node: {e}");
                return ExitCode::FAILURE;
            }
        },
        Cmd::CheckConfig { config } => {
            return match load_for_serving(&config, &env) {
                Ok(c) => {
                    for w in &c.warnings {
                        println!("warning: {w}");
                    }
                    println!("config OK: {}", c.summary());
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("seal-node: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Cmd::Cluster(args) => return cluster_main(args),
        Cmd::Backup(args) => return seal_node::operate::backup_main(args),
        Cmd::Restore(args) => return seal_node::operate::restore_main(args),
        Cmd::ImportNotary(args) => return seal_node::import::cli::main(args, |k| std::env::var(k).ok()),
        Cmd::LocalCluster {
            dir,
            base_port,
            signers,
            threshold,
        } => {
            let options = seal_node::local_cluster::LocalClusterOptions {
                dir,
                base_port,
                signers,
                threshold,
            };
            return match options.check().and_then(|()| seal_node::local_cluster::run(&options)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("seal-node local-cluster: {e}");
                    ExitCode::FAILURE
                }
            };
        }
    };
    // The signer passphrase variable is named by the config; read it here,
    // once, with the rest of the environment.
    let mut env = env;
    if let Ok(p) = std::env::var(&config.signer.passphrase_env) {
        env.insert(config.signer.passphrase_env.clone(), p);
    }
    let log_level = seal_node::server::init_logging_as(&config.logging.level, config.logging.format);
    for w in &config.warnings {
        tracing::warn!("{w}");
    }
    if !dev && !config.insecure_reasons().is_empty() {
        tracing::warn!(
            "INSECURE: serving with {} because the config sets \"insecure\": true; not for production",
            config.insecure_reasons().join(" and ")
        );
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("seal-node: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async move {
        if let Some(path) = config_path {
            seal_node::server::spawn_log_level_reloader(path, env.clone(), log_level);
        }
        let running = match start(config, &env, dev).await {
            Ok(r) => r,
            Err(e) => {
                eprintln!("seal-node: {e}");
                return ExitCode::FAILURE;
            }
        };
        let scheme = "http";
        if dev {
            println!("Seal dev node listening on {scheme}://{}", running.addr);
            println!("Point a Notary-compatible client at it, for example:");
            println!("  notary -s {scheme}://{} -d ~/.notary list <gun>", running.addr);
        } else {
            tracing::info!(addr = %running.addr, "listening");
        }
        match running.wait_for_signal().await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("seal-node: {e}");
                ExitCode::FAILURE
            }
        }
    })
}
