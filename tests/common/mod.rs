//! Test harness: real upstream servers on loopback port 0, the real `conduit` binary started on
//! a temporary config with free ports, and raw-socket and HTTP clients.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

/// A request as the upstream saw it.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    pub target: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Seen {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    pub fn header_all(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect()
    }
}

/// A real HTTP/1.1 upstream written for the tests.
///
/// It answers `200` with body `<name>` and records each request. Paths steer it:
/// `/status/<code>` answers that status, `/slow/<ms>` waits first, `/chunked` streams a chunked
/// body, `/hop` adds hop-by-hop response headers, `/echo` answers with the request body.
pub struct Upstream {
    pub addr: SocketAddr,
    pub name: String,
    pub seen: Arc<Mutex<Vec<Seen>>>,
    pub hits: Arc<AtomicUsize>,
    pub connections: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
}

impl Upstream {
    pub fn start(name: &str) -> Upstream {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let up = Upstream {
            addr,
            name: name.to_string(),
            seen: Arc::new(Mutex::new(Vec::new())),
            hits: Arc::new(AtomicUsize::new(0)),
            connections: Arc::new(AtomicUsize::new(0)),
            stop: Arc::new(AtomicBool::new(false)),
        };
        let (seen, hits, conns, stop, name) = (
            up.seen.clone(),
            up.hits.clone(),
            up.connections.clone(),
            up.stop.clone(),
            name.to_string(),
        );
        thread::spawn(move || {
            for stream in listener.incoming() {
                if stop.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(stream) = stream else { continue };
                conns.fetch_add(1, Ordering::SeqCst);
                let (seen, hits, name) = (seen.clone(), hits.clone(), name.clone());
                thread::spawn(move || serve_conn(stream, &name, &seen, &hits));
            }
        });
        up
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn last(&self) -> Seen {
        self.seen
            .lock()
            .unwrap()
            .last()
            .cloned()
            .expect("upstream saw no request")
    }

    pub fn count(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(self.addr);
    }
}

fn serve_conn(stream: TcpStream, name: &str, seen: &Mutex<Vec<Seen>>, hits: &AtomicUsize) {
    // Head and body go out in separate writes: without this, Nagle's algorithm and delayed ACKs
    // add ~40 ms to every keep-alive response.
    let _ = stream.set_nodelay(true);
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut out = stream;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let mut parts = line.trim_end().splitn(3, ' ');
        let method = parts.next().unwrap_or("").to_string();
        let target = parts.next().unwrap_or("").to_string();
        let mut headers = Vec::new();
        loop {
            let mut h = String::new();
            if reader.read_line(&mut h).unwrap_or(0) == 0 {
                return;
            }
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            if let Some((k, v)) = h.split_once(':') {
                headers.push((k.trim().to_string(), v.trim().to_string()));
            }
        }
        let get = |n: &str| {
            headers
                .iter()
                .find(|(k, _): &&(String, String)| k.eq_ignore_ascii_case(n))
                .map(|(_, v)| v.clone())
        };
        let mut body = Vec::new();
        if get("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked")) {
            loop {
                let mut size = String::new();
                if reader.read_line(&mut size).unwrap_or(0) == 0 {
                    return;
                }
                let n = usize::from_str_radix(size.trim().split(';').next().unwrap_or("0"), 16)
                    .unwrap_or(0);
                let mut chunk = vec![0; n + 2];
                if reader.read_exact(&mut chunk).is_err() {
                    return;
                }
                if n == 0 {
                    break;
                }
                body.extend_from_slice(&chunk[..n]);
            }
        } else if let Some(len) = get("content-length").and_then(|v| v.parse::<usize>().ok()) {
            body = vec![0; len];
            if reader.read_exact(&mut body).is_err() {
                return;
            }
        }
        hits.fetch_add(1, Ordering::SeqCst);
        seen.lock().unwrap().push(Seen {
            method: method.clone(),
            target: target.clone(),
            headers: headers.clone(),
            body: body.clone(),
        });
        let path = target.split('?').next().unwrap_or("");
        let mut status = 200;
        let mut extra = String::new();
        let mut resp_body = name.as_bytes().to_vec();
        if let Some(code) = path.strip_prefix("/status/") {
            status = code.parse().unwrap_or(500);
        } else if let Some(ms) = path.strip_prefix("/slow/") {
            thread::sleep(Duration::from_millis(ms.parse().unwrap_or(100)));
        } else if path == "/echo" {
            resp_body = body.clone();
        } else if path == "/hop" {
            extra.push_str("Connection: keep-alive, X-Hop-Secret\r\nX-Hop-Secret: 1\r\nKeep-Alive: timeout=5\r\nX-End-To-End: yes\r\n");
        }
        let ok = if let Some(count) = path.strip_prefix("/drip/") {
            // A slow stream: one chunk every 400 ms.
            let head = format!(
                "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nX-Upstream: {name}\r\n\r\n"
            );
            let mut ok = out.write_all(head.as_bytes()).is_ok();
            for i in 0..count.parse::<usize>().unwrap_or(3) {
                if !ok {
                    break;
                }
                thread::sleep(Duration::from_millis(400));
                let part = format!("drop{i};");
                ok = out
                    .write_all(format!("{:x}\r\n{part}\r\n", part.len()).as_bytes())
                    .is_ok();
            }
            ok && out.write_all(b"0\r\n\r\n").is_ok()
        } else if path == "/chunked" {
            let head = format!(
                "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nX-Upstream: {name}\r\n\r\n"
            );
            let mut w = head.into_bytes();
            for part in ["hello ", "chunked ", "world"] {
                w.extend_from_slice(format!("{:x}\r\n{part}\r\n", part.len()).as_bytes());
            }
            w.extend_from_slice(b"0\r\n\r\n");
            out.write_all(&w).is_ok()
        } else {
            let head = format!(
                "HTTP/1.1 {status} X\r\nContent-Length: {}\r\nX-Upstream: {name}\r\n{extra}\r\n",
                resp_body.len()
            );
            out.write_all(head.as_bytes()).is_ok() && out.write_all(&resp_body).is_ok()
        };
        if !ok {
            return;
        }
    }
}

