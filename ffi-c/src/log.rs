//! The log callback: the core's `tracing` events, routed to one C function.

use std::ffi::{c_char, c_void};
use std::fmt::Write as _;
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::{OnceLock, RwLock};

use edgemodule::{Error, ErrorKind};
use tracing::field::{Field, Visit};
use tracing::span;
use tracing::subscriber::Interest;
use tracing::{Event, Level, Metadata, Subscriber};

use crate::error::em_error;
use crate::util::{c_string, ffi_call, in_callback, SendPtr};

/// Log levels, most severe first.
#[allow(non_camel_case_types, clippy::upper_case_acronyms)]
#[repr(i32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum em_log_level {
    /// Logging off (as `max_level` of `em_set_log_callback`).
    EM_LOG_OFF = 0,
    EM_LOG_ERROR = 1,
    EM_LOG_WARN = 2,
    EM_LOG_INFO = 3,
    EM_LOG_DEBUG = 4,
    EM_LOG_TRACE = 5,
}

/// Receives one log record: `level` is an `em_log_level`, `target` the Rust module that logged
/// (e.g. "edgemodule::session"), `message` the text with its fields (`key=value`). Both strings
/// are borrowed for the call. Called from any thread (library threads and the caller's own);
/// must not block for long and must not call `em_set_log_callback`. Records logged while
/// the callback runs on the same thread are dropped (no recursion).
#[allow(non_camel_case_types)]
pub type em_log_callback = Option<
    unsafe extern "C" fn(
        user_data: *mut c_void,
        level: i32,
        target: *const c_char,
        message: *const c_char,
    ),
>;

struct Sink {
    cb: unsafe extern "C" fn(*mut c_void, i32, *const c_char, *const c_char),
    user_data: SendPtr,
}

static SINK: RwLock<Option<Sink>> = RwLock::new(None);
static MAX_LEVEL: AtomicI32 = AtomicI32::new(0);
static INSTALLED: OnceLock<Result<(), String>> = OnceLock::new();

fn level_code(l: &Level) -> i32 {
    match *l {
        Level::ERROR => 1,
        Level::WARN => 2,
        Level::INFO => 3,
        Level::DEBUG => 4,
        Level::TRACE => 5,
    }
}

thread_local! {
    static LOGGING: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// A minimal subscriber (events only, no spans): tracing-subscriber would add its registry and
/// regex engine to the library for nothing.
struct CallbackSubscriber;

#[derive(Default)]
struct Text {
    message: String,
    fields: String,
}

impl Visit for Text {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            let _ = write!(self.message, "{value:?}");
        } else {
            let _ = write!(self.fields, " {}={value:?}", field.name());
        }
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.message.push_str(value);
        } else {
            let _ = write!(self.fields, " {}={value:?}", field.name());
        }
    }
}

impl Subscriber for CallbackSubscriber {
    fn register_callsite(&self, _: &'static Metadata<'static>) -> Interest {
        // The level can change at any time: ask `enabled` every time (one atomic load).
        Interest::sometimes()
    }

    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        metadata.is_event() && level_code(metadata.level()) <= MAX_LEVEL.load(Ordering::Relaxed)
    }

    // Spans are never enabled, so these are not called with real spans.
    fn new_span(&self, _: &span::Attributes<'_>) -> span::Id {
        span::Id::from_u64(1)
    }
    fn record(&self, _: &span::Id, _: &span::Record<'_>) {}
    fn record_follows_from(&self, _: &span::Id, _: &span::Id) {}
    fn enter(&self, _: &span::Id) {}
    fn exit(&self, _: &span::Id) {}

    fn event(&self, event: &Event<'_>) {
        if LOGGING.with(|l| l.replace(true)) {
            return; // logged from inside the callback: drop it
        }
        struct Reset;
        impl Drop for Reset {
            fn drop(&mut self) {
                LOGGING.with(|l| l.set(false));
            }
        }
        let _reset = Reset;
        let guard = SINK.read().unwrap_or_else(|p| p.into_inner());
        let Some(sink) = guard.as_ref() else { return };
        let mut text = Text::default();
        event.record(&mut text);
        let meta = event.metadata();
        let message = c_string(&(text.message + &text.fields));
        let target = c_string(meta.target());
        let level = level_code(meta.level());
        // SAFETY: the application registered this function for exactly this use.
        in_callback(|| unsafe {
            (sink.cb)(sink.user_data.0, level, target.as_ptr(), message.as_ptr())
        });
    }
}

fn install() -> Result<(), Error> {
    INSTALLED
        .get_or_init(|| {
            tracing::subscriber::set_global_default(CallbackSubscriber).map_err(|e| e.to_string())
        })
        .clone()
        .map_err(|e| {
            Error::new(
                ErrorKind::Internal,
                format!("another tracing subscriber is already installed: {e}"),
            )
        })
}

/// Routes the library's log records up to `max_level` (an `em_log_level`) to `callback`.
/// `callback` NULL (or `EM_LOG_OFF`) turns logging off. Replacing or removing the callback
/// waits for calls of the previous one in progress to return, so `user_data` may be freed
/// afterwards. Process-wide; call it before creating clients to see their first records.
#[no_mangle]
pub extern "C" fn em_set_log_callback(
    callback: em_log_callback,
    user_data: *mut c_void,
    max_level: i32,
) -> *mut em_error {
    ffi_call("em_set_log_callback", || {
        if !(0..=5).contains(&max_level) {
            return Err(Error::invalid(format!(
                "max_level {max_level} is not an em_log_level (0-5)"
            )));
        }
        let sink = callback.map(|cb| Sink {
            cb,
            user_data: SendPtr(user_data),
        });
        if sink.is_some() {
            install()?;
        }
        let level = if sink.is_some() { max_level } else { 0 };
        MAX_LEVEL.store(0, Ordering::SeqCst);
        *SINK.write().unwrap_or_else(|p| p.into_inner()) = sink;
        MAX_LEVEL.store(level, Ordering::SeqCst);
        Ok(())
    })
}

/// Not part of the log API: lets tests produce a record at `level` with `message`.
pub(crate) fn emit_test_record(level: i32, message: &str) {
    match level {
        1 => tracing::error!(target: "edgemodule_ffi", "{message}"),
        2 => tracing::warn!(target: "edgemodule_ffi", "{message}"),
        3 => tracing::info!(target: "edgemodule_ffi", "{message}"),
        4 => tracing::debug!(target: "edgemodule_ffi", "{message}"),
        _ => tracing::trace!(target: "edgemodule_ffi", "{message}"),
    }
}
