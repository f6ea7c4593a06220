//! Cluster administration and write forwarding, served on the Raft port next to the transport.
//!
//! * [`AdminService`] implements `seal.raft.v1.ClusterAdmin` (`Init`, `AddLearner`, `Promote`,
//!   `Remove`, `Status`) over the local Raft. A membership change reaching a follower is forwarded
//!   to the leader it knows (one hop, marked with the `x-seal-forwarded` metadata so it never
//!   loops) and the leader's answer relayed. `Status` is forwarded to the leader as well, so that it
//!   carries each member's replication progress; without a reachable leader it is answered locally.
//!   A `Status` asking for the state digest is always answered by the node called: the digest
//!   ([`seal_storage::Store::state_digest`], computed on a blocking thread) is of its own state.
//! * [`AdminService`] also implements `seal.raft.v1.Forwarding`: a client's HTTP request sent by a
//!   follower to the leader. The leader hands it to the [`ForwardHandler`] the node registered (its
//!   own HTTP router) — or, when it is not the leader any more, refuses it with `not_leader` without
//!   running it, so the sender may safely try the new leader.
//! * [`AdminClient`] is the client side: used by `seal-node cluster …` and by nodes talking to
//!   their leader. It authenticates with the same cluster mutual TLS ([`ClusterTls`]).
//! * The Raft port (`server.rs`) serves the Raft transport and both services on one
//!   listener; membership changes go through the same operations (`membership.rs`) as
//!   [`crate::SealRaft`]'s own.
//!
//! Every caller presenting a certificate signed by the cluster CA (and, when
//! `RaftConfig::allowed_peer_names` is set, carrying one of those names) is trusted with these
//! services, exactly as with the Raft transport itself.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use openraft::{ChangeMembers, ErrorSubject, ServerState};
use seal_proto::peer::AllowedNames;
use seal_proto::raft::cluster_admin_client::ClusterAdminClient;
use seal_proto::raft::cluster_admin_server::{ClusterAdmin, ClusterAdminServer};
use seal_proto::raft::forwarding_client::ForwardingClient;
use seal_proto::raft::forwarding_server::{Forwarding, ForwardingServer};
use seal_proto::raft::{
    AddLearnerRequest, AdminReply, BackupReply, BackupRequest, HttpRequest, HttpResponse, InitRequest, Member,
    MemberStatus, NodeRequest, StatusReply, StatusRequest,
};
use seal_storage::Store;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};
use tonic::{Code, Request, Response, Status};

pub use seal_proto::raft::{
    AdminReply as AdminAnswer, DependencyStatus, HttpHeader, HttpRequest as ForwardedRequest,
    HttpResponse as ForwardedResponse, MemberStatus as MemberState, StatusReply as ClusterStatus,
};

/// What a node reports of the services it depends on (its signers) in its cluster status.
pub type StatusReporter = Arc<dyn Fn() -> Vec<seal_proto::raft::DependencyStatus> + Send + Sync>;

use crate::codec::decode;
use crate::error::MembershipError;
use crate::identity::{Check, ClusterIdentity};
use crate::membership::Membership;
use crate::tls::{peer_host, ClusterTls};
use crate::types::{LogId, Raft};

/// Metadata key marking an admin request a follower forwarded to its leader.
const FORWARDED: &str = "x-seal-forwarded";
/// How long establishing a connection to another node may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// Deadline of one forwarded request (it includes signing and committing on the leader).
const FORWARD_TIMEOUT: Duration = Duration::from_secs(30);

/// A boxed future, as [`ForwardHandler::handle`] returns it.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// What runs a forwarded HTTP request on the leader: the node's own HTTP router.
pub trait ForwardHandler: Send + Sync + 'static {
    /// Run `request` as if a client had sent it to this node, and return the response.
    fn handle(&self, request: HttpRequest) -> BoxFuture<'_, HttpResponse>;
}

