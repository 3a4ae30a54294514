//! `_native.NativeClient`: the core `ModuleClient` with two call styles per operation:
//! blocking (GIL released while waiting, Ctrl-C honoured) for the sync client, and
//! completion-callback (`done(ok, value)` called once from a core thread) for asyncio.
//! Handler dispatch and argument checks live in the Python package.

use std::future::Future;
use std::mem::ManuallyDrop;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::time::Duration;

use edgemodule::{
    BrokerOptions, ClientOptions, ConnectionStatus, Error, ErrorKind, Event, ModuleClient,
    TransportKind,
};
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyList, PyString, PyTuple};

use crate::convert;
use crate::error::{forked, to_py, IntoPyResult};
use crate::message::{extract_message, Message};

/// Set in a child forked while a client (and so the core's runtime) was alive: that runtime's
/// threads do not exist in the child and the core would reuse it, so new clients would hang.
static FORKED_WITH_RUNTIME: AtomicBool = AtomicBool::new(false);

/// Called by `os.register_at_fork(after_in_child=...)`.
#[pyfunction]
pub fn _after_fork_in_child() {
    if edgemodule::runtime::users() > 0 {
        FORKED_WITH_RUNTIME.store(true, Ordering::SeqCst);
    }
}

/// Wakes a blocked call this often to let Python deliver signals (Ctrl-C).
const SIGNAL_POLL: Duration = Duration::from_millis(200);

/// The core client, owned by one Python object.
#[pyclass(module = "edgemodule._native", frozen)]
pub struct NativeClient {
    client: ManuallyDrop<ModuleClient>,
    pid: u32,
}

impl Drop for NativeClient {
    fn drop(&mut self) {
        // SAFETY: taken once, here; the field is never used again.
        let client = unsafe { ManuallyDrop::take(&mut self.client) };
        if self.pid != std::process::id() {
            // A forked child: the runtime threads this client would join do not exist.
            std::mem::forget(client);
            return;
        }
        // The last client shuts the runtime down (joins its threads): never with the GIL
        // held, since a runtime thread may be waiting for it to forward a log record.
        let _ = std::thread::Builder::new()
            .name("edgemodule-drop".into())
            .spawn(move || drop(client));
    }
}

fn check_fork() -> edgemodule::Result<()> {
    if FORKED_WITH_RUNTIME.load(Ordering::SeqCst) {
        return Err(Error::new(
            ErrorKind::Internal,
            "edgemodule cannot create clients in a process forked while a client was alive \
             (the I/O threads were not copied): create clients after fork, or use the \
             multiprocessing 'spawn' start method",
        ));
    }
    Ok(())
}

fn secs(v: &Bound<'_, PyAny>, key: &str) -> PyResult<Duration> {
    let f: f64 = v
        .extract()
        .map_err(|_| PyTypeError::new_err(format!("option {key} must be a number of seconds")))?;
    if !f.is_finite() || f < 0.0 {
        return Err(PyValueError::new_err(format!(
            "option {key} must be a non-negative number of seconds"
        )));
    }
    Ok(Duration::from_secs_f64(f))
}

fn port(v: &Bound<'_, PyAny>, key: &str) -> PyResult<Option<u16>> {
    if v.is_none() {
        return Ok(None);
    }
    let p: i64 = v
        .extract()
        .map_err(|_| PyTypeError::new_err(format!("option {key} must be an int")))?;
    if !(1..=65535).contains(&p) {
        return Err(PyValueError::new_err(format!(
            "option {key} must be a port 1-65535, got {p}"
        )));
    }
    Ok(Some(p as u16))
}

fn opt_string(v: &Bound<'_, PyAny>, key: &str) -> PyResult<Option<String>> {
    if v.is_none() {
        return Ok(None);
    }
    v.extract()
        .map(Some)
        .map_err(|_| PyTypeError::new_err(format!("option {key} must be a str")))
}

