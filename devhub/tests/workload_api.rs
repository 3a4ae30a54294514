//! The Workload API over the unix socket (PROTOCOL §2).

mod common;

use base64::Engine as _;
use common::{workload, workload_get, workload_post, Reply};
use http::{Method, StatusCode};
use serde_json::json;

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

fn assert_error(r: &Reply, status: StatusCode, message: &str) {
    assert_eq!(r.status, status, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.content_type(), "application/json");
    assert_eq!(r.json(), json!({ "message": message }));
}

#[tokio::test]
async fn api_version_is_required_and_checked() {
    let (hub, _dir) = common::start_hub().await;
    let sock = hub.addresses().workload_socket.clone();
    let r = workload_get(&sock, "/trust-bundle").await;
    assert_error(&r, StatusCode::BAD_REQUEST, "api-version not specified");
    let r = workload_get(&sock, "/trust-bundle?api-version=x").await;
    assert_error(&r, StatusCode::BAD_REQUEST, "invalid api-version \"x\"");
    for v in ["2018-06-28", "2019-01-30", "2020-07-07", "2022-08-03"] {
        let r = workload_get(&sock, &format!("/trust-bundle?api-version={v}")).await;
        assert_eq!(r.status, StatusCode::OK, "{v}");
    }
    hub.stop().await;
}

#[tokio::test]
async fn trust_bundles_are_the_ca() {
    let (hub, _dir) = common::start_hub().await;
    let sock = hub.addresses().workload_socket.clone();
    let ca = common::ca_pem(&hub);
    for path in ["/trust-bundle", "/manifest-trust-bundle"] {
        let r = workload_get(&sock, &format!("{path}?api-version=2019-01-30")).await;
        assert_eq!(r.status, StatusCode::OK);
        assert_eq!(r.content_type(), "application/json");
        assert_eq!(r.json(), json!({ "certificate": ca }));
    }
    let r = workload_post(&sock, "/trust-bundle?api-version=2019-01-30", "").await;
    assert_error(&r, StatusCode::BAD_REQUEST, "method not allowed");
    let r = workload_get(&sock, "/nope?api-version=2019-01-30").await;
    assert_error(&r, StatusCode::NOT_FOUND, "not found");
    hub.stop().await;
}

