//! Client of the IoT Edge Workload API (PROTOCOL §2): sign data with the module key and fetch
//! the trust bundle, over a unix socket or plain HTTP, with retries on 5xx and timeouts.

use std::time::Duration;

use base64::Engine;
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};

use crate::error::{Error, ErrorKind, Result};
use crate::http::{self, Endpoint};

/// Default api-version when IOTEDGE_APIVERSION is not set.
pub const DEFAULT_API_VERSION: &str = "2019-01-30";

const ATTEMPTS: u32 = 4;
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Like Python's `quote(safe="")`: everything but unreserved characters is escaped.
const PATH_SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// A Workload API client for one module identity.
#[derive(Clone, Debug)]
pub struct WorkloadClient {
    endpoint: Endpoint,
    api_version: String,
    module_id: String,
    generation_id: String,
    retry_base: Duration,
}

/// Parse `unix:///abs/path.sock` or `http://host:port`.
pub fn parse_uri(uri: &str) -> Result<Endpoint> {
    if let Some(path) = uri.strip_prefix("unix://") {
        if !path.starts_with('/') {
            return Err(Error::config(format!(
                "IOTEDGE_WORKLOADURI: unix socket path must be absolute, got {uri:?}"
            )));
        }
        // No unix sockets in Windows builds (IoT Edge there serves the Workload API over
        // http://): say so at configuration time rather than on every connect attempt.
        #[cfg(not(unix))]
        return Err(Error::config(format!(
            "IOTEDGE_WORKLOADURI: unix:// sockets are not supported on this platform, got \
             {uri:?}; use http://host:port"
        )));
        #[cfg(unix)]
        return Ok(Endpoint::Unix(path.into()));
    }
    if let Some(rest) = uri.strip_prefix("http://") {
        let authority = rest.split('/').next().unwrap_or("");
        let (host, port) = match authority.rsplit_once(':') {
            Some((h, p)) => (
                h,
                p.parse::<u16>().map_err(|_| {
                    Error::config(format!("IOTEDGE_WORKLOADURI: bad port in {uri:?}"))
                })?,
            ),
            None => (authority, 80),
        };
        if host.is_empty() {
            return Err(Error::config(format!(
                "IOTEDGE_WORKLOADURI: no host in {uri:?}"
            )));
        }
        return Ok(Endpoint::Tcp {
            host: host.to_string(),
            port,
        });
    }
    Err(Error::config(format!(
        "IOTEDGE_WORKLOADURI must start with unix:// or http://, got {uri:?}"
    )))
}

impl WorkloadClient {
    pub fn new(uri: &str, api_version: &str, module_id: &str, generation_id: &str) -> Result<Self> {
        Ok(WorkloadClient {
            endpoint: parse_uri(uri)?,
            api_version: api_version.to_string(),
            module_id: module_id.to_string(),
            generation_id: generation_id.to_string(),
            retry_base: Duration::from_millis(200),
        })
    }

    /// Shorten the pause between retries (tests).
    pub fn with_retry_base(mut self, base: Duration) -> Self {
        self.retry_base = base;
        self
    }

    /// HMAC-SHA256 of `data` with the module's key, base64 (what goes into a SAS signature).
    pub async fn sign(&self, data: &[u8]) -> Result<String> {
        let path = format!(
            "/modules/{}/genid/{}/sign?api-version={}",
            utf8_percent_encode(&self.module_id, PATH_SEGMENT),
            utf8_percent_encode(&self.generation_id, PATH_SEGMENT),
            self.api_version
        );
        let body = serde_json::json!({
            "keyId": "primary",
            "algo": "HMACSHA256",
            "data": base64::engine::general_purpose::STANDARD.encode(data),
        });
        let answer = self.call("POST", &path, Some(body.to_string())).await?;
        answer
            .get("digest")
            .and_then(|d| d.as_str())
            .filter(|d| base64::engine::general_purpose::STANDARD.decode(d).is_ok())
            .map(str::to_string)
            .ok_or_else(|| {
                Error::new(
                    ErrorKind::Workload,
                    "Workload API sign answer has no valid \"digest\"",
                )
            })
    }

