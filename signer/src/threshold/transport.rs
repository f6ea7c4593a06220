//! How a coordinator or participant reaches another signer: the transport
//! trait and its production implementation over mutual TLS.

use super::*;

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
