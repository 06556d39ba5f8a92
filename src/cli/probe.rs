//! `conduit probe`: checks that every upstream target in the config answers HTTP.
//!
//! The config is loaded and validated as `conduit validate` does; then every target URL of every
//! site (the `proxy` URL or prefixes, and `routes[].proxy`, with their `targets`, `groups`,
//! `backup`, `canary` and `mirror`) is collected once, and all of them are probed at the same
//! time: a TCP connect, for an `https://` target a TLS handshake made the way the proxy makes it
//! (Pingora's connector with the route's `upstreamTls`: verification, `serverName`, `ca`), then
//! `GET <healthCheck.path or />` over HTTP/1.1, reading the status line. Any HTTP answer counts
//! as reachable; a failed handshake is `TLS: <reason>`. Exit 0 when every target answered, 1
//! otherwise.

use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, Instant};

use clap::Args;
use pingora::connectors::TransportConnector;
use pingora::ErrorType;
use serde::Serialize;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

use crate::config::{self, raw, LoadError};
use crate::upstream::target::{build_peer, CaBundle, TargetUrl, TlsSpec};

/// The longest status line read from a target before it is called "not HTTP".
const MAX_STATUS_LINE: u64 = 8192;

/// Arguments of `conduit probe`.
#[derive(Debug, Clone, Args)]
pub struct ProbeArgs {
    /// Deadline of each probe (resolve, connect and the status line), in milliseconds.
    #[arg(long = "timeout-ms", value_name = "MS", default_value_t = 2000)]
    pub timeout_ms: u64,
    /// Print a JSON array instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// One distinct target URL and every place in the config that names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedTarget {
    /// The URL as the config spells it.
    pub url: String,
    /// Field paths of the routes that use it, e.g. `sites[0].proxy./api`, in config order.
    pub places: Vec<String>,
    /// Path requested: the first `healthCheck.path` of a route using it, else `/`.
    pub path: String,
    /// The `upstreamTls` of the first route using it that sets one; used for `https://` URLs.
    pub tls: Option<TlsSettings>,
}

/// A route's `upstreamTls` as the config spells it; the CA file is read when the probe runs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsSettings {
    /// `verify` (default true).
    pub verify: Option<bool>,
    /// `serverName`: SNI and the name checked (default: the URL's host).
    pub server_name: Option<String>,
    /// `ca`: PEM file of the CAs to trust instead of the system roots.
    pub ca: Option<String>,
}

impl TlsSettings {
    fn from_raw(t: &raw::UpstreamTls) -> TlsSettings {
        TlsSettings {
            verify: t.verify,
            server_name: t.server_name.clone(),
            ca: t.ca.clone(),
        }
    }

    /// The spec the proxy would build: reads the CA file.
    fn spec(&self) -> Result<TlsSpec, String> {
        Ok(TlsSpec {
            verify: self.verify.unwrap_or(true),
            server_name: self.server_name.clone(),
            ca: self.ca.as_deref().map(CaBundle::load).transpose()?,
        })
    }
}

/// What probing one target found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The target answered with this status line after `latency` (connect, TLS handshake,
    /// status line).
    Reachable { status: u16, latency: Duration },
    /// No HTTP answer; the short reason.
    Unreachable { error: String },
}

/// One row of the JSON output.
#[derive(Debug, Serialize)]
struct JsonRow<'a> {
    url: &'a str,
    #[serde(rename = "where")]
    places: &'a [String],
    reachable: bool,
    status: Option<u16>,
    latency_ms: Option<u64>,
    error: Option<&'a str>,
}

/// `conduit probe`: loads the config, probes every upstream target, prints a table (or JSON).
///
/// Returns the exit code: 0 when every target answered HTTP, 1 when one did not or the config
/// is invalid.
pub fn probe(explicit: Option<&Path>, cwd: &Path, args: &ProbeArgs) -> i32 {
    let path = match config::discover(explicit, cwd) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("error: {e}");
            return 1;
        }
    };
    let loaded = match config::load_checked(&path) {
        Ok(l) => l,
        Err(LoadError::Invalid(errors)) => return super::report(&path, &errors),
        Err(e) => {
            eprintln!("error: {e}");
            return 1;
        }
    };
    let planned = collect(&loaded.raw);
    let outcomes = match run_probes(&planned, Duration::from_millis(args.timeout_ms)) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("error: cannot start the probe runtime: {e}");
            return 1;
        }
    };
    if args.json {
        println!("{}", render_json(&planned, &outcomes));
    } else {
        print!("{}", render_table(&planned, &outcomes));
    }
    let all_reachable = outcomes
        .iter()
        .all(|o| matches!(o, Outcome::Reachable { .. }));
    if all_reachable {
        0
    } else {
        1
    }
}

