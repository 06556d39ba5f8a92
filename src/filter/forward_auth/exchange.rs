//! One auth request over the shared client connector (src/proxy/client.rs), so auth requests
//! share its connection pool. A connection goes back to the pool only after the whole response
//! body was read and the response allows keep-alive; otherwise it is closed.

use bytes::{Bytes, BytesMut};
use http::HeaderMap;
use pingora::http::RequestHeader;
use pingora::protocols::http::client::HttpSession;
use pingora::upstreams::peer::{HttpPeer, Peer};

/// The largest auth response body read; a bigger one is not passed on.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// Informational (1xx) heads read before the final one at most.
const MAX_INFORMATIONAL: usize = 8;

/// Attempts on pooled connections that turn out to be closed before a fresh one is used.
const MAX_STALE_RETRIES: usize = 2;

/// The auth service's answer.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: HeaderMap,
    /// The body, or `None` when it was longer than [`MAX_BODY_BYTES`].
    pub body: Option<Bytes>,
}

/// Why no answer came from the auth service.
#[derive(Debug, thiserror::Error)]
pub enum Failure {
    #[error("{0}")]
    Io(Box<pingora::Error>),
    #[error("the auth service answered with too many informational responses")]
    Informational,
    #[error("the auth service switched protocols")]
    Upgrade,
    #[error("the client connector could not be built")]
    Connector,
}

impl From<Box<pingora::Error>> for Failure {
    fn from(e: Box<pingora::Error>) -> Self {
        Failure::Io(e)
    }
}

/// Where an exchange failed: before anything of the answer arrived (safe to try again on
/// another connection: the auth request has no body and asks a question only) or later.
enum Failed {
    BeforeAnswer(Failure),
    During(Failure),
}

/// Sends `header` (no body) to `peer` and reads the answer. The caller bounds the time.
pub async fn ask(peer: &HttpPeer, header: &RequestHeader) -> Result<Reply, Failure> {
    let connector = crate::proxy::client::connector()
        .await
        .ok_or(Failure::Connector)?;
    let mut stale = 0;
    loop {
        let (mut http, reused) = connector.get_http_session(peer).await?;
        match exchange(&mut http, header).await {
            Ok(reply) => {
                if reply.body.is_some() {
                    // The body was read to its end: the connection may serve the next request.
                    if let HttpSession::H1(h1) = &mut http {
                        h1.respect_keepalive();
                    }
                    connector
                        .release_http_session(http, peer, peer.idle_timeout())
                        .await;
                }
                return Ok(reply);
            }
            // A pooled connection the service closed meanwhile: try another one.
            Err(Failed::BeforeAnswer(_)) if reused && stale < MAX_STALE_RETRIES => stale += 1,
            Err(Failed::BeforeAnswer(e) | Failed::During(e)) => return Err(e),
        }
    }
}

async fn exchange(http: &mut HttpSession, header: &RequestHeader) -> Result<Reply, Failed> {
    http.write_request_header(Box::new(header.clone()))
        .await
        .map_err(|e| Failed::BeforeAnswer(e.into()))?;
    http.finish_request_body()
        .await
        .map_err(|e| Failed::BeforeAnswer(e.into()))?;
    let mut informational = 0;
    let mut first = true;
    let (status, headers) = loop {
        http.read_response_header().await.map_err(|e| {
            if first {
                Failed::BeforeAnswer(e.into())
            } else {
                Failed::During(e.into())
            }
        })?;
        first = false;
        let Some(h) = http.response_header() else {
            return Err(Failed::During(Failure::Informational));
        };
        if h.status == http::StatusCode::SWITCHING_PROTOCOLS {
            return Err(Failed::During(Failure::Upgrade));
        }
        if !h.status.is_informational() {
            break (h.status.as_u16(), h.headers.clone());
        }
        informational += 1;
        if informational > MAX_INFORMATIONAL {
            return Err(Failed::During(Failure::Informational));
        }
    };
    let mut body = BytesMut::new();
    while let Some(chunk) = http
        .read_response_body()
        .await
        .map_err(|e| Failed::During(e.into()))?
    {
        if body.len() + chunk.len() > MAX_BODY_BYTES {
            return Ok(Reply {
                status,
                headers,
                body: None,
            });
        }
        body.extend_from_slice(&chunk);
    }
    Ok(Reply {
        status,
        headers,
        body: Some(body.freeze()),
    })
}
