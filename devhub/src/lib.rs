//! devhub: a local IoT Edge hub (stream L owns this file).
pub mod hub;
pub mod manifest;
pub mod routing;