/// Why a call to another node's admin or forwarding service failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AdminError {
    /// The cluster TLS files could not be read.
    #[error("cluster TLS {path}: {reason}")]
    Tls {
        /// The file.
        path: String,
        /// What went wrong.
        reason: String,
    },
    /// The address is not `host:port`.
    #[error("invalid node address {addr:?}: {reason}")]
    Address {
        /// The address given.
        addr: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The node answered with an error status, or could not be reached (`Unavailable`).
    #[error("{rpc} at {addr}: {code:?}: {message}")]
    Rpc {
        /// The RPC.
        rpc: &'static str,
        /// The node's address.
        addr: String,
        /// The gRPC status code.
        code: Code,
        /// The status message.
        message: String,
    },
}

impl AdminError {
    /// Whether the node could not be reached at all (the request did not get to run there).
    pub fn is_unreachable(&self) -> bool {
        matches!(
            self,
            AdminError::Rpc {
                code: Code::Unavailable,
                ..
            }
        )
    }
}

/// The PEM material of [`ClusterTls`], read for the admin server and clients.
#[derive(Clone)]
pub(crate) struct AdminTls {
    ca: Certificate,
    identity: Identity,
    /// Local address of outgoing connections (`RaftConfig::source_ip`).
    source_ip: Option<std::net::IpAddr>,
}

impl AdminTls {
    /// Read the three files of `tls`.
    pub(crate) fn read(tls: &ClusterTls) -> Result<AdminTls, AdminError> {
        let read = |p: &std::path::Path| {
            std::fs::read(p).map_err(|e| AdminError::Tls {
                path: p.display().to_string(),
                reason: e.to_string(),
            })
        };
        Ok(AdminTls {
            ca: Certificate::from_pem(read(&tls.ca_file)?),
            identity: Identity::from_pem(read(&tls.cert_file)?, read(&tls.key_file)?),
            source_ip: None,
        })
    }

    /// Outgoing connections made from `source_ip` (`None`: the operating system chooses).
    pub(crate) fn connecting_from(self, source_ip: Option<std::net::IpAddr>) -> AdminTls {
        AdminTls { source_ip, ..self }
    }

    /// A lazily connected channel to the node at `addr` (`host:port`).
    fn channel(&self, addr: &str) -> Result<Channel, AdminError> {
        let invalid = |reason: String| AdminError::Address {
            addr: addr.to_string(),
            reason,
        };
        let host = peer_host(addr).map_err(invalid)?;
        let tls = ClientTlsConfig::new()
            .ca_certificate(self.ca.clone())
            .identity(self.identity.clone())
            .domain_name(host);
        Ok(Endpoint::from_shared(format!("https://{addr}"))
            .map_err(|e| invalid(e.to_string()))?
            .tls_config(tls)
            .map_err(|e| invalid(e.to_string()))?
            .connect_timeout(CONNECT_TIMEOUT)
            .tcp_nodelay(true)
            .local_address(self.source_ip)
            .connect_lazy())
    }
}

/// A client of one node's `ClusterAdmin` and `Forwarding` services.
#[derive(Clone)]
pub struct AdminClient {
    addr: String,
    admin: ClusterAdminClient<Channel>,
    forwarding: ForwardingClient<Channel>,
    /// The calling node's cluster, carried by every call (an operator's client has none).
    identity: Option<ClusterIdentity>,
}

impl std::fmt::Debug for AdminClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdminClient").field("addr", &self.addr).finish()
    }
}

impl AdminClient {
    /// A client of the node whose Raft address is `addr`, authenticating with `tls` (a certificate
    /// signed by the cluster CA). Connects lazily: an unreachable node shows on the first call.
    pub fn new(addr: &str, tls: &ClusterTls) -> Result<AdminClient, AdminError> {
        Self::with_tls(addr, &AdminTls::read(tls)?, usize::MAX, None)
    }

