pub mod property_bag; pub mod topics; pub mod sas; pub mod connection_string; pub mod twin;
