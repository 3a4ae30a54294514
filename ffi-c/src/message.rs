//! `em_message`: the message builder (to send) and the received message (inside an input event).

use std::ffi::{c_char, CString};
use std::ptr;
use std::sync::OnceLock;

use edgemodule::{Error, Message, Result};

use crate::error::em_error;
use crate::util::{arg_bytes, arg_str, c_string, check_out, ffi_call, ffi_value, opt_ptr, opt_str};

const MAGIC: u64 = 0x656d_5f6d_7367_0001;

/// A message. Opaque; from `em_message_new` (free with `em_message_free`) or borrowed from an
/// input event (`em_event_message`, valid until the event is freed; never free it).
#[allow(non_camel_case_types)]
pub struct em_message {
    magic: u64,
    pub(crate) inner: Message,
    /// NUL-terminated copies for the getters, built on first use and dropped by every setter.
    view: OnceLock<View>,
}

struct View {
    message_id: Option<CString>,
    correlation_id: Option<CString>,
    user_id: Option<CString>,
    content_type: Option<CString>,
    content_encoding: Option<CString>,
    expiry_time_utc: Option<CString>,
    creation_time_utc: Option<CString>,
    input_name: Option<CString>,
    connection_device_id: Option<CString>,
    connection_module_id: Option<CString>,
    properties: Vec<(CString, Option<CString>)>,
}

fn opt(s: &Option<String>) -> Option<CString> {
    s.as_deref().map(c_string)
}

impl em_message {
    pub(crate) fn wrap(inner: Message) -> em_message {
        em_message {
            magic: MAGIC,
            inner,
            view: OnceLock::new(),
        }
    }

    fn view(&self) -> &View {
        self.view.get_or_init(|| {
            let m = &self.inner;
            View {
                message_id: opt(&m.message_id),
                correlation_id: opt(&m.correlation_id),
                user_id: opt(&m.user_id),
                content_type: opt(&m.content_type),
                content_encoding: opt(&m.content_encoding),
                expiry_time_utc: opt(&m.expiry_time_utc),
                creation_time_utc: opt(&m.creation_time_utc),
                input_name: opt(&m.input_name),
                connection_device_id: opt(&m.connection_device_id),
                connection_module_id: opt(&m.connection_module_id),
                properties: m
                    .properties
                    .iter()
                    .map(|(k, v)| (c_string(k), v.as_deref().map(c_string)))
                    .collect(),
            }
        })
    }
}

/// A borrowed message argument (NULL, or a message whose magic was wiped by a free, is refused;
/// other garbage pointers are undefined behaviour).
///
/// # Safety
/// `p` is NULL or points to an `em_message`.
pub(crate) unsafe fn msg_ref<'a>(p: *const em_message, name: &str) -> Result<&'a em_message> {
    match p.as_ref() {
        None => Err(crate::util::null_arg(name)),
        Some(m) if m.magic == MAGIC => Ok(m),
        Some(_) => Err(Error::invalid(format!(
            "argument `{name}` is not a live em_message"
        ))),
    }
}

/// # Safety
/// As [`msg_ref`].
unsafe fn msg_mut<'a>(p: *mut em_message, name: &str) -> Result<&'a mut em_message> {
    msg_ref(p, name)?;
    Ok(&mut *p)
}

/// Getter helper: NULL (or a dead message) gives NULL.
fn with_view(message: *const em_message, f: impl FnOnce(&View) -> *const c_char) -> *const c_char {
    ffi_value(ptr::null(), || {
        // SAFETY: header contract (NULL or a live message).
        match unsafe { msg_ref(message, "message") } {
            Ok(m) => f(m.view()),
            Err(_) => ptr::null(),
        }
    })
}

/// Creates a message with a copy of `body` (`body_len` bytes; `body` may be NULL when
/// `body_len` is 0). On success `*out` owns the message: free it with `em_message_free`.
#[no_mangle]
pub extern "C" fn em_message_new(
    body: *const u8,
    body_len: usize,
    out: *mut *mut em_message,
) -> *mut em_error {
    ffi_call("em_message_new", || {
        check_out(out, "out")?;
        // SAFETY: `body` points to `body_len` bytes (header contract).
        let body = unsafe { arg_bytes(body, body_len, "body") }?;
        let m = Box::into_raw(Box::new(em_message::wrap(Message::new(body.to_vec()))));
        // SAFETY: checked non-NULL above.
        unsafe { *out = m };
        Ok(())
    })
}

