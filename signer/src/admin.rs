//! Operations on a signer: offline maintenance of its store ([`rewrap`],
//! run while the signer is stopped: RocksDB's lock refuses a second
//! process), and for a threshold cluster [`status`], [`refresh_shares`]
//! and [`repair_share`], asked of the running signers.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use seal_proto::threshold::StatusResponse;

use crate::config::SignerConfig;
use crate::error::Error;
use crate::software::{Passphrases, SoftwareBackend};
use crate::store::Store;
use crate::threshold::{GrpcPeers, Peer, ThresholdHandle};

/// What [`rewrap`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RewrapReport {
    /// Keys (software keys and threshold shares) re-encrypted under the
    /// default alias.
    pub rewrapped: usize,
    /// Keys that already were.
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

/// Re-encrypts every software key and every threshold share (the JWE in
/// its handle) under `config.default_alias`, reading
/// the old aliases' passphrases (`aliases`) from the environment through
/// `env`. Each key is replaced by one synced write, so an interrupted run
/// leaves every key readable and can simply be repeated. Stops at the first
/// key it cannot decrypt, naming it.
pub fn rewrap(config: &SignerConfig, env: &dyn Fn(&str) -> Option<String>) -> Result<RewrapReport, Error> {
    let passphrases = Passphrases::from_env(&config.default_alias, &config.aliases, env)?;
    let software = SoftwareBackend::new(passphrases);
    let store = Store::open(&config.storage.data_dir)?;
    let mut report = RewrapReport::default();
    for mut record in store.keys()? {
        let of_key = |what: &str, e: &dyn fmt::Display| Error::Internal(format!("{what}{}: {e}", record.key_id));
        let rewrapped = match record.backend.as_str() {
            "software" => software.rewrap(&record.handle).map_err(|e| of_key("key ", &e))?,
            crate::threshold::BACKEND_NAME => {
                let mut handle = ThresholdHandle::decode(&record.handle).map_err(|e| of_key("key ", &e))?;
                match software
                    .rewrap_secret(&handle.share_jwe)
                    .map_err(|e| of_key("threshold share of key ", &e))?
                {
                    None => None,
                    Some(jwe) => {
                        handle.share_jwe = jwe;
                        Some(serde_json::to_vec(&handle).map_err(|e| of_key("key ", &e))?)
                    }
                }
            }
            _ => {
                report.other_backends += 1;
                continue;
            }
        };
        match rewrapped {
            None => report.current += 1,
            Some(handle) => {
                record.handle = handle;
                store.put_key(&record)?;
                report.rewrapped += 1;
            }
        }
    }
    Ok(report)
}

/// How long `seal-signer status` waits for each signer.
pub const STATUS_TIMEOUT: Duration = Duration::from_secs(5);

/// One signer of a threshold cluster as [`status`] found it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignerStatus {
    /// Its configured identifier.
    pub id: u16,
    /// The address it was asked at.
    pub addr: String,
    /// Whether it is the signer whose config was read.
    pub is_self: bool,
    /// Its answer, or why there was none.
    pub answer: Result<StatusResponse, String>,
}

/// What [`status`] found: every signer of the cluster, this one first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusReport {
    /// k of the configuration read.
    pub min_signers: u16,
    /// n of the configuration read.
    pub max_signers: u16,
    /// The signers.
    pub signers: Vec<SignerStatus>,
}

impl StatusReport {
    /// What is wrong with `s`'s answer: a different identifier, k or n.
    fn mismatch(&self, s: &SignerStatus) -> Option<String> {
        let a = s.answer.as_ref().ok()?;
        if a.self_id != u32::from(s.id) {
            return Some(format!("answers as signer {}", a.self_id));
        }
        if (a.min_signers, a.max_signers) != (u32::from(self.min_signers), u32::from(self.max_signers)) {
            return Some(format!("configured {} of {}", a.min_signers, a.max_signers));
        }
        None
    }

    /// Whether every signer answered, with the identifier, k and n expected.
    pub fn all_well(&self) -> bool {
        self.signers
            .iter()
            .all(|s| s.answer.is_ok() && self.mismatch(s).is_none())
    }
}

