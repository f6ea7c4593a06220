//! [`SealRaft`]: a running Raft node over one data directory.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use openraft::error::{CheckIsLeaderError, ClientWriteError, RaftError};
use openraft::network::RaftNetworkFactory;
use openraft::{BasicNode, ChangeMembers, ServerState, SnapshotPolicy};
use seal_storage::{ApplyOutcome, Command, Reader, Store};

use crate::admin::{AdminClient, AdminError, AdminService, AdminShared, AdminTls, ForwardHandler};
use crate::contact::LeaderContact;
use crate::error::{Error, MembershipError, WriteError};
use crate::grpc::{GrpcNetwork, RaftService};
use crate::identity::ClusterIdentity;
use crate::log_store::LogStore;
use crate::membership::Membership;
use crate::network::NoNetwork;
use crate::server::{ConnectionCounts, ServerHandle};
use crate::state_machine::{SnapshotSizes, StateMachine, Watermark};
use crate::tls::ClusterTls;
use crate::types::{Raft, TypeConfig};

/// How long [`SealRaft::shutdown`] waits for open Raft connections to finish.
const SERVER_SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// Default of [`RaftConfig::max_connections`]: far above what cluster peers and operators need,
/// far below the descriptors a node has.
pub const DEFAULT_MAX_CONNECTIONS: usize = 1024;

/// How to run a node. Built once from the node's configuration and handed down.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RaftConfig {
    /// This node's id.
    pub node_id: u64,
    /// This node's Raft address. A single node ([`SealRaft::open`]) records it in its membership;
    /// a cluster node ([`SealRaft::open_cluster`]) listens on it for Raft RPCs (`host:port`; port
    /// 0 picks a free one), and the membership records whatever address its peers were given.
    pub addr: String,
    /// Data directory: the RocksDB database is `db/`, snapshots are `snapshots/`.
    pub data_dir: PathBuf,
    /// Leader heartbeat interval.
    pub heartbeat_interval: Duration,
    /// Lower bound of the randomized election timeout.
    pub election_timeout_min: Duration,
    /// Upper bound of the randomized election timeout.
    pub election_timeout_max: Duration,
    /// Build a snapshot after this many log entries since the last one; `None`: only on request.
    pub snapshot_logs_since_last: Option<u64>,
    /// And only once the commands applied since the last snapshot add up to this percentage of
    /// its size (0, the default: by entry count alone; see [`snapshot_due`]). A larger value keeps
    /// more log, so that a node further behind catches up from the log instead of a snapshot;
    /// applying the log is several times slower per byte than receiving a snapshot
    /// (docs/cluster.md, "Snapshots"), so that pays only where sending snapshots is dearer than
    /// here.
    pub snapshot_log_percent: u64,
    /// Log entries kept after a snapshot, for lagging followers.
    pub max_in_snapshot_log_to_keep: u64,
    /// Largest snapshot chunk sent in one `InstallSnapshot` RPC, in bytes.
    pub snapshot_max_chunk_size: u64,
    /// Deadline of one `InstallSnapshot` RPC; for the last chunk it includes installing the
    /// snapshot on the receiver, so it must cover that for the largest state expected.
    pub install_snapshot_timeout: Duration,
    /// Largest Raft RPC message sent or accepted, in bytes; must exceed the chunk size. An
    /// append-entries batch over it is split; a single entry over it cannot be replicated.
    pub max_rpc_message_bytes: usize,
    /// Connections the Raft gRPC port (Raft, cluster admin, forwarding) keeps open at once; one
    /// more is closed on arrival and counted ([`SealRaft::connection_counts`]). Peers multiplex
    /// their RPCs over one connection each, so a cluster needs a handful.
    pub max_connections: usize,
    /// Names (certificate CN or DNS SAN, `prefix*` allowed) a peer's
    /// certificate must carry for its Raft RPCs to be served; empty: any
    /// certificate the cluster CA signed.
    pub allowed_peer_names: seal_proto::peer::AllowedNames,
    /// Local address this node's outgoing connections to its peers (Raft RPCs, forwarded writes,
    /// admin calls) are made from; `None`: the operating system chooses. For hosts with several
    /// interfaces, and for fault injection that must tell the nodes' connections apart.
    pub source_ip: Option<std::net::IpAddr>,
}

