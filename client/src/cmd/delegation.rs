//! `seal delegation …`: staging delegation changes, listing delegations.

use std::path::{Path, PathBuf};

use clap::Subcommand;
use seal_client::changelist::{self, DelegationChange};
use seal_client::error::ClientError;
use seal_tuf::{KeyType, PublicKey};

use super::{confirm, print_table, publish, repo, with_repo, with_warnings, Ctx};

#[derive(Subcommand)]
pub enum DelegationCmd {
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

/// Runs a delegation command.
pub fn run(ctx: &Ctx, cmd: DelegationCmd) -> Result<(), ClientError> {
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

fn public_key_file(p: &Path) -> Result<PublicKey, ClientError> {
    let pem = std::fs::read(p).map_err(ClientError::io(p))?;
    let text = String::from_utf8_lossy(&pem);
    if text.contains("BEGIN CERTIFICATE") {
        return PublicKey::from_certificate_pem(pem)
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
