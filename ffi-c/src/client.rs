//! `em_client`: creation, blocking and async operations, close and free.
//!
//! Handles are registry keys, not pointers: a wrong, stale or freed `em_client*` is looked up,
//! not dereferenced, and gives `EM_ERROR_INVALID_ARGUMENT`. Every operation (blocking call or
//! async completion) is counted; `em_client_free` cancels them and waits for the count to reach
//! zero, so no completion runs after it returns and the last `ModuleClient` is dropped on the
//! freeing thread (which shuts the core runtime down when it was the last client).

use std::collections::BTreeMap;
use std::ffi::{c_char, c_void};
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::ptr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, RwLock};
use std::time::Duration;

use edgemodule::client::futures_lite_block_on;
use edgemodule::{
    BrokerOptions, ClientOptions, Error, ErrorKind, Message, ModuleClient, Result, TransportKind,
};
use futures_util::FutureExt;
use tokio_util::sync::CancellationToken;

use crate::error::em_error;
use crate::event::{em_connection_status, em_event, status_code};
use crate::message::{em_message, msg_ref};
use crate::util::{
    arg_bytes, arg_json, arg_str, check_out, ffi_call, in_callback, null_arg, on_library_thread,
    opt_str, owned_c_string, panic_error, refuse_on_library_thread, timeout, SendPtr,
};

/// Wait without a deadline (as a `timeout_ms` argument).
pub const EM_TIMEOUT_INFINITE: u32 = 0xFFFF_FFFF;

/// How long `em_client_free` waits for the hub to acknowledge the close.
const FREE_CLOSE_TIMEOUT: Duration = Duration::from_secs(5);

/// A module client. Opaque: the pointer is a handle checked against a registry of live clients,
/// never dereferenced.
#[allow(non_camel_case_types)]
pub struct em_client {
    _private: [u8; 0],
}

/// Transports (`em_client_options.transport`).
#[allow(non_camel_case_types, clippy::upper_case_acronyms)]
#[repr(i32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum em_transport {
    /// MQTT 3.1.1 over TLS (port 8883 by default).
    EM_TRANSPORT_MQTT = 0,
    /// MQTT 3.1.1 over secure WebSockets (port 443 by default).
    EM_TRANSPORT_MQTT_WEBSOCKET = 1,
}

/// Client options. Always start from `em_client_options_init` (it sets `struct_size` and every
/// default), then change fields. Strings are borrowed for the create call and copied.
#[allow(non_camel_case_types)]
#[repr(C)]
#[derive(Clone, Copy)]
pub struct em_client_options {
    /// `sizeof(em_client_options)`, set by `em_client_options_init`.
    pub struct_size: u32,
    /// An `em_transport` value.
    pub transport: i32,
    /// Port of the MQTT (or MQTT/WebSocket) endpoint; 0 = `EDGEMODULE_MQTT_PORT` if set, else
    /// the transport's default.
    pub mqtt_port: u16,
    /// Port of the gateway's HTTPS API (module-to-module methods); 0 = `EDGEMODULE_HTTPS_PORT`
    /// if set, else 443.
    pub https_port: u16,
    /// Most QoS 1 publishes awaiting PUBACK at once (default 100).
    pub inflight: u16,
    /// MQTT keepalive in seconds (default 60).
    pub keep_alive_secs: u32,
    /// SAS token lifetime in seconds (default 3600).
    pub sas_ttl_secs: u32,
    /// Time allowed for an acknowledged operation once transmitted, in ms (default 60000).
    pub operation_timeout_ms: u32,
    /// Time allowed for one connection attempt, in ms (default 30000).
    pub connect_timeout_ms: u32,
    /// Most messages that may wait while offline (default 10000).
    pub offline_queue_limit: u32,
    /// Oldest a queued message may get, in ms (default 600000).
    pub offline_queue_max_age_ms: u32,
    /// Reconnect backoff: first delay in ms (default 100).
    pub backoff_min_ms: u32,
    /// Reconnect backoff: longest delay in ms (default 10000).
    pub backoff_max_ms: u32,
    /// Reconnect backoff: give up after this many ms; 0 = retry forever (default).
    pub backoff_max_elapsed_ms: u32,
    /// Reconnect backoff: growth factor (default 2.0).
    pub backoff_multiplier: f64,
    /// Reconnect backoff: jitter fraction 0..1 (default 0.2).
    pub backoff_jitter: f64,
    /// Subscribe to input messages on connect (default true).
    pub enable_inputs: bool,
    /// Subscribe to desired-property patches on connect (default true).
    pub enable_twin_patches: bool,
    /// Subscribe to direct-method requests on connect (default true).
    pub enable_methods: bool,
    /// PEM roots to trust instead of the Workload API bundle or `EdgeModuleCACertificateFile`;
    /// NULL = default.
    pub trust_bundle_pem: *const c_char,
    /// Appended to the user agent; NULL = none.
    pub product_info: *const c_char,
    /// Digital-twin model id; NULL = none.
    pub model_id: *const c_char,
    /// MQTT api-version; NULL = the default ("2020-09-30").
    pub api_version: *const c_char,
}

/// A plain MQTT 3.1.1 broker connection (broker mode). Strings are borrowed and copied.
#[allow(non_camel_case_types)]
#[repr(C)]
#[derive(Clone, Copy)]
pub struct em_broker_options {
    /// Host name or IP (required).
    pub host: *const c_char,
    pub port: u16,
    /// MQTT client id (required).
    pub client_id: *const c_char,
    /// NULL = none.
    pub username: *const c_char,
    /// NULL = none.
    pub password: *const c_char,
    /// PEM roots: use TLS with them; NULL = plain TCP.
    pub tls_ca_pem: *const c_char,
}

/// Completion of an async call: `error` is NULL on success, else owned by the callback (free it
/// with `em_error_free`). Called exactly once, on a library thread.
#[allow(non_camel_case_types)]
pub type em_completion = Option<unsafe extern "C" fn(user_data: *mut c_void, error: *mut em_error)>;

/// Completion of `em_client_next_event_async`: on success `event` is owned by the callback
/// (free it with `em_event_free`) and `error` is NULL; otherwise `event` is NULL and `error`
/// (owned) says why (`EM_ERROR_CLOSED` once the client is closed).
#[allow(non_camel_case_types)]
pub type em_event_completion = Option<
    unsafe extern "C" fn(user_data: *mut c_void, error: *mut em_error, event: *mut em_event),
>;

