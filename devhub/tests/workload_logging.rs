//! Workload API request logging (PROTOCOL §2 bodies carry data to sign and plaintexts). A test
//! binary of its own: tracing's per-callsite interest cache is process-wide, so a scoped
//! subscriber only sees every event reliably when no other test runs alongside.

mod common;

use base64::Engine as _;
use common::{workload_get, workload_post};
use http::StatusCode;
use serde_json::json;

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

/// Captures what the hub logs on this (current-thread) test runtime.
#[derive(Clone, Default)]
struct Captured(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn requests_are_logged_at_debug_without_bodies_or_queries() {
    let logs = Captured::default();
    let writer = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::DEBUG)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);
    let (hub, _dir) = common::start_hub().await;
    let sock = hub.addresses().workload_socket.clone();
    let secret = B64.encode(b"top-secret-payload");
    let body = json!({"keyId":"primary","algo":"HMACSHA256","data": secret}).to_string();
    let r = workload_post(
        &sock,
        "/modules/sensor/genid/1/sign?api-version=2018-06-28",
        body,
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    let r = workload_get(&sock, "/nope?api-version=2018-06-28").await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    hub.stop().await;
    let text = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
    let lines: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("workload request"))
        .collect();
    assert_eq!(lines.len(), 2, "{text}");
    assert!(lines[0].contains("DEBUG"), "{}", lines[0]);
    assert!(lines[0].contains("method=POST"), "{}", lines[0]);
    assert!(
        lines[0].contains("path=/modules/sensor/genid/1/sign"),
        "{}",
        lines[0]
    );
    assert!(lines[0].contains("status=200"), "{}", lines[0]);
    assert!(
        lines[1].contains("path=/nope") && lines[1].contains("status=404"),
        "{}",
        lines[1]
    );
    assert!(!text.contains(&secret), "a body reached the log");
    assert!(!text.contains("api-version"), "a query reached the log");
}
