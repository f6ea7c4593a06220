//! The real [`Backend`]: reads from the locally applied Raft state machine,
//! validates uploads with seal-tuf, gets signatures from the
//! [`CryptoService`], and writes only through Raft.
//!
//! Every time-dependent decision (expiry checks, new expiries, changefeed
//! times, the refresher's deadlines) is made here, on the leader, before
//! proposing, with the node's [`Clock`]; apply never reads the clock. (Only
//! token authentication reads the system clock directly: it is no metadata
//! decision.)

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration as StdDuration;

use async_trait::async_trait;
use axum::body::Bytes;
use seal_raft::SealRaft;
use seal_storage::{ApplyOutcome, Command, MetaFile};
use seal_tuf::metadata::{
    set_signed_version, signed_version, Root, SignedFile, Snapshot, Timestamp, ROOT, SNAPSHOT, TARGETS, TIMESTAMP,
};
pub use seal_tuf::server::ServerLifetimes;
use seal_tuf::server::{plan_refresh, version_above_mark, HeldKeys};
use seal_tuf::update::{
    validate_update_cached, ParsedRoot, ServerKeys, SnapshotPlan, StoredFiles, UpdateLimits, UpdatePlan,
};
use seal_tuf::{PublicKey, Signature as TufSignature};
use time::OffsetDateTime;
use tokio::sync::Mutex;

use crate::clock::Clock;
use crate::config::KeyAlgorithm;
use crate::error::{ApiError, Cause};
use crate::http::{Backend, ChangeCategory, ChangeRecord, ChangefeedQuery, Health, Readiness, StoredMetadata};
use crate::metrics::Metrics;
use crate::multipart::RoleFile;
use crate::routes::KeyRole;
use crate::signer::{CryptoService, PublicKeyInfo, SignScope, SignerError};

mod tuf1;

/// Notary's name for the health check of the trust service (the signer).
pub const TRUST_OPERATIONAL: &str = "Trust operational";

/// How often a publish is re-validated when a concurrent one won the
/// compare-and-set, before answering with the conflict.
const PUBLISH_ATTEMPTS: usize = 3;

/// The Raft- and seal-tuf-backed implementation of the HTTP [`Backend`].
pub struct RaftBackend {
    raft: Arc<SealRaft>,
    signer: Arc<dyn CryptoService>,
    clock: Arc<dyn Clock>,
    lifetimes: ServerLifetimes,
    key_algorithm: KeyAlgorithm,
    metrics: Metrics,
    /// Serialises the leader's read-validate-sign-propose cycles for key
    /// minting, so two GETs before a root do not mint two keys. Reads never
    /// take it.
    key_lock: Mutex<()>,
    /// Serialises the read-validate-sign-propose cycles of one collection (publishes and
    /// timestamp refreshes), so that concurrent writers do not sign competing versions and race
    /// each other's signer high-water marks; the loser validates against the winner's state.
    gun_locks: GunLocks,
    /// What one upload may hold (`limits.max_keys`, …, `limits.max_version_jump`).
    update_limits: UpdateLimits,
    /// Uploads validated at once: their signature checks run on the blocking
    /// pool, so a flood of uploads cannot take the async runtime that
    /// serves reads and Raft, and at most this many cores verify.
    validation_slots: Arc<tokio::sync::Semaphore>,
    /// Each collection's root as its last accepted validation parsed it.
    roots: RootCache,
}

/// Collections whose parsed root [`RootCache`] keeps at most (a root is a few KiB parsed).
const ROOT_CACHE_ENTRIES: usize = 1024;

/// Each collection's root as its last accepted validation parsed it, so that a later publish
/// neither parses nor hashes the root again. An entry is only a hint: validation uses it only
/// if its bytes are the stored root's, so an entry left by an update that never committed, or
/// by a node that has since lost leadership, cannot change a verdict. Bounded by
/// [`ROOT_CACHE_ENTRIES`]; when full, an arbitrary entry makes room.
#[derive(Default)]
struct RootCache(std::sync::Mutex<std::collections::HashMap<String, Arc<ParsedRoot>>>);

impl RootCache {
    fn get(&self, gun: &str) -> Option<Arc<ParsedRoot>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).get(gun).cloned()
    }

    fn put(&self, gun: &str, root: Arc<ParsedRoot>) {
        let mut map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if map.len() >= ROOT_CACHE_ENTRIES && !map.contains_key(gun) {
            if let Some(victim) = map.keys().next().cloned() {
                map.remove(&victim);
            }
        }
        map.insert(gun.to_owned(), root);
    }
}

/// One async lock per collection, made on first use and dropped with its last user.
#[derive(Default)]
struct GunLocks(std::sync::Mutex<std::collections::HashMap<String, Arc<Mutex<()>>>>);

