//! The operator's commands on a node's data: `seal-node backup` (a running cluster node through
//! its admin service, or a stopped node's data directory), `seal-node restore` (a new node seeded
//! from a backup, the single voter of a new cluster) and `seal-node cluster force-new
//! --from-this-node` (a surviving node made the single voter of a new cluster after a majority
//! of voters is lost for good). The work is `seal_raft::recovery`'s; this is the command line.
//! docs/operations.md is the runbook.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Args;
use seal_raft::recovery::{DataSummary, ForcedCluster};

use crate::config::{process_env, NodeConfig};

/// `seal-node backup`.
#[derive(Debug, Args)]
pub struct BackupArgs {
    /// The directory to write (must not exist): `db/` (the checkpoint) and `backup.json`. With
    /// --addr, an absolute path on the node's machine.
    #[arg(long)]
    pub out: PathBuf,
    /// The running cluster node to back up.
    #[command(flatten)]
    pub access: crate::cluster::ClusterAccess,
    /// Instead of a running node: the config of a stopped node, whose data directory is read.
    #[arg(long, required_unless_present = "addr", conflicts_with = "addr")]
    pub config: Option<PathBuf>,
}

/// `seal-node restore`.
#[derive(Debug, Args)]
pub struct RestoreArgs {
    /// The backup directory (made by `seal-node backup`).
    #[arg(long)]
    pub from: PathBuf,
    /// The config of the new node; its `storage.data_dir` must hold no data yet.
    #[arg(long)]
    pub config: PathBuf,
    /// The Raft address its peers will reach it at (default: its `raft.bootstrap` entry, else
    /// `raft.addr`; for a single node, its `server.http_addr`).
    #[arg(long)]
    pub raft_addr: Option<String>,
}

/// `seal-node cluster force-new`.
#[derive(Debug, Args)]
pub struct ForceNewArgs {
    /// Required: make the node this config describes (stopped) the single voter of a new
    /// cluster, with its data.
    #[arg(long, required = true)]
    pub from_this_node: bool,
    /// The stopped node's config.
    #[arg(long)]
    pub config: PathBuf,
    /// The Raft address its peers will reach it at (default: its address in the membership it
    /// holds, else its `raft.bootstrap` entry, else `raft.addr`).
    #[arg(long)]
    pub raft_addr: Option<String>,
}

fn fail(command: &str, e: &dyn std::fmt::Display) -> ExitCode {
    eprintln!("seal-node {command}: {e}");
    ExitCode::FAILURE
}

fn load(path: &Path) -> Result<NodeConfig, String> {
    NodeConfig::load(path, &process_env()).map_err(|e| e.to_string())
}

/// The Raft data directory of a node (`seal_raft::RaftConfig::data_dir`).
fn raft_dir(config: &NodeConfig) -> PathBuf {
    config.storage.data_dir.join("raft")
}

/// The address a node's peers reach it at: `flag`, else what `known` says (the membership it
/// holds), else its `raft.bootstrap` entry, else `raft.addr` unless it is a wildcard; for a single
/// node, its HTTP address (what its one-voter membership records).
fn advertised_addr(config: &NodeConfig, flag: Option<String>, known: Option<&String>) -> Result<String, String> {
    if let Some(a) = flag {
        return Ok(a);
    }
    if let Some(a) = known {
        return Ok(a.clone());
    }
    let id = config.raft.node_id;
    if let Some(m) = config.raft.bootstrap.iter().find(|m| m.id == id) {
        return Ok(m.raft_addr.clone());
    }
    match &config.raft.addr {
        Some(a) if !(a.starts_with("0.0.0.0:") || a.starts_with("[::]:")) => Ok(a.clone()),
        Some(a) => Err(format!(
            "raft.addr {a} is a wildcard: give the address peers reach this node at with --raft-addr"
        )),
        None => config
            .server
            .http_addr
            .socket_addr()
            .map(|a| a.to_string())
            .ok_or_else(|| "server.http_addr is not an address".to_owned()),
    }
}

fn print_summary(what: &str, s: &DataSummary) {
    let opt = |v: Option<u64>| v.map_or("none".to_owned(), |v| v.to_string());
    println!("{what}:");
    println!("  node id: {}", opt(s.node_id));
    println!("  cluster id: {}", s.cluster_id.as_deref().unwrap_or("none"));
    println!("  format version: {}", s.format_version);
    println!("  applied index: {}", opt(s.applied_index));
    println!("  last log index: {}", opt(s.last_log_index));
    let members: Vec<String> = s
        .members
        .iter()
        .map(|(id, addr)| {
            let role = if s.voters.contains(id) { "voter" } else { "learner" };
            format!("{id}={addr} ({role})")
        })
        .collect();
    println!("  members: {}", members.join(", "));
}