    pub(crate) fn with_tls(
        addr: &str,
        tls: &AdminTls,
        max_message_bytes: usize,
        identity: Option<ClusterIdentity>,
    ) -> Result<AdminClient, AdminError> {
        let channel = tls.channel(addr)?;
        Ok(AdminClient {
            addr: addr.to_string(),
            admin: ClusterAdminClient::new(channel.clone()),
            forwarding: ForwardingClient::new(channel)
                .max_decoding_message_size(max_message_bytes)
                .max_encoding_message_size(max_message_bytes),
            identity,
        })
    }

    /// `message` as a request carrying this client's cluster id.
    fn request<T>(&self, message: T) -> Request<T> {
        let mut req = Request::new(message);
        if let Some(identity) = &self.identity {
            identity.stamp(&mut req);
        }
        req
    }

    /// `message` as a request carrying this client's cluster id and the forwarded mark.
    fn marked<T>(&self, message: T) -> Request<T> {
        let mut req = self.request(message);
        req.metadata_mut()
            .insert(FORWARDED, tonic::metadata::MetadataValue::from_static("1"));
        req
    }

    fn error(&self, rpc: &'static str, status: Status) -> AdminError {
        AdminError::Rpc {
            rpc,
            addr: self.addr.clone(),
            code: status.code(),
            message: status.message().to_string(),
        }
    }

    /// Form a new cluster of `members` (id -> Raft address) on this node.
    pub async fn init(&self, members: &BTreeMap<u64, String>) -> Result<AdminReply, AdminError> {
        let req = InitRequest {
            members: members
                .iter()
                .map(|(id, addr)| Member {
                    id: *id,
                    raft_addr: addr.clone(),
                })
                .collect(),
        };
        let mut c = self.admin.clone();
        c.init(self.request(req))
            .await
            .map(Response::into_inner)
            .map_err(|s| self.error("Init", s))
    }

    /// Add node `id` at `raft_addr` as a learner.
    pub async fn add_learner(&self, id: u64, raft_addr: &str) -> Result<AdminReply, AdminError> {
        let mut c = self.admin.clone();
        c.add_learner(self.request(AddLearnerRequest {
            id,
            raft_addr: raft_addr.to_string(),
        }))
        .await
        .map(Response::into_inner)
        .map_err(|s| self.error("AddLearner", s))
    }

    /// Make learner `id` a voter.
    pub async fn promote(&self, id: u64) -> Result<AdminReply, AdminError> {
        let mut c = self.admin.clone();
        c.promote(self.request(NodeRequest { id }))
            .await
            .map(Response::into_inner)
            .map_err(|s| self.error("Promote", s))
    }

    /// Remove node `id` from the cluster.
    pub async fn remove(&self, id: u64) -> Result<AdminReply, AdminError> {
        let mut c = self.admin.clone();
        c.remove(self.request(NodeRequest { id }))
            .await
            .map(Response::into_inner)
            .map_err(|s| self.error("Remove", s))
    }

    /// The cluster's status.
    pub async fn status(&self) -> Result<StatusReply, AdminError> {
        self.status_request(StatusRequest::default()).await
    }

    /// The status of this node itself (never forwarded to the leader) with the digest of its
    /// state machine: `state_digest` and `state_digest_applied_index` are set. Reads the node's
    /// whole state machine.
    pub async fn status_with_digest(&self) -> Result<StatusReply, AdminError> {
        self.status_request(StatusRequest { state_digest: true }).await
    }

    async fn status_request(&self, request: StatusRequest) -> Result<StatusReply, AdminError> {
        let mut c = self.admin.clone();
        c.status(self.request(request))
            .await
            .map(Response::into_inner)
            .map_err(|s| self.error("Status", s))
    }

    /// Have this node write a backup of its database to `dir` (an absolute path on its machine).
    pub async fn backup(&self, dir: &str) -> Result<crate::recovery::DataSummary, AdminError> {
        let mut c = self.admin.clone();
        let reply = c
            .backup(self.request(BackupRequest { dir: dir.to_string() }))
            .await
            .map(Response::into_inner)
            .map_err(|s| self.error("Backup", s))?;
        serde_json::from_str(&reply.summary_json).map_err(|e| AdminError::Rpc {
            rpc: "Backup",
            addr: self.addr.clone(),
            code: Code::Internal,
            message: format!("undecodable summary: {e}"),
        })
    }

