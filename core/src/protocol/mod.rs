pub mod connection_string;
pub mod property_bag;
pub mod sas;
pub mod topics;
pub mod twin;
