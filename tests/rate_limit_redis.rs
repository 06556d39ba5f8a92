//! `rateLimit` with the Redis store, through the real binary against a real `redis-server`
//! started here on a free port: two Conduit processes enforce one combined limit; the bucket key
//! expires in Redis; with Redis killed or too slow requests are still served (and limited) by the
//! local fallback, which is logged; once Redis is back, shared limiting resumes by itself;
//! `rediss://` works against a TLS Redis.
//!
//! Without `redis-server` installed these tests say so loudly and pass, unless
//! `CONDUIT_REQUIRE_REDIS` is set (CI sets it), in which case they fail.
#![cfg(feature = "redis")]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use common::*;
use reqwest::blocking::Response;

/// A `redis-server` process of the test's own, on a fixed port so it can be restarted there.
struct RedisServer {
    port: u16,
    child: Option<Child>,
    dir: tempfile::TempDir,
    /// Extra arguments (TLS).
    extra: Vec<String>,
    tls: bool,
}

/// Whether `redis-server` can run here; `false` (with a loud message) means skip the test.
fn redis_available() -> bool {
    let found = Command::new("redis-server")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !found {
        assert!(
            std::env::var_os("CONDUIT_REQUIRE_REDIS").is_none(),
            "redis-server is not installed but CONDUIT_REQUIRE_REDIS is set"
        );
        eprintln!(
            "\n\n******** SKIPPED: redis-server is not installed; the Redis rate-limit tests did \
             not run (install the `redis-server` package, or set CONDUIT_REQUIRE_REDIS=1 to \
             make this a failure) ********\n"
        );
    }
    found
}

impl RedisServer {
    /// A plain Redis on a free port; `None` when redis-server is not installed.
    fn start() -> Option<RedisServer> {
        Self::start_with(Vec::new(), false)
    }

    fn start_with(extra: Vec<String>, tls: bool) -> Option<RedisServer> {
        if !redis_available() {
            return None;
        }
        for _ in 0..5 {
            let mut r = RedisServer {
                port: free_port(),
                child: None,
                dir: tempfile::tempdir().unwrap(),
                extra: extra.clone(),
                tls,
            };
            r.spawn();
            if r.wait_ready(Duration::from_secs(10)) {
                return Some(r);
            }
        }
        panic!("redis-server did not start");
    }

    fn spawn(&mut self) {
        let port = self.port.to_string();
        let mut cmd = Command::new("redis-server");
        if self.tls {
            cmd.args(["--port", "0", "--tls-port", &port]);
        } else {
            cmd.args(["--port", &port]);
        }
        let log = std::fs::File::create(self.dir.path().join("redis.log")).unwrap();
        let child = cmd
            .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .args(["--enable-debug-command", "yes"])
            .args(&self.extra)
            .current_dir(self.dir.path())
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        self.child = Some(child);
    }

    fn wait_ready(&mut self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Some(child) = self.child.as_mut() {
                if child.try_wait().ok().flatten().is_some() {
                    return false;
                }
            }
            let ready = if self.tls {
                TcpStream::connect(("127.0.0.1", self.port)).is_ok()
            } else {
                self.try_cmd(&["PING"]).is_some_and(|r| r == "PONG")
            };
            if ready {
                return true;
            }
            thread::sleep(Duration::from_millis(20));
        }
        false
    }

    fn url(&self) -> String {
        let scheme = if self.tls { "rediss" } else { "redis" };
        format!("{scheme}://127.0.0.1:{}", self.port)
    }

    /// Stops the server (SIGKILL: connections break at once).
    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts it again on the same port, empty.
    fn restart(&mut self) {
        self.kill();
        self.spawn();
        assert!(
            self.wait_ready(Duration::from_secs(10)),
            "redis did not restart"
        );
    }

    /// Runs one command (plain servers only); the reply flattened to lines.
    fn cmd(&self, args: &[&str]) -> String {
        self.try_cmd(args)
            .unwrap_or_else(|| panic!("redis command {args:?} failed"))
    }

    fn try_cmd(&self, args: &[&str]) -> Option<String> {
        let mut s = TcpStream::connect(("127.0.0.1", self.port)).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
        let mut req = format!("*{}\r\n", args.len());
        for a in args {
            req.push_str(&format!("${}\r\n{a}\r\n", a.len()));
        }
        s.write_all(req.as_bytes()).ok()?;
        let mut reader = BufReader::new(s);
        let mut out = Vec::new();
        read_reply(&mut reader, &mut out)?;
        Some(out.join("\n"))
    }
}

