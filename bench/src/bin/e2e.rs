//! e2e: end-to-end message throughput, three ways, in one run on one machine.
//!
//! (a) ceiling: mosquitto + raw rumqttc publisher and subscriber;
//! (b) ours: devhub (in-process) + two edgemodule `ModuleClient`s over MQTT/TLS;
//! (c) hub only: devhub + raw rumqttc clients with SAS credentials on its plain MQTT port.
//!
//! Env: `BENCH_MESSAGES` (default 100000), `BENCH_TIMEOUT_SECS` per phase (default 60),
//! `BENCH_RESULTS` (default bench/RESULTS.md), `MOSQUITTO` (the broker binary).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use edgemodule::protocol::{property_bag, sas, topics};
use edgemodule::{ClientOptions, Event, Message, ModuleClient};
use edgemodule_bench::mosquitto::Mosquitto;
use edgemodule_bench::raw::{self, Endpoint, Transfer};
use edgemodule_bench::results::{self, Row};
use edgemodule_bench::{numbered, payload, rate, BenchResult, Tally};
use edgemodule_devhub::{Config, DevHub};

const BODY_SIZE: usize = 256;
/// Messages handed to `send_messages_to_output` at once, and how many such batches are in
/// flight together: enough to keep the client's window full without nearing the offline
/// queue limit (10 000).
const CHUNK: usize = 1000;
const SENDERS: usize = 4;

const MANIFEST: &str = r#"{
  "modulesContent": {
    "$edgeAgent": {
      "properties.desired": {
        "schemaVersion": "1.1",
        "modules": {
          "a": {"type": "docker", "settings": {"image": "bench/a"}},
          "b": {"type": "docker", "settings": {"image": "bench/b"}},
          "c": {"type": "docker", "settings": {"image": "bench/c"}},
          "d": {"type": "docker", "settings": {"image": "bench/d"}}
        }
      }
    },
    "$edgeHub": {
      "properties.desired": {
        "schemaVersion": "1.1",
        "routes": {
          "ours": "FROM /messages/modules/a/outputs/out1 INTO BrokeredEndpoint(\"/modules/b/inputs/in1\")",
          "raw": "FROM /messages/modules/c/outputs/out1 INTO BrokeredEndpoint(\"/modules/d/inputs/in1\")"
        },
        "storeAndForwardConfiguration": {"timeToLiveSecs": 7200}
      }
    }
  }
}"#;

fn env_usize(name: &str, default: usize) -> BenchResult<usize> {
    match std::env::var(name) {
        Ok(v) if !v.trim().is_empty() => v
            .trim()
            .parse()
            .map_err(|_| format!("{name} must be a positive integer, got {v:?}").into()),
        _ => Ok(default),
    }
}

fn report(label: &str, n: usize, t: &Transfer) -> BenchResult<f64> {
    let secs = t.elapsed.as_secs_f64();
    if !t.complete {
        return Err(format!(
            "{label}: only {} of {n} messages arrived within {secs:.1} s",
            t.received
        )
        .into());
    }
    let r = rate(n, secs);
    let dups = if t.duplicates > 0 {
        format!(" ({} duplicates)", t.duplicates)
    } else {
        String::new()
    };
    println!("{label:<28} {n} msgs in {secs:>6.2} s = {r:>8.0} msg/s{dups}");
    Ok(r)
}

/// (a) mosquitto + raw clients.
async fn ceiling(dir: &Path, n: usize, body: &[u8], timeout: Duration) -> BenchResult<Transfer> {
    let broker = Mosquitto::start(dir)?;
    let ep = |id: &str| Endpoint {
        host: "127.0.0.1".into(),
        port: broker.port,
        client_id: id.into(),
        credentials: None,
    };
    let t = raw::transfer(
        &ep("bench-pub"),
        &ep("bench-sub"),
        "bench/throughput",
        "bench/throughput",
        n,
        body,
        timeout,
    )
    .await;
    drop(broker);
    t
}

