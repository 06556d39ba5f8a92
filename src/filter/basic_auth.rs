//! `basicAuth`: HTTP Basic authentication against configured users.
// TODO(issue 5): implement; until then validation rejects `basicAuth` as not supported yet.

use pingora::http::RequestHeader;

use crate::config::raw;
use crate::config::ConfigError;
use crate::proxy::checks::Refusal;

/// A compiled `basicAuth`.
#[derive(Debug)]
pub struct BasicAuth {}

/// Checks a site's `basicAuth`; every error carries its field path.
pub fn validate(_raw: &raw::BasicAuth, path: &str) -> Vec<ConfigError> {
    vec![ConfigError::new(
        path,
        "not supported yet: this version of Conduit does not implement this field; remove it",
    )]
}

/// Compiles a validated `basicAuth`.
pub fn compile(_raw: &raw::BasicAuth) -> BasicAuth {
    BasicAuth {}
}

impl BasicAuth {
    /// Whether the request carries valid credentials (401 otherwise).
    pub fn check(&self, _req: &mut RequestHeader, _path: &str) -> Result<(), Refusal> {
        Ok(())
    }
}
