//! The client's configuration file, with Notary's keys:
//!
//! ```json
//! {"trust_dir": "~/.notary",
//!  "remote_server": {"url": "https://notary.example.com", "root_ca": "ca.crt",
//!                    "tls_client_cert": "c.crt", "tls_client_key": "c.key", "skipTLSVerify": false},
//!  "trust_pinning": {"certs": {"<gun>": ["<root key id>"]}, "disable_tofu": false}}
//! ```
//!
//! Relative paths resolve against the file's directory; `~` is the home
//! directory. Command-line flags override the file.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::error::ClientError;

/// Notary's default server.
pub const DEFAULT_SERVER: &str = "https://notary-server:4443";

/// The config file as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// The trust directory.
    #[serde(default)]
    pub trust_dir: Option<String>,
    /// The server.
    #[serde(default)]
    pub remote_server: RemoteServer,
    /// Trust pinning.
    #[serde(default)]
    pub trust_pinning: TrustPinning,
}

/// `remote_server`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RemoteServer {
    /// Base URL.
    #[serde(default)]
    pub url: Option<String>,
    /// CA bundle for the server's certificate.
    #[serde(default)]
    pub root_ca: Option<String>,
    /// Client certificate.
    #[serde(default)]
    pub tls_client_cert: Option<String>,
    /// Client key.
    #[serde(default)]
    pub tls_client_key: Option<String>,
    /// Skip server certificate verification.
    #[serde(default, rename = "skipTLSVerify")]
    pub skip_tls_verify: bool,
}

/// `trust_pinning`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrustPinning {
    /// Root key IDs pinned per GUN.
    #[serde(default)]
    pub certs: BTreeMap<String, Vec<String>>,
    /// CA files per GUN prefix.
    #[serde(default)]
    pub ca: BTreeMap<String, String>,
    /// No trust on first use.
    #[serde(default)]
    pub disable_tofu: bool,
}

/// The user's home directory.
pub fn home() -> Option<PathBuf> {
    std::env::var_os("HOME").filter(|h| !h.is_empty()).map(PathBuf::from)
}

/// Expands `~` and resolves `p` against `base`.
pub fn resolve(p: &str, base: &Path) -> PathBuf {
    if p == "~" {
        return home().unwrap_or_else(|| PathBuf::from(p));
    }
    if let Some(rest) = p.strip_prefix("~/") {
        if let Some(h) = home() {
            return h.join(rest);
        }
    }
    let p = PathBuf::from(p);
    if p.is_absolute() {
        p
    } else {
        base.join(p)
    }
}

/// The default trust directory: `~/.notary`, so an existing Notary trust
/// directory is used unchanged.
pub fn default_trust_dir() -> PathBuf {
    home().map_or_else(|| PathBuf::from(".notary"), |h| h.join(".notary"))
}

impl FileConfig {
    /// Reads `path`; `Ok(None)` when it does not exist and `required` is
    /// false (the default location).
    pub fn load(path: &Path, required: bool) -> Result<Option<FileConfig>, ClientError> {
        let bytes = match std::fs::read(path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !required => return Ok(None),
            Err(e) => return Err(ClientError::io(path)(e)),
        };
        let c: FileConfig =
            serde_json::from_slice(&bytes).map_err(|e| ClientError::Invalid(format!("{}: {e}", path.display())))?;
        if !c.trust_pinning.ca.is_empty() {
            return Err(ClientError::Invalid(format!(
                "{}: trust_pinning.ca is not supported by seal yet; pin root key IDs with trust_pinning.certs",
                path.display()
            )));
        }
        Ok(Some(c))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_notarys_client_config() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("config.json");
        std::fs::write(
            &p,
            br#"{"trust_dir":"trust","remote_server":{"url":"https://notary-server:4443","root_ca":"root-ca.crt","skipTLSVerify":true},
               "trust_pinning":{"certs":{"docker.com/notary":["49cf5c6404a35fa41d5a5aa2ce539dfee0d7a2176d0da488914a38603b1f4292"]},"disable_tofu":true}}"#,
        )
        .unwrap();
        let c = FileConfig::load(&p, true).unwrap().unwrap();
        assert_eq!(c.remote_server.url.as_deref(), Some("https://notary-server:4443"));
        assert!(c.remote_server.skip_tls_verify && c.trust_pinning.disable_tofu);
        assert_eq!(resolve("root-ca.crt", d.path()), d.path().join("root-ca.crt"));
        assert_eq!(resolve("/abs", d.path()), PathBuf::from("/abs"));
        assert!(FileConfig::load(&d.path().join("absent.json"), false)
            .unwrap()
            .is_none());
        assert!(FileConfig::load(&d.path().join("absent.json"), true).is_err());
        std::fs::write(&p, br#"{"remote_server":{"urll":"x"}}"#).unwrap();
        assert!(FileConfig::load(&p, true).is_err());
    }

    #[test]
    fn notarys_own_client_config_parses() {
        let Some(dir) = seal_testkit::notary_fixtures() else {
            return;
        };
        let p = dir.join("configs/notary-v0.7.0/client-config.json");
        let c = FileConfig::load(&p, true).unwrap().unwrap();
        assert!(c.remote_server.url.is_some());
    }
}