/// Every distinct target URL of `cfg`, in the order the config first names them.
pub fn collect(cfg: &raw::RawConfig) -> Vec<PlannedTarget> {
    let mut c = Collector::default();
    for (i, site) in cfg.sites.iter().enumerate() {
        let sp = format!("sites[{i}]");
        match &site.proxy {
            Some(raw::Proxy::Single(url)) => c.add(url, &format!("{sp}.proxy"), None, None),
            Some(raw::Proxy::Map(map)) => {
                for (prefix, upstream) in map {
                    c.upstream(&format!("{sp}.proxy.{prefix}"), upstream);
                }
            }
            None => {}
        }
        for (j, route) in site.routes.iter().flatten().enumerate() {
            if let Some(upstream) = &route.proxy {
                c.upstream(&format!("{sp}.routes[{j}].proxy"), upstream);
            }
        }
    }
    c.targets
}

/// Accumulates targets, deduplicated by URL.
#[derive(Default)]
struct Collector {
    targets: Vec<PlannedTarget>,
    index: HashMap<String, usize>,
}

impl Collector {
    fn upstream(&mut self, place: &str, upstream: &raw::Upstream) {
        match upstream {
            raw::Upstream::Url(url) => self.add(url, place, None, None),
            raw::Upstream::List(urls) => {
                for url in urls {
                    self.add(url, place, None, None);
                }
            }
            raw::Upstream::Options(o) => self.options(place, o),
        }
    }

    fn options(&mut self, place: &str, o: &raw::RouteOptions) {
        // A route with `healthCheck` is probed where its checks look; without a path, at `/`.
        let health = o
            .health_check
            .as_ref()
            .map(|h| h.path.as_deref().unwrap_or("/"));
        // Every target of the route, the mirror included, is reached with its `upstreamTls`.
        let tls = o.upstream_tls.as_ref().map(TlsSettings::from_raw);
        let tls = tls.as_ref();
        self.list(place, o.targets.as_deref(), health, tls);
        for (k, group) in o.groups.iter().flatten().enumerate() {
            self.list(
                &format!("{place}.groups[{k}]"),
                Some(&group.targets),
                health,
                tls,
            );
        }
        self.list(&format!("{place}.backup"), o.backup.as_deref(), health, tls);
        if let Some(canary) = &o.canary {
            self.list(
                &format!("{place}.canary"),
                Some(&canary.targets),
                health,
                tls,
            );
        }
        if let Some(mirror) = &o.mirror {
            // The mirror is not health-checked; it is probed at `/`.
            self.add(mirror, &format!("{place}.mirror"), None, tls);
        }
    }

    fn list(
        &mut self,
        place: &str,
        targets: Option<&[raw::Target]>,
        health: Option<&str>,
        tls: Option<&TlsSettings>,
    ) {
        for t in targets.unwrap_or_default() {
            let url = match t {
                raw::Target::Url(u) => u,
                raw::Target::Weighted(w) => &w.url,
            };
            self.add(url, place, health, tls);
        }
    }

    fn add(&mut self, url: &str, place: &str, health: Option<&str>, tls: Option<&TlsSettings>) {
        if let Some(t) = self.index.get(url).and_then(|&i| self.targets.get_mut(i)) {
            if !t.places.iter().any(|p| p == place) {
                t.places.push(place.to_string());
            }
            // The first route that sets a health-check path decides where the target is probed.
            if t.path == "/" {
                if let Some(h) = health {
                    t.path = h.to_string();
                }
            }
            // Likewise the first route that sets `upstreamTls` decides how it is reached.
            if t.tls.is_none() {
                t.tls = tls.cloned();
            }
            return;
        }
        self.index.insert(url.to_string(), self.targets.len());
        self.targets.push(PlannedTarget {
            url: url.to_string(),
            places: vec![place.to_string()],
            path: health.unwrap_or("/").to_string(),
            tls: tls.cloned(),
        });
    }
}

