//! WebSocket (HTTP/1.1 Upgrade) through the real binary: the handshake, echoed frames both ways,
//! ping/pong, closes from either side, concurrent connections, and the 403 on routes without
//! `websocket: true`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream as StdTcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use common::Conduit;
use futures::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role};
use tokio_tungstenite::tungstenite::{error::ProtocolError, Error as WsError, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// How long any single step may take before the test fails instead of hanging.
const STEP: Duration = Duration::from_secs(10);

type Client = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// A request head as the WebSocket upstream saw it.
#[derive(Debug, Clone)]
struct Head {
    method: String,
    target: String,
    headers: Vec<(String, String)>,
}

impl Head {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    fn header_all(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect()
    }
}

/// A real WebSocket upstream on loopback port 0, on its own runtime and thread.
///
/// It reads the request head itself (so the test sees the path and every header), answers an
/// upgrade with `101` and then speaks WebSocket through tungstenite; a plain request gets
/// `200 plain http` and the connection is closed. The path steers an upgraded connection:
/// `/ws/close` sends `bye` then a Close frame, `/ws/drop` sends `bye` then drops the TCP
/// connection without a Close frame, `/ws/ping` pings the client and reports the pong, anything
/// else echoes text and binary messages. Everything it receives is logged in `events`.
struct WsUpstream {
    addr: SocketAddr,
    heads: Arc<Mutex<Vec<Head>>>,
    events: Arc<Mutex<Vec<String>>>,
    connections: Arc<AtomicUsize>,
    _stop: tokio::sync::oneshot::Sender<()>,
}

impl WsUpstream {
    fn start() -> WsUpstream {
        let std_listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        std_listener.set_nonblocking(true).unwrap();
        let addr = std_listener.local_addr().unwrap();
        let heads = Arc::new(Mutex::new(Vec::new()));
        let events = Arc::new(Mutex::new(Vec::new()));
        let connections = Arc::new(AtomicUsize::new(0));
        let (stop_tx, mut stop_rx) = tokio::sync::oneshot::channel::<()>();
        let (h, e, c) = (heads.clone(), events.clone(), connections.clone());
        thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let listener = TcpListener::from_std(std_listener).unwrap();
                loop {
                    tokio::select! {
                        _ = &mut stop_rx => break,
                        accepted = listener.accept() => {
                            let Ok((stream, _)) = accepted else { continue };
                            c.fetch_add(1, Ordering::SeqCst);
                            tokio::spawn(serve(stream, h.clone(), e.clone()));
                        }
                    }
                }
            });
        });
        WsUpstream {
            addr,
            heads,
            events,
            connections,
            _stop: stop_tx,
        }
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }

    fn heads(&self) -> Vec<Head> {
        self.heads.lock().unwrap().clone()
    }

    fn events(&self) -> Vec<String> {
        self.events.lock().unwrap().clone()
    }

    /// Waits until `events` holds `event`.
    async fn wait_event(&self, event: &str) -> bool {
        let deadline = Instant::now() + STEP;
        while Instant::now() < deadline {
            if self.events().iter().any(|e| e == event) {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        false
    }
}

/// One upstream connection: the request head, then plain HTTP or WebSocket.
async fn serve(
    mut stream: TcpStream,
    heads: Arc<Mutex<Vec<Head>>>,
    events: Arc<Mutex<Vec<String>>>,
) {
    let mut buf = Vec::new();
    let end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let mut chunk = [0u8; 4096];
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    };
    let text = String::from_utf8_lossy(&buf[..end]).into_owned();
    let mut lines = text.split("\r\n");
    let mut first = lines.next().unwrap_or("").split(' ');
    let head = Head {
        method: first.next().unwrap_or("").to_string(),
        target: first.next().unwrap_or("").to_string(),
        headers: lines
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
            .collect(),
    };
    heads.lock().unwrap().push(head.clone());
    let log = |e: String| events.lock().unwrap().push(e);

    let upgrade = head
        .header("upgrade")
        .is_some_and(|v| v.eq_ignore_ascii_case("websocket"));
    let Some(key) = head.header("sec-websocket-key").filter(|_| upgrade) else {
        let body = "plain http";
        let resp = format!(
            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nX-Upstream: ws\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        let _ = stream.write_all(resp.as_bytes()).await;
        let _ = stream.shutdown().await;
        return;
    };
    let resp = format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {}\r\nX-Upstream: ws\r\n\r\n",
        derive_accept_key(key.as_bytes())
    );
    if stream.write_all(resp.as_bytes()).await.is_err() {
        return;
    }
    let leftover = buf[end..].to_vec();
    let mut ws = WebSocketStream::from_partially_read(stream, leftover, Role::Server, None).await;
    let path = head.target.split('?').next().unwrap_or("").to_string();

    match path.as_str() {
        "/ws/close" => {
            let _ = ws.send(Message::text("bye")).await;
            let _ = ws
                .close(Some(CloseFrame {
                    code: CloseCode::Normal,
                    reason: "upstream done".into(),
                }))
                .await;
            // Drive the closing handshake until the client's Close arrives.
            while let Some(Ok(msg)) = ws.next().await {
                if let Message::Close(frame) = msg {
                    log(format!(
                        "close-reply:{:?}",
                        frame.map(|f| u16::from(f.code))
                    ));
                }
            }
            log("closed".into());
            return;
        }
        "/ws/drop" => {
            let _ = ws.send(Message::text("bye")).await;
            // Drop the TCP connection without a Close frame.
            drop(ws);
            log("dropped".into());
            return;
        }
        "/ws/ping" => {
            let _ = ws.send(Message::Ping(b"srv-ping".to_vec())).await;
        }
        _ => {}
    }

    while let Some(msg) = ws.next().await {
        let Ok(msg) = msg else {
            log("error".into());
            return;
        };
        match msg {
            Message::Text(t) => {
                log(format!("text:{}", t.len()));
                if ws.send(Message::Text(t)).await.is_err() {
                    return;
                }
            }
            Message::Binary(b) => {
                log(format!("binary:{}", b.len()));
                if ws.send(Message::Binary(b)).await.is_err() {
                    return;
                }
            }
            Message::Ping(p) => log(format!("ping:{}", String::from_utf8_lossy(&p))),
            Message::Pong(p) => {
                let p = String::from_utf8_lossy(&p).into_owned();
                log(format!("pong:{p}"));
                if ws
                    .send(Message::text(format!("got pong {p}")))
                    .await
                    .is_err()
                {
                    return;
                }
            }
            Message::Close(frame) => {
                let f = frame.map(|f| format!("{}:{}", u16::from(f.code), f.reason));
                log(format!("close:{}", f.unwrap_or_default()));
            }
            Message::Frame(_) => {}
        }
    }
    log("closed".into());
}

