//! The commands: the collection commands here, with what every command
//! shares (the context, the repository handle, publishing, tables);
//! `delegation` and `key` hold their groups.

mod delegation;
mod key;
mod tuf;

use std::io::{IsTerminal as _, Read as _, Write as _};
use std::path::{Path, PathBuf};

use clap::{Args, Subcommand};
use seal_client::error::ClientError;
use seal_client::keystore::EnvOrPrompt;
use seal_client::repo::{Repository, Settings};
use seal_tuf::FileMeta;

pub use delegation::DelegationCmd;
pub use key::KeyCmd;

#[derive(Subcommand)]
pub enum Command {
    /// Initialize a collection: make its keys and first metadata.
    Init {
        gun: String,
        /// Root key to import (PEM) instead of using or making one.
        #[arg(long = "rootkey")]
        root_key: Option<PathBuf>,
        /// Root certificate (PEM) for the root key.
        #[arg(long = "rootcert")]
        root_cert: Option<PathBuf>,
        /// Publish at once.
        #[arg(short = 'p', long = "publish")]
        publish: bool,
    },
    /// Stage a target file for the next publish.
    Add {
        gun: String,
        target: String,
        file: PathBuf,
        #[command(flatten)]
        opts: TargetOpts,
    },
    /// Stage a target by its hashes and size.
    Addhash {
        gun: String,
        target: String,
        size: i64,
        /// Hex sha256 of the content.
        #[arg(long = "sha256")]
        sha256: Option<String>,
        /// Hex sha512 of the content.
        #[arg(long = "sha512")]
        sha512: Option<String>,
        #[command(flatten)]
        opts: TargetOpts,
    },
    /// Stage removing a target.
    Remove {
        gun: String,
        target: String,
        /// Roles to remove it from (default targets).
        #[arg(short = 'r', long = "roles")]
        roles: Vec<String>,
        /// Publish at once.
        #[arg(short = 'p', long = "publish")]
        publish: bool,
    },
    /// Publish the staged changes.
    Publish { gun: String },
    /// List the targets of a collection.
    List {
        gun: String,
        /// Only these roles (and what they delegate).
        #[arg(short = 'r', long = "roles")]
        roles: Vec<String>,
    },
    /// Show one target's hash and size.
    Lookup { gun: String, target: String },
    /// Show the staged changes.
    Status { gun: String },
    /// Drop staged changes.
    Reset {
        gun: String,
        /// Drop all of them.
        #[arg(long = "all")]
        all: bool,
        /// Drop change number N (as status shows), repeatable.
        #[arg(short = 'n', long = "number")]
        number: Vec<usize>,
    },
    /// Verify content read from stdin against a target; print it if it matches.
    Verify {
        gun: String,
        target: String,
        /// Read the content from this file instead of stdin.
        #[arg(short = 'i', long = "in")]
        input: Option<PathBuf>,
        /// Write the content to this file instead of stdout.
        #[arg(short = 'o', long = "out")]
        output: Option<PathBuf>,
        /// Print nothing on success.
        #[arg(short = 'q', long = "quiet")]
        quiet: bool,
    },
    /// Mark roles to be re-signed unchanged on the next publish.
    Witness {
        gun: String,
        roles: Vec<String>,
        /// Publish at once.
        #[arg(short = 'p', long = "publish")]
        publish: bool,
    },
    /// Delete a collection's local trust data (and the server's with --remote).
    Delete {
        gun: String,
        /// Also delete it on the server.
        #[arg(long = "remote")]
        remote: bool,
    },
    /// Manage delegations.
    #[command(subcommand)]
    Delegation(DelegationCmd),
    /// Manage keys.
    #[command(subcommand)]
    Key(KeyCmd),
    /// Administer standard TUF 1.0 repositories on the server (docs/tuf.md).
    #[command(subcommand)]
    Tuf(tuf::TufCmd),
}

#[derive(Args)]
pub struct TargetOpts {
    /// Delegation roles to add it to (default targets).
    #[arg(short = 'r', long = "roles")]
    roles: Vec<String>,
    /// JSON file with custom data for the target.
    #[arg(long = "custom")]
    custom: Option<PathBuf>,
    /// Publish at once.
    #[arg(short = 'p', long = "publish")]
    publish: bool,
}

/// What every command runs with.
pub struct Ctx {
    /// Where things are.
    pub settings: Settings,
    /// Say more on stderr.
    pub verbose: bool,
    /// One source per command: a passphrase typed once is not asked again.
    pub pass: std::cell::RefCell<EnvOrPrompt>,
}

fn now() -> time::OffsetDateTime {
    time::OffsetDateTime::now_utc()
}

fn repo(ctx: &Ctx, gun: &str) -> Result<Repository, ClientError> {
    Repository::new(&ctx.settings, gun, now())
}

