//! The Raft transport between the nodes of a cluster: openraft's RPCs over tonic gRPC with mutual TLS.
//!
//! # Wire format
//!
//! The service is `seal.raft.v1.Raft` (`seal-proto`'s `raft.proto`): `AppendEntries`, `Vote` and
//! `InstallSnapshot`, each taking a `RaftRequest` and answering a `RaftReply`. The openraft request
//! travels in `RaftRequest.payload` as its `postcard` encoding (the serde representation openraft
//! 0.9 derives with its `serde` feature; the same compact format the log store uses), tagged with
//! [`PayloadFormat::PostcardOpenraftV09`]. The reply holds either the encoded openraft response
//! (`ok`) or the encoded `RaftError` the receiving Raft returned (`error`), so the sender gets its
//! peer's answer exactly: a higher vote (inside the responses), a snapshot mismatch, a stopped
//! node. A request also names the node id it is meant for: a node refuses one addressed to
//! another id (a stale address in the membership).
//!
//! A snapshot travels as one `InstallSnapshotStream` call ([`stream`]): the chunks of
//! `snapshot_max_chunk_size` bytes openraft's chunked transfer would send one `InstallSnapshot`
//! call each, streamed in order, so the sender reads and encrypts the next chunks while the
//! receiver writes the current one; the receiver hands each to `Raft::install_snapshot`, which
//! reassembles the archive and installs it after the last one. A peer without the streaming call
//! (UNIMPLEMENTED, an older build) gets the next attempt chunk by chunk, one call each.
//!
//! # Errors the sender sees
//!
//! * the receiving Raft's own error: `RPCError::RemoteError`, with the decoded `RaftError`;
//! * no connection, a refused TLS handshake, a node shutting down (`UNAVAILABLE`), a connection
//!   closed under the request (`CANCELLED`: also how a peer refusing our certificate after a TLS 1.3
//!   handshake shows), a node that is not the one addressed (`FAILED_PRECONDITION`), or any other
//!   status whose cause is the connection (a TLS alert surfaces as `UNKNOWN` "transport error"):
//!   `RPCError::Unreachable`, so openraft backs off ([`RaftNetwork::backoff`]: 50 ms doubling up to 1 s) instead of retrying at once;
//! * no answer within the RPC's `RPCOption::hard_ttl()` (also sent as the gRPC deadline), or
//!   `DEADLINE_EXCEEDED`: `RPCError::Timeout`;
//! * an append-entries request whose encoding exceeds the message limit:
//!   `RPCError::PayloadTooLarge` with a hint of half as many entries, so openraft splits the batch;
//! * anything else (an undecodable reply, another gRPC status): `RPCError::Network`.
//!
//! # TLS
//!
//! See [`crate::tls`]: the client trusts only the cluster CA and checks the server's certificate
//! against the host part of the peer's Raft address.
//!
//! # Connections
//!
//! [`GrpcNetwork`] keeps one lazily connected tonic channel per target node and hands a clone to
//! every client openraft asks for (openraft creates one per heartbeat round and per replication
//! stream); HTTP/2 multiplexes them over one connection, which reconnects by itself after a
//! failure. HTTP/2 keep-alive pings notice a silently dead peer.
//!
//! The server side of the port (accept loop, connection cap) is `server.rs`.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use openraft::error::{
    Fatal, InstallSnapshotError, NetworkError, PayloadTooLarge, RPCError, RaftError, RemoteError, ReplicationClosed,
    StreamingError, Timeout, Unreachable,
};
use openraft::network::snapshot_transport::{Chunked, SnapshotTransport};
use openraft::network::{Backoff, RPCOption, RPCTypes, RaftNetwork, RaftNetworkFactory};
use openraft::raft::SnapshotResponse;
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse, VoteRequest,
    VoteResponse,
};
use openraft::BasicNode;
use openraft::OptionalSend;
use seal_proto::peer::AllowedNames;
use seal_proto::raft::raft_client::RaftClient;
use seal_proto::raft::raft_server::{Raft as RaftRpc, RaftServer};
use seal_proto::raft::{raft_reply, PayloadFormat, RaftReply, RaftRequest};
use serde::de::DeserializeOwned;
use serde::Serialize;
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Request, Response, Status};

use crate::contact::LeaderContact;
use crate::error::Error;
use crate::identity::{Check, ClusterIdentity};
use crate::tls::{error_chain, peer_host, ClusterTls, TlsMaterial};
use crate::types::{Raft, Snapshot, TypeConfig, Vote};