/// Reads one RESP reply into `out` (one line per scalar).
fn read_reply(r: &mut impl BufRead, out: &mut Vec<String>) -> Option<()> {
    let mut line = String::new();
    if r.read_line(&mut line).ok()? == 0 {
        return None;
    }
    let line = line.trim_end();
    let (kind, rest) = line.split_at(1);
    match kind {
        "+" | ":" => out.push(rest.to_string()),
        "-" => out.push(format!("ERR {rest}")),
        "$" => {
            let n: i64 = rest.parse().ok()?;
            if n >= 0 {
                let mut buf = vec![0; n as usize + 2];
                r.read_exact(&mut buf).ok()?;
                out.push(String::from_utf8_lossy(&buf[..n as usize]).into_owned());
            }
        }
        "*" => {
            let n: i64 = rest.parse().ok()?;
            for _ in 0..n.max(0) {
                read_reply(r, out)?;
            }
        }
        _ => return None,
    }
    Some(())
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Two instances' config. `timeout_ms`: the decision deadline (generous where the test is not
/// about it, so that a busy machine does not make Redis look slow).
fn config(up: &Upstream, redis_url: &str, limit: u32, timeout_ms: u32) -> String {
    format!(
        "global:
  bind: 127.0.0.1
  workers: 2
  redis: {{url: '{redis_url}', timeoutMs: {timeout_ms}}}
sites:
  - port: {{port}}
    rateLimit: {{limit: {limit}, windowSecs: 60, store: redis}}
    proxy: {}
",
        up.url()
    )
}

/// `(status, RateLimit-Remaining)` of a GET to `path`.
fn get(c: &Conduit, path: &str) -> (u16, Option<u64>) {
    let r: Response = client().get(c.url(path)).send().unwrap();
    let remaining = r
        .headers()
        .get("ratelimit-remaining")
        .map(|v| v.to_str().unwrap().parse().unwrap());
    (r.status().as_u16(), remaining)
}

fn wait_log(c: &Conduit, needle: &str) {
    assert!(
        c.wait_log(needle, Duration::from_secs(15)),
        "no {needle:?} in the log:\n{}",
        c.stderr()
    );
}

#[test]
fn two_instances_share_one_limit_and_keys_expire() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let up = Upstream::start("up");
    let a = Conduit::start(&config(&up, &redis.url(), 10, 1000));
    let b = Conduit::start(&config(&up, &redis.url(), 10, 1000));
    // Alternating between the instances, one count goes down: 10 in all, not 20.
    for i in 0..10u64 {
        let c = if i % 2 == 0 { &a } else { &b };
        assert_eq!(get(c, "/"), (200, Some(9 - i)), "request {i}");
    }
    assert_eq!(get(&a, "/").0, 429);
    assert_eq!(get(&b, "/").0, 429);
    assert_eq!(up.count(), 10);
    // One key for the client, which expires when its bucket would be full again (60 s).
    let keys = redis.cmd(&["KEYS", "conduit:rl:*"]);
    let keys: Vec<&str> = keys.lines().collect();
    assert_eq!(keys.len(), 1, "{keys:?}");
    assert!(keys[0].ends_with(":ip:127.0.0.1"), "{keys:?}");
    let ttl: i64 = redis.cmd(&["PTTL", keys[0]]).parse().unwrap();
    assert!(ttl > 50_000 && ttl <= 60_000, "PTTL {ttl}");
    for c in [&a, &b] {
        assert!(!c.stderr().contains("redis unavailable"), "{}", c.stderr());
    }
}

#[test]
fn killed_redis_falls_back_to_local_limits_and_shared_limiting_resumes() {
    let Some(mut redis) = RedisServer::start() else {
        return;
    };
    let up = Upstream::start("up");
    let a = Conduit::start(&config(&up, &redis.url(), 4, 1000));
    let b = Conduit::start(&config(&up, &redis.url(), 4, 1000));
    for (c, left) in [(&a, 3), (&b, 2), (&a, 1), (&b, 0)] {
        assert_eq!(get(c, "/"), (200, Some(left)));
    }
    assert_eq!(get(&a, "/").0, 429);
    assert_eq!(get(&b, "/").0, 429);

    redis.kill();
    // Requests are still served: each instance limits on its own, with its local counters.
    for c in [&a, &b] {
        for left in [3, 2, 1, 0] {
            assert_eq!(get(c, "/"), (200, Some(left)));
        }
        assert_eq!(get(c, "/").0, 429);
        wait_log(c, "redis unavailable");
        // Logged once per interval, not once per request.
        assert_eq!(c.stderr().matches("redis unavailable").count(), 1);
    }

    redis.restart();
    for c in [&a, &b] {
        wait_log(c, "redis reachable again");
    }
    // The new Redis is empty: one shared count of 4 again.
    for (c, left) in [(&b, 3), (&a, 2), (&b, 1), (&a, 0)] {
        assert_eq!(get(c, "/"), (200, Some(left)));
    }
    assert_eq!(get(&a, "/").0, 429);
    assert_eq!(get(&b, "/").0, 429);
    assert!(!redis.cmd(&["KEYS", "conduit:rl:*"]).is_empty());
}

