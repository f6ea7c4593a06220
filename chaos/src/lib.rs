//! seal-chaos: proves that a Seal deployment keeps its promises under faults.
//!
//! A run starts real `seal-node` and `seal-signer` processes ([`cluster`]),
//! drives a recorded [`workload`] through them while [`nemesis`] faults
//! kill, pause, partition (through each link's fault proxy), skew and slow
//! them, heals everything, and then checks the recorded [`history`] with the
//! [`checker`]: no acknowledged publish lost, versions linearizable per
//! collection, no expired or unverifiable metadata served, every node
//! converged to the same state, and publishes succeeding again after
//! healing. The [`report`] summarises a run for people; [`run`] ties it all
//! together. Processes, HTTP, certificates and the fault proxy come from
//! `seal-testkit`, the one harness the process tests use too.

#![forbid(unsafe_code)]
#![warn(missing_docs)]
pub mod checker;
pub mod cluster;
pub mod history;
pub mod nemesis;
pub mod report;
pub mod run;
pub mod workload;