/// A site where `/ws` proxies to `ws` with WebSocket enabled and `/nows` to `plain` without it.
fn config(ws: &WsUpstream, plain: &WsUpstream) -> String {
    format!(
        "global: {{bind: 127.0.0.1, workers: 2, shutdownTimeoutSecs: 5}}\nsites:\n  - port: {{port}}\n    proxy:\n      /ws:\n        targets: [{}]\n        websocket: true\n      /nows:\n        targets: [{}]\n",
        ws.url(),
        plain.url()
    )
}

/// Opens a WebSocket through conduit on `path`, with extra request headers.
async fn connect(
    c: &Conduit,
    path: &str,
    headers: &[(&'static str, &str)],
) -> (
    Client,
    tokio_tungstenite::tungstenite::handshake::client::Response,
) {
    let mut req = format!("ws://127.0.0.1:{}{path}", c.port)
        .into_client_request()
        .unwrap();
    for (k, v) in headers {
        req.headers_mut().insert(*k, v.parse().unwrap());
    }
    tokio::time::timeout(STEP, tokio_tungstenite::connect_async(req))
        .await
        .expect("handshake timed out")
        .expect("handshake failed")
}

/// The next message, failing on timeout, end of stream or error.
async fn recv(ws: &mut Client) -> Message {
    match tokio::time::timeout(STEP, ws.next()).await {
        Err(_) => panic!("no message within {STEP:?}"),
        Ok(None) => panic!("stream ended"),
        Ok(Some(Err(e))) => panic!("stream error: {e}"),
        Ok(Some(Ok(m))) => m,
    }
}

async fn send(ws: &mut Client, msg: Message) {
    tokio::time::timeout(STEP, ws.send(msg))
        .await
        .expect("send timed out")
        .expect("send failed");
}

/// Reads until the stream ends; returns the messages seen and the error that ended it, if any.
/// Fails if the stream does not end within [`STEP`].
async fn drain(ws: &mut Client) -> (Vec<Message>, Option<WsError>) {
    let mut got = Vec::new();
    let deadline = tokio::time::Instant::now() + STEP;
    loop {
        match tokio::time::timeout_at(deadline, ws.next()).await {
            Err(_) => panic!("stream did not end within {STEP:?}; got {got:?}"),
            Ok(None) => return (got, None),
            Ok(Some(Err(e))) => return (got, Some(e)),
            Ok(Some(Ok(m))) => got.push(m),
        }
    }
}

/// A ~100 KB payload with a pattern that catches reordering and truncation.
fn big_binary() -> Vec<u8> {
    (0..100 * 1024).map(|i| (i % 251) as u8).collect()
}

fn big_text() -> String {
    (0..100 * 1024)
        .map(|i| char::from(b'a' + (i % 26) as u8))
        .collect()
}

/// Sends a raw HTTP request and reads one response (head plus Content-Length body).
fn exchange(port: u16, request: &str) -> (u16, Vec<(String, String)>, String) {
    let mut s = StdTcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(STEP)).unwrap();
    s.write_all(request.as_bytes()).unwrap();
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let n = s.read(&mut chunk).expect("no response head");
        assert!(n > 0, "connection closed before the response head: {buf:?}");
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..end]).into_owned();
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {head:?}"));
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let len: usize = headers
        .iter()
        .find(|(k, _)| k == "content-length")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or_else(|| panic!("no content-length in {head:?}"));
    let mut body = buf[end..].to_vec();
    while body.len() < len {
        let n = s.read(&mut chunk).expect("body cut short");
        assert!(n > 0, "connection closed mid-body");
        body.extend_from_slice(&chunk[..n]);
    }
    (status, headers, String::from_utf8_lossy(&body).into_owned())
}

