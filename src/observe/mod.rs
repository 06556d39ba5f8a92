//! Observability: the access log and process logging.

pub mod access_log;
pub mod logging;
