//! The HTTPS API on the hub's HTTPS port:
//! - MQTT over WebSockets (any path, `mqtt` subprotocol; SDKs use `/$iothub/websocket`);
//! - module-to-module method invoke (PROTOCOL §9) and the IoT Hub service API subset (§12):
//!   twins and method invoke;
//! - `POST /twins/{d}/methods` (a leaf device's method, from the service or a module): devhub has
//!   no leaf devices, so after the usual authorization this is always
//!   `404 {"message":"Device {d} not found"}` (for the edge device's own id the message adds that
//!   devhub only serves modules, with the module route to use instead);
//! - devhub's own API under `/devhub/`:
//!   - `POST /devhub/modules/{m}/inputs/{i}`: inject the body as a message (202; stored while the
//!     module is offline). Properties come from the query string (except `api-version`) and
//!     from `x-devhub-prop-{name}` headers (lower-cased by HTTP); `Content-Type` and
//!     `Content-Encoding` become `$.ct`/`$.ce`; `x-devhub-message-id`/`-correlation-id` too;
//!   - `GET /devhub/upstream`: the recent `$upstream` messages (JSON array, oldest first);
//!     `?follow=1` streams JSON lines for messages arriving *after* the request;
//!   - `GET /devhub/status`; `POST /devhub/faults/{drop-connections|disconnect|refuse?secs=N|
//!     twin-errors?status=S&count=N|expire-tokens}`.
//!
//! Service and `/devhub/` calls need a service SAS token signed with the `iothubowner` key in
//! `{state}/keys.json`, **or** no `Authorization` header at all from a loopback address: a dev
//! convenience for the CLI and local scripts (devhub binds 127.0.0.1 by default).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use bytes::Bytes;
use edgemodule::protocol::sas;
use edgemodule::Message;
use http::{header, HeaderMap, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, StreamBody};
use hyper::body::{Frame, Incoming};
use serde_json::{json, Value};
use tokio::sync::{broadcast, watch};

use crate::certs::now_unix;
use crate::http_util::{self, HttpError, RespBody};
use crate::hub::{ApiError, Hub, UpstreamMessage};
use crate::listeners::MqttHandler;
use crate::websocket;

/// Header naming the calling module for module-to-module invokes (PROTOCOL §9).
pub const MODULE_ID_HEADER: &str = "x-ms-edge-moduleid";
/// Prefix of headers that become message properties on inject.
pub const PROP_HEADER_PREFIX: &str = "x-devhub-prop-";

const MAX_METHOD_NAME: usize = 100;
const MAX_METHOD_PAYLOAD: usize = 128 * 1024;

type Resp = Response<RespBody>;

/// Everything the HTTPS API needs.
pub struct Api {
    pub hub: Arc<Hub>,
    pub hub_host_name: String,
    pub device_id: String,
    /// policy name -> decoded key.
    pub service_keys: BTreeMap<String, Vec<u8>>,
    pub max_clock_skew: Duration,
    pub mqtt: MqttHandler,
    pub stop: watch::Receiver<bool>,
}

fn api_error(e: ApiError) -> HttpError {
    let status = StatusCode::from_u16(e.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    HttpError::new(status, e.message)
}

fn error(status: StatusCode, message: impl Into<String>) -> HttpError {
    HttpError::new(status, message)
}

fn method_not_allowed() -> HttpError {
    error(StatusCode::METHOD_NOT_ALLOWED, "method not allowed")
}

/// `YYYY-MM-DD` with an optional `-preview` suffix.
fn valid_api_version(v: &str) -> bool {
    let date = v.strip_suffix("-preview").unwrap_or(v);
    let b = date.as_bytes();
    b.len() == 10
        && b.iter().enumerate().all(|(i, c)| {
            if i == 4 || i == 7 {
                *c == b'-'
            } else {
                c.is_ascii_digit()
            }
        })
}

fn header_str<'a>(h: &'a HeaderMap, name: &str) -> Option<&'a str> {
    h.get(name).and_then(|v| v.to_str().ok())
}

/// A validated method invocation body (PROTOCOL §8 limits, §9 body).
#[derive(Debug, PartialEq)]
pub struct MethodCall {
    pub method_name: String,
    pub payload: Value,
    pub response_timeout: Duration,
    pub connect_timeout: Duration,
}

