//! The HTTP/1 connection guard: a stream wrapper that sees the client's bytes before Pingora's
//! parser and enforces what that parser leaves open.
//!
//! - a total deadline for each request head (a slowloris client sending one byte every few seconds
//!   is answered 408 and closed), from the first byte of the head to its blank line;
//! - an idle timeout between requests on a keep-alive connection (closed quietly);
//! - the request line must be origin-form, `METHOD SP /target SP HTTP/1.x`, with no raw spaces or
//!   control characters in the target (400), and at most 8 KiB (414).
//!
//! After a `101 Switching Protocols` the stream is passed through untouched.

use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use pingora::protocols::Stream;

use super::delegate::delegate_stream_traits;
use std::future::Future;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

/// Longest request line accepted.
pub const MAX_REQUEST_LINE: usize = 8 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Reading a request head; the deadline runs.
    Head,
    /// Head complete; body bytes (if any) flow freely.
    Body,
    /// A response was written; the next byte starts a new head.
    Idle,
    /// Upgraded connection: no more HTTP/1 parsing.
    Passthrough,
}

/// A client stream with head deadlines and request-line checks.
pub struct GuardedStream {
    inner: Stream,
    phase: Phase,
    head_timeout: Duration,
    idle_timeout: Duration,
    /// One timer per connection. It is reset only when a deadline moves earlier or when it
    /// fires before the current deadline, so a busy keep-alive connection touches the timer
    /// wheel about once per idle period, not once per request.
    timer: Pin<Box<Sleep>>,
    timer_at: Instant,
    /// The deadline of the current phase, if any.
    deadline: Option<Instant>,
    /// Whether the current head has its deadline set.
    head_armed: bool,
    /// A response write happened since the idle deadline was set.
    wrote: bool,
    /// Bytes of the current request line seen so far (when not yet complete).
    line: Vec<u8>,
    line_done: bool,
    head_bytes: usize,
    /// Matcher state for the blank line ending the head.
    eoh: u8,
    /// A response to write before failing the read (bytes, written so far).
    reject: Option<(Vec<u8>, usize, io::ErrorKind)>,
}

impl std::fmt::Debug for GuardedStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GuardedStream")
            .field("inner", &self.inner)
            .field("phase", &self.phase)
            .finish()
    }
}

impl GuardedStream {
    /// Wraps a freshly accepted client stream; the first head's deadline starts now.
    pub fn new(inner: Stream, head_timeout: Duration, idle_timeout: Duration) -> Self {
        let first = Instant::now() + head_timeout;
        Self {
            inner,
            phase: Phase::Head,
            head_timeout,
            idle_timeout,
            timer: Box::pin(tokio::time::sleep_until(first)),
            timer_at: first,
            deadline: Some(first),
            head_armed: true,
            wrote: false,
            line: Vec::new(),
            line_done: false,
            head_bytes: 0,
            eoh: 0,
            reject: None,
        }
    }

    fn set_deadline(&mut self, at: Instant) {
        self.deadline = Some(at);
        if at < self.timer_at {
            self.timer.as_mut().reset(at);
            self.timer_at = at;
        }
    }

    /// Polls the timer; true once the current deadline has passed.
    fn expired(&mut self, cx: &mut Context<'_>) -> bool {
        let Some(deadline) = self.deadline else {
            return false;
        };
        loop {
            if self.timer.as_mut().poll(cx).is_pending() {
                return false;
            }
            if Instant::now() >= deadline {
                self.deadline = None;
                return true;
            }
            // Fired for an earlier deadline: wait for the current one.
            self.timer.as_mut().reset(deadline);
            self.timer_at = deadline;
        }
    }

    /// The first bytes of a response went out: the connection is idle until the next request,
    /// or passes through untouched after a protocol switch.
    fn after_response(&mut self, first: &[u8]) {
        if first.starts_with(b"HTTP/1.1 101") || first.starts_with(b"HTTP/1.0 101") {
            self.phase = Phase::Passthrough;
            self.deadline = None;
        } else {
            self.phase = Phase::Idle;
            self.wrote = false;
            self.set_deadline(Instant::now() + self.idle_timeout);
        }
    }

    /// More of a response went out. Noted without reading the clock: when the idle timer
    /// fires, a connection that wrote since gets a new idle period instead of being closed, so a
    /// long streamed response is never cut while it makes progress.
    fn response_progress(&mut self) {
        self.wrote = true;
    }

    fn start_head(&mut self) {
        // The head deadline is set only if the head does not arrive in one read.
        self.phase = Phase::Head;
        self.deadline = None;
        self.head_armed = false;
        self.line.clear();
        self.line_done = false;
        self.head_bytes = 0;
        self.eoh = 0;
    }