    /// Send a client's HTTP request to this node (the leader) to run.
    pub async fn forward(&self, request: HttpRequest) -> Result<HttpResponse, AdminError> {
        let mut c = self.forwarding.clone();
        let mut req = self.request(request);
        req.set_timeout(FORWARD_TIMEOUT);
        c.forward(req)
            .await
            .map(Response::into_inner)
            .map_err(|s| self.error("Forward", s))
    }
}

/// The state shared by the admin and forwarding services of one node.
pub(crate) struct AdminShared {
    raft: Raft,
    /// The node's store, for state digests; taken away by [`AdminShared::release_store`] when the
    /// node shuts down, so that the database is not kept open by this service.
    store: Mutex<Option<Store>>,
    node_id: u64,
    tls: AdminTls,
    max_message_bytes: usize,
    /// Certificate names allowed to call (empty: any certificate of the cluster CA).
    allowed: AllowedNames,
    handler: OnceLock<Arc<dyn ForwardHandler>>,
    /// What the node says of its dependencies in its status.
    reporter: OnceLock<StatusReporter>,
    /// Clients of other nodes, by Raft address.
    clients: Mutex<HashMap<String, AdminClient>>,
    /// The cluster this node belongs to.
    identity: ClusterIdentity,
}

impl AdminShared {
    pub(crate) fn new(
        raft: Raft,
        store: Store,
        node_id: u64,
        tls: AdminTls,
        max_message_bytes: usize,
        allowed: AllowedNames,
        identity: ClusterIdentity,
    ) -> Arc<AdminShared> {
        Arc::new(AdminShared {
            raft,
            store: Mutex::new(Some(store)),
            node_id,
            tls,
            max_message_bytes,
            allowed,
            handler: OnceLock::new(),
            reporter: OnceLock::new(),
            clients: Mutex::new(HashMap::new()),
            identity,
        })
    }

    /// Drop this service's handle on the store (the node is shutting down); later digest requests
    /// are answered `UNAVAILABLE`.
    pub(crate) fn release_store(&self) {
        self.store.lock().unwrap_or_else(|p| p.into_inner()).take();
    }

    /// The digest of this node's state machine and the log index of the last entry it includes,
    /// computed on a blocking thread.
    async fn state_digest(&self) -> Result<(String, Option<u64>), Status> {
        let store = self
            .store
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
            .ok_or_else(|| Status::unavailable(format!("node {} is shutting down", self.node_id)))?;
        let digest = tokio::task::spawn_blocking(move || store.state_digest())
            .await
            .map_err(|e| Status::internal(format!("computing the state digest: {e}")))?
            .map_err(|e| Status::internal(format!("computing the state digest: {e}")))?;
        let applied_index = match &digest.last_applied {
            Some(bytes) => {
                let log_id: LogId = decode(bytes, ErrorSubject::StateMachine)
                    .map_err(|e| Status::internal(format!("decoding the last applied log id: {e}")))?;
                Some(log_id.index)
            }
            None => None,
        };
        Ok((digest.sha256, applied_index))
    }

    /// Register the handler of forwarded requests; `false` if one was already registered.
    pub(crate) fn set_handler(&self, handler: Arc<dyn ForwardHandler>) -> bool {
        self.handler.set(handler).is_ok()
    }

    pub(crate) fn set_reporter(&self, reporter: StatusReporter) -> bool {
        self.reporter.set(reporter).is_ok()
    }

    /// The (cached) client of the node at `addr`.
    pub(crate) fn client(&self, addr: &str) -> Result<AdminClient, AdminError> {
        let mut clients = self.clients.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(c) = clients.get(addr) {
            return Ok(c.clone());
        }
        let c = AdminClient::with_tls(addr, &self.tls, self.max_message_bytes, Some(self.identity.clone()))?;
        clients.insert(addr.to_string(), c.clone());
        Ok(c)
    }

