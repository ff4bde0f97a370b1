//! gpt_hybrid: the native core behind the `gpt_hybrid` Python package.
//!
//! Pure Rust modules (no pyo3 in them), unit-tested with `cargo test`:
//! - [`tokenizer`]: byte-level BPE (vocabulary formats, pretokenizers, merging, decoding);
//! - [`sampler`]: batched logits sampling with Hugging Face semantics;
//! - [`trainer`]: BPE training.
//!
//! The `python` feature adds [`python`], the only module that names pyo3 or numpy.

pub mod error;
pub mod sampler;
pub mod tokenizer;
pub mod trainer;

#[cfg(feature = "python")]
mod python;

pub use error::{Error, Result};
