//! [`SealRaft`]: a running Raft node over one data directory.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use openraft::error::{ClientWriteError, RaftError};
use openraft::{BasicNode, ServerState, SnapshotPolicy};
use seal_storage::{ApplyOutcome, Command, Reader, Store};

use crate::error::{Error, WriteError};
use crate::log_store::LogStore;
use crate::network::NoNetwork;
use crate::state_machine::StateMachine;
use crate::types::Raft;

/// How to run a node. Built once from the node's configuration and handed down.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RaftConfig {
    /// This node's id.
    pub node_id: u64,
    /// This node's Raft address, recorded in the membership.
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
    /// Log entries kept after a snapshot, for lagging followers.
    pub max_in_snapshot_log_to_keep: u64,
}

impl RaftConfig {
    /// Defaults suited to a LAN: 50 ms heartbeats, 150-300 ms elections, a
    /// snapshot every 10,000 entries keeping 1,000.
    pub fn new(node_id: u64, addr: impl Into<String>, data_dir: impl Into<PathBuf>) -> RaftConfig {
        RaftConfig {
            node_id,
            addr: addr.into(),
            data_dir: data_dir.into(),
            heartbeat_interval: Duration::from_millis(50),
            election_timeout_min: Duration::from_millis(150),
            election_timeout_max: Duration::from_millis(300),
            snapshot_logs_since_last: Some(10_000),
            max_in_snapshot_log_to_keep: 1_000,
        }
    }

    fn openraft_config(&self) -> Result<openraft::Config, Error> {
        let ms = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        openraft::Config {
            cluster_name: "seal".into(),
            heartbeat_interval: ms(self.heartbeat_interval),
            election_timeout_min: ms(self.election_timeout_min),
            election_timeout_max: ms(self.election_timeout_max),
            snapshot_policy: match self.snapshot_logs_since_last {
                Some(n) => SnapshotPolicy::LogsSinceLast(n),
                None => SnapshotPolicy::Never,
            },
            max_in_snapshot_log_to_keep: self.max_in_snapshot_log_to_keep,
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
}

impl std::fmt::Debug for SealRaft {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SealRaft")
            .field("node_id", &self.node_id)
            .field("data_dir", &self.data_dir)
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
        let oconfig = Arc::new(config.openraft_config()?);
        let data_dir = config.data_dir.clone();
        std::fs::create_dir_all(&data_dir).map_err(|source| Error::Io {
            path: data_dir.clone(),
            source,
        })?;
        let db_dir = data_dir.join("db");
        let store = tokio::task::spawn_blocking(move || Store::open(db_dir))
            .await
            .map_err(|e| Error::Fatal {
                node_id: config.node_id,
                reason: format!("opening the store panicked: {e}"),
            })?
            .map_err(|source| Error::Storage {
                data_dir: data_dir.clone(),
                source,
            })?;
        let snap_dir = data_dir.join("snapshots");
        let sm = StateMachine::new(store.clone(), &snap_dir).map_err(|source| Error::Io {
            path: snap_dir.clone(),
            source,
        })?;
        let log = LogStore::new(store.clone());
        let node_id = config.node_id;
        let fatal = |e: &dyn std::fmt::Display| Error::Fatal {
            node_id,
            reason: e.to_string(),
        };
        let raft = Raft::new(node_id, oconfig, NoNetwork, log, sm)
            .await
            .map_err(|e| fatal(&e))?;
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
            data_dir,
        })
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

    /// Lock-free reads of this node's applied state.
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

    /// Stop Raft and release the database (waiting up to 10 s for openraft's
    /// tasks to drop their handles; [`Reader`]s still held elsewhere keep the
    /// directory locked).
    pub async fn shutdown(self) -> Result<(), Error> {
        let SealRaft {
            raft, store, node_id, ..
        } = self;
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
