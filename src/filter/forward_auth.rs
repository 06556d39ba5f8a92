//! `forwardAuth`: an external service decides about each request (placeholder until implemented).

use pingora::http::RequestHeader;

use super::{Denial, Peer};
use crate::config::raw;
use crate::config::ConfigError;

/// A compiled `forwardAuth`.
#[derive(Debug)]
pub struct ForwardAuth {}

/// Checks a `forwardAuth`; every error carries its field path.
pub fn validate(_raw: &raw::ForwardAuth, path: &str) -> Vec<ConfigError> {
    vec![ConfigError::new(path, "not supported yet")]
}

/// Compiles a `forwardAuth`.
pub fn compile(_raw: &raw::ForwardAuth) -> Result<ForwardAuth, ConfigError> {
    Ok(ForwardAuth {})
}

impl ForwardAuth {
    /// Asks the auth service; on a 2xx copies `responseHeaders` onto `req`.
    pub async fn check(
        &self,
        _req: &mut RequestHeader,
        _path: &str,
        _peer: Peer,
    ) -> Result<(), Denial> {
        Ok(())
    }
}
