//! The `seal.threshold.v1.ThresholdPeer` gRPC service: the edge where a
//! peer's call is authenticated and the participant's errors become
//! `tonic::Status` ([`ThresholdError::into_status`], also used for the
//! signer's own clients).

use std::path::Path;

use seal_proto::threshold::threshold_peer_server::ThresholdPeer;
use tonic::{Request, Response, Status};

use super::*;
use crate::tls::AllowedNames;
use crate::wire::{backend_unavailable, refusal_status, HIGH_WATER_HEADER};

impl ThresholdError {
    /// As a gRPC status, for a peer that called this participant or for
    /// the signer's clients: a coordinator's [`ThresholdError::Unavailable`]
    /// carries `x-seal-unavailable: backend`, a refusal its high-water mark
    /// in `x-seal-high-water`; a participant's own errors keep their words.
    pub fn into_status(self) -> Status {
        let message = self.to_string();
        match self {
            ThresholdError::Unsupported(_) => Status::unknown(message),
            ThresholdError::Unavailable { .. } => backend_unavailable(message),
            ThresholdError::Refused { high_water, .. } => {
                // The participant's message already starts with "signing policy:".
                let mut s = Status::failed_precondition(message);
                if let Some(v) = high_water.and_then(|h| h.to_string().parse().ok()) {
                    s.metadata_mut().insert(HIGH_WATER_HEADER, v);
                }
                s
            }
            ThresholdError::Policy(refusal) => refusal_status(&refusal),
            ThresholdError::OutOfOrder(_) | ThresholdError::MarkTooHigh { .. } => Status::failed_precondition(message),
            ThresholdError::NotFound(_) | ThresholdError::Missing(_) => Status::not_found(message),
            ThresholdError::AlreadyHeld(_) | ThresholdError::AlreadyExists(_) => Status::already_exists(message),
            ThresholdError::Protocol(_) | ThresholdError::Internal(_) | ThresholdError::Failed(_) => {
                Status::internal(message)
            }
            ThresholdError::InvalidArgument(_) => Status::invalid_argument(message),
            ThresholdError::SessionGone(_) => Status::aborted(message),
            ThresholdError::PermissionDenied(_) => Status::permission_denied(message),
            ThresholdError::Busy(_) => Status::resource_exhausted(message),
            ThresholdError::Locked(_) | ThresholdError::DeliveryFailed { .. } => Status::unavailable(message),
            ThresholdError::Unreachable { why, .. } => match why {
                Unanswered::Unavailable => Status::unavailable(message),
                Unanswered::TimedOut => Status::deadline_exceeded(message),
                Unanswered::Cancelled => Status::cancelled(message),
            },
        }
    }
}

impl From<ThresholdError> for Status {
    fn from(e: ThresholdError) -> Status {
        e.into_status()
    }
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
        Ok(Response::new(self.backend.dkg_round1(request.into_inner()).await?))
    }

    async fn dkg_round2(&self, request: Request<DkgRound2Request>) -> Result<Response<DkgRound2Response>, Status> {
        self.check(&request, request.get_ref().coordinator)?;
        Ok(Response::new(self.backend.dkg_round2(request.into_inner()).await?))
    }

    async fn dkg_deliver(&self, request: Request<DkgDeliverRequest>) -> Result<Response<DkgDeliverResponse>, Status> {
        self.check(&request, request.get_ref().from)?;
        Ok(Response::new(self.backend.dkg_deliver(request.into_inner()).await?))
    }

    async fn dkg_finish(&self, request: Request<DkgFinishRequest>) -> Result<Response<DkgFinishResponse>, Status> {
        self.check(&request, request.get_ref().coordinator)?;
        Ok(Response::new(self.backend.dkg_finish(request.into_inner()).await?))
    }

    async fn dkg_commit(&self, request: Request<DkgCommitRequest>) -> Result<Response<DkgCommitResponse>, Status> {
        self.check(&request, request.get_ref().coordinator)?;
        Ok(Response::new(self.backend.dkg_commit(request.into_inner()).await?))
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
        Ok(Response::new(self.backend.repair_round1(request.into_inner()).await?))
    }

    async fn repair_round2(
        &self,
        request: Request<RepairRound2Request>,
    ) -> Result<Response<RepairRound2Response>, Status> {
        self.check_named(&request, request.get_ref().coordinator)?;
        Ok(Response::new(self.backend.repair_round2(request.into_inner()).await?))
    }

    async fn repair_deliver(
        &self,
        request: Request<RepairDeliverRequest>,
    ) -> Result<Response<RepairDeliverResponse>, Status> {
        self.check_named(&request, request.get_ref().from)?;
        Ok(Response::new(self.backend.repair_deliver(request.into_inner()).await?))
    }

    async fn repair_finish(
        &self,
        request: Request<RepairFinishRequest>,
    ) -> Result<Response<RepairFinishResponse>, Status> {
        self.check_named(&request, request.get_ref().coordinator)?;
        Ok(Response::new(self.backend.repair_finish(request.into_inner()).await?))
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
        Ok(Response::new(self.backend.sign_commit(request.into_inner()).await?))
    }

    async fn sign_share(&self, request: Request<SignShareRequest>) -> Result<Response<SignShareResponse>, Status> {
        self.check(&request, request.get_ref().coordinator)?;
        Ok(Response::new(self.backend.sign_share(request.into_inner()).await?))
    }

    /// Open to every client the server's mutual TLS admits (peers, nodes,
    /// `seal-signer status` with this signer's own certificate): it tells
    /// only identifiers, k, n and key IDs, which root.json lists anyway.
    async fn status(&self, _request: Request<StatusRequest>) -> Result<Response<StatusResponse>, Status> {
        Ok(Response::new(self.backend.status()?))
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