/// Completion with a JSON result (`em_client_get_twin_async`): on success `json` is owned by the
/// callback (free it with `em_string_free`); on failure it is NULL.
#[allow(non_camel_case_types)]
pub type em_json_completion =
    Option<unsafe extern "C" fn(user_data: *mut c_void, error: *mut em_error, json: *mut c_char)>;

/// Completion of `em_client_invoke_method_async`: on success `status` is the method's status
/// and `payload_json` (owned, free with `em_string_free`) its payload; on failure `status` is 0
/// and `payload_json` NULL.
#[allow(non_camel_case_types)]
pub type em_method_completion = Option<
    unsafe extern "C" fn(
        user_data: *mut c_void,
        error: *mut em_error,
        status: i32,
        payload_json: *mut c_char,
    ),
>;

// ---------------------------------------------------------------------------------------------
// Registry and operation counting

struct Ops {
    state: Mutex<OpsState>,
    idle: Condvar,
}

struct OpsState {
    running: usize,
    freeing: bool,
}

/// One running operation; dropping it lets `em_client_free` proceed once none is left.
struct OpGuard(Arc<Ops>);

impl Ops {
    fn begin(self: &Arc<Self>) -> Result<OpGuard> {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if s.freeing {
            return Err(Error::new(ErrorKind::Closed, "the client is being freed"));
        }
        s.running += 1;
        Ok(OpGuard(self.clone()))
    }

    fn wait_idle(&self) {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        while s.running > 0 {
            s = self.idle.wait(s).unwrap_or_else(|p| p.into_inner());
        }
    }
}

impl Drop for OpGuard {
    fn drop(&mut self) {
        let mut s = self.0.state.lock().unwrap_or_else(|p| p.into_inner());
        s.running -= 1;
        if s.running == 0 {
            self.0.idle.notify_all();
        }
    }
}

struct ClientHandle {
    client: ModuleClient,
    ops: Arc<Ops>,
    /// Fired by close and free: every running operation ends with `EM_ERROR_CLOSED`.
    cancel: CancellationToken,
    closed: AtomicBool,
}

static REGISTRY: RwLock<BTreeMap<usize, Arc<ClientHandle>>> = RwLock::new(BTreeMap::new());
static NEXT_HANDLE: AtomicUsize = AtomicUsize::new(1);

fn register(client: ModuleClient) -> *mut em_client {
    let h = Arc::new(ClientHandle {
        client,
        ops: Arc::new(Ops {
            state: Mutex::new(OpsState {
                running: 0,
                freeing: false,
            }),
            idle: Condvar::new(),
        }),
        cancel: CancellationToken::new(),
        closed: AtomicBool::new(false),
    });
    // Aligned-looking, never reused values (wrapping needs 2^28 clients on 32-bit targets).
    let key = NEXT_HANDLE.fetch_add(1, Ordering::Relaxed).wrapping_mul(16);
    REGISTRY
        .write()
        .unwrap_or_else(|p| p.into_inner())
        .insert(key, h);
    key as *mut em_client
}

fn lookup(client: *const em_client) -> Result<Arc<ClientHandle>> {
    if client.is_null() {
        return Err(null_arg("client"));
    }
    REGISTRY
        .read()
        .unwrap_or_else(|p| p.into_inner())
        .get(&(client as usize))
        .cloned()
        .ok_or_else(|| {
            Error::invalid("argument `client` is not a live em_client (freed or never created)")
        })
}

impl ClientHandle {
    fn check_open(&self) -> Result<()> {
        if self.closed.load(Ordering::Acquire) {
            Err(Error::closed())
        } else {
            Ok(())
        }
    }
}

/// Runs one client operation on the calling thread, bounded by `timeout_ms` and ended early by
/// close/free.
fn blocking<T, F>(
    client: *const em_client,
    what: &'static str,
    timeout_ms: u32,
    make: impl FnOnce(ModuleClient) -> Result<F>,
) -> Result<T>
where
    F: Future<Output = Result<T>>,
{
    refuse_on_library_thread(what)?;
    let h = lookup(client)?;
    let op = h.ops.begin()?;
    let result = (|| {
        h.check_open()?;
        let fut = make(h.client.clone())?;
        run_blocking(&h, what, timeout(timeout_ms), fut)
    })();
    // The handle before the op count: `em_client_free` then holds the last reference.
    drop(h);
    drop(op);
    result
}

fn run_blocking<T>(
    h: &ClientHandle,
    what: &str,
    deadline: Option<Duration>,
    fut: impl Future<Output = Result<T>>,
) -> Result<T> {
    let rt = h.client.runtime_handle();
    let cancel = h.cancel.clone();
    // Timers need the runtime's context when created; the future itself is polled here.
    let _enter = rt.enter();
    futures_lite_block_on(async move {
        let work = async {
            tokio::select! {
                biased;
                _ = cancel.cancelled() => Err(Error::closed()),
                r = fut => r,
            }
        };
        match deadline {
            Some(d) => tokio::time::timeout(d, work)
                .await
                .unwrap_or_else(|_| Err(Error::timeout(what))),
            None => work.await,
        }
    })
}

/// Calls the application's callback exactly once: with the result, or with `EM_ERROR_CLOSED`
/// if the operation is dropped unfinished (runtime shut down). The op count is released only
/// after the callback returned.
struct Completion<T> {
    deliver: Option<Box<dyn FnOnce(Result<T>) + Send>>,
    _op: OpGuard,
}

impl<T> Completion<T> {
    fn complete(mut self, r: Result<T>) {
        if let Some(d) = self.deliver.take() {
            in_callback(|| d(r));
        }
    }
}

impl<T> Drop for Completion<T> {
    fn drop(&mut self) {
        if let Some(d) = self.deliver.take() {
            in_callback(|| d(Err(Error::closed())));
        }
    }
}

/// Starts one async operation: `deliver` gets its result on a runtime thread, exactly once.
fn spawn_op<T, F>(
    client: *const em_client,
    what: &'static str,
    make: impl FnOnce(ModuleClient) -> Result<F>,
    deliver: impl FnOnce(Result<T>) + Send + 'static,
) -> Result<()>
where
    T: Send + 'static,
    F: Future<Output = Result<T>> + Send + 'static,
{
    let h = lookup(client)?;
    let op = h.ops.begin()?;
    h.check_open()?;
    let fut = make(h.client.clone())?;
    let cancel = h.cancel.clone();
    let completion = Completion {
        deliver: Some(Box::new(deliver)),
        _op: op,
    };
    let rt = h.client.runtime_handle();
    drop(h);
    rt.spawn(async move {
        // `fut` (and the client it holds) is dropped at the end of this statement, before the
        // callback runs and the op count drops.
        let r = AssertUnwindSafe(async {
            tokio::select! {
                biased;
                _ = cancel.cancelled() => Err(Error::closed()),
                r = fut => r,
            }
        })
        .catch_unwind()
        .await
        .unwrap_or_else(|p| Err(panic_error(what, p)));
        completion.complete(r);
    });
    Ok(())
}

