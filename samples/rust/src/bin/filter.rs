//! filter: forwards readings from input `input1` whose `machine.temperature` exceeds the
//! desired property `TemperatureThreshold` to output `output1`, tagged `MessageType=Alert`.
//! Desired patches change the threshold (reported back); method `reset` restores the default.

use edgemodule::{AckHandle, ClientOptions, Event, Message, ModuleClient, Result};
use edgemodule_samples::{machine_temperature, shutdown_signal, threshold_in};
use serde_json::{json, Value};

const INPUT: &str = "input1";
const OUTPUT: &str = "output1";
const DEFAULT_THRESHOLD: f64 = 25.0;

struct Filter {
    client: ModuleClient,
    threshold: f64,
    received: u64,
    alerts: u64,
}

/// 25.0 as `25`, 25.5 as `25.5`: what a person would write in the twin.
fn number(x: f64) -> Value {
    if x.fract() == 0.0 && x.abs() < 1e15 {
        json!(x as i64)
    } else {
        json!(x)
    }
}

/// The alert sent for a reading: same body and properties, plus `MessageType=Alert`.
fn alert(input: &Message) -> Message {
    let mut out = Message::new(input.body.clone());
    out.content_type = input.content_type.clone();
    out.content_encoding = input.content_encoding.clone();
    out.creation_time_utc = input.creation_time_utc.clone();
    out.properties = input.properties.clone();
    out.set_property("MessageType", "Alert");
    out
}

impl Filter {
    async fn start(client: ModuleClient) -> Result<Filter> {
        client.connect().await?;
        let twin = client.get_twin().await?;
        let threshold = threshold_in(&twin.desired).unwrap_or(DEFAULT_THRESHOLD);
        let filter = Filter {
            client,
            threshold,
            received: 0,
            alerts: 0,
        };
        filter.report().await;
        println!(
            "filter: connected; TemperatureThreshold={}, reading {INPUT}",
            number(threshold)
        );
        Ok(filter)
    }

    async fn report(&self) {
        let patch = json!({ "TemperatureThreshold": number(self.threshold) });
        if let Err(e) = self.client.patch_reported(patch).await {
            eprintln!("filter: reporting the threshold failed: {e}");
        }
    }

    async fn run(&mut self) {
        while let Some(event) = self.client.next_event().await {
            match event {
                Event::InputMessage {
                    input,
                    message,
                    ack,
                } => self.on_input(&input, &message, &ack).await,
                Event::DesiredPropertiesPatch { patch, version } => {
                    self.on_desired(&patch, version).await
                }
                Event::MethodRequest {
                    request_id,
                    name,
                    payload,
                } => self.on_method(&request_id, &name, &payload).await,
                Event::ConnectionStatus { status, reason } => {
                    println!("filter: connection {status:?} ({reason:?})")
                }
                Event::TopicMessage { .. } => {}
            }
        }
    }

    async fn on_input(&mut self, input: &str, message: &Message, ack: &AckHandle) {
        self.received += 1;
        let n = self.received;
        if input != INPUT {
            println!("filter: #{n} on unexpected input {input:?}, dropped");
            ack.ack();
            return;
        }
        let Some(t) = machine_temperature(&message.body) else {
            println!("filter: #{n} on {input} is not a sensor reading, dropped");
            ack.ack();
            return;
        };
        if t <= self.threshold {
            println!(
                "filter: #{n} temperature={t} <= {}, dropped",
                number(self.threshold)
            );
            ack.ack();
            return;
        }
        match self
            .client
            .send_message_to_output(OUTPUT, alert(message))
            .await
        {
            Ok(()) => {
                self.alerts += 1;
                println!(
                    "filter: #{n} temperature={t} > {} -> alert #{} to {OUTPUT}",
                    number(self.threshold),
                    self.alerts
                );
                ack.ack();
            }
            // Not acked: the hub redelivers it, so no reading is lost to a send failure.
            Err(e) => eprintln!("filter: #{n} forwarding failed: {e}"),
        }
    }

    async fn on_desired(&mut self, patch: &Value, version: Option<i64>) {
        let Some(t) = threshold_in(patch) else {
            return;
        };
        let before = self.threshold;
        self.threshold = t;
        println!(
            "filter: threshold changed {} -> {} (desired version {})",
            number(before),
            number(t),
            version.map_or("?".to_string(), |v| v.to_string())
        );
        self.report().await;
    }

    async fn on_method(&mut self, request_id: &str, name: &str, payload: &Value) {
        let (status, answer) = match name {
            "reset" => {
                let before = self.threshold;
                self.threshold = DEFAULT_THRESHOLD;
                println!(
                    "filter: method reset: threshold {} -> {}",
                    number(before),
                    number(self.threshold)
                );
                self.report().await;
                (200, json!({ "threshold": number(self.threshold) }))
            }
            other => {
                println!("filter: unknown method {other:?} (payload {payload}), 404");
                (
                    404,
                    json!({ "message": format!("method {other:?} is not implemented") }),
                )
            }
        };
        if let Err(e) = self.client.respond_method(request_id, status, answer).await {
            eprintln!("filter: answering method {name:?} failed: {e}");
        }
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let code = match start().await {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("filter: {e}");
            1
        }
    };
    std::process::exit(code);
}

async fn start() -> Result<()> {
    let client = ModuleClient::from_environment(ClientOptions::default())?;
    let outcome = tokio::select! {
        r = async {
            let mut filter = Filter::start(client.clone()).await?;
            filter.run().await;
            Ok(())
        } => r,
        _ = shutdown_signal() => {
            println!("filter: shutting down");
            Ok(())
        }
    };
    client.close().await;
    outcome
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alerts_keep_the_reading_and_add_the_message_type() {
        let input = Message::new(br#"{"machine":{"temperature":31}}"#.to_vec())
            .with_content_type("application/json")
            .with_content_encoding("utf-8")
            .with_property("site", "b7")
            .with_property("MessageType", "Reading");
        let out = alert(&input);
        assert_eq!(out.body, input.body);
        assert_eq!(out.content_type.as_deref(), Some("application/json"));
        assert_eq!(out.content_encoding.as_deref(), Some("utf-8"));
        assert_eq!(
            out.properties,
            vec![
                ("site".to_string(), Some("b7".to_string())),
                ("MessageType".to_string(), Some("Alert".to_string())),
            ]
        );
    }

    #[test]
    fn whole_thresholds_print_as_integers() {
        assert_eq!(number(25.0).to_string(), "25");
        assert_eq!(number(25.5).to_string(), "25.5");
    }
}
