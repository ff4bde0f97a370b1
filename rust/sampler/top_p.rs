//! The top-p cut over a whole row without sorting it: a histogram of the weights over their
//! float bits finds the bucket where the running mass reaches p, and only that bucket's
//! tokens are ranked exactly (ties by lower id first, see [`rank_order`]). When the cut is
//! among the many small weights, [`super::bracket`] (AVX-512) places it from a sample
//! instead of a histogram of the whole row. Past the cut, top-p is a threshold on the
//! weights ([`settle_ties`]).

use std::cmp::Ordering;

#[cfg(target_arch = "x86_64")]
use super::bracket::{self, BracketScratch};
use super::kernels;
use super::select::{rank_order, Cand};

/// Buckets of exp-weights by the top bits of their float representation: bucket =
/// `bits >> 20` (8 exponent bits + 3 mantissa bits), so weights in (0, 1] fall in buckets
/// 0..=1016 (of 1024), each spanning a factor of 2^(1/8), and a higher bucket means a larger weight.
pub(super) const BUCKET_SHIFT: u32 = 20;
pub(super) const BUCKETS: usize = 1024;
/// Weights below this (logits ~7 nats under the top at T = 1) are first left out of the
/// histogram.
pub const HIST_MIN: f32 = 1.0 / 1024.0;
/// Tokens per block of the vectorised "anything here?" tests.
const SPAN: usize = 16;

/// Buffers of the cut, kept by each worker thread between rows and calls.
#[derive(Default)]
pub struct TopPScratch {
    hist: Vec<f64>,
    sub: Vec<f64>,
    bucket: Vec<Cand>,
    #[cfg(target_arch = "x86_64")]
    bracket: BracketScratch,
}

#[inline(always)]
pub(super) fn key(w: f32) -> usize {
    (w.to_bits() >> BUCKET_SHIFT) as usize & (BUCKETS - 1)
}

/// The histogram of all `weights` into `hist`.
///
/// Four interleaved sub-histograms: neighbouring tokens often fall in the same bucket, and
/// with one table each add would wait for the previous store to the same slot.
#[inline(always)]
fn full_histogram(weights: &[f32], hist: &mut [f64], sub: &mut Vec<f64>) {
    sub.clear();
    sub.resize(4 * BUCKETS, 0.0);
    // Fixed-size tables indexed by a 10-bit key: no bounds checks in the loop.
    let mut tables = sub
        .chunks_exact_mut(BUCKETS)
        .filter_map(|t| <&mut [f64; BUCKETS]>::try_from(t).ok());
    let (Some(s0), Some(s1), Some(s2), Some(s3)) =
        (tables.next(), tables.next(), tables.next(), tables.next())
    else {
        return;
    };
    let quads = weights.chunks_exact(4);
    let tail = quads.remainder();
    for q in quads {
        s0[key(q[0])] += f64::from(q[0]);
        s1[key(q[1])] += f64::from(q[1]);
        s2[key(q[2])] += f64::from(q[2]);
        s3[key(q[3])] += f64::from(q[3]);
    }
    for &w in tail {
        s0[key(w)] += f64::from(w);
    }
    for (b, h) in hist.iter_mut().enumerate().take(BUCKETS) {
        *h = s0[b] + s1[b] + s2[b] + s3[b];
    }
}

/// The histogram of the weights `>= HIST_MIN`, in index order. Blocks without one (most of
/// a language model's row) are skipped after a vectorised max.
#[inline(always)]
fn high_histogram(weights: &[f32], hist: &mut [f64]) {
    for wb in weights.chunks(SPAN) {
        if wb.len() == SPAN && kernels::block_max(wb) < HIST_MIN {
            continue;
        }
        for &w in wb {
            if w >= HIST_MIN {
                hist[key(w)] += f64::from(w);
            }
        }
    }
}

/// The bucket where the running mass from the top, starting at `above`, reaches `target`,
/// and the mass above it.
pub(super) fn find_boundary(hist: &[f64], mut above: f64, target: f64) -> Option<(usize, f64)> {
    for b in (0..hist.len()).rev() {
        if above + hist[b] >= target && hist[b] > 0.0 {
            return Some((b, above));
        }
        above += hist[b];
    }
    None
}

