//! `seal-signer serve --config signer.json`: the signer service;
//! `seal-signer rewrap --config signer.json`: re-encrypts software keys
//! under the default alias (with the signer stopped).

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
    /// Re-encrypt every software key under `default_alias` (after an alias
    /// rotation; the passphrases of the old aliases must still be set).
    /// Run it while the signer is stopped.
    Rewrap {
        /// The config file.
        #[arg(long)]
        config: PathBuf,
    },
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
        Command::Serve { config } => {
            let config = match load(&config) {
                Ok(c) => c,
                Err(code) => return code,
            };
            tracing_subscriber::fmt()
                .with_env_filter(
                    tracing_subscriber::EnvFilter::try_from_default_env()
                        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(&config.logging.level)),
                )
                .with_writer(std::io::stderr)
                .init();
            let rt = match tokio::runtime::Runtime::new() {
                Ok(rt) => rt,
                Err(e) => {
                    eprintln!("seal-signer: {e}");
                    return ExitCode::FAILURE;
                }
            };
            let env = |k: &str| std::env::var(k).ok();
            let result = rt.block_on(async {
                let running = seal_signer::server::start(&config, &env).await?;
                println!("seal-signer listening on {}", running.addr);
                running.wait_for_signal().await.map_err(|e| e.to_string())
            });
            match result {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("seal-signer: {e}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}