    /// The leader this node knows of, with its Raft address.
    pub(crate) fn leader(&self) -> Option<(u64, Option<String>)> {
        let m = self.raft.metrics();
        let m = m.borrow();
        let id = m.current_leader?;
        let addr = m.membership_config.membership().get_node(&id).map(|n| n.addr.clone());
        Some((id, addr))
    }

    fn is_leader(&self) -> bool {
        self.raft.metrics().borrow().state == ServerState::Leader
    }

    /// The leader's client, for forwarding an admin request that reached this follower.
    fn leader_client(&self, request_forwarded: bool, leader_addr: Option<String>) -> Result<AdminClient, Status> {
        if request_forwarded {
            return Err(Status::unavailable(format!(
                "node {} is not the leader either (leadership is changing); retry",
                self.node_id
            )));
        }
        let addr = leader_addr.ok_or_else(|| Status::unavailable("no leader is known; retry after the election"))?;
        self.client(&addr).map_err(|e| Status::internal(e.to_string()))
    }

    fn reply(&self, log_index: u64) -> Response<AdminReply> {
        Response::new(AdminReply {
            log_index,
            answered_by: self.node_id,
        })
    }

    /// Run a membership change here, or forward it to the leader.
    async fn membership<F, Fut, R, RFut>(
        &self,
        forwarded: bool,
        change: F,
        forward: R,
    ) -> Result<Response<AdminReply>, Status>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<u64, MembershipError>>,
        R: FnOnce(AdminClient) -> RFut,
        RFut: Future<Output = Result<AdminReply, AdminError>>,
    {
        match change().await {
            Ok(index) => Ok(self.reply(index)),
            Err(MembershipError::ForwardToLeader { leader_addr, .. }) => {
                let client = self.leader_client(forwarded, leader_addr)?;
                forward(client).await.map(Response::new).map_err(relay)
            }
            Err(e) => Err(membership_status(&e)),
        }
    }

    /// Voters and learners of the current membership.
    fn members(&self) -> (BTreeSet<u64>, BTreeSet<u64>) {
        let m = self.raft.metrics();
        let m = m.borrow();
        let membership = m.membership_config.membership();
        (membership.voter_ids().collect(), membership.learner_ids().collect())
    }

    fn status_here(&self) -> StatusReply {
        let m = self.raft.metrics();
        let m = m.borrow();
        let membership = m.membership_config.membership();
        let voters: BTreeSet<u64> = membership.voter_ids().collect();
        let last = m.last_log_index;
        let members = membership
            .nodes()
            .map(|(id, node)| {
                let matched = match &m.replication {
                    Some(_) if *id == m.id => last,
                    Some(r) => r.get(id).and_then(|l| l.map(|l| l.index)),
                    None => None,
                };
                let lag = match (&m.replication, matched) {
                    (Some(_), Some(i)) => Some(last.unwrap_or(0).saturating_sub(i)),
                    (Some(_), None) => last,
                    (None, _) => None,
                };
                MemberStatus {
                    id: *id,
                    raft_addr: node.addr.clone(),
                    voter: voters.contains(id),
                    matched_index: matched,
                    lag,
                }
            })
            .collect();
        StatusReply {
            answered_by: m.id,
            leader_id: m.current_leader,
            term: m.current_term,
            last_log_index: last,
            applied_index: m.last_applied.map(|l| l.index),
            members,
            snapshot_index: m.snapshot.map(|l| l.index),
            purged_index: m.purged.map(|l| l.index),
            state_digest: None,
            state_digest_applied_index: None,
            dependencies: self.reporter.get().map(|r| r()).unwrap_or_default(),
            cluster_id: self.identity.get(),
            holds_data: self.holds_data(),
        }
    }

    /// Whether this node holds any Raft state (unknown, e.g. while shutting down: yes).
    fn holds_data(&self) -> bool {
        let store = self.store.lock().unwrap_or_else(|p| p.into_inner()).clone();
        store.is_none_or(|s| !s.is_pristine().unwrap_or(false))
    }