#[test]
fn a_slow_redis_is_answered_by_the_fallback_within_the_deadline() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let up = Upstream::start("up");
    let c = Conduit::start(&config(&up, &redis.url(), 100, 50));
    assert_eq!(get(&c, "/"), (200, Some(99)));
    // Redis is busy for 1.5 s.
    let port = redis.port;
    let sleeper = thread::spawn(move || {
        let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
        s.write_all(b"*3\r\n$5\r\nDEBUG\r\n$5\r\nSLEEP\r\n$3\r\n1.5\r\n")
            .unwrap();
        let mut buf = [0u8; 16];
        let _ = s.read(&mut buf);
    });
    thread::sleep(Duration::from_millis(200));
    let started = Instant::now();
    // The local bucket is fresh: 99 remaining there too, after this request.
    assert_eq!(get(&c, "/"), (200, Some(99)));
    assert!(
        started.elapsed() < Duration::from_millis(700),
        "took {:?}",
        started.elapsed()
    );
    wait_log(&c, "no answer within 50 ms");
    sleeper.join().unwrap();
    wait_log(&c, "redis reachable again");
    // Back on Redis: a request moves the bucket's time there on by one interval (0.6 s).
    let keys = redis.cmd(&["KEYS", "conduit:rl:*"]);
    let tat = || -> i64 { redis.cmd(&["GET", &keys]).parse().unwrap() };
    let before = tat();
    assert_eq!(get(&c, "/").0, 200);
    assert!(tat() >= before + 600_000, "{before} -> {}", tat());
}

/// A CA and a certificate for 127.0.0.1 that it signed, as PEM files in `dir`.
fn tls_files(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, KeyUsagePurpose};
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(DnType::CommonName, "Conduit Redis Test CA");
    ca.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let key = KeyPair::generate().unwrap();
    let leaf = CertificateParams::new(vec!["127.0.0.1".to_string()])
        .unwrap()
        .signed_by(&key, &ca_cert, &ca_key)
        .unwrap();
    let paths = (
        dir.join("ca.pem"),
        dir.join("redis.crt"),
        dir.join("redis.key"),
    );
    std::fs::write(&paths.0, ca_cert.pem()).unwrap();
    std::fs::write(&paths.1, leaf.pem()).unwrap();
    std::fs::write(&paths.2, key.serialize_pem()).unwrap();
    paths
}

/// Starts conduit with `SSL_CERT_FILE` set (the Redis client's trust store).
fn start_trusting(yaml: &str, ca: &Path) -> Conduit {
    for _ in 0..5 {
        let port = free_port();
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("conduit.yaml");
        std::fs::write(&config, yaml.replace("{port}", &port.to_string())).unwrap();
        let out = std::fs::File::create(dir.path().join("stdout.log")).unwrap();
        let err = std::fs::File::create(dir.path().join("stderr.log")).unwrap();
        let child = Command::new(bin())
            .arg("-c")
            .arg(&config)
            .current_dir(dir.path())
            .env("CONDUIT_LOG", "info")
            .env("SSL_CERT_FILE", ca)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .unwrap();
        let mut c = Conduit {
            child: Some(child),
            dir,
            config,
            port,
        };
        if c.wait_ready(Duration::from_secs(10)) {
            return c;
        }
    }
    panic!("conduit did not start");
}

#[test]
fn rediss_urls_speak_tls() {
    if !redis_available() {
        return;
    }
    let pki = tempfile::tempdir().unwrap();
    let (ca, cert, key) = tls_files(pki.path());
    let extra = [
        ("--tls-cert-file", &cert),
        ("--tls-key-file", &key),
        ("--tls-ca-cert-file", &ca),
    ]
    .iter()
    .flat_map(|(k, v)| [k.to_string(), v.display().to_string()])
    .chain(["--tls-auth-clients".to_string(), "no".to_string()])
    .collect();
    let redis = RedisServer::start_with(extra, true).unwrap();
    let up = Upstream::start("up");
    // The URL is given in `store` itself (`global.redis` only sets a generous deadline).
    let yaml = format!(
        "global:
  bind: 127.0.0.1
  workers: 2
  redis: {{url: 'redis://127.0.0.1:1', timeoutMs: 2000}}
sites:
  - port: {{port}}
    rateLimit: {{limit: 2, store: '{}'}}
    proxy: {}
",
        redis.url(),
        up.url()
    );
    let a = start_trusting(&yaml, &ca);
    let b = start_trusting(&yaml, &ca);
    // Shared through Redis (local counters would allow a second request on `a`).
    assert_eq!(get(&a, "/"), (200, Some(1)));
    assert_eq!(get(&b, "/"), (200, Some(0)));
    assert_eq!(get(&a, "/").0, 429);
    for c in [&a, &b] {
        assert!(!c.stderr().contains("redis unavailable"), "{}", c.stderr());
    }
}
