//! The baseline of bench/c/relay_bench.c: the same three modules and threads on the Rust core,
//! with the core's blocking facade (`next_event_blocking`, `block_on`), so the only difference
//! measured is the C ABI. Built as example `relay_core` of edgemodule-ffi:
//! `cargo run --release -p edgemodule-ffi --example relay_core`. Prints "RESULT rust <msg/s>".

use std::time::{Duration, Instant};

use edgemodule::{ClientOptions, Event, Message, ModuleClient};

const BATCH: usize = 100;
const BODY: usize = 256;
const WAIT: Option<Duration> = Some(Duration::from_secs(60));

fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        eprintln!("relay_core: {name} is not set");
        std::process::exit(2)
    })
}

fn connect(cs_var: &str, ca: &str, port: u16) -> ModuleClient {
    let options = ClientOptions {
        mqtt_port: Some(port),
        trust_bundle_pem: Some(ca.to_string()),
        ..ClientOptions::default()
    };
    let c = ModuleClient::from_connection_string(&env(cs_var), options).expect("create");
    c.block_on(c.connect()).expect("connect");
    c
}

/// The next input message (skipping other events), acked after `handle`.
fn next_input(c: &ModuleClient, what: &str, handle: impl FnOnce(&Message)) {
    loop {
        match c.next_event_blocking(WAIT) {
            Ok(Some(Event::InputMessage { message, ack, .. })) => {
                handle(&message);
                ack.ack();
                return;
            }
            Ok(Some(_)) => continue,
            other => panic!("{what}: {other:?}"),
        }
    }
}

fn main() {
    let n: usize = std::env::var("BENCH_MESSAGES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_000);
    let ca = std::fs::read_to_string(env("EM_BENCH_CA_FILE")).expect("CA file");
    let port: u16 = env("EM_BENCH_MQTT_PORT").parse().expect("port");
    let sink = connect("EM_BENCH_CS_SINK", &ca, port);
    let relay = connect("EM_BENCH_CS_RELAY", &ca, port);
    let src = connect("EM_BENCH_CS_SRC", &ca, port);

    let t0 = Instant::now();
    let relay_thread = {
        let relay = relay.clone();
        std::thread::spawn(move || {
            for _ in 0..n {
                next_input(&relay, "relay", |m| {
                    let fwd = relay.block_on(relay.send_message_to_output("out", m.clone()));
                    fwd.expect("relay send");
                });
            }
        })
    };
    let src_thread = {
        let src = src.clone();
        std::thread::spawn(move || {
            let mut sent = 0;
            while sent < n {
                let k = BATCH.min(n - sent);
                let batch: Vec<Message> = (sent..sent + k)
                    .map(|i| {
                        let mut body = vec![b'x'; BODY];
                        body[..10].copy_from_slice(format!("{i:010}").as_bytes());
                        Message::new(body)
                    })
                    .collect();
                for r in src.block_on(src.send_messages_to_output("out", batch)) {
                    r.expect("src send");
                }
                sent += k;
            }
        })
    };
    for _ in 0..n {
        next_input(&sink, "sink", |_| {});
    }
    let secs = t0.elapsed().as_secs_f64();
    src_thread.join().expect("src thread");
    relay_thread.join().expect("relay thread");
    println!("RESULT rust {:.0}", n as f64 / secs);
    for c in [src, relay, sink] {
        c.block_on(c.close());
    }
}
