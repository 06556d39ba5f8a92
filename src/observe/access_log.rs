//! The access log: one line per request in `dev`, `json`, `combined`, `common` or `short` format,
//! written by a background thread so the request path never blocks on I/O.

use std::fmt::Write as _;
use std::io::Write as _;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use crate::compile::glob::Glob;

/// Lines queued per sink before new ones are dropped (and counted).
const QUEUE: usize = 16 * 1024;

/// Access-log line formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Dev,
    Json,
    Combined,
    Common,
    Short,
}

impl LogFormat {
    pub fn parse(name: &str) -> Option<LogFormat> {
        Some(match name {
            "dev" => LogFormat::Dev,
            "json" => LogFormat::Json,
            "combined" => LogFormat::Combined,
            "common" => LogFormat::Common,
            "short" => LogFormat::Short,
            _ => return None,
        })
    }
}

/// What one request contributes to the log.
pub struct LogEntry<'a> {
    pub time: SystemTime,
    pub client: Option<IpAddr>,
    pub method: &'a str,
    /// Path with query, as received.
    pub target: &'a str,
    pub protocol: &'a str,
    pub status: u16,
    pub bytes: usize,
    pub duration: Duration,
    pub upstream: Option<SocketAddr>,
    pub upstream_ms: Option<u64>,
    pub route: Option<&'a str>,
    pub request_id: &'a str,
    pub host: Option<&'a str>,
    pub referer: Option<&'a str>,
    pub user_agent: Option<&'a str>,
}

/// A site's compiled access-log settings.
#[derive(Debug, Clone)]
pub struct AccessLog {
    pub format: LogFormat,
    pub skip_paths: Vec<Glob>,
    pub strip_query: bool,
    pub sink: Arc<LogSink>,
}

impl AccessLog {
    /// Formats and queues the line for `entry` unless its path is skipped. Runs in `logging`.
    pub fn record(&self, entry: &LogEntry<'_>) {
        let path = entry.target.split('?').next().unwrap_or(entry.target);
        if !self.skip_paths.is_empty() {
            // Match the path as routing sees it.
            let normal = crate::proxy::normalize::normalize_path(path, true);
            let normal = normal.as_deref().unwrap_or(path);
            if self.skip_paths.iter().any(|g| g.matches(normal)) {
                return;
            }
        }
        let target = if self.strip_query { path } else { entry.target };
        self.sink.send(format_line(self.format, entry, target));
    }
}

/// Formats one line (without the newline).
pub fn format_line(format: LogFormat, e: &LogEntry<'_>, target: &str) -> String {
    let mut s = String::with_capacity(192);
    let client = e
        .client
        .map_or_else(|| "-".to_string(), |ip| ip.to_string());
    let ms = e.duration.as_secs_f64() * 1000.0;
    match format {
        LogFormat::Common | LogFormat::Combined => {
            let time =
                chrono::DateTime::<chrono::Local>::from(e.time).format("%d/%b/%Y:%H:%M:%S %z");
            let _ = write!(
                s,
                "{client} - - [{time}] \"{} {} {}\" {} {}",
                e.method, target, e.protocol, e.status, e.bytes
            );
            if format == LogFormat::Combined {
                let _ = write!(
                    s,
                    " \"{}\" \"{}\"",
                    quoted(e.referer.unwrap_or("-")),
                    quoted(e.user_agent.unwrap_or("-"))
                );
            }
        }
        LogFormat::Short => {
            let _ = write!(
                s,
                "{client} {} {} {} {} {} - {ms:.3} ms",
                e.method, target, e.protocol, e.status, e.bytes
            );
        }
        LogFormat::Dev => {
            let _ = write!(
                s,
                "{} {} {} {ms:.3} ms - {}",
                e.method, target, e.status, e.bytes
            );
        }
        LogFormat::Json => {
            let time = chrono::DateTime::<chrono::Utc>::from(e.time)
                .to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
            let _ = write!(
                s,
                "{{\"time\":{},\"request_id\":{},\"client_ip\":{},\"method\":{},\"host\":{},\"path\":{},\"protocol\":{},\"status\":{},\"bytes\":{},\"duration_ms\":{:.3},\"upstream\":{},\"upstream_ms\":{},\"route\":{},\"user_agent\":{},\"referer\":{}}}",
                json_str(&time),
                json_str(e.request_id),
                e.client.map_or("null".into(), |ip| json_str(&ip.to_string())),
                json_str(e.method),
                e.host.map_or("null".into(), json_str),
                json_str(target),
                json_str(e.protocol),
                e.status,
                e.bytes,
                ms,
                e.upstream.map_or("null".into(), |a| json_str(&a.to_string())),
                e.upstream_ms.map_or("null".into(), |v| v.to_string()),
                e.route.map_or("null".into(), json_str),
                e.user_agent.map_or("null".into(), json_str),
                e.referer.map_or("null".into(), json_str),
            );
        }
    }
    s
}

