//! AVX-512 builds of the passes over a top-p row: the exp pass, and the tail cut's passes
//! (see [`super::bracket`]), where each block of 16 weights becomes two compares into a
//! 16-bit mask, and only the set bits are visited one by one.
//!
//! Why not the portable loops: LLVM builds their per-lane masks (`mask |= cond << j`) one
//! lane at a time (measured: 22 µs for a pass over 50k weights, against ~3 here), and the
//! exp pass compiled to 24 vector instructions a block where 18 do (see
//! [`exp_shifted_sums`]). Each keeps the portable build's arithmetic, lanes and order of
//! additions, so both give the same bits.

use std::arch::x86_64::{
    __m512, __m512d, __mmask16, _kandn_mask16, _mm512_add_pd, _mm512_add_ps,
    _mm512_castps512_ps256, _mm512_castps_si512, _mm512_cmp_ps_mask, _mm512_cmplt_epu32_mask,
    _mm512_cvtps_pd, _mm512_extractf32x8_ps, _mm512_fmadd_ps, _mm512_loadu_ps, _mm512_mask_add_pd,
    _mm512_mask_add_ps, _mm512_mask_loadu_ps, _mm512_mask_max_ps, _mm512_mask_storeu_ps,
    _mm512_maskz_compress_ps, _mm512_maskz_loadu_ps, _mm512_maskz_scalef_ps, _mm512_max_ps,
    _mm512_mul_ps, _mm512_set1_epi32, _mm512_set1_ps, _mm512_setzero_pd, _mm512_setzero_ps,
    _mm512_storeu_pd, _mm512_storeu_ps, _mm512_sub_epi32, _mm512_sub_ps, _mm_prefetch, _CMP_GE_OQ,
    _CMP_GT_OQ, _CMP_UNORD_Q, _MM_HINT_T1,
};

use super::kernels::{self, lane_total, EXP_POLY, LN2_HI, LN2_LO, LOG2E, ROUND_MAGIC, SUM_BLOCK};

const LANES: usize = 16;
/// How far ahead (in floats: one 4 KB page) the exp pass prefetches the next row it reads.
/// The hardware's prefetchers stop at page boundaries, and a row not in cache (a batch larger
/// than the cache) then stalls the loads at each new page: 10-13 % of top-p at B = 128.
const AHEAD: usize = 1024;

/// [`kernels::exp_nonpositive`] of 16 lanes: the same operations, except that `2^n` scales
/// `y` in one `vscalef` (exact, as the portable multiply by the float `2^n` is: `n >= -126`
/// wherever the lane is kept) and the lanes at or below `EXP_MIN` are zeroed by its mask.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,popcnt,bmi1,bmi2,lzcnt")]
fn exp16(x: __m512) -> __m512 {
    let keep = _mm512_cmp_ps_mask::<_CMP_GT_OQ>(x, _mm512_set1_ps(kernels::EXP_MIN));
    // The lanes not kept may compute NaN from -inf: the mask drops them.
    let t = _mm512_fmadd_ps(x, _mm512_set1_ps(LOG2E), _mm512_set1_ps(ROUND_MAGIC));
    let n = _mm512_sub_ps(t, _mm512_set1_ps(ROUND_MAGIC));
    let r = _mm512_fmadd_ps(n, _mm512_set1_ps(-LN2_HI), x);
    let r = _mm512_fmadd_ps(n, _mm512_set1_ps(-LN2_LO), r);
    let mut p = _mm512_set1_ps(EXP_POLY[0]);
    for &c in &EXP_POLY[1..] {
        p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(c));
    }
    let y = _mm512_add_ps(
        _mm512_fmadd_ps(p, _mm512_mul_ps(r, r), r),
        _mm512_set1_ps(1.0),
    );
    _mm512_maskz_scalef_ps(keep, y, n)
}