/// How long establishing a TCP connection to a peer may take (the TLS handshake is bounded by the
/// RPC's own deadline).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// Interval of HTTP/2 keep-alive pings on a peer connection.
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(2);
/// A peer that does not answer a keep-alive ping within this is considered gone.
const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(4);
/// First sleep after a peer was unreachable; it doubles up to [`BACKOFF_MAX`].
const BACKOFF_MIN: Duration = Duration::from_millis(50);
/// Longest sleep between attempts to reach an unreachable peer.
const BACKOFF_MAX: Duration = Duration::from_secs(1);
/// Upper bound of what a `RaftRequest` adds around its payload (field tags, lengths, ids).
const REQUEST_FRAMING: usize = 64;

/// Why an RPC to a peer failed on this side of the wire (openraft gets it wrapped in
/// `Unreachable`, `Timeout` or `NetworkError`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TransportError {
    /// The peer's address from the membership cannot be used.
    #[error("node {target}: invalid raft address {addr:?}: {reason}")]
    InvalidAddress {
        /// The target node.
        target: u64,
        /// Its address from the membership.
        addr: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The call failed with a gRPC status (no connection, TLS refused, refused by the peer).
    #[error("{rpc} to node {target} at {addr}: {code:?}: {detail}")]
    Status {
        /// The RPC.
        rpc: &'static str,
        /// The target node.
        target: u64,
        /// Its address.
        addr: String,
        /// The gRPC status code.
        code: Code,
        /// The status message and its causes.
        detail: String,
    },
    /// The request could not be encoded.
    #[error("{rpc} to node {target}: cannot encode the request: {reason}")]
    Encode {
        /// The RPC.
        rpc: &'static str,
        /// The target node.
        target: u64,
        /// The encoder's explanation.
        reason: String,
    },
    /// The peer's reply could not be decoded.
    #[error("{rpc} to node {target} at {addr}: undecodable reply: {reason}")]
    Decode {
        /// The RPC.
        rpc: &'static str,
        /// The target node.
        target: u64,
        /// Its address.
        addr: String,
        /// The decoder's explanation.
        reason: String,
    },
    /// An append-entries request larger than the message limit, with a single entry (so it cannot
    /// be split).
    #[error("{rpc} to node {target}: {size} bytes exceed the {limit}-byte raft message limit")]
    TooLarge {
        /// The RPC.
        rpc: &'static str,
        /// The target node.
        target: u64,
        /// The encoded size.
        size: usize,
        /// The limit (`RaftConfig::max_rpc_message_bytes`).
        limit: usize,
    },
}

fn rpc_name(rpc: RPCTypes) -> &'static str {
    match rpc {
        RPCTypes::AppendEntries => "AppendEntries",
        RPCTypes::Vote => "Vote",
        RPCTypes::InstallSnapshot => "InstallSnapshot",
    }
}

/// A status's message followed by its chain of causes (where the TLS or connection error is).
fn status_detail(status: &Status) -> String {
    let mut out = status.message().to_string();
    let mut source = std::error::Error::source(status);
    while let Some(e) = source {
        let s = e.to_string();
        if !out.contains(&s) {
            out.push_str(": ");
            out.push_str(&s);
        }
        source = e.source();
    }
    out
}

/// Whether a status was caused by the transport (connection, TLS) rather than sent by the peer.
fn is_connection_failure(status: &Status) -> bool {
    let mut source = std::error::Error::source(status);
    while let Some(e) = source {
        if e.is::<tonic::transport::Error>() || e.is::<std::io::Error>() {
            return true;
        }
        source = e.source();
    }
    false
}

/// The network factory of a cluster node: gRPC clients over mutual TLS, one channel per target.
#[derive(Debug, Clone)]
pub struct GrpcNetwork {
    inner: Arc<NetworkInner>,
}

#[derive(Debug)]
struct NetworkInner {
    node_id: u64,
    tls: TlsMaterial,
    max_message_bytes: usize,
    /// Local address of outgoing connections (`RaftConfig::source_ip`).
    source_ip: Option<std::net::IpAddr>,
    /// target id -> (address the channel was made for, channel).
    channels: Mutex<HashMap<u64, (String, Channel)>>,
    /// This node's cluster id, carried by every RPC.
    identity: ClusterIdentity,
    /// See [`GrpcClient`]'s field of the same name.
    unstreamed: Arc<Mutex<HashSet<u64>>>,
}