fn parse_options(options: Option<&Bound<'_, PyDict>>) -> PyResult<ClientOptions> {
    let mut o = ClientOptions::default();
    let Some(options) = options else {
        return Ok(o);
    };
    for (k, v) in options.iter() {
        let key: String = k.extract()?;
        match key.as_str() {
            "mqtt_port" => o.mqtt_port = port(&v, &key)?,
            "https_port" => o.https_port = port(&v, &key)?,
            "websockets" => {
                let ws: bool = v
                    .extract()
                    .map_err(|_| PyTypeError::new_err("option websockets must be a bool"))?;
                o.transport = if ws {
                    TransportKind::MqttWebSocket
                } else {
                    TransportKind::Mqtt
                };
            }
            "server_verification_cert" | "trust_bundle_pem" => {
                o.trust_bundle_pem = opt_string(&v, &key)?
            }
            "product_info" => o.product_info = opt_string(&v, &key)?,
            "model_id" => o.model_id = opt_string(&v, &key)?,
            "keep_alive" => o.keep_alive = secs(&v, &key)?,
            "sas_token_ttl" => o.sas_ttl = secs(&v, &key)?,
            "operation_timeout" => o.operation_timeout = secs(&v, &key)?,
            "connect_timeout" => o.connect_timeout = secs(&v, &key)?,
            "offline_queue_max_age" => o.offline_queue_max_age = secs(&v, &key)?,
            "offline_queue_limit" => {
                o.offline_queue_limit = v.extract().map_err(|_| {
                    PyTypeError::new_err("option offline_queue_limit must be a non-negative int")
                })?
            }
            "inflight" => {
                o.inflight = v
                    .extract()
                    .map_err(|_| PyTypeError::new_err("option inflight must be an int 1-65535"))?
            }
            other => {
                return Err(PyTypeError::new_err(format!(
                    "unknown client option {other:?}"
                )))
            }
        }
    }
    Ok(o)
}

/// Calls `done(ok, value)` with the GIL, unless the interpreter is going away.
fn complete<T, C>(done: Py<PyAny>, r: edgemodule::Result<T>, convert: C)
where
    C: for<'py> FnOnce(Python<'py>, T) -> PyResult<Bound<'py, PyAny>>,
{
    if crate::logging::finalizing() {
        std::mem::forget(done); // no GIL may be taken; leaking one callable is harmless
        return;
    }
    let _ = Python::try_attach(move |py| {
        let (ok, value) = match r {
            Ok(v) => match convert(py, v) {
                Ok(o) => (true, o),
                Err(e) => (false, e.into_value(py).into_bound(py).into_any()),
            },
            Err(e) => (false, to_py(py, e).into_value(py).into_bound(py).into_any()),
        };
        // The loop may be closed already: nobody waits for this result then.
        let _ = done.call1(py, (ok, value));
    });
}

fn none(py: Python<'_>, _: ()) -> PyResult<Bound<'_, PyAny>> {
    Ok(py.None().into_bound(py))
}

type Events = Option<Vec<Event>>;

fn status_tuple<'py>(py: Python<'py>, s: ConnectionStatus) -> PyResult<Bound<'py, PyTuple>> {
    let (code, attempt, delay) = match s {
        ConnectionStatus::Connected => (0, 0, 0.0),
        ConnectionStatus::Disconnected => (1, 0, 0.0),
        ConnectionStatus::DisconnectedRetrying {
            attempt,
            next_delay,
        } => (2, attempt, next_delay.as_secs_f64()),
    };
    (code, attempt, delay).into_pyobject(py)
}

