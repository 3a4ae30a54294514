//! edgemodule: the Azure IoT Edge ModuleClient semantics in one Rust core.
//!
//! Every protocol rule lives here once; the C, Python, Node, Java and C# packages are thin shells
//! over [`ModuleClient`]. See `../shared/DESIGN.md` for the shape and `PROTOCOL.md` for wire facts.
//!
//! ```no_run
//! # async fn demo() -> edgemodule::Result<()> {
//! use edgemodule::{ClientOptions, Event, Message, ModuleClient};
//! let client = ModuleClient::from_environment(ClientOptions::default())?;
//! client.connect().await?;
//! while let Some(event) = client.next_event().await {
//!     if let Event::InputMessage { message, ack, .. } = event {
//!         client.send_message_to_output("output1", Message::new(message.body.clone())).await?;
//!         ack.ack();
//!     }
//! }
//! # Ok(()) }
//! ```

pub mod backoff;
pub mod client;
pub mod credentials;
pub mod error;
pub mod event;
pub mod http;
pub mod message;
pub mod options;
pub mod protocol;
pub mod runtime;
pub(crate) mod session;
pub mod tls;
pub mod workload;

pub use client::{MethodResponse, ModuleClient, QueueStats};
pub use error::{Error, ErrorKind, Result};
pub use event::{AckHandle, ConnectionStatus, Event, StatusReason};
pub use message::Message;
pub use options::{BrokerOptions, ClientOptions, TransportKind};
pub use protocol::twin::Twin;
