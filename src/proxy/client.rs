//! The client connector Conduit uses when it talks to upstreams itself (hedged attempts, mirror
//! copies), outside Pingora's proxy loop. One per process, so those requests share a connection
//! pool.

use std::sync::OnceLock;

use pingora::connectors::http::Connector;

static CONNECTOR: OnceLock<Connector> = OnceLock::new();

/// The shared connector. Building it reads the platform's CA certificates (blocking file I/O),
/// so the first call does that on Tokio's blocking pool, never on a worker serving requests.
pub async fn connector() -> Option<&'static Connector> {
    if let Some(c) = CONNECTOR.get() {
        return Some(c);
    }
    tokio::task::spawn_blocking(|| CONNECTOR.get_or_init(|| Connector::new(None)))
        .await
        .ok()
}