impl GrpcNetwork {
    /// A network for node `node_id`, loading (and checking) the TLS files. `max_message_bytes`
    /// bounds every message sent or received.
    pub fn new(node_id: u64, tls: &ClusterTls, max_message_bytes: usize) -> Result<GrpcNetwork, Error> {
        Ok(GrpcNetwork::with_material(
            node_id,
            tls.load()?,
            max_message_bytes,
            None,
            ClusterIdentity::default(),
        ))
    }

    /// The same network carrying `identity`'s cluster id in its calls (a client that is not a
    /// node, e.g. a test or tool speaking to a cluster's nodes).
    pub fn of_cluster(self, identity: ClusterIdentity) -> GrpcNetwork {
        let inner = &self.inner;
        GrpcNetwork::with_material(
            inner.node_id,
            inner.tls.clone(),
            inner.max_message_bytes,
            inner.source_ip,
            identity,
        )
    }

    /// Like [`GrpcNetwork::new`] with loaded material; connections to peers are made from
    /// `source_ip` (`None`: the operating system chooses).
    pub(crate) fn with_material(
        node_id: u64,
        tls: TlsMaterial,
        max_message_bytes: usize,
        source_ip: Option<std::net::IpAddr>,
        identity: ClusterIdentity,
    ) -> GrpcNetwork {
        GrpcNetwork {
            inner: Arc::new(NetworkInner {
                node_id,
                tls,
                max_message_bytes,
                source_ip,
                channels: Mutex::new(HashMap::new()),
                identity,
                unstreamed: Arc::default(),
            }),
        }
    }

    /// The channel to `target` at `addr`: the cached one if it was made for the same address,
    /// otherwise a new lazily connected one.
    fn channel(&self, target: u64, addr: &str) -> Result<Channel, TransportError> {
        let mut channels = self.inner.channels.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((a, ch)) = channels.get(&target) {
            if a == addr {
                return Ok(ch.clone());
            }
        }
        let invalid = |reason: String| TransportError::InvalidAddress {
            target,
            addr: addr.to_string(),
            reason,
        };
        let host = peer_host(addr).map_err(invalid)?;
        let channel = Endpoint::from_shared(format!("https://{addr}"))
            .map_err(|e| invalid(error_chain(&e)))?
            .tls_config(self.inner.tls.client_config(host))
            .map_err(|e| invalid(error_chain(&e)))?
            .connect_timeout(CONNECT_TIMEOUT)
            .tcp_nodelay(true)
            .http2_keep_alive_interval(KEEPALIVE_INTERVAL)
            .keep_alive_timeout(KEEPALIVE_TIMEOUT)
            .keep_alive_while_idle(true)
            .local_address(self.inner.source_ip)
            .connect_lazy();
        channels.insert(target, (addr.to_string(), channel.clone()));
        Ok(channel)
    }
}

impl RaftNetworkFactory<TypeConfig> for GrpcNetwork {
    type Network = GrpcClient;

    async fn new_client(&mut self, target: u64, node: &BasicNode) -> GrpcClient {
        let limit = self.inner.max_message_bytes;
        let client = self.channel(target, &node.addr).map(|ch| {
            RaftClient::new(ch)
                .max_decoding_message_size(limit)
                .max_encoding_message_size(limit)
        });
        GrpcClient {
            node_id: self.inner.node_id,
            target,
            node: node.clone(),
            client,
            max_message_bytes: limit,
            identity: self.inner.identity.clone(),
            unstreamed: self.inner.unstreamed.clone(),
        }
    }
}

/// A client for one target node; see [`GrpcNetwork`].
#[derive(Debug, Clone)]
pub struct GrpcClient {
    node_id: u64,
    target: u64,
    node: BasicNode,
    /// `Err` when the target's address is unusable: every RPC then fails as unreachable.
    client: Result<RaftClient<Channel>, TransportError>,
    max_message_bytes: usize,
    identity: ClusterIdentity,
    /// Targets that answered `InstallSnapshotStream` with UNIMPLEMENTED (older builds): sent
    /// snapshots chunk by chunk.
    unstreamed: Arc<Mutex<HashSet<u64>>>,
}

type RpcResult<T, E> = Result<T, RPCError<u64, BasicNode, RaftError<u64, E>>>;

impl GrpcClient {
    fn encode<T: Serialize, E: std::error::Error>(&self, rpc: RPCTypes, req: &T) -> RpcResult<Vec<u8>, E> {
        postcard::to_allocvec(req).map_err(|e| {
            RPCError::Network(NetworkError::new(&TransportError::Encode {
                rpc: rpc_name(rpc),
                target: self.target,
                reason: e.to_string(),
            }))
        })
    }

