//! Python bindings (placeholder until written).