/// Holds the lock of one collection; removes the lock from the map when nobody else waits on it.
struct GunGuard<'a> {
    locks: &'a GunLocks,
    gun: String,
    guard: Option<tokio::sync::OwnedMutexGuard<()>>,
}

impl GunLocks {
    async fn lock(&self, gun: &str) -> GunGuard<'_> {
        let lock = {
            let mut map = self.0.lock().unwrap_or_else(|e| e.into_inner());
            map.entry(gun.to_owned()).or_default().clone()
        };
        GunGuard {
            locks: self,
            gun: gun.to_owned(),
            guard: Some(lock.lock_owned().await),
        }
    }
}

impl Drop for GunGuard<'_> {
    fn drop(&mut self) {
        self.guard.take();
        let mut map = self.locks.0.lock().unwrap_or_else(|e| e.into_inner());
        // The map's own reference is the last one: nobody holds or awaits this lock.
        if map.get(&self.gun).is_some_and(|l| Arc::strong_count(l) == 1) {
            map.remove(&self.gun);
        }
    }
}

impl RaftBackend {
    /// A backend over a running Raft node and a signing service.
    pub fn new(
        raft: Arc<SealRaft>,
        signer: Arc<dyn CryptoService>,
        clock: Arc<dyn Clock>,
        lifetimes: ServerLifetimes,
        key_algorithm: KeyAlgorithm,
        metrics: Metrics,
    ) -> RaftBackend {
        RaftBackend {
            raft,
            signer,
            clock,
            lifetimes,
            key_algorithm,
            metrics,
            key_lock: Mutex::new(()),
            gun_locks: GunLocks::default(),
            update_limits: UpdateLimits::default(),
            validation_slots: Arc::new(tokio::sync::Semaphore::new(
                std::thread::available_parallelism().map_or(2, |n| n.get()),
            )),
            roots: RootCache::default(),
        }
    }

    /// Validates uploads within `limits` instead of the defaults.
    pub fn with_update_limits(mut self, limits: UpdateLimits) -> RaftBackend {
        self.update_limits = limits;
        self
    }

    /// Validates an upload on the blocking pool, at most one per core at once.
    async fn validate(
        &self,
        gun: &str,
        stored: &StoredFiles,
        uploads: &[(String, Vec<u8>)],
        now: time::OffsetDateTime,
        keys: ServerKeys,
    ) -> Result<UpdatePlan, ApiError> {
        let _slot = self.validation_slots.acquire().await.map_err(|_| ApiError::Unknown {
            reason: "validation pool closed".into(),
            source: None,
        })?;
        let cached = self.roots.get(gun);
        let (owned_gun, stored, uploads, limits) =
            (gun.to_owned(), stored.clone(), uploads.to_vec(), self.update_limits);
        let plan = tokio::task::spawn_blocking(move || {
            validate_update_cached(&owned_gun, &stored, uploads, now, &keys, &limits, cached)
        })
        .await
        .map_err(|e| ApiError::unknown(format!("validation task: {e}"), e))?
        .map_err(ApiError::from)?;
        self.roots.put(gun, plan.root.clone());
        Ok(plan)
    }

    /// The Raft node.
    pub fn raft(&self) -> &Arc<SealRaft> {
        &self.raft
    }

    /// Every current file of `gun`.
    fn stored_files(&self, gun: &str) -> Result<StoredFiles, ApiError> {
        let reader = self.raft.read();
        let mut out = BTreeMap::new();
        for (role, _) in reader.current_versions(gun)? {
            if let Some((_, bytes)) = reader.current(gun, &role)? {
                out.insert(role, bytes);
            }
        }
        Ok(out)
    }

    /// The public keys the server holds for (gun, role): active and pending.
    fn held_keys(&self, gun: &str, role: &str) -> Result<Vec<PublicKey>, ApiError> {
        let Some(keys) = self.raft.read().server_key(gun, role)? else {
            return Ok(Vec::new());
        };
        keys.active
            .iter()
            .chain(keys.pending.iter())
            .map(|k| {
                PublicKey::from_json(&k.public_key_json)
                    .map_err(|e| ApiError::unknown(format!("stored server key {} for {gun} {role}: {e}", k.key_id), e))
            })
            .collect()
    }

    fn server_keys(&self, gun: &str) -> Result<ServerKeys, ApiError> {
        Ok(ServerKeys {
            timestamp: self.held_keys(gun, TIMESTAMP)?,
            snapshot: self.held_keys(gun, SNAPSHOT)?,
        })
    }