fn err_ptr(r: Result<()>) -> *mut em_error {
    match r {
        Ok(()) => ptr::null_mut(),
        Err(e) => em_error::into_raw(e),
    }
}

/// `deliver` for an `em_completion`.
fn plain_completion<T>(
    cb: unsafe extern "C" fn(*mut c_void, *mut em_error),
    user_data: *mut c_void,
) -> impl FnOnce(Result<T>) + Send + 'static {
    let ud = SendPtr(user_data);
    move |r: Result<T>| {
        let ud = ud;
        // SAFETY: the application's callback, called once as documented.
        unsafe { cb(ud.0, err_ptr(r.map(|_| ()))) }
    }
}

/// `deliver` for a completion that passes a value: `call(user_data, error, value)` gets
/// `(NULL, on_ok(result))` on success and `(error, on_err())` on failure.
fn value_completion<T, V>(
    user_data: *mut c_void,
    on_ok: impl FnOnce(T) -> V + Send + 'static,
    on_err: impl FnOnce() -> V + Send + 'static,
    call: impl FnOnce(*mut c_void, *mut em_error, V) + Send + 'static,
) -> impl FnOnce(Result<T>) + Send + 'static {
    let ud = SendPtr(user_data);
    move |r: Result<T>| {
        let ud = ud;
        let (e, v) = match r {
            Ok(t) => (ptr::null_mut(), on_ok(t)),
            Err(e) => (em_error::into_raw(e), on_err()),
        };
        call(ud.0, e, v)
    }
}

fn require<T>(cb: Option<T>) -> Result<T> {
    cb.ok_or_else(|| null_arg("callback"))
}

// ---------------------------------------------------------------------------------------------
// Options

fn ms(v: u32) -> Duration {
    Duration::from_millis(u64::from(v))
}

fn to_u32_ms(d: Duration) -> u32 {
    u32::try_from(d.as_millis()).unwrap_or(u32::MAX)
}

fn default_options() -> em_client_options {
    let d = ClientOptions::default();
    em_client_options {
        struct_size: std::mem::size_of::<em_client_options>() as u32,
        transport: em_transport::EM_TRANSPORT_MQTT as i32,
        mqtt_port: 0,
        https_port: 0,
        inflight: d.inflight,
        keep_alive_secs: d.keep_alive.as_secs() as u32,
        sas_ttl_secs: d.sas_ttl.as_secs() as u32,
        operation_timeout_ms: to_u32_ms(d.operation_timeout),
        connect_timeout_ms: to_u32_ms(d.connect_timeout),
        offline_queue_limit: u32::try_from(d.offline_queue_limit).unwrap_or(u32::MAX),
        offline_queue_max_age_ms: to_u32_ms(d.offline_queue_max_age),
        backoff_min_ms: to_u32_ms(d.backoff.min),
        backoff_max_ms: to_u32_ms(d.backoff.max),
        backoff_max_elapsed_ms: d.backoff.max_elapsed.map_or(0, to_u32_ms),
        backoff_multiplier: d.backoff.multiplier,
        backoff_jitter: d.backoff.jitter,
        enable_inputs: d.enable_inputs,
        enable_twin_patches: d.enable_twin_patches,
        enable_methods: d.enable_methods,
        trust_bundle_pem: ptr::null(),
        product_info: ptr::null(),
        model_id: ptr::null(),
        api_version: ptr::null(),
    }
}

/// # Safety
/// `p` is NULL or points to an `em_client_options` whose `struct_size` is set.
unsafe fn options_from(p: *const em_client_options) -> Result<ClientOptions> {
    if p.is_null() {
        return Ok(ClientOptions::default());
    }
    // Read the size first: a caller built against another header version has another size.
    let size = ptr::addr_of!((*p).struct_size).read();
    if size as usize != std::mem::size_of::<em_client_options>() {
        return Err(Error::invalid(format!(
            "options.struct_size is {size}, expected {}: initialize options with em_client_options_init",
            std::mem::size_of::<em_client_options>()
        )));
    }
    let o = &*p;
    let transport = match o.transport {
        0 => TransportKind::Mqtt,
        1 => TransportKind::MqttWebSocket,
        t => return Err(Error::invalid(format!("options.transport {t} is unknown"))),
    };
    if !(o.backoff_jitter >= 0.0 && o.backoff_jitter <= 1.0) || o.backoff_multiplier.is_nan() {
        return Err(Error::invalid("options.backoff_jitter must be within 0..1"));
    }
    let mut c = ClientOptions {
        transport,
        mqtt_port: (o.mqtt_port != 0).then_some(o.mqtt_port),
        https_port: (o.https_port != 0).then_some(o.https_port),
        inflight: o.inflight,
        keep_alive: Duration::from_secs(u64::from(o.keep_alive_secs)),
        sas_ttl: Duration::from_secs(u64::from(o.sas_ttl_secs)),
        operation_timeout: ms(o.operation_timeout_ms),
        connect_timeout: ms(o.connect_timeout_ms),
        offline_queue_limit: o.offline_queue_limit as usize,
        offline_queue_max_age: ms(o.offline_queue_max_age_ms),
        enable_inputs: o.enable_inputs,
        enable_twin_patches: o.enable_twin_patches,
        enable_methods: o.enable_methods,
        trust_bundle_pem: opt_str(o.trust_bundle_pem, "options.trust_bundle_pem")?
            .map(str::to_owned),
        product_info: opt_str(o.product_info, "options.product_info")?.map(str::to_owned),
        model_id: opt_str(o.model_id, "options.model_id")?.map(str::to_owned),
        ..ClientOptions::default()
    };
    if let Some(v) = opt_str(o.api_version, "options.api_version")? {
        c.api_version = v.to_owned();
    }
    c.backoff.min = ms(o.backoff_min_ms);
    c.backoff.max = ms(o.backoff_max_ms);
    c.backoff.multiplier = o.backoff_multiplier;
    c.backoff.jitter = o.backoff_jitter;
    c.backoff.max_elapsed = (o.backoff_max_elapsed_ms != 0).then(|| ms(o.backoff_max_elapsed_ms));
    Ok(c)
}

