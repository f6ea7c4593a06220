//! The threshold key backend: Ed25519 keys that exist only as FROST shares
//! (frost-ed25519, RFC 9591) spread over the n signers of a cluster, any k
//! of which sign together. The result is an ordinary Ed25519 signature.
//!
//! * **Key generation** ([`ThresholdBackend::create_key`]) is FROST's DKG
//!   with all n signers, no trusted dealer: the signer a client called
//!   coordinates three rounds (`DkgRound1`, `DkgRound2`, `DkgFinish` of
//!   `seal.threshold.v1.ThresholdPeer`). Round-1 packages are public and
//!   relayed by the coordinator; round-2 packages are secret and go from
//!   each participant straight to their recipient (`DkgDeliver`), so the
//!   coordinator never sees another signer's secret material. Each signer
//!   stores its key package JWE-encrypted (as software keys are) in its own
//!   store, with the public key package and the key record.
//! * **Signing** ([`ThresholdBackend::sign`]): the coordinator takes fresh
//!   commitments from itself and the first k−1 peers that answer within the
//!   peer timeout, sends the signing package (holding the whole message) to
//!   those k, and aggregates. Every participant, the coordinator included,
//!   runs the signing policy against its own durable high-water mark before
//!   producing a share and records the mark before the share leaves.
//!   Invalid shares are identified (FROST cheater detection), logged, and
//!   the session is retried without the culprit; the aggregate is checked
//!   with `ed25519_dalek::VerifyingKey::verify_strict` before it is returned.
//! * **Nonces** are made per session with the OS RNG, kept only in memory,
//!   removed when the signing package for their session arrives (used or
//!   refused) and dropped after [`NONCE_TTL`]: none survives a crash, so none
//!   can be used twice.
//! * **Share refresh** ([`ThresholdBackend::refresh_shares`]) replaces every
//!   signer's share, keeping the group key; **share repair**
//!   ([`ThresholdBackend::repair_share`]) gives a signer that lost its share
//!   the same share back from k other holders (`keys::repairable`), the
//!   deltas going from helper to helper and only their sums to the signer.
//!
//! How calls reach other signers is behind [`PeerTransport`]: [`GrpcPeers`]
//! (mutual TLS with the signer's own certificate) in production, direct
//! calls in unit tests. [`ThresholdPeerService`] serves the peer protocol.
//! Inside, every failure is a [`ThresholdError`]; `tonic::Status` exists
//! only at those two gRPC edges (`service.rs` answers with one,
//! `transport.rs` reads a peer's).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use base64::Engine as _;
use frost_ed25519 as frost;
use frost_ed25519::keys::{KeyPackage, PublicKeyPackage};
use frost_ed25519::Identifier;
use rand::RngCore as _;
use seal_proto::threshold::{
    AnnounceMarkRequest, AnnounceMarkResponse, DkgCommitRequest, DkgCommitResponse, DkgDeliverRequest,
    DkgDeliverResponse, DkgFinishRequest, DkgFinishResponse, DkgRound1Request, DkgRound1Response, DkgRound2Request,
    DkgRound2Response, MarksRequest, MarksResponse, RefreshSharesRequest, RefreshSharesResponse, RepairDeliverRequest,
    RepairDeliverResponse, RepairFinishRequest, RepairFinishResponse, RepairRound1Request, RepairRound1Response,
    RepairRound2Request, RepairRound2Response, RepairShareRequest, RepairShareResponse, SignCommitRequest,
    SignCommitResponse, SignShareRequest, SignShareResponse, StatusRequest, StatusResponse,
};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::backend::Algorithm;
use crate::metrics::Metrics;
use crate::policy::{self, Claimed, KeyScope, PolicyConfig};
use crate::software::{decrypt_secret, encrypt_secret, jwe_kid, Passphrases};
use crate::store::{KeyRecord, Store};

