//! A raw rumqttc publisher and subscriber (QoS 1): the baseline with no edgemodule code in the
//! clients, used against mosquitto and against devhub's plain MQTT port.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rumqttc::{AsyncClient, Event, EventLoop, MqttOptions, Packet, QoS};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::{numbered, BenchResult, Tally};

/// Where and as whom a raw client connects.
#[derive(Clone, Debug)]
pub struct Endpoint {
    pub host: String,
    pub port: u16,
    pub client_id: String,
    /// Username and password (devhub: the IoT Hub username and a SAS token).
    pub credentials: Option<(String, String)>,
}

impl std::fmt::Display for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the password: it is a SAS token.
        write!(f, "{} at {}:{}", self.client_id, self.host, self.port)
    }
}

/// One measured transfer.
#[derive(Clone, Copy, Debug)]
pub struct Transfer {
    /// Distinct messages received.
    pub received: usize,
    /// Messages received more than once.
    pub duplicates: usize,
    pub elapsed: Duration,
    pub complete: bool,
}

const INFLIGHT: u16 = 100;

fn options(ep: &Endpoint) -> MqttOptions {
    let mut o = MqttOptions::new(ep.client_id.clone(), ep.host.clone(), ep.port);
    o.set_keep_alive(Duration::from_secs(60));
    o.set_inflight(INFLIGHT);
    o.set_clean_session(true);
    o.set_max_packet_size(256 * 1024 + 4096, 256 * 1024 + 4096);
    if let Some((u, p)) = &ep.credentials {
        o.set_credentials(u.clone(), p.clone());
    }
    o
}

/// Polls `el` until the broker answers CONNECT (and, when `suback`, the one SUBSCRIBE).
async fn handshake(el: &mut EventLoop, ep: &Endpoint, suback: bool) -> BenchResult<()> {
    let mut connected = false;
    loop {
        match el.poll().await {
            Ok(Event::Incoming(Packet::ConnAck(_))) => {
                connected = true;
                if !suback {
                    return Ok(());
                }
            }
            Ok(Event::Incoming(Packet::SubAck(s))) => {
                let refused = s
                    .return_codes
                    .iter()
                    .any(|c| matches!(c, rumqttc::SubscribeReasonCode::Failure));
                if refused {
                    return Err(format!("{ep}: subscription refused").into());
                }
                if connected {
                    return Ok(());
                }
            }
            Ok(_) => {}
            Err(e) => return Err(format!("{ep}: {e}").into()),
        }
    }
}

/// Connects a subscriber to `filter` and returns once SUBACK arrived; the task then tallies
/// publishes (auto-acked by rumqttc) and reports the instant the last missing one arrives.
async fn subscriber(
    ep: &Endpoint,
    filter: &str,
    n: usize,
    payload_len: usize,
) -> BenchResult<Subscriber> {
    let (client, mut el) = AsyncClient::new(options(ep), 1024);
    client.subscribe(filter, QoS::AtLeastOnce).await?;
    handshake(&mut el, ep, true).await?;
    let (done_tx, done_rx) = oneshot::channel();
    let ep = ep.clone();
    let tally = Arc::new(Mutex::new(Tally::new(n)));
    let counter = tally.clone();
    let task = tokio::spawn(async move {
        let mut done = Some(done_tx);
        loop {
            match el.poll().await {
                Ok(Event::Incoming(Packet::Publish(p))) => {
                    if p.payload.len() != payload_len {
                        eprintln!(
                            "{ep}: payload of {} bytes, expected {payload_len}",
                            p.payload.len()
                        );
                    }
                    let complete = counter.lock().unwrap().record(&p.payload);
                    if complete {
                        if let Some(tx) = done.take() {
                            let _ = tx.send(Instant::now());
                        }
                    }
                }
                Ok(_) => {}
                Err(e) => {
                    if done.is_some() {
                        let got = counter.lock().unwrap().distinct;
                        eprintln!("{ep}: subscriber stopped after {got}: {e}");
                    }
                    return;
                }
            }
        }
    });
    Ok(Subscriber {
        client,
        task,
        done: done_rx,
        tally,
    })
}

struct Subscriber {
    client: AsyncClient,
    task: JoinHandle<()>,
    done: oneshot::Receiver<Instant>,
    tally: Arc<Mutex<Tally>>,
}

/// Publishes `n` numbered copies of `payload` (QoS 1, inflight 100) to `topic` from `publisher` and measures
/// until `subscriber` (on `filter`) received all of them, or `timeout` passed.
pub async fn transfer(
    publisher: &Endpoint,
    subscriber_ep: &Endpoint,
    topic: &str,
    filter: &str,
    n: usize,
    payload: &[u8],
    timeout: Duration,
) -> BenchResult<Transfer> {
    let sub = subscriber(subscriber_ep, filter, n, payload.len()).await?;
    let (client, mut el) = AsyncClient::new(options(publisher), 4096);
    handshake(&mut el, publisher, false).await?;
    let pub_ep = publisher.clone();
    let pub_loop = tokio::spawn(async move {
        loop {
            if let Err(e) = el.poll().await {
                return Err::<(), String>(format!("{pub_ep}: {e}"));
            }
        }
    });
    let start = Instant::now();
    let producer = {
        let client = client.clone();
        let topic = topic.to_string();
        let payload = payload.to_vec();
        tokio::spawn(async move {
            for seq in 0..n {
                if client
                    .publish(
                        topic.as_str(),
                        QoS::AtLeastOnce,
                        false,
                        numbered(&payload, seq),
                    )
                    .await
                    .is_err()
                {
                    break;
                }
            }
        })
    };
    let finished = tokio::time::timeout(timeout, sub.done).await;
    let elapsed = start.elapsed();
    producer.abort();
    let _ = client.disconnect().await;
    let _ = sub.client.disconnect().await;
    // Give the DISCONNECTs a moment to leave, then stop both event loops.
    tokio::time::sleep(Duration::from_millis(50)).await;
    pub_loop.abort();
    sub.task.abort();
    let complete = matches!(finished, Ok(Ok(_)));
    let elapsed = match finished {
        Ok(Ok(at)) => at.duration_since(start),
        _ => elapsed,
    };
    let tally = sub.tally.lock().unwrap();
    if tally.strangers > 0 {
        eprintln!("{subscriber_ep}: {} unexpected payloads", tally.strangers);
    }
    Ok(Transfer {
        received: tally.distinct,
        duplicates: tally.duplicates,
        elapsed,
        complete,
    })
}