/// Fills `*options` with the defaults (and `struct_size`).
#[no_mangle]
pub extern "C" fn em_client_options_init(options: *mut em_client_options) -> *mut em_error {
    ffi_call("em_client_options_init", || {
        check_out(options, "options")?;
        // SAFETY: checked non-NULL; points to writable storage for the struct.
        unsafe { options.write(default_options()) };
        Ok(())
    })
}

fn create(out: *mut *mut em_client, make: impl FnOnce() -> Result<ModuleClient>) -> Result<()> {
    check_out(out, "out")?;
    let client = make()?;
    let handle = register(client);
    // SAFETY: checked non-NULL.
    unsafe { *out = handle };
    Ok(())
}

/// Creates a client for the module this process runs as, from the IoT Edge environment
/// (IOTEDGE_* variables and the Workload API, or `EdgeHubConnectionString` +
/// `EdgeModuleCACertificateFile`). `options` may be NULL (defaults). Does not connect.
/// On success `*out` owns the client: release it with `em_client_free`.
#[no_mangle]
pub extern "C" fn em_client_create_from_environment(
    options: *const em_client_options,
    out: *mut *mut em_client,
) -> *mut em_error {
    ffi_call("em_client_create_from_environment", || {
        // SAFETY: header contract.
        let opts = unsafe { options_from(options) }?;
        create(out, || ModuleClient::from_environment(opts))
    })
}

/// Creates a client from a module connection string
/// (`HostName=..;DeviceId=..;ModuleId=..;SharedAccessKey=..[;GatewayHostName=..]`). TLS roots:
/// `options->trust_bundle_pem`, else the file named by `EdgeModuleCACertificateFile`.
#[no_mangle]
pub extern "C" fn em_client_create_from_connection_string(
    connection_string: *const c_char,
    options: *const em_client_options,
    out: *mut *mut em_client,
) -> *mut em_error {
    ffi_call("em_client_create_from_connection_string", || {
        // SAFETY: header contract.
        let cs = unsafe { arg_str(connection_string, "connection_string") }?;
        let opts = unsafe { options_from(options) }?;
        create(out, || ModuleClient::from_connection_string(cs, opts))
    })
}

/// Creates a broker-mode client of a plain MQTT 3.1.1 broker (`em_client_publish`,
/// `em_client_subscribe`, `EM_EVENT_TOPIC_MESSAGE` events).
#[no_mangle]
pub extern "C" fn em_client_create_for_broker(
    broker: *const em_broker_options,
    options: *const em_client_options,
    out: *mut *mut em_client,
) -> *mut em_error {
    ffi_call("em_client_create_for_broker", || {
        // SAFETY: header contract.
        let b = unsafe { broker.as_ref() }.ok_or_else(|| null_arg("broker"))?;
        let bo = unsafe {
            BrokerOptions {
                host: arg_str(b.host, "broker.host")?.to_owned(),
                port: b.port,
                client_id: arg_str(b.client_id, "broker.client_id")?.to_owned(),
                username: opt_str(b.username, "broker.username")?.map(str::to_owned),
                password: opt_str(b.password, "broker.password")?.map(str::to_owned),
                tls_ca_pem: opt_str(b.tls_ca_pem, "broker.tls_ca_pem")?.map(str::to_owned),
            }
        };
        let opts = unsafe { options_from(options) }?;
        create(out, || ModuleClient::from_broker(bo, opts))
    })
}

// ---------------------------------------------------------------------------------------------
// Connect, close, free

/// Connects (waits up to `timeout_ms`; `EM_TIMEOUT_INFINITE` = the client's connect timeout
/// rules alone). Afterwards the client reconnects by itself whenever the link drops.
#[no_mangle]
pub extern "C" fn em_client_connect(client: *mut em_client, timeout_ms: u32) -> *mut em_error {
    ffi_call("em_client_connect", || {
        blocking(client, "connect", timeout_ms, |c| {
            Ok(async move { c.connect().await })
        })
    })
}

/// Async `em_client_connect`. As every `_async` function: if it returns an error, `callback`
/// is never called; if it returns NULL, `callback` is called exactly once, on a library thread,
/// at the latest before `em_client_free` returns.
#[no_mangle]
pub extern "C" fn em_client_connect_async(
    client: *mut em_client,
    callback: em_completion,
    user_data: *mut c_void,
) -> *mut em_error {
    ffi_call("em_client_connect_async", || {
        let cb = require(callback)?;
        spawn_op(
            client,
            "connect",
            |c| Ok(async move { c.connect().await }),
            plain_completion::<()>(cb, user_data),
        )
    })
}

fn mark_closed(h: &ClientHandle) {
    h.closed.store(true, Ordering::Release);
    h.cancel.cancel();
}

/// Closes the client: running operations end with `EM_ERROR_CLOSED`, and every later call
/// (except `em_client_free` and `em_client_close`) fails with `EM_ERROR_CLOSED`. Waits up to
/// `timeout_ms` for the disconnect. Closing twice is harmless.
#[no_mangle]
pub extern "C" fn em_client_close(client: *mut em_client, timeout_ms: u32) -> *mut em_error {
    ffi_call("em_client_close", || {
        refuse_on_library_thread("em_client_close")?;
        let h = lookup(client)?;
        let op = h.ops.begin()?;
        mark_closed(&h);
        let c = h.client.clone();
        let r = run_close(&h, timeout(timeout_ms), c);
        drop(h);
        drop(op);
        r
    })
}

fn run_close(h: &ClientHandle, deadline: Option<Duration>, c: ModuleClient) -> Result<()> {
    let rt = h.client.runtime_handle();
    let _enter = rt.enter();
    futures_lite_block_on(async move {
        match deadline {
            Some(d) => tokio::time::timeout(d, c.close())
                .await
                .map_err(|_| Error::timeout("close")),
            None => {
                c.close().await;
                Ok(())
            }
        }
    })
}

/// Async `em_client_close` (the completion gets NULL once closed).
#[no_mangle]
pub extern "C" fn em_client_close_async(
    client: *mut em_client,
    callback: em_completion,
    user_data: *mut c_void,
) -> *mut em_error {
    ffi_call("em_client_close_async", || {
        let cb = require(callback)?;
        let h = lookup(client)?;
        let op = h.ops.begin()?;
        mark_closed(&h);
        let c = h.client.clone();
        let completion = Completion {
            deliver: Some(Box::new(plain_completion::<()>(cb, user_data))),
            _op: op,
        };
        let rt = h.client.runtime_handle();
        drop(h);
        rt.spawn(async move {
            {
                let c = c;
                c.close().await;
            }
            completion.complete(Ok(()));
        });
        Ok(())
    })
}

