//! The Rust-core baseline of bench/python: the same route, devhub and message size as the Python
//! benchmark, driven by the core directly (no Python).
//!
//!   rust_route SENDER_CS RECEIVER_CS CA_FILE MQTT_PORT N BODY_SIZE
//!
//! Prints `rust_route N secs` after the receiver got all N messages.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use edgemodule::{ClientOptions, Event, Message, ModuleClient};

const CHUNK: usize = 1000;
const SENDERS: usize = 4;

fn arg(i: usize) -> String {
    std::env::args().nth(i).unwrap_or_else(|| {
        eprintln!("usage: rust_route SENDER_CS RECEIVER_CS CA_FILE MQTT_PORT N BODY_SIZE");
        std::process::exit(2)
    })
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let (send_cs, recv_cs, ca) = (arg(1), arg(2), std::fs::read_to_string(arg(3))?);
    let port: u16 = arg(4).parse()?;
    let n: usize = arg(5).parse()?;
    let size: usize = arg(6).parse()?;
    let options = ClientOptions {
        mqtt_port: Some(port),
        trust_bundle_pem: Some(ca),
        ..ClientOptions::default()
    };
    let sender = ModuleClient::from_connection_string(&send_cs, options.clone())?;
    let receiver = ModuleClient::from_connection_string(&recv_cs, options)?;
    let rt = sender.runtime_handle();
    let got = Arc::new(AtomicUsize::new(0));
    let secs = rt.block_on(async {
        receiver.connect().await?;
        sender.connect().await?;
        let r = receiver.clone();
        let count = got.clone();
        let recv = tokio::spawn(async move {
            while let Some(ev) = r.next_event().await {
                if let Event::InputMessage { ack, .. } = ev {
                    ack.ack();
                    if count.fetch_add(1, Ordering::Relaxed) + 1 >= n {
                        return;
                    }
                }
            }
        });
        let body = vec![b'x'; size];
        let start = Instant::now();
        let next = Arc::new(AtomicUsize::new(0));
        let mut tasks = Vec::new();
        for _ in 0..SENDERS {
            let (s, next, body) = (sender.clone(), next.clone(), body.clone());
            tasks.push(tokio::spawn(async move {
                loop {
                    let from = next.fetch_add(CHUNK, Ordering::Relaxed);
                    if from >= n {
                        return;
                    }
                    let batch = (from..(from + CHUNK).min(n))
                        .map(|_| Message::new(body.clone()))
                        .collect();
                    for r in s.send_messages_to_output("out", batch).await {
                        if let Err(e) = r {
                            eprintln!("send failed: {e}");
                        }
                    }
                }
            }));
        }
        for t in tasks {
            t.await?;
        }
        tokio::time::timeout(Duration::from_secs(120), recv).await??;
        Ok::<f64, Box<dyn std::error::Error>>(start.elapsed().as_secs_f64())
    })?;
    println!("rust_route {n} {secs:.4}");
    rt.block_on(async {
        sender.close().await;
        receiver.close().await;
    });
    Ok(())
}