#[tokio::test]
async fn sign_uses_the_module_key() {
    let (hub, _dir) = common::start_hub().await;
    let sock = hub.addresses().workload_socket.clone();
    let key = edgemodule::protocol::sas::decode_key(&hub.module_key("sensor").unwrap()).unwrap();
    let data = b"devhub.local%2Fdevices%2Fdevhub-device%2Fmodules%2Fsensor\n1700000000";
    let body = json!({"keyId":"primary","algo":"HMACSHA256","data": B64.encode(data)}).to_string();
    let expected = edgemodule::protocol::sas::sign(&key, data);

    // No Content-Type (Python), application/json; charset=utf-8 (C), and a percent-encoded name.
    for (path, headers) in [
        (
            "/modules/sensor/genid/1/sign?api-version=2018-06-28",
            vec![],
        ),
        (
            "/modules/sensor/genid/whatever/sign?api-version=2019-01-30",
            vec![("content-type", "application/json; charset=utf-8")],
        ),
        (
            "/modules/%73ensor/genid/1/sign?api-version=2022-08-03",
            vec![],
        ),
    ] {
        let r = workload(&sock, Method::POST, path, &headers, body.clone()).await;
        assert_eq!(
            r.status,
            StatusCode::OK,
            "{path}: {}",
            String::from_utf8_lossy(&r.body)
        );
        assert_eq!(r.json(), json!({ "digest": expected }));
    }
    // Another module's key gives another digest.
    let r = workload_post(
        &sock,
        "/modules/filter/genid/1/sign?api-version=2018-06-28",
        body.clone(),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_ne!(r.json()["digest"], json!(expected));
    hub.stop().await;
}

#[tokio::test]
async fn sign_errors() {
    let (hub, _dir) = common::start_hub().await;
    let sock = hub.addresses().workload_socket.clone();
    let good = json!({"keyId":"primary","algo":"HMACSHA256","data":"aGk="}).to_string();
    let path = "/modules/sensor/genid/1/sign?api-version=2018-06-28";

    let r = workload_post(
        &sock,
        "/modules/ghost/genid/1/sign?api-version=2018-06-28",
        good.clone(),
    )
    .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(r.content_type(), "application/json");
    assert!(r.message().contains("ghost"), "{}", r.message());

    let r = workload_post(&sock, path, "{not json").await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        r.message().starts_with("could not parse request body"),
        "{}",
        r.message()
    );
    let r = workload_post(&sock, path, r#"{"keyId":"primary"}"#).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);

    let r = workload_post(
        &sock,
        path,
        r#"{"keyId":"primary","algo":"HMACSHA256","data":"!!!"}"#,
    )
    .await;
    assert_error(&r, StatusCode::BAD_REQUEST, "data is not valid base64");

    let r = workload(
        &sock,
        Method::POST,
        path,
        &[("content-type", "text/plain")],
        good.clone(),
    )
    .await;
    assert_eq!(r.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);

    let r = workload_get(&sock, path).await;
    assert_error(&r, StatusCode::BAD_REQUEST, "method not allowed");
    hub.stop().await;
}

#[tokio::test]
async fn server_certificate_is_issued_by_the_ca() {
    let (hub, _dir) = common::start_hub().await;
    let sock = hub.addresses().workload_socket.clone();
    let body = json!({"commonName":"myhost","expiration":"2030-01-01T00:00:00Z"}).to_string();
    let r = workload_post(
        &sock,
        "/modules/sensor/genid/1/certificate/server?api-version=2019-01-30",
        body,
    )
    .await;
    assert_eq!(
        r.status,
        StatusCode::CREATED,
        "{}",
        String::from_utf8_lossy(&r.body)
    );
    let v = r.json();
    assert_eq!(v["privateKey"]["type"], "key");
    let key_pem = v["privateKey"]["bytes"].as_str().unwrap();
    assert!(
        key_pem.starts_with("-----BEGIN PRIVATE KEY-----"),
        "{key_pem}"
    );
    let chain = v["certificate"].as_str().unwrap();
    assert!(chain.ends_with(&common::ca_pem(&hub)));
    let exp = v["expiration"].as_str().unwrap();
    assert!(exp.len() == 20 && exp.ends_with('Z'), "{exp}");

    // A TLS server with this certificate is trusted for "myhost" and the module id.
    let server_cfg = edgemodule_devhub::tls::server_config(chain, key_pem).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let acc = tokio_rustls::TlsAcceptor::from(server_cfg);
        loop {
            let (s, _) = listener.accept().await.unwrap();
            let acc = acc.clone();
            tokio::spawn(async move {
                let _ = acc.accept(s).await;
            });
        }
    });
    for name in ["myhost", "sensor"] {
        let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        tokio_rustls::TlsConnector::from(common::client_config(&hub))
            .connect(name.to_owned().try_into().unwrap(), tcp)
            .await
            .unwrap_or_else(|e| panic!("{name}: {e}"));
    }

    let r = workload_post(
        &sock,
        "/modules/ghost/genid/1/certificate/server?api-version=2019-01-30",
        r#"{"commonName":"x"}"#,
    )
    .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    let r = workload_post(
        &sock,
        "/modules/sensor/genid/1/certificate/server?api-version=2019-01-30",
        r#"{"expiration":"x"}"#,
    )
    .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    hub.stop().await;
}

fn crypt_path(module: &str, op: &str) -> String {
    format!("/modules/{module}/genid/1/{op}?api-version=2018-06-28")
}

