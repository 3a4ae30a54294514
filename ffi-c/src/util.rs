//! The one wrapper every entry point goes through (panic -> `em_error`), argument checks
//! (NULL, UTF-8) and the conversions shared by the modules. Nothing here is `extern "C"`.

use std::cell::Cell;
use std::ffi::{c_char, CStr, CString};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::ptr;
use std::time::Duration;

use edgemodule::{Error, ErrorKind, Result};

use crate::error::em_error;

/// Runs the body of a fallible entry point: `Ok` becomes NULL, `Err` and panics an owned error.
pub(crate) fn ffi_call(name: &'static str, f: impl FnOnce() -> Result<()>) -> *mut em_error {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(())) => ptr::null_mut(),
        Ok(Err(e)) => em_error::into_raw(e),
        Err(payload) => em_error::into_raw(panic_error(name, payload)),
    }
}

/// Runs the body of an infallible accessor: a panic gives `fallback`.
pub(crate) fn ffi_value<T>(fallback: T, f: impl FnOnce() -> T) -> T {
    catch_unwind(AssertUnwindSafe(f)).unwrap_or(fallback)
}

pub(crate) fn panic_error(name: &str, payload: Box<dyn std::any::Any + Send>) -> Error {
    let what = payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".to_string());
    Error::new(
        ErrorKind::Internal,
        format!("{name}: internal panic: {what}"),
    )
}

pub(crate) fn null_arg(name: &str) -> Error {
    Error::invalid(format!("argument `{name}` is NULL"))
}

/// A required, borrowed UTF-8 string.
///
/// # Safety
/// `p` is NULL or points to a NUL-terminated string valid for the call.
pub(crate) unsafe fn arg_str<'a>(p: *const c_char, name: &str) -> Result<&'a str> {
    if p.is_null() {
        return Err(null_arg(name));
    }
    CStr::from_ptr(p)
        .to_str()
        .map_err(|_| Error::invalid(format!("argument `{name}` is not valid UTF-8")))
}

/// An optional UTF-8 string (NULL = absent).
///
/// # Safety
/// As [`arg_str`].
pub(crate) unsafe fn opt_str<'a>(p: *const c_char, name: &str) -> Result<Option<&'a str>> {
    if p.is_null() {
        Ok(None)
    } else {
        arg_str(p, name).map(Some)
    }
}

/// A borrowed byte buffer; NULL is allowed only with `len == 0`.
///
/// # Safety
/// `p` is NULL or points to `len` readable bytes.
pub(crate) unsafe fn arg_bytes<'a>(p: *const u8, len: usize, name: &str) -> Result<&'a [u8]> {
    if p.is_null() {
        if len == 0 {
            return Ok(&[]);
        }
        return Err(null_arg(name));
    }
    Ok(std::slice::from_raw_parts(p, len))
}

/// A JSON argument: NULL means JSON `null`.
///
/// # Safety
/// As [`arg_str`].
pub(crate) unsafe fn arg_json(p: *const c_char, name: &str) -> Result<serde_json::Value> {
    match opt_str(p, name)? {
        None => Ok(serde_json::Value::Null),
        Some(s) => serde_json::from_str(s)
            .map_err(|e| Error::invalid(format!("argument `{name}` is not valid JSON: {e}"))),
    }
}

/// Checks an out-parameter is non-NULL (before doing any work).
pub(crate) fn check_out<T>(p: *mut T, name: &str) -> Result<()> {
    if p.is_null() {
        Err(null_arg(name))
    } else {
        Ok(())
    }
}

/// `EM_TIMEOUT_INFINITE` (`UINT32_MAX`) means no deadline.
pub(crate) fn timeout(ms: u32) -> Option<Duration> {
    if ms == u32::MAX {
        None
    } else {
        Some(Duration::from_millis(u64::from(ms)))
    }
}

/// A C string copy of `s`; an interior NUL (possible in decoded wire values) cuts it there.
pub(crate) fn c_string(s: &str) -> CString {
    match CString::new(s) {
        Ok(c) => c,
        Err(e) => {
            let at = e.nul_position();
            CString::new(&s.as_bytes()[..at]).unwrap_or_default()
        }
    }
}

/// An owned C string for the caller (freed with `em_string_free`).
pub(crate) fn owned_c_string(s: &str) -> *mut c_char {
    c_string(s).into_raw()
}

pub(crate) fn opt_ptr(c: &Option<CString>) -> *const c_char {
    c.as_ref().map_or(ptr::null(), |c| c.as_ptr())
}

/// A raw pointer that may cross threads: `user_data` and C callbacks' context are the
/// application's business (the header says the callback may run on any library thread).
#[derive(Clone, Copy)]
pub(crate) struct SendPtr(pub *mut std::ffi::c_void);
// SAFETY: the pointer is only handed back to the application's own callback.
unsafe impl Send for SendPtr {}
unsafe impl Sync for SendPtr {}

thread_local! {
    static IN_CALLBACK: Cell<u32> = const { Cell::new(0) };
}

/// Marks the current thread as running an application callback (for the duration of `f`).
pub(crate) fn in_callback<R>(f: impl FnOnce() -> R) -> R {
    struct Reset;
    impl Drop for Reset {
        fn drop(&mut self) {
            IN_CALLBACK.with(|c| c.set(c.get().saturating_sub(1)));
        }
    }
    IN_CALLBACK.with(|c| c.set(c.get() + 1));
    let _reset = Reset;
    f()
}

/// Whether this thread is one of the library's own (a callback or the runtime): blocking calls
/// there would stall the I/O they wait for.
pub(crate) fn on_library_thread() -> bool {
    IN_CALLBACK.with(|c| c.get() > 0) || tokio::runtime::Handle::try_current().is_ok()
}

pub(crate) fn refuse_on_library_thread(what: &str) -> Result<()> {
    if on_library_thread() {
        return Err(Error::invalid(format!(
            "{what} blocks and was called from a library callback thread; use the _async variant"
        )));
    }
    Ok(())
}
