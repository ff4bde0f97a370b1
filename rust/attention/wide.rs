//! The decode attention of heads of 64 dimensions (all of GPT-2's) with AVX-512: a head's
//! query, and its running weighted sum of values, are four 16-lane registers each.
//!
//! Why not the portable loops: LLVM turns their 16-lane dot products into pairs of 2-lane
//! operations when it may use AVX-512 (measured: 13.7 GB/s of cache read against 20 for
//! the AVX2 build, and 28 for a plain copy). Here each position costs four fused
//! multiply-adds and one reduction per head, and the pass is bound by memory again.
//!
//! The arithmetic differs from the portable build's (fused multiply-adds, another order of
//! additions), so results differ in the last bits between machines with and without
//! AVX-512. On one machine every row takes the same path, which is what batch invariance
//! needs.

use std::arch::x86_64::{
    __m512, _mm512_fmadd_ps, _mm512_loadu_ps, _mm512_mul_ps, _mm512_reduce_add_ps, _mm512_set1_ps,
    _mm512_setzero_ps, _mm512_storeu_ps, _mm_prefetch, _MM_HINT_T0,
};

use crate::sampler::kernels::exp_nonpositive;

/// Dimensions of a head this kernel takes.
pub const HEAD_DIM: usize = 64;
const LANES: usize = 16;
const CHUNKS: usize = HEAD_DIM / LANES;

/// 16 floats from `x[at..]`; zeros if `x` is too short (never, by the callers' slicing).
#[inline]
#[target_feature(enable = "avx512f")]
fn load(x: &[f32], at: usize) -> __m512 {
    match x.get(at..at + LANES) {
        // SAFETY: the slice holds the 16 floats read.
        Some(s) => unsafe { _mm512_loadu_ps(s.as_ptr()) },
        None => _mm512_setzero_ps(),
    }
}

/// Asks for the cache lines of `x[at..at + HEAD_DIM]` (nothing if out of range).
#[inline]
#[target_feature(enable = "avx512f")]
fn prefetch_row(x: &[f32], at: usize) {
    if let Some(row) = x.get(at..at + HEAD_DIM) {
        for c in 0..CHUNKS {
            // SAFETY: the address is inside `row`; a prefetch reads nothing into registers.
            unsafe { _mm_prefetch::<_MM_HINT_T0>(row.as_ptr().add(c * LANES).cast()) };
        }
    }
}

/// Attention of `N` heads of one row over their first `n` positions (`k[j]`, `v[j]`: `n`
/// rows of [`HEAD_DIM`]); `q[j]` and `out[j]` hold [`HEAD_DIM`] floats. `next[j]`: keys
/// read after these (fetched into cache meanwhile).
///
/// # Safety
/// The CPU must have AVX-512 F, BW, VL and DQ (see [`crate::has_avx512`]).
// Indexes run over heads (j), positions (i) and chunks (c) of parallel arrays at once.
#[allow(clippy::needless_range_loop)]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,popcnt,bmi1,bmi2,lzcnt")]
pub unsafe fn attend_group<const N: usize>(
    q: [&[f32]; N],
    k: [&[f32]; N],
    v: [&[f32]; N],
    next: [&[f32]; N],
    scale: f32,
    scores: &mut [Vec<f32>; N],
    out: [&mut [f32]; N],
) {
    let n = k[0].len() / HEAD_DIM;
    let mut qv = [[_mm512_setzero_ps(); CHUNKS]; N];
    for j in 0..N {
        for c in 0..CHUNKS {
            qv[j][c] = load(q[j], c * LANES);
        }
    }
    let mut max = [f32::NEG_INFINITY; N];
    let mut nan = [false; N];
    for s in scores.iter_mut() {
        s.clear();
        s.resize(n, 0.0);
    }
    for i in 0..n {
        let at = i * HEAD_DIM;
        for j in 0..N {
            // The values of this position are read next pass: fetched now, while the
            // keys stream in, they are in cache then.
            prefetch_row(v[j], at);
            let mut acc = _mm512_mul_ps(load(k[j], at), qv[j][0]);
            for c in 1..CHUNKS {
                acc = _mm512_fmadd_ps(load(k[j], at + c * LANES), qv[j][c], acc);
            }
            let s = _mm512_reduce_add_ps(acc) * scale;
            // `max` skips a NaN; the sum below carries it to the output instead.
            nan[j] |= s.is_nan();
            max[j] = max[j].max(s);
            scores[j][i] = s;
        }
    }
    let mut inv = [0.0f32; N];
    for j in 0..N {
        inv[j] = if nan[j] {
            f32::NAN
        } else {
            1.0 / exp_and_sum(&mut scores[j], max[j])
        };
    }
    let mut acc = [[_mm512_setzero_ps(); CHUNKS]; N];
    for i in 0..n {
        let at = i * HEAD_DIM;
        for j in 0..N {
            // The values are in cache (fetched during the scores pass): the memory is idle,
            // so the next group's keys are fetched now.
            prefetch_row(next[j], at);
            let p = _mm512_set1_ps(scores[j][i]);
            for c in 0..CHUNKS {
                acc[j][c] = _mm512_fmadd_ps(p, load(v[j], at + c * LANES), acc[j][c]);
            }
        }
    }
    for (j, o) in out.into_iter().enumerate() {
        let s = _mm512_set1_ps(inv[j]);
        for (c, chunk) in o.chunks_exact_mut(LANES).take(CHUNKS).enumerate() {
            // SAFETY: `chunk` holds the 16 floats written.
            unsafe { _mm512_storeu_ps(chunk.as_mut_ptr(), _mm512_mul_ps(acc[j][c], s)) };
        }
    }
}

/// `s[i] = exp(s[i] - max)` (every `s[i] <= max`); returns their sum. Lanes of 16 so that
/// the loop vectorises.
#[inline(always)]
fn exp_and_sum(s: &mut [f32], max: f32) -> f32 {
    let mut acc = [0.0f32; LANES];
    let mut chunks = s.chunks_exact_mut(LANES);
    for c in &mut chunks {
        for l in 0..LANES {
            c[l] = exp_nonpositive(c[l] - max);
            acc[l] += c[l];
        }
    }
    let mut total = 0.0f32;
    for x in chunks.into_remainder() {
        *x = exp_nonpositive(*x - max);
        total += *x;
    }
    acc.iter().sum::<f32>() + total
}