fn timeout_field(
    obj: &serde_json::Map<String, Value>,
    key: &str,
    default: u64,
    min: u64,
) -> Result<Duration, String> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(Duration::from_secs(default)),
        Some(v) => match v.as_u64() {
            Some(s) if (min..=300).contains(&s) => Ok(Duration::from_secs(s)),
            _ => Err(format!("{key} must be an integer between {min} and 300")),
        },
    }
}

/// Validates `{"methodName","payload","responseTimeoutInSeconds","connectTimeoutInSeconds"}`.
pub fn parse_method_call(body: &[u8]) -> Result<MethodCall, String> {
    let v: Value = serde_json::from_slice(body).map_err(|e| format!("invalid JSON body: {e}"))?;
    let obj = v.as_object().ok_or("the body must be a JSON object")?;
    let name = obj
        .get("methodName")
        .and_then(Value::as_str)
        .ok_or("methodName is required")?;
    if name.is_empty() || name.chars().count() > MAX_METHOD_NAME {
        return Err(format!(
            "methodName must be 1 to {MAX_METHOD_NAME} characters"
        ));
    }
    let payload = obj.get("payload").cloned().unwrap_or(Value::Null);
    if serde_json::to_vec(&payload).map(|b| b.len()).unwrap_or(0) > MAX_METHOD_PAYLOAD {
        return Err("payload is larger than 128 KB".into());
    }
    Ok(MethodCall {
        method_name: name.to_owned(),
        payload,
        response_timeout: timeout_field(obj, "responseTimeoutInSeconds", 30, 5)?,
        connect_timeout: timeout_field(obj, "connectTimeoutInSeconds", 0, 0)?,
    })
}

/// JSON view of an upstream message for people and scripts: text body when it is UTF-8,
/// base64 always.
pub fn upstream_json(m: &UpstreamMessage) -> Value {
    let msg = &m.message;
    let props: serde_json::Map<String, Value> = msg
        .properties
        .iter()
        .map(|(k, v)| {
            (
                k.clone(),
                v.clone().map(Value::String).unwrap_or(Value::Null),
            )
        })
        .collect();
    json!({
        "module": m.module,
        "output": m.output,
        "source": m.source,
        "enqueued": m.enqueued,
        "body": std::str::from_utf8(&msg.body).ok(),
        "bodyBase64": base64::engine::general_purpose::STANDARD.encode(&msg.body),
        "messageId": msg.message_id,
        "correlationId": msg.correlation_id,
        "userId": msg.user_id,
        "contentType": msg.content_type,
        "contentEncoding": msg.content_encoding,
        "creationTimeUtc": msg.creation_time_utc,
        "expiryTimeUtc": msg.expiry_time_utc,
        "connectionDeviceId": msg.connection_device_id,
        "connectionModuleId": msg.connection_module_id,
        "properties": props,
    })
}

impl Api {
    /// Serves one request.
    pub async fn handle(self: Arc<Self>, req: Request<Incoming>, peer: SocketAddr) -> Resp {
        if websocket::is_upgrade(req.headers()) {
            return websocket::upgrade(req, peer.to_string(), self.mqtt.clone(), self.stop.clone());
        }
        match self.route(req, peer).await {
            Ok(r) => r,
            Err(e) => http_util::error(e.status, e.message),
        }
    }

    async fn route(&self, req: Request<Incoming>, peer: SocketAddr) -> Result<Resp, HttpError> {
        let query = http_util::query_pairs(req.uri().query());
        if let Some(v) = http_util::query_get(&query, "api-version") {
            if !valid_api_version(v) {
                return Err(error(
                    StatusCode::BAD_REQUEST,
                    format!("invalid api-version {v:?}"),
                ));
            }
        }
        let path = req.uri().path().to_owned();
        let raw = http_util::segments(&path);
        let segs = raw
            .iter()
            .map(|s| http_util::decode_segment(s))
            .collect::<Option<Vec<String>>>()
            .ok_or_else(|| error(StatusCode::BAD_REQUEST, "invalid percent-encoding in path"))?;
        let segs: Vec<&str> = segs.iter().map(String::as_str).collect();
        let method = req.method().clone();
        match segs.as_slice() {
            ["twins", d, "modules", m, "methods"] => {
                if method != Method::POST {
                    return Err(method_not_allowed());
                }
                if req.headers().contains_key(MODULE_ID_HEADER) {
                    self.module_invoke(req, d, m).await
                } else {
                    self.authorize_service(req.headers(), peer)?;
                    self.check_device(d)?;
                    let body = http_util::read_body(req.into_body()).await?;
                    self.invoke(m, &body).await
                }
            }
            ["twins", d, "methods"] => {
                if method != Method::POST {
                    return Err(method_not_allowed());
                }
                if req.headers().contains_key(MODULE_ID_HEADER) {
                    self.authorize_module(req.headers())?;
                } else {
                    self.authorize_service(req.headers(), peer)?;
                }
                Err(self.no_device(d))
            }
            ["twins", d, "modules", m] => {
                self.authorize_service(req.headers(), peer)?;
                self.check_device(d)?;
                self.twin(req, m).await
            }
            ["devhub", rest @ ..] => {
                self.authorize_service(req.headers(), peer)?;
                self.devhub(req, rest, &query).await
            }
            _ => Err(HttpError::not_found()),
        }
    }

