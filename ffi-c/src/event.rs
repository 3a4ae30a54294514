//! `em_event`: one pulled event and its accessors.

use std::ffi::{c_char, CString};
use std::ptr;

use edgemodule::{AckHandle, ConnectionStatus, Error, Event, Result, StatusReason};

use crate::error::em_error;
use crate::message::em_message;
use crate::util::{c_string, check_out, ffi_call, ffi_value};

const MAGIC: u64 = 0x656d_5f65_7674_0001;

/// What an event is.
#[allow(non_camel_case_types, clippy::upper_case_acronyms)]
#[repr(i32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum em_event_type {
    /// Not an event (NULL).
    EM_EVENT_NONE = 0,
    /// A message on one of the module's inputs: `em_event_input_name`, `em_event_message`;
    /// acknowledge it with `em_event_ack` once handled.
    EM_EVENT_INPUT_MESSAGE = 1,
    /// Desired properties changed: `em_event_desired_json`, `em_event_desired_version`.
    EM_EVENT_DESIRED_PROPERTIES = 2,
    /// A direct method call: `em_event_method_name`, `em_event_method_payload_json`,
    /// `em_event_method_request_id`; answer with `em_client_respond_method`.
    EM_EVENT_METHOD_REQUEST = 3,
    /// The connection state changed: `em_event_connection_status`, `em_event_status_reason`.
    EM_EVENT_CONNECTION_STATUS = 4,
    /// A message on a user topic (broker mode): `em_event_topic`, `em_event_topic_payload`.
    EM_EVENT_TOPIC_MESSAGE = 5,
}

/// Connection state.
#[allow(non_camel_case_types, clippy::upper_case_acronyms)]
#[repr(i32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum em_connection_status {
    EM_STATUS_UNKNOWN = 0,
    EM_STATUS_CONNECTED = 1,
    EM_STATUS_DISCONNECTED = 2,
    /// Lost and reconnecting (`em_event_retry_attempt`, `em_event_retry_delay_ms`).
    EM_STATUS_DISCONNECTED_RETRYING = 3,
}

/// Why the connection state changed (the core's `StatusReason` codes).
#[allow(non_camel_case_types, clippy::upper_case_acronyms)]
#[repr(i32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum em_status_reason {
    EM_REASON_CONNECTION_OK = 0,
    EM_REASON_EXPIRED_SAS_TOKEN = 1,
    EM_REASON_BAD_CREDENTIAL = 2,
    EM_REASON_NO_NETWORK = 3,
    EM_REASON_COMMUNICATION_ERROR = 4,
    EM_REASON_RETRY_EXPIRED = 5,
    EM_REASON_CLIENT_CLOSE = 6,
}

pub(crate) fn status_code(s: ConnectionStatus) -> em_connection_status {
    match s {
        ConnectionStatus::Connected => em_connection_status::EM_STATUS_CONNECTED,
        ConnectionStatus::Disconnected => em_connection_status::EM_STATUS_DISCONNECTED,
        ConnectionStatus::DisconnectedRetrying { .. } => {
            em_connection_status::EM_STATUS_DISCONNECTED_RETRYING
        }
    }
}

fn reason_code(r: StatusReason) -> em_status_reason {
    use em_status_reason::*;
    match r {
        StatusReason::ConnectionOk => EM_REASON_CONNECTION_OK,
        StatusReason::ExpiredSasToken => EM_REASON_EXPIRED_SAS_TOKEN,
        StatusReason::BadCredential => EM_REASON_BAD_CREDENTIAL,
        StatusReason::NoNetwork => EM_REASON_NO_NETWORK,
        StatusReason::CommunicationError => EM_REASON_COMMUNICATION_ERROR,
        StatusReason::RetryExpired => EM_REASON_RETRY_EXPIRED,
        StatusReason::ClientClose => EM_REASON_CLIENT_CLOSE,
    }
}

