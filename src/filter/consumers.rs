//! `consumers`: named API clients (placeholder until implemented).

use std::sync::Arc;

use pingora::http::RequestHeader;

use super::{Claims, Consumer};
use crate::config::raw;
use crate::config::ConfigError;
use crate::proxy::checks::Refusal;

/// Compiled `consumers`.
#[derive(Debug)]
pub struct Consumers {}

/// Checks `consumers`; every error carries its field path.
pub fn validate(_raw: &raw::Consumers, _site: &raw::Site, path: &str) -> Vec<ConfigError> {
    vec![ConfigError::new(path, "not supported yet")]
}

/// Compiles `consumers`.
pub fn compile(_raw: &raw::Consumers, _site: &raw::Site) -> Result<Consumers, ConfigError> {
    Ok(Consumers {})
}

impl Consumers {
    /// Whether consumers may send API keys (which may arrive in the query string).
    pub fn reads_api_keys(&self) -> bool {
        false
    }

    /// The consumer the request's credentials belong to, or `None` on a skipped path.
    pub fn check(
        &self,
        _req: &mut RequestHeader,
        _path: &str,
        _claims: Option<&Claims>,
    ) -> Result<Option<Arc<Consumer>>, Refusal> {
        Ok(None)
    }
}