    /// Send one encoded request and decode the reply.
    async fn call<Resp, E>(&self, rpc: RPCTypes, payload: Vec<u8>, ttl: Duration) -> RpcResult<Resp, E>
    where
        Resp: DeserializeOwned,
        E: std::error::Error + DeserializeOwned,
    {
        let mut client = match &self.client {
            Ok(c) => c.clone(),
            Err(e) => return Err(RPCError::Unreachable(Unreachable::new(e))),
        };
        let mut request = Request::new(RaftRequest {
            payload,
            format: PayloadFormat::PostcardOpenraftV09 as i32,
            target: self.target,
            sender: self.node_id,
            chunk: Vec::new(),
        });
        // Sent as the gRPC deadline, so the peer gives up too.
        request.set_timeout(ttl);
        self.identity.stamp(&mut request);
        let call = async move {
            match rpc {
                RPCTypes::AppendEntries => client.append_entries(request).await,
                RPCTypes::Vote => client.vote(request).await,
                RPCTypes::InstallSnapshot => client.install_snapshot(request).await,
            }
        };
        let reply = match tokio::time::timeout(ttl, call).await {
            Err(_) => return Err(self.timeout(rpc, ttl)),
            Ok(Err(status)) => return Err(self.status_error(rpc, ttl, &status)),
            Ok(Ok(reply)) => reply.into_inner(),
        };
        self.decode_reply(rpc, reply)
    }

    /// The peer's answer in `reply`: its Raft's response, or its Raft's error.
    fn decode_reply<Resp, E>(&self, rpc: RPCTypes, reply: RaftReply) -> RpcResult<Resp, E>
    where
        Resp: DeserializeOwned,
        E: std::error::Error + DeserializeOwned,
    {
        let decode_err = |reason: String| {
            RPCError::Network(NetworkError::new(&TransportError::Decode {
                rpc: rpc_name(rpc),
                target: self.target,
                addr: self.node.addr.clone(),
                reason,
            }))
        };
        match reply.result {
            Some(raft_reply::Result::Ok(bytes)) => {
                postcard::from_bytes(&bytes).map_err(|e| decode_err(format!("response: {e}")))
            }
            Some(raft_reply::Result::Error(bytes)) => {
                let err: RaftError<u64, E> =
                    postcard::from_bytes(&bytes).map_err(|e| decode_err(format!("error: {e}")))?;
                Err(RPCError::RemoteError(RemoteError::new_with_node(
                    self.target,
                    self.node.clone(),
                    err,
                )))
            }
            None => Err(decode_err("neither a response nor an error".into())),
        }
    }

    fn timeout<E: std::error::Error>(&self, rpc: RPCTypes, ttl: Duration) -> RPCError<u64, BasicNode, E> {
        RPCError::Timeout(Timeout {
            action: rpc,
            id: self.node_id,
            target: self.target,
            timeout: ttl,
        })
    }

    fn status_error<E: std::error::Error>(
        &self,
        rpc: RPCTypes,
        ttl: Duration,
        status: &Status,
    ) -> RPCError<u64, BasicNode, E> {
        let err = TransportError::Status {
            rpc: rpc_name(rpc),
            target: self.target,
            addr: self.node.addr.clone(),
            code: status.code(),
            detail: status_detail(status),
        };
        match status.code() {
            // No connection, TLS refused, the peer shutting down, or another node at that address;
            // `CANCELLED` is the connection closing under the request, which is how a peer that
            // refuses our certificate after a TLS 1.3 handshake shows: openraft should back off
            // rather than retry at once.
            Code::Unavailable | Code::Cancelled | Code::FailedPrecondition => {
                RPCError::Unreachable(Unreachable::new(&err))
            }
            Code::DeadlineExceeded => self.timeout(rpc, ttl),
            // Any other status caused by the connection itself (tonic reports e.g. a TLS alert
            // from the peer as `UNKNOWN` "transport error").
            _ if is_connection_failure(status) => RPCError::Unreachable(Unreachable::new(&err)),
            _ => RPCError::Network(NetworkError::new(&err)),
        }
    }
}

