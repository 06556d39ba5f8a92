//! A boxed Pingora stream as a concrete type, so the TLS handshake can run over the stream a
//! listener handed to Conduit.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use pingora::protocols::Stream;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::server::delegate::delegate_other_traits;

/// A Pingora `Stream` (`Box<dyn IO>`) wrapped in a sized type. With `h2` set it reports HTTP/2
/// as its negotiated protocol: a plaintext connection that opened with the HTTP/2 preface on an
/// `h2c` port, which Pingora then serves as HTTP/2 (prior knowledge).
#[derive(Debug)]
pub struct Boxed {
    pub inner: Stream,
    pub h2: bool,
}

impl Boxed {
    /// The stream as it is.
    pub fn new(inner: Stream) -> Boxed {
        Boxed { inner, h2: false }
    }

    /// The stream, reporting HTTP/2 prior knowledge.
    pub fn prior_knowledge_h2(inner: Stream) -> Boxed {
        Boxed { inner, h2: true }
    }
}

impl AsyncRead for Boxed {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for Boxed {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

impl pingora::protocols::Ssl for Boxed {
    fn get_ssl(&self) -> Option<&pingora::protocols::tls::TlsRef> {
        self.inner.get_ssl()
    }
    fn get_ssl_digest(&self) -> Option<std::sync::Arc<pingora::protocols::tls::SslDigest>> {
        self.inner.get_ssl_digest()
    }
    fn selected_alpn_proto(&self) -> Option<pingora::protocols::ALPN> {
        if self.h2 {
            Some(pingora::protocols::ALPN::H2)
        } else {
            self.inner.selected_alpn_proto()
        }
    }
}

delegate_other_traits!(Boxed, inner);