enum Data {
    Input {
        input: CString,
        message: Box<em_message>,
        ack: AckHandle,
    },
    Desired {
        json: CString,
        version: Option<i64>,
    },
    Method {
        request_id: CString,
        name: CString,
        payload: CString,
    },
    Status {
        status: ConnectionStatus,
        reason: StatusReason,
    },
    Topic {
        topic: CString,
        payload: Vec<u8>,
        qos: u8,
    },
}

/// An event. Opaque; owned by the caller that received it: free with `em_event_free`.
#[allow(non_camel_case_types)]
pub struct em_event {
    magic: u64,
    data: Data,
}

impl em_event {
    pub(crate) fn from_core(ev: Event) -> em_event {
        let data = match ev {
            Event::InputMessage {
                input,
                message,
                ack,
            } => Data::Input {
                input: c_string(&input),
                message: Box::new(em_message::wrap(message)),
                ack,
            },
            Event::DesiredPropertiesPatch { patch, version } => Data::Desired {
                json: c_string(&patch.to_string()),
                version,
            },
            Event::MethodRequest {
                request_id,
                name,
                payload,
            } => Data::Method {
                request_id: c_string(&request_id),
                name: c_string(&name),
                payload: c_string(&payload.to_string()),
            },
            Event::ConnectionStatus { status, reason } => Data::Status { status, reason },
            Event::TopicMessage {
                topic,
                payload,
                qos,
            } => Data::Topic {
                topic: c_string(&topic),
                payload,
                qos,
            },
        };
        em_event { magic: MAGIC, data }
    }

    pub(crate) fn into_raw(ev: Event) -> *mut em_event {
        Box::into_raw(Box::new(em_event::from_core(ev)))
    }
}

/// # Safety
/// `p` is NULL or points to an `em_event` (a freed one is caught only while its memory is
/// untouched: best effort).
unsafe fn ev_ref<'a>(p: *const em_event) -> Result<&'a em_event> {
    match p.as_ref() {
        None => Err(crate::util::null_arg("event")),
        Some(e) if e.magic == MAGIC => Ok(e),
        Some(_) => Err(Error::invalid("argument `event` is not a live em_event")),
    }
}

fn with_event<T: Copy>(event: *const em_event, fallback: T, f: impl FnOnce(&Data) -> T) -> T {
    ffi_value(fallback, || {
        // SAFETY: header contract (NULL or a live event).
        match unsafe { ev_ref(event) } {
            Ok(e) => f(&e.data),
            Err(_) => fallback,
        }
    })
}

/// The event's kind (`EM_EVENT_NONE` for NULL).
#[no_mangle]
pub extern "C" fn em_event_kind(event: *const em_event) -> em_event_type {
    with_event(event, em_event_type::EM_EVENT_NONE, |d| match d {
        Data::Input { .. } => em_event_type::EM_EVENT_INPUT_MESSAGE,
        Data::Desired { .. } => em_event_type::EM_EVENT_DESIRED_PROPERTIES,
        Data::Method { .. } => em_event_type::EM_EVENT_METHOD_REQUEST,
        Data::Status { .. } => em_event_type::EM_EVENT_CONNECTION_STATUS,
        Data::Topic { .. } => em_event_type::EM_EVENT_TOPIC_MESSAGE,
    })
}

/// Input messages: the input name, else NULL. Every pointer an event accessor returns is
/// borrowed: valid until `em_event_free(event)`.
#[no_mangle]
pub extern "C" fn em_event_input_name(event: *const em_event) -> *const c_char {
    with_event(event, ptr::null(), |d| match d {
        Data::Input { input, .. } => input.as_ptr(),
        _ => ptr::null(),
    })
}

/// Input messages: the message (borrowed; read it with the `em_message_*` getters; never free
/// it), else NULL.
#[no_mangle]
pub extern "C" fn em_event_message(event: *const em_event) -> *const em_message {
    with_event(event, ptr::null(), |d| match d {
        Data::Input { message, .. } => &**message as *const em_message,
        _ => ptr::null(),
    })
}

