//! `seal`: Notary's client command set over Seal's client library.

use std::io::{IsTerminal as _, Read as _, Write as _};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use seal_client::changelist::{self, DelegationChange};
use seal_client::config::{self, FileConfig};
use seal_client::error::ClientError;
use seal_client::keystore::{EnvOrPrompt, KeyStore};
use seal_client::remote::RemoteConfig;
use seal_client::repo::{Repository, Settings};
use seal_tuf::{FileMeta, KeyType, PrivateKey, PublicKey};

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
    command: Command,
}

#[derive(Subcommand)]
enum Command {
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
}

#[derive(Args)]
struct TargetOpts {
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

#[derive(Subcommand)]
enum DelegationCmd {
    /// Add a delegation role, or keys and paths to it.
    Add {
        gun: String,
        role: String,
        /// Certificates (or PEM public keys) of the role's keys.
        certs: Vec<PathBuf>,
        /// Paths the role may sign for (repeatable).
        #[arg(long = "paths", value_delimiter = ',')]
        paths: Vec<String>,
        /// The role may sign for every path.
        #[arg(long = "all-paths")]
        all_paths: bool,
        /// Publish at once.
        #[arg(short = 'p', long = "publish")]
        publish: bool,
    },
    /// Remove a delegation role, or keys and paths from it.
    Remove {
        gun: String,
        role: String,
        /// Key IDs to remove.
        keyids: Vec<String>,
        /// Paths to remove.
        #[arg(long = "paths", value_delimiter = ',')]
        paths: Vec<String>,
        /// Remove every path.
        #[arg(long = "all-paths")]
        all_paths: bool,
        /// Do not ask before removing a whole role.
        #[arg(short = 'y', long = "yes")]
        yes: bool,
        /// Publish at once.
        #[arg(short = 'p', long = "publish")]
        publish: bool,
    },
    /// List the delegations.
    List { gun: String },
    /// Remove keys from every delegation.
    Purge {
        gun: String,
        /// Key IDs to remove (repeatable).
        #[arg(long = "key", required = true)]
        keys: Vec<String>,
        /// Publish at once.
        #[arg(short = 'p', long = "publish")]
        publish: bool,
    },
}

#[derive(Subcommand)]
enum KeyCmd {
    /// List the private keys in the trust directory.
    List,
    /// Generate a key (root by default).
    Generate {
        /// ecdsa (default) or ed25519.
        algorithm: Option<String>,
        /// The role the key is for.
        #[arg(long = "role", default_value = "root")]
        role: String,
        /// Write <PREFIX>.key (encrypted) and <PREFIX>.pub instead of storing it.
        #[arg(short = 'o', long = "output")]
        output: Option<PathBuf>,
    },
    /// Rotate a role's key and publish a new root.
    Rotate {
        gun: String,
        role: String,
        /// Let the server hold the new key (snapshot, timestamp).
        #[arg(short = 'r', long = "server-managed")]
        server_managed: bool,
    },
    /// Import every PEM private key of each file (Notary's key export output too).
    Import {
        files: Vec<PathBuf>,
        /// Role to import keys with, if a key has no role: header (else delegation).
        #[arg(short = 'r', long = "role")]
        role: Option<String>,
        /// GUN to import keys with, if a key has no gun: header.
        #[arg(short = 'g', long = "gun")]
        gun: Option<String>,
    },
    /// Export private keys (encrypted, as stored), with Notary's path: headers.
    Export {
        /// Key IDs to export (default all).
        #[arg(long = "key")]
        keys: Vec<String>,
        /// Only keys of this collection.
        #[arg(long = "gun")]
        gun: Option<String>,
        /// Write to this file instead of stdout.
        #[arg(short = 'o', long = "output")]
        output: Option<PathBuf>,
    },
    /// Remove a private key.
    Remove {
        keyid: String,
        /// Do not ask.
        #[arg(short = 'y', long = "yes")]
        yes: bool,
    },
    /// Change a key's passphrase.
    Passwd { keyid: String },
}

struct Ctx {
    settings: Settings,
    verbose: bool,
    // One source per command: a passphrase typed once is not asked again.
    pass: std::cell::RefCell<EnvOrPrompt>,
}

fn now() -> time::OffsetDateTime {
    time::OffsetDateTime::now_utc()
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

fn public_key_file(p: &Path) -> Result<PublicKey, ClientError> {
    let pem = std::fs::read(p).map_err(ClientError::io(p))?;
    let text = String::from_utf8_lossy(&pem);
    if text.contains("BEGIN CERTIFICATE") {
        return PublicKey::new(KeyType::EcdsaX509, pem.clone())
            .or_else(|_| PublicKey::new(KeyType::RsaX509, pem))
            .map_err(|e| ClientError::Invalid(format!("{}: not a usable certificate: {e}", p.display())));
    }
    if text.contains("BEGIN PUBLIC KEY") {
        use base64::Engine as _;
        let b64: String = text
            .lines()
            .filter(|l| !l.starts_with("-----") && !l.contains(':'))
            .collect();
        let der = base64::engine::general_purpose::STANDARD
            .decode(b64.trim())
            .map_err(|e| ClientError::Invalid(format!("{}: bad PEM: {e}", p.display())))?;
        return PublicKey::new(KeyType::Ecdsa, der.clone())
            .or_else(|_| PublicKey::new(KeyType::Rsa, der))
            .map_err(|e| ClientError::Invalid(format!("{}: not a usable public key: {e}", p.display())));
    }
    Err(ClientError::Invalid(format!(
        "{}: expected a PEM certificate or public key",
        p.display()
    )))
}

fn paths_text(paths: &[String]) -> String {
    paths
        .iter()
        .map(|p| {
            if p.is_empty() {
                "\"\" <all paths>".to_owned()
            } else {
                format!("{p:?}")
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
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

fn run(cli: Cli) -> Result<(), ClientError> {
    let ctx = Ctx {
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
    match cli.command {
        Command::Init {
            gun,
            root_key,
            root_cert,
            publish: p,
        } => {
            repo(&ctx, &gun)?.init(root_key.as_deref(), root_cert.as_deref(), &mut *ctx.pass.borrow_mut())?;
            if p {
                publish(&ctx, &gun, true)?;
            }
        }
        Command::Add {
            gun,
            target,
            file,
            opts,
        } => {
            let bytes = std::fs::read(&file).map_err(ClientError::io(&file))?;
            stage_target(&ctx, &gun, &target, FileMeta::for_bytes(&bytes), &opts)?;
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
            stage_target(&ctx, &gun, &target, meta, &opts)?;
        }
        Command::Remove {
            gun,
            target,
            roles,
            publish: p,
        } => {
            repo(&ctx, &gun)?.stage_remove_target(&target, &roles)?;
            println!("Removal of {target} from {gun} staged for next publish.");
            if p {
                publish(&ctx, &gun, true)?;
            }
        }
        Command::Publish { gun } => publish(&ctx, &gun, false)?,
        Command::List { gun, roles } => {
            let targets = with_repo(&ctx, &gun, |r| r.list_targets(&roles))?;
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
            let t = with_repo(&ctx, &gun, |r| r.lookup(&target))?;
            println!(
                "{} sha256:{} {}",
                t.name,
                t.meta.sha256_hex().unwrap_or_default(),
                t.meta.length
            );
        }
        Command::Status { gun } => {
            let changes = repo(&ctx, &gun)?.dir().changelist().list()?;
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
            let cl = repo(&ctx, &gun)?.dir().changelist();
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
            let t = with_repo(&ctx, &gun, |r| r.lookup(&target))?;
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
            let r = repo(&ctx, &gun)?;
            for role in &roles {
                r.stage_witness(role)?;
            }
            println!("The following roles were successfully marked for witnessing on the next publish:");
            for role in &roles {
                println!("\t- {role}");
            }
            if p {
                publish(&ctx, &gun, true)?;
            }
        }
        Command::Delete { gun, remote } => {
            println!("Deleting trust data for repository {gun}");
            repo(&ctx, &gun)?.delete(remote)?;
            if remote {
                println!("Successfully deleted local and remote trust data for repository {gun}");
            } else {
                println!("Successfully deleted local trust data for repository {gun}");
            }
        }
        Command::Delegation(cmd) => delegation(&ctx, cmd)?,
        Command::Key(cmd) => key(&ctx, cmd)?,
    }
    Ok(())
}

fn delegation(ctx: &Ctx, cmd: DelegationCmd) -> Result<(), ClientError> {
    match cmd {
        DelegationCmd::Add {
            gun,
            role,
            certs,
            paths,
            all_paths,
            publish: p,
        } => {
            let keys = certs
                .iter()
                .map(|c| public_key_file(c))
                .collect::<Result<Vec<_>, _>>()?;
            let mut add_paths = paths;
            if all_paths {
                add_paths = vec![String::new()];
            }
            if keys.is_empty() && add_paths.is_empty() {
                return Err(ClientError::Invalid(
                    "give certificates of the role's keys, --paths or --all-paths".into(),
                ));
            }
            let change = DelegationChange {
                new_threshold: if keys.is_empty() { 0 } else { 1 },
                add_keys: keys
                    .iter()
                    .map(|k| serde_json::from_slice(&k.to_notary_key_json()).expect("key JSON"))
                    .collect(),
                add_paths: add_paths.clone(),
                ..DelegationChange::default()
            };
            // Notary stages additions as `create`, paths alone too.
            repo(ctx, &gun)?.stage_delegation(&role, changelist::ACTION_CREATE, &change)?;
            let ids: Vec<String> = keys.iter().map(PublicKey::canonical_id).collect();
            println!(
                "\nAddition of delegation role {role} with keys [{}], with paths [{}], to repository \"{gun}\" staged for next publish.\n",
                ids.join(" "),
                paths_text(&add_paths)
            );
            if p {
                publish(ctx, &gun, true)?;
            }
        }
        DelegationCmd::Remove {
            gun,
            role,
            keyids,
            paths,
            all_paths,
            yes,
            publish: p,
        } => {
            let whole = keyids.is_empty() && paths.is_empty() && !all_paths;
            if whole
                && !yes
                && !confirm(&format!(
                    "Are you sure you want to remove all data for the {role} delegation?"
                ))
            {
                return Err(ClientError::Invalid(format!(
                    "not removing delegation {role}: confirm with --yes (-y)"
                )));
            }
            let change = DelegationChange {
                remove_keys: keyids.clone(),
                remove_paths: paths,
                clear_all_paths: all_paths,
                ..DelegationChange::default()
            };
            // As Notary: `delete` removes the whole role, `update` takes
            // keys or paths away (even the last key).
            let action = if whole {
                changelist::ACTION_DELETE
            } else {
                changelist::ACTION_UPDATE
            };
            repo(ctx, &gun)?.stage_delegation(&role, action, &change)?;
            if whole {
                println!("\nForced removal (including all keys and paths) of delegation role {role} to repository \"{gun}\" staged for next publish.\n");
            } else {
                println!("\nRemoval of delegation role {role} with keys [{}] from repository \"{gun}\" staged for next publish.\n", keyids.join(" "));
            }
            if p {
                publish(ctx, &gun, true)?;
            }
        }
        DelegationCmd::List { gun } => {
            let ds = with_repo(ctx, &gun, |r| r.list_delegations())?;
            let rows = ds.iter().map(|d| {
                vec![
                    d.role.name.clone(),
                    paths_text(&d.role.paths),
                    d.canonical_ids.join(", "),
                    d.role.threshold.to_string(),
                ]
            });
            print_table(
                "No delegations present in this repository.",
                &["ROLE", "PATHS", "KEY IDS", "THRESHOLD"],
                rows,
                true,
            );
        }
        DelegationCmd::Purge { gun, keys, publish: p } => {
            let r = repo(ctx, &gun)?;
            let ds = with_warnings(&r, r.list_delegations())?;
            let mut staged = 0;
            for d in &ds {
                let listed: Vec<String> = keys
                    .iter()
                    .filter(|k| d.canonical_ids.contains(k) || d.role.keyids.contains(k))
                    .cloned()
                    .collect();
                if listed.is_empty() {
                    continue;
                }
                let change = DelegationChange {
                    remove_keys: listed,
                    ..DelegationChange::default()
                };
                r.stage_delegation(&d.role.name, changelist::ACTION_UPDATE, &change)?;
                staged += 1;
            }
            println!(
                "Removal of the following keys from all delegations in {gun} staged for next publish ({staged} roles):"
            );
            for k in &keys {
                println!("\t- {k}");
            }
            if p {
                publish(ctx, &gun, true)?;
            }
        }
    }
    Ok(())
}

/// Writes exported keys to `p`, readable by the user only when created
/// (as Notary writes them).
fn write_private(p: &Path, bytes: &[u8]) -> Result<(), ClientError> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut f = options.open(p).map_err(ClientError::io(p))?;
    f.write_all(bytes).map_err(ClientError::io(p))
}

fn key(ctx: &Ctx, cmd: KeyCmd) -> Result<(), ClientError> {
    let store = KeyStore::open(&ctx.settings.trust_dir)?;
    match cmd {
        KeyCmd::List => {
            let keys = store.list()?;
            let location = store.dir().display().to_string();
            let rows = keys.iter().map(|k| {
                vec![
                    k.role.clone(),
                    k.gun.clone().unwrap_or_default(),
                    k.id.clone(),
                    location.clone(),
                ]
            });
            print_table(
                "No signing keys found.",
                &["ROLE", "GUN", "KEY ID", "LOCATION"],
                rows,
                true,
            );
        }
        KeyCmd::Generate {
            algorithm,
            role,
            output,
        } => {
            let key = match algorithm.as_deref().unwrap_or("ecdsa") {
                "ecdsa" => PrivateKey::generate_ecdsa(&mut rand::rngs::OsRng),
                "ed25519" => PrivateKey::generate_ed25519(&mut rand::rngs::OsRng),
                other => {
                    return Err(ClientError::Invalid(format!(
                        "algorithm {other:?} is not supported: use ecdsa or ed25519"
                    )))
                }
            };
            let id = key.public_key().id().to_owned();
            match output {
                None => {
                    store.add(&key, &role, None, &mut *ctx.pass.borrow_mut())?;
                    println!("Generated new {} {role} key with keyID: {id}", key.key_type());
                }
                Some(prefix) => {
                    use seal_client::keystore::{PassphraseSource as _, Purpose};
                    let pass = ctx.pass.borrow_mut().passphrase(&role, &id, None, Purpose::Create, 0)?;
                    let pem = seal_client::keystore::encrypt_pem(&key, &pass, &role, None)?;
                    let key_path = prefix.with_extension("key");
                    let pub_path = prefix.with_extension("pub");
                    seal_client::layout::write_atomic(&key_path, pem.as_bytes())?;
                    let spki = key.public_key();
                    use base64::Engine as _;
                    let b64 = base64::engine::general_purpose::STANDARD.encode(spki.public_bytes());
                    let mut pub_pem = format!("-----BEGIN PUBLIC KEY-----\nrole: {role}\n\n");
                    for chunk in b64.as_bytes().chunks(64) {
                        pub_pem.push_str(std::str::from_utf8(chunk).unwrap_or_default());
                        pub_pem.push('\n');
                    }
                    pub_pem.push_str("-----END PUBLIC KEY-----\n");
                    seal_client::layout::write_atomic(&pub_path, pub_pem.as_bytes())?;
                    println!(
                        "Generated new {} {role} key with keyID: {id}\nPrivate key: {}\nPublic key: {}",
                        key.key_type(),
                        key_path.display(),
                        pub_path.display()
                    );
                }
            }
        }
        KeyCmd::Rotate {
            gun,
            role,
            server_managed,
        } => {
            let k = with_repo(ctx, &gun, |r| {
                r.rotate_key(&role, server_managed, &mut *ctx.pass.borrow_mut())
            })?;
            if ctx.verbose {
                eprintln!("new {role} key {}", k.id());
            }
            println!("Successfully rotated {role} key for repository {gun}");
        }
        KeyCmd::Import { files, role, gun } => {
            if files.is_empty() {
                return Err(ClientError::Invalid("name at least one key file to import".into()));
            }
            // As Notary: file by file, every key of a file, stopping after
            // the first file with a key that could not be imported.
            for f in &files {
                let pem = std::fs::read(f).map_err(ClientError::io(f))?;
                let outcome = store.import_all(&pem, role.as_deref(), gun.as_deref(), &mut *ctx.pass.borrow_mut())?;
                if ctx.verbose {
                    for k in &outcome.imported {
                        eprintln!("imported {} key {} from {}", k.role, k.id, f.display());
                    }
                }
                if !outcome.refused.is_empty() {
                    let why: Vec<String> = outcome.refused.iter().map(|(what, e)| format!("{what}: {e}")).collect();
                    return Err(ClientError::Invalid(format!(
                        "{}: imported {} of {} keys; refused {}",
                        f.display(),
                        outcome.imported.len(),
                        outcome.imported.len() + outcome.refused.len(),
                        why.join("; ")
                    )));
                }
            }
        }
        KeyCmd::Export { keys, gun, output } => {
            if gun.is_some() && !keys.is_empty() {
                return Err(ClientError::Invalid(
                    "only the --gun or --key flag may be provided, not a mix of the two flags".into(),
                ));
            }
            let all = store.list()?;
            for id in &keys {
                if !all.iter().any(|k| k.id == *id) {
                    return Err(ClientError::Invalid(format!("no key {id} in the trust directory")));
                }
            }
            // Root keys have no GUN, so --gun exports a collection's own keys.
            let chosen: Vec<_> = all
                .iter()
                .filter(|k| keys.is_empty() || keys.contains(&k.id))
                .filter(|k| gun.is_none() || k.gun == gun)
                .collect();
            if chosen.is_empty() {
                return Err(ClientError::Invalid("no keys match".into()));
            }
            let mut out = Vec::new();
            for k in chosen {
                out.extend(store.export_notary(&k.id)?);
            }
            match output {
                Some(p) => write_private(&p, &out)?,
                None => std::io::stdout().write_all(&out).map_err(ClientError::io("<stdout>"))?,
            }
        }
        KeyCmd::Remove { keyid, yes } => {
            if store.find(&keyid)?.is_none() {
                return Err(ClientError::Invalid(format!("no key {keyid} in the trust directory")));
            }
            if !yes && std::io::stdin().is_terminal() && !confirm(&format!("Delete key {keyid}?")) {
                return Err(ClientError::Invalid("aborted: the key was not removed".into()));
            }
            let k = store.remove(&keyid)?;
            println!("Deleted {} ({} key)", k.id, k.role);
        }
        KeyCmd::Passwd { keyid } => {
            store.change_passphrase(
                &keyid,
                &mut *ctx.pass.borrow_mut(),
                &mut EnvOrPrompt::from_process_env(),
            )?;
            println!("Successfully updated passphrase for key ID: {keyid}");
        }
    }
    Ok(())
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