/// The backend's name in key records, config and metrics.
pub const BACKEND_NAME: &str = "threshold";
/// How long unused signing nonces are kept.
pub const NONCE_TTL: Duration = Duration::from_secs(60);
/// How long an unfinished DKG session is kept.
pub const DKG_TTL: Duration = Duration::from_secs(300);
/// The most signing sessions a participant holds nonces for at once; a
/// new session beyond it drops the oldest one's nonces. Sessions whose
/// coordinator did not choose this participant (k−1 others answered first)
/// are never completed, so a standby signer accumulates them until they
/// expire.
pub const MAX_NONCE_SESSIONS: usize = 4096;
/// The most DKG sessions a participant keeps at once.
pub const MAX_DKG_SESSIONS: usize = 64;
/// Signing sessions tried before giving up (each retry leaves out the
/// participants that failed or cheated in the previous one).
pub const MAX_SIGN_ATTEMPTS: usize = 3;

/// One other signer of the cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Peer {
    /// Its FROST identifier (1..=65535), unique in the cluster.
    pub id: u16,
    /// `host:port` of its gRPC server; `host` is also the TLS name checked.
    pub addr: String,
    /// A name its certificate must carry (CN or DNS SAN); when set, calls
    /// claiming to come from `id` must present it.
    pub name: Option<String>,
}

/// The threshold backend's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ThresholdConfig {
    /// k: signers needed for a signature (at least 2).
    pub min_signers: u16,
    /// This signer's FROST identifier.
    pub self_id: u16,
    /// The n−1 other signers.
    pub peers: Vec<Peer>,
    /// Deadline of a signing round call to one peer.
    pub peer_timeout: Duration,
    /// Deadline of a DKG round call to one peer.
    pub dkg_timeout: Duration,
}

impl ThresholdConfig {
    /// n: the number of signers holding shares.
    pub fn max_signers(&self) -> u16 {
        u16::try_from(self.peers.len() + 1).unwrap_or(u16::MAX)
    }

    /// Every participant's identifier, sorted.
    pub fn participants(&self) -> Vec<u16> {
        let mut all: Vec<u16> = self.peers.iter().map(|p| p.id).collect();
        all.push(self.self_id);
        all.sort_unstable();
        all
    }

    /// Checks identifiers and k against n.
    pub fn validate(&self) -> Result<(), crate::Error> {
        let all = self.participants();
        if all.contains(&0) {
            return Err(crate::Error::Config("threshold: identifiers start at 1".into()));
        }
        if all.windows(2).any(|w| w[0] == w[1]) {
            return Err(crate::Error::Config(
                "threshold: self_id and the peers' ids must be distinct".into(),
            ));
        }
        let n = all.len();
        if n > 255 {
            return Err(crate::Error::Config("threshold: at most 255 signers".into()));
        }
        if self.min_signers < 2 || usize::from(self.min_signers) > n {
            return Err(crate::Error::Config(format!(
                "threshold: threshold {} must be between 2 and the number of signers ({n})",
                self.min_signers
            )));
        }
        Ok(())
    }
}

/// `"{context}: {e}"` as a participant's own failure.
fn failure(context: &str) -> impl FnOnce(String) -> ThresholdError + '_ {
    move |e| ThresholdError::Failed(format!("{context}: {e}"))
}

/// What a threshold key's record keeps as its handle (JSON): the
/// participant's key package encrypted as the software backend encrypts
/// keys, and the public material needed to aggregate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ThresholdHandle {
    /// frost `KeyPackage` (this signer's share), JWE compact.
    pub share_jwe: String,
    /// frost `PublicKeyPackage` (verifying shares and group key), base64.
    pub public_package: String,
    /// This signer's identifier when the key was made.
    pub self_id: u16,
    /// k.
    pub min_signers: u16,
    /// Every holder's identifier.
    pub participants: Vec<u16>,
}

impl ThresholdHandle {
    /// Parses a record's handle.
    pub fn decode(handle: &[u8]) -> Result<ThresholdHandle, ThresholdError> {
        serde_json::from_slice(handle).map_err(|e| ThresholdError::Internal(format!("threshold key handle: {e}")))
    }

    /// The public key package.
    pub fn public_package(&self) -> Result<PublicKeyPackage, ThresholdError> {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(&self.public_package)
            .map_err(|e| ThresholdError::Internal(format!("public key package: {e}")))?;
        PublicKeyPackage::deserialize(&bytes).map_err(|e| ThresholdError::Internal(format!("public key package: {e}")))
    }
}

fn identifier(id: u16) -> Result<Identifier, ThresholdError> {
    Identifier::try_from(id).map_err(|e| ThresholdError::InvalidArgument(format!("participant id {id}: {e}")))
}

