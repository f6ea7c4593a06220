//! The Raft network of a single-voter node: every RPC fails as unreachable.
//!
//! A single voter never sends RPCs, so this is only reached after a membership
//! change that adds nodes to a node opened with [`crate::SealRaft::open`]; such
//! a membership cannot make progress, and each attempt reports which node could
//! not be reached. Multi-node clusters are opened with
//! [`crate::SealRaft::open_cluster`], which uses [`crate::grpc::GrpcNetwork`].

use openraft::error::{InstallSnapshotError, RPCError, RaftError, Unreachable};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse, VoteRequest,
    VoteResponse,
};
use openraft::BasicNode;

use crate::types::TypeConfig;

/// Why an RPC could not be sent.
#[derive(Debug, Clone, thiserror::Error)]
#[error("no raft transport in this build: cannot reach node {target} at {addr:?} ({rpc})")]
pub struct NoTransport {
    /// The target node id.
    pub target: u64,
    /// Its address from the membership.
    pub addr: String,
    /// The RPC attempted.
    pub rpc: &'static str,
}

/// Network factory whose clients fail every RPC with [`Unreachable`].
#[derive(Debug, Clone, Default)]
pub struct NoNetwork;

/// A client for one target; see [`NoNetwork`].
#[derive(Debug, Clone)]
pub struct NoNetworkClient {
    target: u64,
    addr: String,
}

impl NoNetworkClient {
    fn unreachable<E: std::error::Error>(&self, rpc: &'static str) -> RPCError<u64, BasicNode, E> {
        RPCError::Unreachable(Unreachable::new(&NoTransport {
            target: self.target,
            addr: self.addr.clone(),
            rpc,
        }))
    }
}

impl RaftNetworkFactory<TypeConfig> for NoNetwork {
    type Network = NoNetworkClient;

    async fn new_client(&mut self, target: u64, node: &BasicNode) -> Self::Network {
        NoNetworkClient {
            target,
            addr: node.addr.clone(),
        }
    }
}

impl RaftNetwork<TypeConfig> for NoNetworkClient {
    async fn append_entries(
        &mut self,
        _rpc: AppendEntriesRequest<TypeConfig>,
        _option: RPCOption,
    ) -> Result<AppendEntriesResponse<u64>, RPCError<u64, BasicNode, RaftError<u64>>> {
        Err(self.unreachable("append_entries"))
    }

    async fn install_snapshot(
        &mut self,
        _rpc: InstallSnapshotRequest<TypeConfig>,
        _option: RPCOption,
    ) -> Result<InstallSnapshotResponse<u64>, RPCError<u64, BasicNode, RaftError<u64, InstallSnapshotError>>> {
        Err(self.unreachable("install_snapshot"))
    }

    async fn vote(
        &mut self,
        _rpc: VoteRequest<u64>,
        _option: RPCOption,
    ) -> Result<VoteResponse<u64>, RPCError<u64, BasicNode, RaftError<u64>>> {
        Err(self.unreachable("vote"))
    }
}
