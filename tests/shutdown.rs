//! Graceful shutdown: in-flight requests finish, an idle server exits at once, and the
//! shutdown timeout bounds the wait.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::{Duration, Instant};

use common::*;

#[test]
fn sigterm_lets_a_slow_request_finish_then_exits() {
    let up = Upstream::start("slow");
    let mut c = Conduit::start(&simple(&up));
    let url = c.url("/slow/1500");
    let inflight = std::thread::spawn(move || {
        let r = client().get(url).send().unwrap();
        (r.status().as_u16(), r.text().unwrap())
    });
    std::thread::sleep(Duration::from_millis(300));
    let start = Instant::now();
    c.signal("TERM");
    let code = c.wait_exit(Duration::from_secs(20));
    let took = start.elapsed();
    assert_eq!(inflight.join().unwrap(), (200, "slow".to_string()));
    assert_eq!(code, Some(0), "{}", c.stderr());
    assert!(
        took >= Duration::from_millis(900),
        "exited before the request finished ({took:?})"
    );
    assert!(
        took < Duration::from_secs(15),
        "took {took:?} with a 1.5 s request in flight"
    );
}

#[test]
fn idle_server_exits_promptly_and_stops_accepting() {
    for sig in ["TERM", "INT"] {
        let up = Upstream::start("one");
        // A long drain bound: exiting well before it shows the drain ends when work does.
        let yaml = simple(&up).replace("shutdownTimeoutSecs: 5", "shutdownTimeoutSecs: 30");
        let mut c = Conduit::start(&yaml);
        assert_eq!(client().get(c.url("/")).send().unwrap().status(), 200);
        let start = Instant::now();
        c.signal(sig);
        let code = c.wait_exit(Duration::from_secs(10));
        assert_eq!(code, Some(0), "{}", c.stderr());
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "SIG{sig} took {:?}",
            start.elapsed()
        );
        assert!(std::net::TcpStream::connect(("127.0.0.1", c.port)).is_err());
    }
}

#[test]
fn shutdown_timeout_bounds_the_drain() {
    let up = Upstream::start("slow");
    let yaml = simple(&up).replace("shutdownTimeoutSecs: 5", "shutdownTimeoutSecs: 1");
    let mut c = Conduit::start(&yaml);
    let url = c.url("/slow/8000");
    let _stuck = std::thread::spawn(move || client().get(url).send().map(|r| r.status().as_u16()));
    std::thread::sleep(Duration::from_millis(300));
    let start = Instant::now();
    c.signal("TERM");
    assert_eq!(c.wait_exit(Duration::from_secs(10)), Some(0));
    let took = start.elapsed();
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(6),
        "took {took:?}"
    );
}