fn module_options(hub: &DevHub) -> BenchResult<ClientOptions> {
    Ok(ClientOptions {
        trust_bundle_pem: Some(std::fs::read_to_string(hub.ca_cert_path())?),
        mqtt_port: Some(hub.addresses().mqtt_tls.port()),
        inflight: 100,
        ..ClientOptions::default()
    })
}

fn client(hub: &DevHub, module: &str, receive: bool) -> BenchResult<ModuleClient> {
    let cs = hub
        .connection_string(module)
        .ok_or_else(|| format!("devhub has no module {module:?}"))?;
    let mut options = module_options(hub)?;
    options.enable_inputs = receive;
    options.enable_methods = false;
    options.enable_twin_patches = false;
    Ok(ModuleClient::from_connection_string(&cs, options)?)
}

/// (b) devhub + edgemodule clients: `a` sends to out1, `b` takes every input and acks it.
async fn ours(hub: &DevHub, n: usize, body: &[u8], timeout: Duration) -> BenchResult<Transfer> {
    let a = client(hub, "a", false)?;
    let b = client(hub, "b", true)?;
    b.connect().await?;
    a.connect().await?;

    let tally = Arc::new(Mutex::new(Tally::new(n)));
    let receiver = {
        let b = b.clone();
        let tally = tally.clone();
        tokio::spawn(async move {
            while let Some(event) = b.next_event().await {
                if let Event::InputMessage { message, ack, .. } = event {
                    ack.ack();
                    if message.body.len() != BODY_SIZE {
                        eprintln!("b: body of {} bytes", message.body.len());
                    }
                    if tally.lock().unwrap().record(&message.body) {
                        return Some(Instant::now());
                    }
                }
            }
            None
        })
    };

    let start = Instant::now();
    let next = Arc::new(AtomicUsize::new(0));
    let failures = Arc::new(AtomicUsize::new(0));
    let senders: Vec<_> = (0..SENDERS)
        .map(|_| {
            let (a, next, failures) = (a.clone(), next.clone(), failures.clone());
            let body = body.to_vec();
            tokio::spawn(async move {
                loop {
                    let from = next.fetch_add(CHUNK, Ordering::Relaxed);
                    if from >= n {
                        break;
                    }
                    let batch = (from..n.min(from + CHUNK))
                        .map(|seq| Message::new(numbered(&body, seq)))
                        .collect();
                    for r in a.send_messages_to_output("out1", batch).await {
                        if let Err(e) = r {
                            if failures.fetch_add(1, Ordering::Relaxed) == 0 {
                                eprintln!("a: send failed: {e}");
                            }
                        }
                    }
                }
            })
        })
        .collect();

    let done = tokio::time::timeout(timeout, receiver).await;
    let elapsed = start.elapsed();
    for s in &senders {
        s.abort();
    }
    a.close().await;
    b.close().await;
    let failed = failures.load(Ordering::Relaxed);
    if failed > 0 {
        eprintln!("a: {failed} sends failed");
    }
    let tally = tally.lock().unwrap();
    if tally.strangers > 0 {
        eprintln!("b: {} unexpected bodies", tally.strangers);
    }
    let (elapsed, complete) = match done {
        Ok(Ok(Some(at))) => (at.duration_since(start), true),
        _ => (elapsed, false),
    };
    Ok(Transfer {
        received: tally.distinct,
        duplicates: tally.duplicates,
        elapsed,
        complete,
    })
}