    /// Before adding node `id` at `addr` as a learner: ask it who it is, carrying this cluster's
    /// id, and refuse a node of another cluster, a node holding data of a cluster with no id, or
    /// another node than `id`. A node that cannot be reached now is added (it catches up once
    /// up, and its Raft RPCs are checked the same way).
    async fn check_joining(&self, id: u64, addr: &str) -> Result<(), MembershipError> {
        let cannot = |reason: String| MembershipError::CannotJoin {
            node_id: id,
            addr: addr.to_string(),
            reason,
        };
        let client = self.client(addr).map_err(|e| cannot(e.to_string()))?;
        let mut admin = client.admin.clone();
        let mut req = client.marked(StatusRequest::default());
        req.set_timeout(Duration::from_secs(3));
        let reply = match admin.status(req).await {
            Ok(r) => r.into_inner(),
            Err(s) if s.code() == Code::FailedPrecondition => return Err(cannot(s.message().to_string())),
            Err(s) => {
                tracing::warn!(node_id = id, %addr, error = %s, "adding a learner that cannot be asked who it is now");
                return Ok(());
            }
        };
        if reply.answered_by != id {
            return Err(cannot(format!("the node there is node {}", reply.answered_by)));
        }
        let mine = self.identity.get().unwrap_or_default();
        match reply.cluster_id {
            Some(theirs) if theirs != mine => Err(cannot(format!(
                "it belongs to cluster {theirs}; this cluster is {mine}"
            ))),
            None if reply.holds_data => Err(cannot(format!(
                "it holds data of another cluster (with no recorded cluster id); this cluster is {mine}: \
                 wipe its data directory to add it as a new node"
            ))),
            _ => Ok(()),
        }
    }
}

/// An admin error from the leader, relayed with its code.
fn relay(e: AdminError) -> Status {
    match e {
        AdminError::Rpc {
            code, message, addr, ..
        } => Status::new(code, format!("leader at {addr}: {message}")),
        other => Status::internal(other.to_string()),
    }
}

/// The gRPC status a membership error is answered with.
pub(crate) fn membership_status(e: &MembershipError) -> Status {
    let msg = e.to_string();
    match e {
        MembershipError::ForwardToLeader { .. } | MembershipError::InProgress { .. } => Status::unavailable(msg),
        MembershipError::AlreadyInitialized { .. } => Status::already_exists(msg),
        MembershipError::NotInMembers { .. }
        | MembershipError::EmptyMembership
        | MembershipError::InvalidAddress { .. } => Status::invalid_argument(msg),
        MembershipError::LearnerNotFound { .. }
        | MembershipError::NotAMember { .. }
        | MembershipError::AlreadyVoter { .. }
        | MembershipError::CannotJoin { .. } => Status::failed_precondition(msg),
        _ => Status::internal(msg),
    }
}

/// The `ClusterAdmin` and `Forwarding` services of one node.
#[derive(Clone)]
pub struct AdminService {
    shared: Arc<AdminShared>,
    /// The local Raft, for membership changes.
    seal: Arc<Membership>,
}

impl std::fmt::Debug for AdminService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdminService")
            .field("node_id", &self.shared.node_id)
            .finish()
    }
}

fn is_forwarded<T>(request: &Request<T>) -> bool {
    request.metadata().contains_key(FORWARDED)
}

impl AdminService {
    /// Refuse a caller whose certificate is not on `RaftConfig::allowed_peer_names`, or that
    /// carries another cluster's id (`check` says how strictly, [`crate::identity`]).
    fn check<T>(&self, request: &Request<T>, check: Check, what: &str) -> Result<(), Status> {
        self.shared.allowed.check_request(request)?;
        self.shared.identity.check(request, check, what, || false)
    }
}