simd_dispatch! {
    /// The last token top-p keeps when the whole row competes: the returned cut `c` means
    /// the kept set is every token ranked at or before `c` (see [`rank_order`]).
    ///
    /// `weights[i] = exp((x[i] - max) / T)`; `sums` is `(total, mass of weights >= HIST_MIN)`
    /// as [`kernels::exp_shifted_sums`] returns them.
    pub fn top_p_cut / top_p_cut_avx2 (x: &[f32], weights: &[f32], top_p: f64, sums: (f64, f64), scratch: &mut TopPScratch) -> Cand => top_p_cut_generic
}

#[inline(always)]
fn top_p_cut_generic(
    x: &[f32],
    weights: &[f32],
    top_p: f64,
    sums: (f64, f64),
    scratch: &mut TopPScratch,
) -> Cand {
    let TopPScratch {
        hist, sub, bucket, ..
    } = scratch;
    hist.clear();
    hist.resize(BUCKETS, 0.0);
    // In a language model's row most tokens are far below the top. When the weights >=
    // HIST_MIN already reach the target mass, only they go into the histogram.
    let (total, high) = sums;
    let target = top_p * total;
    let mut found = None;
    if high >= target {
        high_histogram(weights, hist);
        found = find_boundary(hist, 0.0, target);
    }
    // The cut is below HIST_MIN, among the many small weights: with AVX-512, placed from
    // a sample (the portable loops of its passes compiled to scalar code with a branch
    // per weight, slower than the whole-row histogram).
    #[cfg(target_arch = "x86_64")]
    if found.is_none() && crate::has_avx512() {
        let ceiling = key(HIST_MIN);
        let tail = &mut scratch.bracket;
        // SAFETY: the CPU has AVX-512.
        let tail_cut =
            unsafe { bracket::tail_cut(x, weights, top_p, total, high, ceiling, tail, bucket) };
        if let Some(b) = tail_cut {
            let needed = b.target - b.above;
            return rank_within_bucket(weights, bucket, needed, b.above, b.target, (b.max, b.min));
        }
    }

    let (boundary, above, keep_all, target) = match found {
        Some((b, above)) => (b, above, false, target),
        None => {
            full_histogram(weights, hist, sub);
            let total: f64 = hist.iter().sum();
            let target = top_p * total;
            match find_boundary(hist, 0.0, target) {
                Some((b, above)) => (b, above, false, target),
                // Rounding kept the running mass just under the target: everything is kept,
                // and the cut is the last token of the lowest non-empty bucket.
                None => (
                    hist.iter().position(|&m| m > 0.0).unwrap_or(0),
                    0.0,
                    true,
                    target,
                ),
            }
        }
    };
    let (bucket_max, bucket_min) = collect_bucket(x, weights, boundary, bucket);
    if keep_all {
        bucket.sort_unstable_by(rank_order);
        return last_or_none(bucket);
    }
    rank_within_bucket(
        weights,
        bucket,
        target - above,
        above,
        target,
        (bucket_max, bucket_min),
    )
}

/// Turns the cut into a threshold on the weights: returns the cut token's weight, after
/// zeroing the weights equal to it whose tokens rank after the cut (equal weights from
/// lower logits, or equal logits with higher ids). Every such token is in the bucket
/// [`top_p_cut`] ranked, left in `scratch`. The kept set is then the weights `>=` it.
pub fn settle_ties(weights: &mut [f32], cut: &Cand, scratch: &TopPScratch) -> f32 {
    let w_cut = match weights.get(cut.id as usize) {
        // `last_or_none`'s empty-bucket guard keeps nothing.
        Some(&w) if cut.value != f32::INFINITY => w,
        _ => return f32::INFINITY,
    };
    for c in &scratch.bucket {
        if let Some(w) = weights.get_mut(c.id as usize) {
            if *w == w_cut && rank_order(c, cut) == Ordering::Greater {
                *w = 0.0;
            }
        }
    }
    w_cut
}