    /// Signs `signed` (`role` metadata of `gun`) with each of `key_ids`
    /// and assembles the file to store (with its version).
    ///
    /// A Seal signer refuses a version at or below the last one it signed
    /// with a key. That happens when a signature was made but the write
    /// carrying it never committed (the leader lost its term, the process
    /// died): the stored version is then behind the signer's. The metadata
    /// is regenerated just above the signer's high-water mark, so the node
    /// does not stay stuck on a version the signer will never sign again.
    async fn sign_file(
        &self,
        gun: &str,
        role: &str,
        mut signed: seal_tuf::cjson::Value,
        key_ids: &[String],
        named: Option<&[u8]>,
    ) -> Result<MetaFile, ApiError> {
        let started = std::time::Instant::now();
        let scope = SignScope { gun, role, named };
        let mut skips = 0;
        'attempt: loop {
            let version = signed_version(&signed).ok_or_else(|| ApiError::Updating {
                reason: format!("generated {role} metadata has no version"),
                source: None,
            })?;
            let canonical = signed.to_canonical();
            let mut sigs = Vec::with_capacity(key_ids.len());
            for id in key_ids {
                match self.signer.sign(id, &canonical, scope).await {
                    Ok(s) => sigs.push(TufSignature {
                        keyid: s.key_id,
                        method: s.method.as_str().to_owned(),
                        sig: s.signature,
                    }),
                    Err(e) => {
                        // A signer refusing a version it already signed past: regenerate above
                        // its mark (at most once per key, so two signers cannot chase each other).
                        let above = match &e {
                            SignerError::Refused {
                                high_water: Some(high_water),
                                message,
                            } if skips < key_ids.len() => version_above_mark(role, version, *high_water)
                                .transpose()
                                .map(|next| (next, *high_water, message)),
                            _ => None,
                        };
                        let Some((next, high_water, message)) = above else {
                            return Err(signing_error(role, id, e));
                        };
                        let next = next.map_err(|source| {
                            ApiError::updating(
                                format!("the signer's last {role} version for key {id} is the largest possible"),
                                source,
                            )
                        })?;
                        tracing::warn!(
                            gun, role, key_id = %id, version, high_water, %message,
                            "the signer already signed this version; regenerating above it"
                        );
                        set_signed_version(&mut signed, next);
                        skips += 1;
                        continue 'attempt;
                    }
                }
            }
            self.metrics
                .signing_histogram(role)
                .observe(started.elapsed().as_secs_f64());
            return Ok(MetaFile {
                role: role.to_owned(),
                version,
                bytes: SignedFile::assemble(role, signed, sigs).into_bytes(),
            });
        }
    }

    /// Signs the timestamp `ts`, which names `snapshot_bytes`, into the file to store.
    async fn sign_timestamp(
        &self,
        gun: &str,
        ts: &Timestamp,
        key_ids: &[String],
        snapshot_bytes: &[u8],
    ) -> Result<MetaFile, ApiError> {
        self.sign_file(gun, TIMESTAMP, ts.to_value(), key_ids, Some(snapshot_bytes))
            .await
    }

    async fn propose(&self, cmd: Command) -> Result<ApplyOutcome, ApiError> {
        propose_on(&self.raft, cmd).await
    }

    /// One validate-sign-propose attempt. `Ok(None)` means a concurrent
    /// update won the compare-and-set: validate again.
    async fn try_publish(&self, gun: &str, uploads: &[(String, Vec<u8>)]) -> Result<Option<()>, ApiError> {
        let now = self.clock.now();
        let stored = self.stored_files(gun)?;
        let keys = self.server_keys(gun)?;
        let plan = self.validate(gun, &stored, uploads, now, keys).await?;
        if plan.changes_nothing() {
            // Accepted as Notary accepts it; nothing to sign or store.
            return Ok(Some(()));
        }

        let mut files: Vec<MetaFile> = plan
            .files
            .iter()
            .map(|f| MetaFile {
                role: f.role().to_owned(),
                version: plan.versions[f.role()],
                bytes: f.bytes().to_vec(),
            })
            .collect();
        let snapshot_bytes = match &plan.snapshot {
            SnapshotPlan::Uploaded => files
                .iter()
                .find(|f| f.role == SNAPSHOT)
                .map(|f| f.bytes.clone())
                .unwrap_or_default(),
            SnapshotPlan::Generate { key_ids } => {
                let snap = plan
                    .next_snapshot(&stored, now, self.lifetimes.snapshot)?
                    .ok_or_else(|| ApiError::Updating {
                        reason: "no snapshot to generate".into(),
                        source: None,
                    })?;
                let targets = files
                    .iter()
                    .find(|f| f.role == TARGETS)
                    .map(|f| f.bytes.as_slice())
                    .or_else(|| stored.get(TARGETS).map(Vec::as_slice));
                let file = self.sign_file(gun, SNAPSHOT, snap.to_value(), key_ids, targets).await?;
                let bytes = file.bytes.clone();
                files.push(file);
                bytes
            }
        };
        let ts = plan.next_timestamp(&stored, &snapshot_bytes, now, self.lifetimes.timestamp)?;
        let ts_expires = ts.expires;
        files.push(
            self.sign_timestamp(gun, &ts, &plan.timestamp_key_ids, &snapshot_bytes)
                .await?,
        );

        // The uploaded root, as validation parsed it (the plan's root is the uploaded one when
        // there is one).
        let new_root = plan
            .files
            .iter()
            .any(|f| f.role() == ROOT)
            .then(|| plan.root.root().clone());
        let cmd = Command::Publish {
            gun: gun.to_owned(),
            files,
            expected: plan.expected.clone(),
            timestamp_expires_unix_nanos: Some(unix_nanos(ts_expires)),
            at_unix_nanos: unix_nanos(now),
        };
        #[cfg(feature = "fault-injection")]
        if crate::faults::ack_before_commit() {
            self.propose_in_background(gun, cmd, new_root);
            return Ok(Some(()));
        }
        match self.propose(cmd).await? {
            ApplyOutcome::Applied => {}
            ApplyOutcome::Conflict { .. } => return Ok(None),
            ApplyOutcome::OldVersion {
                role, version, current, ..
            } => {
                return Err(ApiError::OldVersion {
                    reason: format!("{role} version {version} is not above {current}"),
                    source: None,
                })
            }
            ApplyOutcome::Rejected { reason } => return Err(ApiError::Updating { reason, source: None }),
        }
        // A published root makes the server keys it lists the active ones.
        if let Some(root) = new_root {
            activate_listed_keys(&self.raft, gun, &root).await?;
        }
        Ok(Some(()))
    }

    /// Fault injection's `ack_before_commit`: propose the publish (and then activate the keys
    /// its root lists) in the background, so that the caller answers success before the write
    /// has committed, or even when it never does. A deliberately broken node, for checkers.
    #[cfg(feature = "fault-injection")]
    fn propose_in_background(&self, gun: &str, cmd: Command, new_root: Option<Root>) {
        tracing::debug!(gun, "fault injection: acknowledging a publish before it commits");
        let raft = self.raft.clone();
        let gun = gun.to_owned();
        tokio::spawn(async move {
            let result = match propose_on(&raft, cmd).await {
                Ok(ApplyOutcome::Applied) => match &new_root {
                    Some(root) => activate_listed_keys(&raft, &gun, root).await,
                    None => Ok(()),
                },
                Ok(outcome) => Err(ApiError::Updating {
                    reason: format!("{outcome:?}"),
                    source: None,
                }),
                Err(e) => Err(e),
            };
            if let Err(e) = result {
                tracing::warn!(gun, error = %e, "fault injection: a publish acknowledged before commit failed");
            }
        });
    }

    /// Writes a fresh timestamp for `gun` (and a fresh server-managed
    /// snapshot if it expires within the refresh margin). Used by the
    /// refresher and when a read finds an expired timestamp.
    pub async fn refresh_timestamp(&self, gun: &str) -> Result<(), ApiError> {
        if seal_tuf::tuf1::repository_of(gun).is_some() {
            return self.tuf1_refresh(gun).await;
        }
        let _serial = self.gun_locks.lock(gun).await;
        let now = self.clock.now();
        let stored = self.stored_files(gun)?;
        let (Some(root_bytes), Some(ts_bytes), Some(snap_bytes)) =
            (stored.get(ROOT), stored.get(TIMESTAMP), stored.get(SNAPSHOT))
        else {
            return Ok(()); // deleted meanwhile, or never complete
        };
        let root = parse_stored(gun, ROOT, root_bytes, Root::from_signed)?;
        let prev_ts = parse_stored(gun, TIMESTAMP, ts_bytes, Timestamp::from_signed)?;
        let snap = parse_stored(gun, SNAPSHOT, snap_bytes, Snapshot::from_signed)?;
        let keys = self.server_keys(gun)?;
        let plan = plan_refresh(&root, &prev_ts, &snap, &keys, now, &self.lifetimes)?;
        let mut files = Vec::new();
        let mut snapshot_bytes = snap_bytes.clone();
        if let Some((next, snap_keys)) = &plan.snapshot {
            let targets = stored.get(TARGETS).map(Vec::as_slice);
            let file = self
                .sign_file(gun, SNAPSHOT, next.to_value(), snap_keys, targets)
                .await?;
            snapshot_bytes = file.bytes.clone();
            files.push(file);
        }
        let ts = plan.next_timestamp(&snapshot_bytes)?;
        let expires = ts.expires;
        files.push(
            self.sign_timestamp(gun, &ts, &plan.timestamp_key_ids, &snapshot_bytes)
                .await?,
        );
        let cmd = Command::RefreshTimestamp {
            gun: gun.to_owned(),
            files,
            expected: plan.expected,
            timestamp_expires_unix_nanos: unix_nanos(expires),
            at_unix_nanos: unix_nanos(now),
        };
        match self.propose(cmd).await? {
            // A concurrent publish wrote a newer timestamp: nothing to do.
            ApplyOutcome::Applied | ApplyOutcome::Conflict { .. } | ApplyOutcome::OldVersion { .. } => Ok(()),
            ApplyOutcome::Rejected { reason } => Err(ApiError::Updating { reason, source: None }),
        }
    }

    /// Refreshes every timestamp that expires within the margin; returns how
    /// many GUNs were due.
    pub async fn refresh_due(&self, limit: usize) -> usize {
        let now = self.clock.now();
        let before = unix_nanos(self.lifetimes.due_before(now));
        let due = match self.raft.read().due_timestamps(before, limit) {
            Ok(d) => d,
            Err(e) => {
                tracing::error!(error = %e, "reading the timestamp expiry index");
                return 0;
            }
        };
        for (gun, _) in &due {
            if let Err(e) = self.refresh_timestamp(gun).await {
                tracing::warn!(gun = %gun, error = %e, "timestamp refresh failed");
            }
        }
        due.len()
    }

    /// When the next timestamp falls due for refresh, if any is stored.
    pub fn next_due(&self) -> Option<OffsetDateTime> {
        let (_, expires) = self.raft.read().due_timestamps(i64::MAX, 1).ok()?.into_iter().next()?;
        let t = OffsetDateTime::from_unix_timestamp_nanos(i128::from(expires)).ok()?;
        Some(self.lifetimes.due_at(t))
    }

    async fn mint_key(&self, gun: &str, role: KeyRole, pending: bool) -> Result<PublicKeyInfo, ApiError> {
        let info = self
            .signer
            .create_key(gun, role.as_str(), self.key_algorithm)
            .await
            .map_err(|e| match e {
                SignerError::Unavailable { ref message } => ApiError::Unavailable {
                    reason: format!("the signer is unavailable: {message}"),
                    source: Some(Cause::new(e)),
                },
                other => ApiError::unknown(other.to_string(), other),
            })?;
        let json = info.to_notary_json().into_bytes();
        match self
            .propose(Command::SetServerKey {
                gun: gun.to_owned(),
                role: role.as_str().to_owned(),
                key_id: info.key_id.clone(),
                public_key_json: json,
                pending,
            })
            .await?
        {
            ApplyOutcome::Applied => Ok(info),
            other => Err(ApiError::Unknown {
                reason: format!("recording the new {} key: {other:?}", role.as_str()),
                source: None,
            }),
        }
    }
}