/// Runs `f` on the collection `gun`, then prints on stderr what it warned
/// about, also when it failed.
fn with_repo<T>(ctx: &Ctx, gun: &str, f: impl FnOnce(&Repository) -> Result<T, ClientError>) -> Result<T, ClientError> {
    let r = repo(ctx, gun)?;
    let out = f(&r);
    with_warnings(&r, out)
}

/// Prints `r`'s warnings on stderr, one line each, and passes `out` on.
fn with_warnings<T>(r: &Repository, out: Result<T, ClientError>) -> Result<T, ClientError> {
    for w in r.take_warnings() {
        eprintln!("* warning: {w}");
    }
    out
}

fn publish(ctx: &Ctx, gun: &str, auto: bool) -> Result<(), ClientError> {
    let r = repo(ctx, gun)?;
    if auto {
        println!("Auto-publishing changes to {gun}");
    } else {
        println!("Pushing changes to {gun}");
    }
    if with_warnings(&r, r.publish(&mut *ctx.pass.borrow_mut()))? {
        println!("Successfully published changes for repository {gun}");
    } else {
        println!("No unpublished changes for {gun}");
    }
    Ok(())
}

fn read_custom(path: Option<&Path>) -> Result<Option<seal_tuf::cjson::Value>, ClientError> {
    let Some(p) = path else { return Ok(None) };
    let b = std::fs::read(p).map_err(ClientError::io(p))?;
    seal_tuf::cjson::Value::parse(&b)
        .map(Some)
        .map_err(|e| ClientError::Invalid(format!("{}: custom data is not valid JSON: {}", p.display(), e.0)))
}

fn stage_target(ctx: &Ctx, gun: &str, target: &str, mut meta: FileMeta, opts: &TargetOpts) -> Result<(), ClientError> {
    meta.custom = read_custom(opts.custom.as_deref())?;
    repo(ctx, gun)?.stage_target(target, &meta, &opts.roles)?;
    println!("Addition of target \"{target}\" to repository \"{gun}\" staged for next publish.");
    if opts.publish {
        publish(ctx, gun, true)?;
    }
    Ok(())
}

fn parse_hash(name: &str, hex_str: &str, len: usize) -> Result<Vec<u8>, ClientError> {
    hex::decode(hex_str)
        .ok()
        .filter(|b| b.len() == len)
        .ok_or_else(|| ClientError::Invalid(format!("--{name} must be {} hex digits", len * 2)))
}

fn confirm(question: &str) -> bool {
    if !std::io::stdin().is_terminal() {
        return false;
    }
    eprint!("{question} (yes/no): ");
    let _ = std::io::stderr().flush();
    let mut line = String::new();
    std::io::stdin().read_line(&mut line).is_ok() && matches!(line.trim(), "y" | "yes")
}

fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.len()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            widths[i] = widths[i].max(c.len());
        }
    }
    let line = |cells: Vec<String>| {
        let mut s = String::new();
        for (i, c) in cells.iter().enumerate() {
            if i + 1 == cells.len() {
                s.push_str(c);
            } else {
                s.push_str(&format!("{c:<w$}", w = widths[i] + 4));
            }
        }
        s.trim_end().to_owned()
    };
    let mut out = vec![
        line(headers.iter().map(|h| (*h).to_owned()).collect()),
        line(headers.iter().map(|h| "-".repeat(h.len())).collect()),
    ];
    out.extend(rows.iter().map(|r| line(r.clone())));
    out.join("\n")
}

/// Prints `rows` under `headers` (between blank lines when `padded`, as
/// Notary does for some listings), or `empty` between blank lines.
fn print_table(empty: &str, headers: &[&str], rows: impl Iterator<Item = Vec<String>>, padded: bool) {
    let rows: Vec<Vec<String>> = rows.collect();
    if rows.is_empty() {
        println!("\n{empty}\n");
    } else if padded {
        println!("\n{}\n", table(headers, &rows));
    } else {
        println!("{}", table(headers, &rows));
    }
}