impl RaftConfig {
    /// Defaults suited to a LAN: 50 ms heartbeats, 150-300 ms elections, a
    /// snapshot every 10,000 entries, keeping 1,000 entries; snapshots sent in 3 MiB chunks with
    /// 10 s per chunk; RPC messages up to 64 MiB; at most 1024 connections to the gRPC port.
    pub fn new(node_id: u64, addr: impl Into<String>, data_dir: impl Into<PathBuf>) -> RaftConfig {
        RaftConfig {
            node_id,
            addr: addr.into(),
            data_dir: data_dir.into(),
            heartbeat_interval: Duration::from_millis(50),
            election_timeout_min: Duration::from_millis(150),
            election_timeout_max: Duration::from_millis(300),
            snapshot_logs_since_last: Some(10_000),
            snapshot_log_percent: 0,
            max_in_snapshot_log_to_keep: 1_000,
            snapshot_max_chunk_size: 3 * 1024 * 1024,
            install_snapshot_timeout: Duration::from_secs(10),
            max_rpc_message_bytes: 64 * 1024 * 1024,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            allowed_peer_names: seal_proto::peer::AllowedNames::default(),
            source_ip: None,
        }
    }

    fn openraft_config(&self) -> Result<openraft::Config, Error> {
        let ms = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        if self.snapshot_max_chunk_size == 0 {
            return Err(Error::Config {
                reason: "snapshot_max_chunk_size must be positive".into(),
            });
        }
        if self.max_connections == 0 {
            return Err(Error::Config {
                reason: "max_connections must be positive".into(),
            });
        }
        // A chunk travels with its snapshot metadata (the membership) and framing.
        let needed = self.snapshot_max_chunk_size.saturating_add(64 * 1024);
        if (self.max_rpc_message_bytes as u64) < needed {
            return Err(Error::Config {
                reason: format!(
                    "max_rpc_message_bytes ({}) must exceed snapshot_max_chunk_size ({}) by at least 64 KiB",
                    self.max_rpc_message_bytes, self.snapshot_max_chunk_size
                ),
            });
        }
        openraft::Config {
            cluster_name: "seal".into(),
            heartbeat_interval: ms(self.heartbeat_interval),
            election_timeout_min: ms(self.election_timeout_min),
            election_timeout_max: ms(self.election_timeout_max),
            // With a size condition, [`spawn_snapshot_policy`] triggers snapshots itself.
            snapshot_policy: match self.snapshot_logs_since_last {
                Some(n) if self.snapshot_log_percent == 0 => SnapshotPolicy::LogsSinceLast(n),
                _ => SnapshotPolicy::Never,
            },
            max_in_snapshot_log_to_keep: self.max_in_snapshot_log_to_keep,
            snapshot_max_chunk_size: self.snapshot_max_chunk_size,
            install_snapshot_timeout: ms(self.install_snapshot_timeout),
            ..Default::default()
        }
        .validate()
        .map_err(|e| Error::Config { reason: e.to_string() })
    }
}

/// A snapshot of the node's Raft progress.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Metrics {
    /// This node.
    pub node_id: u64,
    /// Current term.
    pub term: u64,
    /// The leader this node knows of.
    pub leader: Option<u64>,
    /// Whether this node is the leader.
    pub is_leader: bool,
    /// Index of the last log entry.
    pub last_log_index: Option<u64>,
    /// Index of the last applied entry.
    pub applied_index: Option<u64>,
    /// Index covered by the current snapshot.
    pub snapshot_index: Option<u64>,
}

