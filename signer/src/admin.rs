//! Offline maintenance of a signer's store (run while the signer is
//! stopped: RocksDB's lock refuses a second process).

use std::fmt;

use crate::config::SignerConfig;
use crate::software::{Passphrases, SoftwareBackend};
use crate::store::Store;

/// What [`rewrap`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RewrapReport {
    /// Keys re-encrypted under the default alias.
    pub rewrapped: usize,
    /// Software keys that already were.
    pub current: usize,
    /// Keys held by another backend (an HSM), untouched.
    pub other_backends: usize,
}

impl fmt::Display for RewrapReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "re-encrypted {} key(s); {} already under the default alias; {} held by other backends",
            self.rewrapped, self.current, self.other_backends
        )
    }
}

/// Re-encrypts every software key under `config.default_alias`, reading
/// the old aliases' passphrases (`aliases`) from the environment through
/// `env`. Each key is replaced by one synced write, so an interrupted run
/// leaves every key readable and can simply be repeated. Stops at the first
/// key it cannot decrypt, naming it.
pub fn rewrap(config: &SignerConfig, env: &dyn Fn(&str) -> Option<String>) -> Result<RewrapReport, String> {
    let passphrases = Passphrases::from_env(&config.default_alias, &config.aliases, env).map_err(|e| e.to_string())?;
    let software = SoftwareBackend::new(passphrases);
    let store = Store::open(&config.storage.data_dir).map_err(|e| e.to_string())?;
    let mut report = RewrapReport::default();
    for mut record in store.keys().map_err(|e| e.to_string())? {
        if record.backend != "software" {
            report.other_backends += 1;
            continue;
        }
        match software
            .rewrap(&record.handle)
            .map_err(|e| format!("key {}: {e}", record.key_id))?
        {
            None => report.current += 1,
            Some(handle) => {
                record.handle = handle;
                store.put_key(&record).map_err(|e| e.to_string())?;
                report.rewrapped += 1;
            }
        }
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::{Algorithm, KeyBackend};
    use crate::software::jwe_kid;
    use crate::store::KeyRecord;

    fn config(dir: &std::path::Path, default_alias: &str, aliases: &[&str]) -> SignerConfig {
        serde_json::from_value(serde_json::json!({
            "server": {"grpc_addr": "127.0.0.1:0", "tls_cert_file": "c", "tls_key_file": "k", "client_ca_file": "ca"},
            "storage": {"data_dir": dir},
            "default_alias": default_alias,
            "aliases": aliases,
        }))
        .unwrap()
    }

    fn env(pairs: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
        move |k| pairs.iter().find(|(n, _)| *n == k).map(|(_, v)| (*v).to_owned())
    }

    #[test]
    fn rotating_the_alias_re_encrypts_every_software_key() {
        let dir = tempfile::tempdir().unwrap();
        let old_env = env(&[("SEAL_SIGNER_OLD", "old passphrase")]);
        let old = SoftwareBackend::with_iterations(Passphrases::from_env("old", &[], &old_env).unwrap(), 1000);
        {
            let store = Store::open(dir.path()).unwrap();
            for (i, algorithm) in [Algorithm::Ecdsa, Algorithm::Ed25519].into_iter().enumerate() {
                let k = old.generate(algorithm, "label").unwrap();
                store
                    .put_key(&KeyRecord {
                        key_id: format!("key{i}"),
                        gun: "example.com/app".into(),
                        role: "timestamp".into(),
                        algorithm: algorithm.as_str().into(),
                        public: k.public,
                        backend: "software".into(),
                        handle: k.handle,
                    })
                    .unwrap();
            }
        }

        // Without the old alias's passphrase nothing is touched.
        let new_only = env(&[("SEAL_SIGNER_NEW", "new passphrase")]);
        let e = rewrap(&config(dir.path(), "new", &["old"]), &new_only).unwrap_err();
        assert!(e.contains("key0"), "{e}");

        let both = env(&[
            ("SEAL_SIGNER_OLD", "old passphrase"),
            ("NOTARY_SIGNER_NEW", "new passphrase"),
        ]);
        let report = rewrap(&config(dir.path(), "new", &["old"]), &both).unwrap();
        assert_eq!((report.rewrapped, report.current), (2, 0));
        let again = rewrap(&config(dir.path(), "new", &["old"]), &both).unwrap();
        assert_eq!((again.rewrapped, again.current), (0, 2));

        // The keys now open with the new passphrase alone.
        let store = Store::open(dir.path()).unwrap();
        let new = SoftwareBackend::new(Passphrases::from_env("new", &[], &new_only).unwrap());
        for record in store.keys().unwrap() {
            assert_eq!(jwe_kid(std::str::from_utf8(&record.handle).unwrap()).unwrap(), "new");
            let algorithm = Algorithm::parse(&record.algorithm).unwrap();
            new.sign(algorithm, &record.handle, b"message").unwrap();
        }
    }
}
