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

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use base64::Engine as _;
use frost_ed25519 as frost;
use frost_ed25519::keys::{KeyPackage, PublicKeyPackage};
use frost_ed25519::Identifier;
use rand::RngCore as _;
use seal_proto::threshold::threshold_peer_client::ThresholdPeerClient;
use seal_proto::threshold::threshold_peer_server::ThresholdPeer;
use seal_proto::threshold::{
    AnnounceMarkRequest, AnnounceMarkResponse, DkgCommitRequest, DkgCommitResponse, DkgDeliverRequest,
    DkgDeliverResponse, DkgFinishRequest, DkgFinishResponse, DkgRound1Request, DkgRound1Response, DkgRound2Request,
    DkgRound2Response, MarksRequest, MarksResponse, RefreshSharesRequest, RefreshSharesResponse, RepairDeliverRequest,
    RepairDeliverResponse, RepairFinishRequest, RepairFinishResponse, RepairRound1Request, RepairRound1Response,
    RepairRound2Request, RepairRound2Response, RepairShareRequest, RepairShareResponse, SignCommitRequest,
    SignCommitResponse, SignShareRequest, SignShareResponse, StatusRequest, StatusResponse,
};
use serde::{Deserialize, Serialize};
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};
use tonic::{Request, Response, Status};
use zeroize::Zeroizing;

use crate::backend::Algorithm;
use crate::metrics::Metrics;
use crate::policy::{self, Claimed, KeyScope, PolicyConfig};
use crate::service::HIGH_WATER_HEADER;
use crate::software::{decrypt_secret, encrypt_secret, jwe_kid, Passphrases};
use crate::store::{KeyRecord, Store};
use crate::tls::AllowedNames;

#[path = "threshold_marks.rs"]
mod marks;

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
    pub fn validate(&self) -> Result<(), String> {
        let all = self.participants();
        if all.contains(&0) {
            return Err("threshold: identifiers start at 1".into());
        }
        if all.windows(2).any(|w| w[0] == w[1]) {
            return Err("threshold: self_id and the peers' ids must be distinct".into());
        }
        let n = all.len();
        if n > 255 {
            return Err("threshold: at most 255 signers".into());
        }
        if self.min_signers < 2 || usize::from(self.min_signers) > n {
            return Err(format!(
                "threshold: threshold {} must be between 2 and the number of signers ({n})",
                self.min_signers
            ));
        }
        Ok(())
    }
}

/// Why a threshold operation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ThresholdError {
    /// The backend only makes Ed25519 keys.
    #[error("the threshold key backend makes only ed25519 keys (FROST); {0} is not supported")]
    Unsupported(&'static str),
    /// Fewer signers answered than the operation needs.
    #[error("{operation} needs {needed} signers, {reachable} answered: {details}")]
    Unavailable {
        /// `DKG` or `signing`.
        operation: &'static str,
        /// Signers needed.
        needed: usize,
        /// Signers that answered.
        reachable: usize,
        /// Why the others did not.
        details: String,
    },
    /// A signer's policy refused the message.
    #[error("signer {signer} refused: {message}")]
    Refused {
        /// The refusing signer's identifier.
        signer: u16,
        /// Its reason.
        message: String,
        /// Its high-water mark, when it said.
        high_water: Option<u64>,
    },
    /// The key is unknown here.
    #[error("threshold key {0} not found")]
    NotFound(String),
    /// This signer already holds a share of the key (a repair is for a
    /// signer that lost it).
    #[error("this signer already holds a share of threshold key {0}")]
    AlreadyHeld(String),
    /// Signers disagree, or sent something malformed.
    #[error("threshold protocol failure: {0}")]
    Protocol(String),
    /// Storage, encryption or another local failure.
    #[error("threshold backend: {0}")]
    Internal(String),
}

impl ThresholdError {
    /// As a gRPC status for the signer's clients.
    pub fn into_status(self) -> Status {
        match &self {
            ThresholdError::Unsupported(_) => Status::unknown(self.to_string()),
            ThresholdError::Unavailable { .. } => crate::service::backend_unavailable(self.to_string()),
            ThresholdError::Refused { high_water, .. } => {
                // The participant's message already starts with "signing policy:".
                let mut s = Status::failed_precondition(self.to_string());
                if let Some(v) = high_water.and_then(|h| h.to_string().parse().ok()) {
                    s.metadata_mut().insert(HIGH_WATER_HEADER, v);
                }
                s
            }
            ThresholdError::NotFound(_) => Status::not_found(self.to_string()),
            ThresholdError::AlreadyHeld(_) => Status::already_exists(self.to_string()),
            ThresholdError::Protocol(_) | ThresholdError::Internal(_) => Status::internal(self.to_string()),
        }
    }
}

fn internal(context: &str) -> impl FnOnce(String) -> Status + '_ {
    move |e| Status::internal(format!("{context}: {e}"))
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

fn identifier(id: u16) -> Result<Identifier, Status> {
    Identifier::try_from(id).map_err(|e| Status::invalid_argument(format!("participant id {id}: {e}")))
}

fn id16(id: u32) -> Result<u16, Status> {
    u16::try_from(id).map_err(|_| Status::invalid_argument(format!("participant id {id} out of range")))
}

fn random_session_id() -> String {
    let mut b = [0u8; 16];
    rand::rngs::OsRng.fill_bytes(&mut b);
    hex::encode(b)
}

fn nonempty(s: &str) -> Option<String> {
    (!s.is_empty()).then(|| s.to_owned())
}

/// How a coordinator or participant reaches another signer.
#[tonic::async_trait]
pub trait PeerTransport: Send + Sync {
    /// `DkgRound1` on `to`.
    async fn dkg_round1(&self, to: u16, req: DkgRound1Request) -> Result<DkgRound1Response, Status>;
    /// `DkgRound2` on `to`.
    async fn dkg_round2(&self, to: u16, req: DkgRound2Request) -> Result<DkgRound2Response, Status>;
    /// `DkgDeliver` on `to`.
    async fn dkg_deliver(&self, to: u16, req: DkgDeliverRequest) -> Result<DkgDeliverResponse, Status>;
    /// `DkgFinish` on `to`.
    async fn dkg_finish(&self, to: u16, req: DkgFinishRequest) -> Result<DkgFinishResponse, Status>;
    /// `DkgCommit` on `to`.
    async fn dkg_commit(&self, to: u16, req: DkgCommitRequest) -> Result<DkgCommitResponse, Status>;
    /// `SignCommit` on `to`.
    async fn sign_commit(&self, to: u16, req: SignCommitRequest) -> Result<SignCommitResponse, Status>;
    /// `SignShare` on `to`.
    async fn sign_share(&self, to: u16, req: SignShareRequest) -> Result<SignShareResponse, Status>;
    /// `RepairRound1` on `to`.
    async fn repair_round1(&self, to: u16, req: RepairRound1Request) -> Result<RepairRound1Response, Status>;
    /// `RepairRound2` on `to`.
    async fn repair_round2(&self, to: u16, req: RepairRound2Request) -> Result<RepairRound2Response, Status>;
    /// `RepairDeliver` on `to`.
    async fn repair_deliver(&self, to: u16, req: RepairDeliverRequest) -> Result<RepairDeliverResponse, Status>;
    /// `RepairFinish` on `to`.
    async fn repair_finish(&self, to: u16, req: RepairFinishRequest) -> Result<RepairFinishResponse, Status>;
    /// `AnnounceMark` on `to`.
    async fn announce_mark(&self, to: u16, req: AnnounceMarkRequest) -> Result<AnnounceMarkResponse, Status>;
    /// `Marks` on `to`.
    async fn marks(&self, to: u16, req: MarksRequest) -> Result<MarksResponse, Status>;
}

/// The production transport: one lazily connected gRPC channel per peer,
/// mutual TLS with this signer's own certificate.
pub struct GrpcPeers {
    clients: BTreeMap<u16, ThresholdPeerClient<Channel>>,
}

impl GrpcPeers {
    /// Channels to `peers`, trusting `ca_file` for their certificates and
    /// presenting `cert_file`/`key_file`; `connect_timeout` bounds each
    /// connection attempt.
    pub fn new(
        peers: &[Peer],
        ca_file: &Path,
        cert_file: &Path,
        key_file: &Path,
        connect_timeout: Duration,
    ) -> Result<GrpcPeers, String> {
        crate::install_crypto_provider();
        let read = |p: &Path| std::fs::read(p).map_err(|e| format!("{}: {e}", p.display()));
        let ca = read(ca_file)?;
        let (cert, key) = (read(cert_file)?, read(key_file)?);
        let mut clients = BTreeMap::new();
        for peer in peers {
            let host = match peer.addr.rsplit_once(':') {
                Some((h, _)) => h.trim_start_matches('[').trim_end_matches(']'),
                None => return Err(format!("peer {}: address {:?} is not host:port", peer.id, peer.addr)),
            };
            let tls = ClientTlsConfig::new()
                .ca_certificate(Certificate::from_pem(ca.clone()))
                .identity(Identity::from_pem(cert.clone(), key.clone()))
                .domain_name(host.to_owned());
            let channel = Endpoint::from_shared(format!("https://{}", peer.addr))
                .and_then(|e| e.tls_config(tls))
                .map_err(|e| format!("peer {} at {}: {e}", peer.id, peer.addr))?
                .connect_timeout(connect_timeout)
                .tcp_nodelay(true)
                .connect_lazy();
            clients.insert(peer.id, ThresholdPeerClient::new(channel));
        }
        Ok(GrpcPeers { clients })
    }

    fn client(&self, to: u16) -> Result<ThresholdPeerClient<Channel>, Status> {
        self.clients
            .get(&to)
            .cloned()
            .ok_or_else(|| Status::internal(format!("peer {to} is not configured")))
    }

    /// `RefreshShares` of `key_id` on `to`, answered within `timeout`;
    /// returns the group public key.
    pub async fn refresh_shares(&self, to: u16, key_id: &str, timeout: Duration) -> Result<Vec<u8>, Status> {
        with_timeout(timeout, async {
            let req = RefreshSharesRequest {
                key_id: key_id.to_owned(),
            };
            Ok(self
                .client(to)?
                .refresh_shares(req)
                .await?
                .into_inner()
                .group_public_key)
        })
        .await
    }

    /// `RepairShare` of `key_id` on `to`, answered within `timeout`;
    /// returns the group public key.
    pub async fn repair_share(&self, to: u16, key_id: &str, timeout: Duration) -> Result<Vec<u8>, Status> {
        with_timeout(timeout, async {
            let req = RepairShareRequest {
                key_id: key_id.to_owned(),
            };
            Ok(self.client(to)?.repair_share(req).await?.into_inner().group_public_key)
        })
        .await
    }

    /// `Status` on `to`, answered within `timeout`.
    pub async fn status(&self, to: u16, timeout: Duration) -> Result<StatusResponse, Status> {
        with_timeout(timeout, async {
            Ok(self.client(to)?.status(StatusRequest {}).await?.into_inner())
        })
        .await
    }
}

