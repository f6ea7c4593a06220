//! `seal-node`: the library behind Seal's server node.
//!
//! It speaks Notary v0.7.0's HTTP API in front of a [`http::Backend`] (the
//! Raft-replicated store and the TUF core, wired in later):
//!
//! * [`routes`] parses request paths into typed routes (GUNs with slashes,
//!   checksum- and version-named files) and applies `repositories.gun_prefixes`;
//! * [`multipart`] parses uploads, keeping delegation roles' raw filenames;
//! * [`http`] is the axum app: limits, headers, changefeed queries, metrics;
//! * [`error`] maps every error to Notary's status and exact JSON body;
//! * [`goquote`] is Go's `strconv.Quote`, for the texts Notary quotes;
//! * [`cache`] builds the `Cache-Control` and `Last-Modified` headers;
//! * [`config`] loads the node's JSON config with environment overrides;
//! * [`auth`] is token authentication (`auth.type = "token"`, Docker
//!   registry v2 tokens as Notary checks them) behind [`http::AuthHook`];
//!   [`token_server`] is a small token issuer for development and tests;
//! * [`metrics`] holds the Prometheus registry;
//! * [`backend`] is the real backend: Raft reads and writes, seal-tuf
//!   validation and generation, the timestamp refresher;
//! * [`server`] starts a node (`seal-node dev` and `serve`), [`tls`] loads its TLS
//!   identity, [`listen`] is the accept loop with its connection cap and timeouts;
//! * [`import`] is `seal-node import-notary`: a Notary server's database into a cluster;
//! * [`signer`] is the signing seam ([`signer::CryptoService`]) and the
//!   in-process [`signer::LocalSigner`];
//! * `testing` (only with the `testing` feature, and in unit tests) holds the
//!   bodies of the HTTP-edge fuzz targets in `fuzz/` and a checker of HTTP
//!   answers;
//! * `faults` (only with the test-only `fault-injection` feature) follows the
//!   file named by `SEAL_FAULTS_FILE`: clock offset, slow fsync, publishes
//!   acknowledged before they commit.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod auth;
pub mod backend;
pub mod cache;
pub mod cluster;
pub mod config;
pub mod error;
#[cfg(feature = "fault-injection")]
pub mod faults;
pub mod goquote;
pub mod http;
pub mod import;
pub mod listen;
pub mod local_cluster;
pub mod metrics;
pub mod multipart;
pub mod remote_signer;
pub mod routes;
pub mod server;
pub mod signer;
#[cfg(any(test, feature = "testing"))]
pub mod testing;
pub mod tls;
pub mod token_server;