fn id16(id: u32) -> Result<u16, ThresholdError> {
    u16::try_from(id).map_err(|_| ThresholdError::InvalidArgument(format!("participant id {id} out of range")))
}

fn random_session_id() -> String {
    let mut b = [0u8; 16];
    rand::rngs::OsRng.fill_bytes(&mut b);
    hex::encode(b)
}

fn nonempty(s: &str) -> Option<String> {
    (!s.is_empty()).then(|| s.to_owned())
}

enum DkgState {
    /// After part 1: the secret package and our own round-1 package.
    Round1(frost::keys::dkg::round1::SecretPackage, Vec<u8>),
    /// After part 2: the secret package and the others' round-1 packages.
    Round2(
        frost::keys::dkg::round2::SecretPackage,
        BTreeMap<Identifier, frost::keys::dkg::round1::Package>,
    ),
    /// A share refresh after `DkgFinish`: the new key record (share
    /// encrypted) and key package, stored on `DkgCommit`.
    Prepared(Box<KeyRecord>, Arc<KeyPackage>),
    /// Being worked on (taken out of the map).
    Busy,
}

struct DkgSession {
    gun: String,
    role: String,
    /// For a share refresh: the key whose shares are replaced.
    refresh: Option<String>,
    participants: Vec<u16>,
    state: DkgState,
    /// Round-2 packages received from the others (may arrive before our own part 2).
    received: BTreeMap<Identifier, frost::keys::dkg::round2::Package>,
    created: Instant,
}

/// A share repair on a helper.
struct RepairSession {
    key_id: String,
    /// The participant whose share is repaired (the coordinator).
    participant: u16,
    /// Every holder of the key, from this helper's record.
    holders: Vec<u16>,
    /// The helpers, once round 2 named them.
    helpers: Option<Vec<u16>>,
    /// Deltas received from the helpers (ours included), by helper.
    received: BTreeMap<u16, frost::keys::repairable::Delta>,
    created: Instant,
}

struct NonceEntry {
    key_id: String,
    nonces: frost::round1::SigningNonces,
    commitments: frost::round1::SigningCommitments,
    created: Instant,
}

/// A signer's part in the threshold scheme: participant in every DKG and
/// signing session, and coordinator of the ones its own clients start.
pub struct ThresholdBackend {
    config: ThresholdConfig,
    store: Arc<Store>,
    passphrases: Passphrases,
    iterations: u64,
    policy: PolicyConfig,
    transport: OnceLock<Arc<dyn PeerTransport>>,
    metrics: Metrics,
    dkg: Mutex<HashMap<String, DkgSession>>,
    repairs: Mutex<HashMap<String, RepairSession>>,
    nonces: Mutex<HashMap<String, NonceEntry>>,
    shares: Mutex<HashMap<String, Arc<KeyPackage>>>,
    max_nonce_sessions: usize,
    // Serialises policy check, share and high-water mark of participants.
    participant: Mutex<()>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ThresholdError> + Send + 'static,
) -> Result<T, ThresholdError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ThresholdError::Failed(format!("threshold task failed: {e}")))?
}

/// Calls `$call($req)` on each participant of `$ids` at once, this signer
/// directly and the others through the transport, each bounded by
/// `$timeout`; evaluates to every `(id, result)`, sorted by id.
macro_rules! on_each {
    ($backend:expr, $ids:expr, $timeout:expr, $call:ident, $req:expr) => {{
        let req = $req;
        $backend
            .all($ids, $timeout, move |b, to| {
                let req = req.clone();
                async move {
                    if to == b.config.self_id {
                        b.$call(req).await
                    } else {
                        b.transport()?.$call(to, req).await
                    }
                }
            })
            .await
    }};
}

mod key_backend;
mod keygen;
mod marks;
mod repair;
mod service;
mod signing;
mod transport;

pub use crate::error::{ThresholdError, Unanswered};
pub use service::ThresholdPeerService;
pub use transport::{GrpcPeers, PeerTransport};