impl RaftNetwork<TypeConfig> for GrpcClient {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<u64>, RPCError<u64, BasicNode, RaftError<u64>>> {
        let payload = self.encode(RPCTypes::AppendEntries, &rpc)?;
        if payload.len().saturating_add(REQUEST_FRAMING) > self.max_message_bytes {
            let n = rpc.entries.len() as u64;
            if n > 1 {
                return Err(RPCError::PayloadTooLarge(PayloadTooLarge::new_entries_hint(n / 2)));
            }
            return Err(RPCError::Network(NetworkError::new(&TransportError::TooLarge {
                rpc: rpc_name(RPCTypes::AppendEntries),
                target: self.target,
                size: payload.len(),
                limit: self.max_message_bytes,
            })));
        }
        self.call(RPCTypes::AppendEntries, payload, option.hard_ttl()).await
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<InstallSnapshotResponse<u64>, RPCError<u64, BasicNode, RaftError<u64, InstallSnapshotError>>> {
        let payload = self.encode(RPCTypes::InstallSnapshot, &rpc)?;
        self.call(RPCTypes::InstallSnapshot, payload, option.hard_ttl()).await
    }

    async fn full_snapshot(
        &mut self,
        vote: Vote,
        snapshot: Snapshot,
        cancel: impl Future<Output = ReplicationClosed> + OptionalSend + 'static,
        option: RPCOption,
    ) -> Result<SnapshotResponse<u64>, StreamingError<TypeConfig, Fatal<u64>>> {
        let unstreamed = self
            .unstreamed
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains(&self.target);
        if unstreamed {
            return Chunked::send_snapshot(self, vote, snapshot, cancel, option).await;
        }
        self.stream_snapshot(vote, snapshot, cancel, option).await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<u64>,
        option: RPCOption,
    ) -> Result<VoteResponse<u64>, RPCError<u64, BasicNode, RaftError<u64>>> {
        let payload = self.encode(RPCTypes::Vote, &rpc)?;
        self.call(RPCTypes::Vote, payload, option.hard_ttl()).await
    }

    fn backoff(&self) -> Backoff {
        Backoff::new((0u32..).map(|i| BACKOFF_MIN.saturating_mul(1 << i.min(5)).min(BACKOFF_MAX)))
    }
}

/// The server side: hands each RPC to the local [`Raft`].
///
/// Refuses (with `UNAVAILABLE`) everything once [`RaftService::close`] was called, and refuses
/// (with `FAILED_PRECONDITION`) requests addressed to another node id.
#[derive(Clone)]
pub struct RaftService {
    raft: Raft,
    pub(crate) node_id: u64,
    open: Arc<AtomicBool>,
    allowed: AllowedNames,
    contact: Option<Arc<LeaderContact>>,
    identity: ClusterIdentity,
}

impl std::fmt::Debug for RaftService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RaftService")
            .field("node_id", &self.node_id)
            .field("open", &self.open.load(Ordering::Relaxed))
            .finish()
    }
}

impl RaftService {
    /// Serve RPCs for `raft`, the Raft of node `node_id`.
    pub fn new(raft: Raft, node_id: u64) -> RaftService {
        RaftService {
            raft,
            node_id,
            open: Arc::new(AtomicBool::new(true)),
            allowed: AllowedNames::default(),
            contact: None,
            identity: ClusterIdentity::default(),
        }
    }

    /// Serves only callers of this node's cluster ([`crate::identity`]).
    pub fn of_cluster(mut self, identity: ClusterIdentity) -> RaftService {
        self.identity = identity;
        self
    }

    /// Records every `AppendEntries` accepted from a leader in `contact` (the node's read
    /// staleness is measured from it).
    pub fn recording(mut self, contact: Arc<LeaderContact>) -> RaftService {
        self.contact = Some(contact);
        self
    }

    /// Serves only peers whose certificate carries a name `allowed`
    /// permits (the cluster CA may also sign other services' certificates).
    pub fn allowing(mut self, allowed: AllowedNames) -> RaftService {
        self.allowed = allowed;
        self
    }

    /// From now on refuse every RPC (this and every clone), e.g. while the node shuts down:
    /// connections still open then cannot reach the stopping Raft.
    pub fn close(&self) {
        self.open.store(false, Ordering::SeqCst);
    }

    /// The tonic service, with `max_message_bytes` as the limit of every message.
    pub fn into_server(self, max_message_bytes: usize) -> RaftServer<RaftService> {
        RaftServer::new(self)
            .max_decoding_message_size(max_message_bytes)
            .max_encoding_message_size(max_message_bytes)
    }

    /// Check a request and decode its payload.
    fn accept<T: DeserializeOwned>(&self, rpc: RPCTypes, request: Request<RaftRequest>) -> Result<T, Status> {
        let sender = request.get_ref().sender;
        self.admit(rpc, &request, sender)?;
        self.decode(rpc, request.into_inner())
    }