/// Proposes `cmd` through `raft` and waits until it is applied; Raft errors as API errors.
async fn propose_on(raft: &SealRaft, cmd: Command) -> Result<ApplyOutcome, ApiError> {
    Ok(raft.write(cmd).await?)
}

/// The IDs of the keys held for one role, as seal-tuf's key plans take them: the active
/// one and the pending ones (oldest first).
fn held_key_ids(keys: &seal_storage::ServerKeys) -> (Option<&str>, Vec<&str>) {
    let active = keys.active.as_ref().map(|k| k.key_id.as_str());
    (active, keys.pending.iter().map(|k| k.key_id.as_str()).collect())
}

/// Parses a stored file of `gun` (`role`) with `from_signed`; what does not parse is corrupt
/// state, 500 UNKNOWN.
fn parse_stored<T>(
    gun: &str,
    role: &str,
    bytes: &[u8],
    from_signed: impl FnOnce(&seal_tuf::cjson::Value) -> Result<T, seal_tuf::Error>,
) -> Result<T, ApiError> {
    let file = SignedFile::parse(role, bytes.to_vec())
        .map_err(|e| ApiError::unknown(format!("stored {role} of {gun}: {e}"), e))?;
    from_signed(file.signed()).map_err(|e| ApiError::unknown(e.to_string(), e))
}

