//! `ipFilter`: allow and deny lists of client addresses (IPv4 and IPv6 CIDRs).
// TODO(issue 5): implement; until then validation rejects `ipFilter` as not supported yet.

use crate::config::raw;
use crate::config::ConfigError;
use crate::proxy::checks::Refusal;

use super::Peer;

/// A compiled `ipFilter`.
#[derive(Debug)]
pub struct IpFilter {}

/// Checks a site's `ipFilter`; every error carries its field path.
pub fn validate(_raw: &raw::IpFilter, path: &str) -> Vec<ConfigError> {
    vec![ConfigError::new(
        path,
        "not supported yet: this version of Conduit does not implement this field; remove it",
    )]
}

/// Compiles a validated `ipFilter`.
pub fn compile(_raw: &raw::IpFilter) -> IpFilter {
    IpFilter {}
}

impl IpFilter {
    /// Whether the request's client may pass (403 otherwise).
    pub fn check(&self, _peer: Peer) -> Result<(), Refusal> {
        Ok(())
    }
}
