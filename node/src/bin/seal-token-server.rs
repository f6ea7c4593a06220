//! `seal-token-server --config <file>`: a token issuer for DEVELOPMENT and
//! tests (Docker registry v2 tokens for `auth.type = "token"`, see
//! docs/auth.md); `seal-token-server hash-password` hashes a password (read
//! from stdin, prompted on a terminal) for its users file. A binary of its
//! own, so that the `seal-node` that serves has no token issuer in it.

use std::io::{IsTerminal as _, Read as _};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "seal-token-server",
    version,
    about = "Seal's token issuer for DEVELOPMENT and tests (Docker registry v2 tokens for auth.type = \"token\"): not for production",
    args_conflicts_with_subcommands = true
)]
struct TokenServerArgs {
    #[command(subcommand)]
    action: Option<TokenServerCmd>,
    /// The token server's JSON config file (see docs/auth.md).
    #[arg(short, long)]
    config: Option<PathBuf>,
}

#[derive(Subcommand)]
enum TokenServerCmd {
    /// Read a password from stdin (prompted on a terminal) and print its
    /// argon2id hash for the users file.
    HashPassword,
}

/// The password for `hash-password`: prompted twice on a terminal,
/// otherwise all of stdin without one trailing newline.
fn read_new_password() -> Result<String, String> {
    let password = if std::io::stdin().is_terminal() {
        let p = rpassword::prompt_password("Password: ").map_err(|e| e.to_string())?;
        let again = rpassword::prompt_password("Repeat: ").map_err(|e| e.to_string())?;
        if p != again {
            return Err("the passwords differ".into());
        }
        p
    } else {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .map_err(|e| format!("reading stdin: {e}"))?;
        let trimmed = text
            .strip_suffix('\n')
            .map(|t| t.strip_suffix('\r').unwrap_or(t))
            .unwrap_or(&text);
        trimmed.to_owned()
    };
    if password.is_empty() {
        return Err("empty password".into());
    }
    Ok(password)
}

fn main() -> ExitCode {
    let args = TokenServerArgs::parse();
    run(args)
}

fn run(args: TokenServerArgs) -> ExitCode {
    use seal_node::token_server::{hash_password, start, TokenServerConfig};
    let fail = |e: &dyn std::fmt::Display| {
        eprintln!("seal-token-server: {e}");
        ExitCode::FAILURE
    };
    let path = match (args.action, args.config) {
        (Some(TokenServerCmd::HashPassword), _) => {
            return match read_new_password().and_then(|p| hash_password(&p).map_err(|e| e.to_string())) {
                Ok(hash) => {
                    println!("{hash}");
                    ExitCode::SUCCESS
                }
                Err(e) => fail(&e),
            };
        }
        (None, Some(path)) => path,
        (None, None) => return fail(&"--config <file> is required (or the hash-password command)"),
    };
    let config = match TokenServerConfig::load(&path) {
        Ok(c) => c,
        Err(e) => return fail(&e),
    };
    seal_node::server::init_logging(&config.log_level);
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => return fail(&format!("cannot start the runtime: {e}")),
    };
    runtime.block_on(async move {
        let running = match start(config).await {
            Ok(r) => r,
            Err(e) => return fail(&e),
        };
        println!("Seal development token server: {}", running.realm());
        match running.wait_for_signal().await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => fail(&e),
        }
    })
}