/// A port that was free a moment ago.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A port on which nothing listens (connections are refused).
pub fn dead_port() -> u16 {
    free_port()
}

/// A running `conduit` process.
pub struct Conduit {
    pub child: Option<Child>,
    pub dir: tempfile::TempDir,
    pub config: PathBuf,
    pub port: u16,
}

/// The path of the built binary.
pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_conduit")
}

impl Conduit {
    /// Writes `yaml` (with `{port}` replaced by a free port) and starts conduit on it; waits
    /// until the port accepts connections.
    pub fn start(yaml: &str) -> Conduit {
        for _ in 0..5 {
            let port = free_port();
            let mut c = Self::start_on(yaml, port);
            if c.wait_ready(Duration::from_secs(10)) {
                return c;
            }
        }
        panic!("conduit did not start");
    }

    /// Starts on a given port without waiting.
    pub fn start_on(yaml: &str, port: u16) -> Conduit {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("conduit.yaml");
        std::fs::write(&config, yaml.replace("{port}", &port.to_string())).unwrap();
        let mut c = Conduit {
            child: None,
            dir,
            config,
            port,
        };
        c.spawn();
        c
    }

    fn spawn(&mut self) {
        let stdout = std::fs::File::create(self.dir.path().join("stdout.log")).unwrap();
        let stderr = std::fs::File::create(self.dir.path().join("stderr.log")).unwrap();
        let child = Command::new(bin())
            .arg("-c")
            .arg(&self.config)
            .current_dir(self.dir.path())
            .env("CONDUIT_LOG", "info")
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr)
            .spawn()
            .unwrap();
        self.child = Some(child);
    }

    /// Waits until this conduit (not another process that took the port) accepts; false if
    /// the process exited or time ran out.
    pub fn wait_ready(&mut self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Some(child) = self.child.as_mut() {
                if child.try_wait().ok().flatten().is_some() {
                    return false;
                }
            }
            if self.stderr().contains("conduit listening")
                && TcpStream::connect(("127.0.0.1", self.port)).is_ok()
            {
                return true;
            }
            thread::sleep(Duration::from_millis(10));
        }
        false
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    pub fn stdout(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("stdout.log")).unwrap_or_default()
    }

    pub fn stderr(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("stderr.log")).unwrap_or_default()
    }

    /// Rewrites the config file (same `{port}`).
    pub fn write_config(&self, yaml: &str) {
        let tmp = self.dir.path().join("conduit.yaml.tmp");
        std::fs::write(&tmp, yaml.replace("{port}", &self.port.to_string())).unwrap();
        std::fs::rename(&tmp, &self.config).unwrap();
    }

    pub fn signal(&self, sig: &str) {
        let pid = self.child.as_ref().unwrap().id();
        let ok = Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(pid.to_string())
            .status()
            .unwrap();
        assert!(ok.success());
    }

    /// Waits for the process to exit; returns its status code.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<i32> {
        let deadline = Instant::now() + timeout;
        let child = self.child.as_mut()?;
        while Instant::now() < deadline {
            if let Some(status) = child.try_wait().unwrap() {
                return Some(status.code().unwrap_or(-1));
            }
            thread::sleep(Duration::from_millis(10));
        }
        None
    }

    /// Waits until stderr contains `needle`.
    pub fn wait_log(&self, needle: &str, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if self.stderr().contains(needle) {
                return true;
            }
            thread::sleep(Duration::from_millis(20));
        }
        false
    }
}

impl Drop for Conduit {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A blocking HTTP client without pooling surprises (no proxy, no redirects).
pub fn client() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap()
}

/// Sends raw bytes and reads the whole answer until the server closes (or `timeout`).
pub fn raw(port: u16, request: &[u8], timeout: Duration) -> String {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(timeout)).unwrap();
    s.write_all(request).unwrap();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

/// The status code of the first response in a raw answer.
pub fn raw_status(answer: &str) -> u16 {
    answer
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {answer:?}"))
}

/// Runs `conduit` with args in `dir`; returns (code, stdout, stderr).
pub fn run_cli(dir: &std::path::Path, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(bin())
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A site config with one upstream on `/`, bound to loopback.
pub fn simple(upstream: &Upstream) -> String {
    format!(
        "global: {{bind: 127.0.0.1, workers: 2, shutdownTimeoutSecs: 5}}\nsites:\n  - port: {{port}}\n    healthCheck: true\n    proxy: {}\n",
        upstream.url()
    )
}
