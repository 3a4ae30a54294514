//! The Workload API (PROTOCOL §2) on a unix socket: trust bundle, sign, encrypt/decrypt,
//! server and identity certificates.
//!
//! - The caller-PID authorization of edgelet is not emulated.
//! - Throttle: like edgelet, at most [`MAX_CONCURRENT_REQUESTS`] connections are served at a
//!   time; an excess connection is closed without any HTTP reply.
//! - encrypt/decrypt: AES-256-GCM with a per-module key derived from the module key
//!   (HMAC-SHA256(module key, [`ENCRYPTION_KEY_LABEL`])). `ciphertext` = 12-byte random nonce
//!   followed by the sealed data and tag; the AAD binds module id, generation id and the
//!   caller's `initializationVector`, so decrypting needs the same three. Not compatible with
//!   edgelet's ciphertexts (different key), only with itself. Bad base64 is 400 (as edgelet);
//!   a ciphertext that does not open is 500 `decryption failed` (edgelet's server error).
//! - Requests are logged at debug level: method, path without the query, status. Never bodies
//!   (they carry data to sign and plaintexts).

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

/// edgelet's throttle: connections served at once per Workload socket.
pub const MAX_CONCURRENT_REQUESTS: usize = 10;

/// Derivation label of the per-module encryption key.
pub const ENCRYPTION_KEY_LABEL: &[u8] = b"devhub workload encrypt/decrypt v1";

const NONCE_LEN: usize = ring::aead::NONCE_LEN;

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

#[derive(Deserialize)]
struct EncryptRequest {
    plaintext: String,
    #[serde(rename = "initializationVector")]
    iv: String,
}

#[derive(Deserialize)]
struct DecryptRequest {
    ciphertext: String,
    #[serde(rename = "initializationVector")]
    iv: String,
}

fn b64_field(value: &str, field: &str) -> Result<Vec<u8>, HttpError> {
    base64::engine::general_purpose::STANDARD
        .decode(value.as_bytes())
        .map_err(|_| {
            err(
                StatusCode::BAD_REQUEST,
                format!("{field} is not valid base64"),
            )
        })
}

/// The module's AES-256-GCM key: HMAC-SHA256(module key, label).
fn aead_key(module_key: &[u8]) -> ring::aead::LessSafeKey {
    let k = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, module_key);
    let derived = ring::hmac::sign(&k, ENCRYPTION_KEY_LABEL);
    let unbound = ring::aead::UnboundKey::new(&ring::aead::AES_256_GCM, derived.as_ref())
        .expect("a 32-byte key is valid for AES-256");
    ring::aead::LessSafeKey::new(unbound)
}

/// Length-prefixed module id, generation id and initialization vector.
fn aad(module: &str, genid: &str, iv: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(12 + module.len() + genid.len() + iv.len());
    for part in [module.as_bytes(), genid.as_bytes(), iv] {
        out.extend_from_slice(&(part.len() as u32).to_be_bytes());
        out.extend_from_slice(part);
    }
    out
}

/// `nonce || AES-256-GCM(plaintext) || tag`.
pub fn encrypt(
    module_key: &[u8],
    module: &str,
    genid: &str,
    iv: &[u8],
    plaintext: &[u8],
) -> Vec<u8> {
    use ring::rand::SecureRandom as _;
    let mut nonce = [0u8; NONCE_LEN];
    ring::rand::SystemRandom::new()
        .fill(&mut nonce)
        .expect("the system random generator works");
    let mut out = Vec::with_capacity(NONCE_LEN + plaintext.len() + 16);
    out.extend_from_slice(&nonce);
    out.extend_from_slice(plaintext);
    let tag = aead_key(module_key)
        .seal_in_place_separate_tag(
            ring::aead::Nonce::assume_unique_for_key(nonce),
            ring::aead::Aad::from(aad(module, genid, iv)),
            &mut out[NONCE_LEN..],
        )
        .expect("plaintext within AES-GCM limits");
    out.extend_from_slice(tag.as_ref());
    out
}

