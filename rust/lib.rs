//! gpt_hybrid: the native core behind the `gpt_hybrid` Python package.
//!
//! Pure Rust modules (no pyo3 in them), unit-tested with `cargo test`:
//! - [`tokenizer`]: byte-level BPE (vocabulary formats, pretokenizers, merging, decoding);
//! - [`sampler`]: batched logits sampling with Hugging Face semantics;
//! - [`trainer`]: BPE training;
//! - [`attention`]: the decode step's attention over a key/value cache.
//!
//! The `python` feature adds [`python`], the only module that names pyo3 or numpy.

/// Defines `$name`, which runs the `#[inline(always)]` function `$generic` compiled for
/// AVX2 + FMA (as `$avx`) when the CPU has them, and as plain x86-64 (SSE2) code otherwise.
///
/// Why: the wheel targets every x86-64 CPU, but the passes over the row run about 3x
/// faster with 8-wide vectors. The result is the same either way (no fused multiply-add is
/// introduced: Rust never contracts `a * b + c`).
macro_rules! simd_dispatch {
    ($(#[$m:meta])* $vis:vis fn $name:ident / $avx:ident ($($arg:ident : $ty:ty),*) $(-> $ret:ty)? => $generic:path) => {
        #[cfg(target_arch = "x86_64")]
        #[target_feature(enable = "avx2,fma")]
        fn $avx($($arg: $ty),*) $(-> $ret)? {
            $generic($($arg),*)
        }

        $(#[$m])*
        $vis fn $name($($arg: $ty),*) $(-> $ret)? {
            #[cfg(target_arch = "x86_64")]
            if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
                // SAFETY: the CPU has AVX2 and FMA, the only requirement of the callee.
                return unsafe { $avx($($arg),*) };
            }
            $generic($($arg),*)
        }
    };
}

pub mod attention;
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