/// Makes the server keys of `gun` that `root` (just published) lists the active ones.
async fn activate_listed_keys(raft: &SealRaft, gun: &str, root: &Root) -> Result<(), ApiError> {
    for role in [TIMESTAMP, SNAPSHOT] {
        let Some(keys) = raft.read().server_key(gun, role)? else {
            continue;
        };
        let (active, pending) = held_key_ids(&keys);
        let held = HeldKeys {
            active,
            pending: &pending,
        };
        let to_activate = held.to_activate(root, role);
        if let Some(p) = keys.pending.iter().find(|p| Some(p.key_id.as_str()) == to_activate) {
            propose_on(
                raft,
                Command::SetServerKey {
                    gun: gun.to_owned(),
                    role: role.to_owned(),
                    key_id: p.key_id.clone(),
                    public_key_json: p.public_key_json.clone(),
                    pending: false,
                },
            )
            .await?;
        }
    }
    Ok(())
}

/// Seconds from `now_nanos` until `expires_nanos` (Unix nanoseconds); negative once past.
fn seconds_until(expires_nanos: i64, now_nanos: i64) -> f64 {
    (i128::from(expires_nanos) - i128::from(now_nanos)) as f64 / 1e9
}

/// Converts a time to Unix nanoseconds, saturating.
pub fn unix_nanos(t: OffsetDateTime) -> i64 {
    i64::try_from(t.unix_timestamp_nanos()).unwrap_or(i64::MAX)
}

