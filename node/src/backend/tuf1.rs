//! Standard TUF 1.0 repositories in the [`RaftBackend`]: stored as the collection
//! `*tuf1/<name>` (`seal_tuf::tuf1::collection`) with the same commands as Notary's
//! collections, validated by `seal_tuf::tuf1::repo`, their snapshot and timestamp signed by
//! the [`CryptoService`](crate::signer::CryptoService) with keys it made for the repository,
//! and refreshed by the same refresher.

use std::collections::BTreeMap;

use seal_raft::SealRaft;
use seal_storage::{ApplyOutcome, Command, MetaFile};
use seal_tuf::cjson::Value;
use seal_tuf::metadata::{set_signed_version, signed_version};
use seal_tuf::tuf1::keys::{ecdsa_p256_raw_to_der, KEYTYPE_ECDSA, KEYTYPE_ED25519, SCHEME_ECDSA_P256, SCHEME_ED25519};
use seal_tuf::tuf1::metadata::{ROOT, SNAPSHOT, TARGETS, TIMESTAMP};
use seal_tuf::tuf1::repo::{
    assemble, snapshot_to_sign, timestamp_to_sign, validate_first_root, validate_upload, Limits, RepoState,
};
use seal_tuf::tuf1::{self, Key, Metadata, Root, Signature, Snapshot, Targets, Timestamp};
use seal_tuf::UpdateErrorKind;

use super::{signing_error, stored, unix_nanos, RaftBackend, PUBLISH_ATTEMPTS};
use crate::config::KeyAlgorithm;
use crate::error::{ApiError, Cause};
use crate::http::StoredMetadata;
use crate::routes::KeyRole;
use crate::signer::{PublicKeyInfo, SignScope, SignatureMethod, SignerError};

/// A repository's state as stored: the parsed roles and every role's current version.
struct Stored {
    state: RepoState,
    versions: BTreeMap<String, u64>,
}

/// seal-tuf's verdict on an upload as the HTTP answer: 413 for a file over python-tuf's
/// download limits, 400 `INVALID_UPDATE` naming the role and the reason otherwise (a signing
/// failure is the server's: 500).
fn upload_error(e: tuf1::Error) -> ApiError {
    let kind = |role: &str| match role {
        ROOT => UpdateErrorKind::BadRoot,
        SNAPSHOT | TIMESTAMP => UpdateErrorKind::BadSnapshot,
        _ => UpdateErrorKind::BadTargets,
    };
    match e {
        tuf1::Error::TooLarge { ref role, max, .. } => ApiError::TooLarge {
            limit: if role == ROOT {
                "TUF 1.0 root file (python-tuf's download limit)"
            } else {
                "TUF 1.0 targets file (python-tuf's download limit)"
            },
            max: max as u64,
        },
        tuf1::Error::Signing(_) => ApiError::updating(e.to_string(), e),
        tuf1::Error::Json { ref role, .. }
        | tuf1::Error::Format { ref role, .. }
        | tuf1::Error::WrongType { ref role, .. }
        | tuf1::Error::SpecVersion { ref role, .. }
        | tuf1::Error::Threshold { ref role, .. }
        | tuf1::Error::NotDelegated { ref role, .. }
        | tuf1::Error::Rollback { ref role, .. }
        | tuf1::Error::WrongVersion { ref role, .. }
        | tuf1::Error::Expired { ref role, .. }
        | tuf1::Error::LengthMismatch { ref role, .. }
        | tuf1::Error::HashMismatch { ref role, .. }
        | tuf1::Error::UnsupportedHash { ref role, .. } => ApiError::InvalidUpdate {
            kind: kind(role),
            msg: e.to_string(),
        },
        other => ApiError::InvalidUpdate {
            kind: UpdateErrorKind::Validation,
            msg: other.to_string(),
        },
    }
}

/// Stored metadata that does not parse: corrupt state, 500.
fn corrupt(collection: &str, role: &str, e: tuf1::Error) -> ApiError {
    ApiError::unknown(format!("stored {role} of {collection}: {e}"), e)
}