/// A running Raft node with its store.
pub struct SealRaft {
    raft: Raft,
    store: Store,
    node_id: u64,
    data_dir: PathBuf,
    /// The Raft gRPC server of a cluster node.
    server: Option<ServerHandle>,
    /// The admin and forwarding state of a node opened with [`SealRaft::open_cluster_with_admin`].
    admin: Option<Arc<AdminShared>>,
    /// Contacts from the leader (cluster nodes; a single node never hears from another).
    contact: Arc<LeaderContact>,
    /// What readers of the store may see of the applied log.
    watermark: Arc<Watermark>,
    /// The cluster this node belongs to.
    identity: ClusterIdentity,
}

/// How fresh this node's applied state is, for serving reads ([`SealRaft::read_state`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReadState {
    /// Whether this node is the leader.
    pub is_leader: bool,
    /// Index of the last applied entry.
    pub applied_index: Option<u64>,
    /// Time since this node last heard from the leader: zero on the leader; `None` if it never
    /// heard from one.
    pub last_contact: Option<Duration>,
    /// How old the applied state may be: on a follower or learner, the time since the latest
    /// contact whose leader commit index it has applied; on the leader, the time since a quorum
    /// last acknowledged it, once it has applied an entry of its own term (before that, `None`).
    /// `None`: unknown, treat as too stale.
    pub staleness: Option<Duration>,
}

impl std::fmt::Debug for SealRaft {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SealRaft")
            .field("node_id", &self.node_id)
            .field("data_dir", &self.data_dir)
            .field("listen_addr", &self.listen_addr())
            .finish()
    }
}

impl SealRaft {
    /// Open the data directory (creating it if needed, finishing an interrupted
    /// snapshot install), start Raft, and — only if the store was never
    /// initialized — initialize a single-voter membership `{node_id: addr}`.
    ///
    /// Re-opening an existing directory recovers the vote, the log and the
    /// state machine and does not re-initialize.
    pub async fn open(config: RaftConfig) -> Result<SealRaft, Error> {
        let identity = ClusterIdentity::default();
        let (raft, store, watermark) = start(&config, NoNetwork, &identity).await?;
        let node_id = config.node_id;
        let fatal = |e: &dyn std::fmt::Display| Error::Fatal {
            node_id,
            reason: e.to_string(),
        };
        // A single node is a cluster of its own: were it ever added to another, its data would
        // otherwise mix with that cluster's.
        identity.ensure().map_err(|e| fatal(&e))?;
        if !raft.is_initialized().await.map_err(|e| fatal(&e))? {
            let members = BTreeMap::from([(node_id, BasicNode::new(config.addr.clone()))]);
            raft.initialize(members).await.map_err(|e| Error::Initialize {
                node_id,
                reason: e.to_string(),
            })?;
        }
        Ok(SealRaft {
            raft,
            store,
            node_id,
            data_dir: config.data_dir,
            server: None,
            admin: None,
            contact: Arc::new(LeaderContact::new()),
            watermark,
            identity,
        })
    }

    /// Open the data directory as a node of a multi-node cluster: start Raft with the gRPC
    /// transport over mutual TLS ([`crate::grpc`]) and serve Raft RPCs on `config.addr`
    /// ([`SealRaft::listen_addr`] tells the address actually bound).
    ///
    /// Unlike [`SealRaft::open`] this never initializes a membership: a new cluster is formed by
    /// calling [`SealRaft::initialize`] on one of its nodes, and further nodes join through
    /// [`SealRaft::add_learner`] and [`SealRaft::change_membership`] on the leader. Re-opening an
    /// existing directory recovers the membership with the log.
    pub async fn open_cluster(config: RaftConfig, tls: ClusterTls) -> Result<SealRaft, Error> {
        SealRaft::open_cluster_serving(config, tls, false).await
    }

    /// Like [`SealRaft::open_cluster`], and also serve the cluster admin service
    /// (`seal.raft.v1.ClusterAdmin`) and write forwarding (`seal.raft.v1.Forwarding`) on the same
    /// port and mutual TLS ([`crate::admin`]). Forwarded requests are answered `UNAVAILABLE` until
    /// [`SealRaft::set_forward_handler`] registers what runs them.
    pub async fn open_cluster_with_admin(config: RaftConfig, tls: ClusterTls) -> Result<SealRaft, Error> {
        SealRaft::open_cluster_serving(config, tls, true).await
    }