#[tokio::test]
async fn encrypt_decrypt_round_trip_and_errors() {
    let (hub, _dir) = common::start_hub().await;
    let sock = hub.addresses().workload_socket.clone();
    let iv = B64.encode(b"an iv");
    let plain = b"\x00secret \xff bytes";
    let enc = json!({"plaintext": B64.encode(plain), "initializationVector": iv}).to_string();
    let r = workload_post(&sock, &crypt_path("sensor", "encrypt"), enc.clone()).await;
    assert_eq!(
        r.status,
        StatusCode::OK,
        "{}",
        String::from_utf8_lossy(&r.body)
    );
    assert_eq!(r.content_type(), "application/json");
    let ct = r.json()["ciphertext"].as_str().unwrap().to_owned();
    let sealed = B64.decode(&ct).unwrap();
    assert_eq!(
        sealed.len(),
        12 + plain.len() + 16,
        "nonce || sealed || tag"
    );
    // Random nonce: the same request seals differently.
    let r2 = workload_post(&sock, &crypt_path("sensor", "encrypt"), enc).await;
    assert_ne!(r2.json()["ciphertext"].as_str().unwrap(), ct);

    let dec =
        |ct: &str, iv: &str| json!({"ciphertext": ct, "initializationVector": iv}).to_string();
    let r = workload(
        &sock,
        Method::POST,
        &crypt_path("sensor", "decrypt"),
        &[("content-type", "application/json; charset=utf-8")],
        dec(&ct, &iv),
    )
    .await;
    assert_eq!(
        r.status,
        StatusCode::OK,
        "{}",
        String::from_utf8_lossy(&r.body)
    );
    assert_eq!(r.json(), json!({ "plaintext": B64.encode(plain) }));
    // The percent-encoded module name is the same module.
    let r = workload_post(&sock, &crypt_path("%73ensor", "decrypt"), dec(&ct, &iv)).await;
    assert_eq!(r.status, StatusCode::OK);

    // Another IV, another module (another key) or altered data do not open: edgelet's 500.
    for (module, body) in [
        ("sensor", dec(&ct, &B64.encode(b"other iv"))),
        ("filter", dec(&ct, &iv)),
        ("sensor", dec(&B64.encode(&sealed[..sealed.len() - 1]), &iv)),
        ("sensor", dec(&B64.encode(b"short"), &iv)),
    ] {
        let r = workload_post(&sock, &crypt_path(module, "decrypt"), body).await;
        assert_error(&r, StatusCode::INTERNAL_SERVER_ERROR, "decryption failed");
    }

    // Bad base64: 400 naming the field; missing fields or bad JSON: 422; unknown module: 404.
    let bad = [
        (
            "encrypt",
            json!({"plaintext": "!!", "initializationVector": iv}),
            "plaintext is not valid base64",
        ),
        (
            "encrypt",
            json!({"plaintext": "aGk=", "initializationVector": "%%"}),
            "initializationVector is not valid base64",
        ),
        (
            "decrypt",
            json!({"ciphertext": "*", "initializationVector": iv}),
            "ciphertext is not valid base64",
        ),
        (
            "decrypt",
            json!({"ciphertext": ct, "initializationVector": "a"}),
            "initializationVector is not valid base64",
        ),
    ];
    for (op, body, msg) in bad {
        let r = workload_post(&sock, &crypt_path("sensor", op), body.to_string()).await;
        assert_error(&r, StatusCode::BAD_REQUEST, msg);
    }
    for op in ["encrypt", "decrypt"] {
        let r = workload_post(
            &sock,
            &crypt_path("sensor", op),
            r#"{"initializationVector":"aGk="}"#,
        )
        .await;
        assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{op}");
        let r = workload_post(&sock, &crypt_path("sensor", op), "{nope").await;
        assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{op}");
        let r = workload_post(&sock, &crypt_path("ghost", op), dec(&ct, &iv)).await;
        assert_eq!(r.status, StatusCode::NOT_FOUND, "{op}");
        let r = workload_get(&sock, &crypt_path("sensor", op)).await;
        assert_error(&r, StatusCode::BAD_REQUEST, "method not allowed");
    }
    hub.stop().await;
}

/// An HTTP/1.1 keep-alive connection to the Workload socket.
struct KeptAlive {
    sender: hyper::client::conn::http1::SendRequest<http_body_util::Full<bytes::Bytes>>,
    conn: tokio::task::JoinHandle<()>,
}

async fn trust_bundle_on(
    sender: &mut hyper::client::conn::http1::SendRequest<http_body_util::Full<bytes::Bytes>>,
) -> Result<StatusCode, hyper::Error> {
    let req = http::Request::get("/trust-bundle?api-version=2018-06-28")
        .header("host", "localhost")
        .body(http_body_util::Full::new(bytes::Bytes::new()))
        .unwrap();
    sender.send_request(req).await.map(|r| r.status())
}

async fn open(sock: &std::path::Path) -> std::io::Result<KeptAlive> {
    let s = tokio::net::UnixStream::connect(sock).await?;
    let (sender, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(s))
        .await
        .unwrap();
    let conn = tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(KeptAlive { sender, conn })
}

#[tokio::test]
async fn at_most_ten_connections_are_served_at_once() {
    let (hub, _dir) = common::start_hub().await;
    let sock = hub.addresses().workload_socket.clone();
    // Ten connections, each proven served (so each holds its permit), kept open.
    let mut held = Vec::new();
    for _ in 0..10 {
        let mut c = open(&sock).await.unwrap();
        assert_eq!(
            trust_bundle_on(&mut c.sender).await.unwrap(),
            StatusCode::OK
        );
        held.push(c);
    }
    // The eleventh (and twelfth) are closed without any HTTP reply.
    for _ in 0..2 {
        let mut c = open(&sock).await.unwrap();
        let e = trust_bundle_on(&mut c.sender)
            .await
            .expect_err("an excess connection gets no reply");
        assert!(!e.is_timeout(), "{e}");
    }
    // The held connections still work.
    assert_eq!(
        trust_bundle_on(&mut held[0].sender).await.unwrap(),
        StatusCode::OK
    );
    // Closing one frees a slot.
    let c = held.pop().unwrap();
    drop(c.sender);
    let _ = c.conn.await;
    let mut served = false;
    for _ in 0..100 {
        let mut c = open(&sock).await.unwrap();
        if let Ok(s) = trust_bundle_on(&mut c.sender).await {
            assert_eq!(s, StatusCode::OK);
            served = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert!(served, "a freed slot is served again");
    drop(held);
    hub.stop().await;
}