#[tokio::test]
async fn handshake_reaches_upstream_with_forwarding_headers_and_messages_echo() {
    let up = WsUpstream::start();
    let other = WsUpstream::start();
    let c = Conduit::start(&config(&up, &other));

    let (mut ws, resp) = connect(
        &c,
        "/ws/echo?room=7",
        &[
            ("x-request-id", "ws-req-42"),
            ("x-forwarded-for", "6.6.6.6"),
        ],
    )
    .await;
    assert_eq!(resp.status(), 101);
    // The upstream's 101 (with its own headers) is what the client got.
    assert_eq!(resp.headers()["x-upstream"], "ws");
    assert!(resp.headers()["upgrade"]
        .to_str()
        .unwrap()
        .eq_ignore_ascii_case("websocket"));
    assert_eq!(resp.headers()["x-request-id"], "ws-req-42");

    // The upgrade request as the upstream saw it.
    let heads = up.heads();
    assert_eq!(heads.len(), 1, "{heads:?}");
    let seen = &heads[0];
    assert_eq!(seen.method, "GET");
    assert_eq!(seen.target, "/ws/echo?room=7");
    assert_eq!(seen.header_all("x-forwarded-for"), ["127.0.0.1"]);
    assert_eq!(seen.header("x-request-id"), Some("ws-req-42"));
    assert_eq!(
        seen.header("host"),
        Some(format!("127.0.0.1:{}", c.port).as_str())
    );
    assert!(seen
        .header("upgrade")
        .is_some_and(|v| v.eq_ignore_ascii_case("websocket")));
    assert!(seen
        .header("connection")
        .is_some_and(|v| v.to_ascii_lowercase().contains("upgrade")));
    assert!(seen.header("sec-websocket-key").is_some());
    assert_eq!(seen.header("sec-websocket-version"), Some("13"));
    assert_eq!(other.connections(), 0);

    // Several messages in flight at once, text and binary, small and ~100 KB, come back in
    // order and intact.
    let sent = vec![
        Message::text("hello"),
        Message::Binary(vec![0, 1, 2, 255]),
        Message::Text(big_text()),
        Message::Binary(big_binary()),
        Message::text("ünïcødé ✓"),
        Message::Binary(Vec::new()),
    ];
    for m in &sent {
        send(&mut ws, m.clone()).await;
    }
    for m in &sent {
        let got = recv(&mut ws).await;
        assert_eq!(got.len(), m.len());
        assert_eq!(&got, m);
    }
    assert!(up.wait_event(&format!("binary:{}", 100 * 1024)).await);
    assert!(up.wait_event(&format!("text:{}", 100 * 1024)).await);

    // A client ping is answered with a pong carrying the same payload.
    send(&mut ws, Message::Ping(b"are-you-there".to_vec())).await;
    assert_eq!(
        recv(&mut ws).await,
        Message::Pong(b"are-you-there".to_vec())
    );
    assert!(up.wait_event("ping:are-you-there").await);

    // A close from the client reaches the upstream and the closing handshake completes.
    tokio::time::timeout(
        STEP,
        ws.close(Some(CloseFrame {
            code: CloseCode::Normal,
            reason: "client done".into(),
        })),
    )
    .await
    .expect("close timed out")
    .expect("close failed");
    let (rest, err) = drain(&mut ws).await;
    assert!(err.is_none(), "unclean end: {err:?}");
    assert_eq!(rest.len(), 1, "{rest:?}");
    let Message::Close(Some(frame)) = &rest[0] else {
        panic!("expected the close reply, got {rest:?}");
    };
    assert_eq!(frame.code, CloseCode::Normal);
    assert!(
        up.wait_event("close:1000:client done").await,
        "{:?}",
        up.events()
    );
    assert!(up.wait_event("closed").await);
    assert_eq!(up.connections(), 1);
}