/// Runs `command`.
pub fn run(ctx: &Ctx, command: Command) -> Result<(), ClientError> {
    match command {
        Command::Init {
            gun,
            root_key,
            root_cert,
            publish: p,
        } => {
            repo(ctx, &gun)?.init(root_key.as_deref(), root_cert.as_deref(), &mut *ctx.pass.borrow_mut())?;
            if p {
                publish(ctx, &gun, true)?;
            }
        }
        Command::Add {
            gun,
            target,
            file,
            opts,
        } => {
            let bytes = std::fs::read(&file).map_err(ClientError::io(&file))?;
            stage_target(ctx, &gun, &target, FileMeta::for_bytes(&bytes), &opts)?;
        }
        Command::Addhash {
            gun,
            target,
            size,
            sha256,
            sha512,
            opts,
        } => {
            if size < 0 {
                return Err(ClientError::Invalid("the size must not be negative".into()));
            }
            let mut hashes = std::collections::BTreeMap::new();
            if let Some(h) = sha256 {
                hashes.insert("sha256".to_owned(), parse_hash("sha256", &h, 32)?);
            }
            if let Some(h) = sha512 {
                hashes.insert("sha512".to_owned(), parse_hash("sha512", &h, 64)?);
            }
            if hashes.is_empty() {
                return Err(ClientError::Invalid(
                    "give at least one of --sha256 and --sha512".into(),
                ));
            }
            let meta = FileMeta {
                length: size,
                hashes,
                custom: None,
            };
            stage_target(ctx, &gun, &target, meta, &opts)?;
        }
        Command::Remove {
            gun,
            target,
            roles,
            publish: p,
        } => {
            repo(ctx, &gun)?.stage_remove_target(&target, &roles)?;
            println!("Removal of {target} from {gun} staged for next publish.");
            if p {
                publish(ctx, &gun, true)?;
            }
        }
        Command::Publish { gun } => publish(ctx, &gun, false)?,
        Command::List { gun, roles } => {
            let targets = with_repo(ctx, &gun, |r| r.list_targets(&roles))?;
            let rows = targets.iter().map(|t| {
                vec![
                    t.name.clone(),
                    t.meta.sha256_hex().unwrap_or_default(),
                    t.meta.length.to_string(),
                    t.role.clone(),
                ]
            });
            print_table(
                "No targets present in this repository.",
                &["NAME", "DIGEST", "SIZE (BYTES)", "ROLE"],
                rows,
                false,
            );
        }
        Command::Lookup { gun, target } => {
            let t = with_repo(ctx, &gun, |r| r.lookup(&target))?;
            println!(
                "{} sha256:{} {}",
                t.name,
                t.meta.sha256_hex().unwrap_or_default(),
                t.meta.length
            );
        }
        Command::Status { gun } => {
            let changes = repo(ctx, &gun)?.dir().changelist().list()?;
            if changes.is_empty() {
                println!("No unpublished changes for {gun}");
            } else {
                println!("Unpublished changes for {gun}:\n");
                let rows: Vec<Vec<String>> = changes
                    .iter()
                    .enumerate()
                    .map(|(i, c)| {
                        vec![
                            i.to_string(),
                            c.action.clone(),
                            c.role.clone(),
                            c.kind.clone(),
                            c.path.clone(),
                        ]
                    })
                    .collect();
                println!("{}", table(&["#", "ACTION", "SCOPE", "TYPE", "PATH"], &rows));
            }
        }
        Command::Reset { gun, all, number } => {
            let cl = repo(ctx, &gun)?.dir().changelist();
            if all {
                cl.clear()?;
            } else if number.is_empty() {
                return Err(ClientError::Invalid(
                    "give --all or -n <number> (see seal status)".into(),
                ));
            } else {
                cl.remove(&number)?;
            }
            println!("Successfully reset specified changes for repository {gun}");
        }
        Command::Verify {
            gun,
            target,
            input,
            output,
            quiet,
        } => {
            let mut data = Vec::new();
            match &input {
                Some(p) => data = std::fs::read(p).map_err(ClientError::io(p))?,
                None => {
                    std::io::stdin()
                        .read_to_end(&mut data)
                        .map_err(ClientError::io("<stdin>"))?;
                }
            }
            let t = with_repo(ctx, &gun, |r| r.lookup(&target))?;
            t.meta
                .check(&target, &data)
                .map_err(|e| ClientError::Invalid(format!("data does not match target {target} of {gun}: {e}")))?;
            if !quiet {
                match &output {
                    Some(p) => std::fs::write(p, &data).map_err(ClientError::io(p))?,
                    None => std::io::stdout()
                        .write_all(&data)
                        .map_err(ClientError::io("<stdout>"))?,
                }
            }
        }
        Command::Witness { gun, roles, publish: p } => {
            if roles.is_empty() {
                return Err(ClientError::Invalid("name at least one role to witness".into()));
            }
            let r = repo(ctx, &gun)?;
            for role in &roles {
                r.stage_witness(role)?;
            }
            println!("The following roles were successfully marked for witnessing on the next publish:");
            for role in &roles {
                println!("\t- {role}");
            }
            if p {
                publish(ctx, &gun, true)?;
            }
        }
        Command::Delete { gun, remote } => {
            println!("Deleting trust data for repository {gun}");
            repo(ctx, &gun)?.delete(remote)?;
            if remote {
                println!("Successfully deleted local and remote trust data for repository {gun}");
            } else {
                println!("Successfully deleted local trust data for repository {gun}");
            }
        }
        Command::Delegation(cmd) => delegation::run(ctx, cmd)?,
        Command::Key(cmd) => key::run(ctx, cmd)?,
        Command::Tuf(cmd) => tuf::run(ctx, cmd)?,
    }
    Ok(())
}