/// The tokens of bucket `boundary` into `out`; returns their largest and smallest weight.
#[inline(always)]
fn collect_bucket(x: &[f32], weights: &[f32], boundary: usize, out: &mut Vec<Cand>) -> (f32, f32) {
    out.clear();
    // The bucket is the weight range [lo, hi) (weights are >= +0.0, whose bit order is their
    // numeric order).
    let lo = f32::from_bits((boundary as u32) << BUCKET_SHIFT);
    let hi = f32::from_bits(((boundary as u32) + 1) << BUCKET_SHIFT);
    let mut bucket_max = 0.0f32;
    let mut bucket_min = f32::INFINITY;
    let mut push = |i: usize, w: f32| {
        if let Some(&v) = x.get(i) {
            out.push(Cand::new(v, i as u32));
            bucket_max = bucket_max.max(w);
            bucket_min = bucket_min.min(w);
        }
    };
    let blocks = weights.chunks_exact(SPAN);
    let tail_start = weights.len() - blocks.remainder().len();
    for (b, wb) in blocks.enumerate() {
        // Most blocks have no token in the bucket: a vectorised count says so.
        if !kernels::any_in_range(wb, lo, hi) {
            continue;
        }
        let wb: &[f32; SPAN] = wb.try_into().unwrap_or(&[0.0; SPAN]);
        let mut mask = 0u32;
        for (j, &w) in wb.iter().enumerate() {
            mask |= u32::from((w >= lo) & (w < hi)) << j;
        }
        while mask != 0 {
            let j = mask.trailing_zeros() as usize;
            mask &= mask - 1;
            push(b * SPAN + j, wb[j]);
        }
    }
    for (i, &w) in weights.iter().enumerate().skip(tail_start) {
        if key(w) == boundary {
            push(i, w);
        }
    }
    (bucket_max, bucket_min)
}

fn last_or_none(bucket: &[Cand]) -> Cand {
    bucket.last().copied().unwrap_or(Cand {
        value: f32::INFINITY,
        id: 0,
    })
}

/// The token of `bucket` where the running mass (from `above`) reaches `target`.
///
/// The bucket's weights lie within a factor 2^(1/8), so the number of its tokens needed is
/// known within ~9%: at least `needed / max`, at most `needed / min`. Two selections isolate
/// that window, and only the window is sorted.
fn rank_within_bucket(
    weights: &[f32],
    bucket: &mut [Cand],
    needed: f64,
    above: f64,
    target: f64,
    (bucket_max, bucket_min): (f32, f32),
) -> Cand {
    let needed = needed.max(0.0);
    let n = bucket.len();
    let lo = ((needed / f64::from(bucket_max)).floor() as usize)
        .saturating_sub(1)
        .min(n);
    let hi = if bucket_min > 0.0 {
        ((needed / f64::from(bucket_min)).ceil() as usize + 1).clamp(lo, n)
    } else {
        n
    };
    if hi < n && hi > 0 {
        bucket.select_nth_unstable_by(hi, rank_order);
    }
    if lo > 0 && lo < hi {
        bucket[..hi].select_nth_unstable_by(lo, rank_order);
    }
    let weight = |c: &Cand| f64::from(weights.get(c.id as usize).copied().unwrap_or(0.0));
    let mut mass = above + bucket[..lo].iter().map(weight).sum::<f64>();
    bucket[lo..hi].sort_unstable_by(rank_order);
    // Past `hi` only through rounding: then the rest is sorted and walked too.
    for i in lo..n {
        if i == hi {
            bucket[hi..].sort_unstable_by(rank_order);
        }
        let c = bucket[i];
        mass += weight(&c);
        if mass >= target {
            return c;
        }
    }
    // Rounding left the target just out of reach: keep the whole bucket.
    last_or_none(bucket)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sampler::select::tests::{lcg_row, ranked};
    use crate::sampler::select::top_p_prefix;

    #[test]
    fn top_p_cut_matches_sorting_the_row() {
        let mut scratch = TopPScratch::default();
        for (n, p) in [
            (50257usize, 0.9f64),
            (1000, 0.5),
            (1000, 1e-9),
            (4000, 0.999),
            (300, 1.0),
        ] {
            // A heavy-tailed row too (logit -1.1 ln(rank), shuffled), where the weights >=
            // HIST_MIN miss the target and the full histogram runs.
            let zipf = lcg_row(n, 7)
                .iter()
                .map(|&u| -1.1 * (1.0 + (u + 10.0) / 20.0 * n as f32).ln())
                .collect();
            for x in [lcg_row(n, n as u64), zipf] {
                let max = x.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
                let mut w = vec![0.0; n];
                let sums = kernels::exp_sums(&x, max, 1.0, &mut w, HIST_MIN, &[]);
                let all = ranked(&x);
                let ws: Vec<f32> = all.iter().map(|c| w[c.id as usize]).collect();
                let want = all[top_p_prefix(&ws, p) - 1];
                let got = top_p_cut(&x, &w, p, sums, &mut scratch);
                assert_eq!(got, want, "n={n} p={p}");
                assert_eq!(got, top_p_cut_generic(&x, &w, p, sums, &mut scratch));
            }
        }
    }
}
