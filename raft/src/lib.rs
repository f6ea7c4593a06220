//! `seal-raft`: Seal's replication layer on openraft 0.9 (storage-v2 API).
//!
//! * [`types`] declares the openraft type configuration ([`TypeConfig`]):
//!   commands are [`seal_storage::Command`]s and responses
//!   [`seal_storage::ApplyOutcome`]s; snapshots stream through files.
//! * [`LogStore`] implements openraft's log storage over the `raft_log` and
//!   `raft_meta` column families of [`seal_storage::Store`] (fsync'd appends).
//! * [`StateMachine`] applies committed entries through
//!   [`seal_storage::Store::apply`] (one atomic write batch each) and builds and
//!   installs file snapshots.
//! * [`network`] is the placeholder network of a single-node deployment ([`SealRaft::open`]).
//! * [`grpc`] is the network of a cluster: openraft's RPCs over tonic gRPC
//!   (`seal-proto`'s `seal.raft.v1.Raft` service), client side and the
//!   service answering them; [`tls`] loads and checks the cluster's mutual TLS
//!   ([`ClusterTls`]); `server` runs the Raft port, one listener for the
//!   transport and the admin services, with its connection cap
//!   ([`ConnectionCounts`]).
//! * [`SealRaft`] ties it together: open a data directory, start Raft, and
//!   either initialize a fresh single-voter cluster ([`SealRaft::open`]) or
//!   join a multi-node cluster over gRPC ([`SealRaft::open_cluster`], then
//!   [`SealRaft::initialize`], [`SealRaft::add_learner`],
//!   [`SealRaft::change_membership`]); write commands, read state.
//! * [`contact`] records when a follower last heard from its leader and with which commit index,
//!   from which [`SealRaft::read_state`] tells how stale the node's applied state may be.
//! * `membership` holds the membership operations (initialize, add a learner, change voters)
//!   shared by [`SealRaft`] and the admin service.
//! * [`identity`] is the cluster id every member records and every call between nodes carries,
//!   so that nodes of two clusters never mix.
//! * [`recovery`] works on a stopped node's data: backups, restores, and forcing a new
//!   one-voter cluster from a survivor after a majority is lost.
//! * [`admin`] serves the cluster admin API (`seal.raft.v1.ClusterAdmin`) and write forwarding
//!   (`seal.raft.v1.Forwarding`) on the Raft port ([`SealRaft::open_cluster_with_admin`]), and
//!   is the client of both ([`AdminClient`]).
#![warn(missing_docs)]
#![forbid(unsafe_code)]
// openraft's storage traits return its `StorageError` (over 200 bytes) by value;
// boxing it in our helpers would only move the allocation, not remove it.
#![allow(clippy::result_large_err)]

pub mod admin;
mod codec;
pub mod contact;
pub mod error;
pub mod grpc;
pub mod identity;
pub mod log_store;
mod membership;
pub mod network;
mod node;
pub mod recovery;
mod server;
pub mod snapshot_data;
pub mod state_machine;
pub mod tls;
pub mod types;

pub use admin::{AdminClient, AdminError, ForwardHandler, StatusReporter};
pub use contact::LeaderContact;
pub use error::{Error, MembershipError, WriteError};
pub use identity::{ClusterIdentity, CLUSTER_ID_HEADER};
pub use log_store::LogStore;
pub use node::{Metrics, RaftConfig, ReadState, SealRaft, DEFAULT_MAX_CONNECTIONS};
pub use server::ConnectionCounts;
pub use state_machine::StateMachine;
pub use tls::ClusterTls;
pub use types::TypeConfig;
