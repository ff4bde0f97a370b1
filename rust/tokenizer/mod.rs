//! Byte-level BPE tokenization.

pub mod chars;
pub mod pretokenize;
