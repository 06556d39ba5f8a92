//! The fixed request filter chain that runs after routing and before admission: access control
//! (client addresses, then credentials, then an external decision). Each filter is compiled from
//! the site's (or the route's) config into an immutable part of the snapshot and answers a request
//! with the identity it established or a denial.

pub mod api_key;
pub mod basic_auth;
#[cfg(feature = "consumers")]
pub mod consumers;
#[cfg(feature = "forward-auth")]
pub mod forward_auth;
pub mod ip_filter;
#[cfg(feature = "jwt")]
pub mod jwt;
pub mod rate_limit;
pub mod secret;
pub mod transform;

use std::net::IpAddr;
use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderName, HeaderValue};
use pingora::http::RequestHeader;

use crate::config::load::join;
use crate::config::raw;
use crate::config::ConfigError;
use crate::proxy::checks::Refusal;

/// Verified JWT claims, as JSON.
pub type Claims = Arc<serde_json::Map<String, serde_json::Value>>;

/// The access filters that apply to one route (the site's, with the route's own replacing them
/// field by field), in the order they run.
#[derive(Debug, Default, Clone)]
pub struct Access {
    pub ip: Option<Arc<ip_filter::IpFilter>>,
    pub basic: Option<Arc<basic_auth::BasicAuth>>,
    pub api_key: Option<Arc<api_key::ApiKeyAuth>>,
    #[cfg(feature = "jwt")]
    pub jwt: Option<Arc<jwt::JwtAuth>>,
    #[cfg(feature = "consumers")]
    pub consumers: Option<Arc<consumers::Consumers>>,
    #[cfg(feature = "forward-auth")]
    pub forward: Option<Arc<forward_auth::ForwardAuth>>,
}

/// Who a request was established to come from.
#[derive(Debug, Default, Clone)]
pub struct Identity {
    /// The consumer the credentials belong to (`consumers`).
    pub consumer: Option<Arc<Consumer>>,
    /// Claims of a verified JWT.
    pub claims: Option<Claims>,
}

/// A compiled consumer, as requests see it.
#[derive(Debug)]
pub struct Consumer {
    pub name: Arc<str>,
    /// Added to the forwarded request.
    pub headers: Vec<(HeaderName, HeaderValue)>,
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
    /// The client connection is TLS.
    pub tls: bool,
}

/// Why a request does not go on.
#[derive(Debug)]
pub enum Denial {
    /// Conduit's own answer (a JSON error with the request id).
    Refused(Refusal),
    /// An answer decided elsewhere (the `forwardAuth` service's), passed to the client as is.
    Answer(Box<Answer>),
}

/// A complete response to send instead of proxying.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub headers: Vec<(HeaderName, HeaderValue)>,
    pub body: Bytes,
}

impl From<Refusal> for Denial {
    fn from(r: Refusal) -> Self {
        Denial::Refused(r)
    }
}

/// The raw access fields of a site or a route.
#[derive(Clone, Copy, Default)]
pub struct AccessFields<'a> {
    pub ip_filter: Option<&'a raw::IpFilter>,
    pub basic_auth: Option<&'a raw::BasicAuth>,
    pub api_key: Option<&'a raw::ApiKey>,
    pub jwt_auth: Option<&'a raw::JwtAuth>,
    pub forward_auth: Option<&'a raw::ForwardAuth>,
}

impl<'a> AccessFields<'a> {
    pub fn of_site(s: &'a raw::Site) -> Self {
        AccessFields {
            ip_filter: s.ip_filter.as_ref(),
            basic_auth: s.basic_auth.as_ref(),
            api_key: s.api_key.as_ref(),
            jwt_auth: s.jwt_auth.as_ref(),
            forward_auth: s.forward_auth.as_ref(),
        }
    }

    pub fn of_route(o: &'a raw::RouteOptions) -> Self {
        AccessFields {
            ip_filter: o.ip_filter.as_ref(),
            basic_auth: o.basic_auth.as_ref(),
            api_key: o.api_key.as_ref(),
            jwt_auth: o.jwt_auth.as_ref(),
            forward_auth: o.forward_auth.as_ref(),
        }
    }

    /// Whether any access field is set.
    pub fn any(&self) -> bool {
        self.ip_filter.is_some()
            || self.basic_auth.is_some()
            || self.api_key.is_some()
            || self.jwt_auth.is_some()
            || self.forward_auth.is_some()
    }
}

/// Why a field cannot be used: its feature was left out of this binary. Names the bundle that
/// has it (`redis` is in `full`, the others in `standard`).
pub(crate) fn feature_missing(feature: &str) -> String {
    let bundle = if feature == "redis" {
        "full"
    } else {
        "standard"
    };
    format!(
        "needs the `{feature}` feature, which this conduit binary was built without \
         (build with `--features {feature}` or `--features {bundle}`)"
    )
}

/// Runs an async check to completion in a unit test, on a fresh current-thread Tokio runtime
/// (password hashes are verified on Tokio's blocking pool).
#[cfg(test)]
#[allow(clippy::unwrap_used)]
pub(crate) fn block_on<T>(f: impl std::future::Future<Output = T>) -> T {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(f)
}

/// The error for a field whose feature this binary was built without.
#[allow(dead_code)]
fn needs_feature(path: &str, feature: &str) -> ConfigError {
    ConfigError::new(path, feature_missing(feature))
}

