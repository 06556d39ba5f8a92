//! `jwtAuth`: bearer JSON Web Tokens (placeholder until implemented).

use pingora::http::RequestHeader;

use super::Claims;
use crate::config::raw;
use crate::config::ConfigError;
use crate::proxy::checks::Refusal;

/// A compiled `jwtAuth`.
#[derive(Debug)]
pub struct JwtAuth {}

/// Checks a `jwtAuth`; every error carries its field path.
pub fn validate(_raw: &raw::JwtAuth, path: &str) -> Vec<ConfigError> {
    vec![ConfigError::new(path, "not supported yet")]
}

/// Compiles a `jwtAuth`; `id` names the state kept across reloads.
pub fn compile(_raw: &raw::JwtAuth, _id: &str) -> Result<JwtAuth, ConfigError> {
    Ok(JwtAuth {})
}

impl JwtAuth {
    /// The verified claims, or `None` when the path is skipped.
    pub async fn check(
        &self,
        _req: &mut RequestHeader,
        _path: &str,
    ) -> Result<Option<Claims>, Refusal> {
        Ok(None)
    }
}