/// A signing failure: 503 while the signer is unreachable (the client may
/// retry), 500 otherwise.
fn signing_error(role: &str, key_id: &str, e: SignerError) -> ApiError {
    match e {
        SignerError::Unavailable { ref message } => ApiError::Unavailable {
            reason: format!("the signer is unavailable: {message}"),
            source: Some(Cause::new(e)),
        },
        other => ApiError::updating(format!("signing {role} with key {key_id}: {other}"), other),
    }
}

/// A file the node's cache shares: served without a copy.
fn shared(bytes: Arc<[u8]>) -> StoredMetadata {
    StoredMetadata {
        bytes: Bytes::from_owner(bytes),
        last_modified: None,
    }
}

fn stored(bytes: Vec<u8>) -> StoredMetadata {
    StoredMetadata {
        bytes: Bytes::from(bytes),
        last_modified: None,
    }
}

#[async_trait]
impl Backend for RaftBackend {
    fn readiness(&self) -> Readiness {
        let m = self.raft.metrics();
        if m.leader.is_none() {
            return Readiness::Unavailable {
                reason: "no Raft leader is known".into(),
            };
        }
        Readiness::Ready
    }

    async fn get_current(&self, gun: &str, role: &str) -> Result<Option<StoredMetadata>, ApiError> {
        // From the node's cache of current files when it holds this one (seal_storage::CurrentFile).
        let Some(file) = self.raft.read().current_file(gun, role)? else {
            return Ok(None);
        };
        // Never serve an expired timestamp: regenerate it first, as Notary does.
        let expired = role == TIMESTAMP
            && file
                .timestamp_expiry
                .is_some_and(|exp| exp <= unix_nanos(self.clock.now()));
        if !expired {
            return Ok(Some(shared(file.bytes)));
        }
        self.refresh_timestamp(gun).await?;
        Ok(self.raft.read().current_file(gun, role)?.map(|f| shared(f.bytes)))
    }

    async fn get_by_checksum(
        &self,
        gun: &str,
        role: &str,
        sha256_hex: &str,
    ) -> Result<Option<StoredMetadata>, ApiError> {
        let r = self.raft.read().file_by_checksum(gun, role, sha256_hex)?;
        Ok(r.map(|f| shared(f.bytes)))
    }

    async fn get_by_version(&self, gun: &str, role: &str, version: u64) -> Result<Option<StoredMetadata>, ApiError> {
        let r = self.raft.read().by_version(gun, role, version)?;
        Ok(r.map(stored))
    }

    async fn publish(&self, gun: &str, files: Vec<RoleFile>) -> Result<(), ApiError> {
        let uploads: Vec<(String, Vec<u8>)> = files.into_iter().map(|f| (f.role, f.bytes.to_vec())).collect();
        let _serial = self.gun_locks.lock(gun).await;
        for _ in 0..PUBLISH_ATTEMPTS {
            if self.try_publish(gun, &uploads).await?.is_some() {
                return Ok(());
            }
        }
        Err(ApiError::OldVersion {
            reason: format!("concurrent updates to {gun} kept winning; try again"),
            source: None,
        })
    }

    async fn delete_gun(&self, gun: &str) -> Result<(), ApiError> {
        let cmd = Command::DeleteGun {
            gun: gun.to_owned(),
            at_unix_nanos: unix_nanos(self.clock.now()),
        };
        match self.propose(cmd).await? {
            ApplyOutcome::Applied => Ok(()),
            other => Err(ApiError::Unknown {
                reason: format!("{other:?}"),
                source: None,
            }),
        }
    }

    async fn get_key(&self, gun: &str, role: KeyRole) -> Result<PublicKeyInfo, ApiError> {
        let _guard = self.key_lock.lock().await;
        let reader = self.raft.read();
        let keys = reader.server_key(gun, role.as_str())?;
        let root = match reader.current(gun, ROOT)? {
            Some((_, b)) => SignedFile::parse(ROOT, b)
                .ok()
                .and_then(|f| Root::from_signed(f.signed()).ok()),
            None => None,
        };
        if let Some(keys) = keys {
            let (active, pending) = held_key_ids(&keys);
            let held = HeldKeys {
                active,
                pending: &pending,
            };
            // The key the root lists, if the server holds it; before any root, the one handed
            // out before.
            let chosen = held.to_hand_out(root.as_ref(), role.as_str());
            let entry = keys
                .active
                .iter()
                .chain(&keys.pending)
                .find(|k| Some(k.key_id.as_str()) == chosen);
            if let Some(k) = entry {
                let pk = PublicKey::from_json(&k.public_key_json).map_err(|e| ApiError::unknown(e.to_string(), e))?;
                return Ok(public_key_info(&pk));
            }
        }
        self.mint_key(gun, role, false).await
    }