/// [`kernels::exp_shifted_sums`]: the weights into `out`, and (the row's total, the mass of
/// the weights `>= high`) in the same blocks of [`SUM_BLOCK`], lanes and order as the
/// portable build. `SCALED`: whether to multiply by `inv_t` (at T = 1 the multiply is by 1,
/// exact, and skipped).
///
/// Meanwhile `next` (the row this thread takes next) is read into cache, 16 floats per 16
/// weights. With `SCAN`, those 16 are also loaded, and the last value is the max of `next`
/// (see [`kernels::scan`]): `None` when `next` is not as long as `x`, or holds a NaN or an
/// infinity (whose row the caller then scans). Without, they are prefetched.
///
/// # Safety
/// The CPU must have AVX-512 (see [`crate::has_avx512`]).
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,popcnt,bmi1,bmi2,lzcnt")]
pub unsafe fn exp_shifted_sums<const SCALED: bool, const SCAN: bool>(
    x: &[f32],
    max: f32,
    inv_t: f32,
    out: &mut [f32],
    high: f32,
    next: &[f32],
) -> (f64, f64, Option<f32>) {
    let (max_v, inv_v, high_v) = (
        _mm512_set1_ps(max),
        _mm512_set1_ps(inv_t),
        _mm512_set1_ps(high),
    );
    let neg_inf = _mm512_set1_ps(f32::NEG_INFINITY);
    let (mut total, mut above) = (0.0f64, 0.0f64);
    let len = x.len().min(out.len());
    // A `next` of another length (none, past the last row) is not read: the prefetch reads
    // the row's own line instead.
    let whole = next.len() == len;
    let fetch = if whole { next } else { x };
    let scan = SCAN && whole;
    // The scan of `next`: its lanes' max, and the sum of its values times 0, which is NaN
    // exactly when a value is NaN or infinite.
    let (mut next_max, mut check) = (neg_inf, _mm512_setzero_ps());
    let zero = _mm512_setzero_ps();
    let weight = |v: __m512| {
        let s = _mm512_sub_ps(v, max_v);
        exp16(if SCALED { _mm512_mul_ps(s, inv_v) } else { s })
    };
    let mut i = 0;
    while i < len {
        let end = (i + SUM_BLOCK).min(len);
        let (mut all, mut big) = (_mm512_setzero_ps(), _mm512_setzero_ps());
        let mut add = |w: __m512| {
            all = _mm512_add_ps(all, w);
            big = _mm512_mask_add_ps(big, _mm512_cmp_ps_mask::<_CMP_GE_OQ>(w, high_v), big, w);
        };
        while i + LANES <= end {
            // SAFETY: `i + 16 <= len` floats of `x`, `out` and `fetch`; a prefetch reads
            // nothing.
            unsafe {
                if scan {
                    // Past the row's end it names the rows after it, or memory that is not
                    // ours: a prefetch loads nothing into registers and never faults.
                    _mm_prefetch::<_MM_HINT_T1>(fetch.as_ptr().wrapping_add(i + AHEAD).cast());
                    let n = _mm512_loadu_ps(fetch.as_ptr().add(i));
                    next_max = _mm512_max_ps(n, next_max);
                    check = _mm512_fmadd_ps(n, zero, check);
                } else {
                    _mm_prefetch::<_MM_HINT_T1>(fetch.as_ptr().add(i).cast());
                }
                let w = weight(_mm512_loadu_ps(x.as_ptr().add(i)));
                _mm512_storeu_ps(out.as_mut_ptr().add(i), w);
                add(w);
            }
            i += LANES;
        }
        if i < end {
            // The row's last, partial block: the lanes past the end read -inf (weight +0.0,
            // which adds nothing, as the portable build adds nothing there).
            let k: __mmask16 = (1u16 << (end - i)) - 1;
            // SAFETY: the mask covers `end - i < 16` floats, inside `x`, `out` and `fetch`.
            unsafe {
                if scan {
                    let n = _mm512_maskz_loadu_ps(k, fetch.as_ptr().add(i));
                    next_max = _mm512_mask_max_ps(next_max, k, n, next_max);
                    check = _mm512_fmadd_ps(n, zero, check);
                }
                let w = weight(_mm512_mask_loadu_ps(neg_inf, k, x.as_ptr().add(i)));
                _mm512_mask_storeu_ps(out.as_mut_ptr().add(i), k, w);
                add(w);
            }
            i = end;
        }
        total += f64::from(lane_total(&lanes(all)));
        above += f64::from(lane_total(&lanes(big)));
    }
    let finite = _mm512_cmp_ps_mask::<_CMP_UNORD_Q>(check, check) == 0;
    // `_mm512_max_ps(n, acc)` keeps `acc` where `n` is NaN, as `scan` does; no lane holds
    // NaN here, so the order of the lanes' max does not matter.
    let next_max = (scan && finite).then(|| {
        lanes(next_max)
            .into_iter()
            .fold(f32::NEG_INFINITY, f32::max)
    });
    (total, above, next_max)
}

/// The 16 lanes of `v`.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,popcnt,bmi1,bmi2,lzcnt")]
fn lanes(v: __m512) -> [f32; LANES] {
    let mut out = [0.0f32; LANES];
    // SAFETY: `out` holds the 16 floats written.
    unsafe { _mm512_storeu_ps(out.as_mut_ptr(), v) };
    out
}

/// The 16 lanes of two f64 accumulators, added in lane order (as the portable build does).
#[inline]
#[target_feature(enable = "avx512f")]
fn lane_sum(lo: __m512d, hi: __m512d) -> f64 {
    let mut lanes = [0.0f64; LANES];
    let (a, b) = lanes.split_at_mut(8);
    // SAFETY: each half holds the 8 doubles written.
    unsafe {
        _mm512_storeu_pd(a.as_mut_ptr(), lo);
        _mm512_storeu_pd(b.as_mut_ptr(), hi);
    }
    lanes.iter().sum()
}

