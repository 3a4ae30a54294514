//! edgemodule: the Azure IoT Edge ModuleClient semantics in one Rust core.
//!
//! Every protocol rule lives here once; the C, Python, Node, Java and C# packages are thin shells
//! over [`ModuleClient`]. See `../shared/DESIGN.md` for the shape and `PROTOCOL.md` for wire facts.

pub mod backoff;
pub mod error;
pub mod message;
pub mod protocol;

pub use error::{Error, ErrorKind, Result};
pub use message::Message;