/// Closes (if needed) and frees the client. Running operations end with `EM_ERROR_CLOSED`;
/// when this returns, every completion of this client has returned and none will run again
/// (except when called from a library callback: then the close finishes on a helper thread and
/// completions still running may finish after this returns). NULL and unknown or already-freed
/// handles are ignored. Freeing the last client stops the library's threads.
#[no_mangle]
pub extern "C" fn em_client_free(client: *mut em_client) {
    let e = ffi_call("em_client_free", || {
        if client.is_null() {
            return Ok(());
        }
        let Some(h) = REGISTRY
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&(client as usize))
        else {
            tracing::warn!("em_client_free: unknown or already freed handle ignored");
            return Ok(());
        };
        h.ops
            .state
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .freeing = true;
        mark_closed(&h);
        if on_library_thread() {
            // Blocking here would wait for this very callback: finish elsewhere.
            std::thread::Builder::new()
                .name("edgemodule-free".into())
                .spawn(move || finish_free(h))
                .map_err(|e| Error::new(ErrorKind::Internal, format!("cannot free: {e}")))?;
        } else {
            finish_free(h);
        }
        Ok(())
    });
    crate::error::em_error_free(e);
}

fn finish_free(h: Arc<ClientHandle>) {
    let c = h.client.clone();
    if run_close(&h, Some(FREE_CLOSE_TIMEOUT), c).is_err() {
        tracing::warn!("em_client_free: the close did not finish in time");
    }
    h.ops.wait_idle();
    // Every operation has dropped its references: this is the last one, so the core runtime
    // (if this was the last client) is shut down here, on an application thread.
    drop(h);
}

// ---------------------------------------------------------------------------------------------
// Messages

fn message_arg(message: *const em_message) -> Result<Message> {
    // SAFETY: header contract.
    Ok(unsafe { msg_ref(message, "message") }?.inner.clone())
}

/// Sends a copy of `message` to output `output`; waits up to `timeout_ms` for the hub's
/// acknowledgement (while offline the message waits in the offline queue). On
/// `EM_ERROR_TIMEOUT` the message may still be delivered later.
#[no_mangle]
pub extern "C" fn em_client_send_to_output(
    client: *mut em_client,
    output: *const c_char,
    message: *const em_message,
    timeout_ms: u32,
) -> *mut em_error {
    ffi_call("em_client_send_to_output", || {
        // SAFETY: header contract.
        let output = unsafe { arg_str(output, "output") }?;
        let m = message_arg(message)?;
        blocking(client, "send", timeout_ms, |c| {
            Ok(async move { c.send_message_to_output(output, m).await })
        })
    })
}

/// Async `em_client_send_to_output` (completion on the hub's acknowledgement).
#[no_mangle]
pub extern "C" fn em_client_send_to_output_async(
    client: *mut em_client,
    output: *const c_char,
    message: *const em_message,
    callback: em_completion,
    user_data: *mut c_void,
) -> *mut em_error {
    ffi_call("em_client_send_to_output_async", || {
        let cb = require(callback)?;
        // SAFETY: header contract.
        let output = unsafe { arg_str(output, "output") }?.to_owned();
        let m = message_arg(message)?;
        spawn_op(
            client,
            "send",
            |c| Ok(async move { c.send_message_to_output(&output, m).await }),
            plain_completion::<()>(cb, user_data),
        )
    })
}

/// Sends a copy of `message` as telemetry (no output name).
#[no_mangle]
pub extern "C" fn em_client_send_telemetry(
    client: *mut em_client,
    message: *const em_message,
    timeout_ms: u32,
) -> *mut em_error {
    ffi_call("em_client_send_telemetry", || {
        let m = message_arg(message)?;
        blocking(client, "send", timeout_ms, |c| {
            Ok(async move { c.send_message(m).await })
        })
    })
}

/// Async `em_client_send_telemetry`.
#[no_mangle]
pub extern "C" fn em_client_send_telemetry_async(
    client: *mut em_client,
    message: *const em_message,
    callback: em_completion,
    user_data: *mut c_void,
) -> *mut em_error {
    ffi_call("em_client_send_telemetry_async", || {
        let cb = require(callback)?;
        let m = message_arg(message)?;
        spawn_op(
            client,
            "send",
            |c| Ok(async move { c.send_message(m).await }),
            plain_completion::<()>(cb, user_data),
        )
    })
}

/// # Safety
/// `messages` is NULL or points to `count` message pointers.
unsafe fn batch_arg(messages: *const *const em_message, count: usize) -> Result<Vec<Message>> {
    if messages.is_null() {
        return Err(null_arg("messages"));
    }
    if count == 0 {
        return Err(Error::invalid("argument `count` is 0"));
    }
    let ptrs = std::slice::from_raw_parts(messages, count);
    ptrs.iter()
        .enumerate()
        .map(|(i, &m)| {
            msg_ref(m, "messages[i]")
                .map(|m| m.inner.clone())
                .map_err(|e| Error::invalid(format!("messages[{i}]: {}", e.message)))
        })
        .collect()
}

fn batch_summary(results: &[Result<()>]) -> Result<()> {
    let failed = results.iter().filter(|r| r.is_err()).count();
    match results.iter().position(|r| r.is_err()) {
        None => Ok(()),
        Some(i) => {
            let first = results[i].as_ref().unwrap_err();
            Err(Error::new(
                first.kind,
                format!(
                    "{failed} of {} messages failed; first (#{i}): {}",
                    results.len(),
                    first.message
                ),
            ))
        }
    }
}

/// Sends `count` messages (copies) to `output`, all in flight at once. Returns NULL when every
/// message was acknowledged, else an error of the first failure's kind. If `results` is not
/// NULL it must hold `count` slots: once the batch ran (whatever the outcome), `results[i]` is
/// NULL or an owned error for message i (free each).
#[no_mangle]
pub extern "C" fn em_client_send_batch_to_output(
    client: *mut em_client,
    output: *const c_char,
    messages: *const *const em_message,
    count: usize,
    timeout_ms: u32,
    results: *mut *mut em_error,
) -> *mut em_error {
    ffi_call("em_client_send_batch_to_output", || {
        // SAFETY: header contract.
        let output = unsafe { arg_str(output, "output") }?;
        let batch = unsafe { batch_arg(messages, count) }?;
        let all = blocking(client, "send batch", timeout_ms, |c| {
            Ok(async move { Ok(c.send_messages_to_output(output, batch).await) })
        })?;
        let summary = batch_summary(&all);
        if !results.is_null() {
            for (i, r) in all.into_iter().enumerate() {
                // SAFETY: `results` holds `count` slots (header contract).
                unsafe { *results.add(i) = err_ptr(r) };
            }
        }
        summary
    })
}