/// Probes every target at once on a runtime of its own; outcomes are in the order of `targets`.
fn run_probes(targets: &[PlannedTarget], timeout: Duration) -> std::io::Result<Vec<Outcome>> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    // One connector (it loads the system roots once) for all `https://` targets, only if any.
    let connector = targets
        .iter()
        .any(|t| crate::upstream::target::is_https(&t.url))
        .then(|| TransportConnector::new(None));
    let outcomes = rt.block_on(futures::future::join_all(
        targets
            .iter()
            .map(|t| probe_one(t, timeout, connector.as_ref())),
    ));
    // A resolver stuck past its deadline must not hold the process.
    rt.shutdown_background();
    Ok(outcomes)
}

/// Probes one target: resolve, connect (and the TLS handshake of an `https://` target),
/// `GET path`, read the status line, all within `timeout`. `connector` makes the TLS
/// connections; without one an `https://` target gets a connector of its own.
pub async fn probe_one(
    target: &PlannedTarget,
    timeout: Duration,
    connector: Option<&TransportConnector>,
) -> Outcome {
    match exchange(target, timeout, connector).await {
        Ok((status, latency)) => Outcome::Reachable { status, latency },
        Err(error) => Outcome::Unreachable { error },
    }
}

async fn exchange(
    planned: &PlannedTarget,
    timeout: Duration,
    connector: Option<&TransportConnector>,
) -> Result<(u16, Duration), String> {
    let deadline = tokio::time::Instant::now() + timeout;
    let ms = timeout.as_millis();
    let url = planned.url.as_str();
    let target = TargetUrl::parse(url)?;
    let tls = target.is_tls();
    let host = target.host.clone();
    let resolving = tokio::task::spawn_blocking(move || target.resolve());
    let addr = match tokio::time::timeout_at(deadline, resolving).await {
        Err(_) => return Err(format!("cannot resolve `{host}`: timed out after {ms} ms")),
        Ok(Err(e)) => return Err(format!("cannot resolve `{host}`: {e}")),
        Ok(Ok(resolved)) => resolved?,
    };
    let request = format!(
        "GET {} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\nUser-Agent: conduit-probe\r\nAccept: */*\r\n\r\n",
        planned.path,
        authority(url)
    );

    let started = Instant::now();
    let line = if tls {
        let spec = planned
            .tls
            .clone()
            .unwrap_or_default()
            .spec()
            .map_err(|e| format!("TLS: {e}"))?;
        // HTTP/1.1 only (ALPN `http/1.1`): the probe speaks nothing else.
        let peer = build_peer(addr, url, &spec, false)?;
        let own;
        let connector = match connector {
            Some(c) => c,
            None => {
                own = TransportConnector::new(None);
                &own
            }
        };
        let stream = match tokio::time::timeout_at(deadline, connector.new_stream(&peer)).await {
            Err(_) => return Err(format!("connect timed out after {ms} ms")),
            Ok(Err(e)) => return Err(connect_reason(&e)),
            Ok(Ok(s)) => s,
        };
        status_line(stream, &request, deadline, ms).await?
    } else {
        let stream = match tokio::time::timeout_at(deadline, TcpStream::connect(addr)).await {
            Err(_) => return Err(format!("connect timed out after {ms} ms")),
            Ok(Err(e)) => return Err(io_reason(&e)),
            Ok(Ok(s)) => s,
        };
        status_line(stream, &request, deadline, ms).await?
    };
    let latency = started.elapsed();
    if line.is_empty() {
        return Err("connection closed without a response".to_string());
    }
    match status_code(&line) {
        Some(status) => Ok((status, latency)),
        None => Err("not an HTTP response".to_string()),
    }
}

/// Writes `request` on `stream` and reads the first line of the answer by `deadline`.
async fn status_line<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
    request: &str,
    deadline: tokio::time::Instant,
    ms: u128,
) -> Result<Vec<u8>, String> {
    let answer = async {
        stream.write_all(request.as_bytes()).await?;
        stream.flush().await?;
        let mut line = Vec::new();
        BufReader::new(&mut stream)
            .take(MAX_STATUS_LINE)
            .read_until(b'\n', &mut line)
            .await?;
        Ok::<_, std::io::Error>(line)
    };
    match tokio::time::timeout_at(deadline, answer).await {
        Err(_) => Err(format!("no response within {ms} ms")),
        Ok(Err(e)) => Err(io_reason(&e)),
        Ok(Ok(line)) => Ok(line),
    }
}

