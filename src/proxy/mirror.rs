//! Request mirroring (a route's `mirror`): a copy of every proxied request, body included, is sent
//! to a shadow upstream and its answer is read and discarded.
//!
//! The copy never slows or breaks the primary request. [`start`] (from
//! `upstream_request_filter`, once per request) clones the final upstream request header and
//! spawns one task per request; [`MirrorFeed::feed`] (from `request_body_filter`) hands the body
//! chunks to that task over a bounded channel with `try_send`. When the channel is full, the
//! task is gone, or too many mirror tasks run, the copy is abandoned, never waited for. A task
//! whose body did not arrive completely aborts the connection instead of sending a truncated
//! body. Failures are logged at debug level only and counted in [`stats`].

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use bytes::Bytes;
use pingora::http::RequestHeader;
use pingora::protocols::http::client::HttpSession;
use pingora::proxy::Session;
use pingora::upstreams::peer::Peer;
use tokio::sync::mpsc;

use super::ctx::RequestCtx;
use crate::snapshot::{RouteRef, Site};

/// Body chunks that may wait for a mirror task before the copy is abandoned.
pub const CHANNEL_CHUNKS: usize = 64;

/// Mirror tasks that may run at once in the process; beyond it requests are not mirrored.
pub const MAX_TASKS: usize = 1024;

/// Responses of at most this many informational (1xx) heads are read before the final one.
const MAX_INFORMATIONAL: usize = 8;

static RUNNING: AtomicUsize = AtomicUsize::new(0);
static STARTED: AtomicU64 = AtomicU64::new(0);
static SKIPPED: AtomicU64 = AtomicU64::new(0);
static ABANDONED: AtomicU64 = AtomicU64::new(0);
static FAILED: AtomicU64 = AtomicU64::new(0);
static COMPLETED: AtomicU64 = AtomicU64::new(0);

/// Process-wide mirror counters since start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MirrorStats {
    /// Mirror tasks running now.
    pub running: usize,
    /// Mirror tasks started.
    pub started: u64,
    /// Requests not mirrored because [`MAX_TASKS`] tasks were running.
    pub skipped: u64,
    /// Copies given up on the request path (channel full, task gone, body gap).
    pub abandoned: u64,
    /// Copies that failed in the task (connect, write, read, timeout, incomplete body).
    pub failed: u64,
    /// Copies whose response was read to the end.
    pub completed: u64,
}

/// The mirror counters; for metrics and tests.
pub fn stats() -> MirrorStats {
    MirrorStats {
        running: RUNNING.load(Ordering::Relaxed),
        started: STARTED.load(Ordering::Relaxed),
        skipped: SKIPPED.load(Ordering::Relaxed),
        abandoned: ABANDONED.load(Ordering::Relaxed),
        failed: FAILED.load(Ordering::Relaxed),
        completed: COMPLETED.load(Ordering::Relaxed),
    }
}

/// One piece of the request body for the mirror task; `end` marks the last one.
#[derive(Debug)]
struct Part {
    data: Bytes,
    end: bool,
}

/// The request side of one request's mirror copy (lives in `RequestCtx`).
#[derive(Debug, Default)]
pub struct MirrorFeed {
    state: State,
}

#[derive(Debug, Default)]
enum State {
    /// `start` has not run for this request yet.
    #[default]
    NotStarted,
    /// The task waits for body chunks; `fed` body bytes were handed to it so far.
    Streaming { tx: mpsc::Sender<Part>, fed: u64 },
    /// Nothing more to hand over: no mirror, body complete, or the copy was abandoned.
    Done,
}

impl MirrorFeed {
    /// Called from `request_body_filter` after `ctx.attempt_body` counted `chunk`: hands the
    /// bytes of `chunk` not handed over before (a retry replays the start of the body) to the
    /// mirror task, and marks the end of the body once. Never waits: when the task cannot take
    /// the chunk now, the copy is abandoned (the task then aborts).
    pub fn feed(&mut self, chunk: Option<&Bytes>, end: bool, attempt_body: u64) {
        let State::Streaming { tx, fed } = &mut self.state else {
            return;
        };
        let mut data = Bytes::new();
        if let Some(b) = chunk {
            let len = b.len() as u64;
            let chunk_start = attempt_body.saturating_sub(len);
            if chunk_start > *fed {
                // Bytes the mirror never saw: its copy would have a hole.
                self.abandon();
                return;
            }
            if attempt_body > *fed {
                let skip = (*fed - chunk_start).min(len) as usize;
                data = b.slice(skip..);
                *fed = attempt_body;
            }
        }
        if data.is_empty() && !end {
            return;
        }
        match tx.try_send(Part { data, end }) {
            Ok(()) if end => self.state = State::Done,
            Ok(()) => {}
            Err(_) => self.abandon(),
        }
    }