/// Checks the access fields of a site or a route (`path` is the site's or the route's path).
pub fn validate(f: AccessFields<'_>, has_trusted_proxies: bool, path: &str) -> Vec<ConfigError> {
    let mut errors = Vec::new();
    if let Some(r) = f.ip_filter {
        errors.extend(ip_filter::validate(
            r,
            has_trusted_proxies,
            &join(path, "ipFilter"),
        ));
    }
    if let Some(r) = f.basic_auth {
        errors.extend(basic_auth::validate(r, &join(path, "basicAuth")));
    }
    if let Some(r) = f.api_key {
        errors.extend(api_key::validate(r, &join(path, "apiKey")));
    }
    if let Some(_r) = f.jwt_auth {
        #[cfg(feature = "jwt")]
        errors.extend(jwt::validate(_r, &join(path, "jwtAuth")));
        #[cfg(not(feature = "jwt"))]
        errors.push(needs_feature(&join(path, "jwtAuth"), "jwt"));
    }
    if let Some(_r) = f.forward_auth {
        #[cfg(feature = "forward-auth")]
        errors.extend(forward_auth::validate(_r, &join(path, "forwardAuth")));
        #[cfg(not(feature = "forward-auth"))]
        errors.push(needs_feature(&join(path, "forwardAuth"), "forward-auth"));
    }
    errors
}

/// Checks a site's `consumers`.
pub fn validate_consumers(_c: &raw::Consumers, _site: &raw::Site, path: &str) -> Vec<ConfigError> {
    #[cfg(feature = "consumers")]
    return consumers::validate(_c, _site, path);
    #[cfg(not(feature = "consumers"))]
    vec![needs_feature(path, "consumers")]
}

impl Access {
    /// Compiles a site's filters. `site_id` names state kept across reloads (JWKS key sets).
    pub fn compile_site(s: &raw::Site, _site_id: &str) -> Result<Access, ConfigError> {
        let mut a = Access::default().with(AccessFields::of_site(s), _site_id)?;
        #[cfg(feature = "consumers")]
        if let Some(c) = &s.consumers {
            a.consumers = Some(Arc::new(consumers::compile(c, s)?));
        }
        let _ = &mut a;
        Ok(a)
    }

    /// These filters with the ones set in `f` replacing them, field by field.
    pub fn with(mut self, f: AccessFields<'_>, _id: &str) -> Result<Access, ConfigError> {
        if let Some(r) = f.ip_filter {
            self.ip = Some(Arc::new(ip_filter::compile(r)));
        }
        if let Some(r) = f.basic_auth {
            self.basic = Some(Arc::new(basic_auth::compile(r)));
        }
        if let Some(r) = f.api_key {
            self.api_key = Some(Arc::new(api_key::compile(r)));
        }
        #[cfg(feature = "jwt")]
        if let Some(r) = f.jwt_auth {
            self.jwt = Some(Arc::new(jwt::compile(r, _id)?));
        }
        #[cfg(feature = "forward-auth")]
        if let Some(r) = f.forward_auth {
            self.forward = Some(Arc::new(forward_auth::compile(r)?));
        }
        Ok(self)
    }

    /// Whether no filter is configured (the common case: nothing to run).
    pub fn is_empty(&self) -> bool {
        let empty = self.ip.is_none() && self.api_key.is_none() && self.basic.is_none();
        #[cfg(feature = "jwt")]
        let empty = empty && self.jwt.is_none();
        #[cfg(feature = "consumers")]
        let empty = empty && self.consumers.is_none();
        #[cfg(feature = "forward-auth")]
        let empty = empty && self.forward.is_none();
        empty
    }

    /// Whether an API key may arrive in the query string (kept out of the access log).
    pub fn reads_query_key(&self) -> bool {
        let reads = self.api_key.is_some();
        #[cfg(feature = "consumers")]
        let reads = reads || self.consumers.as_ref().is_some_and(|c| c.reads_api_keys());
        reads
    }

    /// Runs the filters in order; the first denial wins. `path` is the normalised request path.
    /// May remove credentials from `req` (and add what the filters learned) before it is
    /// forwarded.
    pub async fn check(
        &self,
        req: &mut RequestHeader,
        path: &str,
        peer: Peer,
    ) -> Result<Identity, Denial> {
        #[allow(unused_mut)]
        let mut identity = Identity::default();
        if let Some(f) = &self.ip {
            f.check(peer)?;
        }
        if let Some(f) = &self.basic {
            f.check(req, path).await?;
        }
        if let Some(f) = &self.api_key {
            f.check(req, path)?;
        }
        #[cfg(feature = "jwt")]
        if let Some(f) = &self.jwt {
            identity.claims = f.check(req, path).await?;
        }
        #[cfg(feature = "consumers")]
        if let Some(f) = &self.consumers {
            if let Some((consumer, claims)) = f.check(req, path, identity.claims.as_ref()).await? {
                identity.consumer = Some(consumer);
                if claims.is_some() {
                    identity.claims = claims;
                }
            }
        }
        #[cfg(feature = "forward-auth")]
        if let Some(f) = &self.forward {
            f.check(req, path, peer).await?;
        }
        Ok(identity)
    }
}