/// A signer's public key in TUF 1.0 form: `ed25519` (hex) or `ecdsa`/`ecdsa-sha2-nistp256`
/// (PEM), under securesystemslib's key ID.
fn tuf1_key(info: &PublicKeyInfo) -> Result<Key, ApiError> {
    let key = match info.algorithm {
        KeyAlgorithm::Ed25519 => Key::new(KEYTYPE_ED25519, SCHEME_ED25519, &hex::encode(&info.public_key)),
        KeyAlgorithm::Ecdsa => {
            use p256::pkcs8::{DecodePublicKey, EncodePublicKey, LineEnding};
            let vk = p256::ecdsa::VerifyingKey::from_public_key_der(&info.public_key)
                .map_err(|e| ApiError::unknown(format!("the signer's P-256 key {}: {e}", info.key_id), e))?;
            let pem = vk
                .to_public_key_pem(LineEnding::LF)
                .map_err(|e| ApiError::unknown(format!("PEM of P-256 key {}: {e}", info.key_id), e))?;
            Key::new(KEYTYPE_ECDSA, SCHEME_ECDSA_P256, &pem)
        }
        KeyAlgorithm::Rsa => {
            return Err(ApiError::Unknown {
                reason: "TUF 1.0 repositories use ed25519 or ecdsa online keys (trust_service.key_algorithm)".into(),
                source: None,
            })
        }
    };
    key.map_err(|e| ApiError::unknown(format!("the signer's key {}: {e}", info.key_id), e))
}

/// One online key: the signer's ID for it and the key in TUF 1.0 form.
struct HeldKey {
    signer_id: String,
    key: Key,
}

/// The stored state of the repository stored as `collection`, `None` before its first upload.
/// Parses every stored role: CPU work, run on the blocking pool by publishes.
fn read_stored(raft: &SealRaft, collection: &str) -> Result<Option<Stored>, ApiError> {
    let reader = raft.read();
    let versions: BTreeMap<String, u64> = reader.current_versions(collection)?.into_iter().collect();
    let read =
        |role: &str| -> Result<Option<Vec<u8>>, ApiError> { Ok(reader.current(collection, role)?.map(|(_, b)| b)) };
    let Some(root) = read(ROOT)? else {
        return Ok(None);
    };
    let root = Metadata::<Root>::from_bytes(ROOT, &root).map_err(|e| corrupt(collection, ROOT, e))?;
    let mut targets = BTreeMap::new();
    for role in versions
        .keys()
        .filter(|r| ![ROOT, SNAPSHOT, TIMESTAMP].contains(&r.as_str()))
    {
        if let Some(bytes) = read(role)? {
            let md = Metadata::<Targets>::from_bytes(role, &bytes).map_err(|e| corrupt(collection, role, e))?;
            targets.insert(role.clone(), md);
        }
    }
    let snapshot = read(SNAPSHOT)?
        .map(|b| Metadata::<Snapshot>::from_bytes(SNAPSHOT, &b))
        .transpose()
        .map_err(|e| corrupt(collection, SNAPSHOT, e))?;
    let timestamp = read(TIMESTAMP)?
        .map(|b| Metadata::<Timestamp>::from_bytes(TIMESTAMP, &b))
        .transpose()
        .map_err(|e| corrupt(collection, TIMESTAMP, e))?;
    Ok(Some(Stored {
        state: RepoState {
            root,
            targets,
            snapshot,
            timestamp,
        },
        versions,
    }))
}

impl RaftBackend {
    /// The repository's stored state, `None` before its first upload.
    fn tuf1_stored(&self, collection: &str) -> Result<Option<Stored>, ApiError> {
        read_stored(&self.raft, collection)
    }

    /// The online keys held for `role` of the repository stored as `collection`.
    fn tuf1_held(&self, collection: &str, role: &str) -> Result<Vec<HeldKey>, ApiError> {
        let Some(keys) = self.raft.read().server_key(collection, role)? else {
            return Ok(Vec::new());
        };
        keys.active
            .iter()
            .chain(keys.pending.iter())
            .map(|entry| {
                let bad = |reason: String| ApiError::Unknown {
                    reason: format!("stored online key {} of {collection}: {reason}", entry.key_id),
                    source: None,
                };
                let v = Value::parse(&entry.public_key_json).map_err(|e| bad(e.0))?;
                let parsed = Key::from_value(role, "key", "", &v).map_err(|e| bad(e.to_string()))?;
                let key =
                    Key::new(parsed.keytype(), parsed.scheme(), parsed.public()).map_err(|e| bad(e.to_string()))?;
                Ok(HeldKey {
                    signer_id: entry.key_id.clone(),
                    key,
                })
            })
            .collect()
    }

