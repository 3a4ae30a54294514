//! `edgemodule.Message`: a native class so sending and receiving convert fields directly
//! (no per-field Python attribute lookups on the hot path). Close to azure-iot-device's
//! `Message`: `data`, `custom_properties`, `message_id`, `correlation_id`, `content_type`,
//! `content_encoding`, `user_id`, `expiry_time_utc`, `input_name`, `output_name`.

use edgemodule::AckHandle;
use pyo3::exceptions::PyTypeError;
use pyo3::prelude::*;
use pyo3::types::{PyByteArray, PyBytes, PyDict, PyFloat, PyInt, PyMemoryView, PyString};

use crate::convert::type_name;

/// A message sent to an output or received on an input.
///
/// ``data`` is bytes (a ``str`` is encoded as UTF-8); ``custom_properties`` is a dict of
/// application properties (str keys; str values, or int/float/bool which are sent as their
/// ``str()``, or None for a property without value); the other fields are the IoT Hub system
/// properties. ``input_name`` and ``connection_device_id`` / ``connection_module_id`` are set on
/// received messages.
#[pyclass(module = "edgemodule", subclass)]
pub struct Message {
    data: Py<PyBytes>,
    custom_properties: Py<PyDict>,
    /// Message id (``$.mid``).
    #[pyo3(get, set)]
    pub message_id: Option<String>,
    /// Correlation id (``$.cid``).
    #[pyo3(get, set)]
    pub correlation_id: Option<String>,
    /// User id (``$.uid``).
    #[pyo3(get, set)]
    pub user_id: Option<String>,
    /// Content type (``$.ct``), e.g. ``application/json``; routes need it to query the body.
    #[pyo3(get, set)]
    pub content_type: Option<String>,
    /// Content encoding (``$.ce``), e.g. ``utf-8``.
    #[pyo3(get, set)]
    pub content_encoding: Option<String>,
    /// Absolute expiry time, ISO-8601 UTC (``$.exp``).
    #[pyo3(get, set)]
    pub expiry_time_utc: Option<String>,
    /// Creation time, ISO-8601 UTC (``$.ctime``).
    #[pyo3(get, set)]
    pub creation_time_utc: Option<String>,
    /// Received messages: the input the message arrived on.
    #[pyo3(get, set)]
    pub input_name: Option<String>,
    /// The output a message was sent to (informational; ``send_message_to_output`` names it).
    #[pyo3(get, set)]
    pub output_name: Option<String>,
    /// Received messages: the sender's device id (``$.cdid``).
    #[pyo3(get, set)]
    pub connection_device_id: Option<String>,
    /// Received messages: the sender's module id (``$.cmid``).
    #[pyo3(get, set)]
    pub connection_module_id: Option<String>,
    /// Received messages: acknowledges the message to the hub (taken once).
    pub(crate) ack: Option<AckHandle>,
}

fn to_bytes<'py>(data: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyBytes>> {
    let py = data.py();
    if let Ok(b) = data.cast::<PyBytes>() {
        return Ok(b.clone());
    }
    if let Ok(s) = data.cast::<PyString>() {
        return Ok(PyBytes::new(py, s.to_cow()?.as_bytes()));
    }
    if data.is_instance_of::<PyByteArray>() || data.is_instance_of::<PyMemoryView>() {
        return Ok(py
            .get_type::<PyBytes>()
            .call1((data,))?
            .cast_into::<PyBytes>()?);
    }
    Err(PyTypeError::new_err(format!(
        "Message data must be bytes, bytearray, memoryview or str, not {}",
        type_name(data)
    )))
}

#[pymethods]
impl Message {
    #[new]
    #[pyo3(signature = (data = None, message_id = None, content_encoding = None, content_type = None, output_name = None, *, correlation_id = None, user_id = None, custom_properties = None, expiry_time_utc = None, creation_time_utc = None))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        data: Option<&Bound<'_, PyAny>>,
        message_id: Option<String>,
        content_encoding: Option<String>,
        content_type: Option<String>,
        output_name: Option<String>,
        correlation_id: Option<String>,
        user_id: Option<String>,
        custom_properties: Option<&Bound<'_, PyAny>>,
        expiry_time_utc: Option<String>,
        creation_time_utc: Option<String>,
    ) -> PyResult<Self> {
        let data = match data {
            None => PyBytes::new(py, b""),
            Some(d) => to_bytes(d)?,
        };
        let props = match custom_properties {
            None => PyDict::new(py),
            Some(p) => dict_copy(p)?,
        };
        Ok(Message {
            data: data.unbind(),
            custom_properties: props.unbind(),
            message_id,
            correlation_id,
            user_id,
            content_type,
            content_encoding,
            expiry_time_utc,
            creation_time_utc,
            input_name: None,
            output_name,
            connection_device_id: None,
            connection_module_id: None,
            ack: None,
        })
    }

    /// The body, as bytes.
    #[getter]
    fn data(&self, py: Python<'_>) -> Py<PyBytes> {
        self.data.clone_ref(py)
    }

    #[setter]
    fn set_data(&mut self, data: &Bound<'_, PyAny>) -> PyResult<()> {
        self.data = to_bytes(data)?.unbind();
        Ok(())
    }

    /// Application properties (a dict you may change in place).
    #[getter]
    fn custom_properties(&self, py: Python<'_>) -> Py<PyDict> {
        self.custom_properties.clone_ref(py)
    }

    #[setter]
    fn set_custom_properties(&mut self, props: &Bound<'_, PyAny>) -> PyResult<()> {
        self.custom_properties = dict_copy(props)?.unbind();
        Ok(())
    }

    /// Size the hub checks against its 256 KB limit: body plus encoded properties.
    fn get_size(&self, py: Python<'_>) -> PyResult<usize> {
        Ok(self.to_core(py)?.wire_size())
    }

    fn __repr__(&self, py: Python<'_>) -> String {
        let data = self.data.bind(py).as_bytes();
        let shown = if data.len() > 64 {
            format!("<{} bytes>", data.len())
        } else {
            format!("{:?}", String::from_utf8_lossy(data))
        };
        format!(
            "Message(data={shown}, message_id={:?}, input_name={:?}, custom_properties={})",
            self.message_id,
            self.input_name,
            self.custom_properties
                .bind(py)
                .repr()
                .map(|r| r.to_string())
                .unwrap_or_default()
        )
    }

    fn __str__(&self, py: Python<'_>) -> String {
        String::from_utf8_lossy(self.data.bind(py).as_bytes()).into_owned()
    }
}