    async fn open_cluster_serving(config: RaftConfig, tls: ClusterTls, with_admin: bool) -> Result<SealRaft, Error> {
        let material = tls.load()?;
        let admin_tls = if with_admin {
            let admin_tls = AdminTls::read(&tls).map_err(|e| Error::Tls {
                what: "certificate and key",
                path: None,
                reason: e.to_string(),
            })?;
            Some(admin_tls.connecting_from(config.source_ip))
        } else {
            None
        };
        let listener = tokio::net::TcpListener::bind(config.addr.as_str())
            .await
            .map_err(|source| Error::Bind {
                addr: config.addr.clone(),
                source,
            })?;
        let identity = ClusterIdentity::default();
        let network = GrpcNetwork::with_material(
            config.node_id,
            material.clone(),
            config.max_rpc_message_bytes,
            config.source_ip,
            identity.clone(),
        );
        let (raft, store, watermark) = start(&config, network, &identity).await?;
        let contact = Arc::new(LeaderContact::new());
        let service = RaftService::new(raft.clone(), config.node_id)
            .allowing(config.allowed_peer_names.clone())
            .recording(contact.clone())
            .of_cluster(identity.clone());
        let shared = admin_tls.map(|admin_tls| {
            AdminShared::new(
                raft.clone(),
                store.clone(),
                config.node_id,
                admin_tls,
                config.max_rpc_message_bytes,
                config.allowed_peer_names.clone(),
                identity.clone(),
            )
        });
        let server = match ServerHandle::spawn(
            listener,
            &config.addr,
            service,
            shared.clone().map(AdminService::new),
            &material,
            config.max_rpc_message_bytes,
            config.max_connections,
        ) {
            Ok(s) => s,
            Err(e) => {
                let _ = raft.shutdown().await;
                return Err(e);
            }
        };
        Ok(SealRaft {
            raft,
            store,
            node_id: config.node_id,
            data_dir: config.data_dir,
            server: Some(server),
            admin: shared,
            contact,
            watermark,
            identity,
        })
    }

    /// Register what runs HTTP requests forwarded to this node while it leads (nodes opened with
    /// [`SealRaft::open_cluster_with_admin`]). Returns `false` if there is no admin service or a
    /// handler was registered before.
    pub fn set_forward_handler(&self, handler: Arc<dyn ForwardHandler>) -> bool {
        self.admin.as_ref().is_some_and(|a| a.set_handler(handler))
    }

    /// Register what this node's cluster status says of the services it depends on (its
    /// signers). Returns `false` if there is no admin service or a reporter was registered before.
    pub fn set_status_reporter(&self, reporter: crate::admin::StatusReporter) -> bool {
        self.admin.as_ref().is_some_and(|a| a.set_reporter(reporter))
    }

    /// The leader this node knows of: its id and, if the membership has it, its Raft address.
    pub fn leader(&self) -> Option<(u64, Option<String>)> {
        let m = self.raft.metrics();
        let m = m.borrow();
        let id = m.current_leader?;
        let addr = m.membership_config.membership().get_node(&id).map(|n| n.addr.clone());
        Some((id, addr))
    }

    /// Wait up to `timeout` until some leader is known; return its id.
    pub async fn wait_for_leader(&self, timeout: Duration) -> Option<u64> {
        self.raft
            .wait(Some(timeout))
            .metrics(|m| m.current_leader.is_some(), "a known leader")
            .await
            .ok()
            .and_then(|m| m.current_leader)
    }

    /// Waits up to `timeout` for Raft's metrics to name a leader other than `old` (a new
    /// leader after `old` failed or stepped down): the node that sees it first is woken at
    /// once, with no polling. `None` when none is known by then.
    pub async fn wait_for_leader_other_than(&self, old: u64, timeout: Duration) -> Option<u64> {
        self.raft
            .wait(Some(timeout))
            .metrics(|m| m.current_leader.is_some_and(|l| l != old), "a new leader")
            .await
            .ok()
            .and_then(|m| m.current_leader)
    }

