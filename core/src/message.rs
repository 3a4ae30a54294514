//! (stream P) placeholder until written
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Message;