fn dict_copy<'py>(p: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyDict>> {
    let d = p.cast::<PyDict>().map_err(|_| {
        PyTypeError::new_err(format!(
            "custom_properties must be a dict, not {}",
            type_name(p)
        ))
    })?;
    d.copy()
}

fn property_value(key: &str, v: &Bound<'_, PyAny>) -> PyResult<Option<String>> {
    if v.is_none() {
        return Ok(None);
    }
    if let Ok(s) = v.cast::<PyString>() {
        return Ok(Some(s.to_cow()?.into_owned()));
    }
    if v.is_instance_of::<PyInt>() || v.is_instance_of::<PyFloat>() {
        return Ok(Some(v.str()?.to_cow()?.into_owned()));
    }
    Err(PyTypeError::new_err(format!(
        "custom property {key:?} must be str, int, float, bool or None, not {}",
        type_name(v)
    )))
}

impl Message {
    /// The core message to send (copies the body).
    pub fn to_core(&self, py: Python<'_>) -> PyResult<edgemodule::Message> {
        let props = self.custom_properties.bind(py);
        let mut properties = Vec::with_capacity(props.len());
        for (k, v) in props.iter() {
            let key = k.cast::<PyString>().map_err(|_| {
                PyTypeError::new_err(format!(
                    "custom property keys must be str, not {}",
                    type_name(&k)
                ))
            })?;
            let key = key.to_cow()?.into_owned();
            let value = property_value(&key, &v)?;
            properties.push((key, value));
        }
        Ok(edgemodule::Message {
            body: self.data.bind(py).as_bytes().to_vec(),
            message_id: self.message_id.clone(),
            correlation_id: self.correlation_id.clone(),
            user_id: self.user_id.clone(),
            content_type: self.content_type.clone(),
            content_encoding: self.content_encoding.clone(),
            expiry_time_utc: self.expiry_time_utc.clone(),
            creation_time_utc: self.creation_time_utc.clone(),
            properties,
            input_name: None,
            connection_device_id: None,
            connection_module_id: None,
        })
    }

    /// A received message, holding its ack handle.
    pub fn from_core(
        py: Python<'_>,
        m: edgemodule::Message,
        ack: Option<AckHandle>,
    ) -> PyResult<Self> {
        let props = PyDict::new(py);
        for (k, v) in &m.properties {
            props.set_item(k, v.as_deref())?;
        }
        Ok(Message {
            data: PyBytes::new(py, &m.body).unbind(),
            custom_properties: props.unbind(),
            message_id: m.message_id,
            correlation_id: m.correlation_id,
            user_id: m.user_id,
            content_type: m.content_type,
            content_encoding: m.content_encoding,
            expiry_time_utc: m.expiry_time_utc,
            creation_time_utc: m.creation_time_utc,
            input_name: m.input_name,
            output_name: None,
            connection_device_id: m.connection_device_id,
            connection_module_id: m.connection_module_id,
            ack,
        })
    }
}

/// A message argument: a `Message`, or bytes/str for a message with only a body.
pub fn extract_message(py: Python<'_>, obj: &Bound<'_, PyAny>) -> PyResult<edgemodule::Message> {
    if let Ok(m) = obj.cast::<Message>() {
        return m.borrow().to_core(py);
    }
    if obj.is_instance_of::<PyBytes>()
        || obj.is_instance_of::<PyString>()
        || obj.is_instance_of::<PyByteArray>()
    {
        return Ok(edgemodule::Message::new(to_bytes(obj)?.as_bytes().to_vec()));
    }
    Err(PyTypeError::new_err(format!(
        "message must be an edgemodule.Message, bytes or str, not {}",
        type_name(obj)
    )))
}