/// A short reason for a failed Pingora connect: `TLS: <why>` for a failed handshake (an
/// untrusted or mismatched certificate, a peer that is not TLS), else the socket error.
fn connect_reason(e: &pingora::Error) -> String {
    match e.etype {
        ErrorType::TLSHandshakeFailure
        | ErrorType::TLSHandshakeTimedout
        | ErrorType::TLSWantX509Lookup
        | ErrorType::InvalidCert
        | ErrorType::HandshakeError => {
            let context = e.context.as_ref().map(|c| c.as_str().to_string());
            let why = context.unwrap_or_else(|| e.etype.as_str().to_string());
            format!("TLS: {}", tls_reason(&why))
        }
        _ => {
            if let Some(io) = e
                .cause
                .as_ref()
                .and_then(|c| c.downcast_ref::<std::io::Error>())
            {
                return io_reason(io);
            }
            match e.etype {
                ErrorType::ConnectRefused => "connection refused".to_string(),
                ErrorType::ConnectTimedout => "connect timed out".to_string(),
                ErrorType::ConnectNoRoute => "no route to host".to_string(),
                _ => match &e.context {
                    Some(c) => c.as_str().to_string(),
                    None => e.etype.as_str().to_string(),
                },
            }
        }
    }
}

/// Pingora's `TLS connect() failed: <error>, SNI: <name>` as `<why> (SNI <name>)`, where `<why>`
/// is the innermost cause of `<error>` (the rustls error, e.g. `invalid peer certificate: ...`).
fn tls_reason(context: &str) -> String {
    let text = context
        .strip_prefix("TLS connect() failed: ")
        .unwrap_or(context);
    let (error, sni) = match text.rsplit_once(", SNI: ") {
        Some((error, sni)) => (error, sni),
        None => (text, ""),
    };
    let why = error
        .rsplit_once(" cause: ")
        .map_or(error, |(_, cause)| cause)
        .trim();
    if sni.is_empty() {
        why.to_string()
    } else {
        format!("{why} (SNI {sni})")
    }
}

/// `host[:port]` exactly as the URL spells it, for the `Host` header.
fn authority(url: &str) -> &str {
    let rest = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"))
        .unwrap_or(url);
    rest.strip_suffix('/').unwrap_or(rest)
}

/// The status code of an HTTP/1.x status line, or `None` when `line` is not one.
pub fn status_code(line: &[u8]) -> Option<u16> {
    let line = std::str::from_utf8(line).ok()?;
    let mut parts = line.trim_end().splitn(3, ' ');
    if !parts.next()?.starts_with("HTTP/") {
        return None;
    }
    let code = parts.next()?;
    if code.len() != 3 {
        return None;
    }
    code.parse::<u16>().ok().filter(|c| (100..=999).contains(c))
}

/// A short reason for a socket error, without the OS error number.
fn io_reason(e: &std::io::Error) -> String {
    use std::io::ErrorKind;
    match e.kind() {
        ErrorKind::ConnectionRefused => "connection refused".to_string(),
        ErrorKind::ConnectionReset => "connection reset".to_string(),
        ErrorKind::ConnectionAborted => "connection aborted".to_string(),
        ErrorKind::TimedOut => "timed out".to_string(),
        ErrorKind::HostUnreachable => "host unreachable".to_string(),
        ErrorKind::NetworkUnreachable => "network unreachable".to_string(),
        ErrorKind::AddrNotAvailable => "address not available".to_string(),
        _ => {
            let text = e.to_string();
            let short = text.split(" (os error").next().unwrap_or(&text);
            let mut chars = short.chars();
            match chars.next() {
                Some(first) => first.to_lowercase().chain(chars).collect(),
                None => text,
            }
        }
    }
}

/// The aligned table: a header, one row per target, then `N targets, M unreachable`.
pub fn render_table(targets: &[PlannedTarget], outcomes: &[Outcome]) -> String {
    let mut rows: Vec<[String; 4]> = vec![[
        "URL".to_string(),
        "WHERE".to_string(),
        "STATUS".to_string(),
        "LATENCY".to_string(),
    ]];
    for (t, o) in targets.iter().zip(outcomes) {
        let (status, latency) = match o {
            Outcome::Reachable { status, latency } => {
                (status.to_string(), format!("{} ms", latency.as_millis()))
            }
            Outcome::Unreachable { error } => (format!("unreachable: {error}"), "-".to_string()),
        };
        rows.push([t.url.clone(), t.places.join(", "), status, latency]);
    }
    let mut widths = [0usize; 4];
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for row in &rows {
        let [url, place, status, latency] = row;
        let line = format!(
            "{url:<w0$}  {place:<w1$}  {status:<w2$}  {latency}",
            w0 = widths[0],
            w1 = widths[1],
            w2 = widths[2],
        );
        out.push_str(line.trim_end());
        out.push('\n');
    }
    let unreachable = outcomes
        .iter()
        .filter(|o| matches!(o, Outcome::Unreachable { .. }))
        .count();
    let noun = if targets.len() == 1 {
        "target"
    } else {
        "targets"
    };
    out.push_str(&format!(
        "{} {noun}, {unreachable} unreachable\n",
        targets.len()
    ));
    out
}