    /// Send a client's HTTP request to the node at Raft address `leader_addr` to run there
    /// (nodes opened with [`SealRaft::open_cluster_with_admin`]).
    pub async fn forward(
        &self,
        leader_addr: &str,
        mut request: seal_proto::raft::HttpRequest,
    ) -> Result<seal_proto::raft::HttpResponse, AdminError> {
        let admin = self.admin.as_ref().ok_or_else(|| AdminError::Address {
            addr: leader_addr.to_string(),
            reason: "this node runs no cluster admin service".into(),
        })?;
        request.sender = self.node_id;
        let client: AdminClient = admin.client(leader_addr)?;
        client.forward(request).await
    }

    /// The address the Raft gRPC server listens on (cluster nodes only).
    pub fn listen_addr(&self) -> Option<SocketAddr> {
        self.server.as_ref().map(ServerHandle::addr)
    }

    /// What the Raft gRPC port's listener counted: connections open and refused, accept errors
    /// (cluster nodes only).
    pub fn connection_counts(&self) -> Option<Arc<ConnectionCounts>> {
        self.server.as_ref().map(ServerHandle::connection_counts)
    }

    /// Form a new cluster: record `members` (node id -> Raft address `host:port`) as the first
    /// membership, all voters. Call it on one node only, which must be among `members`; the
    /// others learn the membership from the leader that is then elected.
    pub async fn initialize(&self, members: BTreeMap<u64, String>) -> Result<(), MembershipError> {
        Membership::new(self.raft.clone(), self.node_id)
            .initialize(members, &self.identity)
            .await
    }

    /// The id of the cluster this node belongs to ([`crate::identity`]); `None` while it belongs
    /// to none (a new node not yet added to a cluster).
    pub fn cluster_id(&self) -> Option<String> {
        self.identity.get()
    }

    /// Add node `id` at Raft address `addr` as a learner (a non-voting replica) and return the
    /// log index of the membership entry. With `blocking`, also wait until the leader believes the
    /// learner's log has caught up; that waits as long as the learner cannot be reached, so bound
    /// it with a timeout. Adding an existing member does not change its address. On the leader, a
    /// new learner is preceded by a snapshot of the state as it is when more than
    /// `max_in_snapshot_log_to_keep` entries were applied since the last one (waited for at most
    /// 5 s), so that it is sent that instead of an older one and the log since.
    pub async fn add_learner(&self, id: u64, addr: impl Into<String>, blocking: bool) -> Result<u64, MembershipError> {
        Membership::new(self.raft.clone(), self.node_id)
            .add_learner(id, addr.into(), blocking)
            .await
    }

    /// Make exactly `voters` the voters (through a joint configuration) and return the log index
    /// of the final membership entry. Every new voter must already be a learner; voters left out
    /// are removed from the cluster (not kept as learners); learners stay learners.
    pub async fn change_membership(&self, voters: BTreeSet<u64>) -> Result<u64, MembershipError> {
        if voters.is_empty() {
            return Err(MembershipError::EmptyMembership);
        }
        Membership::new(self.raft.clone(), self.node_id)
            .change(ChangeMembers::ReplaceAllVoters(voters))
            .await
    }