impl ThresholdBackend {
    /// A backend keeping shares in `store`, encrypted under `passphrases`'
    /// default alias with `iterations` PBES2 rounds. Call
    /// [`ThresholdBackend::set_transport`] before use.
    pub fn new(
        config: ThresholdConfig,
        store: Arc<Store>,
        passphrases: Passphrases,
        iterations: u64,
        policy: PolicyConfig,
    ) -> Result<ThresholdBackend, crate::Error> {
        config.validate()?;
        Ok(ThresholdBackend {
            config,
            store,
            passphrases,
            iterations,
            policy,
            transport: OnceLock::new(),
            metrics: Metrics::new().map_err(|e| crate::Error::Internal(format!("metrics: {e}")))?,
            dkg: Mutex::new(HashMap::new()),
            repairs: Mutex::new(HashMap::new()),
            nonces: Mutex::new(HashMap::new()),
            shares: Mutex::new(HashMap::new()),
            max_nonce_sessions: MAX_NONCE_SESSIONS,
            participant: Mutex::new(()),
        })
    }

    /// Counts rounds, refusals and unreachable peers in `metrics` (the
    /// signer's; by default the backend's own).
    pub fn with_metrics(mut self, metrics: Metrics) -> ThresholdBackend {
        self.metrics = metrics;
        self
    }

    /// The metrics this backend counts in.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// Counts a peer that did not answer a call.
    fn note_unanswered(&self, peer: u16, error: &ThresholdError) {
        let unanswered = matches!(error, ThresholdError::Unreachable { .. });
        if peer != self.config.self_id && unanswered {
            self.metrics.peer_unreachable(peer);
        }
    }

    /// Records a DKG round this signer coordinated.
    fn dkg_round_done<T>(&self, round: &str, started: Instant, results: &[(u16, Result<T, ThresholdError>)]) {
        let mut outcome = "ok";
        for (id, r) in results {
            if let Err(s) = r {
                self.note_unanswered(*id, s);
                outcome = "failed";
            }
        }
        self.metrics.round(round, outcome, started.elapsed());
    }

    /// Sets how peers are reached (once).
    pub fn set_transport(&self, transport: Arc<dyn PeerTransport>) {
        let _ = self.transport.set(transport);
    }

    /// The configuration.
    pub fn config(&self) -> &ThresholdConfig {
        &self.config
    }

    fn transport(&self) -> Result<&Arc<dyn PeerTransport>, ThresholdError> {
        self.transport
            .get()
            .ok_or_else(|| ThresholdError::Failed("threshold peer transport not set".into()))
    }

    // ---------------------------------------------------------------- shared

    /// Runs `call` for every id in `ids` concurrently, each bounded by `timeout`.
    async fn all<T, F, Fut>(
        self: &Arc<Self>,
        ids: &[u16],
        timeout: Duration,
        call: F,
    ) -> Vec<(u16, Result<T, ThresholdError>)>
    where
        T: Send + 'static,
        F: Fn(Arc<Self>, u16) -> Fut,
        Fut: std::future::Future<Output = Result<T, ThresholdError>> + Send + 'static,
    {
        let mut set = tokio::task::JoinSet::new();
        for &id in ids {
            let fut = call(self.clone(), id);
            set.spawn(async move { (id, with_timeout(id, timeout, fut).await) });
        }
        let mut out = Vec::new();
        while let Some(r) = set.join_next().await {
            match r {
                Ok(r) => out.push(r),
                Err(e) => tracing::error!(%e, "threshold peer call task failed"),
            }
        }
        out.sort_by_key(|(id, _)| *id);
        out
    }

    /// Sends each participant its own bytes of `deliveries` with `send`
    /// (a round-2 package, a repair delta), all at once within the DKG
    /// timeout; the failures as one message.
    async fn deliver_each<T, F, Fut>(self: &Arc<Self>, deliveries: Vec<(u16, Vec<u8>)>, send: F) -> Result<(), String>
    where
        T: Send + 'static,
        F: Fn(Arc<Self>, u16, Vec<u8>) -> Fut,
        Fut: std::future::Future<Output = Result<T, ThresholdError>> + Send + 'static,
    {
        let ids: Vec<u16> = deliveries.iter().map(|(to, _)| *to).collect();
        let results = self
            .all(&ids, self.config.dkg_timeout, move |b, to| {
                let bytes = deliveries
                    .iter()
                    .find(|(t, _)| *t == to)
                    .map(|(_, p)| p.clone())
                    .unwrap_or_default();
                send(b, to, bytes)
            })
            .await;
        let (_, failed) = split(results);
        if failed.is_empty() {
            Ok(())
        } else {
            Err(failed)
        }
    }

