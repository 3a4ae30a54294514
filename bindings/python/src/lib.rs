//! `edgemodule._native`: the pyo3 layer under the `edgemodule` Python package. Internal: only
//! the Python package (`edgemodule`, `edgemodule.aio`) is public API. One file per concept:
//! client calls, messages, JSON conversion, errors, log bridging.

use pyo3::prelude::*;

mod client;
mod convert;
mod error;
mod logging;
mod message;

#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<client::NativeClient>()?;
    m.add_class::<message::Message>()?;
    m.add_function(wrap_pyfunction!(client::ack, m)?)?;
    m.add_function(wrap_pyfunction!(client::is_pending_ack, m)?)?;
    m.add_function(wrap_pyfunction!(client::_after_fork_in_child, m)?)?;
    m.add_function(wrap_pyfunction!(logging::_init_logging, m)?)?;
    m.add_function(wrap_pyfunction!(logging::_set_log_level, m)?)?;
    m.add_function(wrap_pyfunction!(logging::_finalizing, m)?)?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
