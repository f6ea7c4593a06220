//! `seal key …`: the private keys of the trust directory, and rotation.

use std::io::{IsTerminal as _, Write as _};
use std::path::{Path, PathBuf};

use clap::Subcommand;
use seal_client::error::ClientError;
use seal_client::keystore::{EnvOrPrompt, KeyStore};
use seal_tuf::PrivateKey;

use super::{confirm, print_table, with_repo, Ctx};

#[derive(Subcommand)]
pub enum KeyCmd {
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

/// Runs a key command.
pub fn run(ctx: &Ctx, cmd: KeyCmd) -> Result<(), ClientError> {
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
                    seal_client::atomic::write_atomic(&key_path, pem.as_bytes())?;
                    let spki = key.public_key();
                    use base64::Engine as _;
                    let b64 = base64::engine::general_purpose::STANDARD.encode(spki.public_bytes());
                    let mut pub_pem = format!("-----BEGIN PUBLIC KEY-----\nrole: {role}\n\n");
                    for chunk in b64.as_bytes().chunks(64) {
                        pub_pem.push_str(std::str::from_utf8(chunk).unwrap_or_default());
                        pub_pem.push('\n');
                    }
                    pub_pem.push_str("-----END PUBLIC KEY-----\n");
                    seal_client::atomic::write_atomic(&pub_path, pub_pem.as_bytes())?;
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