fn print_forced(f: &ForcedCluster, node_id: u64, addr: &str) {
    println!("new cluster id: {}", f.cluster_id);
    println!(
        "node {node_id} at {addr} is now its only voter (membership entry {} in term {})",
        f.membership_index, f.term
    );
    let applied = f.before.applied_index.unwrap_or(0);
    let last = f.before.last_log_index.unwrap_or(0);
    if last > applied {
        println!(
            "log entries {}..={last} held but not yet applied will be committed and applied when it starts",
            applied + 1
        );
    }
    println!("start the node, then add new nodes with `seal-node cluster add-learner` and `promote`");
}

/// Runs `seal-node backup`.
pub fn backup_main(args: BackupArgs) -> ExitCode {
    const CMD: &str = "backup";
    if args.access.addr.is_some() {
        let Some((addr, tls)) = args.access.given() else {
            return fail(CMD, &"--addr needs --ca, --cert and --key");
        };
        if !args.out.is_absolute() {
            return fail(CMD, &"--out must be an absolute path on the node's machine");
        }
        let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
            Ok(r) => r,
            Err(e) => return fail(CMD, &format!("cannot start the runtime: {e}")),
        };
        let out = args.out.display().to_string();
        return runtime.block_on(async move {
            let client = match seal_raft::AdminClient::new(&addr, &tls) {
                Ok(c) => c,
                Err(e) => return fail(CMD, &e),
            };
            match client.backup(&out).await {
                Ok(summary) => {
                    print_summary(&format!("backup written to {out}"), &summary);
                    ExitCode::SUCCESS
                }
                Err(e) => fail(CMD, &e),
            }
        });
    }
    let Some(config) = args.config else {
        return fail(CMD, &"--addr or --config is required");
    };
    let config = match load(&config) {
        Ok(c) => c,
        Err(e) => return fail(CMD, &e),
    };
    let store = match seal_raft::recovery::open_existing(&raft_dir(&config)) {
        Ok(s) => s,
        Err(e) => return fail(CMD, &e),
    };
    match seal_raft::recovery::backup(&store, &args.out) {
        Ok(summary) => {
            print_summary(&format!("backup written to {}", args.out.display()), &summary);
            ExitCode::SUCCESS
        }
        Err(e) => fail(CMD, &e),
    }
}

/// Runs `seal-node restore`.
pub fn restore_main(args: RestoreArgs) -> ExitCode {
    const CMD: &str = "restore";
    let config = match load(&args.config) {
        Ok(c) => c,
        Err(e) => return fail(CMD, &e),
    };
    let addr = match advertised_addr(&config, args.raft_addr, None) {
        Ok(a) => a,
        Err(e) => return fail(CMD, &e),
    };
    let node_id = config.raft.node_id;
    match seal_raft::recovery::restore(&args.from, &raft_dir(&config), node_id, &addr) {
        Ok(forced) => {
            print_summary(&format!("restored from {}", args.from.display()), &forced.before);
            print_forced(&forced, node_id, &addr);
            ExitCode::SUCCESS
        }
        Err(e) => fail(CMD, &e),
    }
}

/// Runs `seal-node cluster force-new --from-this-node`.
pub fn force_new_main(args: ForceNewArgs) -> ExitCode {
    const CMD: &str = "cluster force-new";
    if !args.from_this_node {
        return fail(CMD, &"--from-this-node is required");
    }
    let config = match load(&args.config) {
        Ok(c) => c,
        Err(e) => return fail(CMD, &e),
    };
    let node_id = config.raft.node_id;
    let dir = raft_dir(&config);
    // The address the membership it holds gives it, read before anything is written (the store
    // is closed again before force_new_cluster opens it).
    let known = match seal_raft::recovery::open_existing(&dir) {
        Ok(store) => seal_raft::recovery::summarize(&store, &dir.join("db"))
            .ok()
            .and_then(|s| s.members.get(&node_id).cloned()),
        Err(e) => return fail(CMD, &e),
    };
    let addr = match advertised_addr(&config, args.raft_addr, known.as_ref()) {
        Ok(a) => a,
        Err(e) => return fail(CMD, &e),
    };
    match seal_raft::recovery::force_new_cluster(&dir, node_id, &addr, false) {
        Ok(forced) => {
            print_summary("this node held", &forced.before);
            print_forced(&forced, node_id, &addr);
            ExitCode::SUCCESS
        }
        Err(e) => fail(CMD, &e),
    }
}
