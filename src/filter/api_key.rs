//! `apiKey`: requests must present one of the configured keys.
// TODO(issue 5): implement; until then validation rejects `apiKey` as not supported yet.

use pingora::http::RequestHeader;

use crate::config::raw;
use crate::config::ConfigError;
use crate::proxy::checks::Refusal;

/// A compiled `apiKey`.
#[derive(Debug)]
pub struct ApiKeyAuth {}

/// Checks a site's `apiKey`; every error carries its field path.
pub fn validate(_raw: &raw::ApiKey, path: &str) -> Vec<ConfigError> {
    vec![ConfigError::new(
        path,
        "not supported yet: this version of Conduit does not implement this field; remove it",
    )]
}

/// Compiles a validated `apiKey`.
pub fn compile(_raw: &raw::ApiKey) -> ApiKeyAuth {
    ApiKeyAuth {}
}

impl ApiKeyAuth {
    /// Whether the request carries a valid key (401 otherwise); removes it unless forwarded.
    pub fn check(&self, _req: &mut RequestHeader, _path: &str) -> Result<(), Refusal> {
        Ok(())
    }
}