    /// `GET /tuf/<repository>/metadata/<file>`.
    pub(super) async fn tuf1_get(
        &self,
        repository: &str,
        file: &str,
    ) -> Result<Option<(StoredMetadata, bool)>, ApiError> {
        let collection = tuf1::collection(repository);
        for (role, version) in crate::tuf1::file_readings(file) {
            if let Some(v) = version {
                if let Some(bytes) = self.raft.read().by_version(&collection, role, v)? {
                    return Ok(Some((stored(bytes), true)));
                }
                continue;
            }
            let Some(found) = self.raft.read().current_file(&collection, role)? else {
                continue;
            };
            // Never serve an expired timestamp: regenerate it first.
            let expired = role == TIMESTAMP
                && found
                    .timestamp_expiry
                    .is_some_and(|exp| exp <= unix_nanos(self.clock.now()));
            if !expired {
                return Ok(Some((super::shared(found.bytes), false)));
            }
            self.tuf1_refresh(&collection).await?;
            return Ok(self
                .raft
                .read()
                .current_file(&collection, role)?
                .map(|f| (super::shared(f.bytes), false)));
        }
        Ok(None)
    }

    /// `GET /tuf/`.
    pub(super) fn tuf1_names(&self, after: Option<&str>, limit: usize) -> Result<Vec<String>, ApiError> {
        let after = after.map(tuf1::collection);
        let collections = self
            .raft
            .read()
            .collections_with_prefix(tuf1::COLLECTION_PREFIX, after.as_deref(), limit)?;
        Ok(collections
            .iter()
            .filter_map(|c| tuf1::repository_of(c).map(str::to_owned))
            .collect())
    }

    /// `GET` and `POST /tuf/<repository>/keys`: the online keys, each role's made by the signer
    /// when missing and `create`.
    pub(super) async fn tuf1_online_keys(&self, repository: &str, create: bool) -> Result<Option<Vec<u8>>, ApiError> {
        let collection = tuf1::collection(repository);
        // Reads take no lock a write holds; making keys is serialised with every other minting.
        let _guard = if create { Some(self.key_lock.lock().await) } else { None };
        let mut out = Vec::new();
        for role in [TIMESTAMP, SNAPSHOT] {
            let mut held = self.tuf1_held(&collection, role)?;
            if held.is_empty() {
                if !create {
                    return Ok(None);
                }
                held.push(self.tuf1_mint(&collection, role).await?);
            }
            out.push(held.into_iter().map(|h| h.key).collect::<Vec<_>>());
        }
        Ok(Some(crate::tuf1::keys_body(&out[0], &out[1])))
    }

    /// `POST /tuf/<repository>/keys/<role>`: a new key for `role`, held beside the others; the
    /// repository's online keys afterwards.
    pub(super) async fn tuf1_new_key(&self, repository: &str, role: KeyRole) -> Result<Vec<u8>, ApiError> {
        let collection = tuf1::collection(repository);
        let _guard = self.key_lock.lock().await;
        self.tuf1_mint_as(&collection, role.as_str(), true).await?;
        let [timestamp, snapshot] = [TIMESTAMP, SNAPSHOT].map(|r| {
            self.tuf1_held(&collection, r)
                .map(|held| held.into_iter().map(|h| h.key).collect::<Vec<_>>())
        });
        Ok(crate::tuf1::keys_body(&timestamp?, &snapshot?))
    }

    /// Has the signer make a key for `role` of `collection` and records it (active) through Raft.
    async fn tuf1_mint(&self, collection: &str, role: &str) -> Result<HeldKey, ApiError> {
        self.tuf1_mint_as(collection, role, false).await
    }

    /// Has the signer make a key for `role` of `collection` and records it through Raft, as the
    /// active key or, `pending`, after the ones held.
    async fn tuf1_mint_as(&self, collection: &str, role: &str, pending: bool) -> Result<HeldKey, ApiError> {
        let info = self
            .signer
            .create_key(collection, role, self.key_algorithm)
            .await
            .map_err(|e| match e {
                SignerError::Unavailable { ref message } => ApiError::Unavailable {
                    reason: format!("the signer is unavailable: {message}"),
                    source: Some(Cause::new(e)),
                },
                other => ApiError::unknown(other.to_string(), other),
            })?;
        let key = tuf1_key(&info)?;
        let cmd = Command::SetServerKey {
            gun: collection.to_owned(),
            role: role.to_owned(),
            key_id: info.key_id.clone(),
            public_key_json: tuf1::cjson::to_json(key.to_value()),
            pending,
        };
        match self.propose(cmd).await? {
            ApplyOutcome::Applied => Ok(HeldKey {
                signer_id: info.key_id,
                key,
            }),
            other => Err(ApiError::Unknown {
                reason: format!("recording the new {role} key of {collection}: {other:?}"),
                source: None,
            }),
        }
    }