/// Acknowledges an input message to the hub (only then does the hub forget it; an event freed
/// unacknowledged is redelivered after a reconnect). Acking twice, or another kind of event,
/// does nothing. Non-blocking.
#[no_mangle]
pub extern "C" fn em_event_ack(event: *const em_event) -> *mut em_error {
    ffi_call("em_event_ack", || {
        // SAFETY: header contract.
        let e = unsafe { ev_ref(event) }?;
        if let Data::Input { ack, .. } = &e.data {
            ack.ack();
        }
        Ok(())
    })
}

/// Desired-properties events: the patch as JSON (`null` members were deleted; after a reconnect
/// that missed changes, the whole desired section), else NULL.
#[no_mangle]
pub extern "C" fn em_event_desired_json(event: *const em_event) -> *const c_char {
    with_event(event, ptr::null(), |d| match d {
        Data::Desired { json, .. } => json.as_ptr(),
        _ => ptr::null(),
    })
}

/// Desired-properties events: writes the desired version to `*version` and returns true, or
/// returns false (no version, another kind, NULL arguments).
#[no_mangle]
pub extern "C" fn em_event_desired_version(event: *const em_event, version: *mut i64) -> bool {
    with_event(event, false, |d| match d {
        Data::Desired {
            version: Some(v), ..
        } if !version.is_null() => {
            // SAFETY: checked non-NULL.
            unsafe { *version = *v };
            true
        }
        _ => false,
    })
}

/// Method requests: the method name, else NULL.
#[no_mangle]
pub extern "C" fn em_event_method_name(event: *const em_event) -> *const c_char {
    with_event(event, ptr::null(), |d| match d {
        Data::Method { name, .. } => name.as_ptr(),
        _ => ptr::null(),
    })
}

/// Method requests: the payload as JSON (`null` when there was none), else NULL.
#[no_mangle]
pub extern "C" fn em_event_method_payload_json(event: *const em_event) -> *const c_char {
    with_event(event, ptr::null(), |d| match d {
        Data::Method { payload, .. } => payload.as_ptr(),
        _ => ptr::null(),
    })
}

/// Method requests: the request id to pass to `em_client_respond_method`, else NULL.
#[no_mangle]
pub extern "C" fn em_event_method_request_id(event: *const em_event) -> *const c_char {
    with_event(event, ptr::null(), |d| match d {
        Data::Method { request_id, .. } => request_id.as_ptr(),
        _ => ptr::null(),
    })
}

/// Connection-status events: the new status, else `EM_STATUS_UNKNOWN`.
#[no_mangle]
pub extern "C" fn em_event_connection_status(event: *const em_event) -> em_connection_status {
    with_event(
        event,
        em_connection_status::EM_STATUS_UNKNOWN,
        |d| match d {
            Data::Status { status, .. } => status_code(*status),
            _ => em_connection_status::EM_STATUS_UNKNOWN,
        },
    )
}

/// Connection-status events: the reason (`EM_REASON_CONNECTION_OK` for other kinds).
#[no_mangle]
pub extern "C" fn em_event_status_reason(event: *const em_event) -> em_status_reason {
    with_event(
        event,
        em_status_reason::EM_REASON_CONNECTION_OK,
        |d| match d {
            Data::Status { reason, .. } => reason_code(*reason),
            _ => em_status_reason::EM_REASON_CONNECTION_OK,
        },
    )
}

/// `EM_STATUS_DISCONNECTED_RETRYING` events: the reconnect attempt (from 1), else 0.
#[no_mangle]
pub extern "C" fn em_event_retry_attempt(event: *const em_event) -> u32 {
    with_event(event, 0, |d| match d {
        Data::Status {
            status: ConnectionStatus::DisconnectedRetrying { attempt, .. },
            ..
        } => *attempt,
        _ => 0,
    })
}

