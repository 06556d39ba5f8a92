//! The fixed request filter chain that runs after routing and before admission: access control
//! (client addresses, then credentials). Each filter is compiled from the site's config into an
//! immutable part of the snapshot and answers a request with `Ok` or a refusal.

pub mod api_key;
pub mod basic_auth;
pub mod ip_filter;
pub mod secret;

use pingora::http::RequestHeader;
use std::net::IpAddr;

use crate::proxy::checks::Refusal;

/// The access filters of one site, in the order they run.
#[derive(Debug, Default)]
pub struct SiteAccess {
    pub ip: Option<ip_filter::IpFilter>,
    pub api_key: Option<api_key::ApiKeyAuth>,
    pub basic: Option<basic_auth::BasicAuth>,
}

/// What the filters may look at besides the request header.
#[derive(Debug, Clone, Copy)]
pub struct Peer {
    /// The socket peer.
    pub peer: Option<IpAddr>,
    /// The client address after `trustedProxies` (X-Forwarded-For from a trusted peer).
    pub client: Option<IpAddr>,
    /// The socket peer is one of the site's `trustedProxies`.
    pub trusted: bool,
}

impl SiteAccess {
    /// Runs the filters in order; the first refusal wins. `path` is the normalised request path.
    /// May remove credentials from `req` before it is forwarded.
    pub fn check(&self, req: &mut RequestHeader, path: &str, peer: Peer) -> Result<(), Refusal> {
        if let Some(f) = &self.ip {
            f.check(peer)?;
        }
        if let Some(f) = &self.basic {
            f.check(req, path)?;
        }
        if let Some(f) = &self.api_key {
            f.check(req, path)?;
        }
        Ok(())
    }

    /// Whether no filter is configured (the common case: nothing to run).
    pub fn is_empty(&self) -> bool {
        self.ip.is_none() && self.api_key.is_none() && self.basic.is_none()
    }
}
