//! What the client hands to the application: a pulled queue of events.

use std::sync::Mutex;
use std::time::Duration;

use tokio::sync::mpsc;

use crate::message::Message;
use crate::session::Command;

/// Connection state reported in [`Event::ConnectionStatus`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum ConnectionStatus {
    Connected,
    Disconnected,
    /// Lost and reconnecting: `attempt` starts at 1; the next try comes after `next_delay`.
    DisconnectedRetrying {
        attempt: u32,
        next_delay: Duration,
    },
}

/// Why the status changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[repr(i32)]
pub enum StatusReason {
    ConnectionOk = 0,
    ExpiredSasToken = 1,
    BadCredential = 2,
    NoNetwork = 3,
    CommunicationError = 4,
    RetryExpired = 5,
    ClientClose = 6,
}

/// An event from the hub. Pull them with [`crate::ModuleClient::next_event`].
// Events are moved once from the session to the application: boxing the message would cost an
// allocation per input message for nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum Event {
    /// A message on one of the module's inputs. Call `ack.ack()` once it is handled: only then
    /// does the hub forget it (a crash before means redelivery, not loss).
    InputMessage {
        input: String,
        message: Message,
        ack: AckHandle,
    },
    /// Desired properties changed. `patch` holds the changed members (`null` = deleted) or, after a
    /// reconnect that missed changes, the whole desired section.
    DesiredPropertiesPatch {
        patch: serde_json::Value,
        version: Option<i64>,
    },
    /// A direct method call; answer it with [`crate::ModuleClient::respond_method`].
    MethodRequest {
        request_id: String,
        name: String,
        payload: serde_json::Value,
    },
    ConnectionStatus {
        status: ConnectionStatus,
        reason: StatusReason,
    },
    /// A message on a user topic (broker mode).
    TopicMessage {
        topic: String,
        payload: Vec<u8>,
        qos: u8,
    },
}

/// Acknowledges one input message to the hub. Acking twice is harmless; dropping it without
/// acking leaves the message with the hub, which redelivers it.
#[derive(Debug)]
pub struct AckHandle {
    inner: Mutex<Option<AckTarget>>,
}

#[derive(Debug)]
pub(crate) struct AckTarget {
    pub commands: mpsc::UnboundedSender<Command>,
    pub pkid: u16,
    pub generation: u64,
}

impl AckHandle {
    pub(crate) fn new(target: Option<AckTarget>) -> Self {
        AckHandle {
            inner: Mutex::new(target),
        }
    }

    /// A handle that does nothing (QoS 0 messages need no ack).
    pub fn none() -> Self {
        AckHandle::new(None)
    }

    /// Send the PUBACK now (once; later calls do nothing).
    pub fn ack(&self) {
        let target = self.inner.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(t) = target {
            let _ = t.commands.send(Command::Ack {
                pkid: t.pkid,
                generation: t.generation,
            });
        }
    }

    /// Whether `ack` was already called (or there is nothing to ack).
    pub fn is_acked(&self) -> bool {
        self.inner
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_none()
    }
}
