//! Byte-level BPE tokenization, as GPT-2, tiktoken and Hugging Face tokenizers do it.
//!
//! - [`chars`]: Unicode character classes for the split patterns;
//! - [`pretokenize`]: hand-written scanners for the known split patterns (+ fancy-regex);
//! - [`bpe`]: the rank-ordered merge;
//! - [`byte_level`]: GPT-2's byte ↔ printable-character table used by vocabulary files;
//! - [`load`]: vocabulary file formats;
//! - [`encoding`]: [`Encoding`], the whole tokenizer;
//! - [`stream`]: the incremental UTF-8 decoder for streaming.

pub mod bpe;
pub mod byte_level;
pub mod chars;
pub mod encoding;
pub mod load;
pub mod pretokenize;
pub mod stream;

pub use encoding::{Allowed, Encoding, MergeCache, Rules};
