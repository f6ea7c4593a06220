//! `seal`: Notary's client command set over Seal's client library.
//!
//! This file holds the global options and start-up; the commands are in
//! `cmd/` (`mod.rs` the collection commands and what every command shares,
//! `delegation.rs` and `key.rs` their groups).

mod cmd;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use seal_client::config::{self, FileConfig};
use seal_client::error::ClientError;
use seal_client::keystore::EnvOrPrompt;
use seal_client::remote::RemoteConfig;
use seal_client::repo::Settings;

#[derive(Parser)]
#[command(
    name = "seal",
    version,
    about = "Sign and verify content with Seal (Notary-compatible client)"
)]
struct Cli {
    /// Server URL (default from the config file, else https://notary-server:4443).
    #[arg(short = 's', long = "server", global = true)]
    server: Option<String>,
    /// Trust directory (default ~/.notary).
    #[arg(short = 'd', long = "trustDir", global = true)]
    trust_dir: Option<PathBuf>,
    /// Config file (default <trust dir>/config.json).
    #[arg(short = 'c', long = "configFile", global = true)]
    config_file: Option<PathBuf>,
    /// CA bundle for the server's certificate.
    #[arg(long = "tlscacert", global = true)]
    tls_ca_cert: Option<PathBuf>,
    /// Client certificate for mutual TLS.
    #[arg(long = "tlscert", global = true)]
    tls_cert: Option<PathBuf>,
    /// Client key for mutual TLS.
    #[arg(long = "tlskey", global = true)]
    tls_key: Option<PathBuf>,
    /// Debug output.
    #[arg(short = 'D', long = "debug", global = true)]
    debug: bool,
    /// Verbose output.
    #[arg(short = 'v', long = "verbose", global = true)]
    verbose: bool,
    #[command(subcommand)]
    command: cmd::Command,
}

fn load_settings(cli: &Cli) -> Result<Settings, ClientError> {
    let cwd = std::env::current_dir().map_err(ClientError::io("."))?;
    let (file, base) = match &cli.config_file {
        Some(p) => {
            let base = p.parent().map_or_else(|| cwd.clone(), |d| cwd.join(d));
            (FileConfig::load(p, true)?, base)
        }
        None => {
            let dir = cli.trust_dir.clone().unwrap_or_else(config::default_trust_dir);
            (FileConfig::load(&dir.join("config.json"), false)?, dir)
        }
    };
    let file = file.unwrap_or_default();
    let trust_dir = match (&cli.trust_dir, &file.trust_dir) {
        (Some(d), _) => d.clone(),
        (None, Some(d)) => config::resolve(d, &base),
        (None, None) => config::default_trust_dir(),
    };
    let rs = &file.remote_server;
    let remote = RemoteConfig {
        url: cli
            .server
            .clone()
            .or_else(|| rs.url.clone())
            .unwrap_or_else(|| config::DEFAULT_SERVER.to_owned()),
        root_ca: cli
            .tls_ca_cert
            .clone()
            .or_else(|| rs.root_ca.as_deref().map(|p| config::resolve(p, &base))),
        tls_cert: cli
            .tls_cert
            .clone()
            .or_else(|| rs.tls_client_cert.as_deref().map(|p| config::resolve(p, &base))),
        tls_key: cli
            .tls_key
            .clone()
            .or_else(|| rs.tls_client_key.as_deref().map(|p| config::resolve(p, &base))),
        skip_tls_verify: rs.skip_tls_verify,
    };
    Ok(Settings {
        trust_dir,
        remote,
        pinned: file.trust_pinning.certs,
        disable_tofu: file.trust_pinning.disable_tofu,
    })
}

fn run(cli: Cli) -> Result<(), ClientError> {
    let ctx = cmd::Ctx {
        settings: load_settings(&cli)?,
        verbose: cli.verbose || cli.debug,
        pass: std::cell::RefCell::new(EnvOrPrompt::from_process_env()),
    };
    if ctx.verbose {
        eprintln!(
            "trust dir {}, server {}",
            ctx.settings.trust_dir.display(),
            ctx.settings.remote.url
        );
    }
    cmd::run(&ctx, cli.command)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("* fatal: {e}");
            ExitCode::FAILURE
        }
    }
}