    async fn rotate_key(&self, gun: &str, role: KeyRole) -> Result<PublicKeyInfo, ApiError> {
        let _guard = self.key_lock.lock().await;
        self.mint_key(gun, role, true).await
    }

    async fn tuf1_metadata(&self, repository: &str, file: &str) -> Result<Option<(StoredMetadata, bool)>, ApiError> {
        self.tuf1_get(repository, file).await
    }

    async fn tuf1_upload(&self, repository: &str, files: BTreeMap<String, Vec<u8>>) -> Result<(), ApiError> {
        self.tuf1_publish(repository, files).await
    }

    async fn tuf1_keys(&self, repository: &str, create: bool) -> Result<Option<Vec<u8>>, ApiError> {
        self.tuf1_online_keys(repository, create).await
    }

    async fn tuf1_rotate_key(&self, repository: &str, role: KeyRole) -> Result<Vec<u8>, ApiError> {
        self.tuf1_new_key(repository, role).await
    }

    async fn tuf1_list(&self, after: Option<&str>, limit: usize) -> Result<Vec<String>, ApiError> {
        self.tuf1_names(after, limit)
    }

    async fn changefeed(&self, query: &ChangefeedQuery) -> Result<Vec<ChangeRecord>, ApiError> {
        let records = i64::from(query.records);
        let records = if query.reversed { -records } else { records };
        let raw = self
            .raft
            .read()
            .changefeed(query.gun.as_deref(), query.change_id, records)?;
        raw.into_iter()
            .map(|r| {
                Ok(ChangeRecord {
                    id: r.id.parse().map_err(|e| ApiError::unknown(format!("{e}"), e))?,
                    created_at: seal_tuf::time::parse_rfc3339(&r.created_at).ok_or_else(|| ApiError::Unknown {
                        reason: format!("stored changefeed time {:?}", r.created_at),
                        source: None,
                    })?,
                    gun: r.gun,
                    version: r.version,
                    sha256: r.sha256,
                    category: match r.category {
                        seal_storage::ChangeCategory::Update => ChangeCategory::Update,
                        seal_storage::ChangeCategory::Deletion => ChangeCategory::Deletion,
                    },
                })
            })
            .collect()
    }

    async fn health(&self) -> Health {
        let mut health = Health::default();
        if self.raft.metrics().leader.is_none() {
            health.failing.insert("raft".to_owned(), "no leader".to_owned());
        }
        if let Err(e) = self.raft.read().current("_health", "root") {
            health.failing.insert("storage".to_owned(), e.to_string());
        }
        if let Err(e) = self.signer.operational() {
            health.degraded.insert(TRUST_OPERATIONAL.to_owned(), e);
        }
        health
    }

    fn export_metrics(&self) {
        RaftBackend::export_metrics(self);
    }
}

fn public_key_info(pk: &PublicKey) -> PublicKeyInfo {
    let algorithm = match pk.key_type() {
        seal_tuf::KeyType::Ed25519 => KeyAlgorithm::Ed25519,
        seal_tuf::KeyType::Rsa | seal_tuf::KeyType::RsaX509 => KeyAlgorithm::Rsa,
        _ => KeyAlgorithm::Ecdsa,
    };
    PublicKeyInfo::new(algorithm, pk.public_bytes().to_vec())
}

/// Runs the timestamp refresher until `shutdown` is notified: sleeps until
/// the next timestamp falls due (at most `max_sleep`, so new publishes with
/// short lifetimes are seen), refreshes what is due, repeats. Only the
/// leader refreshes; a node that is not the leader also wakes the moment it
/// becomes one, so a new leader resumes refreshing at once after a failover.
pub async fn run_refresher(backend: Arc<RaftBackend>, max_sleep: StdDuration, shutdown: Arc<tokio::sync::Notify>) {
    tokio::spawn(count_leader_changes(backend.clone(), shutdown.clone()));
    let mut was_leader = backend.raft.metrics().is_leader;
    loop {
        let wait = match backend.next_due() {
            Some(due) => {
                let left = due - backend.clock.now();
                if left.is_negative() {
                    StdDuration::ZERO
                } else {
                    StdDuration::try_from(left).unwrap_or(max_sleep).min(max_sleep)
                }
            }
            None => max_sleep,
        };
        if was_leader {
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = shutdown.notified() => return,
            }
        } else {
            // Not leading: sleep the full interval, but wake as soon as this node is elected.
            tokio::select! {
                r = backend.raft.wait_until_leader(max_sleep) => {
                    if r.is_ok() {
                        tracing::info!("became the Raft leader; refreshing due timestamps now");
                    }
                }
                _ = shutdown.notified() => return,
            }
        }
        was_leader = backend.raft.metrics().is_leader;
        if was_leader {
            let n = backend.refresh_due(256).await;
            if n > 0 {
                tracing::info!(refreshed = n, "timestamps refreshed");
            }
        }
        backend.export_metrics();
    }
}