/// The JSON array: `{url, where, reachable, status, latency_ms, error}` per target.
pub fn render_json(targets: &[PlannedTarget], outcomes: &[Outcome]) -> String {
    let rows: Vec<JsonRow<'_>> = targets
        .iter()
        .zip(outcomes)
        .map(|(t, o)| match o {
            Outcome::Reachable { status, latency } => JsonRow {
                url: &t.url,
                places: &t.places,
                reachable: true,
                status: Some(*status),
                latency_ms: Some(u64::try_from(latency.as_millis()).unwrap_or(u64::MAX)),
                error: None,
            },
            Outcome::Unreachable { error } => JsonRow {
                url: &t.url,
                places: &t.places,
                reachable: false,
                status: None,
                latency_ms: None,
                error: Some(error),
            },
        })
        .collect();
    serde_json::to_string_pretty(&rows).unwrap_or_else(|_| "[]".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(yaml: &str) -> raw::RawConfig {
        serde_yaml_ng::from_str(yaml).unwrap()
    }

    #[test]
    fn collects_every_kind_of_target_once() {
        let c = cfg(r#"
sites:
  - proxy: http://a:1
  - proxy:
      /x: http://b:1
      /y: [http://a:1, http://c:1]
      /z:
        targets: [http://d:1, {url: http://e:1, weight: 2}]
        backup: [http://f:1]
        canary: {targets: [http://g:1], weight: 5}
        mirror: http://h:1
        healthCheck: {path: /healthz}
    routes:
      - proxy:
          groups:
            - {name: one, targets: [http://i:1]}
          healthCheck: {}
      - proxy: http://b:1
"#);
        let t = collect(&c);
        let urls: Vec<&str> = t.iter().map(|t| t.url.as_str()).collect();
        assert_eq!(
            urls,
            [
                "http://a:1",
                "http://b:1",
                "http://c:1",
                "http://d:1",
                "http://e:1",
                "http://f:1",
                "http://g:1",
                "http://h:1",
                "http://i:1"
            ]
        );
        assert_eq!(t[0].places, ["sites[0].proxy", "sites[1].proxy./y"]);
        assert_eq!(
            t[1].places,
            ["sites[1].proxy./x", "sites[1].routes[1].proxy"]
        );
        assert_eq!(t[3].path, "/healthz");
        assert_eq!(t[4].path, "/healthz");
        assert_eq!(t[5].places, ["sites[1].proxy./z.backup"]);
        assert_eq!(t[6].places, ["sites[1].proxy./z.canary"]);
        assert_eq!(
            (t[7].places[0].as_str(), t[7].path.as_str()),
            ("sites[1].proxy./z.mirror", "/")
        );
        assert_eq!(t[8].places, ["sites[1].routes[0].proxy.groups[0]"]);
        assert_eq!(t[8].path, "/");
        assert_eq!(t[0].path, "/");
    }

    #[test]
    fn a_later_health_path_applies_to_a_target_seen_before() {
        let c = cfg(r#"
sites:
  - proxy:
      /a: http://a:1
      /b: {targets: [http://a:1], healthCheck: {path: /ok}}
"#);
        let t = collect(&c);
        assert_eq!(t.len(), 1);
        assert_eq!(t[0].path, "/ok");
        assert_eq!(t[0].places, ["sites[0].proxy./a", "sites[0].proxy./b"]);
    }

    #[test]
    fn the_first_upstream_tls_of_a_target_applies() {
        let c = cfg(r#"
sites:
  - proxy:
      /a: https://a:1
      /b:
        targets: [https://a:1, https://b:1]
        mirror: https://m:1
        upstreamTls: {ca: /ca.pem, serverName: api.internal}
      /c: {targets: [https://b:1], upstreamTls: {verify: false}}
"#);
        let t = collect(&c);
        let want = TlsSettings {
            verify: None,
            server_name: Some("api.internal".into()),
            ca: Some("/ca.pem".into()),
        };
        assert_eq!(t.len(), 3);
        assert_eq!(t[0].url, "https://a:1");
        assert_eq!(t[0].tls.as_ref(), Some(&want));
        assert_eq!(t[1].url, "https://b:1");
        assert_eq!(t[1].tls.as_ref(), Some(&want));
        assert_eq!(t[2].url, "https://m:1");
        assert_eq!(t[2].tls.as_ref(), Some(&want));
    }

    #[test]
    fn tls_reasons_are_short() {
        assert_eq!(
            tls_reason("TLS connect() failed: invalid peer certificate: UnknownIssuer, SNI: a.b"),
            "invalid peer certificate: UnknownIssuer (SNI a.b)"
        );
        assert_eq!(tls_reason("TLS connect() failed: eof, SNI: "), "eof");
        assert_eq!(
            tls_reason(
                "TLS connect() failed:  TLSHandshakeFailure context: tls connect error cause: \
                 invalid peer certificate: UnknownIssuer, SNI: localhost"
            ),
            "invalid peer certificate: UnknownIssuer (SNI localhost)"
        );
        assert_eq!(
            tls_reason("per-peer CA list is empty"),
            "per-peer CA list is empty"
        );
    }

    #[test]
    fn status_lines() {
        assert_eq!(status_code(b"HTTP/1.1 200 OK\r\n"), Some(200));
        assert_eq!(status_code(b"HTTP/1.0 503\r\n"), Some(503));
        assert_eq!(status_code(b"SSH-2.0-OpenSSH_9.6\r\n"), None);
        assert_eq!(status_code(b"HTTP/1.1 20 OK\r\n"), None);
        assert_eq!(status_code(b"\x16\x03\x01"), None);
    }

    #[test]
    fn authority_is_the_urls_host_and_port() {
        assert_eq!(authority("http://up:4000"), "up:4000");
        assert_eq!(authority("http://up/"), "up");
        assert_eq!(authority("http://[::1]:81"), "[::1]:81");
        assert_eq!(authority("https://api.internal:8443"), "api.internal:8443");
        assert_eq!(authority("https://api.internal/"), "api.internal");
    }

    #[test]
    fn table_is_aligned_and_summarised() {
        let targets = vec![
            PlannedTarget {
                url: "http://a:1".into(),
                places: vec!["sites[0].proxy".into()],
                path: "/".into(),
                tls: None,
            },
            PlannedTarget {
                url: "http://longer:2".into(),
                places: vec!["sites[0].proxy./api".into()],
                path: "/".into(),
                tls: None,
            },
        ];
        let outcomes = vec![
            Outcome::Reachable {
                status: 200,
                latency: Duration::from_millis(3),
            },
            Outcome::Unreachable {
                error: "connection refused".into(),
            },
        ];
        let table = render_table(&targets, &outcomes);
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines.len(), 4);
        assert!(lines[0].starts_with("URL              WHERE"), "{table}");
        let col = lines[0].find("STATUS").unwrap();
        assert_eq!(lines[1].find("200"), Some(col), "{table}");
        assert_eq!(lines[2].find("unreachable"), Some(col), "{table}");
        assert!(lines[1].ends_with("3 ms"));
        assert!(lines[2].ends_with("-"));
        assert_eq!(lines[3], "2 targets, 1 unreachable");

        let json: serde_json::Value =
            serde_json::from_str(&render_json(&targets, &outcomes)).unwrap();
        assert_eq!(json[0]["status"], 200);
        assert_eq!(json[0]["latency_ms"], 3);
        assert_eq!(json[1]["reachable"], false);
        assert_eq!(json[1]["error"], "connection refused");
        assert_eq!(json[1]["where"][0], "sites[0].proxy./api");
    }

    #[tokio::test]
    async fn a_closed_port_is_refused() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let target = PlannedTarget {
            url: format!("http://127.0.0.1:{port}"),
            places: vec![],
            path: "/".into(),
            tls: None,
        };
        let o = probe_one(&target, Duration::from_secs(2), None).await;
        assert_eq!(
            o,
            Outcome::Unreachable {
                error: "connection refused".into()
            }
        );
    }
}
