//! libedgemodule: the C ABI of the edgemodule core (`include/edgemodule.h`, generated from
//! this crate by `cargo xtask codegen`). Also what csbindgen reads for C#: every `extern "C"`
//! function is written out literally, one per entry point, no macros.
//!
//! Conventions (see the header preamble for the full contract):
//! - every fallible function returns `em_error*` (NULL = success) and writes its
//!   out-parameters only on success;
//! - inputs are borrowed for the call and copied; outputs are owned and have a `_free`;
//! - every entry point checks its pointers and catches panics ([`util::ffi_call`]);
//! - `_async` functions call their completion exactly once, from a library thread, and never
//!   after `em_client_free` returned.

// Entry points take raw pointers from C by design: they are checked (NULL, UTF-8, registry,
// magic) before use, and their contract is the header's, not Rust's `unsafe fn` (which C
// callers cannot see).
#![allow(clippy::missing_safety_doc, clippy::not_unsafe_ptr_arg_deref)]

mod client;
mod error;
mod event;
mod log;
mod message;
mod util;

use std::ffi::c_char;

pub use client::*;
pub use error::*;
pub use event::*;
pub use log::*;
pub use message::*;

use edgemodule::Error;
use util::ffi_call;

/// The library version ("0.1.0"), a static string.
#[no_mangle]
pub extern "C" fn em_version() -> *const c_char {
    concat!(env!("CARGO_PKG_VERSION"), "\0").as_ptr().cast()
}

/// Frees a string the library returned as owned (`em_client_get_twin`, method payloads).
/// NULL is ignored.
#[no_mangle]
pub extern "C" fn em_string_free(s: *mut c_char) {
    util::ffi_value((), || {
        if !s.is_null() {
            // SAFETY: a string this library allocated with CString::into_raw, freed once.
            drop(unsafe { std::ffi::CString::from_raw(s) });
        }
    })
}

/// For tests of the panic barrier: panics inside the library when `do_panic` is true (the
/// result is an `EM_ERROR_INTERNAL` error, never an abort), else returns an
/// `EM_ERROR_INVALID_ARGUMENT` error whose message is `message` (NULL = NULL argument error).
#[no_mangle]
pub extern "C" fn em_test_fail(do_panic: bool, message: *const c_char) -> *mut em_error {
    ffi_call("em_test_fail", || {
        if do_panic {
            panic!("em_test_fail was asked to panic");
        }
        // SAFETY: header contract.
        let m = unsafe { util::arg_str(message, "message") }?;
        Err(Error::invalid(m))
    })
}

/// For tests of the log callback: logs `message` at `level` (an `em_log_level`) through the
/// library's logger.
#[no_mangle]
pub extern "C" fn em_test_log(level: i32, message: *const c_char) -> *mut em_error {
    ffi_call("em_test_log", || {
        // SAFETY: header contract.
        let m = unsafe { util::arg_str(message, "message") }?;
        log::emit_test_record(level, m);
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn panic_becomes_internal_error() {
        let e = em_test_fail(true, std::ptr::null());
        assert_eq!(em_error_kind(e), em_error_code::EM_ERROR_INTERNAL);
        let m = unsafe { std::ffi::CStr::from_ptr(em_error_message(e)) };
        assert!(m.to_str().unwrap().contains("asked to panic"), "{m:?}");
        em_error_free(e);
    }

    #[test]
    fn version_is_the_crate_version() {
        let v = unsafe { std::ffi::CStr::from_ptr(em_version()) };
        assert_eq!(v.to_str().unwrap(), env!("CARGO_PKG_VERSION"));
    }
}
