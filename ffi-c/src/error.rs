//! `em_error`: what every fallible function returns (NULL = success).

use std::ffi::{c_char, CString};
use std::ptr;

use edgemodule::{Error, ErrorKind};

use crate::util::{c_string, ffi_value};

/// Stable error codes, identical in every binding (the core's `ErrorKind` codes).
#[allow(non_camel_case_types, clippy::upper_case_acronyms)]
#[repr(i32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum em_error_code {
    /// Not an error: what `em_error_kind(NULL)` returns.
    EM_ERROR_NONE = 0,
    /// An argument was NULL, malformed, not UTF-8, or a handle is unknown or already freed.
    EM_ERROR_INVALID_ARGUMENT = 1,
    /// Environment variables, a connection string or options are missing or malformed.
    EM_ERROR_CONFIGURATION = 2,
    /// The network connection failed or was lost.
    EM_ERROR_CONNECTION = 3,
    /// The hub refused the credentials.
    EM_ERROR_AUTHENTICATION = 4,
    /// The operation did not complete in time.
    EM_ERROR_TIMEOUT = 5,
    /// The message is larger than the hub accepts (256 KB).
    EM_ERROR_MESSAGE_TOO_LARGE = 6,
    /// The offline queue is full.
    EM_ERROR_QUEUE_FULL = 7,
    /// The client was closed (or is being freed).
    EM_ERROR_CLOSED = 8,
    /// The peer violated the protocol.
    EM_ERROR_PROTOCOL = 9,
    /// The hub answered with an error status (`em_error_status`).
    EM_ERROR_HUB = 10,
    /// The Workload API failed (`em_error_status`).
    EM_ERROR_WORKLOAD = 11,
    /// TLS setup or handshake failed.
    EM_ERROR_TLS = 12,
    /// A local I/O error.
    EM_ERROR_IO = 13,
    /// A bug inside the library, including a caught panic.
    EM_ERROR_INTERNAL = 14,
    /// The hub throttled the request; retry later.
    EM_ERROR_THROTTLED = 15,
    /// The method target was not found or not connected.
    EM_ERROR_NOT_FOUND = 16,
}

impl em_error_code {
    pub(crate) fn from_core(k: ErrorKind) -> em_error_code {
        use em_error_code::*;
        match k {
            ErrorKind::InvalidArgument => EM_ERROR_INVALID_ARGUMENT,
            ErrorKind::Configuration => EM_ERROR_CONFIGURATION,
            ErrorKind::Connection => EM_ERROR_CONNECTION,
            ErrorKind::Authentication => EM_ERROR_AUTHENTICATION,
            ErrorKind::Timeout => EM_ERROR_TIMEOUT,
            ErrorKind::MessageTooLarge => EM_ERROR_MESSAGE_TOO_LARGE,
            ErrorKind::QueueFull => EM_ERROR_QUEUE_FULL,
            ErrorKind::Closed => EM_ERROR_CLOSED,
            ErrorKind::Protocol => EM_ERROR_PROTOCOL,
            ErrorKind::HubError => EM_ERROR_HUB,
            ErrorKind::Workload => EM_ERROR_WORKLOAD,
            ErrorKind::Tls => EM_ERROR_TLS,
            ErrorKind::Io => EM_ERROR_IO,
            ErrorKind::Internal => EM_ERROR_INTERNAL,
            ErrorKind::Throttled => EM_ERROR_THROTTLED,
            ErrorKind::NotFound => EM_ERROR_NOT_FOUND,
        }
    }
}

/// An error: kind, message and (for hub/Workload answers) a status. Opaque; free with
/// `em_error_free`.
#[allow(non_camel_case_types)]
pub struct em_error {
    kind: ErrorKind,
    status: Option<u16>,
    message: CString,
}

impl em_error {
    pub(crate) fn into_raw(e: Error) -> *mut em_error {
        let text = e.message.clone();
        Box::into_raw(Box::new(em_error {
            kind: e.kind,
            status: e.status,
            message: c_string(&text),
        }))
    }
}