/// Async `em_client_send_batch_to_output`: the completion gets NULL if every message was
/// acknowledged, else an error of the first failure's kind ("k of n messages failed; ...").
#[no_mangle]
pub extern "C" fn em_client_send_batch_to_output_async(
    client: *mut em_client,
    output: *const c_char,
    messages: *const *const em_message,
    count: usize,
    callback: em_completion,
    user_data: *mut c_void,
) -> *mut em_error {
    ffi_call("em_client_send_batch_to_output_async", || {
        let cb = require(callback)?;
        // SAFETY: header contract.
        let output = unsafe { arg_str(output, "output") }?.to_owned();
        let batch = unsafe { batch_arg(messages, count) }?;
        spawn_op(
            client,
            "send batch",
            |c| {
                Ok(async move {
                    let all = c.send_messages_to_output(&output, batch).await;
                    batch_summary(&all)
                })
            },
            plain_completion::<()>(cb, user_data),
        )
    })
}

// ---------------------------------------------------------------------------------------------
// Events

/// Waits up to `timeout_ms` for the next event. On success `*event` is an owned event (free it
/// with `em_event_free`) or NULL when none arrived in time (`timeout_ms` 0 only polls).
/// `EM_ERROR_CLOSED` once the client is closed: the end of the event stream.
#[no_mangle]
pub extern "C" fn em_client_next_event(
    client: *mut em_client,
    timeout_ms: u32,
    event: *mut *mut em_event,
) -> *mut em_error {
    ffi_call("em_client_next_event", || {
        check_out(event, "event")?;
        refuse_on_library_thread("em_client_next_event")?;
        let h = lookup(client)?;
        let op = h.ops.begin()?;
        let result = (|| {
            h.check_open()?;
            if timeout_ms == 0 {
                return match h.client.try_next_event() {
                    Some(ev) => Ok(Some(ev)),
                    None if h.client.is_closed() => Err(Error::closed()),
                    None => Ok(None),
                };
            }
            let c = h.client.clone();
            let r = run_blocking(&h, "next event", timeout(timeout_ms), async move {
                c.next_event().await.ok_or_else(Error::closed).map(Some)
            });
            match r {
                Err(e) if e.kind == ErrorKind::Timeout => Ok(None),
                other => other,
            }
        })();
        drop(h);
        drop(op);
        let ev = result?.map_or(ptr::null_mut(), em_event::into_raw);
        // SAFETY: checked non-NULL.
        unsafe { *event = ev };
        Ok(())
    })
}

/// Async `em_client_next_event`: the completion receives the next event, or
/// `EM_ERROR_CLOSED` when the client is closed or freed. Several may be pending; each gets its
/// own event.
#[no_mangle]
pub extern "C" fn em_client_next_event_async(
    client: *mut em_client,
    callback: em_event_completion,
    user_data: *mut c_void,
) -> *mut em_error {
    ffi_call("em_client_next_event_async", || {
        let cb = require(callback)?;
        spawn_op(
            client,
            "next event",
            |c| Ok(async move { c.next_event().await.ok_or_else(Error::closed) }),
            value_completion(
                user_data,
                em_event::into_raw,
                ptr::null_mut,
                move |ud, e, ev| {
                    // SAFETY: the application's callback, called once.
                    unsafe { cb(ud, e, ev) }
                },
            ),
        )
    })
}

// ---------------------------------------------------------------------------------------------
// Methods and twin

/// Answers a direct method request (`request_id` from `em_event_method_request_id`) with an
/// HTTP-like `status` and a JSON payload (NULL = `null`).
#[no_mangle]
pub extern "C" fn em_client_respond_method(
    client: *mut em_client,
    request_id: *const c_char,
    status: i32,
    payload_json: *const c_char,
    timeout_ms: u32,
) -> *mut em_error {
    ffi_call("em_client_respond_method", || {
        // SAFETY: header contract.
        let rid = unsafe { arg_str(request_id, "request_id") }?;
        let payload = unsafe { arg_json(payload_json, "payload_json") }?;
        blocking(client, "respond to method", timeout_ms, |c| {
            Ok(async move { c.respond_method(rid, status, payload).await })
        })
    })
}

/// Async `em_client_respond_method`.
#[no_mangle]
pub extern "C" fn em_client_respond_method_async(
    client: *mut em_client,
    request_id: *const c_char,
    status: i32,
    payload_json: *const c_char,
    callback: em_completion,
    user_data: *mut c_void,
) -> *mut em_error {
    ffi_call("em_client_respond_method_async", || {
        let cb = require(callback)?;
        // SAFETY: header contract.
        let rid = unsafe { arg_str(request_id, "request_id") }?.to_owned();
        let payload = unsafe { arg_json(payload_json, "payload_json") }?;
        spawn_op(
            client,
            "respond to method",
            |c| Ok(async move { c.respond_method(&rid, status, payload).await }),
            plain_completion::<()>(cb, user_data),
        )
    })
}

fn twin_json(t: &edgemodule::Twin) -> String {
    serde_json::json!({ "desired": t.desired, "reported": t.reported }).to_string()
}

/// Reads the module twin: on success `*twin_json` is an owned string (free it with
/// `em_string_free`) `{"desired":{...},"reported":{...}}` (each with its `$version`).
#[no_mangle]
pub extern "C" fn em_client_get_twin(
    client: *mut em_client,
    timeout_ms: u32,
    twin_json_out: *mut *mut c_char,
) -> *mut em_error {
    ffi_call("em_client_get_twin", || {
        check_out(twin_json_out, "twin_json_out")?;
        let t = blocking(client, "get twin", timeout_ms, |c| {
            Ok(async move { c.get_twin().await })
        })?;
        // SAFETY: checked non-NULL.
        unsafe { *twin_json_out = owned_c_string(&twin_json(&t)) };
        Ok(())
    })
}

/// Async `em_client_get_twin`.
#[no_mangle]
pub extern "C" fn em_client_get_twin_async(
    client: *mut em_client,
    callback: em_json_completion,
    user_data: *mut c_void,
) -> *mut em_error {
    ffi_call("em_client_get_twin_async", || {
        let cb = require(callback)?;
        spawn_op(
            client,
            "get twin",
            |c| Ok(async move { c.get_twin().await }),
            value_completion(
                user_data,
                |t| owned_c_string(&twin_json(&t)),
                ptr::null_mut,
                move |ud, e, j| {
                    // SAFETY: the application's callback, called once.
                    unsafe { cb(ud, e, j) }
                },
            ),
        )
    })
}