/// Counts every change of the leader this node knows in `seal_raft_leader_changes_total`, from
/// openraft's metrics channel (each change is seen, not only those a scrape happens to catch),
/// until `shutdown` is notified or Raft stops.
async fn count_leader_changes(backend: Arc<RaftBackend>, shutdown: Arc<tokio::sync::Notify>) {
    let mut rx = backend.raft.raft().metrics();
    let mut leader = rx.borrow_and_update().current_leader;
    loop {
        tokio::select! {
            changed = rx.changed() => {
                if changed.is_err() {
                    return;
                }
            }
            _ = shutdown.notified() => return,
        }
        let now = rx.borrow_and_update().current_leader;
        if now != leader {
            backend.metrics.raft_leader_changes.inc();
            leader = now;
        }
    }
}

impl RaftBackend {
    /// Sets the Raft and timestamp gauges from this node's own state: called by the refresher
    /// and before every scrape of `/metrics`, on every node (leader, follower or learner).
    pub fn export_metrics(&self) {
        let m = self.raft.metrics();
        let as_i64 = |v: Option<u64>| v.and_then(|v| i64::try_from(v).ok()).unwrap_or(0);
        self.metrics.raft_term.set(as_i64(Some(m.term)));
        self.metrics.raft_leader.set(as_i64(m.leader));
        self.metrics.raft_commit_index.set(as_i64(m.last_log_index));
        self.metrics.raft_applied_index.set(as_i64(m.applied_index));
        let peers: Option<Vec<(u64, Option<u64>)>> = {
            let openraft_metrics = self.raft.raft().metrics();
            let om = openraft_metrics.borrow();
            om.replication.as_ref().map(|r| {
                r.iter()
                    .filter(|(id, _)| **id != m.node_id)
                    .map(|(id, matched)| (*id, matched.map(|l| l.index)))
                    .collect()
            })
        };
        self.metrics
            .set_replication_lag(m.last_log_index, peers.as_deref().filter(|_| m.is_leader));
        self.metrics
            .set_last_leader_contact(self.raft.read_state().last_contact);
        if let Some(c) = self.raft.connection_counts() {
            // This task is the counters' only writer: bring each up to the listener's count.
            let catch_up = |counter: &prometheus::IntCounter, total: u64| {
                counter.inc_by(total.saturating_sub(counter.get()));
            };
            catch_up(&self.metrics.raft_connections_refused, c.refused());
            catch_up(&self.metrics.raft_accept_errors, c.accept_errors());
            self.metrics.raft_connections_open.set(as_i64(Some(c.open())));
        }
        match self.raft.read().memory_usage() {
            Ok(usage) => self.metrics.set_storage_memory(&usage),
            Err(e) => tracing::warn!(error = %e, "reading the storage's memory use for metrics"),
        }
        match self.soonest_timestamp_expiry() {
            Ok(soonest) => self.metrics.set_timestamps(soonest.map(|expires| {
                let left = seconds_until(expires, unix_nanos(self.clock.now()));
                (left, self.lifetimes.timestamp.as_seconds_f64() - left)
            })),
            // Keep the last values; the health check reports the store.
            Err(e) => tracing::warn!(error = %e, "reading the timestamp expiry index for metrics"),
        }
    }

    /// The soonest expiry (Unix nanoseconds) of any stored timestamp, from the replicated expiry
    /// index the refresher uses (every node holds it).
    fn soonest_timestamp_expiry(&self) -> Result<Option<i64>, ApiError> {
        Ok(self
            .raft
            .read()
            .due_timestamps(i64::MAX, 1)?
            .into_iter()
            .next()
            .map(|(_, expires)| expires))
    }

    /// The version of `role` of `gun` this node has applied, if any.
    pub fn current_version(&self, gun: &str, role: &str) -> Result<Option<u64>, ApiError> {
        Ok(self.raft.read().current(gun, role)?.map(|(v, _)| v))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seconds_until_is_signed_and_does_not_overflow() {
        assert_eq!(seconds_until(3_500_000_000, 1_000_000_000), 2.5);
        assert_eq!(seconds_until(1_000_000_000, 3_000_000_000), -2.0);
        assert!(seconds_until(i64::MAX, i64::MIN) > 0.0);
    }
}