/// The inverse of [`encrypt`]; None if the data was not sealed with the same key, module,
/// generation id and initialization vector (or was altered).
pub fn decrypt(
    module_key: &[u8],
    module: &str,
    genid: &str,
    iv: &[u8],
    ciphertext: &[u8],
) -> Option<Vec<u8>> {
    if ciphertext.len() < NONCE_LEN + ring::aead::AES_256_GCM.tag_len() {
        return None;
    }
    let (nonce, sealed) = ciphertext.split_at(NONCE_LEN);
    let nonce = ring::aead::Nonce::try_assume_unique_for_key(nonce).ok()?;
    let mut buf = sealed.to_vec();
    let plain = aead_key(module_key)
        .open_in_place(
            nonce,
            ring::aead::Aad::from(aad(module, genid, iv)),
            &mut buf,
        )
        .ok()?;
    let n = plain.len();
    buf.truncate(n);
    Some(buf)
}

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

    /// Serves one request; logs method, path (no query) and status at debug level.
    pub async fn handle(self: Arc<Self>, req: Request<Incoming>) -> Response<RespBody> {
        let method = req.method().clone();
        let path = req.uri().path().to_owned();
        let resp = match self.route(req).await {
            Ok(r) => r,
            Err(e) => json_response(e.status, &json!({ "message": e.message })),
        };
        tracing::debug!(
            method = %method,
            path = %path,
            status = resp.status().as_u16(),
            "workload request"
        );
        resp
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
            ["modules", name, "genid", genid, "encrypt"] => {
                expect(Method::POST)?;
                let (module, key) = self.module_key(name)?;
                let key = key.to_vec();
                let genid = http_util::decode_segment(genid)
                    .ok_or_else(|| err(StatusCode::BAD_REQUEST, "invalid generation id"))?;
                let body: EncryptRequest = json_body(req).await?;
                let plaintext = b64_field(&body.plaintext, "plaintext")?;
                let iv = b64_field(&body.iv, "initializationVector")?;
                let sealed = encrypt(&key, &module, &genid, &iv, &plaintext);
                Ok(json_response(
                    StatusCode::OK,
                    &json!({ "ciphertext": base64::engine::general_purpose::STANDARD.encode(sealed) }),
                ))
            }
            ["modules", name, "genid", genid, "decrypt"] => {
                expect(Method::POST)?;
                let (module, key) = self.module_key(name)?;
                let key = key.to_vec();
                let genid = http_util::decode_segment(genid)
                    .ok_or_else(|| err(StatusCode::BAD_REQUEST, "invalid generation id"))?;
                let body: DecryptRequest = json_body(req).await?;
                let ciphertext = b64_field(&body.ciphertext, "ciphertext")?;
                let iv = b64_field(&body.iv, "initializationVector")?;
                let plain = decrypt(&key, &module, &genid, &iv, &ciphertext)
                    .ok_or_else(|| err(StatusCode::INTERNAL_SERVER_ERROR, "decryption failed"))?;
                Ok(json_response(
                    StatusCode::OK,
                    &json!({ "plaintext": base64::engine::general_purpose::STANDARD.encode(plain) }),
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

/// Serves the Workload API on `listener` until `shutdown` flips, at most
/// [`MAX_CONCURRENT_REQUESTS`] connections at a time.
pub async fn serve(
    listener: tokio::net::UnixListener,
    state: Arc<Workload>,
    shutdown: tokio::sync::watch::Receiver<bool>,
) {
    serve_with_limit(listener, state, shutdown, MAX_CONCURRENT_REQUESTS).await
}

/// [`serve`] with another throttle: a connection accepted while `limit` are being served is
/// closed at once, without an HTTP reply (edgelet's behaviour).
pub async fn serve_with_limit(
    listener: tokio::net::UnixListener,
    state: Arc<Workload>,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
    limit: usize,
) {
    let permits = Arc::new(tokio::sync::Semaphore::new(limit));
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
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            tracing::info!(
                limit,
                "workload API: too many concurrent requests; connection closed"
            );
            drop(stream);
            continue;
        };
        let state = state.clone();
        let mut shutdown = shutdown.clone();
        tokio::spawn(async move {
            let _permit = permit; // released when the connection ends
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encrypt_round_trip_is_bound_to_key_module_genid_and_iv() {
        let key = [7u8; 32];
        let c1 = encrypt(&key, "m", "1", b"iv", b"secret");
        let c2 = encrypt(&key, "m", "1", b"iv", b"secret");
        assert_eq!(c1.len(), NONCE_LEN + 6 + 16);
        assert_ne!(c1, c2, "a fresh nonce every time");
        assert_eq!(decrypt(&key, "m", "1", b"iv", &c1).unwrap(), b"secret");
        assert_eq!(decrypt(&key, "m", "1", b"iv", &c2).unwrap(), b"secret");
        assert_eq!(
            decrypt(&key, "m", "1", b"iv", &encrypt(&key, "m", "1", b"iv", b"")).unwrap(),
            b""
        );
        assert!(decrypt(&key, "m", "1", b"iw", &c1).is_none());
        assert!(decrypt(&key, "n", "1", b"iv", &c1).is_none());
        assert!(decrypt(&key, "m", "2", b"iv", &c1).is_none());
        assert!(decrypt(&[8u8; 32], "m", "1", b"iv", &c1).is_none());
        let mut bad = c1.clone();
        *bad.last_mut().unwrap() ^= 1;
        assert!(decrypt(&key, "m", "1", b"iv", &bad).is_none());
        assert!(decrypt(&key, "m", "1", b"iv", &c1[..NONCE_LEN + 15]).is_none());
        // The AAD parts cannot be shifted into each other.
        assert_ne!(aad("ab", "c", b""), aad("a", "bc", b""));
    }
}
