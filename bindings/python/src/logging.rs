//! Core `tracing` records go to Python's `logging` (logger `edgemodule.<module path>`), through
//! `edgemodule._logging._forward(level, target, message)`.
//!
//! Rules (aws-crt-python's lesson): never take the GIL once the interpreter is finalizing (an
//! `atexit` hook sets a flag; `Python::try_attach` covers the rest), and install our subscriber
//! only when no global one exists. Only records at or above the Python logger's level cross
//! (the level is cached in an atomic, refreshed by the package when clients are made), so the
//! hot path costs one atomic load.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::OnceLock;

use pyo3::prelude::*;
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Metadata, Subscriber};
use tracing_subscriber::layer::{Context, Layer};
use tracing_subscriber::prelude::*;

/// Python logging levels, divided by 5 to fit: 1 TRACE(5), 2 DEBUG(10), 4 INFO(20),
/// 6 WARNING(30), 8 ERROR(40); 255 = off.
static MIN_LEVEL: AtomicU8 = AtomicU8::new(6);
static FINALIZING: AtomicBool = AtomicBool::new(false);
static FORWARD: OnceLock<Py<PyAny>> = OnceLock::new();
static INSTALLED: OnceLock<bool> = OnceLock::new();

fn py_level(l: &Level) -> u8 {
    match *l {
        Level::TRACE => 5,
        Level::DEBUG => 10,
        Level::INFO => 20,
        Level::WARN => 30,
        Level::ERROR => 40,
    }
}

pub fn finalizing() -> bool {
    FINALIZING.load(Ordering::Acquire)
}

fn wanted(meta: &Metadata<'_>) -> bool {
    !finalizing() && py_level(meta.level()) / 5 >= MIN_LEVEL.load(Ordering::Relaxed)
}

struct PyLogLayer;

struct Text(String);

impl Visit for Text {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            if self.0.is_empty() {
                let _ = write!(self.0, "{value:?}");
            } else {
                self.0 = format!("{value:?} {}", self.0);
            }
        } else {
            let sep = if self.0.is_empty() { "" } else { " " };
            let _ = write!(self.0, "{sep}{}={value:?}", field.name());
        }
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.record_debug(field, &format_args!("{value}"));
        } else {
            let sep = if self.0.is_empty() { "" } else { " " };
            let _ = write!(self.0, "{sep}{}={value:?}", field.name());
        }
    }
}

impl<S: Subscriber> Layer<S> for PyLogLayer {
    fn register_callsite(&self, _: &'static Metadata<'static>) -> tracing::subscriber::Interest {
        // The level can change at run time: ask `enabled` every time.
        tracing::subscriber::Interest::sometimes()
    }

    fn enabled(&self, meta: &Metadata<'_>, _: Context<'_, S>) -> bool {
        wanted(meta)
    }

    fn on_event(&self, event: &Event<'_>, _: Context<'_, S>) {
        let meta = event.metadata();
        if !wanted(meta) {
            return;
        }
        let Some(forward) = FORWARD.get() else {
            return;
        };
        let mut text = Text(String::new());
        event.record(&mut text);
        let level = py_level(meta.level());
        let target = meta.target();
        let _ = Python::try_attach(|py| {
            if let Err(e) = forward.call1(py, (level, target, text.0)) {
                // A broken handler must not take the client down.
                e.print(py);
            }
        });
    }
}

/// Installs the layer as the global subscriber once, unless someone else set one.
pub fn install() {
    INSTALLED.get_or_init(|| {
        if tracing::dispatcher::has_been_set() {
            return false;
        }
        tracing_subscriber::registry()
            .with(PyLogLayer)
            .try_init()
            .is_ok()
    });
}

/// `_native._init_logging(forward, level)`: the Python forwarder and the current level.
#[pyfunction]
pub fn _init_logging(forward: Py<PyAny>, level: i32) {
    let _ = FORWARD.set(forward);
    _set_log_level(level);
    install();
}

/// The effective level of the `edgemodule` logger (Python numbers; 0 = everything).
#[pyfunction]
pub fn _set_log_level(level: i32) {
    let l = if level <= 0 {
        1
    } else {
        (level.min(250) / 5).max(1) as u8
    };
    MIN_LEVEL.store(l, Ordering::Relaxed);
}

/// Called from `atexit`: from now on no core thread may take the GIL.
#[pyfunction]
pub fn _finalizing() {
    FINALIZING.store(true, Ordering::Release);
}
