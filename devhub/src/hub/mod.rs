//! (stream H)