#[tokio::test]
async fn upstream_ping_is_answered_by_the_client() {
    let up = WsUpstream::start();
    let other = WsUpstream::start();
    let c = Conduit::start(&config(&up, &other));

    let (mut ws, _) = connect(&c, "/ws/ping", &[]).await;
    // The upstream's ping arrives; reading on lets tungstenite send the pong, which the
    // upstream acknowledges with a text message.
    assert_eq!(recv(&mut ws).await, Message::Ping(b"srv-ping".to_vec()));
    assert_eq!(recv(&mut ws).await, Message::text("got pong srv-ping"));
    assert!(up.wait_event("pong:srv-ping").await);
    // The connection is still usable afterwards.
    send(&mut ws, Message::text("after ping")).await;
    assert_eq!(recv(&mut ws).await, Message::text("after ping"));
}

#[tokio::test]
async fn two_concurrent_connections_are_independent_and_plain_http_still_works() {
    let up = WsUpstream::start();
    let other = WsUpstream::start();
    let c = Conduit::start(&config(&up, &other));

    let (mut a, _) = connect(&c, "/ws/a", &[]).await;
    let (mut b, _) = connect(&c, "/ws/b", &[]).await;
    assert_eq!(up.connections(), 2);

    // Interleaved traffic: each connection gets back only its own messages.
    send(&mut a, Message::text("a1")).await;
    send(&mut b, Message::text("b1")).await;
    send(&mut b, Message::Binary(b"b2".to_vec())).await;
    send(&mut a, Message::Binary(big_binary())).await;
    assert_eq!(recv(&mut b).await, Message::text("b1"));
    assert_eq!(recv(&mut a).await, Message::text("a1"));
    assert_eq!(recv(&mut a).await, Message::Binary(big_binary()));
    assert_eq!(recv(&mut b).await, Message::Binary(b"b2".to_vec()));

    // Each upgrade got its own request id (generated, since the client sent none).
    let heads = up.heads();
    let ids: Vec<&str> = heads
        .iter()
        .map(|h| h.header("x-request-id").expect("no x-request-id upstream"))
        .collect();
    assert_eq!(ids.len(), 2);
    assert!(!ids[0].is_empty());
    assert_ne!(ids[0], ids[1]);

    // Closing one leaves the other working.
    a.close(None).await.unwrap();
    let (_, err) = drain(&mut a).await;
    assert!(err.is_none(), "unclean end: {err:?}");
    send(&mut b, Message::text("still here")).await;
    assert_eq!(recv(&mut b).await, Message::text("still here"));

    // A normal HTTP request on the same route is proxied as usual.
    let (status, headers, body) = exchange(
        c.port,
        "GET /ws/plain HTTP/1.1\r\nHost: example\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(status, 200);
    assert_eq!(body, "plain http");
    assert!(headers.iter().any(|(k, v)| k == "x-upstream" && v == "ws"));
    let seen = up.heads().into_iter().last().unwrap();
    assert_eq!(seen.target, "/ws/plain");
    assert_eq!(seen.header("upgrade"), None);
    assert_eq!(up.connections(), 3);
    assert_eq!(other.connections(), 0);
}

#[tokio::test]
async fn upgrade_on_a_route_without_websocket_is_refused_with_json_403() {
    let up = WsUpstream::start();
    let other = WsUpstream::start();
    let c = Conduit::start(&config(&up, &other));

    let (status, headers, body) = exchange(
        c.port,
        "GET /nows/chat HTTP/1.1\r\nHost: example\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nX-Request-ID: denied-1\r\n\r\n",
    );
    assert_eq!(status, 403);
    assert!(headers
        .iter()
        .any(|(k, v)| k == "content-type" && v.starts_with("application/json")));
    let json: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(json["status"], 403);
    assert_eq!(json["request_id"], "denied-1");
    assert!(
        json["error"]
            .as_str()
            .is_some_and(|e| e.contains("websocket")),
        "{json}"
    );

    // A WebSocket client sees the refusal as a failed handshake.
    let req = format!("ws://127.0.0.1:{}/nows/chat", c.port)
        .into_client_request()
        .unwrap();
    match tokio::time::timeout(STEP, tokio_tungstenite::connect_async(req))
        .await
        .expect("handshake timed out")
    {
        Err(WsError::Http(resp)) => assert_eq!(resp.status(), 403),
        other => panic!("expected an HTTP 403 error, got {other:?}"),
    }

    // The upstream never saw either attempt ...
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(other.connections(), 0);
    assert!(other.heads().is_empty());
    // ... although the route does reach it for a plain request.
    let (status, _, body) = exchange(
        c.port,
        "GET /nows/chat HTTP/1.1\r\nHost: example\r\nConnection: close\r\n\r\n",
    );
    assert_eq!((status, body.as_str()), (200, "plain http"));
    assert_eq!(other.connections(), 1);
    assert_eq!(up.connections(), 0);
}

#[tokio::test]
async fn upstream_close_frame_ends_the_client_stream() {
    let up = WsUpstream::start();
    let other = WsUpstream::start();
    let c = Conduit::start(&config(&up, &other));

    let (mut ws, _) = connect(&c, "/ws/close", &[]).await;
    let (got, err) = drain(&mut ws).await;
    assert!(err.is_none(), "unclean end: {err:?}");
    assert_eq!(got.len(), 2, "{got:?}");
    assert_eq!(got[0], Message::text("bye"));
    let Message::Close(Some(frame)) = &got[1] else {
        panic!("expected a close frame, got {got:?}");
    };
    assert_eq!(frame.code, CloseCode::Normal);
    assert_eq!(frame.reason, "upstream done");
    // The client's reply completed the closing handshake at the upstream.
    assert!(
        up.wait_event("close-reply:Some(1000)").await,
        "{:?}",
        up.events()
    );
    assert!(up.wait_event("closed").await);
}

#[tokio::test]
async fn upstream_dropping_the_connection_ends_the_client_stream() {
    let up = WsUpstream::start();
    let other = WsUpstream::start();
    let c = Conduit::start(&config(&up, &other));

    let (mut ws, _) = connect(&c, "/ws/drop", &[]).await;
    // The stream ends instead of hanging, and not as a clean close: no Close frame was sent.
    let (got, err) = drain(&mut ws).await;
    assert_eq!(got, [Message::text("bye")], "err: {err:?}");
    assert!(
        matches!(
            err,
            Some(WsError::Protocol(ProtocolError::ResetWithoutClosingHandshake) | WsError::Io(_))
        ),
        "{err:?}"
    );
    assert!(up.wait_event("dropped").await);
}