#[tonic::async_trait]
impl PeerTransport for GrpcPeers {
    async fn dkg_round1(&self, to: u16, req: DkgRound1Request) -> Result<DkgRound1Response, Status> {
        Ok(self.client(to)?.dkg_round1(req).await?.into_inner())
    }
    async fn dkg_round2(&self, to: u16, req: DkgRound2Request) -> Result<DkgRound2Response, Status> {
        Ok(self.client(to)?.dkg_round2(req).await?.into_inner())
    }
    async fn dkg_deliver(&self, to: u16, req: DkgDeliverRequest) -> Result<DkgDeliverResponse, Status> {
        Ok(self.client(to)?.dkg_deliver(req).await?.into_inner())
    }
    async fn dkg_finish(&self, to: u16, req: DkgFinishRequest) -> Result<DkgFinishResponse, Status> {
        Ok(self.client(to)?.dkg_finish(req).await?.into_inner())
    }
    async fn dkg_commit(&self, to: u16, req: DkgCommitRequest) -> Result<DkgCommitResponse, Status> {
        Ok(self.client(to)?.dkg_commit(req).await?.into_inner())
    }
    async fn sign_commit(&self, to: u16, req: SignCommitRequest) -> Result<SignCommitResponse, Status> {
        Ok(self.client(to)?.sign_commit(req).await?.into_inner())
    }
    async fn sign_share(&self, to: u16, req: SignShareRequest) -> Result<SignShareResponse, Status> {
        Ok(self.client(to)?.sign_share(req).await?.into_inner())
    }
    async fn repair_round1(&self, to: u16, req: RepairRound1Request) -> Result<RepairRound1Response, Status> {
        Ok(self.client(to)?.repair_round1(req).await?.into_inner())
    }
    async fn repair_round2(&self, to: u16, req: RepairRound2Request) -> Result<RepairRound2Response, Status> {
        Ok(self.client(to)?.repair_round2(req).await?.into_inner())
    }
    async fn repair_deliver(&self, to: u16, req: RepairDeliverRequest) -> Result<RepairDeliverResponse, Status> {
        Ok(self.client(to)?.repair_deliver(req).await?.into_inner())
    }
    async fn repair_finish(&self, to: u16, req: RepairFinishRequest) -> Result<RepairFinishResponse, Status> {
        Ok(self.client(to)?.repair_finish(req).await?.into_inner())
    }
    async fn announce_mark(&self, to: u16, req: AnnounceMarkRequest) -> Result<AnnounceMarkResponse, Status> {
        Ok(self.client(to)?.announce_mark(req).await?.into_inner())
    }
    async fn marks(&self, to: u16, req: MarksRequest) -> Result<MarksResponse, Status> {
        Ok(self.client(to)?.marks(req).await?.into_inner())
    }
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

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T, Status> + Send + 'static) -> Result<T, Status> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Status::internal(format!("threshold task failed: {e}")))?
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
    ) -> Result<ThresholdBackend, String> {
        config.validate()?;
        Ok(ThresholdBackend {
            config,
            store,
            passphrases,
            iterations,
            policy,
            transport: OnceLock::new(),
            metrics: Metrics::new().map_err(|e| e.to_string())?,
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
    fn note_unanswered(&self, peer: u16, status: &Status) {
        let unanswered = matches!(
            status.code(),
            tonic::Code::Unavailable | tonic::Code::DeadlineExceeded | tonic::Code::Cancelled
        );
        if peer != self.config.self_id && unanswered {
            self.metrics.peer_unreachable(peer);
        }
    }

    /// Records a DKG round this signer coordinated.
    fn dkg_round_done<T>(&self, round: &str, started: Instant, results: &[(u16, Result<T, Status>)]) {
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

    fn transport(&self) -> Result<&Arc<dyn PeerTransport>, Status> {
        self.transport
            .get()
            .ok_or_else(|| Status::internal("threshold peer transport not set"))
    }

    // ---------------------------------------------------------------- coordinator: DKG

    /// Runs a DKG with every signer for a key of `gun`/`role`; returns the
    /// key ID and the group public key (32 bytes).
    pub async fn create_key(
        self: &Arc<Self>,
        algorithm: Algorithm,
        gun: &str,
        role: &str,
    ) -> Result<(String, Vec<u8>), ThresholdError> {
        if algorithm != Algorithm::Ed25519 {
            return Err(ThresholdError::Unsupported(algorithm.as_str()));
        }
        let (session_id, finished) = self.dkg_rounds("key generation (DKG)", gun, role, "").await?;
        let mut keys: BTreeSet<(String, Vec<u8>)> = BTreeSet::new();
        for (_, r) in finished {
            keys.insert((r.key_id, r.group_public_key));
        }
        if keys.len() != 1 {
            return Err(ThresholdError::Protocol(format!(
                "signers derived {} different group keys in DKG session {session_id}",
                keys.len()
            )));
        }
        let (key_id, public) = keys.into_iter().next().unwrap_or_default();
        tracing::info!(%session_id, %key_id, gun, role, "DKG complete");
        Ok((key_id, public))
    }

    /// Replaces every signer's share of the threshold key `key_id` by a new
    /// one (FROST's refresh DKG with all n signers: shares of zero added to
    /// the old shares), keeping the group key; returns it. The new shares are
    /// stored only once every signer derived the same new public key
    /// package; old and new shares do not sign together.
    pub async fn refresh_shares(self: &Arc<Self>, key_id: &str) -> Result<Vec<u8>, ThresholdError> {
        let record = self
            .threshold_record(key_id)
            .map_err(|s| ThresholdError::NotFound(s.message().to_owned()))?;
        let (session_id, finished) = self
            .dkg_rounds("share refresh", &record.gun, &record.role, key_id)
            .await?;
        let packages: BTreeSet<(&str, &[u8], &[u8])> = finished
            .iter()
            .map(|(_, r)| {
                (
                    r.key_id.as_str(),
                    r.group_public_key.as_slice(),
                    r.new_public_package.as_slice(),
                )
            })
            .collect();
        let agreed = packages.len() == 1
            && packages
                .iter()
                .all(|(k, public, _)| *k == key_id && *public == record.public.as_slice());
        if !agreed {
            return Err(ThresholdError::Protocol(format!(
                "signers derived {} different results in share refresh {session_id}; nothing was replaced",
                packages.len()
            )));
        }
        let req = DkgCommitRequest {
            session_id: session_id.clone(),
            coordinator: u32::from(self.config.self_id),
        };
        let started = Instant::now();
        let results = on_each!(
            self,
            &self.config.participants(),
            self.config.dkg_timeout,
            dkg_commit,
            req
        );
        self.dkg_round_done("dkg_commit", started, &results);
        let (ok, failed) = split(results);
        if !failed.is_empty() {
            let done: Vec<u16> = ok.iter().map(|(id, _)| *id).collect();
            return Err(ThresholdError::Protocol(format!(
                "share refresh {session_id} of {key_id} stored on signers {done:?} only ({failed}); \
                 those that did not store it hold shares that no longer sign with the others"
            )));
        }
        tracing::info!(%session_id, %key_id, "share refresh complete");
        Ok(record.public)
    }

    /// Gets this signer's lost share of the threshold key `key_id` back
    /// from k other holders with FROST's repairable threshold scheme
    /// (`keys::repairable`) and stores it like a share made by DKG; returns
    /// the group public key, which does not change. The helpers are the
    /// first k peers (by identifier) that answer round 1; each sends its
    /// deltas straight to the other helpers, and only the sums (sigmas)
    /// come here. The share is stored only when it matches this signer's
    /// verifying share in the public key package the helpers agree on.
    pub async fn repair_share(self: &Arc<Self>, key_id: &str) -> Result<Vec<u8>, ThresholdError> {
        let held = self
            .store
            .key(key_id)
            .map_err(|e| ThresholdError::Internal(e.to_string()))?;
        if held.is_some() {
            return Err(ThresholdError::AlreadyHeld(key_id.to_owned()));
        }
        let me = self.config.self_id;
        let needed = usize::from(self.config.min_signers);
        let session_id = random_session_id();
        let unavailable = |reachable: usize, details: String| ThresholdError::Unavailable {
            operation: "share repair",
            needed,
            reachable,
            details,
        };
        let protocol =
            |what: String| ThresholdError::Protocol(format!("share repair of {key_id}: {what}; nothing was stored"));
        let peers: Vec<u16> = self.config.peers.iter().map(|p| p.id).collect();
        tracing::info!(%session_id, %key_id, "starting share repair");

        // Round 1: which holders answer, and the key's public material.
        let req = RepairRound1Request {
            session_id: session_id.clone(),
            coordinator: u32::from(me),
            key_id: key_id.to_owned(),
        };
        let started = Instant::now();
        let results = self
            .all(&peers, self.config.dkg_timeout, move |b, to| {
                let req = req.clone();
                async move { b.transport()?.repair_round1(to, req).await }
            })
            .await;
        self.dkg_round_done("repair_round1", started, &results);
        let (ok, failed) = split(results);
        if ok.len() < needed {
            return Err(unavailable(ok.len(), failed));
        }
        let chosen: Vec<(u16, RepairRound1Response)> = ok.into_iter().take(needed).collect();
        let helpers: Vec<u16> = chosen.iter().map(|(id, _)| *id).collect();
        let info = chosen[0].1.clone();
        if chosen.iter().any(|(_, r)| *r != info) {
            return Err(protocol(format!("helpers {helpers:?} disagree about the key")));
        }
        let public_package = PublicKeyPackage::deserialize(&info.public_package)
            .map_err(|e| protocol(format!("public key package: {e}")))?;
        let public = public_package
            .verifying_key()
            .serialize()
            .map_err(|e| protocol(format!("group key: {e}")))?;
        let mut holders = Vec::new();
        for p in &info.participants {
            holders.push(id16(*p).map_err(|s| protocol(s.message().to_owned()))?);
        }
        holders.sort_unstable();
        let derived_id = seal_tuf::keys::key_id(Algorithm::Ed25519.key_type(), &public).to_string();
        if derived_id != key_id
            || holders != self.config.participants()
            || info.min_signers != u32::from(self.config.min_signers)
            || public_package.min_signers() != Some(self.config.min_signers)
        {
            return Err(protocol(format!(
                "the helpers hold key {derived_id} with signers {holders:?}, {} of them, \
                 which is not a key of this cluster",
                info.min_signers
            )));
        }
        let my_ident = identifier(me).map_err(status_internal)?;
        let expected = *public_package
            .verifying_shares()
            .get(&my_ident)
            .ok_or_else(|| protocol(format!("the public key package has no verifying share of signer {me}")))?;

        // Round 2: each helper sends its deltas directly to the other helpers.
        let req = RepairRound2Request {
            session_id: session_id.clone(),
            coordinator: u32::from(me),
            helpers: helpers.iter().map(|h| u32::from(*h)).collect(),
        };
        let started = Instant::now();
        let results = self
            .all(&helpers, self.config.dkg_timeout, move |b, to| {
                let req = req.clone();
                async move { b.transport()?.repair_round2(to, req).await }
            })
            .await;
        self.dkg_round_done("repair_round2", started, &results);
        let (ok, failed) = split(results);
        if !failed.is_empty() {
            return Err(unavailable(ok.len(), failed));
        }

        // Round 3: each helper's sigma; their sum is this signer's share.
        let req = RepairFinishRequest {
            session_id: session_id.clone(),
            coordinator: u32::from(me),
        };
        let started = Instant::now();
        let results = self
            .all(&helpers, self.config.dkg_timeout, move |b, to| {
                let req = req.clone();
                async move { b.transport()?.repair_finish(to, req).await }
            })
            .await;
        self.dkg_round_done("repair_finish", started, &results);
        let (ok, failed) = split(results);
        if !failed.is_empty() {
            return Err(unavailable(ok.len(), failed));
        }
        let mut sigmas = Vec::new();
        for (from, r) in &ok {
            sigmas.push(
                frost::keys::repairable::Sigma::deserialize(&r.sigma)
                    .map_err(|e| protocol(format!("sigma of signer {from}: {e}")))?,
            );
        }
        let key_package = frost::keys::repairable::repair_share_part3(&sigmas, my_ident, &public_package)
            .map_err(|e| protocol(format!("repair part 3: {e}")))?;
        if *key_package.verifying_share() != expected {
            return Err(protocol(format!(
                "the values of helpers {helpers:?} do not make this signer's share \
                 (it does not match its verifying share)"
            )));
        }

        let b = self.clone();
        let kid = key_id.to_owned();
        let key_package = Arc::new(key_package);
        blocking(move || {
            let record = b.share_record(&key_package, &public_package, info.gun, info.role, holders)?;
            if record.key_id != kid {
                return Err(Status::internal("share repair changed the key ID"));
            }
            if b.store
                .key(&kid)
                .map_err(|e| Status::internal(e.to_string()))?
                .is_some()
            {
                return Err(Status::already_exists(format!("key {kid} was stored meanwhile")));
            }
            b.store
                .put_key(&record)
                .map_err(|e| internal("storing the repaired share")(e.to_string()))?;
            lock(&b.shares).insert(kid, key_package);
            Ok(())
        })
        .await
        .map_err(|s| ThresholdError::Internal(s.message().to_owned()))?;
        tracing::info!(%session_id, %key_id, ?helpers, "share repair complete");
        Ok(public)
    }

    /// The three DKG rounds with every signer, for a new key of
    /// `gun`/`role` or, when `refresh_key_id` is not empty, a share refresh
    /// of that key; returns the session and every signer's `DkgFinish`.
    async fn dkg_rounds(
        self: &Arc<Self>,
        operation: &'static str,
        gun: &str,
        role: &str,
        refresh_key_id: &str,
    ) -> Result<(String, Vec<(u16, DkgFinishResponse)>), ThresholdError> {
        let participants = self.config.participants();
        let n = participants.len();
        let session_id = random_session_id();
        let me = self.config.self_id;
        let unavailable = |reachable: usize, details: String| ThresholdError::Unavailable {
            operation,
            needed: n,
            reachable,
            details,
        };
        tracing::info!(%session_id, operation, gun, role, refresh_key_id, k = self.config.min_signers, n, "starting DKG");

        // Round 1: everyone's public package.
        let req = DkgRound1Request {
            session_id: session_id.clone(),
            coordinator: u32::from(me),
            gun: gun.to_owned(),
            role: role.to_owned(),
            min_signers: u32::from(self.config.min_signers),
            participants: participants.iter().map(|p| u32::from(*p)).collect(),
            refresh_key_id: refresh_key_id.to_owned(),
        };
        let started = Instant::now();
        // Round 1 is cheap (a polynomial and its commitments): a participant
        // that does not answer within the peer timeout is down or hung, and
        // the DKG fails now rather than after the whole DKG timeout. The
        // later rounds (share encryption under PBES2) keep the DKG timeout.
        let results = on_each!(self, &participants, self.config.peer_timeout, dkg_round1, req);
        self.dkg_round_done("dkg_round1", started, &results);
        let (ok, failed) = split(results);
        if !failed.is_empty() {
            return Err(unavailable(ok.len(), failed));
        }
        let round1_packages: HashMap<u32, Vec<u8>> = ok.into_iter().map(|(id, r)| (u32::from(id), r.package)).collect();

        // Round 2: each participant sends its secret packages directly to their recipients.
        let req = DkgRound2Request {
            session_id: session_id.clone(),
            coordinator: u32::from(me),
            round1_packages,
        };
        let started = Instant::now();
        let results = on_each!(self, &participants, self.config.dkg_timeout, dkg_round2, req);
        self.dkg_round_done("dkg_round2", started, &results);
        let (ok, failed) = split(results);
        if !failed.is_empty() {
            return Err(unavailable(ok.len(), failed));
        }

        // Round 3: everyone derives (and, for a new key, stores) its share.
        let req = DkgFinishRequest {
            session_id: session_id.clone(),
            coordinator: u32::from(me),
        };
        let started = Instant::now();
        let results = on_each!(self, &participants, self.config.dkg_timeout, dkg_finish, req);
        self.dkg_round_done("dkg_finish", started, &results);
        let (ok, failed) = split(results);
        if !failed.is_empty() {
            return Err(unavailable(ok.len(), failed));
        }
        Ok((session_id, ok))
    }

    /// Runs `call` for every id in `ids` concurrently, each bounded by `timeout`.
    async fn all<T, F, Fut>(self: &Arc<Self>, ids: &[u16], timeout: Duration, call: F) -> Vec<(u16, Result<T, Status>)>
    where
        T: Send + 'static,
        F: Fn(Arc<Self>, u16) -> Fut,
        Fut: std::future::Future<Output = Result<T, Status>> + Send + 'static,
    {
        let mut set = tokio::task::JoinSet::new();
        for &id in ids {
            let fut = call(self.clone(), id);
            set.spawn(async move { (id, with_timeout(timeout, fut).await) });
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

    // ---------------------------------------------------------------- coordinator: signing

    /// Signs `content` with the threshold key `record`, coordinating k
    /// signers; returns the 64-byte Ed25519 signature, verified.
    pub async fn sign(
        self: &Arc<Self>,
        record: &KeyRecord,
        claimed: &Claimed,
        content: &[u8],
    ) -> Result<Vec<u8>, ThresholdError> {
        let handle = ThresholdHandle::decode(&record.handle)?;
        let public_package = handle.public_package()?;
        let group_key: [u8; 32] = record
            .public
            .as_slice()
            .try_into()
            .map_err(|_| ThresholdError::Internal(format!("key {}: public key is not 32 bytes", record.key_id)))?;
        let group_key = ed25519_dalek::VerifyingKey::from_bytes(&group_key)
            .map_err(|e| ThresholdError::Internal(format!("key {}: {e}", record.key_id)))?;
        let needed = usize::from(handle.min_signers);
        let me = self.config.self_id;
        let by_identifier: BTreeMap<Identifier, u16> = handle
            .participants
            .iter()
            .filter_map(|p| Identifier::try_from(*p).ok().map(|i| (i, *p)))
            .collect();
        let mut excluded: BTreeSet<u16> = BTreeSet::new();
        let mut last_error = None;
        for attempt in 0..MAX_SIGN_ATTEMPTS {
            let session_id = random_session_id();
            // Round 1: our own commitments first, then the first k-1 peers that answer.
            let commit = SignCommitRequest {
                session_id: session_id.clone(),
                coordinator: u32::from(me),
                key_id: record.key_id.clone(),
            };
            let round_started = Instant::now();
            let own = self
                .sign_commit(commit.clone())
                .await
                .map_err(|s| ThresholdError::Internal(format!("own commitments: {}", s.message())))?;
            let mut commitments = BTreeMap::new();
            commitments.insert(
                identifier(me).map_err(status_internal)?,
                decode_commitments(&own.commitments)?,
            );
            let mut chosen = vec![me];
            let mut failures = Vec::new();
            let candidates: Vec<u16> = handle
                .participants
                .iter()
                .copied()
                .filter(|p| *p != me && !excluded.contains(p))
                .collect();
            let mut set = tokio::task::JoinSet::new();
            for to in candidates {
                let (b, req, timeout) = (self.clone(), commit.clone(), self.config.peer_timeout);
                set.spawn(async move {
                    let r = match b.transport() {
                        Ok(t) => with_timeout(timeout, t.sign_commit(to, req)).await,
                        Err(e) => Err(e),
                    };
                    (to, r)
                });
            }
            while chosen.len() < needed {
                let Some(joined) = set.join_next().await else { break };
                let Ok((to, r)) = joined else { continue };
                match r.and_then(|r| {
                    decode_commitments(&r.commitments).map_err(|e| Status::invalid_argument(e.to_string()))
                }) {
                    Ok(c) => {
                        commitments.insert(identifier(to).map_err(status_internal)?, c);
                        chosen.push(to);
                    }
                    Err(s) => {
                        self.note_unanswered(to, &s);
                        tracing::warn!(peer = to, code = ?s.code(), message = s.message(), "peer skipped in signing round 1");
                        failures.push(format!("signer {to}: {}", s.message()));
                    }
                }
            }
            // Slower peers are not waited for; their nonces expire unused.
            // Their calls run to their end (each bounded by the peer
            // timeout) rather than being cancelled: every cancelled call
            // resets an HTTP/2 stream, and h2 closes a connection that
            // resets too many.
            set.detach_all();
            if chosen.len() < needed {
                self.metrics
                    .round("sign_commit", "unavailable", round_started.elapsed());
                let excluded_note = if excluded.is_empty() {
                    String::new()
                } else {
                    format!("; left out after failing earlier: {excluded:?}")
                };
                return Err(ThresholdError::Unavailable {
                    operation: "threshold signing",
                    needed,
                    reachable: chosen.len(),
                    details: format!("{}{excluded_note}", failures.join("; ")),
                });
            }

            self.metrics.round("sign_commit", "ok", round_started.elapsed());

            // Round 2: the signing package, with the message, to the k chosen.
            let package = frost::SigningPackage::new(commitments, content);
            let package_bytes = package
                .serialize()
                .map_err(|e| ThresholdError::Internal(format!("signing package: {e}")))?;
            let share_req = SignShareRequest {
                session_id: session_id.clone(),
                coordinator: u32::from(me),
                key_id: record.key_id.clone(),
                signing_package: package_bytes,
                claimed_gun: claimed.gun.clone().unwrap_or_default(),
                claimed_role: claimed.role.clone().unwrap_or_default(),
                named: claimed.named.clone().into_iter().collect(),
            };
            let round_started = Instant::now();
            let results = on_each!(self, &chosen, self.config.peer_timeout, sign_share, share_req);
            let mut shares = BTreeMap::new();
            let mut retry = false;
            for (from, r) in results {
                match r {
                    Ok(r) => match frost::round2::SignatureShare::deserialize(&r.share) {
                        Ok(s) => {
                            shares.insert(identifier(from).map_err(status_internal)?, s);
                        }
                        Err(e) => {
                            tracing::warn!(peer = from, %e, "peer sent a malformed signature share");
                            excluded.insert(from);
                            retry = true;
                        }
                    },
                    Err(s) if s.code() == tonic::Code::FailedPrecondition => {
                        self.metrics.participant_refused(from);
                        self.metrics.round("sign_share", "refused", round_started.elapsed());
                        return Err(ThresholdError::Refused {
                            signer: from,
                            message: s.message().to_owned(),
                            high_water: s
                                .metadata()
                                .get(HIGH_WATER_HEADER)
                                .and_then(|v| v.to_str().ok())
                                .and_then(|v| v.parse().ok()),
                        });
                    }
                    Err(s) => {
                        self.note_unanswered(from, &s);
                        tracing::warn!(peer = from, code = ?s.code(), message = s.message(), "peer failed in signing round 2");
                        if from == me {
                            return Err(ThresholdError::Internal(format!(
                                "own signature share: {}",
                                s.message()
                            )));
                        }
                        failures.push(format!("signer {from}: {}", s.message()));
                        excluded.insert(from);
                        retry = true;
                    }
                }
            }
            if retry {
                self.metrics
                    .round("sign_share", "participant_failed", round_started.elapsed());
                last_error = Some(ThresholdError::Unavailable {
                    operation: "threshold signing",
                    needed,
                    reachable: shares.len(),
                    details: failures.join("; "),
                });
                tracing::info!(
                    attempt,
                    ?excluded,
                    "retrying threshold signing without the failed signers"
                );
                continue;
            }
            let signature = match frost::aggregate_custom(
                &package,
                &shares,
                &public_package,
                frost::CheaterDetection::AllCheaters,
            ) {
                Ok(s) => s,
                Err(e) => {
                    let culprits: Vec<u16> = e
                        .culprits()
                        .iter()
                        .filter_map(|c| by_identifier.get(c).copied())
                        .collect();
                    if culprits.is_empty() {
                        self.metrics.round("sign_share", "failed", round_started.elapsed());
                        return Err(ThresholdError::Protocol(format!("aggregation failed: {e}")));
                    }
                    self.metrics
                        .round("sign_share", "invalid_share", round_started.elapsed());
                    for c in &culprits {
                        tracing::error!(signer = c, key_id = %record.key_id, %session_id, "signer sent an invalid signature share");
                    }
                    excluded.extend(culprits.iter().copied());
                    last_error = Some(ThresholdError::Protocol(format!(
                        "signers {culprits:?} sent invalid signature shares"
                    )));
                    continue;
                }
            };
            let bytes = signature
                .serialize()
                .map_err(|e| ThresholdError::Internal(format!("signature: {e}")))?;
            let sig = ed25519_dalek::Signature::from_slice(&bytes)
                .map_err(|e| ThresholdError::Protocol(format!("aggregate signature: {e}")))?;
            if let Err(e) = group_key.verify_strict(content, &sig) {
                self.metrics.round("sign_share", "failed", round_started.elapsed());
                return Err(ThresholdError::Protocol(format!(
                    "aggregate signature does not verify: {e}"
                )));
            }
            self.metrics.round("sign_share", "ok", round_started.elapsed());
            tracing::debug!(key_id = %record.key_id, signers = ?chosen, "threshold signature made");
            return Ok(bytes);
        }
        Err(last_error.unwrap_or_else(|| ThresholdError::Protocol("threshold signing failed".into())))
    }

    // ---------------------------------------------------------------- participant

    fn sweep_dkg(sessions: &mut HashMap<String, DkgSession>) {
        sessions.retain(|_, s| s.created.elapsed() < DKG_TTL);
    }

    /// DKG round 1 on this participant.
    pub async fn dkg_round1(self: &Arc<Self>, req: DkgRound1Request) -> Result<DkgRound1Response, Status> {
        let mut participants = Vec::new();
        for p in &req.participants {
            participants.push(id16(*p)?);
        }
        participants.sort_unstable();
        participants.dedup();
        if participants != self.config.participants() {
            return Err(Status::invalid_argument(format!(
                "DKG participants {participants:?} differ from this signer's cluster {:?}",
                self.config.participants()
            )));
        }
        if req.min_signers != u32::from(self.config.min_signers) {
            return Err(Status::invalid_argument(format!(
                "DKG threshold {} differs from this signer's {}",
                req.min_signers, self.config.min_signers
            )));
        }
        if req.gun.is_empty() || req.role.is_empty() || req.session_id.is_empty() || req.session_id.len() > 64 {
            return Err(Status::invalid_argument("a DKG session needs an id, a gun and a role"));
        }
        let me = identifier(self.config.self_id)?;
        let refresh = nonempty(&req.refresh_key_id);
        let (secret, package) = match &refresh {
            None => frost::keys::dkg::part1(
                me,
                self.config.max_signers(),
                self.config.min_signers,
                rand::rngs::OsRng,
            ),
            Some(key_id) => {
                // Only a key this signer holds, for the stated GUN and role, made by this cluster.
                let record = self.threshold_record(key_id)?;
                let handle = ThresholdHandle::decode(&record.handle).map_err(|e| Status::internal(e.to_string()))?;
                let mut holders = handle.participants.clone();
                holders.sort_unstable();
                if (record.gun.as_str(), record.role.as_str()) != (req.gun.as_str(), req.role.as_str())
                    || holders != participants
                    || handle.min_signers != self.config.min_signers
                {
                    return Err(Status::invalid_argument(format!(
                        "share refresh of {key_id}: the key belongs to {}/{} with signers {holders:?}, {} of them",
                        record.gun, record.role, handle.min_signers
                    )));
                }
                frost::keys::refresh::refresh_dkg_part1(
                    me,
                    self.config.max_signers(),
                    self.config.min_signers,
                    rand::rngs::OsRng,
                )
            }
        }
        .map_err(|e| Status::internal(format!("DKG part 1: {e}")))?;
        let package = package.serialize().map_err(|e| internal("DKG part 1")(e.to_string()))?;
        let mut sessions = lock(&self.dkg);
        Self::sweep_dkg(&mut sessions);
        if sessions.len() >= MAX_DKG_SESSIONS {
            return Err(Status::resource_exhausted("too many DKG sessions in progress"));
        }
        if sessions.contains_key(&req.session_id) {
            return Err(Status::already_exists(format!("DKG session {} exists", req.session_id)));
        }
        sessions.insert(
            req.session_id.clone(),
            DkgSession {
                gun: req.gun,
                role: req.role,
                refresh,
                participants,
                state: DkgState::Round1(secret, package.clone()),
                received: BTreeMap::new(),
                created: Instant::now(),
            },
        );
        Ok(DkgRound1Response { package })
    }

    /// DKG round 2 on this participant: part 2, then direct delivery of each
    /// secret package to its recipient.
    pub async fn dkg_round2(self: &Arc<Self>, req: DkgRound2Request) -> Result<DkgRound2Response, Status> {
        let me = self.config.self_id;
        let (secret, own, participants, refresh) = {
            let mut sessions = lock(&self.dkg);
            let s = sessions
                .get_mut(&req.session_id)
                .ok_or_else(|| Status::not_found(format!("no DKG session {}", req.session_id)))?;
            match std::mem::replace(&mut s.state, DkgState::Busy) {
                DkgState::Round1(secret, own) => (secret, own, s.participants.clone(), s.refresh.is_some()),
                other => {
                    s.state = other;
                    return Err(Status::failed_precondition("DKG session is not in round 1"));
                }
            }
        };
        let mut others = BTreeMap::new();
        for p in &participants {
            let bytes = req
                .round1_packages
                .get(&u32::from(*p))
                .ok_or_else(|| Status::invalid_argument(format!("round-1 package of signer {p} missing")))?;
            if *p == me {
                if *bytes != own {
                    return Err(Status::invalid_argument(
                        "the coordinator relayed a different round-1 package of ours",
                    ));
                }
                continue;
            }
            let pkg = frost::keys::dkg::round1::Package::deserialize(bytes)
                .map_err(|e| Status::invalid_argument(format!("round-1 package of signer {p}: {e}")))?;
            others.insert(identifier(*p)?, pkg);
        }
        let part2 = if refresh {
            frost::keys::refresh::refresh_dkg_part2(secret, &others)
        } else {
            frost::keys::dkg::part2(secret, &others)
        };
        let (secret2, outgoing) =
            part2.map_err(|e| Status::invalid_argument(format!("DKG part 2 (culprits {:?}): {e}", e.culprits())))?;
        {
            let mut sessions = lock(&self.dkg);
            let s = sessions
                .get_mut(&req.session_id)
                .ok_or_else(|| Status::not_found(format!("DKG session {} expired", req.session_id)))?;
            s.state = DkgState::Round2(secret2, others);
        }
        let by_identifier: BTreeMap<Identifier, u16> = participants
            .iter()
            .filter_map(|p| Identifier::try_from(*p).ok().map(|i| (i, *p)))
            .collect();
        let mut deliveries = Vec::new();
        for (to_ident, package) in outgoing {
            let to = *by_identifier
                .get(&to_ident)
                .ok_or_else(|| Status::internal("round-2 package for an unknown participant"))?;
            let bytes = package
                .serialize()
                .map_err(|e| internal("round-2 package")(e.to_string()))?;
            deliveries.push((to, bytes));
        }
        let session_id = req.session_id.clone();
        let results = self
            .all(
                &deliveries.iter().map(|(to, _)| *to).collect::<Vec<_>>(),
                self.config.dkg_timeout,
                move |b, to| {
                    let package = deliveries
                        .iter()
                        .find(|(t, _)| *t == to)
                        .map(|(_, p)| p.clone())
                        .unwrap_or_default();
                    let req = DkgDeliverRequest {
                        session_id: session_id.clone(),
                        from: u32::from(me),
                        package,
                    };
                    async move { b.transport()?.dkg_deliver(to, req).await }
                },
            )
            .await;
        let (_, failed) = split(results);
        if !failed.is_empty() {
            return Err(Status::unavailable(format!("round-2 delivery failed: {failed}")));
        }
        Ok(DkgRound2Response {})
    }

    /// A round-2 package from another participant.
    pub async fn dkg_deliver(self: &Arc<Self>, req: DkgDeliverRequest) -> Result<DkgDeliverResponse, Status> {
        let from = id16(req.from)?;
        let package = frost::keys::dkg::round2::Package::deserialize(&req.package)
            .map_err(|e| Status::invalid_argument(format!("round-2 package from signer {from}: {e}")))?;
        let mut sessions = lock(&self.dkg);
        let s = sessions
            .get_mut(&req.session_id)
            .ok_or_else(|| Status::not_found(format!("no DKG session {}", req.session_id)))?;
        if from == self.config.self_id || !s.participants.contains(&from) {
            return Err(Status::permission_denied(format!(
                "signer {from} is not a participant of this DKG"
            )));
        }
        let ident = identifier(from)?;
        if s.received.contains_key(&ident) {
            return Err(Status::already_exists(format!(
                "round-2 package from signer {from} already received"
            )));
        }
        s.received.insert(ident, package);
        Ok(DkgDeliverResponse {})
    }

    /// DKG round 3 on this participant: derive, encrypt and store the share.
    pub async fn dkg_finish(self: &Arc<Self>, req: DkgFinishRequest) -> Result<DkgFinishResponse, Status> {
        let session = lock(&self.dkg)
            .remove(&req.session_id)
            .ok_or_else(|| Status::not_found(format!("no DKG session {}", req.session_id)))?;
        let DkgState::Round2(secret2, round1) = &session.state else {
            return Err(Status::failed_precondition("DKG session is not in round 2"));
        };
        let old = match &session.refresh {
            Some(key_id) => {
                let record = self.threshold_record(key_id)?;
                let handle = ThresholdHandle::decode(&record.handle).map_err(|e| Status::internal(e.to_string()))?;
                let public = handle.public_package().map_err(|e| Status::internal(e.to_string()))?;
                Some((public, self.key_package(&record)?))
            }
            None => None,
        };
        let derived = match old {
            None => frost::keys::dkg::part3(secret2, round1, &session.received),
            Some((old_public, old_share)) => frost::keys::refresh::refresh_dkg_shares(
                secret2,
                round1,
                &session.received,
                old_public,
                (*old_share).clone(),
            ),
        };
        let (key_package, public_package) =
            derived.map_err(|e| Status::invalid_argument(format!("DKG part 3 (culprits {:?}): {e}", e.culprits())))?;
        let public = public_package
            .verifying_key()
            .serialize()
            .map_err(|e| internal("group key")(e.to_string()))?;
        let key_id = seal_tuf::keys::key_id(Algorithm::Ed25519.key_type(), &public).to_string();
        if session.refresh.as_ref().is_some_and(|k| *k != key_id) {
            return Err(Status::internal("share refresh changed the group key"));
        }
        let public_bytes = public_package
            .serialize()
            .map_err(|e| internal("public key package")(e.to_string()))?;
        let me = self.clone();
        let gun = session.gun.clone();
        let role = session.role.clone();
        let participants = session.participants.clone();
        let kid = key_id.clone();
        let refresh = session.refresh.is_some();
        let key_package = Arc::new(key_package);
        let record = blocking(move || {
            let record = me.share_record(&key_package, &public_package, gun, role, participants)?;
            if refresh {
                // Stored on DkgCommit, once every signer has its new share.
                return Ok(Some((record, key_package)));
            }
            me.store
                .put_key(&record)
                .map_err(|e| internal("storing the share")(e.to_string()))?;
            lock(&me.shares).insert(kid, key_package);
            Ok(None)
        })
        .await?;
        let mut new_public_package = Vec::new();
        if let Some((record, key_package)) = record {
            tracing::info!(%key_id, "prepared a refreshed threshold key share");
            new_public_package = public_bytes;
            let mut sessions = lock(&self.dkg);
            let mut session = session;
            session.state = DkgState::Prepared(Box::new(record), key_package);
            sessions.insert(req.session_id, session);
        } else {
            tracing::info!(%key_id, gun = %session.gun, role = %session.role, "stored threshold key share");
        }
        Ok(DkgFinishResponse {
            group_public_key: public,
            key_id,
            new_public_package,
        })
    }

    /// This signer's key record of a threshold key: `key_package` encrypted
    /// under the default alias (JWE, as software keys are), with the public
    /// key package, k and every holder's identifier in the handle.
    fn share_record(
        &self,
        key_package: &KeyPackage,
        public_package: &PublicKeyPackage,
        gun: String,
        role: String,
        participants: Vec<u16>,
    ) -> Result<KeyRecord, Status> {
        let public = public_package
            .verifying_key()
            .serialize()
            .map_err(|e| internal("group key")(e.to_string()))?;
        let key_id = seal_tuf::keys::key_id(Algorithm::Ed25519.key_type(), &public).to_string();
        let public_bytes = public_package
            .serialize()
            .map_err(|e| internal("public key package")(e.to_string()))?;
        let serialized =
            Zeroizing::new(KeyPackage::serialize(key_package).map_err(|e| internal("key package")(e.to_string()))?);
        let alias = self.passphrases.default_alias();
        let passphrase = self
            .passphrases
            .get(alias)
            .ok_or_else(|| Status::unavailable(format!("no passphrase for alias {alias:?}")))?;
        let share_jwe = encrypt_secret(passphrase.as_bytes(), &serialized, alias, self.iterations)
            .map_err(|e| internal("encrypting the share")(e.to_string()))?;
        let handle = ThresholdHandle {
            share_jwe,
            public_package: base64::engine::general_purpose::STANDARD.encode(&public_bytes),
            self_id: self.config.self_id,
            min_signers: *key_package.min_signers(),
            participants,
        };
        Ok(KeyRecord {
            key_id,
            gun,
            role,
            algorithm: Algorithm::Ed25519.as_str().to_owned(),
            public,
            backend: BACKEND_NAME.to_owned(),
            handle: serde_json::to_vec(&handle).map_err(|e| internal("key handle")(e.to_string()))?,
        })
    }

    /// The last step of a share refresh on this participant: store the new
    /// share prepared by `DkgFinish` in place of the old one.
    pub async fn dkg_commit(self: &Arc<Self>, req: DkgCommitRequest) -> Result<DkgCommitResponse, Status> {
        let session = lock(&self.dkg)
            .remove(&req.session_id)
            .ok_or_else(|| Status::not_found(format!("no DKG session {}", req.session_id)))?;
        let DkgState::Prepared(record, key_package) = session.state else {
            return Err(Status::failed_precondition("DKG session has no prepared share refresh"));
        };
        let me = self.clone();
        let key_id = record.key_id.clone();
        blocking(move || {
            me.store
                .put_key(&record)
                .map_err(|e| internal("storing the refreshed share")(e.to_string()))?;
            lock(&me.shares).insert(record.key_id.clone(), key_package);
            Ok(())
        })
        .await?;
        tracing::info!(%key_id, "stored a refreshed threshold key share");
        Ok(DkgCommitResponse {})
    }

    fn sweep_repairs(sessions: &mut HashMap<String, RepairSession>) {
        sessions.retain(|_, s| s.created.elapsed() < DKG_TTL);
    }

    /// Share repair round 1 on a helper: opens a session for the
    /// coordinator, the participant repaired, and answers with the key's
    /// record and public key package.
    pub async fn repair_round1(self: &Arc<Self>, req: RepairRound1Request) -> Result<RepairRound1Response, Status> {
        let participant = id16(req.coordinator)?;
        if req.session_id.is_empty() || req.session_id.len() > 64 {
            return Err(Status::invalid_argument("bad repair session id"));
        }
        if participant == self.config.self_id {
            return Err(Status::invalid_argument("a signer does not help repair its own share"));
        }
        let b = self.clone();
        let key_id = req.key_id.clone();
        let (record, handle) = blocking(move || {
            let record = b.threshold_record(&key_id)?;
            // Only a helper that can use its own share takes part.
            b.key_package(&record)?;
            let handle = ThresholdHandle::decode(&record.handle).map_err(|e| Status::internal(e.to_string()))?;
            Ok((record, handle))
        })
        .await?;
        if !handle.participants.contains(&participant) {
            return Err(Status::invalid_argument(format!(
                "signer {participant} holds no share of key {}",
                req.key_id
            )));
        }
        let public_package = base64::engine::general_purpose::STANDARD
            .decode(&handle.public_package)
            .map_err(|e| Status::internal(format!("public key package: {e}")))?;
        let mut sessions = lock(&self.repairs);
        Self::sweep_repairs(&mut sessions);
        if sessions.len() >= MAX_DKG_SESSIONS {
            return Err(Status::resource_exhausted("too many repair sessions in progress"));
        }
        if sessions.contains_key(&req.session_id) {
            return Err(Status::already_exists(format!(
                "repair session {} exists",
                req.session_id
            )));
        }
        sessions.insert(
            req.session_id,
            RepairSession {
                key_id: req.key_id,
                participant,
                holders: handle.participants.clone(),
                helpers: None,
                received: BTreeMap::new(),
                created: Instant::now(),
            },
        );
        tracing::info!(key_id = %record.key_id, participant, "helping repair a threshold key share");
        Ok(RepairRound1Response {
            gun: record.gun,
            role: record.role,
            min_signers: u32::from(handle.min_signers),
            participants: handle.participants.iter().map(|p| u32::from(*p)).collect(),
            public_package,
        })
    }

    /// Share repair round 2 on a helper: `repair_share_part1` over the
    /// helpers named, and direct delivery of each delta to its helper.
    pub async fn repair_round2(self: &Arc<Self>, req: RepairRound2Request) -> Result<RepairRound2Response, Status> {
        let me = self.config.self_id;
        let mut helpers = Vec::new();
        for h in &req.helpers {
            helpers.push(id16(*h)?);
        }
        helpers.sort_unstable();
        helpers.dedup();
        if helpers.len() != req.helpers.len() {
            return Err(Status::invalid_argument("repair helpers are named twice"));
        }
        let (key_id, participant) = {
            let mut sessions = lock(&self.repairs);
            let s = sessions
                .get_mut(&req.session_id)
                .ok_or_else(|| Status::not_found(format!("no repair session {}", req.session_id)))?;
            if u32::from(s.participant) != req.coordinator {
                return Err(Status::permission_denied(
                    "the repair session belongs to another signer",
                ));
            }
            if s.helpers.is_some() {
                return Err(Status::failed_precondition("repair session is past round 1"));
            }
            if !helpers.contains(&me)
                || helpers.contains(&s.participant)
                || !helpers.iter().all(|h| s.holders.contains(h))
            {
                return Err(Status::invalid_argument(format!(
                    "repair helpers {helpers:?} must be holders of the key, this signer among them, not signer {}",
                    s.participant
                )));
            }
            s.helpers = Some(helpers.clone());
            (s.key_id.clone(), s.participant)
        };
        let b = self.clone();
        let key_package = blocking(move || {
            let record = b.threshold_record(&key_id)?;
            b.key_package(&record)
        })
        .await?;
        let mut idents = Vec::new();
        for h in &helpers {
            idents.push(identifier(*h)?);
        }
        let deltas = frost::keys::repairable::repair_share_part1::<frost::Ed25519Sha512, _>(
            &idents,
            &key_package,
            &mut rand::rngs::OsRng,
            identifier(participant)?,
        )
        .map_err(|e| Status::invalid_argument(format!("repair part 1: {e}")))?;
        let by_identifier: BTreeMap<Identifier, u16> =
            helpers.iter().copied().zip(idents).map(|(h, i)| (i, h)).collect();
        let mut deliveries = Vec::new();
        for (ident, delta) in deltas {
            let to = *by_identifier
                .get(&ident)
                .ok_or_else(|| Status::internal("a delta for an unknown helper"))?;
            if to == me {
                let mut sessions = lock(&self.repairs);
                let s = sessions
                    .get_mut(&req.session_id)
                    .ok_or_else(|| Status::not_found(format!("repair session {} expired", req.session_id)))?;
                s.received.insert(me, delta);
            } else {
                deliveries.push((to, delta.serialize()));
            }
        }
        let session_id = req.session_id.clone();
        let results = self
            .all(
                &deliveries.iter().map(|(to, _)| *to).collect::<Vec<_>>(),
                self.config.dkg_timeout,
                move |b, to| {
                    let delta = deliveries
                        .iter()
                        .find(|(t, _)| *t == to)
                        .map(|(_, d)| d.clone())
                        .unwrap_or_default();
                    let req = RepairDeliverRequest {
                        session_id: session_id.clone(),
                        from: u32::from(me),
                        delta,
                    };
                    async move { b.transport()?.repair_deliver(to, req).await }
                },
            )
            .await;
        let (_, failed) = split(results);
        if !failed.is_empty() {
            return Err(Status::unavailable(format!("repair delta delivery failed: {failed}")));
        }
        Ok(RepairRound2Response {})
    }

    /// A delta from another helper of a share repair.
    pub async fn repair_deliver(self: &Arc<Self>, req: RepairDeliverRequest) -> Result<RepairDeliverResponse, Status> {
        let from = id16(req.from)?;
        let delta = frost::keys::repairable::Delta::deserialize(&req.delta)
            .map_err(|e| Status::invalid_argument(format!("delta from signer {from}: {e}")))?;
        let mut sessions = lock(&self.repairs);
        let s = sessions
            .get_mut(&req.session_id)
            .ok_or_else(|| Status::not_found(format!("no repair session {}", req.session_id)))?;
        let not_helper = s.helpers.as_ref().is_some_and(|h| !h.contains(&from));
        if from == self.config.self_id || from == s.participant || !s.holders.contains(&from) || not_helper {
            return Err(Status::permission_denied(format!(
                "signer {from} is not a helper of this repair"
            )));
        }
        if s.received.contains_key(&from) {
            return Err(Status::already_exists(format!(
                "delta from signer {from} already received"
            )));
        }
        s.received.insert(from, delta);
        Ok(RepairDeliverResponse {})
    }

    /// Share repair round 3 on a helper: the sum of every helper's delta
    /// for this one (`repair_share_part2`), for the participant repaired.
    pub async fn repair_finish(self: &Arc<Self>, req: RepairFinishRequest) -> Result<RepairFinishResponse, Status> {
        let session = {
            let mut sessions = lock(&self.repairs);
            match sessions.get(&req.session_id) {
                None => return Err(Status::not_found(format!("no repair session {}", req.session_id))),
                Some(s) if u32::from(s.participant) != req.coordinator => {
                    return Err(Status::permission_denied(
                        "the repair session belongs to another signer",
                    ))
                }
                Some(_) => {}
            }
            sessions
                .remove(&req.session_id)
                .ok_or_else(|| Status::internal("repair session vanished"))?
        };
        let helpers = session
            .helpers
            .ok_or_else(|| Status::failed_precondition("repair session is not past round 2"))?;
        let from: Vec<u16> = session.received.keys().copied().collect();
        if from != helpers {
            return Err(Status::failed_precondition(format!(
                "deltas arrived from signers {from:?}, the helpers are {helpers:?}"
            )));
        }
        let deltas: Vec<_> = session.received.into_values().collect();
        let sigma = frost::keys::repairable::repair_share_part2(&deltas);
        tracing::info!(key_id = %session.key_id, participant = session.participant, "sent a share repair value");
        Ok(RepairFinishResponse {
            sigma: sigma.serialize(),
        })
    }

    /// The decrypted key package of `record` (cached).
    fn key_package(&self, record: &KeyRecord) -> Result<Arc<KeyPackage>, Status> {
        if let Some(k) = lock(&self.shares).get(&record.key_id) {
            return Ok(k.clone());
        }
        let handle = ThresholdHandle::decode(&record.handle).map_err(|e| Status::internal(e.to_string()))?;
        let alias = jwe_kid(&handle.share_jwe).map_err(|e| Status::internal(e.to_string()))?;
        let passphrase = self.passphrases.get(&alias).ok_or_else(|| {
            Status::unavailable(format!(
                "threshold share of {} is encrypted under alias {alias:?}, whose passphrase is not set",
                record.key_id
            ))
        })?;
        let bytes = decrypt_secret(passphrase.as_bytes(), &handle.share_jwe)
            .map_err(|e| Status::unavailable(format!("threshold share of {}: {e}", record.key_id)))?;
        let package = Arc::new(
            KeyPackage::deserialize(&bytes)
                .map_err(|e| Status::internal(format!("threshold share of {}: {e}", record.key_id)))?,
        );
        lock(&self.shares).insert(record.key_id.clone(), package.clone());
        Ok(package)
    }

    fn threshold_record(&self, key_id: &str) -> Result<KeyRecord, Status> {
        let record = self
            .store
            .key(key_id)
            .map_err(|e| Status::internal(e.to_string()))?
            .ok_or_else(|| Status::not_found(format!("key {key_id} not found")))?;
        if record.backend != BACKEND_NAME {
            return Err(Status::invalid_argument(format!("key {key_id} is not a threshold key")));
        }
        Ok(record)
    }

    /// Signing round 1 on this participant: fresh nonces, kept in memory.
    pub async fn sign_commit(self: &Arc<Self>, req: SignCommitRequest) -> Result<SignCommitResponse, Status> {
        if req.session_id.is_empty() || req.session_id.len() > 64 {
            return Err(Status::invalid_argument("bad signing session id"));
        }
        let me = self.clone();
        let key_id = req.key_id.clone();
        let package = blocking(move || {
            let record = me.threshold_record(&key_id)?;
            me.key_package(&record)
        })
        .await?;
        let (nonces, commitments) = frost::round1::commit(package.signing_share(), &mut rand::rngs::OsRng);
        let bytes = commitments
            .serialize()
            .map_err(|e| internal("commitments")(e.to_string()))?;
        let mut map = lock(&self.nonces);
        map.retain(|_, e| e.created.elapsed() < NONCE_TTL);
        if map.len() >= self.max_nonce_sessions {
            // The oldest session is most likely one this participant was
            // not chosen for; dropping its nonces is safe (never reused).
            if let Some(oldest) = map.iter().min_by_key(|(_, e)| e.created).map(|(id, _)| id.clone()) {
                tracing::debug!(session = %oldest, "dropping the oldest signing session's nonces");
                map.remove(&oldest);
            }
        }
        if map.contains_key(&req.session_id) {
            return Err(Status::already_exists("signing session exists"));
        }
        map.insert(
            req.session_id,
            NonceEntry {
                key_id: req.key_id,
                nonces,
                commitments,
                created: Instant::now(),
            },
        );
        Ok(SignCommitResponse { commitments: bytes })
    }

    /// Signing round 2 on this participant: consume the session's nonces,
    /// apply the policy to the message, record the high-water mark, answer
    /// with a share.
    pub async fn sign_share(self: &Arc<Self>, req: SignShareRequest) -> Result<SignShareResponse, Status> {
        // Taken out first: whatever happens next, these nonces are never used again.
        let entry = lock(&self.nonces)
            .remove(&req.session_id)
            .filter(|e| e.created.elapsed() < NONCE_TTL)
            .ok_or_else(|| Status::aborted(format!("no live signing session {}", req.session_id)))?;
        if entry.key_id != req.key_id {
            return Err(Status::invalid_argument("signing session was opened for another key"));
        }
        let package = frost::SigningPackage::deserialize(&req.signing_package)
            .map_err(|e| Status::invalid_argument(format!("signing package: {e}")))?;
        let me_ident = identifier(self.config.self_id)?;
        if package.signing_commitments().get(&me_ident) != Some(&entry.commitments) {
            return Err(Status::invalid_argument(
                "the signing package does not carry our commitments",
            ));
        }
        let me = self.clone();
        let share = blocking(move || {
            let record = me.threshold_record(&req.key_id)?;
            let key_package = me.key_package(&record)?;
            let claimed = Claimed {
                gun: nonempty(&req.claimed_gun),
                role: nonempty(&req.claimed_role),
                named: req.named.clone().into_iter().collect(),
            };
            let scope = KeyScope {
                gun: record.gun.clone(),
                role: record.role.clone(),
            };
            let _guard = lock(&me.participant);
            let last = me
                .store
                .high_water(&record.key_id)
                .map_err(|e| Status::internal(e.to_string()))?;
            let now = time::OffsetDateTime::now_utc();
            let approved = policy::decide(&scope, &claimed, package.message(), last.as_ref(), now, &me.policy)
                .map_err(|refusal| {
                    me.metrics.refused(refusal.reason());
                    tracing::warn!(key_id = %record.key_id, coordinator = req.coordinator, %refusal, "refused a threshold signature share");
                    crate::service::refusal_status(&refusal)
                })?;
            let share = frost::round2::sign(&package, &entry.nonces, &key_package)
                .map_err(|e| Status::invalid_argument(format!("signature share: {e}")))?;
            // Durable before the share leaves.
            let mark = match approved {
                Some(approved) => {
                    me.store
                        .set_high_water(&record.key_id, &approved.high_water)
                        .map_err(|e| Status::internal(e.to_string()))?;
                    Some((record.key_id.clone(), approved.high_water))
                }
                None => None,
            };
            Ok((share.serialize(), mark))
        })
        .await?;
        let (share, mark) = share;
        if let Some((key_id, hw)) = mark {
            self.announce_mark(&key_id, &hw);
        }
        Ok(SignShareResponse { share })
    }

    /// This participant's identifiers and the threshold keys it holds.
    pub fn status(&self) -> Result<StatusResponse, Status> {
        let key_ids = self
            .store
            .keys()
            .map_err(|e| Status::internal(e.to_string()))?
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

fn status_internal(s: Status) -> ThresholdError {
    ThresholdError::Internal(s.message().to_owned())
}

fn decode_commitments(bytes: &[u8]) -> Result<frost::round1::SigningCommitments, ThresholdError> {
    frost::round1::SigningCommitments::deserialize(bytes)
        .map_err(|e| ThresholdError::Protocol(format!("malformed commitments: {e}")))
}

async fn with_timeout<T>(
    timeout: Duration,
    fut: impl std::future::Future<Output = Result<T, Status>>,
) -> Result<T, Status> {
    match tokio::time::timeout(timeout, fut).await {
        Ok(r) => r,
        Err(_) => Err(Status::deadline_exceeded(format!("no answer within {timeout:?}"))),
    }
}

/// Successes, and the failures as one message.
fn split<T>(results: Vec<(u16, Result<T, Status>)>) -> (Vec<(u16, T)>, String) {
    let mut ok = Vec::new();
    let mut failed = Vec::new();
    for (id, r) in results {
        match r {
            Ok(v) => ok.push((id, v)),
            Err(s) => failed.push(format!("signer {id}: {:?}: {}", s.code(), s.message())),
        }
    }
    (ok, failed.join("; "))
}

/// The `seal.threshold.v1.ThresholdPeer` service: authenticates the
/// calling signer by its certificate, then runs the participant's part.
#[derive(Clone)]
pub struct ThresholdPeerService {
    backend: Arc<ThresholdBackend>,
    names: BTreeMap<u16, String>,
    own_certificate: Option<std::path::PathBuf>,
}

impl ThresholdPeerService {
    /// Serves `backend`'s participant side.
    pub fn new(backend: Arc<ThresholdBackend>) -> ThresholdPeerService {
        let names = backend
            .config
            .peers
            .iter()
            .filter_map(|p| p.name.clone().map(|n| (p.id, n)))
            .collect();
        ThresholdPeerService {
            backend,
            names,
            own_certificate: None,
        }
    }

    /// Lets a client presenting this signer's own certificate (the leaf in
    /// `cert_file`, read at each call so rotations apply) ask for
    /// `RefreshShares` and `RepairShare`; nobody may without it.
    pub fn with_own_certificate(mut self, cert_file: &Path) -> ThresholdPeerService {
        self.own_certificate = Some(cert_file.to_owned());
        self
    }

    /// The caller must present this signer's own certificate.
    fn check_self<T>(&self, request: &Request<T>) -> Result<(), Status> {
        let denied = || Status::permission_denied("only this signer's own certificate may ask for that");
        let file = self.own_certificate.as_deref().ok_or_else(denied)?;
        let own = crate::tls::load_certs(file).map_err(|e| Status::internal(e.to_string()))?;
        let presented = request.peer_certs().ok_or_else(denied)?;
        match (presented.first(), own.first()) {
            (Some(p), Some(o)) if p.as_ref() == o.as_ref() => Ok(()),
            _ => Err(denied()),
        }
    }

    /// When peer names are configured: the caller must carry the name of
    /// the peer it claims to be (`claimed`).
    fn check<T>(&self, request: &Request<T>, claimed: u32) -> Result<(), Status> {
        if self.names.is_empty() {
            return Ok(());
        }
        match u16::try_from(claimed).ok().and_then(|c| self.names.get(&c)) {
            Some(name) => AllowedNames(vec![name.clone()]).check_request(request),
            None => Err(Status::permission_denied(format!(
                "signer {claimed} has no configured certificate name"
            ))),
        }
    }
    /// The caller must carry the configured name of the signer it claims
    /// to be: share repair hands out values that rebuild a share, so it is
    /// never open to a certificate that merely chains to the CA.
    fn check_named<T>(&self, request: &Request<T>, claimed: u32) -> Result<(), Status> {
        match u16::try_from(claimed).ok().and_then(|c| self.names.get(&c)) {
            Some(name) => AllowedNames(vec![name.clone()]).check_request(request),
            None => Err(Status::permission_denied(format!(
                "share repair needs the certificate name of signer {claimed} in this signer's peers (\"name\")"
            ))),
        }
    }
}

#[tonic::async_trait]
impl ThresholdPeer for ThresholdPeerService {
    async fn dkg_round1(&self, request: Request<DkgRound1Request>) -> Result<Response<DkgRound1Response>, Status> {
        self.check(&request, request.get_ref().coordinator)?;
        self.backend.dkg_round1(request.into_inner()).await.map(Response::new)
    }

    async fn dkg_round2(&self, request: Request<DkgRound2Request>) -> Result<Response<DkgRound2Response>, Status> {
        self.check(&request, request.get_ref().coordinator)?;
        self.backend.dkg_round2(request.into_inner()).await.map(Response::new)
    }

    async fn dkg_deliver(&self, request: Request<DkgDeliverRequest>) -> Result<Response<DkgDeliverResponse>, Status> {
        self.check(&request, request.get_ref().from)?;
        self.backend.dkg_deliver(request.into_inner()).await.map(Response::new)
    }

    async fn dkg_finish(&self, request: Request<DkgFinishRequest>) -> Result<Response<DkgFinishResponse>, Status> {
        self.check(&request, request.get_ref().coordinator)?;
        self.backend.dkg_finish(request.into_inner()).await.map(Response::new)
    }

    async fn dkg_commit(&self, request: Request<DkgCommitRequest>) -> Result<Response<DkgCommitResponse>, Status> {
        self.check(&request, request.get_ref().coordinator)?;
        self.backend.dkg_commit(request.into_inner()).await.map(Response::new)
    }

    async fn refresh_shares(
        &self,
        request: Request<RefreshSharesRequest>,
    ) -> Result<Response<RefreshSharesResponse>, Status> {
        self.check_self(&request)?;
        let key_id = request.into_inner().key_id;
        self.backend
            .refresh_shares(&key_id)
            .await
            .map(|group_public_key| Response::new(RefreshSharesResponse { group_public_key }))
            .map_err(ThresholdError::into_status)
    }

    async fn repair_round1(
        &self,
        request: Request<RepairRound1Request>,
    ) -> Result<Response<RepairRound1Response>, Status> {
        self.check_named(&request, request.get_ref().coordinator)?;
        self.backend
            .repair_round1(request.into_inner())
            .await
            .map(Response::new)
    }

    async fn repair_round2(
        &self,
        request: Request<RepairRound2Request>,
    ) -> Result<Response<RepairRound2Response>, Status> {
        self.check_named(&request, request.get_ref().coordinator)?;
        self.backend
            .repair_round2(request.into_inner())
            .await
            .map(Response::new)
    }

    async fn repair_deliver(
        &self,
        request: Request<RepairDeliverRequest>,
    ) -> Result<Response<RepairDeliverResponse>, Status> {
        self.check_named(&request, request.get_ref().from)?;
        self.backend
            .repair_deliver(request.into_inner())
            .await
            .map(Response::new)
    }

    async fn repair_finish(
        &self,
        request: Request<RepairFinishRequest>,
    ) -> Result<Response<RepairFinishResponse>, Status> {
        self.check_named(&request, request.get_ref().coordinator)?;
        self.backend
            .repair_finish(request.into_inner())
            .await
            .map(Response::new)
    }

    async fn repair_share(
        &self,
        request: Request<RepairShareRequest>,
    ) -> Result<Response<RepairShareResponse>, Status> {
        self.check_self(&request)?;
        let key_id = request.into_inner().key_id;
        self.backend
            .repair_share(&key_id)
            .await
            .map(|group_public_key| Response::new(RepairShareResponse { group_public_key }))
            .map_err(ThresholdError::into_status)
    }

    async fn sign_commit(&self, request: Request<SignCommitRequest>) -> Result<Response<SignCommitResponse>, Status> {
        self.check(&request, request.get_ref().coordinator)?;
        self.backend.sign_commit(request.into_inner()).await.map(Response::new)
    }

    async fn sign_share(&self, request: Request<SignShareRequest>) -> Result<Response<SignShareResponse>, Status> {
        self.check(&request, request.get_ref().coordinator)?;
        self.backend.sign_share(request.into_inner()).await.map(Response::new)
    }

    /// Open to every client the server's mutual TLS admits (peers, nodes,
    /// `seal-signer status` with this signer's own certificate): it tells
    /// only identifiers, k, n and key IDs, which root.json lists anyway.
    async fn status(&self, _request: Request<StatusRequest>) -> Result<Response<StatusResponse>, Status> {
        self.backend.status().map(Response::new)
    }

    async fn announce_mark(
        &self,
        request: Request<AnnounceMarkRequest>,
    ) -> Result<Response<AnnounceMarkResponse>, Status> {
        let from = request.get_ref().from;
        self.check_named(&request, from)?;
        let mark = request
            .into_inner()
            .mark
            .ok_or_else(|| Status::invalid_argument("an announcement carries a mark"))?;
        let backend = self.backend.clone();
        let from = u16::try_from(from).unwrap_or(0);
        let raised = blocking(move || backend.merge_mark(from, &mark)).await?;
        Ok(Response::new(AnnounceMarkResponse { raised }))
    }

    async fn marks(&self, request: Request<MarksRequest>) -> Result<Response<MarksResponse>, Status> {
        self.check_named(&request, request.get_ref().from)?;
        let backend = self.backend.clone();
        let marks = blocking(move || backend.marks()).await?;
        Ok(Response::new(MarksResponse { marks }))
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::sync::Weak;

    use seal_tuf::metadata::SNAPSHOT;
    use seal_tuf::{FileMeta, Timestamp};

    /// Direct calls between in-process backends, with switches for dead
    /// signers and a signer whose shares are corrupted on the way.
    #[derive(Default)]
    struct Local {
        nodes: Mutex<BTreeMap<u16, Weak<ThresholdBackend>>>,
        down: Mutex<BTreeSet<u16>>,
        corrupt: Mutex<BTreeSet<u16>>,
    }

    impl Local {
        fn node(&self, to: u16) -> Result<Arc<ThresholdBackend>, Status> {
            if lock(&self.down).contains(&to) {
                return Err(Status::unavailable(format!("signer {to} is down")));
            }
            lock(&self.nodes)
                .get(&to)
                .and_then(Weak::upgrade)
                .ok_or_else(|| Status::unavailable(format!("signer {to} unknown")))
        }
    }

    #[tonic::async_trait]
    impl PeerTransport for Local {
        async fn dkg_round1(&self, to: u16, req: DkgRound1Request) -> Result<DkgRound1Response, Status> {
            self.node(to)?.dkg_round1(req).await
        }
        async fn dkg_round2(&self, to: u16, req: DkgRound2Request) -> Result<DkgRound2Response, Status> {
            self.node(to)?.dkg_round2(req).await
        }
        async fn dkg_deliver(&self, to: u16, req: DkgDeliverRequest) -> Result<DkgDeliverResponse, Status> {
            self.node(to)?.dkg_deliver(req).await
        }
        async fn dkg_finish(&self, to: u16, req: DkgFinishRequest) -> Result<DkgFinishResponse, Status> {
            self.node(to)?.dkg_finish(req).await
        }
        async fn dkg_commit(&self, to: u16, req: DkgCommitRequest) -> Result<DkgCommitResponse, Status> {
            self.node(to)?.dkg_commit(req).await
        }
        async fn sign_commit(&self, to: u16, req: SignCommitRequest) -> Result<SignCommitResponse, Status> {
            self.node(to)?.sign_commit(req).await
        }
        async fn sign_share(&self, to: u16, req: SignShareRequest) -> Result<SignShareResponse, Status> {
            let mut r = self.node(to)?.sign_share(req).await?;
            if lock(&self.corrupt).contains(&to) {
                r.share[0] ^= 1;
            }
            Ok(r)
        }
        async fn repair_round1(&self, to: u16, req: RepairRound1Request) -> Result<RepairRound1Response, Status> {
            self.node(to)?.repair_round1(req).await
        }
        async fn repair_round2(&self, to: u16, req: RepairRound2Request) -> Result<RepairRound2Response, Status> {
            self.node(to)?.repair_round2(req).await
        }
        async fn repair_deliver(&self, to: u16, req: RepairDeliverRequest) -> Result<RepairDeliverResponse, Status> {
            self.node(to)?.repair_deliver(req).await
        }
        async fn repair_finish(&self, to: u16, req: RepairFinishRequest) -> Result<RepairFinishResponse, Status> {
            let mut r = self.node(to)?.repair_finish(req).await?;
            if lock(&self.corrupt).contains(&to) {
                r.sigma[0] ^= 1;
            }
            Ok(r)
        }
        async fn announce_mark(&self, to: u16, req: AnnounceMarkRequest) -> Result<AnnounceMarkResponse, Status> {
            let from = u16::try_from(req.from).unwrap_or(0);
            let mark = req.mark.unwrap_or_default();
            let raised = self.node(to)?.merge_mark(from, &mark)?;
            Ok(AnnounceMarkResponse { raised })
        }
        async fn marks(&self, to: u16, _req: MarksRequest) -> Result<MarksResponse, Status> {
            Ok(MarksResponse {
                marks: self.node(to)?.marks()?,
            })
        }
    }

    struct Cluster {
        _dirs: Vec<tempfile::TempDir>,
        nodes: BTreeMap<u16, Arc<ThresholdBackend>>,
        stores: BTreeMap<u16, Arc<Store>>,
        net: Arc<Local>,
    }

    fn cluster(k: u16, n: u16) -> Cluster {
        cluster_with(k, n, MAX_NONCE_SESSIONS)
    }

    /// Like [`cluster`], each participant holding nonces of at most
    /// `max_nonce_sessions` sessions.
    fn cluster_with(k: u16, n: u16, max_nonce_sessions: usize) -> Cluster {
        let net = Arc::new(Local::default());
        let (mut dirs, mut nodes, mut stores) = (Vec::new(), BTreeMap::new(), BTreeMap::new());
        for id in 1..=n {
            let dir = tempfile::tempdir().unwrap();
            let store = Arc::new(Store::open(dir.path()).unwrap());
            let passphrases = Passphrases::new(
                "main",
                BTreeMap::from([("main".to_owned(), Zeroizing::new(format!("passphrase {id}")))]),
            )
            .unwrap();
            let config = ThresholdConfig {
                min_signers: k,
                self_id: id,
                peers: (1..=n)
                    .filter(|p| *p != id)
                    .map(|p| Peer {
                        id: p,
                        addr: format!("localhost:{p}"),
                        name: None,
                    })
                    .collect(),
                peer_timeout: Duration::from_secs(2),
                dkg_timeout: Duration::from_secs(10),
            };
            // The messages here are bare timestamps: the binding to the
            // snapshot they name is the policy's own tests' subject.
            let policy = PolicyConfig {
                notary_compat: true,
                ..PolicyConfig::default()
            };
            let mut b = ThresholdBackend::new(config, store.clone(), passphrases, 1000, policy).unwrap();
            b.max_nonce_sessions = max_nonce_sessions;
            let b = Arc::new(b);
            b.set_transport(net.clone());
            lock(&net.nodes).insert(id, Arc::downgrade(&b));
            dirs.push(dir);
            nodes.insert(id, b);
            stores.insert(id, store);
        }
        Cluster {
            _dirs: dirs,
            nodes,
            stores,
            net,
        }
    }

    fn timestamp(version: u64) -> Vec<u8> {
        let mut meta = BTreeMap::new();
        meta.insert(
            SNAPSHOT.to_owned(),
            FileMeta::for_bytes(format!("s{version}").as_bytes()),
        );
        Timestamp {
            version,
            expires: time::OffsetDateTime::now_utc() + time::Duration::days(7),
            meta,
        }
        .to_value()
        .to_canonical()
    }

    fn verify(public: &[u8], msg: &[u8], sig: &[u8]) {
        let key = ed25519_dalek::VerifyingKey::from_bytes(public.try_into().unwrap()).unwrap();
        key.verify_strict(msg, &ed25519_dalek::Signature::from_slice(sig).unwrap())
            .unwrap();
        seal_tuf::PublicKey::new(seal_tuf::KeyType::Ed25519, public.to_vec())
            .unwrap()
            .verify("eddsa", msg, sig)
            .unwrap();
    }

    async fn make_key(c: &Cluster, via: u16) -> KeyRecord {
        let (key_id, public) = c.nodes[&via]
            .create_key(Algorithm::Ed25519, "example.com/app", "timestamp")
            .await
            .unwrap();
        assert_eq!(public.len(), 32);
        c.stores[&via].key(&key_id).unwrap().unwrap()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn dkg_gives_every_signer_a_share_of_one_key_and_k_of_n_sign() {
        let c = cluster(2, 3);
        let record = make_key(&c, 1).await;
        let mut signing_shares = Vec::new();
        for (id, store) in &c.stores {
            let r = store.key(&record.key_id).unwrap().expect("every signer holds the key");
            assert_eq!(
                (r.public.as_slice(), r.backend.as_str()),
                (record.public.as_slice(), BACKEND_NAME)
            );
            let handle = ThresholdHandle::decode(&r.handle).unwrap();
            assert_eq!(handle.share_jwe.split('.').count(), 5, "share stored as JWE compact");
            assert_eq!((handle.self_id, handle.min_signers), (*id, 2));
            let plain = decrypt_secret(format!("passphrase {id}").as_bytes(), &handle.share_jwe).unwrap();
            let kp = KeyPackage::deserialize(&plain).unwrap();
            signing_shares.push(kp.signing_share().serialize());
            assert_eq!(kp.verifying_key().serialize().unwrap(), record.public);
        }
        // Three different shares; none is the group secret (its public key would match).
        signing_shares.sort();
        signing_shares.dedup();
        assert_eq!(signing_shares.len(), 3);

        // Any signer coordinates; the result is an ordinary Ed25519 signature.
        for (via, version) in [(2u16, 1u64), (1, 2), (3, 3)] {
            let msg = timestamp(version);
            let sig = c.nodes[&via].sign(&record, &Claimed::default(), &msg).await.unwrap();
            assert_eq!(sig.len(), 64);
            verify(&record.public, &msg, &sig);
        }
        // One signer down: still signs.
        lock(&c.net.down).insert(3);
        let msg = timestamp(4);
        verify(
            &record.public,
            &msg,
            &c.nodes[&1].sign(&record, &Claimed::default(), &msg).await.unwrap(),
        );
        // The policy of every participant refuses a lower version.
        let e = c.nodes[&1]
            .sign(&record, &Claimed::default(), &timestamp(2))
            .await
            .unwrap_err();
        assert!(
            matches!(
                e,
                ThresholdError::Refused {
                    high_water: Some(4),
                    ..
                }
            ),
            "{e:?}"
        );
        // Two down: fails cleanly.
        lock(&c.net.down).insert(2);
        let e = c.nodes[&1]
            .sign(&record, &Claimed::default(), &timestamp(5))
            .await
            .unwrap_err();
        assert!(
            matches!(
                e,
                ThresholdError::Unavailable {
                    needed: 2,
                    reachable: 1,
                    ..
                }
            ),
            "{e:?}"
        );
        assert_eq!(e.into_status().code(), tonic::Code::Unavailable);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_invalid_share_is_identified_and_left_out() {
        let c = cluster(2, 3);
        let record = make_key(&c, 3).await;
        lock(&c.net.corrupt).insert(3);
        // With 2 and 3 reachable the coordinator ends up without the cheater.
        for version in 1..=4 {
            let msg = timestamp(version);
            verify(
                &record.public,
                &msg,
                &c.nodes[&1].sign(&record, &Claimed::default(), &msg).await.unwrap(),
            );
        }
        // With only the cheater left, signing fails, naming it.
        lock(&c.net.down).insert(2);
        let e = c.nodes[&1]
            .sign(&record, &Claimed::default(), &timestamp(9))
            .await
            .unwrap_err();
        assert!(e.to_string().contains('3'), "{e}");
    }

    /// Signer `id`'s stored key package and public key package of `key_id`.
    fn stored(c: &Cluster, id: u16, key_id: &str) -> (KeyPackage, PublicKeyPackage) {
        let record = c.stores[&id].key(key_id).unwrap().unwrap();
        let handle = ThresholdHandle::decode(&record.handle).unwrap();
        let plain = decrypt_secret(format!("passphrase {id}").as_bytes(), &handle.share_jwe).unwrap();
        (
            KeyPackage::deserialize(&plain).unwrap(),
            handle.public_package().unwrap(),
        )
    }

    /// Whether two participants holding `a` and `b` make a signature that
    /// verifies under `public`'s group key.
    pub(crate) fn sign_together(a: &KeyPackage, b: &KeyPackage, public: &PublicKeyPackage) -> bool {
        let msg = b"message";
        let (na, ca) = frost::round1::commit(a.signing_share(), &mut rand::rngs::OsRng);
        let (nb, cb) = frost::round1::commit(b.signing_share(), &mut rand::rngs::OsRng);
        let package = frost::SigningPackage::new(BTreeMap::from([(*a.identifier(), ca), (*b.identifier(), cb)]), msg);
        let shares = BTreeMap::from([
            (*a.identifier(), frost::round2::sign(&package, &na, a).unwrap()),
            (*b.identifier(), frost::round2::sign(&package, &nb, b).unwrap()),
        ]);
        match frost::aggregate_custom(&package, &shares, public, frost::CheaterDetection::Disabled) {
            Ok(sig) => {
                let key = public.verifying_key().serialize().unwrap();
                let key = ed25519_dalek::VerifyingKey::from_bytes(key.as_slice().try_into().unwrap()).unwrap();
                let sig = ed25519_dalek::Signature::from_slice(&sig.serialize().unwrap()).unwrap();
                key.verify_strict(msg, &sig).is_ok()
            }
            Err(_) => false,
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn refreshed_shares_keep_the_group_key_and_do_not_mix_with_old_ones() {
        let c = cluster(2, 3);
        let record = make_key(&c, 1).await;
        let old: BTreeMap<u16, _> = (1..=3).map(|id| (id, stored(&c, id, &record.key_id))).collect();

        assert_eq!(c.nodes[&2].refresh_shares(&record.key_id).await.unwrap(), record.public);
        let new: BTreeMap<u16, _> = (1..=3).map(|id| (id, stored(&c, id, &record.key_id))).collect();
        for id in 1..=3 {
            assert_ne!(new[&id].0.signing_share(), old[&id].0.signing_share(), "signer {id}");
            assert_ne!(
                new[&id].0.verifying_share(),
                old[&id].0.verifying_share(),
                "signer {id}"
            );
            assert_eq!(new[&id].0.verifying_key(), old[&id].0.verifying_key(), "signer {id}");
            assert_eq!(new[&id].1, new[&1].1, "one new public key package");
            let r = c.stores[&id].key(&record.key_id).unwrap().unwrap();
            assert_eq!(
                (r.public.as_slice(), r.gun.as_str()),
                (record.public.as_slice(), record.gun.as_str())
            );
        }

        // Any two signers sign with the new shares, through the service as well.
        for (via, version) in [(1u16, 1u64), (2, 2), (3, 3)] {
            let msg = timestamp(version);
            let r = c.stores[&via].key(&record.key_id).unwrap().unwrap();
            verify(
                &record.public,
                &msg,
                &c.nodes[&via].sign(&r, &Claimed::default(), &msg).await.unwrap(),
            );
        }
        assert!(sign_together(&new[&1].0, &new[&3].0, &new[&1].1));
        assert!(sign_together(&old[&1].0, &old[&3].0, &old[&1].1));
        // An old share and a new one do not make a signature, whichever
        // public key package aggregates them.
        for (a, b) in [(1u16, 2u16), (2, 1), (1, 3), (3, 2)] {
            for public in [&old[&1].1, &new[&1].1] {
                assert!(!sign_together(&old[&a].0, &new[&b].0, public), "old {a} with new {b}");
            }
        }

        // A refresh needs every signer; when one is down, nothing changes.
        lock(&c.net.down).insert(3);
        let e = c.nodes[&1].refresh_shares(&record.key_id).await.unwrap_err();
        assert!(matches!(e, ThresholdError::Unavailable { needed: 3, .. }), "{e:?}");
        for id in 1..=3 {
            assert_eq!(
                stored(&c, id, &record.key_id).0.signing_share(),
                new[&id].0.signing_share()
            );
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_lost_share_is_repaired_by_k_helpers_and_signs_again() {
        let c = cluster(2, 3);
        let record = make_key(&c, 1).await;
        let (old, public) = stored(&c, 3, &record.key_id);
        // Signer 3 loses its share.
        c.stores[&3].delete_key(&record.key_id).unwrap();
        c.nodes[&3].forget(&record.key_id);

        // One helper is not enough: nothing is stored.
        lock(&c.net.down).insert(2);
        let e = c.nodes[&3].repair_share(&record.key_id).await.unwrap_err();
        assert!(
            matches!(
                e,
                ThresholdError::Unavailable {
                    needed: 2,
                    reachable: 1,
                    ..
                }
            ),
            "{e:?}"
        );
        assert!(c.stores[&3].key(&record.key_id).unwrap().is_none());
        // A helper sending a wrong value is caught before anything is stored.
        lock(&c.net.down).clear();
        lock(&c.net.corrupt).insert(2);
        let e = c.nodes[&3].repair_share(&record.key_id).await.unwrap_err();
        assert!(matches!(e, ThresholdError::Protocol(_)), "{e:?}");
        assert!(c.stores[&3].key(&record.key_id).unwrap().is_none());

        lock(&c.net.corrupt).clear();
        assert_eq!(c.nodes[&3].repair_share(&record.key_id).await.unwrap(), record.public);
        let (repaired, repaired_public) = stored(&c, 3, &record.key_id);
        assert_eq!(repaired, old, "the same share as before");
        assert_eq!(repaired_public, public);
        let r = c.stores[&3].key(&record.key_id).unwrap().unwrap();
        assert_eq!((r.gun.as_str(), r.role.as_str()), ("example.com/app", "timestamp"));
        // Holding it now, signer 3 refuses another repair.
        let e = c.nodes[&3].repair_share(&record.key_id).await.unwrap_err();
        assert_eq!(e, ThresholdError::AlreadyHeld(record.key_id.clone()));

        // Signers 2 and 3 sign together.
        lock(&c.net.down).insert(1);
        let msg = timestamp(1);
        verify(
            &record.public,
            &msg,
            &c.nodes[&3].sign(&r, &Claimed::default(), &msg).await.unwrap(),
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_full_nonce_table_drops_the_oldest_session() {
        let c = cluster_with(2, 3, 3);
        let record = make_key(&c, 1).await;
        let standby = &c.nodes[&3];
        for session in ["s1", "s2", "s3", "s4"] {
            standby
                .sign_commit(SignCommitRequest {
                    session_id: session.into(),
                    coordinator: 1,
                    key_id: record.key_id.clone(),
                })
                .await
                .unwrap();
        }
        let held: BTreeSet<String> = lock(&standby.nonces).keys().cloned().collect();
        assert_eq!(held, BTreeSet::from(["s2".into(), "s3".into(), "s4".into()]));
        // The standby still takes part in new sessions.
        lock(&c.net.down).insert(2);
        let msg = timestamp(1);
        verify(
            &record.public,
            &msg,
            &c.nodes[&1].sign(&record, &Claimed::default(), &msg).await.unwrap(),
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn nonces_are_used_once_and_packages_are_checked() {
        let c = cluster(2, 3);
        let record = make_key(&c, 2).await;
        let (a, b) = (&c.nodes[&1], &c.nodes[&2]);
        let commit = |s: &str| SignCommitRequest {
            session_id: s.into(),
            coordinator: 1,
            key_id: record.key_id.clone(),
        };
        let ca = a.sign_commit(commit("s1")).await.unwrap();
        let cb = b.sign_commit(commit("s1")).await.unwrap();
        let commitments = BTreeMap::from([
            (identifier(1).unwrap(), decode_commitments(&ca.commitments).unwrap()),
            (identifier(2).unwrap(), decode_commitments(&cb.commitments).unwrap()),
        ]);
        let msg = timestamp(1);
        let package = frost::SigningPackage::new(commitments, &msg).serialize().unwrap();
        let share = |session: &str, package: Vec<u8>| SignShareRequest {
            session_id: session.into(),
            coordinator: 1,
            key_id: record.key_id.clone(),
            signing_package: package,
            claimed_gun: String::new(),
            claimed_role: String::new(),
            named: Default::default(),
        };
        b.sign_share(share("s1", package.clone())).await.unwrap();
        // The same session again: its nonces are gone.
        let e = b.sign_share(share("s1", package.clone())).await.unwrap_err();
        assert_eq!(e.code(), tonic::Code::Aborted);
        // A package without our commitments is refused (and consumes the session).
        b.sign_commit(commit("s2")).await.unwrap();
        let e = b.sign_share(share("s2", package)).await.unwrap_err();
        assert_eq!(e.code(), tonic::Code::InvalidArgument);
        // A policy refusal: not metadata.
        let cb = b.sign_commit(commit("s3")).await.unwrap();
        let commitments = BTreeMap::from([
            (identifier(1).unwrap(), decode_commitments(&ca.commitments).unwrap()),
            (identifier(2).unwrap(), decode_commitments(&cb.commitments).unwrap()),
        ]);
        let package = frost::SigningPackage::new(commitments, b"anything")
            .serialize()
            .unwrap();
        let e = b.sign_share(share("s3", package)).await.unwrap_err();
        assert_eq!(e.code(), tonic::Code::FailedPrecondition);
        // ECDSA is refused with a clear error.
        let e = a.create_key(Algorithm::Ecdsa, "g", "timestamp").await.unwrap_err();
        assert_eq!(e, ThresholdError::Unsupported("ecdsa"));
        assert_eq!(e.into_status().code(), tonic::Code::Unknown);
    }
}
