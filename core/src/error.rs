//! One error type for the whole crate. `ErrorKind` codes are stable: every binding (C enum,
//! Python exception subclasses, JS `err.code`, Java/C# `kind`) uses the same numbers.

use std::fmt;

/// Stable error categories. Never renumber: bindings hard-code these values.
#[repr(i32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum ErrorKind {
    /// An argument was malformed (topic, property bag, JSON, name, size).
    InvalidArgument = 1,
    /// Environment variables or a connection string are missing or malformed.
    Configuration = 2,
    /// The network connection failed or was lost.
    Connection = 3,
    /// The hub refused our credentials (bad key, expired token, not authorized).
    Authentication = 4,
    /// An operation did not complete in time.
    Timeout = 5,
    /// A message is larger than the hub accepts (256 KB).
    MessageTooLarge = 6,
    /// The offline queue is full.
    QueueFull = 7,
    /// The client was closed.
    Closed = 8,
    /// The peer violated the protocol or sent something we cannot parse.
    Protocol = 9,
    /// The hub answered a request with an error status (see `Error::status`).
    HubError = 10,
    /// The Workload API failed (see `Error::status` for its HTTP status).
    Workload = 11,
    /// TLS setup or handshake failed (bad trust bundle, hostname mismatch).
    Tls = 12,
    /// A local I/O error (files, sockets).
    Io = 13,
    /// A bug or an unexpected state inside the library (including a caught panic).
    Internal = 14,
    /// The hub throttled the request (HTTP/MQTT status 429); retryable.
    Throttled = 15,
    /// The target of a method invocation was not found or not connected (404).
    NotFound = 16,
}

impl ErrorKind {
    /// Stable numeric code.
    pub fn code(self) -> i32 {
        self as i32
    }

    /// Short stable name (`"Timeout"`), used by bindings for class names and messages.
    pub fn name(self) -> &'static str {
        match self {
            ErrorKind::InvalidArgument => "InvalidArgument",
            ErrorKind::Configuration => "Configuration",
            ErrorKind::Connection => "Connection",
            ErrorKind::Authentication => "Authentication",
            ErrorKind::Timeout => "Timeout",
            ErrorKind::MessageTooLarge => "MessageTooLarge",
            ErrorKind::QueueFull => "QueueFull",
            ErrorKind::Closed => "Closed",
            ErrorKind::Protocol => "Protocol",
            ErrorKind::HubError => "HubError",
            ErrorKind::Workload => "Workload",
            ErrorKind::Tls => "Tls",
            ErrorKind::Io => "Io",
            ErrorKind::Internal => "Internal",
            ErrorKind::Throttled => "Throttled",
            ErrorKind::NotFound => "NotFound",
        }
    }

    /// Every kind, in code order (for bindings that generate their error classes).
    pub const ALL: [ErrorKind; 16] = [
        ErrorKind::InvalidArgument,
        ErrorKind::Configuration,
        ErrorKind::Connection,
        ErrorKind::Authentication,
        ErrorKind::Timeout,
        ErrorKind::MessageTooLarge,
        ErrorKind::QueueFull,
        ErrorKind::Closed,
        ErrorKind::Protocol,
        ErrorKind::HubError,
        ErrorKind::Workload,
        ErrorKind::Tls,
        ErrorKind::Io,
        ErrorKind::Internal,
        ErrorKind::Throttled,
        ErrorKind::NotFound,
    ];

    /// The kind for a stable code, if any.
    pub fn from_code(code: i32) -> Option<ErrorKind> {
        ErrorKind::ALL.iter().copied().find(|k| k.code() == code)
    }
}

/// An error with a kind, a human message (never containing keys or tokens) and, for hub or
/// Workload API answers, the status the server gave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    pub kind: ErrorKind,
    pub message: String,
    pub status: Option<u16>,
}

impl Error {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Error {
            kind,
            message: message.into(),
            status: None,
        }
    }

    pub fn with_status(kind: ErrorKind, status: u16, message: impl Into<String>) -> Self {
        Error {
            kind,
            message: message.into(),
            status: Some(status),
        }
    }

    pub fn invalid(message: impl Into<String>) -> Self {
        Error::new(ErrorKind::InvalidArgument, message)
    }

    pub fn config(message: impl Into<String>) -> Self {
        Error::new(ErrorKind::Configuration, message)
    }

    pub fn closed() -> Self {
        Error::new(ErrorKind::Closed, "the client is closed")
    }

    pub fn timeout(what: impl fmt::Display) -> Self {
        Error::new(ErrorKind::Timeout, format!("{what} timed out"))
    }

    /// Whether retrying the same operation later may succeed (throttling, 5xx, timeouts,
    /// connection loss).
    pub fn is_retryable(&self) -> bool {
        match self.kind {
            ErrorKind::Throttled | ErrorKind::Timeout | ErrorKind::Connection => true,
            ErrorKind::HubError | ErrorKind::Workload => {
                matches!(self.status, Some(s) if s == 429 || s >= 500)
            }
            _ => false,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.status {
            Some(s) => write!(f, "{} (status {}): {}", self.kind.name(), s, self.message),
            None => write!(f, "{}: {}", self.kind.name(), self.message),
        }
    }
}

impl std::error::Error for Error {}

impl From<std::io::Error> for Error {
    fn from(e: std::io::Error) -> Self {
        Error::new(ErrorKind::Io, e.to_string())
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_stable_and_round_trip() {
        assert_eq!(ErrorKind::InvalidArgument.code(), 1);
        assert_eq!(ErrorKind::NotFound.code(), 16);
        for k in ErrorKind::ALL {
            assert_eq!(ErrorKind::from_code(k.code()), Some(k));
        }
        assert_eq!(ErrorKind::from_code(0), None);
    }

    #[test]
    fn retryable_statuses() {
        assert!(Error::with_status(ErrorKind::HubError, 429, "x").is_retryable());
        assert!(Error::with_status(ErrorKind::HubError, 503, "x").is_retryable());
        assert!(!Error::with_status(ErrorKind::HubError, 400, "x").is_retryable());
        assert!(!Error::closed().is_retryable());
    }
}
