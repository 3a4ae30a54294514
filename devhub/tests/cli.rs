//! The `devhub` binary: offline commands, client commands against `devhub run`, help.

mod common;

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_devhub");

fn devhub(state: &Path, args: &[&str]) -> Output {
    Command::new(BIN)
        .arg("--state-dir")
        .arg(state)
        .args(args)
        .env_remove("DEVHUB_STATE_DIR")
        .env_remove("RUST_LOG")
        .output()
        .unwrap()
}

fn stdout(o: &Output) -> String {
    assert!(
        o.status.success(),
        "failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8(o.stdout.clone()).unwrap()
}

fn env_map(text: &str) -> Vec<(String, String)> {
    text.lines()
        .filter_map(|l| l.strip_prefix("export "))
        .map(|l| {
            let (k, v) = l.split_once('=').unwrap();
            let v = v.strip_prefix('\'').unwrap().strip_suffix('\'').unwrap();
            (k.to_owned(), v.to_owned())
        })
        .collect()
}

#[test]
fn env_and_connection_string_without_a_running_hub() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let cs = stdout(&devhub(&state, &["connection-string", "sensor"]));
    let cs = cs.trim();
    assert!(
        cs.starts_with(
            "HostName=devhub.local;DeviceId=devhub-device;ModuleId=sensor;SharedAccessKey="
        ),
        "{cs}"
    );
    assert!(cs.ends_with(";GatewayHostName=localhost"), "{cs}");
    // Stable: the key is kept in keys.json.
    assert_eq!(
        stdout(&devhub(&state, &["connection-string", "sensor"])).trim(),
        cs
    );

    let text = stdout(&devhub(&state, &["env", "sensor"]));
    let vars = env_map(&text);
    let get = |k: &str| {
        vars.iter()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.as_str())
            .unwrap_or_else(|| panic!("{k} in {text}"))
    };
    let state_abs = std::fs::canonicalize(&state).unwrap();
    assert_eq!(get("IOTEDGE_IOTHUBHOSTNAME"), "devhub.local");
    assert_eq!(get("IOTEDGE_DEVICEID"), "devhub-device");
    assert_eq!(get("IOTEDGE_MODULEID"), "sensor");
    assert_eq!(get("IOTEDGE_MODULEGENERATIONID"), "1");
    assert_eq!(
        get("IOTEDGE_WORKLOADURI"),
        format!("unix://{}", state_abs.join("workload.sock").display())
    );
    assert_eq!(get("IOTEDGE_GATEWAYHOSTNAME"), "localhost");
    assert_eq!(get("IOTEDGE_AUTHSCHEME"), "sasToken");
    assert_eq!(get("IOTEDGE_APIVERSION"), "2019-01-30");
    assert_eq!(get("EdgeHubConnectionString"), cs);
    let ca = get("EdgeModuleCACertificateFile");
    assert_eq!(ca, state_abs.join("ca.pem").display().to_string());
    assert!(std::fs::read_to_string(ca)
        .unwrap()
        .starts_with("-----BEGIN CERTIFICATE-----"));
    assert!(text.contains("# devhub MQTT/TLS port:"), "{text}");
    assert_eq!(vars.len(), 10);
}

#[test]
fn client_commands_need_a_running_hub() {
    let dir = tempfile::tempdir().unwrap();
    let o = devhub(dir.path(), &["status"]);
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("devhub is not running: no "), "{err}");
    assert!(err.contains("ready.json"), "{err}");
}

#[test]
fn help_for_every_command() {
    for args in [
        vec!["--help"],
        vec!["run", "--help"],
        vec!["env", "--help"],
        vec!["connection-string", "--help"],
        vec!["service-connection-string", "--help"],
        vec!["twin", "--help"],
        vec!["twin", "get", "--help"],
        vec!["twin", "update", "--help"],
        vec!["invoke", "--help"],
        vec!["send", "--help"],
        vec!["monitor", "--help"],
        vec!["status", "--help"],
    ] {
        let o = Command::new(BIN).args(&args).output().unwrap();
        assert!(o.status.success(), "{args:?}");
        assert!(
            String::from_utf8_lossy(&o.stdout).contains("Usage: devhub"),
            "{args:?}"
        );
    }
    let o = Command::new(BIN).arg("--help").output().unwrap();
    let help = String::from_utf8_lossy(&o.stdout);
    assert!(
        help.contains("service-connection-string") && help.contains("SharedAccessKeyName"),
        "{help}"
    );
}

async fn devhub_async(state: &Path, args: &[&str]) -> Output {
    let state = state.to_path_buf();
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        devhub(&state, &args)
    })
    .await
    .unwrap()
}