impl AdminService {
    pub(crate) fn new(shared: Arc<AdminShared>) -> AdminService {
        let seal = Arc::new(Membership::new(shared.raft.clone(), shared.node_id));
        AdminService { shared, seal }
    }
}

#[tonic::async_trait]
impl ClusterAdmin for AdminService {
    async fn init(&self, request: Request<InitRequest>) -> Result<Response<AdminReply>, Status> {
        self.check(&request, Check::Admin, "Init")?;
        let members: BTreeMap<u64, String> = request
            .into_inner()
            .members
            .into_iter()
            .map(|m| (m.id, m.raft_addr))
            .collect();
        self.seal
            .initialize(members, &self.shared.identity)
            .await
            .map_err(|e| membership_status(&e))?;
        Ok(self.shared.reply(0))
    }

    async fn add_learner(&self, request: Request<AddLearnerRequest>) -> Result<Response<AdminReply>, Status> {
        self.check(&request, Check::Admin, "AddLearner")?;
        let forwarded = is_forwarded(&request);
        let req = request.into_inner();
        let (id, addr) = (req.id, req.raft_addr.clone());
        self.shared
            .membership(
                forwarded,
                || async {
                    if self.shared.is_leader() {
                        self.shared.check_joining(id, &addr).await?;
                    }
                    self.seal.add_learner(id, addr.clone(), false).await
                },
                |c: AdminClient| async move {
                    let mut admin = c.admin.clone();
                    admin
                        .add_learner(c.marked(req))
                        .await
                        .map(Response::into_inner)
                        .map_err(|s| c.error("AddLearner", s))
                },
            )
            .await
    }

    async fn promote(&self, request: Request<NodeRequest>) -> Result<Response<AdminReply>, Status> {
        self.check(&request, Check::Admin, "Promote")?;
        let forwarded = is_forwarded(&request);
        let id = request.into_inner().id;
        self.shared
            .membership(
                forwarded,
                || async {
                    let (voters, learners) = self.shared.members();
                    if voters.contains(&id) {
                        return Err(MembershipError::AlreadyVoter { node_id: id });
                    }
                    if !learners.contains(&id) {
                        return Err(MembershipError::LearnerNotFound { node_id: id });
                    }
                    self.seal.change(ChangeMembers::AddVoterIds(BTreeSet::from([id]))).await
                },
                |c: AdminClient| async move {
                    let mut admin = c.admin.clone();
                    admin
                        .promote(c.marked(NodeRequest { id }))
                        .await
                        .map(Response::into_inner)
                        .map_err(|s| c.error("Promote", s))
                },
            )
            .await
    }

    async fn remove(&self, request: Request<NodeRequest>) -> Result<Response<AdminReply>, Status> {
        self.check(&request, Check::Admin, "Remove")?;
        let forwarded = is_forwarded(&request);
        let id = request.into_inner().id;
        self.shared
            .membership(
                forwarded,
                || async {
                    let (voters, learners) = self.shared.members();
                    if voters.contains(&id) {
                        let rest: BTreeSet<u64> = voters.into_iter().filter(|v| *v != id).collect();
                        if rest.is_empty() {
                            return Err(MembershipError::EmptyMembership);
                        }
                        self.seal.change(ChangeMembers::ReplaceAllVoters(rest)).await
                    } else if learners.contains(&id) {
                        self.seal.change(ChangeMembers::RemoveNodes(BTreeSet::from([id]))).await
                    } else if self.shared.is_leader() {
                        Err(MembershipError::NotAMember { node_id: id })
                    } else {
                        // Only the leader's view of the membership is authoritative.
                        let (leader_id, leader_addr) = match self.shared.leader() {
                            Some((l, a)) => (Some(l), a),
                            None => (None, None),
                        };
                        Err(MembershipError::ForwardToLeader { leader_id, leader_addr })
                    }
                },
                |c: AdminClient| async move {
                    let mut admin = c.admin.clone();
                    admin
                        .remove(c.marked(NodeRequest { id }))
                        .await
                        .map(Response::into_inner)
                        .map_err(|s| c.error("Remove", s))
                },
            )
            .await
    }

