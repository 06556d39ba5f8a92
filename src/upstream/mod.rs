//! Upstreams: target URLs, pools of targets with their strategies and resilience state (health,
//! ejection, breaker, retry budget, sticky sessions), and the registry that keeps that state
//! alive across reloads.

pub mod budget;
pub mod endpoint;
pub mod health;
pub mod pool;
pub mod registry;
pub mod sticky;
pub mod strategy;
pub mod target;

pub use pool::{Pool, PoolSpec};
pub use registry::PoolRegistry;
