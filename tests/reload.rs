//! Configuration change while serving: SIGHUP, file watching, invalid reloads, and reloads
//! under traffic that lose no request.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;

fn config(up: &Upstream, extra: &str) -> String {
    format!(
        "global: {{bind: 127.0.0.1, workers: 2}}\nsites:\n  - port: {{port}}\n    healthCheck: true\n{extra}    proxy: {}\n",
        up.url()
    )
}

fn body(c: &Conduit) -> String {
    client().get(c.url("/")).send().unwrap().text().unwrap()
}

fn eventually(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if f() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("timed out waiting for {what}");
}

#[test]
fn sighup_swaps_config_and_invalid_config_keeps_the_old_one() {
    let a = Upstream::start("a");
    let b = Upstream::start("b");
    let c = Conduit::start(&config(&a, ""));
    assert_eq!(body(&c), "a");

    c.write_config(&config(&b, ""));
    c.signal("HUP");
    eventually("reload to b", Duration::from_secs(5), || body(&c) == "b");
    assert!(c.wait_log("configuration reloaded", Duration::from_secs(2)));

    // Invalid: the error is logged with its path, the old config keeps serving.
    c.write_config(&config(&a, "    limits: {maxBodyBytes: 0}\n"));
    c.signal("HUP");
    assert!(
        c.wait_log("reload rejected", Duration::from_secs(5)),
        "{}",
        c.stderr()
    );
    assert!(c.stderr().contains("limits.maxBodyBytes"), "{}", c.stderr());
    assert_eq!(body(&c), "b");

    // Syntax error: same.
    std::fs::write(&c.config, "sites: [").unwrap();
    c.signal("HUP");
    eventually("second rejection", Duration::from_secs(5), || {
        c.stderr().matches("reload rejected").count() >= 2
    });
    assert_eq!(body(&c), "b");

    // A new port needs a restart: rejected, old config serving.
    let other = free_port();
    c.write_config(&config(&a, "").replace("port: {port}", &format!("port: {other}")));
    c.signal("HUP");
    eventually("restart-required rejection", Duration::from_secs(5), || {
        c.stderr().contains("needs a restart")
    });
    assert_eq!(body(&c), "b");
}

#[test]
fn hot_reload_follows_the_file() {
    let a = Upstream::start("a");
    let b = Upstream::start("b");
    let c = Conduit::start(&config(&a, "    hotReload: true\n"));
    assert_eq!(body(&c), "a");
    c.write_config(&config(&b, "    hotReload: true\n"));
    eventually("file change picked up", Duration::from_secs(5), || {
        body(&c) == "b"
    });
}

#[test]
fn without_hot_reload_file_changes_wait_for_a_signal() {
    let a = Upstream::start("a");
    let b = Upstream::start("b");
    let c = Conduit::start(&config(&a, ""));
    c.write_config(&config(&b, ""));
    std::thread::sleep(Duration::from_millis(800));
    assert_eq!(body(&c), "a");
}

#[test]
fn reload_under_traffic_loses_no_request() {
    let a = Upstream::start("a");
    let b = Upstream::start("b");
    let c = Arc::new(Conduit::start(&config(&a, "")));
    let stop = Arc::new(AtomicBool::new(false));
    let ok = Arc::new(AtomicUsize::new(0));
    let failures = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let workers: Vec<_> = (0..4)
        .map(|i| {
            let (c, stop, ok, failures) = (c.clone(), stop.clone(), ok.clone(), failures.clone());
            std::thread::spawn(move || {
                // Half the workers reuse connections, half open a new one per request.
                let pooled = client();
                while !stop.load(Ordering::SeqCst) {
                    let http = if i % 2 == 0 { pooled.clone() } else { client() };
                    match http.post(c.url("/echo")).body("ping").send() {
                        Ok(r) if r.status() == 200 => {
                            let text = r.text().unwrap_or_default();
                            if text == "ping" {
                                ok.fetch_add(1, Ordering::SeqCst);
                            } else {
                                failures.lock().unwrap().push(format!("body {text:?}"));
                            }
                        }
                        Ok(r) => failures
                            .lock()
                            .unwrap()
                            .push(format!("status {}", r.status())),
                        Err(e) => failures.lock().unwrap().push(format!("error {e}")),
                    }
                }
            })
        })
        .collect();
    for i in 0..8 {
        std::thread::sleep(Duration::from_millis(250));
        let target = if i % 2 == 0 { &b } else { &a };
        c.write_config(&config(target, ""));
        c.signal("HUP");
    }
    std::thread::sleep(Duration::from_millis(300));
    stop.store(true, Ordering::SeqCst);
    for w in workers {
        w.join().unwrap();
    }
    let failures = failures.lock().unwrap();
    assert!(
        failures.is_empty(),
        "{} failures, e.g. {:?}",
        failures.len(),
        &failures[..failures.len().min(5)]
    );
    assert!(
        ok.load(Ordering::SeqCst) > 50,
        "only {} requests",
        ok.load(Ordering::SeqCst)
    );
    assert!(a.count() > 0 && b.count() > 0);
    assert_eq!(
        c.stderr().matches("configuration reloaded").count(),
        8,
        "{}",
        c.stderr()
    );
}

#[test]
fn turning_hot_reload_on_in_the_file_takes_effect_without_a_signal() {
    let a = Upstream::start("a");
    let b = Upstream::start("b");
    let c = Conduit::start(&config(&a, ""));
    c.write_config(&config(&b, "    hotReload: true\n"));
    eventually("file change picked up", Duration::from_secs(5), || {
        body(&c) == "b"
    });
}