fn json_str(v: &str) -> String {
    serde_json::Value::String(v.to_string()).to_string()
}

fn quoted(v: &str) -> String {
    v.replace('\\', "\\\\").replace('"', "\\\"")
}

enum Message {
    Line(String),
    Flush(SyncSender<()>),
}

/// Where log lines go: standard output or a file, written by one background thread.
#[derive(Debug)]
pub struct LogSink {
    tx: SyncSender<Message>,
    dropped: AtomicU64,
}

impl std::fmt::Debug for Message {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Message")
    }
}

impl LogSink {
    /// A sink writing to standard output.
    pub fn stdout() -> std::io::Result<LogSink> {
        Self::spawn(Box::new(std::io::stdout()))
    }

    /// A sink appending to `path` (created when missing).
    pub fn file(path: &str) -> std::io::Result<LogSink> {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)?;
        Self::spawn(Box::new(file))
    }

    fn spawn(out: Box<dyn std::io::Write + Send>) -> std::io::Result<LogSink> {
        let (tx, rx) = mpsc::sync_channel(QUEUE);
        std::thread::Builder::new()
            .name("conduit-access-log".into())
            .spawn(move || write_loop(rx, out))?;
        Ok(LogSink {
            tx,
            dropped: AtomicU64::new(0),
        })
    }

    /// Queues a line; drops it (and counts) when the writer is behind.
    pub fn send(&self, line: String) {
        match self.tx.try_send(Message::Line(line)) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
                self.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Lines dropped because the writer was behind.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Waits (up to `timeout`) until every queued line is written and flushed.
    pub fn flush(&self, timeout: Duration) {
        let (ack_tx, ack_rx) = mpsc::sync_channel(1);
        if self.tx.send(Message::Flush(ack_tx)).is_ok() {
            let _ = ack_rx.recv_timeout(timeout);
        }
    }
}

fn write_loop(rx: Receiver<Message>, out: Box<dyn std::io::Write + Send>) {
    let mut out = std::io::BufWriter::with_capacity(64 * 1024, out);
    loop {
        let msg = match rx.recv_timeout(Duration::from_millis(200)) {
            Ok(m) => m,
            Err(RecvTimeoutError::Timeout) => {
                let _ = out.flush();
                continue;
            }
            Err(RecvTimeoutError::Disconnected) => break,
        };
        let mut next = Some(msg);
        while let Some(msg) = next.take() {
            match msg {
                Message::Line(line) => {
                    let _ = out.write_all(line.as_bytes());
                    let _ = out.write_all(b"\n");
                }
                Message::Flush(ack) => {
                    let _ = out.flush();
                    let _ = ack.send(());
                }
            }
            next = rx.try_recv().ok();
        }
        let _ = out.flush();
    }
    let _ = out.flush();
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry() -> LogEntry<'static> {
        LogEntry {
            time: SystemTime::UNIX_EPOCH,
            client: Some("127.0.0.1".parse().unwrap()),
            method: "GET",
            target: "/a?b=1",
            protocol: "HTTP/1.1",
            status: 200,
            bytes: 5,
            duration: Duration::from_millis(2),
            upstream: Some("127.0.0.1:9".parse().unwrap()),
            upstream_ms: Some(1),
            route: Some("r"),
            request_id: "abc",
            host: Some("h"),
            referer: None,
            user_agent: Some("ua \"x\""),
        }
    }

    #[test]
    fn json_has_the_fields() {
        let line = format_line(LogFormat::Json, &entry(), "/a?b=1");
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        for field in [
            "time",
            "request_id",
            "method",
            "path",
            "status",
            "bytes",
            "duration_ms",
            "upstream",
            "upstream_ms",
            "route",
        ] {
            assert!(v.get(field).is_some(), "{field} missing in {line}");
        }
        assert_eq!(v["status"], 200);
        assert_eq!(v["upstream"], "127.0.0.1:9");
    }

    #[test]
    fn combined_quotes_user_agent() {
        let line = format_line(LogFormat::Combined, &entry(), "/a");
        assert!(line.starts_with("127.0.0.1 - - ["), "{line}");
        assert!(
            line.ends_with("\"GET /a HTTP/1.1\" 200 5 \"-\" \"ua \\\"x\\\"\""),
            "{line}"
        );
    }
}
