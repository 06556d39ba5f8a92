//! Starting up: a taken port or an invalid file fails fast with a clear message.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::Duration;

use common::*;

#[test]
fn a_taken_port_fails_fast_with_exit_1() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let up = Upstream::start("one");
    let mut c = Conduit::start_on(&simple(&up), port);
    let code = c.wait_exit(Duration::from_secs(5));
    assert_eq!(code, Some(1));
    assert!(
        c.stderr()
            .contains(&format!("cannot listen on 127.0.0.1:{port}")),
        "{}",
        c.stderr()
    );
}

#[test]
fn an_invalid_file_does_not_start() {
    let up = Upstream::start("one");
    let mut c = Conduit::start_on(
        &(simple(&up) + "    limits: {maxInflightRequests: 0}\n"),
        free_port(),
    );
    assert_eq!(c.wait_exit(Duration::from_secs(5)), Some(1));
    assert!(
        c.stderr().contains("limits.maxInflightRequests"),
        "{}",
        c.stderr()
    );
}