impl fmt::Display for StatusReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "threshold cluster: {} of {}", self.min_signers, self.max_signers)?;
        let mut holders: BTreeMap<&str, Vec<u16>> = BTreeMap::new();
        let mut answered = Vec::new();
        for s in &self.signers {
            let who = if s.is_self { " (this signer)" } else { "" };
            match &s.answer {
                Err(e) => writeln!(f, "signer {}{who} at {}: UNREACHABLE: {e}", s.id, s.addr)?,
                Ok(a) => {
                    answered.push(s.id);
                    write!(
                        f,
                        "signer {}{who} at {}: reachable, holds shares of {} key(s)",
                        s.id,
                        s.addr,
                        a.key_ids.len()
                    )?;
                    match self.mismatch(s) {
                        Some(m) => writeln!(f, "; MISMATCH: {m}")?,
                        None => writeln!(f)?,
                    }
                    for k in &a.key_ids {
                        writeln!(f, "  {k}")?;
                        holders.entry(k).or_default().push(s.id);
                    }
                }
            }
        }
        for (key, on) in holders {
            if on != answered {
                writeln!(
                    f,
                    "key {key}: shares only on signers {on:?} of those reachable {answered:?}"
                )?;
            }
        }
        Ok(())
    }
}

impl StatusReport {
    /// `seal-signer status --json`: what the text shows, as one JSON object with stable field
    /// names (`docs/signer.md`): `min_signers`, `max_signers`, `all_well`, and per signer `id`,
    /// `addr`, `is_self`, `reachable`, `error` (null when it answered), `mismatch` (null when
    /// none) and `key_ids` (empty when unreachable).
    pub fn to_json(&self) -> serde_json::Value {
        let signers: Vec<serde_json::Value> = self
            .signers
            .iter()
            .map(|s| {
                serde_json::json!({
                    "id": s.id,
                    "addr": s.addr,
                    "is_self": s.is_self,
                    "reachable": s.answer.is_ok(),
                    "error": s.answer.as_ref().err(),
                    "mismatch": self.mismatch(s),
                    "key_ids": s.answer.as_ref().map(|a| a.key_ids.clone()).unwrap_or_default(),
                })
            })
            .collect();
        serde_json::json!({
            "min_signers": self.min_signers,
            "max_signers": self.max_signers,
            "all_well": self.all_well(),
            "signers": signers,
        })
    }
}

/// The threshold settings of `config`, and the signer it describes as a
/// peer reached at `self_addr` (by default `localhost:<port of
/// server.grpc_addr>`).
fn this_signer(
    config: &SignerConfig,
    self_addr: Option<&str>,
) -> Result<(crate::threshold::ThresholdConfig, Peer), Error> {
    let t = config
        .key_backend
        .threshold_config()
        .ok_or_else(|| Error::Config("this needs a threshold signer (key_backend.type = \"threshold\")".to_owned()))?;
    let me = Peer {
        id: t.self_id,
        addr: self_addr
            .map(str::to_owned)
            .unwrap_or_else(|| format!("localhost:{}", config.server.grpc_addr.port())),
        name: None,
    };
    Ok((t, me))
}

/// Asks the running signer `config` describes (at `self_addr`, as for
/// [`status`]) to refresh the shares of threshold key `key_id` with all
/// its peers; returns the group public key, which does not change. The
/// call presents this signer's own certificate, the only one allowed to ask.
pub async fn refresh_shares(config: &SignerConfig, key_id: &str, self_addr: Option<&str>) -> Result<Vec<u8>, Error> {
    let (t, id, transport) = own_transport(config, self_addr)?;
    // Four rounds with every signer, each bounded by the DKG timeout.
    transport
        .refresh_shares(id, key_id, t.dkg_timeout * 4)
        .await
        .map_err(answer_error)
}

/// Asks the running signer `config` describes (at `self_addr`, as for
/// [`status`]), a signer that lost its share of threshold key `key_id`
/// (started again with an empty data directory), to get it back from k of
/// its peers; returns the group public key, which does not change. The
/// call presents this signer's own certificate, the only one allowed to ask.
pub async fn repair_share(config: &SignerConfig, key_id: &str, self_addr: Option<&str>) -> Result<Vec<u8>, Error> {
    let (t, id, transport) = own_transport(config, self_addr)?;
    // Three rounds with k signers, each bounded by the DKG timeout.
    transport
        .repair_share(id, key_id, t.dkg_timeout * 4)
        .await
        .map_err(answer_error)
}

/// The running signer's answer to an operator's call, as an error: its
/// status code and message.
fn answer_error(s: tonic::Status) -> Error {
    Error::Internal(status_text(&s))
}

fn status_text(s: &tonic::Status) -> String {
    format!("{:?}: {}", s.code(), s.message())
}

