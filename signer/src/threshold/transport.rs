//! How a coordinator or participant reaches another signer: the transport
//! trait and its production implementation over mutual TLS, the edge where
//! a peer's `tonic::Status` becomes a [`ThresholdError`].

use std::path::Path;

use seal_proto::threshold::threshold_peer_client::ThresholdPeerClient;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};
use tonic::{Code, Response, Status};

use super::*;
use crate::wire::high_water_of;

/// How a coordinator or participant reaches another signer. Errors are the
/// callee's, as [`ThresholdError`]s: a policy refusal as
/// [`ThresholdError::Refused`], a peer that did not answer as
/// [`ThresholdError::Unreachable`].
#[tonic::async_trait]
pub trait PeerTransport: Send + Sync {
    /// `DkgRound1` on `to`.
    async fn dkg_round1(&self, to: u16, req: DkgRound1Request) -> Result<DkgRound1Response, ThresholdError>;
    /// `DkgRound2` on `to`.
    async fn dkg_round2(&self, to: u16, req: DkgRound2Request) -> Result<DkgRound2Response, ThresholdError>;
    /// `DkgDeliver` on `to`.
    async fn dkg_deliver(&self, to: u16, req: DkgDeliverRequest) -> Result<DkgDeliverResponse, ThresholdError>;
    /// `DkgFinish` on `to`.
    async fn dkg_finish(&self, to: u16, req: DkgFinishRequest) -> Result<DkgFinishResponse, ThresholdError>;
    /// `DkgCommit` on `to`.
    async fn dkg_commit(&self, to: u16, req: DkgCommitRequest) -> Result<DkgCommitResponse, ThresholdError>;
    /// `SignCommit` on `to`.
    async fn sign_commit(&self, to: u16, req: SignCommitRequest) -> Result<SignCommitResponse, ThresholdError>;
    /// `SignShare` on `to`.
    async fn sign_share(&self, to: u16, req: SignShareRequest) -> Result<SignShareResponse, ThresholdError>;
    /// `RepairRound1` on `to`.
    async fn repair_round1(&self, to: u16, req: RepairRound1Request) -> Result<RepairRound1Response, ThresholdError>;
    /// `RepairRound2` on `to`.
    async fn repair_round2(&self, to: u16, req: RepairRound2Request) -> Result<RepairRound2Response, ThresholdError>;
    /// `RepairDeliver` on `to`.
    async fn repair_deliver(&self, to: u16, req: RepairDeliverRequest)
        -> Result<RepairDeliverResponse, ThresholdError>;
    /// `RepairFinish` on `to`.
    async fn repair_finish(&self, to: u16, req: RepairFinishRequest) -> Result<RepairFinishResponse, ThresholdError>;
    /// `AnnounceMark` on `to`.
    async fn announce_mark(&self, to: u16, req: AnnounceMarkRequest) -> Result<AnnounceMarkResponse, ThresholdError>;
    /// `Marks` on `to`.
    async fn marks(&self, to: u16, req: MarksRequest) -> Result<MarksResponse, ThresholdError>;
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
    ) -> Result<GrpcPeers, crate::Error> {
        crate::install_crypto_provider();
        let read = |p: &Path| std::fs::read(p).map_err(crate::Error::io(p.display().to_string()));
        let ca = read(ca_file)?;
        let (cert, key) = (read(cert_file)?, read(key_file)?);
        let mut clients = BTreeMap::new();
        for peer in peers {
            let host = match peer.addr.rsplit_once(':') {
                Some((h, _)) => h.trim_start_matches('[').trim_end_matches(']'),
                None => {
                    return Err(crate::Error::Config(format!(
                        "peer {}: address {:?} is not host:port",
                        peer.id, peer.addr
                    )))
                }
            };
            let tls = ClientTlsConfig::new()
                .ca_certificate(Certificate::from_pem(ca.clone()))
                .identity(Identity::from_pem(cert.clone(), key.clone()))
                .domain_name(host.to_owned());
            let channel = Endpoint::from_shared(format!("https://{}", peer.addr))
                .and_then(|e| e.tls_config(tls))
                .map_err(|e| crate::Error::Config(format!("peer {} at {}: {e}", peer.id, peer.addr)))?
                .connect_timeout(connect_timeout)
                .tcp_nodelay(true)
                .connect_lazy();
            clients.insert(peer.id, ThresholdPeerClient::new(channel));
        }
        Ok(GrpcPeers { clients })
    }

    fn client(&self, to: u16) -> Result<ThresholdPeerClient<Channel>, ThresholdError> {
        self.clients
            .get(&to)
            .cloned()
            .ok_or_else(|| ThresholdError::Failed(format!("peer {to} is not configured")))
    }

    /// For the commands' calls (`refresh_shares`, `repair_share`,
    /// `status`), which report the status as the signer answered it.
    fn admin_client(&self, to: u16) -> Result<ThresholdPeerClient<Channel>, Status> {
        self.client(to).map_err(ThresholdError::into_status)
    }

    /// `RefreshShares` of `key_id` on `to`, answered within `timeout`;
    /// returns the group public key.
    pub async fn refresh_shares(&self, to: u16, key_id: &str, timeout: Duration) -> Result<Vec<u8>, Status> {
        admin_timeout(timeout, async {
            let req = RefreshSharesRequest {
                key_id: key_id.to_owned(),
            };
            Ok(self
                .admin_client(to)?
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
        admin_timeout(timeout, async {
            let req = RepairShareRequest {
                key_id: key_id.to_owned(),
            };
            Ok(self
                .admin_client(to)?
                .repair_share(req)
                .await?
                .into_inner()
                .group_public_key)
        })
        .await
    }

    /// `Status` on `to`, answered within `timeout`.
    pub async fn status(&self, to: u16, timeout: Duration) -> Result<StatusResponse, Status> {
        admin_timeout(timeout, async {
            Ok(self.admin_client(to)?.status(StatusRequest {}).await?.into_inner())
        })
        .await
    }
}

/// `fut` answered within `timeout`, for the commands' calls.
async fn admin_timeout<T>(
    timeout: Duration,
    fut: impl std::future::Future<Output = Result<T, Status>>,
) -> Result<T, Status> {
    match tokio::time::timeout(timeout, fut).await {
        Ok(r) => r,
        Err(_) => Err(Status::deadline_exceeded(format!("no answer within {timeout:?}"))),
    }
}

/// Peer `signer`'s answer: its `Status` as the [`ThresholdError`] it
/// stands for.
fn answer<T>(signer: u16, r: Result<Response<T>, Status>) -> Result<T, ThresholdError> {
    r.map(Response::into_inner).map_err(|s| from_peer_status(signer, &s))
}

/// What peer `signer` answered (or the transport said on its behalf), as
/// a [`ThresholdError`]. Every `FailedPrecondition` is a refusal (a
/// signature share refused by the peer's policy, with its high-water mark
/// when it tells it; a request out of order); `Unavailable`,
/// `DeadlineExceeded` and `Cancelled` are a peer that did not answer.
pub(crate) fn from_peer_status(signer: u16, s: &Status) -> ThresholdError {
    let message = s.message().to_owned();
    let unreachable = |why| ThresholdError::Unreachable {
        signer,
        why,
        message: message.clone(),
    };
    match s.code() {
        Code::FailedPrecondition => ThresholdError::Refused {
            signer,
            high_water: high_water_of(s),
            message,
        },
        Code::InvalidArgument => ThresholdError::InvalidArgument(message),
        Code::NotFound => ThresholdError::Missing(message),
        Code::Aborted => ThresholdError::SessionGone(message),
        Code::AlreadyExists => ThresholdError::AlreadyExists(message),
        Code::PermissionDenied => ThresholdError::PermissionDenied(message),
        Code::ResourceExhausted => ThresholdError::Busy(message),
        Code::Unavailable => unreachable(Unanswered::Unavailable),
        Code::DeadlineExceeded => unreachable(Unanswered::TimedOut),
        Code::Cancelled => unreachable(Unanswered::Cancelled),
        Code::Internal => ThresholdError::Failed(message),
        other => ThresholdError::Failed(format!("{other:?}: {message}")),
    }
}

#[tonic::async_trait]
impl PeerTransport for GrpcPeers {
    async fn dkg_round1(&self, to: u16, req: DkgRound1Request) -> Result<DkgRound1Response, ThresholdError> {
        answer(to, self.client(to)?.dkg_round1(req).await)
    }
    async fn dkg_round2(&self, to: u16, req: DkgRound2Request) -> Result<DkgRound2Response, ThresholdError> {
        answer(to, self.client(to)?.dkg_round2(req).await)
    }
    async fn dkg_deliver(&self, to: u16, req: DkgDeliverRequest) -> Result<DkgDeliverResponse, ThresholdError> {
        answer(to, self.client(to)?.dkg_deliver(req).await)
    }
    async fn dkg_finish(&self, to: u16, req: DkgFinishRequest) -> Result<DkgFinishResponse, ThresholdError> {
        answer(to, self.client(to)?.dkg_finish(req).await)
    }
    async fn dkg_commit(&self, to: u16, req: DkgCommitRequest) -> Result<DkgCommitResponse, ThresholdError> {
        answer(to, self.client(to)?.dkg_commit(req).await)
    }
    async fn sign_commit(&self, to: u16, req: SignCommitRequest) -> Result<SignCommitResponse, ThresholdError> {
        answer(to, self.client(to)?.sign_commit(req).await)
    }
    async fn sign_share(&self, to: u16, req: SignShareRequest) -> Result<SignShareResponse, ThresholdError> {
        answer(to, self.client(to)?.sign_share(req).await)
    }
    async fn repair_round1(&self, to: u16, req: RepairRound1Request) -> Result<RepairRound1Response, ThresholdError> {
        answer(to, self.client(to)?.repair_round1(req).await)
    }
    async fn repair_round2(&self, to: u16, req: RepairRound2Request) -> Result<RepairRound2Response, ThresholdError> {
        answer(to, self.client(to)?.repair_round2(req).await)
    }
    async fn repair_deliver(
        &self,
        to: u16,
        req: RepairDeliverRequest,
    ) -> Result<RepairDeliverResponse, ThresholdError> {
        answer(to, self.client(to)?.repair_deliver(req).await)
    }
    async fn repair_finish(&self, to: u16, req: RepairFinishRequest) -> Result<RepairFinishResponse, ThresholdError> {
        answer(to, self.client(to)?.repair_finish(req).await)
    }
    async fn announce_mark(&self, to: u16, req: AnnounceMarkRequest) -> Result<AnnounceMarkResponse, ThresholdError> {
        answer(to, self.client(to)?.announce_mark(req).await)
    }
    async fn marks(&self, to: u16, req: MarksRequest) -> Result<MarksResponse, ThresholdError> {
        answer(to, self.client(to)?.marks(req).await)
    }
}
