//! Request checks made before routing: framing (`Transfer-Encoding`), header limits and the
//! declared body size. Each refusal is a status the failure phase turns into a response.

use pingora::http::RequestHeader;

use crate::snapshot::SiteLimits;

/// A request refused by a check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub status: u16,
    pub reason: &'static str,
    /// `WWW-Authenticate` value sent with the response (`basicAuth`'s 401); usually `None`.
    pub challenge: Option<std::sync::Arc<str>>,
}

fn refuse(status: u16, reason: &'static str) -> Result<(), Refusal> {
    Err(Refusal {
        status,
        reason,
        challenge: None,
    })
}

/// `Transfer-Encoding` must be absent or exactly one `chunked`; `Content-Length` must be one
/// number (repeated equal values are tolerated).
pub fn framing(req: &RequestHeader) -> Result<(), Refusal> {
    let mut te = req.headers.get_all(http::header::TRANSFER_ENCODING).iter();
    if let Some(first) = te.next() {
        if te.next().is_some() {
            return refuse(400, "repeated Transfer-Encoding");
        }
        let v = first.as_bytes();
        if !v.eq_ignore_ascii_case(b"chunked") {
            return refuse(400, "unsupported Transfer-Encoding");
        }
    }
    let mut cl: Option<&[u8]> = None;
    for v in req.headers.get_all(http::header::CONTENT_LENGTH) {
        for part in v.as_bytes().split(|b| *b == b',') {
            let part = part.trim_ascii();
            if part.is_empty() || !part.iter().all(u8::is_ascii_digit) {
                return refuse(400, "invalid Content-Length");
            }
            match cl {
                Some(prev) if prev != part => return refuse(400, "conflicting Content-Length"),
                _ => cl = Some(part),
            }
        }
    }
    Ok(())
}

/// Header count and size limits (431).
pub fn header_limits(req: &RequestHeader, limits: &SiteLimits) -> Result<(), Refusal> {
    if req.headers.len() > limits.max_request_headers {
        return refuse(431, "too many request headers");
    }
    // Request line: method, target, version and separators (no allocation).
    let target = req.uri.path_and_query().map_or(1, |pq| pq.as_str().len())
        + req.uri.authority().map_or(0, |a| a.as_str().len());
    let mut size = req.method.as_str().len() + target + 12;
    for (name, value) in req.headers.iter() {
        size += name.as_str().len() + value.len() + 4;
        if size > limits.max_header_bytes {
            return refuse(431, "request headers too large");
        }
    }
    Ok(())
}

/// The declared body size against `maxBodyBytes` (413).
pub fn declared_body(req: &RequestHeader, limits: &SiteLimits) -> Result<(), Refusal> {
    let Some(max) = limits.max_body_bytes else {
        return Ok(());
    };
    let declared = req
        .headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(',').next())
        .and_then(|v| v.trim().parse::<u64>().ok());
    match declared {
        Some(n) if n > max => refuse(413, "request body too large"),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(headers: &[(&str, &str)]) -> RequestHeader {
        let mut r = RequestHeader::build("POST", b"/", None).unwrap();
        for (k, v) in headers {
            r.append_header(k.to_string(), *v).unwrap();
        }
        r
    }

    #[test]
    fn transfer_encoding() {
        assert!(framing(&req(&[("transfer-encoding", "chunked")])).is_ok());
        assert_eq!(
            framing(&req(&[("transfer-encoding", "chunked, chunked")]))
                .unwrap_err()
                .status,
            400
        );
        assert!(framing(&req(&[
            ("transfer-encoding", "chunked"),
            ("transfer-encoding", "chunked")
        ]))
        .is_err());
        assert!(framing(&req(&[("transfer-encoding", "gzip")])).is_err());
        assert!(framing(&req(&[("content-length", "5, 6")])).is_err());
        assert!(framing(&req(&[("content-length", "5, 5")])).is_ok());
        assert!(framing(&req(&[("content-length", "-1")])).is_err());
    }

    #[test]
    fn limits() {
        let limits = SiteLimits {
            max_body_bytes: Some(10),
            max_header_bytes: 100,
            max_request_headers: 2,
            max_inflight: None,
            header_timeout: std::time::Duration::from_secs(1),
            idle_timeout: std::time::Duration::from_secs(1),
            max_body_buffer: 65_536,
            max_conns_per_ip: None,
            priority_threshold: None,
            queue: None,
        };
        assert_eq!(
            header_limits(&req(&[("a", "1"), ("b", "2"), ("c", "3")]), &limits)
                .unwrap_err()
                .status,
            431
        );
        assert_eq!(
            header_limits(&req(&[("a", &"x".repeat(200))]), &limits)
                .unwrap_err()
                .status,
            431
        );
        assert_eq!(
            declared_body(&req(&[("content-length", "11")]), &limits)
                .unwrap_err()
                .status,
            413
        );
        assert!(declared_body(&req(&[("content-length", "10")]), &limits).is_ok());
    }
}