/// [`super::bracket`]'s `collect` over whole blocks: (exact mass of the weights `>= hi`,
/// exact total), and the weights in `[lo, hi)` appended to `inside`, in order, with each
/// block's mask of them in `masks` and the count before it in `starts` (their ids: see
/// `Inside::id` in [`super::bracket`]). They are packed with a compress and an unconditional
/// store, not a branch per block: how many of a block are inside varies at random, and
/// mispredicted branches cost more than the pass. The ids are not packed too: the
/// compresses share one port with the compares, and only a handful of ids are ever
/// needed.
///
/// # Safety
/// The CPU must have AVX-512 F and DQ (see [`crate::has_avx512`]). (The bracket must also
/// have `0 < lo <= hi`, for the result to be right.)
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,popcnt,bmi1,bmi2,lzcnt")]
pub unsafe fn collect(
    weights: &[f32],
    lo: f32,
    hi: f32,
    inside: &mut Vec<f32>,
    masks: &mut Vec<u16>,
    starts: &mut Vec<u32>,
) -> (f64, f64) {
    let hi_v = _mm512_set1_ps(hi);
    // Weights are >= +0.0 (never -0.0 or NaN), whose bits are in numeric order: `lo <= w <
    // hi` is one unsigned compare of `bits(w) - bits(lo)` against the bracket's width.
    let (lo_bits, width) = (
        _mm512_set1_epi32(lo.to_bits() as i32),
        _mm512_set1_epi32(hi.to_bits().wrapping_sub(lo.to_bits()) as i32),
    );
    let (mut tot0, mut tot1) = (_mm512_setzero_pd(), _mm512_setzero_pd());
    let (mut ab0, mut ab1) = (_mm512_setzero_pd(), _mm512_setzero_pd());
    let blocks = weights.len() / LANES;
    // Room for every weight plus one block: each store writes 16 floats.
    inside.reserve(weights.len() + LANES);
    masks.reserve(blocks);
    starts.reserve(blocks);
    let (start, block0) = (inside.len(), masks.len());
    let out = inside.spare_capacity_mut().as_mut_ptr().cast::<f32>();
    let (mask_out, start_out) = (
        masks.spare_capacity_mut().as_mut_ptr().cast::<u16>(),
        starts.spare_capacity_mut().as_mut_ptr().cast::<u32>(),
    );
    let mut n = 0usize;
    for (b, wb) in weights.chunks_exact(LANES).enumerate() {
        // SAFETY: `wb` holds the 16 floats read.
        let w = unsafe { _mm512_loadu_ps(wb.as_ptr()) };
        let k_hi = _mm512_cmp_ps_mask::<_CMP_GE_OQ>(w, hi_v);
        let k_in =
            _mm512_cmplt_epu32_mask(_mm512_sub_epi32(_mm512_castps_si512(w), lo_bits), width);
        let (w0, w1) = (
            _mm512_cvtps_pd(_mm512_castps512_ps256(w)),
            _mm512_cvtps_pd(_mm512_extractf32x8_ps::<1>(w)),
        );
        tot0 = _mm512_add_pd(tot0, w0);
        tot1 = _mm512_add_pd(tot1, w1);
        ab0 = _mm512_mask_add_pd(ab0, k_hi as u8, ab0, w0);
        ab1 = _mm512_mask_add_pd(ab1, (k_hi >> 8) as u8, ab1, w1);
        // SAFETY: n <= weights already read, so n + 16 values fit in the reserved room, and
        // `b < blocks` in the rooms for masks and starts.
        unsafe {
            _mm512_storeu_ps(out.add(n), _mm512_maskz_compress_ps(k_in, w));
            *mask_out.add(b) = k_in;
            *start_out.add(b) = (start + n) as u32;
        }
        n += k_in.count_ones() as usize;
    }
    // SAFETY: the first n values of `inside`'s spare room, and one per block of the others,
    // were written above.
    unsafe {
        inside.set_len(start + n);
        masks.set_len(block0 + blocks);
        starts.set_len(block0 + blocks);
    }
    (lane_sum(ab0, ab1), lane_sum(tot0, tot1))
}

/// `visit(i)` for every `i` of the whole blocks of `w` with `lo <= w[i] < hi`, in order;
/// returns where the whole blocks end.
///
/// # Safety
/// The CPU must have AVX-512 F (see [`crate::has_avx512`]).
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,popcnt,bmi1,bmi2,lzcnt")]
pub unsafe fn in_range(w: &[f32], lo: f32, hi: f32, mut visit: impl FnMut(usize)) -> usize {
    let (lo_v, hi_v) = (_mm512_set1_ps(lo), _mm512_set1_ps(hi));
    let blocks = w.chunks_exact(LANES);
    let end = w.len() - blocks.remainder().len();
    for (b, wb) in blocks.enumerate() {
        // SAFETY: `wb` holds the 16 floats read.
        let v = unsafe { _mm512_loadu_ps(wb.as_ptr()) };
        let k_hi = _mm512_cmp_ps_mask::<_CMP_GE_OQ>(v, hi_v);
        let mut mask = u32::from(_kandn_mask16(
            k_hi,
            _mm512_cmp_ps_mask::<_CMP_GE_OQ>(v, lo_v),
        ));
        while mask != 0 {
            visit(b * LANES + mask.trailing_zeros() as usize);
            mask &= mask - 1;
        }
    }
    end
}
