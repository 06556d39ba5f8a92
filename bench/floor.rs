//! The performance floor for `bench/run.sh`: a bare Pingora HTTP proxy with one upstream.
//!
//! A minimal `ProxyHttp`: no per-request logic beyond handing back one `HttpPeer` that was built
//! once at start, so upstream connections are reused. Conduit's proxy CPU per request is compared
//! with this.
//!
//! Usage: `floor <listen-port> <upstream host:port> [threads (1)] [work-stealing 0|1 (0)]`.
//! It listens on 127.0.0.1 only. Work stealing defaults to off, as in Conduit
//! (`global.workStealing` default `false`), so the two differ only in the proxy logic.

use std::process::ExitCode;

use async_trait::async_trait;
use pingora::proxy::{http_proxy_service, ProxyHttp, Session};
use pingora::server::configuration::ServerConf;
use pingora::server::Server;
use pingora::upstreams::peer::HttpPeer;
use pingora::Result;

/// The bare proxy: every request goes to the one peer.
struct Floor {
    peer: HttpPeer,
}

#[async_trait]
impl ProxyHttp for Floor {
    type CTX = ();

    fn new_ctx(&self) {}

    async fn upstream_peer(&self, _session: &mut Session, _ctx: &mut ()) -> Result<Box<HttpPeer>> {
        Ok(Box::new(self.peer.clone()))
    }
}

fn usage(msg: &str) -> ExitCode {
    eprintln!("floor: {msg}");
    eprintln!("usage: floor <listen-port> <upstream host:port> [threads] [work-stealing 0|1]");
    ExitCode::from(2)
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(port) = args.first().and_then(|p| p.parse::<u16>().ok()) else {
        return usage("missing or invalid <listen-port>");
    };
    let Some(upstream) = args
        .get(1)
        .and_then(|a| a.parse::<std::net::SocketAddr>().ok())
    else {
        return usage("missing or invalid <upstream host:port> (an IP address and port)");
    };
    let threads = match args.get(2).map(|t| t.parse::<usize>()) {
        None => 1,
        Some(Ok(n)) if n > 0 => n,
        Some(_) => return usage("invalid [threads]"),
    };
    let work_stealing = match args.get(3).map(String::as_str) {
        None | Some("0") => false,
        Some("1") => true,
        Some(_) => return usage("invalid [work-stealing], expected 0 or 1"),
    };

    let tmp = std::env::temp_dir();
    let id = std::process::id();
    let conf = ServerConf {
        threads,
        work_stealing,
        pid_file: tmp.join(format!("floor-{id}.pid")).display().to_string(),
        upgrade_sock: tmp.join(format!("floor-{id}.sock")).display().to_string(),
        grace_period_seconds: Some(0),
        graceful_shutdown_timeout_seconds: Some(0),
        ..ServerConf::default()
    };
    let mut server = Server::new_with_opt_and_conf(None, conf);
    server.bootstrap();

    let peer = HttpPeer::new(upstream, false, String::new());
    let mut service = http_proxy_service(&server.configuration, Floor { peer });
    service.add_tcp(&format!("127.0.0.1:{port}"));
    server.add_service(service);
    server.run_forever();
}
