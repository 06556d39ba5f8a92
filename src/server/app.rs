//! The listening application: puts every HTTP/1 client stream behind the connection guard, then
//! hands it to Pingora's HTTP proxy running the [`Gateway`].

use std::sync::Arc;

use async_trait::async_trait;
use pingora::apps::ServerApp;
use pingora::protocols::{Stream, ALPN};
use pingora::proxy::HttpProxy;
use pingora::server::ShutdownWatch;

use super::connections::CONNECTIONS;
use super::guard::GuardedStream;
use crate::compile::{DEFAULT_HEADER_TIMEOUT, DEFAULT_IDLE_TIMEOUT};
use crate::proxy::Gateway;
use crate::snapshot::SnapshotHandle;

/// Pingora's HTTP proxy with Conduit's connection guard in front.
pub struct GatewayApp {
    pub proxy: Arc<HttpProxy<Gateway>>,
    pub handle: Arc<SnapshotHandle>,
}

#[async_trait]
impl ServerApp for GatewayApp {
    async fn process_new(
        self: &Arc<Self>,
        stream: Stream,
        shutdown: &ShutdownWatch,
    ) -> Option<Stream> {
        let digest = stream.get_socket_digest();
        let port = digest
            .as_ref()
            .and_then(|d| d.local_addr().and_then(|a| a.as_inet()).map(|a| a.port()));
        let (head, idle, track) = port
            .and_then(|p| {
                self.handle
                    .load()
                    .ports
                    .get(&p)
                    .map(|s| (s.header_timeout, s.idle_timeout, s.track_connections))
            })
            .unwrap_or((DEFAULT_HEADER_TIMEOUT, DEFAULT_IDLE_TIMEOUT, false));
        let _counted = if track {
            digest
                .as_ref()
                .and_then(|d| d.peer_addr().and_then(|a| a.as_inet()).map(|a| a.ip()))
                .map(|ip| CONNECTIONS.open(ip))
        } else {
            None
        };
        let stream: Stream = if matches!(stream.selected_alpn_proto(), Some(ALPN::H2)) {
            stream
        } else {
            Box::new(GuardedStream::new(stream, head, idle))
        };
        ServerApp::process_new(&self.proxy, stream, shutdown).await
    }

    async fn cleanup(&self) {
        ServerApp::cleanup(self.proxy.as_ref()).await
    }
}
