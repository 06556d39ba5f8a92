//! TLS termination: certificates loaded from PEM files, chosen by SNI, and the rustls server
//! configuration of each TLS port (versions, cipher suites, client certificates, ALPN).
//!
//! Everything here is built at compile time; a reload (including one triggered by a changed
//! certificate file) builds a new acceptor, so new handshakes use the new certificates while
//! established connections keep theirs.

pub mod certs;
pub mod client_cert;
pub mod config;
pub mod resolver;
pub mod stream;

pub use config::{PortTls, TlsPolicy};
