//! `seal tuf …`: administering standard TUF 1.0 repositories on a Seal server (docs/tuf.md):
//! the service's online keys, uploads of metadata the owners signed offline, the list of
//! repositories. Nothing here signs: the owners sign with their own tooling, and the server
//! makes and signs every snapshot and timestamp.

use std::path::{Path, PathBuf};

use clap::Subcommand;
use seal_client::error::ClientError;
use seal_client::remote::Remote;

use super::Ctx;

#[derive(Subcommand)]
pub enum TufCmd {
    /// Print the repository's online keys (timestamp and snapshot), made by the server's signer
    /// when it has none: list them in the root the owners sign.
    Keys { repository: String },
    /// Make a new online key for ROLE (timestamp or snapshot) and print every held key; it
    /// signs once a root listing it is uploaded.
    RotateKey { repository: String, role: String },
    /// Upload signed metadata in one request: each FILE is `<role>.json` or `<N>.<role>.json`
    /// (the role from its name), or ROLE=FILE. The first upload, with root, creates the
    /// repository.
    Upload {
        repository: String,
        #[arg(required = true)]
        files: Vec<String>,
    },
    /// List the repositories.
    List,
}

fn remote(ctx: &Ctx) -> Result<Remote, ClientError> {
    let r = Remote::new(&ctx.settings.remote)?;
    r.ping()?;
    Ok(r)
}

/// The role a file argument names: `ROLE=FILE`, else the file's name without `.json` and
/// without a leading version (`3.targets.json` is `targets`).
fn role_and_path(arg: &str) -> Result<(String, PathBuf), ClientError> {
    if let Some((role, path)) = arg.split_once('=') {
        if role.is_empty() {
            return Err(ClientError::Invalid(format!("{arg}: no role before '='")));
        }
        return Ok((role.to_owned(), PathBuf::from(path)));
    }
    let path = PathBuf::from(arg);
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .and_then(|n| n.strip_suffix(".json"))
        .ok_or_else(|| ClientError::Invalid(format!("{arg}: name it <role>.json or give ROLE={arg}")))?;
    let role = match name.split_once('.') {
        Some((n, rest)) if !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()) => rest,
        _ => name,
    };
    if role.is_empty() {
        return Err(ClientError::Invalid(format!("{arg}: no role in the file name")));
    }
    Ok((role.to_owned(), path))
}

/// The upload body: `{role: file}` for each argument, each file a JSON object.
fn upload_body(args: &[String]) -> Result<serde_json::Value, ClientError> {
    let mut files = serde_json::Map::new();
    for arg in args {
        let (role, path) = role_and_path(arg)?;
        let bytes = std::fs::read(&path).map_err(ClientError::io(&path))?;
        let file: serde_json::Value = serde_json::from_slice(&bytes)
            .map_err(|e| ClientError::Invalid(format!("{}: not JSON: {e}", shown(&path))))?;
        if !file.is_object() {
            return Err(ClientError::Invalid(format!(
                "{}: not a signed metadata file (a JSON object)",
                shown(&path)
            )));
        }
        if files.insert(role.clone(), file).is_some() {
            return Err(ClientError::Invalid(format!("role {role} given twice")));
        }
    }
    Ok(serde_json::Value::Object(files))
}

fn shown(path: &Path) -> String {
    path.display().to_string()
}

fn print_json(v: &serde_json::Value) -> Result<(), ClientError> {
    let text = serde_json::to_string_pretty(v).map_err(|e| ClientError::Invalid(e.to_string()))?;
    println!("{text}");
    Ok(())
}

/// Runs one `seal tuf` command.
pub fn run(ctx: &Ctx, cmd: TufCmd) -> Result<(), ClientError> {
    match cmd {
        TufCmd::Keys { repository } => print_json(&remote(ctx)?.tuf1_keys(&repository)?),
        TufCmd::RotateKey { repository, role } => {
            // The service holds only the online roles' keys; say so before asking it.
            if role != "timestamp" && role != "snapshot" {
                return Err(ClientError::Invalid(format!(
                    "{role}: the service rotates only its online keys, timestamp and snapshot"
                )));
            }
            print_json(&remote(ctx)?.tuf1_rotate_key(&repository, &role)?)
        }
        TufCmd::Upload { repository, files } => {
            let body = upload_body(&files)?;
            let roles: Vec<&str> = body
                .as_object()
                .map_or(Vec::new(), |m| m.keys().map(String::as_str).collect());
            remote(ctx)?.tuf1_upload(&repository, &body)?;
            println!("Uploaded {} to {repository}", roles.join(", "));
            Ok(())
        }
        TufCmd::List => {
            for name in remote(ctx)?.tuf1_list()? {
                println!("{name}");
            }
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_come_from_file_names_or_are_given() {
        let role = |a: &str| role_and_path(a).map(|(r, p)| (r, p.display().to_string()));
        assert_eq!(role("out/root.json").unwrap(), ("root".into(), "out/root.json".into()));
        assert_eq!(
            role("3.targets.json").unwrap(),
            ("targets".into(), "3.targets.json".into())
        );
        assert_eq!(role("bins-1f.json").unwrap(), ("bins-1f".into(), "bins-1f.json".into()));
        assert_eq!(role("releases=x/y.txt").unwrap(), ("releases".into(), "x/y.txt".into()));
        assert!(role("notes.txt").is_err());
        assert!(role("=x.json").is_err());
        assert!(role(".json").is_err());
    }
}
