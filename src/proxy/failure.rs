//! The one place where an error becomes a status and a body: a small JSON document carrying the
//! status, a reason and the request id.

use bytes::Bytes;
use pingora::http::ResponseHeader;
use pingora::proxy::Session;
use pingora::{Error, ErrorSource, ErrorType};

use super::request_id;

/// The status for a proxy error: our own refusals carry theirs; upstream timeouts are 504,
/// other upstream failures 502; malformed client input 400.
pub fn status_of(e: &Error) -> u16 {
    match e.etype() {
        ErrorType::HTTPStatus(code) => *code,
        ErrorType::ConnectTimedout | ErrorType::ReadTimedout | ErrorType::WriteTimedout
            if e.esource() == &ErrorSource::Upstream =>
        {
            504
        }
        _ => match e.esource() {
            ErrorSource::Upstream => 502,
            ErrorSource::Downstream => match e.etype() {
                ErrorType::WriteError | ErrorType::ReadError | ErrorType::ConnectionClosed => 0,
                ErrorType::ReadTimedout => 408,
                _ => 400,
            },
            ErrorSource::Internal | ErrorSource::Unset => 500,
        },
    }
}

/// The reason phrase for a status.
pub fn reason(status: u16) -> &'static str {
    http::StatusCode::from_u16(status)
        .ok()
        .and_then(|s| s.canonical_reason())
        .unwrap_or("Error")
}

/// Writes a JSON error response with the request id; `close` also ends the connection.
pub async fn respond(
    session: &mut Session,
    status: u16,
    message: &str,
    request_id: &str,
    close: bool,
    extra: &[(&'static str, &str)],
) {
    let body = Bytes::from(format!(
        "{{\"error\":{},\"status\":{status},\"request_id\":{}}}\n",
        serde_json::Value::String(message.to_string()),
        serde_json::Value::String(request_id.to_string()),
    ));
    let Ok(mut resp) = ResponseHeader::build_no_case(status, Some(4)) else {
        return;
    };
    let _ = resp.insert_header(http::header::CONTENT_TYPE, "application/json");
    let _ = resp.insert_header(http::header::CONTENT_LENGTH, body.len());
    let _ = resp.insert_header(request_id::HEADER, request_id);
    for (name, value) in extra {
        let _ = resp.insert_header(*name, *value);
    }
    if close {
        let _ = resp.insert_header(http::header::CONNECTION, "close");
        session.set_keepalive(None);
    }
    if session
        .write_response_header(Box::new(resp), false)
        .await
        .is_ok()
    {
        let _ = session.write_response_body(Some(body), true).await;
    }
}
