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

// Property checks for the fuzz targets and tests/fuzz_replay.rs (panics by design).
#[doc(hidden)]
pub mod fuzz_checks;

#[cfg(feature = "python")]
mod python;

pub use error::{Error, Result};
