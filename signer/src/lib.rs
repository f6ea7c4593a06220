//! Seal's signer: holds the server-managed timestamp and snapshot keys so
//! that server nodes never hold private keys, and checks what it signs.
//!
//! [`core`] holds [`store`]'s key records and applies [`policy`] before
//! every signature; keys live in a [`backend`]: [`software`]
//! (JWE-encrypted), [`pkcs11`] (an HSM), or [`threshold`] (FROST shares
//! over several signers, which talk through the peer protocol in
//! `seal_proto::threshold`). [`service`] serves the core as the
//! Notary-compatible gRPC API; a node running its signer in process calls
//! the core directly. Every operation fails with an [`Error`]. [`server`] starts it all from
//! [`config`] and serves [`metrics`]; [`client`] is what server nodes use to
//! call a signer; [`admin`] holds the operator commands (`rewrap`, and for a
//! threshold cluster `status` and `refresh-shares`); [`import`] brings
//! notary-signer's keys over (`import-notary`); [`backup`] copies the store
//! while the signer runs and seeds a new data directory from it.

#![forbid(unsafe_code)]
#![warn(missing_docs)]
pub mod admin;
pub mod backend;
pub mod backup;
pub mod client;
pub mod config;
pub mod core;
pub mod error;
pub mod import;
pub mod metrics;
pub mod pkcs11;
pub mod policy;
pub mod server;
pub mod service;
pub mod software;
pub mod store;
#[cfg(feature = "testing")]
pub mod testing;
pub mod threshold;
pub mod tls;
pub mod wire;

pub use error::{Error, Result};

/// Installs ring as the process's rustls provider (Seal uses one provider).
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}
