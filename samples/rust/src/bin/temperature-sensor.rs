//! temperature-sensor: a simulated machine sensor, like Microsoft's SimulatedTemperatureSensor.
//! Sends one JSON reading every `SENSOR_INTERVAL_MS` (default 500) to output
//! `temperatureOutput`; stops after `SENSOR_COUNT` readings when that is set.

use std::time::{Duration, SystemTime};

use edgemodule::{ClientOptions, Event, Message, ModuleClient, Result};
use edgemodule_samples::{env_number, shutdown_signal};

const OUTPUT: &str = "temperatureOutput";

/// Readings per machine temperature cycle (20 → 35 °C): the sawtooth crosses the filter's
/// default (25) and raised (30) thresholds every few seconds, so a short demo sees alerts come
/// and go.
const CYCLE: u64 = 30;
/// The first reading is at 25 °C, so alerts start right away.
const PHASE: u64 = CYCLE / 3;

struct Reading {
    machine_temperature: f64,
    machine_pressure: f64,
    ambient_temperature: f64,
    ambient_humidity: f64,
}

fn reading(n: u64) -> Reading {
    let noise = || rand::random::<f64>() - 0.5;
    let step = (n + PHASE) % CYCLE;
    let machine_temperature = 20.0 + 15.0 * step as f64 / CYCLE as f64 + noise();
    // Pressure follows temperature on the simulated machine (1 bar at 21 °C, 10 bar at 100 °C).
    let machine_pressure = 1.0 + (machine_temperature - 21.0) * 9.0 / 79.0;
    Reading {
        machine_temperature,
        machine_pressure,
        ambient_temperature: 21.0 + noise(),
        ambient_humidity: 25.0 + 2.0 * noise(),
    }
}

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

fn message(r: &Reading, created: &str) -> Message {
    let body = serde_json::json!({
        "machine": {
            "temperature": round2(r.machine_temperature),
            "pressure": round2(r.machine_pressure),
        },
        "ambient": {
            "temperature": round2(r.ambient_temperature),
            "humidity": round2(r.ambient_humidity),
        },
        "timeCreated": created,
    });
    Message::new(body.to_string())
        .with_content_type("application/json")
        .with_content_encoding("utf-8")
        .with_creation_time_utc(created)
}

async fn run(client: &ModuleClient, interval: Duration, count: Option<u64>) -> Result<u64> {
    client.connect().await?;
    println!(
        "tempSensor: connected; sending to {OUTPUT} every {} ms{}",
        interval.as_millis(),
        count.map(|c| format!(", {c} messages")).unwrap_or_default()
    );
    let mut ticks = tokio::time::interval(interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut sent = 0u64;
    while count.is_none_or(|c| sent < c) {
        ticks.tick().await;
        let r = reading(sent);
        let created = humantime::format_rfc3339_millis(SystemTime::now()).to_string();
        client
            .send_message_to_output(OUTPUT, message(&r, &created))
            .await?;
        sent += 1;
        println!(
            "tempSensor: sent #{sent} to {OUTPUT}: machine.temperature={:.2} pressure={:.2}",
            r.machine_temperature, r.machine_pressure
        );
    }
    Ok(sent)
}

/// Logs connection changes; the sensor subscribes to nothing else.
async fn log_status(client: ModuleClient) {
    while let Some(event) = client.next_event().await {
        if let Event::ConnectionStatus { status, reason } = event {
            println!("tempSensor: connection {status:?} ({reason:?})");
        }
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let code = match start().await {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("tempSensor: {e}");
            1
        }
    };
    std::process::exit(code);
}

async fn start() -> Result<()> {
    let interval = Duration::from_millis(env_number("SENSOR_INTERVAL_MS")?.unwrap_or(500).max(1));
    let count = env_number("SENSOR_COUNT")?;
    // A pure producer: no inputs, methods or desired patches to subscribe to.
    let options = ClientOptions {
        enable_inputs: false,
        enable_methods: false,
        enable_twin_patches: false,
        ..ClientOptions::default()
    };
    let client = ModuleClient::from_environment(options)?;
    let status = tokio::spawn(log_status(client.clone()));
    let outcome = tokio::select! {
        r = run(&client, interval, count) => r.map(|n| println!("tempSensor: done, {n} messages sent")),
        _ = shutdown_signal() => {
            println!("tempSensor: shutting down");
            Ok(())
        }
    };
    client.close().await;
    status.abort();
    outcome
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readings_have_the_simulated_sensor_shape() {
        let r = Reading {
            machine_temperature: 26.456,
            machine_pressure: 1.5,
            ambient_temperature: 21.2,
            ambient_humidity: 25.0,
        };
        let m = message(&r, "2024-01-02T03:04:05.678Z");
        assert_eq!(m.content_type.as_deref(), Some("application/json"));
        assert_eq!(m.content_encoding.as_deref(), Some("utf-8"));
        let v: serde_json::Value = serde_json::from_slice(&m.body).unwrap();
        assert_eq!(
            v,
            serde_json::json!({
                "machine": {"temperature": 26.46, "pressure": 1.5},
                "ambient": {"temperature": 21.2, "humidity": 25.0},
                "timeCreated": "2024-01-02T03:04:05.678Z",
            })
        );
    }

    #[test]
    fn temperature_sweeps_across_both_demo_thresholds() {
        let temps: Vec<f64> = (0..CYCLE).map(|n| reading(n).machine_temperature).collect();
        assert!(temps.iter().any(|t| *t < 25.0));
        assert!(temps.iter().any(|t| *t > 30.0));
        assert!(temps.iter().all(|t| (19.5..35.5).contains(t)));
    }
}