    fn check_device(&self, d: &str) -> Result<(), HttpError> {
        if d == self.device_id {
            Ok(())
        } else {
            Err(error(
                StatusCode::NOT_FOUND,
                format!("Device {d} not found"),
            ))
        }
    }

    /// devhub has no leaf devices: a device-level method has no target.
    fn no_device(&self, d: &str) -> HttpError {
        let message = if d == self.device_id {
            format!(
                "Device {d} not found: devhub has no leaf devices, only modules \
                 (POST /twins/{d}/modules/{{moduleId}}/methods)"
            )
        } else {
            format!("Device {d} not found")
        };
        error(StatusCode::NOT_FOUND, message)
    }

    /// Service SAS (`skn` = a policy in keys.json, `sr` = the hub host), or no Authorization
    /// from loopback.
    fn authorize_service(&self, headers: &HeaderMap, peer: SocketAddr) -> Result<(), HttpError> {
        let unauthorized = |m: &str| error(StatusCode::UNAUTHORIZED, m.to_owned());
        let Some(auth) = headers.get(header::AUTHORIZATION) else {
            return if peer.ip().is_loopback() {
                Ok(())
            } else {
                Err(unauthorized("missing Authorization header"))
            };
        };
        let token = auth
            .to_str()
            .ok()
            .and_then(|s| sas::parse_token(s).ok())
            .ok_or_else(|| unauthorized("malformed SharedAccessSignature"))?;
        let key = token
            .skn
            .as_deref()
            .and_then(|n| self.service_keys.get(n))
            .ok_or_else(|| unauthorized("unknown or missing shared access policy (skn)"))?;
        sas::verify(&token, &[key], now_unix(), self.max_clock_skew.as_secs())
            .map_err(|e| unauthorized(&e.message))?;
        let sr = http_util::decode_segment(&token.sr_raw).unwrap_or_default();
        let host = sr.split('/').next().unwrap_or_default();
        if !host.eq_ignore_ascii_case(&self.hub_host_name) {
            return Err(unauthorized("the token audience is not this hub"));
        }
        Ok(())
    }

    /// PROTOCOL §9, in edgeHub's order: header, same device, SAS, then the body.
    async fn module_invoke(
        &self,
        req: Request<Incoming>,
        d: &str,
        m: &str,
    ) -> Result<Resp, HttpError> {
        self.authorize_module(req.headers())?;
        self.check_device(d)?;
        let body = http_util::read_body(req.into_body()).await?;
        self.invoke(m, &body).await
    }

    /// A calling module (PROTOCOL §9): `x-ms-edge-moduleId: {device}/{module}` of this device and
    /// that module's SAS token.
    fn authorize_module(&self, headers: &HeaderMap) -> Result<(), HttpError> {
        let caller = header_str(headers, MODULE_ID_HEADER).unwrap_or_default();
        let (cd, cm) = caller
            .split_once('/')
            .filter(|(a, b)| !a.is_empty() && !b.is_empty())
            .ok_or_else(|| {
                error(
                    StatusCode::BAD_REQUEST,
                    "Invalid header value for x-ms-edge-moduleId",
                )
            })?;
        if cd != self.device_id {
            return Err(error(
                StatusCode::UNAUTHORIZED,
                "Only modules on the same device can invoke DirectMethods",
            ));
        }
        let token = header_str(headers, "authorization")
            .ok_or_else(|| error(StatusCode::UNAUTHORIZED, "missing Authorization header"))?;
        self.hub.verify_sas(token, cd, cm).map_err(api_error)
    }