/// # Safety
/// Header contract for `patch_json`.
unsafe fn reported_patch_arg(patch_json: *const c_char) -> Result<serde_json::Value> {
    let patch = arg_json(patch_json, "patch_json")?;
    if !patch.is_object() {
        return Err(Error::invalid(
            "argument `patch_json` must be a JSON object",
        ));
    }
    Ok(patch)
}

/// Patches the reported properties with a JSON object (`null` members delete). If `version`
/// is not NULL it receives the new reported version, or -1 when the hub gave none.
#[no_mangle]
pub extern "C" fn em_client_patch_reported(
    client: *mut em_client,
    patch_json: *const c_char,
    timeout_ms: u32,
    version: *mut i64,
) -> *mut em_error {
    ffi_call("em_client_patch_reported", || {
        // SAFETY: header contract.
        let patch = unsafe { reported_patch_arg(patch_json) }?;
        let v = blocking(client, "patch reported", timeout_ms, |c| {
            Ok(async move { c.patch_reported(patch).await })
        })?;
        if !version.is_null() {
            // SAFETY: checked non-NULL.
            unsafe { *version = v.unwrap_or(-1) };
        }
        Ok(())
    })
}

/// Async `em_client_patch_reported`.
#[no_mangle]
pub extern "C" fn em_client_patch_reported_async(
    client: *mut em_client,
    patch_json: *const c_char,
    callback: em_completion,
    user_data: *mut c_void,
) -> *mut em_error {
    ffi_call("em_client_patch_reported_async", || {
        let cb = require(callback)?;
        // SAFETY: header contract.
        let patch = unsafe { reported_patch_arg(patch_json) }?;
        spawn_op(
            client,
            "patch reported",
            |c| Ok(async move { c.patch_reported(patch).await }),
            plain_completion::<Option<i64>>(cb, user_data),
        )
    })
}

struct Invoke {
    device: String,
    module: String,
    method: String,
    payload: serde_json::Value,
    response_timeout: Duration,
    connect_timeout: Duration,
}

/// # Safety
/// Header contract for the string arguments.
unsafe fn invoke_args(
    device_id: *const c_char,
    module_id: *const c_char,
    method: *const c_char,
    payload_json: *const c_char,
    response_timeout_secs: u32,
    connect_timeout_secs: u32,
) -> Result<Invoke> {
    Ok(Invoke {
        device: arg_str(device_id, "device_id")?.to_owned(),
        module: opt_str(module_id, "module_id")?.unwrap_or("").to_owned(),
        method: arg_str(method, "method")?.to_owned(),
        payload: arg_json(payload_json, "payload_json")?,
        response_timeout: Duration::from_secs(u64::from(response_timeout_secs)),
        connect_timeout: Duration::from_secs(u64::from(connect_timeout_secs)),
    })
}

async fn invoke(c: ModuleClient, a: Invoke) -> Result<edgemodule::MethodResponse> {
    c.invoke_method(
        &a.device,
        &a.module,
        &a.method,
        a.payload,
        a.response_timeout,
        a.connect_timeout,
    )
    .await
}

/// Invokes direct method `method` on module `module_id` of device `device_id` (`module_id`
/// NULL or "" = the device itself) through the gateway. On success `*status` is the method's
/// status and `*payload_json` its owned JSON payload (free with `em_string_free`). Waits for
/// the answer (the response/connect timeouts bound it).
#[no_mangle]
pub extern "C" fn em_client_invoke_method(
    client: *mut em_client,
    device_id: *const c_char,
    module_id: *const c_char,
    method: *const c_char,
    payload_json: *const c_char,
    response_timeout_secs: u32,
    connect_timeout_secs: u32,
    status: *mut i32,
    payload_json_out: *mut *mut c_char,
) -> *mut em_error {
    ffi_call("em_client_invoke_method", || {
        check_out(status, "status")?;
        check_out(payload_json_out, "payload_json_out")?;
        // SAFETY: header contract.
        let a = unsafe {
            invoke_args(
                device_id,
                module_id,
                method,
                payload_json,
                response_timeout_secs,
                connect_timeout_secs,
            )
        }?;
        let r = blocking(client, "invoke method", EM_TIMEOUT_INFINITE, |c| {
            Ok(invoke(c, a))
        })?;
        // SAFETY: checked non-NULL.
        unsafe {
            *status = r.status;
            *payload_json_out = owned_c_string(&r.payload.to_string());
        }
        Ok(())
    })
}

/// Async `em_client_invoke_method`.
#[no_mangle]
pub extern "C" fn em_client_invoke_method_async(
    client: *mut em_client,
    device_id: *const c_char,
    module_id: *const c_char,
    method: *const c_char,
    payload_json: *const c_char,
    response_timeout_secs: u32,
    connect_timeout_secs: u32,
    callback: em_method_completion,
    user_data: *mut c_void,
) -> *mut em_error {
    ffi_call("em_client_invoke_method_async", || {
        let cb = require(callback)?;
        // SAFETY: header contract.
        let a = unsafe {
            invoke_args(
                device_id,
                module_id,
                method,
                payload_json,
                response_timeout_secs,
                connect_timeout_secs,
            )
        }?;
        spawn_op(
            client,
            "invoke method",
            |c| Ok(invoke(c, a)),
            value_completion(
                user_data,
                |m: edgemodule::MethodResponse| (m.status, owned_c_string(&m.payload.to_string())),
                || (0, ptr::null_mut()),
                move |ud, e, (s, p)| {
                    // SAFETY: the application's callback, called once.
                    unsafe { cb(ud, e, s, p) }
                },
            ),
        )
    })
}

// ---------------------------------------------------------------------------------------------
// Broker mode

/// Broker mode: publishes `payload_len` bytes on `topic` (no wildcards) with `qos` 0 or 1.
#[no_mangle]
pub extern "C" fn em_client_publish(
    client: *mut em_client,
    topic: *const c_char,
    payload: *const u8,
    payload_len: usize,
    qos: u8,
    timeout_ms: u32,
) -> *mut em_error {
    ffi_call("em_client_publish", || {
        // SAFETY: header contract.
        let topic = unsafe { arg_str(topic, "topic") }?;
        let body = unsafe { arg_bytes(payload, payload_len, "payload") }?.to_vec();
        blocking(client, "publish", timeout_ms, |c| {
            Ok(async move { c.publish(topic, body, qos).await })
        })
    })
}

