//! Upstreams: target URLs, pools of targets with their selection, and the registry that keeps
//! pools alive across reloads.

pub mod health;
pub mod pool;
pub mod registry;
pub mod target;

pub use pool::{Pool, PoolSpec};
pub use registry::PoolRegistry;
