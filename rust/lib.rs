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
/// AVX-512 when the CPU has it (see [`has_avx512`]), for AVX2 + FMA (as `$avx`) when it has
/// those, and as plain x86-64 (SSE2) code otherwise. With `avx2_only` first (before any doc
/// comment), the AVX-512 build is left out, for loops that LLVM compiles worse with it
/// (measured per kernel: it sometimes splits 16 lanes into 128-bit pieces).
///
/// Why: the wheel targets every x86-64 CPU, but the passes over the row run about 3x
/// faster with 8-wide vectors, and faster again with 16-wide ones. The result is the same
/// either way: the kernels fix their lanes and their order of additions in the source, and
/// no fused multiply-add is introduced (Rust never contracts `a * b + c`).
macro_rules! simd_dispatch {
    (avx2_only $($rest:tt)*) => { simd_dispatch!(@levels false, $($rest)*); };
    (@levels $wide:literal, $(#[$m:meta])* $vis:vis fn $name:ident / $avx:ident ($($arg:ident : $ty:ty),*) $(-> $ret:ty)? => $generic:path) => {
        #[cfg(target_arch = "x86_64")]
        #[target_feature(enable = "avx2,fma")]
        fn $avx($($arg: $ty),*) $(-> $ret)? {
            $generic($($arg),*)
        }

        $(#[$m])*
        $vis fn $name($($arg: $ty),*) $(-> $ret)? {
            // The same body once more for AVX-512 (16 f32 lanes a register): nested, so that
            // the invocations need no third name.
            #[cfg(target_arch = "x86_64")]
            #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,popcnt,bmi1,bmi2,lzcnt")]
            fn avx512($($arg: $ty),*) $(-> $ret)? {
                $generic($($arg),*)
            }
            #[cfg(target_arch = "x86_64")]
            if $wide && $crate::has_avx512() {
                // SAFETY: the CPU has every feature the callee enables.
                return unsafe { avx512($($arg),*) };
            }
            #[cfg(target_arch = "x86_64")]
            if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
                // SAFETY: the CPU has AVX2 and FMA, the only requirement of the callee.
                return unsafe { $avx($($arg),*) };
            }
            $generic($($arg),*)
        }
    };
    ($($rest:tt)*) => { simd_dispatch!(@levels true, $($rest)*); };
}

/// Whether the CPU has the AVX-512 subsets the kernels are compiled for (F, BW, VL, DQ),
/// and the bit instructions that come with them.
/// `GPT_HYBRID_NO_AVX512=1` (read once) turns them off, to compare the builds.
#[cfg(target_arch = "x86_64")]
#[doc(hidden)]
pub fn has_avx512() -> bool {
    static HAS: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *HAS.get_or_init(|| {
        std::env::var_os("GPT_HYBRID_NO_AVX512").is_none_or(|v| v.is_empty() || v == "0")
            && std::is_x86_feature_detected!("avx512f")
            && std::is_x86_feature_detected!("avx512bw")
            && std::is_x86_feature_detected!("avx512vl")
            && std::is_x86_feature_detected!("avx512dq")
            // Every CPU with AVX-512 has these; checked all the same, since the kernels are
            // compiled for them (a mask's `count_ones` is otherwise a dozen instructions).
            && std::is_x86_feature_detected!("popcnt")
            && std::is_x86_feature_detected!("bmi1")
            && std::is_x86_feature_detected!("bmi2")
            && std::is_x86_feature_detected!("lzcnt")
    })
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