    /// Signs `signed` (the `role` object, naming the file `named`) with every online key root
    /// lists for the role, and assembles the file. A root that lists too few of the service's
    /// keys for the role's threshold is the uploader's error (400), found before anything is
    /// written. A signer that already signed this version (a write that never committed) gets
    /// the object again above its mark, once per key.
    async fn tuf1_sign(
        &self,
        collection: &str,
        root: &Metadata<Root>,
        role: &str,
        mut signed: Value,
        named: &[u8],
    ) -> Result<Vec<u8>, ApiError> {
        let held = self.tuf1_held(collection, role)?;
        let listed = root.signed().role(role).ok_or_else(|| ApiError::InvalidUpdate {
            kind: UpdateErrorKind::BadRoot,
            msg: format!("root lists no {role} role"),
        })?;
        let signers: Vec<(&str, &HeldKey)> = listed
            .keyids
            .iter()
            .filter_map(|id| {
                let k = root.signed().keys.get(id)?;
                held.iter()
                    .find(|h| {
                        h.key.keytype() == k.keytype() && h.key.scheme() == k.scheme() && h.key.public() == k.public()
                    })
                    .map(|h| (id.as_str(), h))
            })
            .collect();
        if (signers.len() as u64) < listed.threshold {
            return Err(ApiError::InvalidUpdate {
                kind: UpdateErrorKind::BadRoot,
                msg: format!(
                    "root's {role} role needs {} signatures but lists {} of this service's {role} keys (POST /tuf/<repository>/keys lists them)",
                    listed.threshold,
                    signers.len()
                ),
            });
        }
        let scope = SignScope {
            gun: collection,
            role,
            named: Some(named),
        };
        let started = std::time::Instant::now();
        let mut skips = 0;
        'attempt: loop {
            let canonical = tuf1::cjson::to_canonical(&signed);
            let mut sigs = Vec::with_capacity(signers.len());
            for (keyid, h) in &signers {
                match self.signer.sign(&h.signer_id, &canonical, scope).await {
                    Ok(s) => {
                        let sig = match s.method {
                            SignatureMethod::Ecdsa => ecdsa_p256_raw_to_der(&s.signature)
                                .map_err(|e| ApiError::updating(format!("{role} signature of {collection}"), e))?,
                            SignatureMethod::Eddsa => s.signature,
                        };
                        sigs.push(Signature {
                            keyid: (*keyid).to_owned(),
                            sig: hex::encode(sig),
                        });
                    }
                    Err(SignerError::Refused {
                        high_water: Some(mark),
                        message,
                    }) if skips < signers.len() => {
                        let version = signed_version(&signed).unwrap_or(0);
                        let next = mark.max(version).checked_add(1).ok_or_else(|| ApiError::Updating {
                            reason: format!("the signer's last {role} version of {collection} is the largest possible"),
                            source: None,
                        })?;
                        tracing::warn!(collection, role, version, mark, %message,
                            "the signer already signed this version; regenerating above it");
                        set_signed_version(&mut signed, next);
                        skips += 1;
                        continue 'attempt;
                    }
                    Err(e) => return Err(signing_error(role, &h.signer_id, e)),
                }
            }
            self.metrics
                .signing_histogram(role)
                .observe(started.elapsed().as_secs_f64());
            return assemble(root, role, &signed, &sigs).map_err(|e| ApiError::updating(e.to_string(), e));
        }
    }

    /// The signed snapshot and timestamp over `next` (the state an upload leads to), as files to
    /// store, and the timestamp's expiry.
    async fn tuf1_sign_snapshot_and_timestamp(
        &self,
        collection: &str,
        next: &RepoState,
        now: time::OffsetDateTime,
    ) -> Result<(MetaFile, MetaFile, time::OffsetDateTime), ApiError> {
        let targets = next.targets.get(TARGETS).ok_or_else(|| ApiError::InvalidUpdate {
            kind: UpdateErrorKind::BadTargets,
            msg: "a repository's first upload holds its root and its targets".into(),
        })?;
        let signed = snapshot_to_sign(next.snapshot.as_ref(), &next.targets, now + self.lifetimes.snapshot)
            .map_err(upload_error)?;
        let snapshot = self
            .tuf1_sign(collection, &next.root, SNAPSHOT, signed, targets.bytes())
            .await?;
        let snapshot_md =
            Metadata::<Snapshot>::from_bytes(SNAPSHOT, &snapshot).map_err(|e| corrupt(collection, SNAPSHOT, e))?;
        let expires = now + self.lifetimes.timestamp;
        let signed = timestamp_to_sign(next.timestamp.as_ref(), &snapshot_md, expires).map_err(upload_error)?;
        let timestamp = self
            .tuf1_sign(collection, &next.root, TIMESTAMP, signed, &snapshot)
            .await?;
        let timestamp_md =
            Metadata::<Timestamp>::from_bytes(TIMESTAMP, &timestamp).map_err(|e| corrupt(collection, TIMESTAMP, e))?;
        Ok((
            MetaFile {
                role: SNAPSHOT.to_owned(),
                version: snapshot_md.version(),
                bytes: snapshot,
            },
            MetaFile {
                role: TIMESTAMP.to_owned(),
                version: timestamp_md.version(),
                bytes: timestamp,
            },
            timestamp_md.expires(),
        ))
    }

    /// `POST /tuf/<repository>/metadata`.
    pub(super) async fn tuf1_publish(
        &self,
        repository: &str,
        files: BTreeMap<String, Vec<u8>>,
    ) -> Result<(), ApiError> {
        let collection = tuf1::collection(repository);
        let _serial = self.gun_locks.lock(&collection).await;
        for _ in 0..PUBLISH_ATTEMPTS {
            if self.tuf1_try_publish(&collection, &files).await?.is_some() {
                return Ok(());
            }
        }
        Err(ApiError::OldVersion {
            reason: format!("concurrent updates to {collection} kept winning; try again"),
            source: None,
        })
    }

    /// One validate-sign-propose attempt; `Ok(None)` when a concurrent write won the
    /// compare-and-set.
    async fn tuf1_try_publish(
        &self,
        collection: &str,
        files: &BTreeMap<String, Vec<u8>>,
    ) -> Result<Option<()>, ApiError> {
        let now = self.clock.now();
        // Reading and parsing the stored roles and validating the upload are CPU work: on the
        // blocking pool, at most one per core at once, as Notary uploads are.
        let (versions, next) = {
            let _slot = self.validation_slots.acquire().await.map_err(|_| ApiError::Unknown {
                reason: "validation pool closed".into(),
                source: None,
            })?;
            let (raft, collection, files) = (self.raft.clone(), collection.to_owned(), files.clone());
            tokio::task::spawn_blocking(move || {
                let stored = read_stored(&raft, &collection)?;
                let versions = stored.as_ref().map(|s| s.versions.clone()).unwrap_or_default();
                validate(stored.map(|s| s.state), &files, now).map(|next| (versions, next))
            })
            .await
            .map_err(|e| ApiError::unknown(format!("validation task: {e}"), e))??
        };
        let (snapshot, timestamp, expires) = self.tuf1_sign_snapshot_and_timestamp(collection, &next, now).await?;
        let mut out: Vec<MetaFile> = files
            .keys()
            .map(|role| {
                let md_version = if role == ROOT {
                    next.root.version()
                } else {
                    next.targets.get(role).map_or(0, |t| t.version())
                };
                let bytes = if role == ROOT {
                    next.root.bytes().to_vec()
                } else {
                    next.targets.get(role).map(|t| t.bytes().to_vec()).unwrap_or_default()
                };
                MetaFile {
                    role: role.clone(),
                    version: md_version,
                    bytes,
                }
            })
            .collect();
        out.push(snapshot);
        out.push(timestamp);
        // Every role the validation read, at the version it read (absent ones as None).
        let mut expected: Vec<(String, Option<u64>)> = versions.iter().map(|(r, v)| (r.clone(), Some(*v))).collect();
        for f in &out {
            if !versions.contains_key(&f.role) {
                expected.push((f.role.clone(), None));
            }
        }
        let cmd = Command::Publish {
            gun: collection.to_owned(),
            files: out,
            expected,
            timestamp_expires_unix_nanos: Some(unix_nanos(expires)),
            at_unix_nanos: unix_nanos(now),
        };
        match self.propose(cmd).await? {
            ApplyOutcome::Applied => Ok(Some(())),
            ApplyOutcome::Conflict { .. } => Ok(None),
            ApplyOutcome::OldVersion {
                role, version, current, ..
            } => Err(ApiError::OldVersion {
                reason: format!("{role} version {version} is not above {current}"),
                source: None,
            }),
            ApplyOutcome::Rejected { reason } => Err(ApiError::Updating { reason, source: None }),
        }
    }

    /// A fresh timestamp (and snapshot, when it falls due too) for the repository stored as
    /// `collection`, in TUF 1.0 form: what the refresher and an expired read call.
    pub(super) async fn tuf1_refresh(&self, collection: &str) -> Result<(), ApiError> {
        let _serial = self.gun_locks.lock(collection).await;
        let now = self.clock.now();
        let Some(Stored { state, versions }) = self.tuf1_stored(collection)? else {
            return Ok(());
        };
        let (Some(snapshot), Some(timestamp), Some(targets)) = (
            state.snapshot.as_ref(),
            state.timestamp.as_ref(),
            state.targets.get(TARGETS),
        ) else {
            return Ok(());
        };
        let mut files = Vec::new();
        let mut snapshot = snapshot.clone();
        if self.lifetimes.is_due(snapshot.expires(), now) {
            let signed = snapshot_to_sign(Some(&snapshot), &state.targets, now + self.lifetimes.snapshot)
                .map_err(|e| ApiError::updating(e.to_string(), e))?;
            let bytes = self
                .tuf1_sign(collection, &state.root, SNAPSHOT, signed, targets.bytes())
                .await?;
            snapshot = Metadata::from_bytes(SNAPSHOT, &bytes).map_err(|e| corrupt(collection, SNAPSHOT, e))?;
            files.push(MetaFile {
                role: SNAPSHOT.to_owned(),
                version: snapshot.version(),
                bytes,
            });
        }
        let expires = now + self.lifetimes.timestamp;
        let signed =
            timestamp_to_sign(Some(timestamp), &snapshot, expires).map_err(|e| ApiError::updating(e.to_string(), e))?;
        let bytes = self
            .tuf1_sign(collection, &state.root, TIMESTAMP, signed, snapshot.bytes())
            .await?;
        let md = Metadata::<Timestamp>::from_bytes(TIMESTAMP, &bytes).map_err(|e| corrupt(collection, TIMESTAMP, e))?;
        files.push(MetaFile {
            role: TIMESTAMP.to_owned(),
            version: md.version(),
            bytes,
        });
        let expected = [SNAPSHOT, TIMESTAMP]
            .iter()
            .map(|r| ((*r).to_owned(), versions.get(*r).copied()))
            .collect();
        let cmd = Command::RefreshTimestamp {
            gun: collection.to_owned(),
            files,
            expected,
            timestamp_expires_unix_nanos: unix_nanos(md.expires()),
            at_unix_nanos: unix_nanos(now),
        };
        match self.propose(cmd).await? {
            ApplyOutcome::Applied | ApplyOutcome::Conflict { .. } | ApplyOutcome::OldVersion { .. } => Ok(()),
            ApplyOutcome::Rejected { reason } => Err(ApiError::Updating { reason, source: None }),
        }
    }
}

/// Validates an upload against the stored state (`None`: the repository does not exist yet,
/// and the upload must hold its first root).
fn validate(
    current: Option<RepoState>,
    files: &BTreeMap<String, Vec<u8>>,
    now: time::OffsetDateTime,
) -> Result<RepoState, ApiError> {
    let limits = Limits::default();
    match current {
        Some(state) => validate_upload(&state, files, now, &limits).map_err(upload_error),
        None => {
            let root = files.get(ROOT).ok_or_else(|| ApiError::InvalidUpdate {
                kind: UpdateErrorKind::BadRoot,
                msg: "no such repository: its first upload holds its root (version 1) and its targets".into(),
            })?;
            let root = validate_first_root(root, now, &limits).map_err(upload_error)?;
            let empty = RepoState {
                root,
                targets: BTreeMap::new(),
                snapshot: None,
                timestamp: None,
            };
            let mut rest = files.clone();
            rest.remove(ROOT);
            validate_upload(&empty, &rest, now, &limits).map_err(upload_error)
        }
    }
}
