//! devhub: a local IoT Edge hub (stream L owns this file).
pub mod hub;
pub mod manifest;
pub mod routing;

pub mod certs;
pub mod config;
pub mod http_util;
pub mod ready;
pub mod state;
pub mod tls;
pub mod workload;
pub mod listeners;
pub mod websocket;