    /// Gives up this copy: dropping the sender before the end tells the task to abort.
    fn abandon(&mut self) {
        ABANDONED.fetch_add(1, Ordering::Relaxed);
        tracing::debug!("mirror copy abandoned: the mirror did not keep up with the request body");
        self.state = State::Done;
    }
}

/// Counts one running mirror task while alive.
struct TaskSlot;

impl TaskSlot {
    fn take() -> Option<TaskSlot> {
        let before = RUNNING.fetch_add(1, Ordering::AcqRel);
        if before >= MAX_TASKS {
            RUNNING.fetch_sub(1, Ordering::AcqRel);
            return None;
        }
        Some(TaskSlot)
    }
}

impl Drop for TaskSlot {
    fn drop(&mut self) {
        RUNNING.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Called at the end of `upstream_request_filter`, when `upstream` is final: on the first call
/// for a request whose route has a `mirror`, spawns the mirror task with a copy of `upstream`.
/// Later calls (retries) do nothing. WebSocket upgrades are not mirrored.
pub fn start(session: &mut Session, upstream: &RequestHeader, ctx: &mut RequestCtx) {
    if !matches!(ctx.mirror.state, State::NotStarted) {
        return;
    }
    ctx.mirror.state = State::Done;
    let (Some(site), Some(route)) = (ctx.site.as_ref(), ctx.route) else {
        return;
    };
    if site.route_at(route).is_none_or(|r| r.mirror.is_none())
        || super::hop::is_upgrade(&upstream.headers)
    {
        return;
    }
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        return;
    };
    let Some(slot) = TaskSlot::take() else {
        SKIPPED.fetch_add(1, Ordering::Relaxed);
        tracing::debug!("request not mirrored: too many mirror copies in flight");
        return;
    };
    let has_body = !session.as_mut().is_body_empty();
    let mut header = upstream.clone();
    // The copy's body is sent at once; it does not wait for a 100 Continue.
    header.remove_header(&http::header::EXPECT);
    if has_body
        && !header.headers.contains_key(http::header::CONTENT_LENGTH)
        && !header.headers.contains_key(http::header::TRANSFER_ENCODING)
    {
        // What Pingora adds to the primary request after this filter (an HTTP/2 client body).
        if header
            .insert_header(http::header::TRANSFER_ENCODING, "chunked")
            .is_err()
        {
            return;
        }
    }
    let body = has_body.then(|| {
        let (tx, rx) = mpsc::channel(CHANNEL_CHUNKS);
        ctx.mirror.state = State::Streaming { tx, fed: 0 };
        rx
    });
    STARTED.fetch_add(1, Ordering::Relaxed);
    let site = site.clone();
    runtime.spawn(async move {
        let _slot = slot;
        match copy(&site, route, header, body).await {
            Ok(()) => {
                COMPLETED.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => {
                FAILED.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(route = ?site.route_at(route).map(|r| &*r.id), "mirror copy failed: {e}");
            }
        }
    });
}

/// Why a mirror copy did not complete (logged at debug level).
#[derive(Debug, thiserror::Error)]
enum Failure {
    #[error("{0}")]
    Upstream(Box<pingora::Error>),
    #[error("the request body did not arrive completely; the copy was aborted")]
    Incomplete,
    #[error("the mirror sent too many informational responses")]
    Informational,
    #[error("the client connector could not be built")]
    Connector,
}

impl From<Box<pingora::Error>> for Failure {
    fn from(e: Box<pingora::Error>) -> Self {
        Failure::Upstream(e)
    }
}

/// Sends one copy: header, body chunks from `body` (if any), then reads and drops the answer.
async fn copy(
    site: &Site,
    route: RouteRef,
    header: RequestHeader,
    body: Option<mpsc::Receiver<Part>>,
) -> Result<(), Failure> {
    let Some(peer) = site.route_at(route).and_then(|r| r.mirror.as_deref()) else {
        return Ok(());
    };
    let connector = super::client::connector().await.ok_or(Failure::Connector)?;
    let (mut http, _reused) = connector.get_http_session(peer).await?;
    // A per-operation bound on writes as well: a mirror that stops reading must not hold the
    // task (and its connection) forever.
    http.set_read_timeout(peer.options.read_timeout);
    http.set_write_timeout(peer.options.read_timeout);
    http.write_request_header(Box::new(header)).await?;
    if let Some(mut rx) = body {
        loop {
            match rx.recv().await {
                Some(Part { data, end }) => {
                    if !data.is_empty() {
                        http.write_request_body(data, end).await?;
                    }
                    if end {
                        break;
                    }
                }
                None => {
                    // Never finish a truncated body: close the connection mid-message.
                    http.shutdown().await;
                    return Err(Failure::Incomplete);
                }
            }
        }
    }
    http.finish_request_body().await?;
    read_answer(&mut http).await?;
    if let HttpSession::H1(h1) = &mut http {
        h1.respect_keepalive();
    }
    connector
        .release_http_session(http, peer, peer.idle_timeout())
        .await;
    Ok(())
}

/// Reads the mirror's response head (past 1xx) and drains its body.
async fn read_answer(http: &mut HttpSession) -> Result<(), Failure> {
    let mut informational = 0;
    loop {
        http.read_response_header().await?;
        let status = http.response_header().map(|h| h.status);
        if !status
            .is_some_and(|s| s.is_informational() && s != http::StatusCode::SWITCHING_PROTOCOLS)
        {
            break;
        }
        informational += 1;
        if informational > MAX_INFORMATIONAL {
            return Err(Failure::Informational);
        }
    }
    while http.read_response_body().await?.is_some() {}
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn streaming(cap: usize) -> (MirrorFeed, mpsc::Receiver<Part>) {
        let (tx, rx) = mpsc::channel(cap);
        (
            MirrorFeed {
                state: State::Streaming { tx, fed: 0 },
            },
            rx,
        )
    }

    fn drain(rx: &mut mpsc::Receiver<Part>) -> (Vec<u8>, usize) {
        let mut body = Vec::new();
        let mut ends = 0;
        while let Ok(p) = rx.try_recv() {
            body.extend_from_slice(&p.data);
            ends += usize::from(p.end);
        }
        (body, ends)
    }

    #[test]
    fn replayed_bytes_are_not_fed_twice() {
        let (mut feed, mut rx) = streaming(16);
        // Attempt 1 sees "hello " then fails.
        feed.feed(Some(&Bytes::from_static(b"hello ")), false, 6);
        // Attempt 2 replays "hello " plus new bytes in one chunk, then the rest.
        feed.feed(Some(&Bytes::from_static(b"hello wor")), false, 9);
        feed.feed(Some(&Bytes::from_static(b"ld")), true, 11);
        // A further replay after the end changes nothing.
        feed.feed(Some(&Bytes::from_static(b"hello world")), true, 11);
        let (body, ends) = drain(&mut rx);
        assert_eq!(body, b"hello world");
        assert_eq!(ends, 1);
        assert!(matches!(feed.state, State::Done));
    }

    #[test]
    fn end_without_data_is_signalled() {
        let (mut feed, mut rx) = streaming(16);
        feed.feed(Some(&Bytes::from_static(b"abc")), false, 3);
        feed.feed(None, true, 3);
        let (body, ends) = drain(&mut rx);
        assert_eq!(body, b"abc");
        assert_eq!(ends, 1);
    }

    #[test]
    fn full_channel_abandons_the_copy() {
        let (mut feed, mut rx) = streaming(1);
        feed.feed(Some(&Bytes::from_static(b"a")), false, 1);
        feed.feed(Some(&Bytes::from_static(b"b")), false, 2);
        assert!(matches!(feed.state, State::Done));
        // The task sees one chunk, then a closed channel without an end: it aborts.
        assert_eq!(
            rx.try_recv().map(|p| p.data).ok(),
            Some(Bytes::from_static(b"a"))
        );
        assert!(matches!(
            rx.try_recv(),
            Err(mpsc::error::TryRecvError::Disconnected)
        ));
    }

    #[test]
    fn a_gap_abandons_the_copy() {
        let (mut feed, mut rx) = streaming(16);
        feed.feed(Some(&Bytes::from_static(b"xy")), false, 10);
        assert!(matches!(feed.state, State::Done));
        assert!(matches!(
            rx.try_recv(),
            Err(mpsc::error::TryRecvError::Disconnected)
        ));
    }

    #[test]
    fn not_started_ignores_chunks() {
        let mut feed = MirrorFeed::default();
        feed.feed(Some(&Bytes::from_static(b"abc")), true, 3);
        assert!(matches!(feed.state, State::NotStarted));
    }
}
