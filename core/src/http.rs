//! A small HTTP/1.1 client (hyper) for the Workload API (unix socket or TCP) and for the
//! gateway's HTTPS method API. One request per connection: these calls are rare.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};

use crate::error::{Error, ErrorKind, Result};

/// Where an HTTP request goes.
#[derive(Clone, Debug)]
pub enum Endpoint {
    Unix(std::path::PathBuf),
    Tcp {
        host: String,
        port: u16,
    },
    Tls {
        host: String,
        port: u16,
        config: std::sync::Arc<rustls::ClientConfig>,
    },
}

/// The status and body of an answer.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub body: Bytes,
}

/// Send one request and read the whole answer, within `timeout`. `kind` is the error kind for
/// transport failures (Workload for the Workload API, Connection for the gateway).
pub async fn request(
    endpoint: &Endpoint,
    method: &str,
    path_and_query: &str,
    headers: &[(&str, String)],
    body: Option<Vec<u8>>,
    timeout: Duration,
    kind: ErrorKind,
) -> Result<Response> {
    let fut = async {
        match endpoint {
            #[cfg(unix)]
            Endpoint::Unix(path) => {
                let stream = tokio::net::UnixStream::connect(path).await.map_err(|e| {
                    Error::new(kind, format!("cannot connect to {}: {e}", path.display()))
                })?;
                exchange(
                    stream,
                    "localhost",
                    method,
                    path_and_query,
                    headers,
                    body,
                    kind,
                )
                .await
            }
            // No tokio unix sockets on Windows (IoT Edge there serves the Workload API over
            // http://); workload::parse_uri already refuses unix:// URIs, this covers an
            // Endpoint built by hand.
            #[cfg(not(unix))]
            Endpoint::Unix(path) => Err(Error::config(format!(
                "IOTEDGE_WORKLOADURI: unix:// sockets ({}) are not supported on this platform; \
                 use http://host:port",
                path.display()
            ))),
            Endpoint::Tcp { host, port } => {
                let stream = tokio::net::TcpStream::connect((host.as_str(), *port))
                    .await
                    .map_err(|e| {
                        Error::new(kind, format!("cannot connect to {host}:{port}: {e}"))
                    })?;
                exchange(stream, host, method, path_and_query, headers, body, kind).await
            }
            Endpoint::Tls { host, port, config } => {
                let tcp = tokio::net::TcpStream::connect((host.as_str(), *port))
                    .await
                    .map_err(|e| {
                        Error::new(kind, format!("cannot connect to {host}:{port}: {e}"))
                    })?;
                let name = rustls::pki_types::ServerName::try_from(host.clone())
                    .map_err(|_| Error::new(ErrorKind::Tls, format!("invalid host name {host}")))?;
                let tls = tokio_rustls::TlsConnector::from(config.clone())
                    .connect(name, tcp)
                    .await
                    .map_err(|e| {
                        Error::new(ErrorKind::Tls, format!("TLS to {host}:{port}: {e}"))
                    })?;
                exchange(tls, host, method, path_and_query, headers, body, kind).await
            }
        }
    };
    match tokio::time::timeout(timeout, fut).await {
        Ok(r) => r,
        Err(_) => Err(Error::new(
            ErrorKind::Timeout,
            format!(
                "HTTP {method} {} timed out after {timeout:?}",
                strip_query(path_and_query)
            ),
        )),
    }
}

fn strip_query(p: &str) -> &str {
    p.split('?').next().unwrap_or(p)
}

async fn exchange<S>(
    stream: S,
    host: &str,
    method: &str,
    path_and_query: &str,
    headers: &[(&str, String)],
    body: Option<Vec<u8>>,
    kind: ErrorKind,
) -> Result<Response>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| Error::new(kind, format!("HTTP handshake: {e}")))?;
    let conn_task = tokio::spawn(async move {
        let _ = conn.await;
    });
    let mut req = Request::builder()
        .method(method)
        .uri(path_and_query)
        .header("Host", host);
    for (k, v) in headers {
        req = req.header(*k, v.as_str());
    }
    let body = body.unwrap_or_default();
    req = req.header("Content-Length", body.len().to_string());
    let req = req
        .body(Full::new(Bytes::from(body)))
        .map_err(|e| Error::invalid(format!("bad HTTP request: {e}")))?;
    let resp = sender.send_request(req).await.map_err(|e| {
        Error::new(
            kind,
            format!("HTTP {method} {}: {e}", strip_query(path_and_query)),
        )
    })?;
    let status = resp.status().as_u16();
    let body = resp
        .into_body()
        .collect()
        .await
        .map_err(|e| Error::new(kind, format!("reading HTTP answer: {e}")))?
        .to_bytes();
    conn_task.abort();
    Ok(Response { status, body })
}

/// The `message` field of an error body (`{"message": "..."}`), or the body text.
pub fn error_message(body: &[u8]) -> String {
    serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|v| {
            v.get("message")
                .and_then(|m| m.as_str())
                .map(str::to_string)
        })
        .unwrap_or_else(|| String::from_utf8_lossy(body).chars().take(200).collect())
}