/// Events as tuples: `(0, input, Message)`, `(1, patch, version)`, `(2, request_id, name,
/// payload)`, `(3, (status, attempt, next_delay), reason)`, `(4, topic, payload, qos)`.
fn event_to_py<'py>(py: Python<'py>, ev: Event) -> PyResult<Bound<'py, PyAny>> {
    Ok(match ev {
        Event::InputMessage {
            input,
            mut message,
            ack,
        } => {
            if message.input_name.is_none() {
                message.input_name = Some(input.clone());
            }
            let m = Bound::new(py, Message::from_core(py, message, Some(ack))?)?;
            (0, input, m).into_pyobject(py)?.into_any()
        }
        Event::DesiredPropertiesPatch { patch, version } => {
            (1, convert::to_py(py, &patch)?, version)
                .into_pyobject(py)?
                .into_any()
        }
        Event::MethodRequest {
            request_id,
            name,
            payload,
        } => (2, request_id, name, convert::to_py(py, &payload)?)
            .into_pyobject(py)?
            .into_any(),
        Event::ConnectionStatus { status, reason } => (3, status_tuple(py, status)?, reason as i32)
            .into_pyobject(py)?
            .into_any(),
        Event::TopicMessage {
            topic,
            payload,
            qos,
        } => (4, topic, PyBytes::new(py, &payload), qos)
            .into_pyobject(py)?
            .into_any(),
    })
}

