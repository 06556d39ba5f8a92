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
use crate::tls::client_cert;
use crate::tls::stream::Boxed;

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
        let snapshot = self.handle.load();
        let sites = port.and_then(|p| snapshot.ports.get(&p));
        let (head, idle) = sites.map_or((DEFAULT_HEADER_TIMEOUT, DEFAULT_IDLE_TIMEOUT), |s| {
            (s.header_timeout, s.idle_timeout)
        });
        let _counted = if sites.is_some_and(|s| s.track_connections) {
            digest
                .as_ref()
                .and_then(|d| d.peer_addr().and_then(|a| a.as_inet()).map(|a| a.ip()))
                .map(|ip| CONNECTIONS.open(ip))
        } else {
            None
        };
        let tls = sites.and_then(|s| s.tls.clone());
        let h2c = sites.is_some_and(|s| s.h2c);
        drop(snapshot);
        let mut _client_cert = None;
        let mut stream = match tls {
            Some(tls) => {
                // The handshake shares the request-head deadline: a client that stalls in it
                // is dropped like one that stalls in its request.
                match tokio::time::timeout(head, tls.acceptor.tls_handshake(Boxed::new(stream)))
                    .await
                {
                    Ok(Ok(s)) => {
                        if tls.policy.client_auth.is_some() {
                            _client_cert = remember_client_cert(&s, digest.as_deref());
                        }
                        Box::new(s) as Stream
                    }
                    Ok(Err(e)) => {
                        tracing::debug!(error = %e, "TLS handshake failed");
                        return None;
                    }
                    Err(_) => {
                        tracing::debug!("TLS handshake timed out");
                        return None;
                    }
                }
            }
            None => stream,
        };
        if h2c && opens_with_h2_preface(&mut stream, head).await {
            stream = Box::new(Boxed::prior_knowledge_h2(stream));
        }
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

/// The HTTP/2 connection preface a prior-knowledge (h2c) client opens with.
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Whether a plaintext connection opens with the HTTP/2 preface (waiting up to `deadline` for
/// its first 24 bytes). Pingora's peek reads them and puts them back for whichever protocol then
/// serves the connection.
async fn opens_with_h2_preface(stream: &mut Stream, deadline: std::time::Duration) -> bool {
    let mut buf = [0u8; H2_PREFACE.len()];
    matches!(
        tokio::time::timeout(deadline, stream.try_peek(&mut buf)).await,
        Ok(Ok(true))
    ) && buf == H2_PREFACE
}

/// Keeps the verified client certificate of a TLS connection findable by its requests.
fn remember_client_cert(
    stream: &dyn pingora::protocols::IO,
    digest: Option<&pingora::protocols::SocketDigest>,
) -> Option<client_cert::Registered> {
    let der = stream.get_ssl()?.peer_certificate_der()?;
    let cert = client_cert::ClientCert::from_der(der)?;
    let digest = digest?;
    let client = digest.peer_addr()?.as_inet()?;
    let local = digest.local_addr()?.as_inet()?;
    Some(client_cert::register(*client, *local, cert))
}
