//! Process logging through `tracing` (Pingora's `log` records are routed into it).

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

/// Installs the stderr subscriber. `CONDUIT_LOG` (or `RUST_LOG`) overrides the default filter.
pub fn init(default_filter: &str) {
    let filter = std::env::var("CONDUIT_LOG")
        .or_else(|_| std::env::var("RUST_LOG"))
        .unwrap_or_else(|_| default_filter.to_string());
    let _ = tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::new(filter))
        .with_writer(std::io::stderr)
        .with_target(false)
        .with_ansi(std::io::stderr().is_terminal())
        .try_init();
}
