//! A boxed Pingora stream as a concrete type, so the TLS handshake can run over the stream a
//! listener handed to Conduit.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use pingora::protocols::Stream;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::server::delegate::{delegate_other_traits, delegate_stream_traits};

/// A Pingora `Stream` (`Box<dyn IO>`) wrapped in a sized type.
#[derive(Debug)]
pub struct Boxed(pub Stream);

impl AsyncRead for Boxed {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl AsyncWrite for Boxed {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

delegate_stream_traits!(Boxed, 0);

/// A plaintext stream that opened with the HTTP/2 preface on an `h2c` port: it reports HTTP/2 as
/// its negotiated protocol, so Pingora serves it as HTTP/2 (prior knowledge).
#[derive(Debug)]
pub struct PriorKnowledgeH2(pub Stream);

impl AsyncRead for PriorKnowledgeH2 {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl AsyncWrite for PriorKnowledgeH2 {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

impl pingora::protocols::Ssl for PriorKnowledgeH2 {
    fn selected_alpn_proto(&self) -> Option<pingora::protocols::ALPN> {
        Some(pingora::protocols::ALPN::H2)
    }
}

delegate_other_traits!(PriorKnowledgeH2, 0);
