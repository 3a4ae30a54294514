//! (stream P)