    /// Check a call from node `sender`: this node open, the peer's certificate, its cluster.
    fn admit<T>(&self, rpc: RPCTypes, request: &Request<T>, sender: u64) -> Result<(), Status> {
        if !self.open.load(Ordering::SeqCst) {
            return Err(Status::unavailable(format!(
                "raft node {} is shutting down",
                self.node_id
            )));
        }
        if let Err(refused) = self.allowed.check_request(request) {
            tracing::warn!(rpc = rpc_name(rpc), reason = refused.message(), "refused a Raft peer");
            return Err(refused);
        }
        let raft = &self.raft;
        self.identity.check(
            request,
            Check::Raft,
            &format!("{} from node {sender}", rpc_name(rpc)),
            || {
                raft.metrics()
                    .borrow()
                    .membership_config
                    .membership()
                    .get_node(&sender)
                    .is_some()
            },
        )
    }

    /// Decode one request's payload: its format, that it is meant for this node, its encoding.
    fn decode<T: DeserializeOwned>(&self, rpc: RPCTypes, req: RaftRequest) -> Result<T, Status> {
        if req.format() != PayloadFormat::PostcardOpenraftV09 {
            return Err(Status::invalid_argument(format!(
                "{}: unsupported payload format {}",
                rpc_name(rpc),
                req.format
            )));
        }
        if !req.chunk.is_empty() {
            // Only `InstallSnapshotStream` carries bytes beside the request, and takes them first.
            return Err(Status::invalid_argument(format!(
                "{} from node {}: chunk bytes outside the request, which only InstallSnapshotStream takes",
                rpc_name(rpc),
                req.sender
            )));
        }
        if req.target != self.node_id {
            return Err(Status::failed_precondition(format!(
                "{} from node {} meant for node {}, but this is node {}",
                rpc_name(rpc),
                req.sender,
                req.target,
                self.node_id
            )));
        }
        postcard::from_bytes(&req.payload).map_err(|e| {
            Status::invalid_argument(format!(
                "{} from node {}: undecodable request: {e}",
                rpc_name(rpc),
                req.sender
            ))
        })
    }
}

/// Encode the local Raft's answer.
fn reply<T: Serialize, E: Serialize>(rpc: RPCTypes, res: Result<T, E>) -> Result<Response<RaftReply>, Status> {
    let encoded = match &res {
        Ok(v) => postcard::to_allocvec(v).map(raft_reply::Result::Ok),
        Err(e) => postcard::to_allocvec(e).map(raft_reply::Result::Error),
    };
    let result = encoded.map_err(|e| Status::internal(format!("{}: cannot encode the reply: {e}", rpc_name(rpc))))?;
    Ok(Response::new(RaftReply { result: Some(result) }))
}

#[tonic::async_trait]
impl RaftRpc for RaftService {
    async fn append_entries(&self, request: Request<RaftRequest>) -> Result<Response<RaftReply>, Status> {
        let req: AppendEntriesRequest<TypeConfig> = self.accept(RPCTypes::AppendEntries, request)?;
        let arrived = std::time::Instant::now();
        let leader_commit = req.leader_commit.map(|l| l.index);
        let result = self.raft.append_entries(req).await;
        if let (Some(contact), Ok(resp)) = (&self.contact, &result) {
            // Any answer but "higher vote" means the sender is this node's leader.
            if !matches!(resp, openraft::raft::AppendEntriesResponse::HigherVote(_)) {
                contact.record(arrived, leader_commit);
            }
        }
        reply(RPCTypes::AppendEntries, result)
    }

    async fn vote(&self, request: Request<RaftRequest>) -> Result<Response<RaftReply>, Status> {
        let req: VoteRequest<u64> = self.accept(RPCTypes::Vote, request)?;
        reply(RPCTypes::Vote, self.raft.vote(req).await)
    }

    async fn install_snapshot(&self, request: Request<RaftRequest>) -> Result<Response<RaftReply>, Status> {
        let req: InstallSnapshotRequest<TypeConfig> = self.accept(RPCTypes::InstallSnapshot, request)?;
        reply(RPCTypes::InstallSnapshot, self.raft.install_snapshot(req).await)
    }

    async fn install_snapshot_stream(
        &self,
        request: Request<tonic::Streaming<RaftRequest>>,
    ) -> Result<Response<RaftReply>, Status> {
        self.receive_snapshot_stream(request).await
    }
}

mod stream;
#[cfg(test)]
mod tests;