    async fn invoke(&self, module: &str, body: &[u8]) -> Result<Resp, HttpError> {
        let call = parse_method_call(body).map_err(|e| error(StatusCode::BAD_REQUEST, e))?;
        let r = self
            .hub
            .invoke_method(
                module,
                &call.method_name,
                call.payload,
                call.response_timeout,
                call.connect_timeout,
            )
            .await
            .map_err(api_error)?;
        Ok(http_util::json(
            StatusCode::OK,
            &json!({ "status": r.status, "payload": r.payload }),
        ))
    }

    async fn twin(&self, req: Request<Incoming>, module: &str) -> Result<Resp, HttpError> {
        let method = req.method().clone();
        if method == Method::GET {
            let t = self.hub.twin(module).map_err(api_error)?;
            return Ok(http_util::json(StatusCode::OK, &t));
        }
        if method != Method::PATCH && method != Method::PUT {
            return Err(method_not_allowed());
        }
        let if_match = header_str(req.headers(), "if-match").map(str::to_owned);
        let body = http_util::read_body(req.into_body()).await?;
        let v: Value = serde_json::from_slice(&body)
            .map_err(|e| error(StatusCode::BAD_REQUEST, format!("malformed JSON body: {e}")))?;
        let t = if method == Method::PATCH {
            self.hub.update_twin(module, v, if_match.as_deref())
        } else {
            self.hub.replace_twin(module, v, if_match.as_deref())
        }
        .map_err(api_error)?;
        Ok(http_util::json(StatusCode::OK, &t))
    }

    async fn devhub(
        &self,
        req: Request<Incoming>,
        rest: &[&str],
        query: &[(String, String)],
    ) -> Result<Resp, HttpError> {
        let method = req.method().clone();
        let need = |m: Method| {
            if method == m {
                Ok(())
            } else {
                Err(method_not_allowed())
            }
        };
        match rest {
            ["modules", m, "inputs", input] => {
                need(Method::POST)?;
                self.inject(req, m, input, query).await
            }
            ["upstream"] => {
                need(Method::GET)?;
                let follow = matches!(
                    http_util::query_get(query, "follow"),
                    Some("1" | "true" | "yes")
                );
                Ok(if follow {
                    self.follow_upstream()
                } else {
                    let list: Vec<Value> = self
                        .hub
                        .upstream_recent()
                        .iter()
                        .map(upstream_json)
                        .collect();
                    http_util::json(StatusCode::OK, &Value::Array(list))
                })
            }
            ["status"] => {
                need(Method::GET)?;
                Ok(http_util::json(StatusCode::OK, &self.hub.status()))
            }
            ["faults", kind] => {
                need(Method::POST)?;
                self.fault(kind, query)
            }
            _ => Err(HttpError::not_found()),
        }
    }

    async fn inject(
        &self,
        req: Request<Incoming>,
        module: &str,
        input: &str,
        query: &[(String, String)],
    ) -> Result<Resp, HttpError> {
        let h = req.headers();
        let mut msg = Message::new(Vec::new());
        msg.content_type = header_str(h, "content-type").map(str::to_owned);
        msg.content_encoding = header_str(h, "content-encoding").map(str::to_owned);
        msg.message_id = header_str(h, "x-devhub-message-id").map(str::to_owned);
        msg.correlation_id = header_str(h, "x-devhub-correlation-id").map(str::to_owned);
        for (k, v) in query.iter().filter(|(k, _)| k != "api-version") {
            msg.set_property(k.clone(), v.clone());
        }
        for (name, v) in h {
            if let Some(k) = name.as_str().strip_prefix(PROP_HEADER_PREFIX) {
                let v = v.to_str().map_err(|_| {
                    error(StatusCode::BAD_REQUEST, "property headers must be ASCII")
                })?;
                msg.set_property(k.to_owned(), v.to_owned());
            }
        }
        msg.body = http_util::read_body(req.into_body()).await?.to_vec();
        self.hub.inject(module, input, msg).map_err(api_error)?;
        Ok(http_util::json(
            StatusCode::ACCEPTED,
            &json!({ "module": module, "input": input }),
        ))
    }