    /// The decrypted key package of `record` (cached).
    fn key_package(&self, record: &KeyRecord) -> Result<Arc<KeyPackage>, ThresholdError> {
        if let Some(k) = lock(&self.shares).get(&record.key_id) {
            return Ok(k.clone());
        }
        let handle = ThresholdHandle::decode(&record.handle)?;
        let alias = jwe_kid(&handle.share_jwe).map_err(|e| ThresholdError::Failed(e.to_string()))?;
        let passphrase = self.passphrases.get(&alias).ok_or_else(|| {
            ThresholdError::Locked(format!(
                "threshold share of {} is encrypted under alias {alias:?}, whose passphrase is not set",
                record.key_id
            ))
        })?;
        let bytes = decrypt_secret(passphrase.as_bytes(), &handle.share_jwe)
            .map_err(|e| ThresholdError::Locked(format!("threshold share of {}: {e}", record.key_id)))?;
        let package = Arc::new(
            KeyPackage::deserialize(&bytes)
                .map_err(|e| ThresholdError::Failed(format!("threshold share of {}: {e}", record.key_id)))?,
        );
        lock(&self.shares).insert(record.key_id.clone(), package.clone());
        Ok(package)
    }

    fn threshold_record(&self, key_id: &str) -> Result<KeyRecord, ThresholdError> {
        let record = self
            .store
            .key(key_id)
            .map_err(|e| ThresholdError::Failed(e.to_string()))?
            .ok_or_else(|| ThresholdError::Missing(format!("key {key_id} not found")))?;
        if record.backend != BACKEND_NAME {
            return Err(ThresholdError::InvalidArgument(format!(
                "key {key_id} is not a threshold key"
            )));
        }
        Ok(record)
    }

    /// This participant's identifiers and the threshold keys it holds.
    pub fn status(&self) -> Result<StatusResponse, ThresholdError> {
        let key_ids = self
            .store
            .keys()
            .map_err(|e| ThresholdError::Failed(e.to_string()))?
            .into_iter()
            .filter(|r| r.backend == BACKEND_NAME)
            .map(|r| r.key_id)
            .collect();
        Ok(StatusResponse {
            self_id: u32::from(self.config.self_id),
            min_signers: u32::from(self.config.min_signers),
            max_signers: u32::from(self.config.max_signers()),
            key_ids,
        })
    }

    /// Forgets the cached share of `key_id` (its record is deleted by the caller).
    pub fn forget(&self, key_id: &str) {
        lock(&self.shares).remove(key_id);
    }
}

/// A participant's failure in the coordinator's own part: internal.
fn as_internal(e: ThresholdError) -> ThresholdError {
    ThresholdError::Internal(e.to_string())
}

fn decode_commitments(bytes: &[u8]) -> Result<frost::round1::SigningCommitments, ThresholdError> {
    frost::round1::SigningCommitments::deserialize(bytes)
        .map_err(|e| ThresholdError::Protocol(format!("malformed commitments: {e}")))
}

/// `fut`, a call to `signer`, answered within `timeout`.
async fn with_timeout<T>(
    signer: u16,
    timeout: Duration,
    fut: impl std::future::Future<Output = Result<T, ThresholdError>>,
) -> Result<T, ThresholdError> {
    match tokio::time::timeout(timeout, fut).await {
        Ok(r) => r,
        Err(_) => Err(ThresholdError::Unreachable {
            signer,
            why: Unanswered::TimedOut,
            message: format!("no answer within {timeout:?}"),
        }),
    }
}

/// Successes, and the failures as one message.
fn split<T>(results: Vec<(u16, Result<T, ThresholdError>)>) -> (Vec<(u16, T)>, String) {
    let mut ok = Vec::new();
    let mut failed = Vec::new();
    for (id, r) in results {
        match r {
            Ok(v) => ok.push((id, v)),
            Err(e) => failed.push(e.detail(id)),
        }
    }
    (ok, failed.join("; "))
}

#[cfg(test)]
pub(crate) mod tests;