    /// The PEM trust bundle the gateway's server certificate chains to.
    pub async fn trust_bundle(&self) -> Result<String> {
        let path = format!("/trust-bundle?api-version={}", self.api_version);
        let answer = self.call("GET", &path, None).await?;
        answer
            .get("certificate")
            .and_then(|c| c.as_str())
            .filter(|c| c.contains("BEGIN CERTIFICATE"))
            .map(str::to_string)
            .ok_or_else(|| {
                Error::new(
                    ErrorKind::Workload,
                    "Workload API trust-bundle answer has no PEM \"certificate\"",
                )
            })
    }

    /// One call with retries: 5xx, timeouts and connection failures are retried with backoff;
    /// 4xx are returned at once with the server's message.
    async fn call(
        &self,
        method: &str,
        path: &str,
        body: Option<String>,
    ) -> Result<serde_json::Value> {
        let what = path.split('?').next().unwrap_or(path);
        let mut last = None;
        for attempt in 0..ATTEMPTS {
            if attempt > 0 {
                tokio::time::sleep(self.retry_base * 2u32.pow(attempt - 1)).await;
            }
            let headers = [("Content-Type", "application/json".to_string())];
            let result = http::request(
                &self.endpoint,
                method,
                path,
                if body.is_some() { &headers[..] } else { &[] },
                body.clone().map(String::into_bytes),
                REQUEST_TIMEOUT,
                ErrorKind::Workload,
            )
            .await;
            match result {
                Ok(resp) if (200..300).contains(&resp.status) => {
                    return serde_json::from_slice(&resp.body).map_err(|e| {
                        Error::with_status(
                            ErrorKind::Workload,
                            resp.status,
                            format!("Workload API {what} answered with malformed JSON: {e}"),
                        )
                    });
                }
                Ok(resp) => {
                    let err = Error::with_status(
                        ErrorKind::Workload,
                        resp.status,
                        format!(
                            "Workload API {method} {what} failed: {}",
                            http::error_message(&resp.body)
                        ),
                    );
                    if resp.status < 500 {
                        return Err(err);
                    }
                    tracing::warn!(
                        status = resp.status,
                        attempt,
                        "Workload API {what}: retrying"
                    );
                    last = Some(err);
                }
                Err(e) => {
                    tracing::warn!(attempt, "Workload API {what}: {e}; retrying");
                    last = Some(Error::new(ErrorKind::Workload, e.message));
                }
            }
        }
        Err(last.unwrap_or_else(|| Error::new(ErrorKind::Workload, "Workload API failed")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_workload_uris() {
        #[cfg(unix)]
        match parse_uri("unix:///var/run/iotedge/workload.sock").unwrap() {
            Endpoint::Unix(p) => assert_eq!(p.to_str().unwrap(), "/var/run/iotedge/workload.sock"),
            other => panic!("{other:?}"),
        }
        #[cfg(not(unix))]
        {
            let e = parse_uri("unix:///var/run/iotedge/workload.sock").unwrap_err();
            assert_eq!(e.kind, ErrorKind::Configuration);
            assert!(e.message.contains("use http://"), "{}", e.message);
        }
        match parse_uri("http://127.0.0.1:15580/").unwrap() {
            Endpoint::Tcp { host, port } => assert_eq!((host.as_str(), port), ("127.0.0.1", 15580)),
            other => panic!("{other:?}"),
        }
        for bad in [
            "",
            "unix://relative.sock",
            "https://x:1",
            "http://:5",
            "http://h:notaport",
        ] {
            let e = parse_uri(bad).unwrap_err();
            assert_eq!(e.kind, ErrorKind::Configuration, "{bad}");
            assert!(e.message.contains("IOTEDGE_WORKLOADURI"), "{}", e.message);
        }
    }

    #[test]
    fn module_names_are_percent_encoded_in_paths() {
        assert_eq!(
            utf8_percent_encode("$edgeHub", PATH_SEGMENT).to_string(),
            "%24edgeHub"
        );
    }
}