/// Frees a message made by `em_message_new`. NULL is ignored. Never pass a message borrowed
/// from an event.
#[no_mangle]
pub extern "C" fn em_message_free(message: *mut em_message) {
    ffi_value((), || {
        // SAFETY: NULL or a live owned message (header contract).
        if unsafe { msg_ref(message, "message") }.is_ok() {
            let mut b = unsafe { Box::from_raw(message) };
            b.magic = 0;
            drop(b);
        }
    })
}

/// Replaces the body with a copy of `body_len` bytes at `body`.
#[no_mangle]
pub extern "C" fn em_message_set_body(
    message: *mut em_message,
    body: *const u8,
    body_len: usize,
) -> *mut em_error {
    ffi_call("em_message_set_body", || {
        // SAFETY: header contract.
        let m = unsafe { msg_mut(message, "message") }?;
        let body = unsafe { arg_bytes(body, body_len, "body") }?;
        m.inner.body = body.to_vec();
        Ok(())
    })
}

/// The body: `*data` (borrowed, valid until the message changes or is freed) and `*len`.
#[no_mangle]
pub extern "C" fn em_message_body(
    message: *const em_message,
    data: *mut *const u8,
    len: *mut usize,
) -> *mut em_error {
    ffi_call("em_message_body", || {
        check_out(data, "data")?;
        check_out(len, "len")?;
        // SAFETY: header contract.
        let m = unsafe { msg_ref(message, "message") }?;
        unsafe {
            *data = m.inner.body.as_ptr();
            *len = m.inner.body.len();
        }
        Ok(())
    })
}

/// Which system property a setter or getter addresses.
#[derive(Clone, Copy)]
enum Sys {
    MessageId,
    CorrelationId,
    UserId,
    ContentType,
    ContentEncoding,
    ExpiryTimeUtc,
    CreationTimeUtc,
}

fn set_system(
    name: &'static str,
    message: *mut em_message,
    value: *const c_char,
    which: Sys,
) -> *mut em_error {
    ffi_call(name, || {
        // SAFETY: header contract.
        let m = unsafe { msg_mut(message, "message") }?;
        let v = unsafe { opt_str(value, "value") }?.map(str::to_owned);
        let slot = match which {
            Sys::MessageId => &mut m.inner.message_id,
            Sys::CorrelationId => &mut m.inner.correlation_id,
            Sys::UserId => &mut m.inner.user_id,
            Sys::ContentType => &mut m.inner.content_type,
            Sys::ContentEncoding => &mut m.inner.content_encoding,
            Sys::ExpiryTimeUtc => &mut m.inner.expiry_time_utc,
            Sys::CreationTimeUtc => &mut m.inner.creation_time_utc,
        };
        *slot = v;
        m.view = OnceLock::new();
        Ok(())
    })
}

/// Sets the message id (`$.mid`); NULL clears it. Every setter copies its argument.
#[no_mangle]
pub extern "C" fn em_message_set_message_id(
    message: *mut em_message,
    value: *const c_char,
) -> *mut em_error {
    set_system("em_message_set_message_id", message, value, Sys::MessageId)
}

/// Sets the correlation id (`$.cid`); NULL clears it.
#[no_mangle]
pub extern "C" fn em_message_set_correlation_id(
    message: *mut em_message,
    value: *const c_char,
) -> *mut em_error {
    set_system(
        "em_message_set_correlation_id",
        message,
        value,
        Sys::CorrelationId,
    )
}

/// Sets the user id (`$.uid`); NULL clears it.
#[no_mangle]
pub extern "C" fn em_message_set_user_id(
    message: *mut em_message,
    value: *const c_char,
) -> *mut em_error {
    set_system("em_message_set_user_id", message, value, Sys::UserId)
}

/// Sets the content type (`$.ct`, e.g. "application/json"); NULL clears it.
#[no_mangle]
pub extern "C" fn em_message_set_content_type(
    message: *mut em_message,
    value: *const c_char,
) -> *mut em_error {
    set_system(
        "em_message_set_content_type",
        message,
        value,
        Sys::ContentType,
    )
}

/// Sets the content encoding (`$.ce`, e.g. "utf-8"); NULL clears it.
#[no_mangle]
pub extern "C" fn em_message_set_content_encoding(
    message: *mut em_message,
    value: *const c_char,
) -> *mut em_error {
    set_system(
        "em_message_set_content_encoding",
        message,
        value,
        Sys::ContentEncoding,
    )
}

