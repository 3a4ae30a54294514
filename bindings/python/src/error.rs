//! Core errors become Python exceptions in one place: the classes live in
//! `edgemodule/exceptions.py` (one subclass of `EdgeModuleError` per `ErrorKind`, found by the
//! stable code), so Python code, docs and stubs own them and this file only looks them up.

use edgemodule::{Error, ErrorKind};
use pyo3::exceptions::PyRuntimeError;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::PyDict;

static BY_CODE: PyOnceLock<Py<PyDict>> = PyOnceLock::new();

fn classes(py: Python<'_>) -> PyResult<&Bound<'_, PyDict>> {
    BY_CODE
        .get_or_try_init(py, || {
            let m = py.import("edgemodule.exceptions")?;
            Ok::<_, PyErr>(m.getattr("_BY_CODE")?.cast_into::<PyDict>()?.unbind())
        })
        .map(|d| d.bind(py))
}

/// The Python exception for a core error: `cls(message, status=...)`.
pub fn to_py(py: Python<'_>, e: Error) -> PyErr {
    let make = || -> PyResult<PyErr> {
        let cls = classes(py)?.get_item(e.kind.code())?.ok_or_else(|| {
            PyRuntimeError::new_err(format!("no exception class for {:?}", e.kind))
        })?;
        let kwargs = PyDict::new(py);
        kwargs.set_item("status", e.status)?;
        let value = cls.call((e.message.clone(),), Some(&kwargs))?;
        Ok(PyErr::from_value(value))
    };
    make().unwrap_or_else(|err| err)
}

/// Converts with the GIL held (the usual case on the calling thread).
pub trait IntoPyResult<T> {
    fn py_err(self, py: Python<'_>) -> PyResult<T>;
}

impl<T> IntoPyResult<T> for Result<T, Error> {
    fn py_err(self, py: Python<'_>) -> PyResult<T> {
        self.map_err(|e| to_py(py, e))
    }
}

/// The error for a client used in a process it was not created in (after `os.fork()`): the
/// core's threads do not exist there, so any wait would hang forever.
pub fn forked(created_pid: u32) -> Error {
    Error::new(
        ErrorKind::Internal,
        format!(
            "this client was created in process {created_pid} and cannot be used in the forked \
             child {}: its I/O threads do not exist here; create clients after fork (or use the \
             multiprocessing 'spawn' start method)",
            std::process::id()
        ),
    )
}
