//! (stream R)