/// Async `em_client_publish`.
#[no_mangle]
pub extern "C" fn em_client_publish_async(
    client: *mut em_client,
    topic: *const c_char,
    payload: *const u8,
    payload_len: usize,
    qos: u8,
    callback: em_completion,
    user_data: *mut c_void,
) -> *mut em_error {
    ffi_call("em_client_publish_async", || {
        let cb = require(callback)?;
        // SAFETY: header contract.
        let topic = unsafe { arg_str(topic, "topic") }?.to_owned();
        let body = unsafe { arg_bytes(payload, payload_len, "payload") }?.to_vec();
        spawn_op(
            client,
            "publish",
            |c| Ok(async move { c.publish(&topic, body, qos).await }),
            plain_completion::<()>(cb, user_data),
        )
    })
}

/// Broker mode: subscribes to `filter` (`+`/`#` wildcards) with `qos` 0 or 1; kept across
/// reconnects. Messages arrive as `EM_EVENT_TOPIC_MESSAGE` events.
#[no_mangle]
pub extern "C" fn em_client_subscribe(
    client: *mut em_client,
    filter: *const c_char,
    qos: u8,
    timeout_ms: u32,
) -> *mut em_error {
    ffi_call("em_client_subscribe", || {
        // SAFETY: header contract.
        let filter = unsafe { arg_str(filter, "filter") }?;
        blocking(client, "subscribe", timeout_ms, |c| {
            Ok(async move { c.subscribe(filter, qos).await })
        })
    })
}

/// Async `em_client_subscribe`.
#[no_mangle]
pub extern "C" fn em_client_subscribe_async(
    client: *mut em_client,
    filter: *const c_char,
    qos: u8,
    callback: em_completion,
    user_data: *mut c_void,
) -> *mut em_error {
    ffi_call("em_client_subscribe_async", || {
        let cb = require(callback)?;
        // SAFETY: header contract.
        let filter = unsafe { arg_str(filter, "filter") }?.to_owned();
        spawn_op(
            client,
            "subscribe",
            |c| Ok(async move { c.subscribe(&filter, qos).await }),
            plain_completion::<()>(cb, user_data),
        )
    })
}

/// Broker mode: removes a subscription.
#[no_mangle]
pub extern "C" fn em_client_unsubscribe(
    client: *mut em_client,
    filter: *const c_char,
    timeout_ms: u32,
) -> *mut em_error {
    ffi_call("em_client_unsubscribe", || {
        // SAFETY: header contract.
        let filter = unsafe { arg_str(filter, "filter") }?;
        blocking(client, "unsubscribe", timeout_ms, |c| {
            Ok(async move { c.unsubscribe(filter).await })
        })
    })
}

/// Async `em_client_unsubscribe`.
#[no_mangle]
pub extern "C" fn em_client_unsubscribe_async(
    client: *mut em_client,
    filter: *const c_char,
    callback: em_completion,
    user_data: *mut c_void,
) -> *mut em_error {
    ffi_call("em_client_unsubscribe_async", || {
        let cb = require(callback)?;
        // SAFETY: header contract.
        let filter = unsafe { arg_str(filter, "filter") }?.to_owned();
        spawn_op(
            client,
            "unsubscribe",
            |c| Ok(async move { c.unsubscribe(&filter).await }),
            plain_completion::<()>(cb, user_data),
        )
    })
}

// ---------------------------------------------------------------------------------------------
// State

/// The current connection status (non-blocking).
#[no_mangle]
pub extern "C" fn em_client_connection_status(
    client: *const em_client,
    status: *mut em_connection_status,
) -> *mut em_error {
    ffi_call("em_client_connection_status", || {
        check_out(status, "status")?;
        let h = lookup(client)?;
        h.check_open()?;
        let s = status_code(h.client.status());
        // SAFETY: checked non-NULL.
        unsafe { *status = s };
        Ok(())
    })
}

/// The offline queue: `*depth` messages waiting, the oldest for `*oldest_age_ms` (0 when empty).
#[no_mangle]
pub extern "C" fn em_client_queue_stats(
    client: *const em_client,
    depth: *mut usize,
    oldest_age_ms: *mut u64,
) -> *mut em_error {
    ffi_call("em_client_queue_stats", || {
        check_out(depth, "depth")?;
        check_out(oldest_age_ms, "oldest_age_ms")?;
        let h = lookup(client)?;
        h.check_open()?;
        let q = h.client.queue_stats();
        // SAFETY: checked non-NULL.
        unsafe {
            *depth = q.depth;
            *oldest_age_ms = q
                .oldest_age
                .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        }
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::{em_error_code as K, em_error_free, em_error_kind};

    fn kind(e: *mut em_error) -> K {
        let k = em_error_kind(e);
        em_error_free(e);
        k
    }

    #[test]
    fn options_round_trip_and_size_check() {
        let mut o = default_options();
        o.struct_size = 0;
        assert!(em_client_options_init(&mut o).is_null());
        let c = unsafe { options_from(&o) }.unwrap();
        let d = ClientOptions::default();
        assert_eq!(c.inflight, d.inflight);
        assert_eq!(c.operation_timeout, d.operation_timeout);
        assert_eq!(c.backoff.max_elapsed, None);
        assert_eq!(c.mqtt_port, None);
        o.struct_size = 4;
        assert_eq!(
            unsafe { options_from(&o) }.unwrap_err().kind,
            ErrorKind::InvalidArgument
        );
        assert_eq!(
            kind(em_client_options_init(ptr::null_mut())),
            K::EM_ERROR_INVALID_ARGUMENT
        );
    }

    #[test]
    fn unknown_handles_are_errors_not_ub() {
        let bogus = 0x1234_5670 as *mut em_client;
        assert_eq!(
            kind(em_client_connect(bogus, 10)),
            K::EM_ERROR_INVALID_ARGUMENT
        );
        assert_eq!(
            kind(em_client_connect(ptr::null_mut(), 10)),
            K::EM_ERROR_INVALID_ARGUMENT
        );
        em_client_free(bogus); // ignored
    }

    #[test]
    fn batch_summary_names_first_failure() {
        let r = vec![Ok(()), Err(Error::timeout("send")), Err(Error::closed())];
        let e = batch_summary(&r).unwrap_err();
        assert_eq!(e.kind, ErrorKind::Timeout);
        assert_eq!(
            e.message,
            "2 of 3 messages failed; first (#1): send timed out"
        );
    }
}
