//! Test harness: devhub in-process on ephemeral ports, clients from its connection strings.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::time::Duration;

use edgemodule::{ClientOptions, Event, Message, ModuleClient};
use edgemodule_devhub::{Config, DevHub};

pub struct Hub {
    pub devhub: Option<DevHub>,
    pub dir: tempfile::TempDir,
    pub ca_pem: String,
    pub config: Config,
}

pub fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("EDGEMODULE_TEST_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_test_writer()
        .try_init();
}

/// A manifest with modules and string routes.
pub fn manifest(modules: &[&str], routes: &[(&str, &str)], desired: serde_json::Value) -> String {
    let mut mods = serde_json::Map::new();
    for m in modules {
        mods.insert(
            m.to_string(),
            serde_json::json!({"type":"docker","settings":{"image":"example/img:1"}}),
        );
    }
    let mut r = serde_json::Map::new();
    for (name, text) in routes {
        r.insert(
            name.to_string(),
            serde_json::Value::String(text.to_string()),
        );
    }
    let mut content = serde_json::json!({
        "$edgeAgent": {"properties.desired": {"schemaVersion": "1.1", "modules": mods}},
        "$edgeHub": {"properties.desired": {"schemaVersion": "1.1", "routes": r,
            "storeAndForwardConfiguration": {"timeToLiveSecs": 7200}}},
    });
    if let serde_json::Value::Object(d) = desired {
        for (m, props) in d {
            content[m] = serde_json::json!({"properties.desired": props});
        }
    }
    serde_json::json!({"modulesContent": content}).to_string()
}

/// A free TCP port on 127.0.0.1 (for tests that restart devhub on the same ports).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Hub {
    pub async fn start(manifest_json: &str) -> Hub {
        let dir = tempfile::tempdir().unwrap();
        let config = Self::config_in(dir.path(), manifest_json);
        Self::start_with(dir, config).await
    }

    /// Start on fixed free ports, so `restart` comes back where clients expect it.
    pub async fn start_restartable(manifest_json: &str) -> Hub {
        let dir = tempfile::tempdir().unwrap();
        let mut config = Self::config_in(dir.path(), manifest_json);
        config.mqtt_tls_port = free_port();
        config.https_port = free_port();
        config.mqtt_plain_port = None;
        Self::start_with(dir, config).await
    }

    pub fn config_in(dir: &Path, manifest_json: &str) -> Config {
        init_tracing();
        let path = dir.join("deployment.json");
        std::fs::write(&path, manifest_json).unwrap();
        let mut config = Config::ephemeral(dir.join("state"));
        config.manifest = Some(path);
        config.ack_timeout = Duration::from_secs(3);
        config
    }

    pub async fn start_with(dir: tempfile::TempDir, config: Config) -> Hub {
        let devhub = edgemodule_devhub::start(config.clone())
            .await
            .expect("devhub starts");
        let ca_pem = std::fs::read_to_string(devhub.ca_cert_path()).unwrap();
        Hub {
            devhub: Some(devhub),
            dir,
            ca_pem,
            config,
        }
    }

    pub fn dh(&self) -> &DevHub {
        self.devhub.as_ref().expect("devhub running")
    }

    pub fn options(&self) -> ClientOptions {
        let mut o = ClientOptions {
            trust_bundle_pem: Some(self.ca_pem.clone()),
            mqtt_port: Some(self.dh().addresses().mqtt_tls.port()),
            https_port: Some(self.dh().addresses().https.port()),
            ..Default::default()
        };
        o.backoff.min = Duration::from_millis(50);
        o.backoff.max = Duration::from_millis(500);
        o.operation_timeout = Duration::from_secs(20);
        o
    }

    pub fn client(&self, module: &str) -> ModuleClient {
        self.client_with(module, self.options())
    }

    pub fn client_with(&self, module: &str, options: ClientOptions) -> ModuleClient {
        let cs = self.dh().connection_string(module).expect("known module");
        ModuleClient::from_connection_string(&cs, options).expect("client")
    }

    pub async fn connected(&self, module: &str) -> ModuleClient {
        let c = self.client(module);
        c.connect().await.expect("connects");
        c
    }

    pub async fn stop(&mut self) {
        if let Some(d) = self.devhub.take() {
            d.stop().await;
        }
    }

    /// Start again on the same state dir and ports.
    pub async fn restart(&mut self) {
        self.stop().await;
        let devhub = edgemodule_devhub::start(self.config.clone())
            .await
            .expect("devhub restarts");
        self.devhub = Some(devhub);
    }

    pub fn state_dir(&self) -> PathBuf {
        self.config.state_dir.clone()
    }
}

/// The next event that `pick` accepts, skipping others, within `within`.
pub async fn next_matching<T>(
    client: &ModuleClient,
    within: Duration,
    mut pick: impl FnMut(Event) -> Option<T>,
) -> T {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let ev = tokio::time::timeout_at(deadline, client.next_event())
            .await
            .expect("timed out waiting for an event")
            .expect("client closed while waiting for an event");
        if let Some(v) = pick(ev) {
            return v;
        }
    }
}

/// The next input message (acked), within `within`.
pub async fn next_input(client: &ModuleClient, within: Duration) -> (String, Message) {
    next_matching(client, within, |ev| match ev {
        Event::InputMessage {
            input,
            message,
            ack,
        } => {
            ack.ack();
            Some((input, message))
        }
        _ => None,
    })
    .await
}
