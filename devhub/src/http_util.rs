//! Small HTTP helpers shared by the Workload API and the HTTPS API (hyper 1).

use std::convert::Infallible;

use bytes::Bytes;
use http::{header, HeaderValue, Response, StatusCode};
use http_body_util::{combinators::BoxBody, BodyExt, Full, Limited};
use hyper::body::Incoming;

/// Response body: a full buffer or a stream (the upstream follow feed).
pub type RespBody = BoxBody<Bytes, std::io::Error>;

/// Largest request body accepted (twins are ≤ 32 KB per section, method payloads ≤ 128 KB,
/// messages ≤ 256 KB; leave room for JSON escaping).
pub const MAX_BODY: usize = 1024 * 1024;

pub const JSON_UTF8: &str = "application/json; charset=utf-8";

pub fn full(body: impl Into<Bytes>) -> RespBody {
    Full::new(body.into())
        .map_err(|never: Infallible| match never {})
        .boxed()
}

pub fn json_with(
    status: StatusCode,
    value: &serde_json::Value,
    content_type: &'static str,
) -> Response<RespBody> {
    let body = serde_json::to_vec(value).unwrap_or_else(|_| b"null".to_vec());
    let mut r = Response::new(full(body));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    r
}

/// JSON response with `Content-Type: application/json; charset=utf-8` (edgeHub's type).
pub fn json(status: StatusCode, value: &serde_json::Value) -> Response<RespBody> {
    json_with(status, value, JSON_UTF8)
}

/// `{"message": ...}` error response.
pub fn error(status: StatusCode, message: impl Into<String>) -> Response<RespBody> {
    json(status, &serde_json::json!({ "message": message.into() }))
}

/// A failed request: status plus the `{"message"}` text. Each API renders it with its own
/// content type.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpError {
    pub status: StatusCode,
    pub message: String,
}

impl HttpError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> HttpError {
        HttpError {
            status,
            message: message.into(),
        }
    }

    pub fn bad_request(message: impl Into<String>) -> HttpError {
        HttpError::new(StatusCode::BAD_REQUEST, message)
    }

    pub fn not_found() -> HttpError {
        HttpError::new(StatusCode::NOT_FOUND, "not found")
    }
}

/// Reads the whole body, refusing more than [`MAX_BODY`] bytes (413).
pub async fn read_body(body: Incoming) -> Result<Bytes, HttpError> {
    match Limited::new(body, MAX_BODY).collect().await {
        Ok(c) => Ok(c.to_bytes()),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => Err(HttpError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "request body too large",
        )),
        Err(_) => Err(HttpError::bad_request("could not read request body")),
    }
}

/// Percent-decodes a path segment (route ids are URL-decoded, PROTOCOL §2, §9).
pub fn decode_segment(s: &str) -> Option<String> {
    percent_encoding::percent_decode_str(s)
        .decode_utf8()
        .ok()
        .map(|c| c.into_owned())
}

/// Query string pairs, form-decoded (`+` is a space).
pub fn query_pairs(query: Option<&str>) -> Vec<(String, String)> {
    let Some(q) = query else { return Vec::new() };
    q.split('&')
        .filter(|s| !s.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            let dec = |s: &str| {
                let s = s.replace('+', " ");
                percent_encoding::percent_decode_str(&s)
                    .decode_utf8_lossy()
                    .into_owned()
            };
            (dec(k), dec(v))
        })
        .collect()
}

pub fn query_get<'a>(pairs: &'a [(String, String)], key: &str) -> Option<&'a str> {
    pairs
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

/// Path split into raw (still encoded) segments, without the leading `/`.
pub fn segments(path: &str) -> Vec<&str> {
    let p = path.strip_prefix('/').unwrap_or(path);
    let p = p.strip_suffix('/').unwrap_or(p);
    if p.is_empty() {
        Vec::new()
    } else {
        p.split('/').collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_and_segments() {
        let q = query_pairs(Some("api-version=2020-07-07&a=b%20c+d&flag&&x=%24"));
        assert_eq!(query_get(&q, "api-version"), Some("2020-07-07"));
        assert_eq!(query_get(&q, "a"), Some("b c d"));
        assert_eq!(query_get(&q, "flag"), Some(""));
        assert_eq!(query_get(&q, "x"), Some("$"));
        assert_eq!(query_get(&q, "none"), None);
        assert_eq!(
            segments("/modules/%24edgeHub/genid/1/sign"),
            vec!["modules", "%24edgeHub", "genid", "1", "sign"]
        );
        assert_eq!(segments("/"), Vec::<&str>::new());
        assert_eq!(decode_segment("%24edgeHub").as_deref(), Some("$edgeHub"));
        assert_eq!(decode_segment("%FF"), None);
    }
}