/// `HostName=..;SharedAccessKeyName=..;SharedAccessKey=..` as (host, policy, key).
fn parse_service_cs(cs: &str) -> (String, String, String) {
    let mut parts = cs.split(';').map(|p| p.split_once('=').unwrap());
    let mut next = |name: &str| {
        let (k, v) = parts.next().unwrap();
        assert_eq!(k, name, "{cs}");
        v.to_owned()
    };
    let parsed = (
        next("HostName"),
        next("SharedAccessKeyName"),
        next("SharedAccessKey"),
    );
    assert!(parts.next().is_none(), "{cs}");
    parsed
}

#[tokio::test]
async fn service_connection_string_stopped_and_running() {
    use edgemodule::protocol::sas;
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    // Stopped (even never started): the key is created in keys.json and stays.
    let cs = stdout(&devhub_async(&state, &["service-connection-string"]).await);
    let (host, policy, key) = parse_service_cs(cs.trim());
    assert_eq!(
        (host.as_str(), policy.as_str()),
        ("devhub.local", "iothubowner")
    );
    let keys = edgemodule_devhub::state::Keys::load(&state).unwrap();
    assert_eq!(keys.service_key(), Some(key.as_str()));
    assert_eq!(
        stdout(&devhub_async(&state, &["service-connection-string"]).await),
        cs
    );

    // Running with another host name: same key, the running hub's host; it authenticates.
    let mut cfg = edgemodule_devhub::Config::ephemeral(&state);
    cfg.hub_host_name = "myhub.example".into();
    cfg.modules = vec!["sensor".into()];
    let hub = edgemodule_devhub::start(cfg).await.unwrap();
    let cs = stdout(&devhub_async(&state, &["service-connection-string"]).await);
    let (host, policy, key2) = parse_service_cs(cs.trim());
    assert_eq!(host, "myhub.example");
    assert_eq!(key2, key);
    let client = edgemodule_devhub::cli::Client::from_state(&state).unwrap();
    let expiry = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 600;
    let token = |key_b64: &str| {
        let sr = sas::encode_resource_uri(&host);
        let sig = sas::sign(
            &sas::decode_key(key_b64).unwrap(),
            sas::string_to_sign(&sr, expiry).as_bytes(),
        );
        format!("{}&skn={policy}", sas::token(&sr, &sig, expiry))
    };
    for (key, expected) in [
        (key.clone(), 200),
        (edgemodule_devhub::state::random_key(), 401),
    ] {
        let (status, _) = client
            .request(
                http::Method::GET,
                "/devhub/status",
                Vec::new(),
                &[("authorization", token(&key))],
            )
            .await
            .unwrap();
        assert_eq!(status.as_u16(), expected);
    }
    // Nothing secret in the ready file.
    let ready = std::fs::read_to_string(state.join("ready.json")).unwrap();
    assert!(!ready.contains(&key), "{ready}");
    hub.stop().await;
}

