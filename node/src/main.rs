//! `seal-node`: Seal's server node.
//!
//! * `seal-node dev` — one node, no config: plain HTTP on 127.0.0.1:4443,
//!   data in `./seal-data`, in-process signer. For development only.
//! * `seal-node serve --config <file>` — a node from a Notary-style JSON config.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use seal_node::config::{process_env, NodeConfig};
use seal_node::server::{dev_config, start};

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
}

fn init_logging(level: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("SEAL_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(format!("{level},openraft=warn")));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .init();
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let env = process_env();
    let (config, dev) = match cli.command {
        Cmd::Dev { addr, data_dir } => match dev_config(&addr, &data_dir, &env) {
            Ok(c) => (c, true),
            Err(e) => {
                eprintln!("seal-node: {e}");
                return ExitCode::FAILURE;
            }
        },
        Cmd::Serve { config } => match NodeConfig::load(&config, &env) {
            Ok(c) => (c, false),
            Err(e) => {
                eprintln!("seal-node: {e}");
                return ExitCode::FAILURE;
            }
        },
    };
    // The signer passphrase variable is named by the config; read it here,
    // once, with the rest of the environment.
    let mut env = env;
    if let Ok(p) = std::env::var(&config.signer.passphrase_env) {
        env.insert(config.signer.passphrase_env.clone(), p);
    }
    init_logging(&config.logging.level);
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("seal-node: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async move {
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
