//! Direct methods invoked on a module (service REST or module-to-module HTTP), PROTOCOL §8.

use super::auth::SubKind;
use super::{ApiError, Hub, MethodResult};
use bytes::Bytes;
use edgemodule::protocol::topics;
use serde_json::Value;
use std::time::Duration;
use tokio::sync::oneshot;

/// edgeHub MethodRequestValidator limits.
const MAX_NAME_LEN: usize = 100;
const RESPONSE_TIMEOUT_RANGE: (u64, u64) = (5, 300);
const CONNECT_TIMEOUT_MAX: u64 = 300;

/// Validate an invocation as edgeHub's MethodRequestValidator does (400 on failure).
pub(crate) fn validate(
    method: &str,
    response_timeout: Duration,
    connect_timeout: Duration,
) -> Result<(), ApiError> {
    if method.trim().is_empty() {
        return Err(ApiError::new(400, "The method name must not be empty"));
    }
    if method.chars().count() > MAX_NAME_LEN {
        return Err(ApiError::new(
            400,
            format!("The method name must be at most {MAX_NAME_LEN} characters long"),
        ));
    }
    let rt = response_timeout.as_secs_f64();
    if rt < RESPONSE_TIMEOUT_RANGE.0 as f64 || rt > RESPONSE_TIMEOUT_RANGE.1 as f64 {
        return Err(ApiError::new(
            400,
            format!(
                "responseTimeoutInSeconds must be between {} and {} seconds",
                RESPONSE_TIMEOUT_RANGE.0, RESPONSE_TIMEOUT_RANGE.1
            ),
        ));
    }
    if connect_timeout.as_secs_f64() > CONNECT_TIMEOUT_MAX as f64 {
        return Err(ApiError::new(
            400,
            format!("connectTimeoutInSeconds must be between 0 and {CONNECT_TIMEOUT_MAX} seconds"),
        ));
    }
    Ok(())
}

/// A method response body as the REST API returns it: empty -> null, JSON -> itself, anything
/// else -> the text as a JSON string.
pub(crate) fn parse_payload(body: &[u8]) -> Value {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Value::Null;
    }
    serde_json::from_slice(body)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(body).into_owned()))
}

impl Hub {
    /// Invoke `method` on `module`: wait up to `connect_timeout` for it to be connected and
    /// subscribed to `$iothub/methods/POST/#`, then up to `response_timeout` for the answer.
    pub async fn invoke_method(
        &self,
        module: &str,
        method: &str,
        payload: Value,
        response_timeout: Duration,
        connect_timeout: Duration,
    ) -> Result<MethodResult, ApiError> {
        validate(method, response_timeout, connect_timeout)?;
        if !self.cfg.keys.contains_key(module) {
            return Err(self.not_found(module));
        }
        let rid = uuid::Uuid::new_v4().to_string();
        let topic = topics::method_request_topic(method, &rid);
        let body = Bytes::from(serde_json::to_vec(&payload).unwrap_or_else(|_| b"null".to_vec()));
        let deadline = tokio::time::Instant::now() + connect_timeout;
        let (tx, rx) = oneshot::channel();
        let mut tx = Some(tx);
        loop {
            let notified = self.changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            {
                let mut st = self.lock();
                let ready = st
                    .sessions
                    .get(module)
                    .is_some_and(|s| s.conn.is_some() && s.qos_for(SubKind::Methods).is_some());
                if ready {
                    if let Some(tx) = tx.take() {
                        st.methods.insert(rid.clone(), tx);
                    }
                    st.publish_kind(module, SubKind::Methods, &topic, body.clone());
                    break;
                }
            }
            tokio::select! {
                _ = &mut notified => {}
                _ = tokio::time::sleep_until(deadline) => {
                    tracing::info!(module, method, "method target not connected in time");
                    return Err(self.not_found(module));
                }
            }
        }
        match tokio::time::timeout(response_timeout, rx).await {
            Ok(Ok((status, body))) => Ok(MethodResult {
                status,
                payload: parse_payload(&body),
            }),
            _ => {
                self.lock().methods.remove(&rid);
                Err(ApiError::new(
                    504,
                    format!("Timed out waiting for device to respond to method request {rid}"),
                ))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn validation() {
        let s = Duration::from_secs;
        assert!(validate("m", s(30), s(0)).is_ok());
        assert!(validate("m", s(5), s(300)).is_ok());
        assert_eq!(validate("", s(30), s(0)).unwrap_err().status, 400);
        assert_eq!(
            validate(&"x".repeat(101), s(30), s(0)).unwrap_err().status,
            400
        );
        assert!(validate(&"x".repeat(100), s(30), s(0)).is_ok());
        assert_eq!(validate("m", s(4), s(0)).unwrap_err().status, 400);
        assert_eq!(validate("m", s(301), s(0)).unwrap_err().status, 400);
        assert_eq!(validate("m", s(30), s(301)).unwrap_err().status, 400);
    }

    #[test]
    fn payloads() {
        assert_eq!(parse_payload(b""), Value::Null);
        assert_eq!(parse_payload(b" "), Value::Null);
        assert_eq!(parse_payload(br#"{"a":1}"#), json!({"a": 1}));
        assert_eq!(parse_payload(b"hello"), json!("hello"));
        assert_eq!(parse_payload(b"null"), Value::Null);
    }
}