/// A raw MQTT identity for `module` on devhub's plain port: IoT Hub username and SAS token.
fn sas_endpoint(hub: &DevHub, module: &str) -> BenchResult<Endpoint> {
    let plain = hub
        .addresses()
        .mqtt_plain
        .ok_or("devhub was started without its plain MQTT port")?;
    let key = hub
        .module_key(module)
        .ok_or_else(|| format!("devhub has no module {module:?}"))?;
    let key = sas::decode_key(&key)?;
    let expiry = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)?
        .as_secs()
        + 3600;
    let (host, device) = (hub.hub_host_name(), hub.device_id());
    Ok(Endpoint {
        host: plain.ip().to_string(),
        port: plain.port(),
        client_id: format!("{device}/{module}"),
        credentials: Some((
            topics::username(host, device, module, "2020-09-30", "edgemodule-bench", None),
            sas::module_token(host, device, module, &key, expiry),
        )),
    })
}

/// (c) devhub + raw clients: `c` publishes to out1, `d` subscribes to its inputs.
async fn hub_only(hub: &DevHub, n: usize, body: &[u8], timeout: Duration) -> BenchResult<Transfer> {
    let device = hub.device_id().to_string();
    let bag = property_bag::encode(&[("$.on".to_string(), Some("out1".to_string()))]);
    raw::transfer(
        &sas_endpoint(hub, "c")?,
        &sas_endpoint(hub, "d")?,
        &topics::events_topic(&device, "c", &bag),
        &topics::inputs_filter(&device, "d"),
        n,
        body,
        timeout,
    )
    .await
}

fn machine() -> String {
    std::process::Command::new("uname")
        .arg("-m")
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| std::env::consts::ARCH.to_string())
}

fn results_path() -> PathBuf {
    std::env::var_os("BENCH_RESULTS")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("RESULTS.md"))
}

async fn run() -> BenchResult<()> {
    let n = env_usize("BENCH_MESSAGES", 100_000)?.max(1);
    let timeout = Duration::from_secs(env_usize("BENCH_TIMEOUT_SECS", 60)? as u64);
    let body = payload(BODY_SIZE);
    let dir = tempfile::tempdir()?;
    let nproc = std::thread::available_parallelism().map_or(1, |p| p.get());
    let arch = machine();
    println!("e2e: {n} messages of {BODY_SIZE} B, QoS 1, inflight 100 ({arch}, {nproc} CPUs)");

    let a = ceiling(dir.path(), n, &body, timeout).await?;
    let mosquitto_raw = report("(a) mosquitto + raw", n, &a)?;

    let manifest = dir.path().join("manifest.json");
    std::fs::write(&manifest, MANIFEST)?;
    let mut config = Config::ephemeral(dir.path().join("devhub"));
    config.manifest = Some(manifest);
    let hub = edgemodule_devhub::start(config).await?;
    let outcome = async {
        let b = ours(&hub, n, &body, timeout).await?;
        let ours_rate = report("(b) devhub + edgemodule", n, &b)?;
        let c = hub_only(&hub, n, &body, timeout).await?;
        let hub_rate = report("(c) devhub + raw", n, &c)?;
        Ok::<_, edgemodule_bench::BoxError>((ours_rate, hub_rate))
    }
    .await;
    hub.stop().await;
    let (devhub_edgemodule, devhub_raw) = outcome?;

    let date = humantime::format_rfc3339_seconds(SystemTime::now()).to_string();
    let row = Row {
        date: date.replace('T', " ").trim_end_matches('Z').to_string(),
        arch,
        nproc,
        messages: n,
        mosquitto_raw,
        devhub_raw,
        devhub_edgemodule,
    };
    println!(
        "ours / ceiling      = {:.2}  (devhub + edgemodule vs mosquitto + raw)",
        row.ours_vs_ceiling()
    );
    println!(
        "devhub / mosquitto  = {:.2}  (both with raw clients)",
        row.devhub_vs_mosquitto()
    );
    let path = results_path();
    results::append(&path, &row)?;
    println!("appended to {}", path.display());
    Ok(())
}

#[tokio::main]
async fn main() {
    if let Err(e) = run().await {
        eprintln!("e2e: {e}");
        std::process::exit(1);
    }
}
