//! `seal-node`: the library behind Seal's server node.
//!
//! It speaks Notary v0.7.0's HTTP API in front of a [`http::Backend`], whose
//! implementation [`backend::RaftBackend`] reads and writes through seal-raft
//! and leaves every TUF rule to seal-tuf:
//!
//! * [`tuf1`] is the HTTP edge of standard TUF 1.0 repositories (`/tuf/…`, `docs/tuf.md`),
//!   served beside Notary's API from the same storage, signers and refresher;
//! * [`routes`] parses request paths into typed routes (GUNs with slashes,
//!   checksum- and version-named files) and applies `repositories.gun_prefixes`;
//! * [`multipart`] parses uploads, keeping delegation roles' raw filenames;
//! * [`http`] is the axum app: limits, headers, changefeed queries, metrics;
//! * [`error`] maps every error to Notary's status and exact JSON body;
//! * [`goquote`] is Go's `strconv.Quote`, for the texts Notary quotes;
//! * [`cache`] builds the `Cache-Control` and `Last-Modified` headers;
//! * [`config`] loads the node's JSON config with environment overrides, into
//!   the typed sections the other modules take (`limits.*` as
//!   [`config::UploadLimits`], …);
//! * [`auth`] is token authentication (`auth.type = "token"`, Docker
//!   registry v2 tokens as Notary checks them) behind [`http::AuthHook`];
//!   [`token_server`] is a small token issuer for development and tests
//!   (run by its own binary, `seal-token-server`);
//! * [`metrics`] holds the Prometheus registry;
//! * [`backend`] is the real backend: Raft reads and writes, seal-tuf
//!   validation, generation and refresh plans, the timestamp refresher;
//!   [`clock`] is where its `now` comes from;
//! * [`cluster`] is cluster mode: write forwarding to the leader, the read
//!   gate (staleness bound), the `cluster` commands' output;
//!   [`local_cluster`] is `seal-node local-cluster`, a loopback cluster for
//!   trying Seal out;
//! * [`server`] starts a node (`seal-node dev` and `serve`), [`tls`] loads its TLS
//!   identity, [`listen`] is the accept loop with its connection cap and timeouts;
//! * [`import`] is `seal-node import-notary`: a Notary server's database into a cluster;
//! * [`signer`] is the signing seam ([`signer::CryptoService`]) and
//!   [`signer::InProcessSigner`], seal-signer's core in the node's process;
//!   [`remote_signer`] reaches signer services over gRPC, failing over
//!   between them;
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
pub mod clock;
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
pub mod operate;
pub mod remote_signer;
pub mod routes;
pub mod server;
pub mod signer;
#[cfg(any(test, feature = "testing"))]
pub mod testing;
pub mod tls;
pub mod token_server;
pub mod tuf1;