fn events_to_py(py: Python<'_>, evs: Events) -> PyResult<Bound<'_, PyAny>> {
    match evs {
        None => Ok(py.None().into_bound(py)),
        Some(evs) => {
            let items = evs
                .into_iter()
                .map(|e| event_to_py(py, e))
                .collect::<PyResult<Vec<_>>>()?;
            Ok(PyList::new(py, items)?.into_any())
        }
    }
}

/// Waits for the first event (up to `timeout`), then takes what else is queued, up to `max`.
async fn next_events(client: ModuleClient, timeout: Option<Duration>, max: usize) -> Events {
    let first = match timeout {
        Some(t) => match tokio::time::timeout(t, client.next_event()).await {
            Ok(e) => e,
            Err(_) => return Some(Vec::new()),
        },
        None => client.next_event().await,
    };
    let first = first?;
    let mut out = Vec::with_capacity(max.clamp(1, 64));
    out.push(first);
    while out.len() < max {
        match client.try_next_event() {
            Some(e) => out.push(e),
            None => break,
        }
    }
    Some(out)
}

fn payload_arg(obj: &Bound<'_, PyAny>) -> PyResult<Vec<u8>> {
    if let Ok(b) = obj.cast::<PyBytes>() {
        return Ok(b.as_bytes().to_vec());
    }
    if let Ok(s) = obj.cast::<PyString>() {
        return Ok(s.to_cow()?.as_bytes().to_vec());
    }
    if let Ok(v) = obj.extract::<Vec<u8>>() {
        return Ok(v);
    }
    Err(PyTypeError::new_err(format!(
        "payload must be bytes, bytearray or str, not {}",
        convert::type_name(obj)
    )))
}

impl NativeClient {
    fn new(
        py: Python<'_>,
        make: impl FnOnce() -> edgemodule::Result<ModuleClient> + Send,
    ) -> PyResult<Self> {
        check_fork().py_err(py)?;
        crate::logging::install();
        let client = py.detach(make).py_err(py)?;
        Ok(NativeClient {
            client: ManuallyDrop::new(client),
            pid: std::process::id(),
        })
    }

    fn check(&self) -> edgemodule::Result<()> {
        if self.pid != std::process::id() {
            return Err(forked(self.pid));
        }
        Ok(())
    }

    fn core(&self) -> ModuleClient {
        (*self.client).clone()
    }

    /// Runs `fut` on the core runtime; waits with the GIL released, waking to deliver signals.
    fn blocking<T, F>(&self, py: Python<'_>, fut: F) -> PyResult<T>
    where
        T: Send + 'static,
        F: Future<Output = edgemodule::Result<T>> + Send + 'static,
    {
        self.check().py_err(py)?;
        let (tx, mut rx) = mpsc::sync_channel(1);
        let task = self.client.runtime_handle().spawn(async move {
            let _ = tx.send(fut.await);
        });
        loop {
            let (back, r) = py.detach(move || {
                let r = rx.recv_timeout(SIGNAL_POLL);
                (rx, r)
            });
            rx = back;
            match r {
                Ok(r) => return r.py_err(py),
                Err(RecvTimeoutError::Timeout) => {
                    if let Err(e) = py.check_signals() {
                        task.abort();
                        return Err(e);
                    }
                }
                Err(RecvTimeoutError::Disconnected) => {
                    return Err(Error::new(ErrorKind::Closed, "the operation was abandoned"))
                        .py_err(py)
                }
            }
        }
    }

    /// Runs `fut` on the core runtime and reports through `done(ok, value)`.
    fn spawn<T, F, C>(&self, py: Python<'_>, fut: F, done: Py<PyAny>, convert: C) -> PyResult<()>
    where
        T: Send + 'static,
        F: Future<Output = edgemodule::Result<T>> + Send + 'static,
        C: for<'py> FnOnce(Python<'py>, T) -> PyResult<Bound<'py, PyAny>> + Send + 'static,
    {
        self.check().py_err(py)?;
        self.client.runtime_handle().spawn(async move {
            let r = fut.await;
            complete(done, r, convert);
        });
        Ok(())
    }
}

fn twin_to_py(py: Python<'_>, t: edgemodule::Twin) -> PyResult<Bound<'_, PyAny>> {
    Ok((
        convert::to_py(py, &t.desired)?,
        convert::to_py(py, &t.reported)?,
    )
        .into_pyobject(py)?
        .into_any())
}

fn method_response_to_py(
    py: Python<'_>,
    r: edgemodule::MethodResponse,
) -> PyResult<Bound<'_, PyAny>> {
    Ok((r.status, convert::to_py(py, &r.payload)?)
        .into_pyobject(py)?
        .into_any())
}

fn batch_to_py(py: Python<'_>, rs: Vec<edgemodule::Result<()>>) -> PyResult<Bound<'_, PyAny>> {
    let items = rs
        .into_iter()
        .map(|r| match r {
            Ok(()) => py.None().into_bound(py),
            Err(e) => to_py(py, e).into_value(py).into_bound(py).into_any(),
        })
        .collect::<Vec<_>>();
    Ok(PyList::new(py, items)?.into_any())
}

fn messages_arg(py: Python<'_>, messages: &Bound<'_, PyAny>) -> PyResult<Vec<edgemodule::Message>> {
    let mut out = Vec::new();
    for m in messages.try_iter().map_err(|_| {
        PyTypeError::new_err(format!(
            "messages must be an iterable of Message, not {}",
            convert::type_name(messages)
        ))
    })? {
        out.push(extract_message(py, &m?)?);
    }
    Ok(out)
}

fn secs_arg(v: f64, what: &str) -> PyResult<Duration> {
    if !v.is_finite() || v < 0.0 {
        return Err(PyValueError::new_err(format!(
            "{what} must be a non-negative number of seconds"
        )));
    }
    Ok(Duration::from_secs_f64(v))
}

#[pymethods]
impl NativeClient {
    /// A module client from the IoT Edge environment given as a dict (`os.environ`).
    #[staticmethod]
    #[pyo3(signature = (environ, options = None))]
    fn from_environment(
        py: Python<'_>,
        environ: std::collections::HashMap<String, String>,
        options: Option<&Bound<'_, PyDict>>,
    ) -> PyResult<Self> {
        let o = parse_options(options)?;
        Self::new(py, move || {
            ModuleClient::from_environment_with(|k| environ.get(k).cloned(), o)
        })
    }

    #[staticmethod]
    #[pyo3(signature = (connection_string, options = None))]
    fn from_connection_string(
        py: Python<'_>,
        connection_string: String,
        options: Option<&Bound<'_, PyDict>>,
    ) -> PyResult<Self> {
        let o = parse_options(options)?;
        Self::new(py, move || {
            ModuleClient::from_connection_string(&connection_string, o)
        })
    }

    #[staticmethod]
    #[pyo3(signature = (host, port, client_id, username = None, password = None, tls_ca_pem = None, options = None))]
    #[allow(clippy::too_many_arguments)]
    fn from_broker(
        py: Python<'_>,
        host: String,
        port: u16,
        client_id: String,
        username: Option<String>,
        password: Option<String>,
        tls_ca_pem: Option<String>,
        options: Option<&Bound<'_, PyDict>>,
    ) -> PyResult<Self> {
        let o = parse_options(options)?;
        let b = BrokerOptions {
            host,
            port,
            client_id,
            username,
            password,
            tls_ca_pem,
        };
        Self::new(py, move || ModuleClient::from_broker(b, o))
    }

    /// `(device_id, module_id)`, or None for a broker client.
    fn identity(&self) -> Option<(String, String)> {
        self.client.identity().map(|i| (i.device_id, i.module_id))
    }

    fn is_closed(&self) -> bool {
        self.client.is_closed()
    }

    /// `((status, attempt, next_delay), )`: status 0 connected, 1 disconnected, 2 retrying.
    fn status<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyTuple>> {
        let c = self.core();
        // The core takes a lock the session also holds while it may log: never with the GIL.
        let s = py.detach(move || c.status());
        status_tuple(py, s)
    }

    /// `(depth, oldest_age_seconds_or_None)`.
    fn queue_stats(&self, py: Python<'_>) -> (usize, Option<f64>) {
        let c = self.core();
        let q = py.detach(move || c.queue_stats());
        (q.depth, q.oldest_age.map(|d| d.as_secs_f64()))
    }

    // ----- blocking -----

    fn connect(&self, py: Python<'_>) -> PyResult<()> {
        let c = self.core();
        self.blocking(py, async move { c.connect().await })
    }

    fn close(&self, py: Python<'_>) -> PyResult<()> {
        if self.check().is_err() {
            return Ok(()); // nothing to close in a forked child
        }
        let c = self.core();
        self.blocking(py, async move {
            c.close().await;
            Ok(())
        })
    }

    #[pyo3(signature = (output, message))]
    fn send_to_output(
        &self,
        py: Python<'_>,
        output: String,
        message: &Bound<'_, PyAny>,
    ) -> PyResult<()> {
        let m = extract_message(py, message)?;
        let c = self.core();
        self.blocking(
            py,
            async move { c.send_message_to_output(&output, m).await },
        )
    }

    fn send(&self, py: Python<'_>, message: &Bound<'_, PyAny>) -> PyResult<()> {
        let m = extract_message(py, message)?;
        let c = self.core();
        self.blocking(py, async move { c.send_message(m).await })
    }

    /// One entry per message: None (sent) or the exception.
    fn send_batch<'py>(
        &self,
        py: Python<'py>,
        output: String,
        messages: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let ms = messages_arg(py, messages)?;
        if self.client.is_closed() {
            return Err(to_py(py, Error::closed()));
        }
        let c = self.core();
        let rs = self.blocking(py, async move {
            Ok(c.send_messages_to_output(&output, ms).await)
        })?;
        batch_to_py(py, rs)
    }

    /// `None` once closed, `[]` on timeout, else up to `max` event tuples.
    #[pyo3(signature = (timeout = None, max = 64))]
    fn next_events<'py>(
        &self,
        py: Python<'py>,
        timeout: Option<f64>,
        max: usize,
    ) -> PyResult<Bound<'py, PyAny>> {
        let timeout = timeout.map(|t| secs_arg(t, "timeout")).transpose()?;
        self.check().py_err(py)?;
        if self.client.is_closed() {
            return Ok(py.None().into_bound(py));
        }
        let c = self.core();
        let (tx, mut rx) = mpsc::sync_channel(1);
        let task = self.client.runtime_handle().spawn(async move {
            let _ = tx.send(next_events(c, timeout, max).await);
        });
        loop {
            let (back, r) = py.detach(move || {
                let r = rx.recv_timeout(SIGNAL_POLL);
                (rx, r)
            });
            rx = back;
            match r {
                Ok(evs) => return events_to_py(py, evs),
                Err(RecvTimeoutError::Timeout) => {
                    if let Err(e) = py.check_signals() {
                        task.abort();
                        return Err(e);
                    }
                    if self.client.is_closed() {
                        task.abort();
                        return Ok(py.None().into_bound(py));
                    }
                }
                Err(RecvTimeoutError::Disconnected) => return Ok(py.None().into_bound(py)),
            }
        }
    }

    /// Events already waiting (no wait): a list, or None once closed.
    #[pyo3(signature = (max = 64))]
    fn try_next_events<'py>(&self, py: Python<'py>, max: usize) -> PyResult<Bound<'py, PyAny>> {
        self.check().py_err(py)?;
        if self.client.is_closed() {
            return Ok(py.None().into_bound(py));
        }
        let mut out = Vec::new();
        while out.len() < max {
            match self.client.try_next_event() {
                Some(e) => out.push(e),
                None => break,
            }
        }
        events_to_py(py, Some(out))
    }

    /// `(desired, reported)`.
    fn get_twin<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let c = self.core();
        let t = self.blocking(py, async move { c.get_twin().await })?;
        twin_to_py(py, t)
    }

    fn patch_reported(&self, py: Python<'_>, patch: &Bound<'_, PyAny>) -> PyResult<Option<i64>> {
        let v = convert::from_py(patch)?;
        let c = self.core();
        self.blocking(py, async move { c.patch_reported(v).await })
    }

    fn respond_method(
        &self,
        py: Python<'_>,
        request_id: String,
        status: i32,
        payload: &Bound<'_, PyAny>,
    ) -> PyResult<()> {
        let v = convert::from_py(payload)?;
        let c = self.core();
        self.blocking(
            py,
            async move { c.respond_method(&request_id, status, v).await },
        )
    }

    #[allow(clippy::too_many_arguments)]
    fn invoke_method<'py>(
        &self,
        py: Python<'py>,
        device_id: String,
        module_id: String,
        method: String,
        payload: &Bound<'py, PyAny>,
        response_timeout: f64,
        connect_timeout: f64,
    ) -> PyResult<Bound<'py, PyAny>> {
        let v = convert::from_py(payload)?;
        let rt = secs_arg(response_timeout, "response_timeout")?;
        let ct = secs_arg(connect_timeout, "connect_timeout")?;
        let c = self.core();
        let r = self.blocking(py, async move {
            c.invoke_method(&device_id, &module_id, &method, v, rt, ct)
                .await
        })?;
        method_response_to_py(py, r)
    }

    fn publish(
        &self,
        py: Python<'_>,
        topic: String,
        payload: &Bound<'_, PyAny>,
        qos: u8,
    ) -> PyResult<()> {
        let p = payload_arg(payload)?;
        let c = self.core();
        self.blocking(py, async move { c.publish(&topic, p, qos).await })
    }

    fn subscribe(&self, py: Python<'_>, topic_filter: String, qos: u8) -> PyResult<()> {
        let c = self.core();
        self.blocking(py, async move { c.subscribe(&topic_filter, qos).await })
    }

    fn unsubscribe(&self, py: Python<'_>, topic_filter: String) -> PyResult<()> {
        let c = self.core();
        self.blocking(py, async move { c.unsubscribe(&topic_filter).await })
    }

    // ----- completion callbacks (asyncio) -----

    fn connect_async(&self, py: Python<'_>, done: Py<PyAny>) -> PyResult<()> {
        let c = self.core();
        self.spawn(py, async move { c.connect().await }, done, none)
    }

    fn close_async(&self, py: Python<'_>, done: Py<PyAny>) -> PyResult<()> {
        if self.check().is_err() {
            return Python::attach(|py| done.call1(py, (true, py.None())).map(|_| ()));
        }
        let c = self.core();
        self.spawn(
            py,
            async move {
                c.close().await;
                Ok(())
            },
            done,
            none,
        )
    }

    fn send_to_output_async(
        &self,
        py: Python<'_>,
        output: String,
        message: &Bound<'_, PyAny>,
        done: Py<PyAny>,
    ) -> PyResult<()> {
        let m = extract_message(py, message)?;
        let c = self.core();
        self.spawn(
            py,
            async move { c.send_message_to_output(&output, m).await },
            done,
            none,
        )
    }

    fn send_async(
        &self,
        py: Python<'_>,
        message: &Bound<'_, PyAny>,
        done: Py<PyAny>,
    ) -> PyResult<()> {
        let m = extract_message(py, message)?;
        let c = self.core();
        self.spawn(py, async move { c.send_message(m).await }, done, none)
    }

    fn send_batch_async(
        &self,
        py: Python<'_>,
        output: String,
        messages: &Bound<'_, PyAny>,
        done: Py<PyAny>,
    ) -> PyResult<()> {
        let ms = messages_arg(py, messages)?;
        let c = self.core();
        self.spawn(
            py,
            async move {
                if c.is_closed() {
                    return Err(Error::closed());
                }
                Ok(c.send_messages_to_output(&output, ms).await)
            },
            done,
            batch_to_py,
        )
    }

    fn next_events_async(&self, py: Python<'_>, max: usize, done: Py<PyAny>) -> PyResult<()> {
        let c = self.core();
        self.spawn(
            py,
            async move { Ok(next_events(c, None, max).await) },
            done,
            events_to_py,
        )
    }

    fn get_twin_async(&self, py: Python<'_>, done: Py<PyAny>) -> PyResult<()> {
        let c = self.core();
        self.spawn(py, async move { c.get_twin().await }, done, twin_to_py)
    }

    fn patch_reported_async(
        &self,
        py: Python<'_>,
        patch: &Bound<'_, PyAny>,
        done: Py<PyAny>,
    ) -> PyResult<()> {
        let v = convert::from_py(patch)?;
        let c = self.core();
        self.spawn(
            py,
            async move { c.patch_reported(v).await },
            done,
            |py, v| Ok(v.into_pyobject(py)?.into_any()),
        )
    }

    fn respond_method_async(
        &self,
        py: Python<'_>,
        request_id: String,
        status: i32,
        payload: &Bound<'_, PyAny>,
        done: Py<PyAny>,
    ) -> PyResult<()> {
        let v = convert::from_py(payload)?;
        let c = self.core();
        self.spawn(
            py,
            async move { c.respond_method(&request_id, status, v).await },
            done,
            none,
        )
    }

    #[allow(clippy::too_many_arguments)]
    fn invoke_method_async(
        &self,
        py: Python<'_>,
        device_id: String,
        module_id: String,
        method: String,
        payload: &Bound<'_, PyAny>,
        response_timeout: f64,
        connect_timeout: f64,
        done: Py<PyAny>,
    ) -> PyResult<()> {
        let v = convert::from_py(payload)?;
        let rt = secs_arg(response_timeout, "response_timeout")?;
        let ct = secs_arg(connect_timeout, "connect_timeout")?;
        let c = self.core();
        self.spawn(
            py,
            async move {
                c.invoke_method(&device_id, &module_id, &method, v, rt, ct)
                    .await
            },
            done,
            method_response_to_py,
        )
    }

    fn publish_async(
        &self,
        py: Python<'_>,
        topic: String,
        payload: &Bound<'_, PyAny>,
        qos: u8,
        done: Py<PyAny>,
    ) -> PyResult<()> {
        let p = payload_arg(payload)?;
        let c = self.core();
        self.spawn(
            py,
            async move { c.publish(&topic, p, qos).await },
            done,
            none,
        )
    }

    fn subscribe_async(
        &self,
        py: Python<'_>,
        topic_filter: String,
        qos: u8,
        done: Py<PyAny>,
    ) -> PyResult<()> {
        let c = self.core();
        self.spawn(
            py,
            async move { c.subscribe(&topic_filter, qos).await },
            done,
            none,
        )
    }

    fn unsubscribe_async(
        &self,
        py: Python<'_>,
        topic_filter: String,
        done: Py<PyAny>,
    ) -> PyResult<()> {
        let c = self.core();
        self.spawn(
            py,
            async move { c.unsubscribe(&topic_filter).await },
            done,
            none,
        )
    }
}

/// Acknowledges a received message to the hub (once; later calls do nothing).
#[pyfunction]
pub fn ack(message: &Bound<'_, Message>) {
    if let Some(a) = message.borrow_mut().ack.take() {
        a.ack();
    }
}

/// Whether a received message still holds an unsent acknowledgement.
#[pyfunction]
pub fn is_pending_ack(message: &Bound<'_, Message>) -> bool {
    message.borrow().ack.is_some()
}