/// Sets the absolute expiry time (`$.exp`, ISO-8601 UTC); NULL clears it.
#[no_mangle]
pub extern "C" fn em_message_set_expiry_time_utc(
    message: *mut em_message,
    value: *const c_char,
) -> *mut em_error {
    set_system(
        "em_message_set_expiry_time_utc",
        message,
        value,
        Sys::ExpiryTimeUtc,
    )
}

/// Sets the creation time (`$.ctime`, ISO-8601 UTC); NULL clears it.
#[no_mangle]
pub extern "C" fn em_message_set_creation_time_utc(
    message: *mut em_message,
    value: *const c_char,
) -> *mut em_error {
    set_system(
        "em_message_set_creation_time_utc",
        message,
        value,
        Sys::CreationTimeUtc,
    )
}

/// Sets custom property `key` (replacing an existing one in place, else appending). `value`
/// NULL makes a null property (sent as the bare key).
#[no_mangle]
pub extern "C" fn em_message_set_property(
    message: *mut em_message,
    key: *const c_char,
    value: *const c_char,
) -> *mut em_error {
    ffi_call("em_message_set_property", || {
        // SAFETY: header contract.
        let m = unsafe { msg_mut(message, "message") }?;
        let key = unsafe { arg_str(key, "key") }?;
        if key.is_empty() {
            return Err(Error::invalid("argument `key` is empty"));
        }
        let value = unsafe { opt_str(value, "value") }?;
        m.inner.set_property(key, value);
        m.view = OnceLock::new();
        Ok(())
    })
}

/// Removes every custom property named `key` (none is fine).
#[no_mangle]
pub extern "C" fn em_message_remove_property(
    message: *mut em_message,
    key: *const c_char,
) -> *mut em_error {
    ffi_call("em_message_remove_property", || {
        // SAFETY: header contract.
        let m = unsafe { msg_mut(message, "message") }?;
        let key = unsafe { arg_str(key, "key") }?;
        m.inner.properties.retain(|(k, _)| k != key);
        m.view = OnceLock::new();
        Ok(())
    })
}

/// The message id, or NULL if unset (or `message` is NULL). Every string getter returns a
/// borrowed pointer valid until the message is changed or freed.
#[no_mangle]
pub extern "C" fn em_message_message_id(message: *const em_message) -> *const c_char {
    with_view(message, |v| opt_ptr(&v.message_id))
}

/// The correlation id, or NULL.
#[no_mangle]
pub extern "C" fn em_message_correlation_id(message: *const em_message) -> *const c_char {
    with_view(message, |v| opt_ptr(&v.correlation_id))
}

/// The user id, or NULL.
#[no_mangle]
pub extern "C" fn em_message_user_id(message: *const em_message) -> *const c_char {
    with_view(message, |v| opt_ptr(&v.user_id))
}

/// The content type, or NULL.
#[no_mangle]
pub extern "C" fn em_message_content_type(message: *const em_message) -> *const c_char {
    with_view(message, |v| opt_ptr(&v.content_type))
}

/// The content encoding, or NULL.
#[no_mangle]
pub extern "C" fn em_message_content_encoding(message: *const em_message) -> *const c_char {
    with_view(message, |v| opt_ptr(&v.content_encoding))
}

/// The expiry time (ISO-8601), or NULL.
#[no_mangle]
pub extern "C" fn em_message_expiry_time_utc(message: *const em_message) -> *const c_char {
    with_view(message, |v| opt_ptr(&v.expiry_time_utc))
}

/// The creation time (ISO-8601), or NULL.
#[no_mangle]
pub extern "C" fn em_message_creation_time_utc(message: *const em_message) -> *const c_char {
    with_view(message, |v| opt_ptr(&v.creation_time_utc))
}

/// Received messages: the input name it arrived on, or NULL.
#[no_mangle]
pub extern "C" fn em_message_input_name(message: *const em_message) -> *const c_char {
    with_view(message, |v| opt_ptr(&v.input_name))
}

/// Received messages: the sender's device id (`$.cdid`), or NULL.
#[no_mangle]
pub extern "C" fn em_message_connection_device_id(message: *const em_message) -> *const c_char {
    with_view(message, |v| opt_ptr(&v.connection_device_id))
}