    /// JSON lines, one per upstream message arriving from now on, until the client goes away.
    fn follow_upstream(&self) -> Resp {
        let rx = self.hub.upstream_subscribe();
        let stream = futures_util::stream::unfold(rx, |mut rx| async move {
            let line = match rx.recv().await {
                Ok(m) => {
                    let mut line = serde_json::to_vec(&upstream_json(&m)).unwrap_or_default();
                    line.push(b'\n');
                    line
                }
                // A slow reader skipped messages: say so instead of silently dropping them.
                Err(broadcast::error::RecvError::Lagged(n)) => {
                    format!("{{\"lagged\":{n}}}\n").into_bytes()
                }
                Err(broadcast::error::RecvError::Closed) => return None,
            };
            Some((Ok(Frame::data(Bytes::from(line))), rx))
        });
        let mut r = Response::new(StreamBody::new(stream).boxed());
        r.headers_mut().insert(
            header::CONTENT_TYPE,
            header::HeaderValue::from_static("application/x-ndjson"),
        );
        r
    }

    fn fault(&self, kind: &str, query: &[(String, String)]) -> Result<Resp, HttpError> {
        let num = |key: &str| -> Result<Option<u64>, HttpError> {
            match http_util::query_get(query, key) {
                None => Ok(None),
                Some(v) => v.parse::<u64>().map(Some).map_err(|_| {
                    error(
                        StatusCode::BAD_REQUEST,
                        format!("{key} must be a non-negative integer"),
                    )
                }),
            }
        };
        let f = self.hub.faults();
        match kind {
            "drop-connections" => f.drop_connections(),
            "disconnect" => f.disconnect_gracefully(),
            "refuse" => {
                let secs = num("secs")?
                    .ok_or_else(|| error(StatusCode::BAD_REQUEST, "secs is required"))?;
                f.refuse_connections_for(Duration::from_secs(secs));
            }
            "twin-errors" => {
                let status = num("status")?
                    .filter(|s| (100..=599).contains(s))
                    .ok_or_else(|| {
                        error(StatusCode::BAD_REQUEST, "status (100-599) is required")
                    })?;
                let count = num("count")?.unwrap_or(1).min(u64::from(u32::MAX));
                f.fail_twin_requests(status as u16, count as u32);
            }
            "expire-tokens" => f.expire_tokens(),
            _ => return Err(HttpError::not_found()),
        }
        Ok(http_util::json(StatusCode::OK, &json!({ "fault": kind })))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_versions() {
        assert!(valid_api_version("2021-04-12"));
        assert!(valid_api_version("2020-09-30-preview"));
        assert!(!valid_api_version("2021-4-12"));
        assert!(!valid_api_version("x"));
        assert!(!valid_api_version(""));
    }

    #[test]
    fn method_call_defaults_and_limits() {
        let c = parse_method_call(br#"{"methodName":"m"}"#).unwrap();
        assert_eq!(
            c,
            MethodCall {
                method_name: "m".into(),
                payload: Value::Null,
                response_timeout: Duration::from_secs(30),
                connect_timeout: Duration::ZERO,
            }
        );
        let c = parse_method_call(
            br#"{"methodName":"m","payload":{"a":1},"responseTimeoutInSeconds":5,"connectTimeoutInSeconds":300,"timeout":1}"#,
        )
        .unwrap();
        assert_eq!(c.payload, json!({"a":1}));
        assert_eq!(c.response_timeout, Duration::from_secs(5));
        assert_eq!(c.connect_timeout, Duration::from_secs(300));
        for bad in [
            &b"nope"[..],
            br#"[]"#,
            br#"{"payload":1}"#,
            br#"{"methodName":""}"#,
            br#"{"methodName":"m","responseTimeoutInSeconds":4}"#,
            br#"{"methodName":"m","responseTimeoutInSeconds":301}"#,
            br#"{"methodName":"m","connectTimeoutInSeconds":-1}"#,
            br#"{"methodName":"m","responseTimeoutInSeconds":"10"}"#,
        ] {
            assert!(
                parse_method_call(bad).is_err(),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
        let long = format!(r#"{{"methodName":"{}"}}"#, "x".repeat(101));
        assert!(parse_method_call(long.as_bytes()).is_err());
        let big = format!(
            r#"{{"methodName":"m","payload":"{}"}}"#,
            "x".repeat(128 * 1024)
        );
        assert!(parse_method_call(big.as_bytes()).is_err());
    }
}