/// `EM_STATUS_DISCONNECTED_RETRYING` events: milliseconds until the next attempt, else 0.
#[no_mangle]
pub extern "C" fn em_event_retry_delay_ms(event: *const em_event) -> u64 {
    with_event(event, 0, |d| match d {
        Data::Status {
            status: ConnectionStatus::DisconnectedRetrying { next_delay, .. },
            ..
        } => u64::try_from(next_delay.as_millis()).unwrap_or(u64::MAX),
        _ => 0,
    })
}

/// Topic messages (broker mode): the topic, else NULL.
#[no_mangle]
pub extern "C" fn em_event_topic(event: *const em_event) -> *const c_char {
    with_event(event, ptr::null(), |d| match d {
        Data::Topic { topic, .. } => topic.as_ptr(),
        _ => ptr::null(),
    })
}

/// Topic messages: the payload (`*data` borrowed, `*len`) and QoS (`*qos`, may be NULL).
/// `EM_ERROR_INVALID_ARGUMENT` for other kinds.
#[no_mangle]
pub extern "C" fn em_event_topic_payload(
    event: *const em_event,
    data: *mut *const u8,
    len: *mut usize,
    qos: *mut u8,
) -> *mut em_error {
    ffi_call("em_event_topic_payload", || {
        check_out(data, "data")?;
        check_out(len, "len")?;
        // SAFETY: header contract.
        let e = unsafe { ev_ref(event) }?;
        let Data::Topic {
            payload, qos: q, ..
        } = &e.data
        else {
            return Err(Error::invalid("the event is not a topic message"));
        };
        unsafe {
            *data = payload.as_ptr();
            *len = payload.len();
            if !qos.is_null() {
                *qos = *q;
            }
        }
        Ok(())
    })
}

/// Frees an event (and the message it holds). NULL is ignored. An input message freed without
/// `em_event_ack` stays with the hub, which redelivers it.
#[no_mangle]
pub extern "C" fn em_event_free(event: *mut em_event) {
    ffi_value((), || {
        // SAFETY: NULL or a live event owned by the caller.
        if unsafe { ev_ref(event) }.is_ok() {
            let mut b = unsafe { Box::from_raw(event) };
            b.magic = 0;
            drop(b);
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::CStr;

    #[test]
    fn method_event_accessors() {
        let ev = em_event::into_raw(Event::MethodRequest {
            request_id: "7".into(),
            name: "reset".into(),
            payload: serde_json::json!({"a": 1}),
        });
        assert_eq!(em_event_kind(ev), em_event_type::EM_EVENT_METHOD_REQUEST);
        let s = |p: *const c_char| unsafe { CStr::from_ptr(p) }.to_str().unwrap().to_string();
        assert_eq!(s(em_event_method_name(ev)), "reset");
        assert_eq!(s(em_event_method_request_id(ev)), "7");
        assert_eq!(s(em_event_method_payload_json(ev)), r#"{"a":1}"#);
        assert!(em_event_input_name(ev).is_null());
        assert!(em_event_message(ev).is_null());
        let mut v = 0;
        assert!(!em_event_desired_version(ev, &mut v));
        em_event_free(ev);
        assert_eq!(em_event_kind(ptr::null()), em_event_type::EM_EVENT_NONE);
    }

    #[test]
    fn status_event_accessors() {
        let ev = em_event::into_raw(Event::ConnectionStatus {
            status: ConnectionStatus::DisconnectedRetrying {
                attempt: 3,
                next_delay: std::time::Duration::from_millis(250),
            },
            reason: StatusReason::NoNetwork,
        });
        assert_eq!(
            em_event_connection_status(ev),
            em_connection_status::EM_STATUS_DISCONNECTED_RETRYING
        );
        assert_eq!(
            em_event_status_reason(ev),
            em_status_reason::EM_REASON_NO_NETWORK
        );
        assert_eq!(em_event_retry_attempt(ev), 3);
        assert_eq!(em_event_retry_delay_ms(ev), 250);
        em_event_free(ev);
    }
}