/// The threshold settings and id of the signer `config` describes, and a
/// transport to it (at `self_addr`, as for [`status`]) presenting its own
/// certificate.
fn own_transport(
    config: &SignerConfig,
    self_addr: Option<&str>,
) -> Result<(crate::threshold::ThresholdConfig, u16, GrpcPeers), Error> {
    let (t, me) = this_signer(config, self_addr)?;
    let id = me.id;
    let transport = GrpcPeers::new(
        &[me],
        &config.server.client_ca_file,
        &config.server.tls_cert_file,
        &config.server.tls_key_file,
        STATUS_TIMEOUT,
    )?;
    Ok((t, id, transport))
}

/// Asks this signer and every peer of its threshold cluster for their
/// `Status`, over mutual TLS with this signer's certificate and key. This
/// signer is reached at `self_addr`, by default `localhost:<port of
/// server.grpc_addr>` (the host is the TLS name checked).
pub async fn status(config: &SignerConfig, self_addr: Option<&str>) -> Result<StatusReport, Error> {
    let (t, me) = this_signer(config, self_addr)?;
    let mut all = vec![me];
    all.extend(t.peers.iter().cloned());
    let transport = std::sync::Arc::new(GrpcPeers::new(
        &all,
        &config.server.client_ca_file,
        &config.server.tls_cert_file,
        &config.server.tls_key_file,
        STATUS_TIMEOUT,
    )?);
    // All at once, so unreachable signers cost one timeout in total.
    let tasks: Vec<_> = all
        .iter()
        .map(|p| {
            let (transport, id) = (transport.clone(), p.id);
            tokio::spawn(async move { transport.status(id, STATUS_TIMEOUT).await })
        })
        .collect();
    let mut answers = Vec::new();
    for task in tasks {
        answers.push(
            task.await
                .unwrap_or_else(|e| Err(tonic::Status::internal(format!("status task failed: {e}")))),
        );
    }
    Ok(StatusReport {
        min_signers: t.min_signers,
        max_signers: t.max_signers(),
        signers: all
            .into_iter()
            .zip(answers)
            .map(|(p, answer)| SignerStatus {
                id: p.id,
                is_self: p.id == t.self_id,
                addr: p.addr,
                answer: answer.map_err(|s| status_text(&s)),
            })
            .collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::{Algorithm, LocalBackend};
    use crate::software::{decrypt_secret, encrypt_secret, jwe_kid};
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
    fn a_status_report_says_who_answered_and_what_disagrees() {
        let answer = |self_id: u32, n: u32, keys: &[&str]| {
            Ok(StatusResponse {
                self_id,
                min_signers: 2,
                max_signers: n,
                key_ids: keys.iter().map(|k| (*k).to_owned()).collect(),
            })
        };
        let signer = |id: u16, answer: Result<StatusResponse, String>| SignerStatus {
            id,
            addr: format!("signer-{id}:7899"),
            is_self: id == 1,
            answer,
        };
        let mut report = StatusReport {
            min_signers: 2,
            max_signers: 3,
            signers: vec![
                signer(1, answer(1, 3, &["k1", "k2"])),
                signer(2, answer(2, 3, &["k1", "k2"])),
                signer(3, Err("Unavailable: tcp connect error".into())),
            ],
        };
        assert!(!report.all_well());
        assert_eq!(
            report.to_string(),
            "threshold cluster: 2 of 3\n\
             signer 1 (this signer) at signer-1:7899: reachable, holds shares of 2 key(s)\n  k1\n  k2\n\
             signer 2 at signer-2:7899: reachable, holds shares of 2 key(s)\n  k1\n  k2\n\
             signer 3 at signer-3:7899: UNREACHABLE: Unavailable: tcp connect error\n"
        );
        // All answer, one as another identifier and n, one without a key.
        report.signers[2].answer = answer(3, 3, &["k1"]);
        assert!(report.all_well());
        report.signers[1].answer = answer(5, 4, &["k1", "k2"]);
        assert!(!report.all_well());
        let text = report.to_string();
        assert!(
            text.contains(
                "signer 2 at signer-2:7899: reachable, holds shares of 2 key(s); MISMATCH: answers as signer 5\n"
            ),
            "{text}"
        );
        assert!(
            text.ends_with("key k2: shares only on signers [1, 2] of those reachable [1, 2, 3]\n"),
            "{text}"
        );
    }

    /// A 2-of-3 FROST key made by a dealer: signer 1's record, its share
    /// encrypted under `alias` as DKG stores it, and signer 2's key package.
    fn threshold_record(passphrase: &str, alias: &str) -> (KeyRecord, frost_ed25519::keys::KeyPackage) {
        use base64::Engine as _;
        use frost_ed25519::keys::{IdentifierList, KeyPackage};
        let (shares, public) =
            frost_ed25519::keys::generate_with_dealer(3, 2, IdentifierList::Default, rand::rngs::OsRng).unwrap();
        let package = |id: u16| KeyPackage::try_from(shares[&frost_ed25519::Identifier::try_from(id).unwrap()].clone());
        let (one, two) = (package(1).unwrap(), package(2).unwrap());
        let handle = ThresholdHandle {
            share_jwe: encrypt_secret(passphrase.as_bytes(), &one.serialize().unwrap(), alias, 1000).unwrap(),
            public_package: base64::engine::general_purpose::STANDARD.encode(public.serialize().unwrap()),
            self_id: 1,
            min_signers: 2,
            participants: vec![1, 2, 3],
        };
        let key = public.verifying_key().serialize().unwrap();
        let record = KeyRecord {
            key_id: "threshold-key".into(),
            gun: "example.com/app".into(),
            role: "timestamp".into(),
            algorithm: "ed25519".into(),
            public: key,
            backend: crate::threshold::BACKEND_NAME.into(),
            handle: serde_json::to_vec(&handle).unwrap(),
        };
        (record, two)
    }

    #[test]
    fn rotating_the_alias_re_encrypts_every_software_key_and_threshold_share() {
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
        let (threshold, other_share) = threshold_record("old passphrase", "old");
        Store::open(dir.path()).unwrap().put_key(&threshold).unwrap();

        // Without the old alias's passphrase nothing is touched.
        let new_only = env(&[("SEAL_SIGNER_NEW", "new passphrase")]);
        let e = rewrap(&config(dir.path(), "new", &["old"]), &new_only)
            .unwrap_err()
            .to_string();
        assert!(e.contains("key0") || e.contains("threshold-key"), "{e}");

        let both = env(&[
            ("SEAL_SIGNER_OLD", "old passphrase"),
            ("NOTARY_SIGNER_NEW", "new passphrase"),
        ]);
        let report = rewrap(&config(dir.path(), "new", &["old"]), &both).unwrap();
        assert_eq!((report.rewrapped, report.current), (3, 0));
        let again = rewrap(&config(dir.path(), "new", &["old"]), &both).unwrap();
        assert_eq!((again.rewrapped, again.current), (0, 3));

        // The keys now open with the new passphrase alone.
        let store = Store::open(dir.path()).unwrap();
        let new = SoftwareBackend::new(Passphrases::from_env("new", &[], &new_only).unwrap());
        for record in store.keys().unwrap() {
            if record.backend == crate::threshold::BACKEND_NAME {
                // The share's JWE is under the new alias, the rest of the handle as it was.
                let handle = ThresholdHandle::decode(&record.handle).unwrap();
                let before = ThresholdHandle::decode(&threshold.handle).unwrap();
                assert_eq!(jwe_kid(&handle.share_jwe).unwrap(), "new");
                assert_eq!(
                    (
                        &handle.public_package,
                        handle.self_id,
                        handle.min_signers,
                        &handle.participants
                    ),
                    (&before.public_package, 1, 2, &before.participants)
                );
                assert!(decrypt_secret(b"old passphrase", &handle.share_jwe).is_err());
                let plain = decrypt_secret(b"new passphrase", &handle.share_jwe).unwrap();
                let share = frost_ed25519::keys::KeyPackage::deserialize(&plain).unwrap();
                assert_eq!(
                    plain.as_slice(),
                    decrypt_secret(b"old passphrase", &before.share_jwe).unwrap().as_slice()
                );
                let group = handle.public_package().unwrap();
                assert_eq!(group.verifying_key().serialize().unwrap(), record.public);
                assert!(crate::threshold::tests::sign_together(&share, &other_share, &group));
                continue;
            }
            assert!(crate::software::kek::is_wrapped(&record.handle));
            assert_eq!(crate::software::handle_alias(&record.handle).unwrap(), "new");
            let algorithm = Algorithm::parse(&record.algorithm).unwrap();
            new.sign(algorithm, &record.handle, b"message").unwrap();
        }
    }
}