    fn reject_with(&mut self, status: u16, reason: &str, kind: io::ErrorKind) {
        let id = crate::proxy::request_id::generate();
        let body =
            format!("{{\"error\":\"{reason}\",\"status\":{status},\"request_id\":\"{id}\"}}\n");
        let phrase = crate::proxy::failure::reason(status);
        let head = format!(
            "HTTP/1.1 {status} {phrase}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nX-Request-ID: {id}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        self.reject = Some((head.into_bytes(), 0, kind));
    }

    /// Scans newly read head bytes; Err(()) when the request line is bad (reject set).
    /// The request line is checked in place when it arrives in one read (the usual case), and
    /// the end of the head is found by jumping from line end to line end.
    fn scan(&mut self, new: &[u8]) -> Result<(), ()> {
        self.head_bytes += new.len();
        let mut rest = new;
        while !self.line_done {
            let Some(nl) = rest.iter().position(|&b| b == b'\n') else {
                if self.line.len() + rest.len() > MAX_REQUEST_LINE {
                    self.reject_with(414, "request line too long", io::ErrorKind::InvalidData);
                    return Err(());
                }
                self.line.extend_from_slice(rest);
                return Ok(());
            };
            let (part, after) = rest.split_at(nl);
            rest = after.get(1..).unwrap_or_default();
            let verdict = {
                let full: &[u8] = if self.line.is_empty() {
                    part
                } else {
                    self.line.extend_from_slice(part);
                    &self.line
                };
                let line = full.strip_suffix(b"\r").unwrap_or(full);
                if line.len() > MAX_REQUEST_LINE {
                    Some((414, "request line too long"))
                } else if line.is_empty() {
                    // Empty lines before a request line are tolerated (RFC 9112 §2.2).
                    None
                } else if valid_request_line(line) {
                    self.line_done = true;
                    None
                } else {
                    Some((400, "malformed request line"))
                }
            };
            self.line.clear();
            if let Some((status, reason)) = verdict {
                self.reject_with(status, reason, io::ErrorKind::InvalidData);
                return Err(());
            }
            if self.line_done {
                self.eoh = 1;
            }
        }
        // After the request line: look for an empty line (CRLF CRLF or LF LF).
        let mut i = 0;
        while let Some(&b) = rest.get(i) {
            if self.eoh == 0 {
                match rest
                    .get(i..)
                    .and_then(|r| r.iter().position(|&b| b == b'\n'))
                {
                    Some(p) => {
                        i += p + 1;
                        self.eoh = 1;
                        continue;
                    }
                    None => return Ok(()),
                }
            }
            self.eoh = match (self.eoh, b) {
                (1, b'\r') => 2,
                (1, b'\n') | (2, b'\n') => {
                    self.phase = Phase::Body;
                    self.deadline = None;
                    return Ok(());
                }
                _ => 0,
            };
            i += 1;
        }
        Ok(())
    }
}

/// `METHOD SP origin-form SP HTTP/1.x`.
pub fn valid_request_line(line: &[u8]) -> bool {
    let mut parts = line.split(|b| *b == b' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return false;
    };
    let tchar = |b: &u8| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(b);
    !method.is_empty()
        && method.iter().all(tchar)
        && target.first() == Some(&b'/')
        && target.iter().all(|b| (0x21..=0x7e).contains(b))
        && (version == b"HTTP/1.1" || version == b"HTTP/1.0")
}

impl AsyncRead for GuardedStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        loop {
            if let Some((bytes, written, kind)) = &mut this.reject {
                while *written < bytes.len() {
                    match ready!(Pin::new(&mut this.inner).poll_write(cx, &bytes[*written..])) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => *written += n,
                    }
                }
                let _ = Pin::new(&mut this.inner).poll_flush(cx);
                return Poll::Ready(Err(io::Error::new(
                    *kind,
                    "request refused by connection guard",
                )));
            }
            match this.phase {
                Phase::Body | Phase::Passthrough => {
                    return Pin::new(&mut this.inner).poll_read(cx, buf)
                }
                Phase::Head => {
                    if this.expired(cx) {
                        if this.head_bytes == 0 {
                            // Nothing sent at all: close quietly.
                            return Poll::Ready(Ok(()));
                        }
                        this.reject_with(408, "request header timeout", io::ErrorKind::TimedOut);
                        continue;
                    }
                }
                Phase::Idle => {
                    while this.expired(cx) {
                        if this.wrote {
                            // Still streaming a response: start a new idle period.
                            this.wrote = false;
                            this.set_deadline(Instant::now() + this.idle_timeout);
                            continue;
                        }
                        // Keep-alive idle timeout: end of stream, closed quietly.
                        return Poll::Ready(Ok(()));
                    }
                }
            }
            let before = buf.filled().len();
            ready!(Pin::new(&mut this.inner).poll_read(cx, buf))?;
            let after = buf.filled().len();
            if after == before {
                return Poll::Ready(Ok(()));
            }
            if this.phase == Phase::Idle {
                this.start_head();
            }
            let refused = this.scan(&buf.filled()[before..after]).is_err();
            if refused {
                buf.set_filled(before);
                continue;
            }
            if this.phase == Phase::Head && !this.head_armed {
                this.head_armed = true;
                this.set_deadline(Instant::now() + this.head_timeout);
            }
            return Poll::Ready(Ok(()));
        }
    }
}

impl AsyncWrite for GuardedStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        match this.phase {
            Phase::Body if !data.is_empty() => this.after_response(data),
            Phase::Idle => this.response_progress(),
            _ => {}
        }
        Pin::new(&mut this.inner).poll_write(cx, data)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        match this.phase {
            Phase::Body => {
                if let Some(first) = bufs.iter().find(|b| !b.is_empty()) {
                    this.after_response(first);
                }
            }
            Phase::Idle => this.response_progress(),
            _ => {}
        }
        Pin::new(&mut this.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

delegate_stream_traits!(GuardedStream, inner);

#[cfg(test)]
mod tests {
    use super::valid_request_line;

    #[test]
    fn request_lines() {
        assert!(valid_request_line(b"GET /a?b=c HTTP/1.1"));
        assert!(valid_request_line(b"POST / HTTP/1.0"));
        assert!(!valid_request_line(b"GET /a b HTTP/1.1"));
        assert!(!valid_request_line(b"GET http://x/ HTTP/1.1"));
        assert!(!valid_request_line(b"OPTIONS * HTTP/1.1"));
        assert!(!valid_request_line(b"CONNECT x:443 HTTP/1.1"));
        assert!(!valid_request_line(b"GET / HTTP/2.0"));
        assert!(!valid_request_line(b"GET  / HTTP/1.1"));
        assert!(!valid_request_line(b"GET /\x01 HTTP/1.1"));
    }
}