    async fn status(&self, request: Request<StatusRequest>) -> Result<Response<StatusReply>, Status> {
        self.check(&request, Check::Admin, "Status")?;
        let forwarded = is_forwarded(&request);
        if request.get_ref().state_digest {
            // The digest is of this node's own state: answer here, with this node's progress.
            let (digest, index) = self.shared.state_digest().await?;
            let mut reply = self.shared.status_here();
            reply.state_digest = Some(digest);
            reply.state_digest_applied_index = index;
            return Ok(Response::new(reply));
        }
        if !forwarded && !self.shared.is_leader() {
            if let Some((_, Some(addr))) = self.shared.leader() {
                if let Ok(client) = self.shared.client(&addr) {
                    let mut admin = client.admin.clone();
                    let mut req = client.marked(StatusRequest::default());
                    req.set_timeout(Duration::from_secs(2));
                    match admin.status(req).await {
                        Ok(r) => return Ok(r),
                        Err(e) => {
                            tracing::debug!(leader = %addr, error = %e, "status: leader unreachable; answering locally")
                        }
                    }
                }
            }
        }
        Ok(Response::new(self.shared.status_here()))
    }

    async fn backup(&self, request: Request<BackupRequest>) -> Result<Response<BackupReply>, Status> {
        self.check(&request, Check::Admin, "Backup")?;
        self.backup_here(request.into_inner().dir).await.map(Response::new)
    }
}

impl AdminService {
    async fn backup_here(&self, dir: String) -> Result<BackupReply, Status> {
        let path = std::path::PathBuf::from(&dir);
        if !path.is_absolute() {
            return Err(Status::invalid_argument(format!(
                "backup directory {dir:?} must be an absolute path on the node's machine"
            )));
        }
        let store = self
            .shared
            .store
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
            .ok_or_else(|| Status::unavailable(format!("node {} is shutting down", self.shared.node_id)))?;
        let summary = tokio::task::spawn_blocking(move || crate::recovery::backup(&store, &path))
            .await
            .map_err(|e| Status::internal(format!("backup: {e}")))?
            .map_err(|e| match e {
                crate::recovery::RecoveryError::Refused(m) => Status::failed_precondition(m),
                other => Status::internal(format!("backup: {other}")),
            })?;
        tracing::info!(%dir, applied_index = ?summary.applied_index, "backup written");
        let summary_json = serde_json::to_string(&summary).map_err(|e| Status::internal(e.to_string()))?;
        Ok(BackupReply { summary_json })
    }
}

#[tonic::async_trait]
impl Forwarding for AdminService {
    async fn forward(&self, request: Request<HttpRequest>) -> Result<Response<HttpResponse>, Status> {
        let what = format!("a write forwarded by node {}", request.get_ref().sender);
        self.check(&request, Check::Admin, &what)?;
        let req = request.into_inner();
        if !self.shared.is_leader() {
            return Ok(Response::new(HttpResponse {
                not_leader: true,
                ..Default::default()
            }));
        }
        let handler = self
            .shared
            .handler
            .get()
            .cloned()
            .ok_or_else(|| Status::unavailable(format!("node {} is still starting", self.shared.node_id)))?;
        tracing::debug!(from = req.sender, method = %req.method, uri = %req.uri, "running a forwarded request");
        Ok(Response::new(handler.handle(req).await))
    }
}

/// Adds `seal.raft.v1.ClusterAdmin` and `seal.raft.v1.Forwarding`, backed by `admin`, to `router`
/// (forwarded requests may be as large as Raft messages).
pub(crate) fn add_admin_services(
    router: tonic::transport::server::Router,
    admin: AdminService,
    max_message_bytes: usize,
) -> tonic::transport::server::Router {
    router.add_service(ClusterAdminServer::new(admin.clone())).add_service(
        ForwardingServer::new(admin)
            .max_decoding_message_size(max_message_bytes)
            .max_encoding_message_size(max_message_bytes),
    )
}
