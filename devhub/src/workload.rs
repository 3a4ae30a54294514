//! The Workload API (PROTOCOL §2) on a unix socket: trust bundle, sign, server certificates.
//! The caller-PID authorization and the 10-request throttle of edgelet are not emulated.

use std::collections::BTreeMap;
use std::sync::Arc;

use base64::Engine as _;
use http::{header, Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use serde::Deserialize;
use serde_json::json;

use crate::certs::{rfc3339, CertAuthority};
use crate::http_util::{self, HttpError, RespBody};

/// Workload API versions edgelet knows (PROTOCOL §2); every route accepts all of them.
pub const API_VERSIONS: [&str; 7] = [
    "2018-06-28",
    "2019-01-30",
    "2019-10-22",
    "2019-11-05",
    "2020-07-07",
    "2021-12-07",
    "2022-08-03",
];

const SERVER_CERT_DAYS: u64 = 90;

/// The generation id devhub hands out (`IOTEDGE_MODULEGENERATIONID`); like edgelet 1.2+,
/// the Workload API does not check it.
pub const GENERATION_ID: &str = "1";

/// What the Workload API serves.
pub struct Workload {
    pub ca: Arc<CertAuthority>,
    /// module id -> decoded primary key.
    pub keys: BTreeMap<String, Vec<u8>>,
}

fn json_response(status: StatusCode, v: &serde_json::Value) -> Response<RespBody> {
    // IIS http-common answers plain `application/json`.
    http_util::json_with(status, v, "application/json")
}

fn err(status: StatusCode, msg: impl Into<String>) -> HttpError {
    HttpError::new(status, msg)
}

/// A missing Content-Type is JSON (Python sends none); any other type must be JSON.
fn content_type_ok(req: &Request<Incoming>) -> bool {
    match req.headers().get(header::CONTENT_TYPE) {
        None => true,
        Some(v) => v
            .to_str()
            .ok()
            .and_then(|s| s.split(';').next())
            .map(|m| m.trim().eq_ignore_ascii_case("application/json"))
            .unwrap_or(false),
    }
}

async fn json_body<T: for<'de> Deserialize<'de>>(req: Request<Incoming>) -> Result<T, HttpError> {
    if !content_type_ok(&req) {
        return Err(err(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "request body must be application/json",
        ));
    }
    let body = http_util::read_body(req.into_body()).await?;
    serde_json::from_slice(&body).map_err(|e| {
        err(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!("could not parse request body: {e}"),
        )
    })
}

#[derive(Deserialize)]
struct SignRequest {
    // keyId and algo are sent by every SDK but not interpreted by edgelet 1.2+.
    data: String,
}

#[derive(Deserialize)]
struct ServerCertRequest {
    #[serde(rename = "commonName")]
    common_name: String,
}

#[derive(Deserialize)]
struct IdentityCertRequest {}

fn hmac_sha256_b64(key: &[u8], data: &[u8]) -> String {
    let k = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, key);
    base64::engine::general_purpose::STANDARD.encode(ring::hmac::sign(&k, data).as_ref())
}

impl Workload {
    fn module_key(&self, raw_name: &str) -> Result<(String, &[u8]), HttpError> {
        let name = http_util::decode_segment(raw_name)
            .ok_or_else(|| err(StatusCode::BAD_REQUEST, "invalid module name"))?;
        match self.keys.get(&name) {
            Some(k) => Ok((name, k.as_slice())),
            None => Err(err(
                StatusCode::NOT_FOUND,
                format!("module {name:?} not found"),
            )),
        }
    }

    fn cert_response(&self, cn: &str, sans: &[String]) -> Result<Response<RespBody>, HttpError> {
        match self.ca.issue_server(cn, sans, SERVER_CERT_DAYS) {
            Ok(c) => Ok(json_response(
                StatusCode::CREATED,
                &json!({
                    "privateKey": { "type": "key", "bytes": c.key_pem },
                    "certificate": c.chain_pem,
                    "expiration": rfc3339(c.not_after_unix),
                }),
            )),
            Err(e) => Err(err(StatusCode::INTERNAL_SERVER_ERROR, e.message)),
        }
    }

