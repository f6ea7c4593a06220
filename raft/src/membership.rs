//! Membership operations over a Raft handle (initialize, add a learner, change the voters),
//! shared by [`crate::SealRaft`] and the admin service, with openraft's errors turned into
//! [`MembershipError`]s.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use openraft::error::{ChangeMembershipError, ClientWriteError, InitializeError, RaftError};
use openraft::metrics::WaitError;
use openraft::{BasicNode, ChangeMembers, ServerState};

use crate::error::MembershipError;
use crate::identity::ClusterIdentity;
use crate::tls::peer_host;
use crate::types::Raft;

/// How long adding a learner waits for the snapshot built for it ([`Membership::fresh_snapshot_for`]):
/// a checkpoint takes about 0.1 s at a million collections (docs/benchmarks.md).
const FRESH_SNAPSHOT_WAIT: Duration = Duration::from_secs(5);

/// Membership operations over a Raft handle, shared by [`crate::SealRaft`] and the admin service.
pub(crate) struct Membership {
    raft: Raft,
    node_id: u64,
}

impl Membership {
    pub(crate) fn new(raft: Raft, node_id: u64) -> Membership {
        Membership { raft, node_id }
    }

    /// See [`crate::SealRaft::initialize`].
    pub(crate) async fn initialize(
        &self,
        members: BTreeMap<u64, String>,
        identity: &ClusterIdentity,
    ) -> Result<(), MembershipError> {
        if members.is_empty() {
            return Err(MembershipError::EmptyMembership);
        }
        let mut nodes = BTreeMap::new();
        for (id, addr) in members {
            check_addr(id, &addr)?;
            nodes.insert(id, BasicNode::new(addr));
        }
        let fatal = |reason: String| MembershipError::Fatal {
            node_id: self.node_id,
            reason,
        };
        if !nodes.contains_key(&self.node_id) {
            return Err(MembershipError::NotInMembers {
                node_id: self.node_id,
                members: nodes.keys().copied().collect(),
            });
        }
        // A node that already holds a cluster's log keeps its id; openraft refuses it below.
        if !self.raft.is_initialized().await.map_err(|e| fatal(e.to_string()))? {
            identity.ensure().map_err(fatal)?;
        }
        let ids: Vec<u64> = nodes.keys().copied().collect();
        match self.raft.initialize(nodes).await {
            Ok(()) => Ok(()),
            Err(RaftError::APIError(InitializeError::NotAllowed(e))) => Err(MembershipError::AlreadyInitialized {
                node_id: self.node_id,
                reason: e.to_string(),
            }),
            Err(RaftError::APIError(InitializeError::NotInMembers(e))) => Err(MembershipError::NotInMembers {
                node_id: e.node_id,
                members: ids,
            }),
            Err(RaftError::Fatal(f)) => Err(MembershipError::Fatal {
                node_id: self.node_id,
                reason: f.to_string(),
            }),
        }
    }

    /// See [`crate::SealRaft::add_learner`].
    pub(crate) async fn add_learner(&self, id: u64, addr: String, blocking: bool) -> Result<u64, MembershipError> {
        check_addr(id, &addr)?;
        self.fresh_snapshot_for(id).await;
        self.raft
            .add_learner(id, BasicNode::new(addr), blocking)
            .await
            .map(|r| r.log_id.index)
            .map_err(|e| membership_error(self.node_id, e))
    }

    /// On the leader, before node `id` joins as a new learner: a snapshot of the state as it is
    /// now, when more than `max_in_snapshot_log_to_keep` entries were applied since the last one.
    /// A new learner is sent the latest snapshot, then every entry after it, which it applies one
    /// by one: several times slower per byte than receiving the snapshot (docs/benchmarks.md, "A
    /// million collections"), so a fresh snapshot leaves it little more than the transfer. Best
    /// effort and bounded by [`FRESH_SNAPSHOT_WAIT`]: the learner is added whatever happens here.
    async fn fresh_snapshot_for(&self, id: u64) {
        let (applied, snapshot) = {
            let m = self.raft.metrics();
            let m = m.borrow();
            let member = m.membership_config.membership().nodes().any(|(n, _)| *n == id);
            let Some(applied) = m.last_applied.map(|l| l.index) else {
                return;
            };
            if m.state != ServerState::Leader || member {
                return;
            }
            (applied, m.snapshot.map(|l| l.index))
        };
        let since = snapshot.map_or(applied.saturating_add(1), |s| applied.saturating_sub(s));
        if since <= self.raft.config().max_in_snapshot_log_to_keep {
            return;
        }
        let deadline = Instant::now() + FRESH_SNAPSHOT_WAIT;
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            if self.raft.trigger().snapshot().await.is_err() {
                return;
            }
            // A build already under way ignores the trigger: after it lands, trigger again.
            let built = self
                .raft
                .wait(Some(left.min(Duration::from_secs(1))))
                .metrics(
                    |m| m.snapshot.is_some_and(|s| s.index >= applied),
                    "a snapshot for a new learner",
                )
                .await;
            match built {
                Ok(_) => {
                    tracing::info!(learner = id, index = applied, "built a snapshot for a new learner");
                    return;
                }
                Err(WaitError::Timeout(..)) => continue,
                Err(WaitError::ShuttingDown) => return,
            }
        }
        tracing::warn!(
            learner = id,
            wait = ?FRESH_SNAPSHOT_WAIT,
            "no fresh snapshot for a new learner in time: it is added with the last one"
        );
    }

    /// Apply one membership change and return the log index of the final membership entry.
    pub(crate) async fn change(&self, change: ChangeMembers<u64, BasicNode>) -> Result<u64, MembershipError> {
        self.raft
            .change_membership(change, false)
            .await
            .map(|r| r.log_id.index)
            .map_err(|e| membership_error(self.node_id, e))
    }
}

fn membership_error(node_id: u64, e: RaftError<u64, ClientWriteError<u64, BasicNode>>) -> MembershipError {
    match e {
        RaftError::APIError(ClientWriteError::ForwardToLeader(f)) => MembershipError::ForwardToLeader {
            leader_id: f.leader_id,
            leader_addr: f.leader_node.map(|n| n.addr),
        },
        RaftError::APIError(ClientWriteError::ChangeMembershipError(c)) => match c {
            ChangeMembershipError::InProgress(p) => MembershipError::InProgress { reason: p.to_string() },
            ChangeMembershipError::EmptyMembership(_) => MembershipError::EmptyMembership,
            ChangeMembershipError::LearnerNotFound(l) => MembershipError::LearnerNotFound { node_id: l.node_id },
        },
        RaftError::Fatal(f) => MembershipError::Fatal {
            node_id,
            reason: f.to_string(),
        },
    }
}

/// Check that `addr` is a usable Raft address for node `id`.
pub(crate) fn check_addr(id: u64, addr: &str) -> Result<(), MembershipError> {
    peer_host(addr)
        .map(|_| ())
        .map_err(|reason| MembershipError::InvalidAddress {
            node_id: id,
            addr: addr.to_string(),
            reason,
        })
}