/// Received messages: the sender's module id (`$.cmid`), or NULL.
#[no_mangle]
pub extern "C" fn em_message_connection_module_id(message: *const em_message) -> *const c_char {
    with_view(message, |v| opt_ptr(&v.connection_module_id))
}

/// The number of custom properties (0 for NULL).
#[no_mangle]
pub extern "C" fn em_message_property_count(message: *const em_message) -> usize {
    ffi_value(0, || {
        // SAFETY: header contract.
        unsafe { msg_ref(message, "message") }.map_or(0, |m| m.inner.properties.len())
    })
}

/// Custom property number `index` (in wire order): `*key` and `*value` are borrowed (valid until
/// the message changes or is freed); `*value` is NULL for a null property.
#[no_mangle]
pub extern "C" fn em_message_property_at(
    message: *const em_message,
    index: usize,
    key: *mut *const c_char,
    value: *mut *const c_char,
) -> *mut em_error {
    ffi_call("em_message_property_at", || {
        check_out(key, "key")?;
        check_out(value, "value")?;
        // SAFETY: header contract.
        let m = unsafe { msg_ref(message, "message") }?;
        let props = &m.view().properties;
        let (k, v) = props.get(index).ok_or_else(|| {
            Error::invalid(format!(
                "property index {index} is out of range ({} properties)",
                props.len()
            ))
        })?;
        unsafe {
            *key = k.as_ptr();
            *value = opt_ptr(v);
        }
        Ok(())
    })
}

/// The value of custom property `key`: NULL if absent or null (see `em_message_has_property`).
#[no_mangle]
pub extern "C" fn em_message_property(
    message: *const em_message,
    key: *const c_char,
) -> *const c_char {
    ffi_value(ptr::null(), || {
        // SAFETY: header contract.
        let (Ok(m), Ok(key)) = (unsafe { msg_ref(message, "message") }, unsafe {
            arg_str(key, "key")
        }) else {
            return ptr::null();
        };
        let i = m.inner.properties.iter().position(|(k, _)| k == key);
        match i {
            Some(i) => opt_ptr(&m.view().properties[i].1),
            None => ptr::null(),
        }
    })
}

/// Whether custom property `key` is present (null-valued ones included).
#[no_mangle]
pub extern "C" fn em_message_has_property(message: *const em_message, key: *const c_char) -> bool {
    ffi_value(false, || {
        // SAFETY: header contract.
        match (unsafe { msg_ref(message, "message") }, unsafe {
            arg_str(key, "key")
        }) {
            (Ok(m), Ok(key)) => m.inner.has_property(key),
            _ => false,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::CStr;

    #[test]
    fn build_and_read_back() {
        let mut m = ptr::null_mut();
        assert!(em_message_new(b"hi".as_ptr(), 2, &mut m).is_null());
        assert!(em_message_set_message_id(m, c"id-1".as_ptr()).is_null());
        assert!(em_message_set_property(m, c"a".as_ptr(), c"1".as_ptr()).is_null());
        assert!(em_message_set_property(m, c"n".as_ptr(), ptr::null()).is_null());
        assert!(em_message_set_property(m, c"a".as_ptr(), c"2".as_ptr()).is_null());
        assert_eq!(em_message_property_count(m), 2);
        let v = unsafe { CStr::from_ptr(em_message_property(m, c"a".as_ptr())) };
        assert_eq!(v.to_str().unwrap(), "2");
        assert!(em_message_property(m, c"n".as_ptr()).is_null());
        assert!(em_message_has_property(m, c"n".as_ptr()));
        let (mut k, mut val) = (ptr::null(), ptr::null());
        assert!(em_message_property_at(m, 1, &mut k, &mut val).is_null());
        assert_eq!(unsafe { CStr::from_ptr(k) }.to_str().unwrap(), "n");
        assert!(val.is_null());
        let e = em_message_property_at(m, 2, &mut k, &mut val);
        assert_eq!(
            crate::error::em_error_kind(e),
            crate::error::em_error_code::EM_ERROR_INVALID_ARGUMENT
        );
        crate::error::em_error_free(e);
        let id = unsafe { CStr::from_ptr(em_message_message_id(m)) };
        assert_eq!(id.to_str().unwrap(), "id-1");
        assert!(em_message_user_id(m).is_null());
        em_message_free(m);
    }
}
