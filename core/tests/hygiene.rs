//! Process-wide properties: no key or token in any log line (ours or devhub's, at TRACE), and
//! the core's runtime threads are gone once the last client is dropped.

mod common;

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{manifest, next_input, Hub};
use edgemodule::Message;

#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<u8>>>);

impl Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn runtime_threads() -> usize {
    std::fs::read_dir("/proc/self/task")
        .unwrap()
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
        .filter(|name| name.trim() == "edgemodule-rt")
        .count()
}

#[test]
fn no_secret_in_logs_and_runtime_joins_when_last_client_drops() {
    let capture = Capture::default();
    let writer = capture.clone();
    tracing_subscriber::fmt()
        .with_env_filter("trace")
        .with_writer(move || writer.clone())
        .init();
    // devhub runs on the test's own runtime; the clients on the core's.
    let test_rt = tokio::runtime::Runtime::new().unwrap();
    let key = test_rt.block_on(async {
        let route = (
            "ab",
            "FROM /messages/modules/a/outputs/o INTO BrokeredEndpoint(\"/modules/b/inputs/i\")",
        );
        let hub = Hub::start(&manifest(&["a", "b"], &[route], serde_json::json!({}))).await;
        let key = hub.dh().module_key("a").unwrap();
        let a = hub.connected("a").await;
        let b = hub.connected("b").await;
        a.send_message_to_output("o", Message::new(b"x".to_vec()))
            .await
            .unwrap();
        next_input(&b, Duration::from_secs(10)).await;
        // A refused connection logs too: make sure that path is clean as well.
        let cs = hub
            .dh()
            .connection_string("a")
            .unwrap()
            .replace(&key, "AAAA");
        let bad = edgemodule::ModuleClient::from_connection_string(&cs, hub.options()).unwrap();
        assert!(bad.connect().await.is_err());
        a.close().await;
        b.close().await;
        drop((a, b, bad));
        key
    });
    drop(test_rt);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(edgemodule::runtime::users(), 0);
    assert_eq!(
        runtime_threads(),
        0,
        "the core's runtime threads were joined"
    );

    let logs = String::from_utf8_lossy(&capture.0.lock().unwrap()).into_owned();
    assert!(logs.len() > 1000, "trace logging was captured");
    assert!(!logs.contains(&key), "a module key leaked into the logs");
    assert!(
        !logs.contains("SharedAccessSignature sr="),
        "a token leaked"
    );
    assert!(!logs.contains("sig="), "a signature leaked");
}
