//! Conduit: a reverse proxy and API gateway on Pingora, driven by one YAML/JSON file.
//!
//! The flow: [`config`] (load + validate) → [`compile`] → [`snapshot::Snapshot`] held by a
//! [`snapshot::SnapshotHandle`] → [`proxy::Gateway`] serving requests inside [`server`].

pub mod cli;
pub mod compile;
pub mod config;
pub mod ext;
pub mod filter;
pub mod observe;
pub mod proxy;
pub mod schema;
pub mod server;
pub mod snapshot;
pub mod tls;
pub mod upstream;