struct Running(std::process::Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn run_and_talk_to_it() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let extra = dir.path().join("ready-copy.json");
    let child = Command::new(BIN)
        .arg("--state-dir")
        .arg(&state)
        .args([
            "run",
            "--module",
            "sensor",
            "--module",
            "filter",
            "--mqtt-port",
            "0",
            "--https-port",
            "0",
            "--mqtt-plain-port",
            "0",
            "--log",
            "warn",
        ])
        .arg("--ready-file")
        .arg(&extra)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut running = Running(child);
    let deadline = Instant::now() + Duration::from_secs(30);
    while !extra.exists() {
        assert!(Instant::now() < deadline, "devhub did not become ready");
        std::thread::sleep(Duration::from_millis(50));
    }
    let info: Value =
        serde_json::from_slice(&std::fs::read(state.join("ready.json")).unwrap()).unwrap();
    assert_eq!(info["pid"], running.0.id());
    assert!(info["mqtt_plain_port"].as_u64().unwrap() > 0);

    let status: Value =
        serde_json::from_str(&stdout(&devhub(&state, &["status", "--json"]))).unwrap();
    assert_eq!(status["deviceId"], "devhub-device");

    let twin: Value = serde_json::from_str(&stdout(&devhub(
        &state,
        &["twin", "update", "sensor", "--desired", r#"{"rate":3}"#],
    )))
    .unwrap();
    assert_eq!(twin["properties"]["desired"]["rate"], 3);
    let twin: Value =
        serde_json::from_str(&stdout(&devhub(&state, &["twin", "get", "sensor"]))).unwrap();
    assert_eq!(twin["moduleId"], "sensor");
    assert_eq!(twin["properties"]["desired"]["rate"], 3);
    let o = devhub(&state, &["twin", "update", "sensor", "--desired", "[1]"]);
    assert_eq!(o.status.code(), Some(1));

    let o = devhub(
        &state,
        &[
            "send",
            "filter",
            "in1",
            "--body",
            "hello",
            "--prop",
            "a=1",
            "--content-type",
            "text/plain",
        ],
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let status: Value =
        serde_json::from_str(&stdout(&devhub(&state, &["status", "--json"]))).unwrap();
    assert_eq!(status["queues"]["devhub-device/filter/in1"], 1, "{status}");
    assert_eq!(status["store"]["messages"], 1, "{status}");
    // Without --json: tables for people.
    let table = stdout(&devhub(&state, &["status"]));
    assert!(
        table.starts_with("devhub devhub.local / devhub-device\nmodules: filter, sensor\n"),
        "{table}"
    );
    for section in [
        "CONNECTIONS",
        "SUBSCRIPTIONS",
        "QUEUES",
        "STORE",
        "UPSTREAM",
    ] {
        assert!(
            table.contains(&format!("\n{section}\n")),
            "{section}: {table}"
        );
    }
    assert!(
        table.contains("\n  ENDPOINT                  DEPTH\n  devhub-device/filter/in1  1\n"),
        "{table}"
    );

    let o = devhub(&state, &["invoke", "sensor", "reboot", "--payload", "{}"]);
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("404"), "{err}");

    let o = devhub(&state, &["env", "ghost"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("no module \"ghost\""));

    // SIGTERM stops it cleanly: the ready files go away.
    let st = Command::new("kill")
        .args(["-TERM", &running.0.id().to_string()])
        .status()
        .unwrap();
    assert!(st.success());
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(code) = running.0.try_wait().unwrap() {
            assert!(code.success(), "{code:?}");
            break;
        }
        assert!(Instant::now() < deadline, "devhub did not stop on SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(!state.join("ready.json").exists());
    assert!(!extra.exists());
}

#[tokio::test]
async fn monitor_follows_upstream() {
    use std::io::BufRead;
    let dir = tempfile::tempdir().unwrap();
    let manifest = dir.path().join("m.json");
    std::fs::write(
        &manifest,
        r#"{"modulesContent":{"$edgeAgent":{"properties.desired":{"modules":{"sensor":{}}}},
            "$edgeHub":{"properties.desired":{"schemaVersion":"1.0","routes":{"r":"FROM /messages/* INTO $upstream"}}}}}"#,
    )
    .unwrap();
    let mut cfg = edgemodule_devhub::Config::ephemeral(dir.path().join("state"));
    cfg.manifest = Some(manifest);
    let hub = edgemodule_devhub::start(cfg).await.unwrap();

    for json in [true, false] {
        let mut args = vec!["monitor"];
        if json {
            args.push("--json");
        }
        let child = Command::new(BIN)
            .arg("--state-dir")
            .arg(hub.state_dir())
            .args(&args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut running = Running(child);
        let stderr = running.0.stderr.take().unwrap();
        let stdout = running.0.stdout.take().unwrap();
        // Wait until the feed is open.
        let line = tokio::task::spawn_blocking(move || {
            let mut l = String::new();
            std::io::BufReader::new(stderr).read_line(&mut l).unwrap();
            l
        })
        .await
        .unwrap();
        assert!(line.contains("following $upstream"), "{line}");

        let msg = edgemodule::Message::new(format!("hello {json}")).with_property("k", "v");
        // Publish as the module would: through plain MQTT.
        let (client, mut el) = common::mqtt(&hub, "sensor", common::Via::Plain).await;
        tokio::spawn(async move { while el.poll().await.is_ok() {} });
        let bag = edgemodule::protocol::property_bag::encode(&edgemodule::message::to_bag(
            &msg,
            Some("out"),
        ));
        client
            .publish(
                format!("devices/devhub-device/modules/sensor/messages/events/{bag}"),
                rumqttc::QoS::AtLeastOnce,
                false,
                msg.body.clone(),
            )
            .await
            .unwrap();
        let out = tokio::time::timeout(
            Duration::from_secs(10),
            tokio::task::spawn_blocking(move || {
                let mut l = String::new();
                std::io::BufReader::new(stdout).read_line(&mut l).unwrap();
                l
            }),
        )
        .await
        .expect("a monitor line in time")
        .unwrap();
        if json {
            let v: Value = serde_json::from_str(&out).unwrap();
            assert_eq!(v["body"], "hello true");
            assert_eq!(v["output"], "out");
            assert_eq!(v["properties"]["k"], "v");
        } else {
            assert!(
                out.trim_end()
                    .ends_with(r#" sensor/out: hello false {"k":"v"}"#),
                "{out}"
            );
        }
        let _ = client.disconnect().await;
    }
    hub.stop().await;
}