    /// Propose a command and wait until it is committed and applied here.
    ///
    /// `Ok` carries the state machine's verdict (which may be a conflict);
    /// `Err` means the command was not applied through this node.
    pub async fn write(&self, command: Command) -> Result<ApplyOutcome, WriteError> {
        match self.raft.client_write(command).await {
            Ok(resp) => Ok(resp.data),
            Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f))) => Err(WriteError::ForwardToLeader {
                leader_id: f.leader_id,
                leader_addr: f.leader_node.map(|n| n.addr),
            }),
            Err(RaftError::APIError(e)) => Err(WriteError::Refused { reason: e.to_string() }),
            Err(RaftError::Fatal(f)) => Err(WriteError::Fatal {
                node_id: self.node_id,
                reason: f.to_string(),
            }),
        }
    }

    /// Reads of this node's applied state, which never wait for the state machine's writers.
    pub fn read(&self) -> Reader {
        self.store.reader()
    }

    /// The openraft handle, for membership changes and linearizable reads.
    pub fn raft(&self) -> &Raft {
        &self.raft
    }

    /// Current Raft progress of this node.
    pub fn metrics(&self) -> Metrics {
        let m = self.raft.metrics();
        let m = m.borrow();
        Metrics {
            node_id: m.id,
            term: m.current_term,
            leader: m.current_leader,
            is_leader: m.state == ServerState::Leader,
            last_log_index: m.last_log_index,
            applied_index: m.last_applied.map(|l| l.index),
            snapshot_index: m.snapshot.map(|l| l.index),
        }
    }

    /// This node's id.
    pub fn node_id(&self) -> u64 {
        self.node_id
    }

    /// How fresh this node's applied state is now ([`ReadState`]).
    pub fn read_state(&self) -> ReadState {
        let (is_leader, applied, term, quorum_ack) = {
            let m = self.raft.metrics();
            let m = m.borrow();
            (
                m.state == ServerState::Leader,
                m.last_applied,
                m.current_term,
                m.millis_since_quorum_ack,
            )
        };
        let applied_index = applied.map(|l| l.index);
        if is_leader {
            // Until an entry of its own term is applied, a new leader may not have applied
            // everything its predecessors committed.
            let caught_up = applied.is_some_and(|l| l.leader_id.term == term);
            return ReadState {
                is_leader,
                applied_index,
                last_contact: Some(Duration::ZERO),
                staleness: quorum_ack.filter(|_| caught_up).map(Duration::from_millis),
            };
        }
        let now = Instant::now();
        ReadState {
            is_leader,
            applied_index,
            last_contact: self.contact.last().map(|t| now.saturating_duration_since(t)),
            staleness: self
                .contact
                .in_sync_since(applied_index)
                .map(|t| now.saturating_duration_since(t)),
        }
    }

    /// Confirm with a quorum that this node still leads (openraft's ReadIndex) and wait until it
    /// has applied everything committed when the read began; returns the read index. Only the
    /// leader can; a follower gets [`WriteError::ForwardToLeader`]. Bounded by `timeout`.
    pub async fn ensure_linearizable(&self, timeout: Duration) -> Result<Option<u64>, WriteError> {
        match tokio::time::timeout(timeout, self.raft.ensure_linearizable()).await {
            Err(_) => Err(WriteError::Refused {
                reason: format!(
                    "node {} could not confirm its leadership with a quorum within {} ms",
                    self.node_id,
                    timeout.as_millis()
                ),
            }),
            Ok(Ok(read)) => Ok(read.map(|l| l.index)),
            Ok(Err(RaftError::APIError(CheckIsLeaderError::ForwardToLeader(f)))) => Err(WriteError::ForwardToLeader {
                leader_id: f.leader_id,
                leader_addr: f.leader_node.map(|n| n.addr),
            }),
            Ok(Err(RaftError::APIError(e))) => Err(WriteError::Refused { reason: e.to_string() }),
            Ok(Err(RaftError::Fatal(f))) => Err(WriteError::Fatal {
                node_id: self.node_id,
                reason: f.to_string(),
            }),
        }
    }

    /// Wait until this node is the leader (a single voter elects itself within
    /// an election timeout).
    pub async fn wait_until_leader(&self, timeout: Duration) -> Result<(), Error> {
        let id = self.node_id;
        self.raft
            .wait(Some(timeout))
            .metrics(
                move |m| m.current_leader == Some(id) && m.state == ServerState::Leader,
                "leader",
            )
            .await
            .map(|_| ())
            .map_err(|_| Error::Timeout {
                what: "leadership",
                millis: u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX),
            })
    }

    /// Wait until this node has applied the log up to `index` and readers of its store see every
    /// write up to there; whether it did within `timeout`. With `index` from another node's
    /// [`SealRaft::served_index`], this node then serves everything that node's response showed.
    pub async fn wait_applied(&self, index: u64, timeout: Duration) -> bool {
        self.watermark.wait_done(index, timeout).await
    }

    /// The log index a response built from this node's store so far reflects at most: read it
    /// after the response is built. openraft's applied index (in [`SealRaft::metrics`]) trails
    /// what readers of the store already see while a batch of entries is being applied.
    pub fn served_index(&self) -> u64 {
        self.watermark.begun()
    }

    /// Build a snapshot now and wait until it covers everything applied so far.
    /// Returns the snapshot's last index.
    pub async fn snapshot(&self, timeout: Duration) -> Result<Option<u64>, Error> {
        let applied = self.metrics().applied_index;
        self.raft.trigger().snapshot().await.map_err(|e| Error::Fatal {
            node_id: self.node_id,
            reason: e.to_string(),
        })?;
        let m = self
            .raft
            .wait(Some(timeout))
            .metrics(move |m| m.snapshot.map(|l| l.index) >= applied, "snapshot built")
            .await
            .map_err(|_| Error::Timeout {
                what: "snapshot",
                millis: u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX),
            })?;
        Ok(m.snapshot.map(|l| l.index))
    }

    /// Stop serving Raft RPCs (cluster nodes: refuse new ones, close the listener, give open
    /// connections up to 5 s), stop Raft and release the database (waiting up to 10 s for
    /// openraft's tasks to drop their handles; [`Reader`]s still held elsewhere keep the
    /// directory locked).
    pub async fn shutdown(self) -> Result<(), Error> {
        let SealRaft {
            raft,
            store,
            node_id,
            server,
            admin,
            identity,
            ..
        } = self;
        identity.release_store();
        if let Some(server) = server {
            server.stop(SERVER_SHUTDOWN_GRACE).await;
        }
        if let Some(admin) = admin {
            // Connections abandoned by `stop` may still hold the service: release its store.
            admin.release_store();
        }
        raft.shutdown().await.map_err(|e| Error::Fatal {
            node_id,
            reason: format!("raft task failed while shutting down: {e}"),
        })?;
        drop(raft);
        let deadline = Instant::now() + Duration::from_secs(10);
        while store.handle_count() > 1 {
            if Instant::now() >= deadline {
                return Err(Error::Timeout {
                    what: "raft tasks to release the store",
                    millis: 10_000,
                });
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        Ok(())
    }
}

/// Open the store under `config.data_dir` and start Raft over `network`.
async fn start<N: RaftNetworkFactory<TypeConfig>>(
    config: &RaftConfig,
    network: N,
    identity: &ClusterIdentity,
) -> Result<(Raft, Store, Arc<Watermark>), Error> {
    let oconfig = Arc::new(config.openraft_config()?);
    let data_dir = config.data_dir.clone();
    std::fs::create_dir_all(&data_dir).map_err(|source| Error::Io {
        path: data_dir.clone(),
        source,
    })?;
    let db_dir = data_dir.join("db");
    let node_id = config.node_id;
    let store = tokio::task::spawn_blocking(move || {
        let store = Store::open(db_dir)?;
        store.claim_node_id(node_id)?;
        Ok::<Store, seal_storage::Error>(store)
    })
    .await
    .map_err(|e| Error::Fatal {
        node_id,
        reason: format!("opening the store panicked: {e}"),
    })?
    .map_err(|source| Error::Storage {
        data_dir: data_dir.clone(),
        source,
    })?;
    identity.attach(store.clone()).map_err(|source| Error::Storage {
        data_dir: data_dir.clone(),
        source,
    })?;
    let snap_dir = data_dir.join("snapshots");
    let sm = StateMachine::new(store.clone(), &snap_dir).map_err(|source| Error::Io {
        path: snap_dir.clone(),
        source,
    })?;
    let watermark = sm.watermark();
    let sizes = sm.sizes();
    let log = LogStore::new(store.clone()).wait_for_applied(watermark.clone());
    let raft = Raft::new(node_id, oconfig, network, log, sm)
        .await
        .map_err(|e| Error::Fatal {
            node_id,
            reason: e.to_string(),
        })?;
    if let Some(min_entries) = config.snapshot_logs_since_last {
        if config.snapshot_log_percent > 0 {
            spawn_snapshot_policy(raft.clone(), sizes, min_entries, config.snapshot_log_percent);
        }
    }
    Ok((raft, store, watermark))
}

/// Whether a snapshot is due: at least `min_entries` entries applied since the last snapshot,
/// and commands of at least `log_percent` % of the last snapshot's size. With a state of S bytes,
/// building a snapshot costs about S; asking for S × `log_percent` % of new commands first keeps
/// that cost per byte committed bounded, however large the state grows, where a fixed entry count
/// would rewrite the whole state every `min_entries` entries. The log kept between snapshots is
/// then about `log_percent` % of the state's size.
pub(crate) fn snapshot_due(
    applied: Option<u64>,
    snapshot: Option<u64>,
    bytes_since: u64,
    snapshot_bytes: u64,
    min_entries: u64,
    log_percent: u64,
) -> bool {
    let entries = applied.unwrap_or(0).saturating_sub(snapshot.unwrap_or(0));
    entries >= min_entries && u128::from(bytes_since) * 100 >= u128::from(snapshot_bytes) * u128::from(log_percent)
}

/// How often the size-aware snapshot policy looks at the applied state, at most.
const SNAPSHOT_POLICY_PERIOD: Duration = Duration::from_millis(100);

/// Trigger snapshots by [`snapshot_due`], as the applied index moves; ends when Raft stops.
fn spawn_snapshot_policy(raft: Raft, sizes: Arc<SnapshotSizes>, min_entries: u64, log_percent: u64) {
    tokio::spawn(async move {
        let mut metrics = raft.metrics();
        // The snapshot index when this task last triggered a build: no new trigger until a
        // snapshot lands (openraft ignores triggers while it builds one anyway).
        let mut triggered_at: Option<Option<u64>> = None;
        while metrics.changed().await.is_ok() {
            let (applied, snapshot) = {
                let m = metrics.borrow_and_update();
                (m.last_applied.map(|l| l.index), m.snapshot.map(|l| l.index))
            };
            if triggered_at != Some(snapshot)
                && snapshot_due(
                    applied,
                    snapshot,
                    sizes.since_snapshot(),
                    sizes.snapshot_bytes(),
                    min_entries,
                    log_percent,
                )
            {
                if raft.trigger().snapshot().await.is_err() {
                    return;
                }
                triggered_at = Some(snapshot);
            }
            tokio::time::sleep(SNAPSHOT_POLICY_PERIOD).await;
        }
    });
}

#[cfg(test)]
mod tests {
    use super::snapshot_due;

    #[test]
    fn a_snapshot_is_due_after_enough_entries_and_enough_bytes() {
        // No snapshot yet: the entry count alone decides.
        assert!(!snapshot_due(Some(9), None, 0, 0, 10, 100));
        assert!(snapshot_due(Some(10), None, 0, 0, 10, 100));
        // After a snapshot of 1,000 bytes at index 10: 10 more entries and 1,000 more bytes.
        assert!(!snapshot_due(Some(19), Some(10), 5_000, 1_000, 10, 100));
        assert!(!snapshot_due(Some(20), Some(10), 999, 1_000, 10, 100));
        assert!(snapshot_due(Some(20), Some(10), 1_000, 1_000, 10, 100));
        // 50 %: half the snapshot's size; 0 %: entries alone.
        assert!(snapshot_due(Some(20), Some(10), 500, 1_000, 10, 50));
        assert!(snapshot_due(Some(20), Some(10), 0, 1_000, 10, 0));
        // No overflow at the extremes.
        assert!(!snapshot_due(Some(u64::MAX), Some(0), u64::MAX, u64::MAX, 1, u64::MAX));
        assert!(snapshot_due(Some(u64::MAX), None, u64::MAX, u64::MAX, 1, 100));
    }
}