    /// Serves one request.
    pub async fn handle(self: Arc<Self>, req: Request<Incoming>) -> Response<RespBody> {
        match self.route(req).await {
            Ok(r) => r,
            Err(e) => json_response(e.status, &json!({ "message": e.message })),
        }
    }

    async fn route(&self, req: Request<Incoming>) -> Result<Response<RespBody>, HttpError> {
        let query = http_util::query_pairs(req.uri().query());
        match http_util::query_get(&query, "api-version") {
            None => return Err(err(StatusCode::BAD_REQUEST, "api-version not specified")),
            Some(v) if !API_VERSIONS.contains(&v) => {
                return Err(err(
                    StatusCode::BAD_REQUEST,
                    format!("invalid api-version {v:?}"),
                ))
            }
            Some(_) => {}
        }
        let path = req.uri().path().to_owned();
        let segs = http_util::segments(&path);
        let method = req.method().clone();
        let expect = |m: Method| {
            if method == m {
                Ok(())
            } else {
                Err(err(StatusCode::BAD_REQUEST, "method not allowed"))
            }
        };
        match segs.as_slice() {
            ["trust-bundle"] | ["manifest-trust-bundle"] => {
                expect(Method::GET)?;
                Ok(json_response(
                    StatusCode::OK,
                    &json!({ "certificate": self.ca.cert_pem() }),
                ))
            }
            ["modules"] => {
                expect(Method::GET)?;
                let modules: Vec<_> = self
                    .keys
                    .keys()
                    .map(|m| json!({"id": m, "name": m, "type": "devhub", "config": {}, "status": "running"}))
                    .collect();
                Ok(json_response(
                    StatusCode::OK,
                    &json!({ "modules": modules }),
                ))
            }
            ["modules", name, "genid", _genid, "sign"] => {
                expect(Method::POST)?;
                let (_, key) = self.module_key(name)?;
                let key = key.to_vec();
                let body: SignRequest = json_body(req).await?;
                let data = base64::engine::general_purpose::STANDARD
                    .decode(body.data.as_bytes())
                    .map_err(|_| err(StatusCode::BAD_REQUEST, "data is not valid base64"))?;
                Ok(json_response(
                    StatusCode::OK,
                    &json!({ "digest": hmac_sha256_b64(&key, &data) }),
                ))
            }
            ["modules", name, "genid", _genid, "certificate", "server"] => {
                expect(Method::POST)?;
                let (module, _) = self.module_key(name)?;
                let body: ServerCertRequest = json_body(req).await?;
                if body.common_name.is_empty() {
                    return Err(err(StatusCode::BAD_REQUEST, "commonName is empty"));
                }
                let sans = vec![body.common_name.clone(), module];
                self.cert_response(&body.common_name, &sans)
            }
            ["modules", name, "certificate", "identity"]
            | ["modules", name, "genid", _, "certificate", "identity"] => {
                expect(Method::POST)?;
                let (module, _) = self.module_key(name)?;
                let _: IdentityCertRequest = json_body(req).await?;
                self.cert_response(&module, std::slice::from_ref(&module))
            }
            _ => Err(err(StatusCode::NOT_FOUND, "not found")),
        }
    }
}

/// Serves the Workload API on `listener` until `shutdown` flips.
pub async fn serve(
    listener: tokio::net::UnixListener,
    state: Arc<Workload>,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    loop {
        let stream = tokio::select! {
            r = listener.accept() => match r {
                Ok((s, _)) => s,
                Err(e) => {
                    tracing::warn!("workload accept failed: {e}");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = shutdown.changed() => return,
        };
        let state = state.clone();
        let mut shutdown = shutdown.clone();
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |req| {
                let state = state.clone();
                async move { Ok::<_, std::convert::Infallible>(state.handle(req).await) }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .serve_connection(hyper_util::rt::TokioIo::new(stream), svc);
            tokio::pin!(conn);
            tokio::select! {
                r = conn.as_mut() => if let Err(e) = r { tracing::debug!("workload connection: {e}"); },
                _ = shutdown.changed() => {}
            }
        });
    }
}
