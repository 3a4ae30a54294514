//! The Workload API over the unix socket (PROTOCOL §2).

mod common;

use base64::Engine as _;
use common::{workload, Reply};
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
    let r = workload(&sock, Method::GET, "/trust-bundle", &[], "").await;
    assert_error(&r, StatusCode::BAD_REQUEST, "api-version not specified");
    let r = workload(&sock, Method::GET, "/trust-bundle?api-version=x", &[], "").await;
    assert_error(&r, StatusCode::BAD_REQUEST, "invalid api-version \"x\"");
    for v in ["2018-06-28", "2019-01-30", "2020-07-07", "2022-08-03"] {
        let r = workload(
            &sock,
            Method::GET,
            &format!("/trust-bundle?api-version={v}"),
            &[],
            "",
        )
        .await;
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
        let r = workload(
            &sock,
            Method::GET,
            &format!("{path}?api-version=2019-01-30"),
            &[],
            "",
        )
        .await;
        assert_eq!(r.status, StatusCode::OK);
        assert_eq!(r.content_type(), "application/json");
        assert_eq!(r.json(), json!({ "certificate": ca }));
    }
    let r = workload(
        &sock,
        Method::POST,
        "/trust-bundle?api-version=2019-01-30",
        &[],
        "",
    )
    .await;
    assert_error(&r, StatusCode::BAD_REQUEST, "method not allowed");
    let r = workload(&sock, Method::GET, "/nope?api-version=2019-01-30", &[], "").await;
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
    let r = workload(
        &sock,
        Method::POST,
        "/modules/filter/genid/1/sign?api-version=2018-06-28",
        &[],
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

    let r = workload(
        &sock,
        Method::POST,
        "/modules/ghost/genid/1/sign?api-version=2018-06-28",
        &[],
        good.clone(),
    )
    .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(r.content_type(), "application/json");
    assert!(r.message().contains("ghost"), "{}", r.message());

    let r = workload(&sock, Method::POST, path, &[], "{not json").await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        r.message().starts_with("could not parse request body"),
        "{}",
        r.message()
    );
    let r = workload(&sock, Method::POST, path, &[], r#"{"keyId":"primary"}"#).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);

    let r = workload(
        &sock,
        Method::POST,
        path,
        &[],
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

    let r = workload(&sock, Method::GET, path, &[], "").await;
    assert_error(&r, StatusCode::BAD_REQUEST, "method not allowed");
    hub.stop().await;
}

#[tokio::test]
async fn server_certificate_is_issued_by_the_ca() {
    let (hub, _dir) = common::start_hub().await;
    let sock = hub.addresses().workload_socket.clone();
    let body = json!({"commonName":"myhost","expiration":"2030-01-01T00:00:00Z"}).to_string();
    let r = workload(
        &sock,
        Method::POST,
        "/modules/sensor/genid/1/certificate/server?api-version=2019-01-30",
        &[],
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

    let r = workload(
        &sock,
        Method::POST,
        "/modules/ghost/genid/1/certificate/server?api-version=2019-01-30",
        &[],
        r#"{"commonName":"x"}"#,
    )
    .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    let r = workload(
        &sock,
        Method::POST,
        "/modules/sensor/genid/1/certificate/server?api-version=2019-01-30",
        &[],
        r#"{"expiration":"x"}"#,
    )
    .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    hub.stop().await;
}