/// The error's stable kind; `EM_ERROR_NONE` for NULL (a success).
#[no_mangle]
pub extern "C" fn em_error_kind(error: *const em_error) -> em_error_code {
    ffi_value(em_error_code::EM_ERROR_INTERNAL, || {
        // SAFETY: NULL or a live error from this library (header contract).
        match unsafe { error.as_ref() } {
            None => em_error_code::EM_ERROR_NONE,
            Some(e) => em_error_code::from_core(e.kind),
        }
    })
}

/// The error's message (UTF-8, never containing keys or tokens). Borrowed: valid until
/// `em_error_free(error)`. An empty string for NULL.
#[no_mangle]
pub extern "C" fn em_error_message(error: *const em_error) -> *const c_char {
    ffi_value(c"".as_ptr(), || {
        // SAFETY: as em_error_kind.
        match unsafe { error.as_ref() } {
            None => c"".as_ptr(),
            Some(e) => e.message.as_ptr(),
        }
    })
}

/// The HTTP/MQTT status the hub or Workload API answered with, or 0 if none (or NULL).
#[no_mangle]
pub extern "C" fn em_error_status(error: *const em_error) -> i32 {
    ffi_value(0, || {
        // SAFETY: as em_error_kind.
        unsafe { error.as_ref() }
            .and_then(|e| e.status)
            .map_or(0, i32::from)
    })
}

/// The stable name of a kind (`"Timeout"`), a static string; `"Unknown"` for other values.
#[no_mangle]
pub extern "C" fn em_error_kind_name(kind: i32) -> *const c_char {
    match kind {
        0 => c"None".as_ptr(),
        1 => c"InvalidArgument".as_ptr(),
        2 => c"Configuration".as_ptr(),
        3 => c"Connection".as_ptr(),
        4 => c"Authentication".as_ptr(),
        5 => c"Timeout".as_ptr(),
        6 => c"MessageTooLarge".as_ptr(),
        7 => c"QueueFull".as_ptr(),
        8 => c"Closed".as_ptr(),
        9 => c"Protocol".as_ptr(),
        10 => c"HubError".as_ptr(),
        11 => c"Workload".as_ptr(),
        12 => c"Tls".as_ptr(),
        13 => c"Io".as_ptr(),
        14 => c"Internal".as_ptr(),
        15 => c"Throttled".as_ptr(),
        16 => c"NotFound".as_ptr(),
        _ => c"Unknown".as_ptr(),
    }
}

/// Frees an error. NULL is ignored.
#[no_mangle]
pub extern "C" fn em_error_free(error: *mut em_error) {
    ffi_value((), || {
        if !error.is_null() {
            // SAFETY: an error this library returned, freed once (header contract).
            drop(unsafe { Box::from_raw(error) });
        }
    })
}

/// An owned copy of `error` (NULL for NULL), for keeping an error past a callback.
#[no_mangle]
pub extern "C" fn em_error_clone(error: *const em_error) -> *mut em_error {
    ffi_value(ptr::null_mut(), || {
        // SAFETY: as em_error_kind.
        match unsafe { error.as_ref() } {
            None => ptr::null_mut(),
            Some(e) => Box::into_raw(Box::new(em_error {
                kind: e.kind,
                status: e.status,
                message: e.message.clone(),
            })),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::CStr;

    #[test]
    fn kinds_match_core_codes_and_names() {
        for k in ErrorKind::ALL {
            let c = em_error_code::from_core(k);
            assert_eq!(c as i32, k.code());
            let name = unsafe { CStr::from_ptr(em_error_kind_name(k.code())) };
            assert_eq!(name.to_str().unwrap(), k.name());
        }
        assert_eq!(em_error_kind(ptr::null()), em_error_code::EM_ERROR_NONE);
    }

    #[test]
    fn error_round_trip() {
        let e = em_error::into_raw(Error::with_status(ErrorKind::HubError, 429, "slow down"));
        assert_eq!(em_error_kind(e), em_error_code::EM_ERROR_HUB);
        assert_eq!(em_error_status(e), 429);
        let c = em_error_clone(e);
        em_error_free(e);
        let msg = unsafe { CStr::from_ptr(em_error_message(c)) };
        assert_eq!(msg.to_str().unwrap(), "slow down");
        em_error_free(c);
    }
}
