//! Seal's client: the library behind the `seal` CLI, which speaks Notary's
//! command set. A trust directory holds the encrypted private keys
//! (`private/`), the last verified metadata of each collection and its
//! staged changes (`tuf/<gun>/metadata`, `tuf/<gun>/changelist`), laid out as
//! Notary lays them out so an existing `~/.notary` works unchanged.

#![forbid(unsafe_code)]
#![warn(missing_docs)]
pub mod atomic;
pub mod auth;
pub mod changelist;
pub mod config;
pub mod error;
pub mod keystore;
pub mod layout;
pub mod remote;
pub mod repo;
