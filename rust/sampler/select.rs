//! Exact selection without sorting the vocabulary: top-k with ties, and the top-p cut.
//!
//! Tokens are ordered by logit, highest first, and among equal logits by lower id first.
//! Top-k keeps every token tied with the k-th (as Hugging Face does); where top-p's boundary
//! falls inside a group of equal logits, the lower ids are kept (Hugging Face's unstable sort
//! keeps an arbitrary subset of the same size).

use std::cmp::Ordering;

/// A candidate token: its logit (with -0.0 made +0.0, so that bit order is numeric order) and id.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Cand {
    pub value: f32,
    pub id: u32,
}

impl Cand {
    pub fn new(value: f32, id: u32) -> Self {
        // x + 0.0 turns -0.0 into +0.0 and leaves every other non-NaN value alone.
        Cand {
            value: value + 0.0,
            id,
        }
    }
}

/// Highest logit first, then lowest id: a total order on NaN-free candidates.
pub fn rank_order(a: &Cand, b: &Cand) -> Ordering {
    b.value.total_cmp(&a.value).then(a.id.cmp(&b.id))
}

/// Every token whose logit is >= the k-th largest (`1 <= k < x.len()`), in rank order.
///
/// One pass with a running threshold: a buffer collects values at or above it; when the
/// buffer fills, a selection (`select_nth_unstable_by`, O(n)) finds the k-th value, drops
/// what is below it and raises the threshold. Most logits fail the first comparison, so the
/// pass costs about one compare per logit. A row of many ties grows the buffer instead.
pub fn top_k_with_ties(x: &[f32], k: usize, out: &mut Vec<Cand>) {
    out.clear();
    let k = k.max(1);
    if k.saturating_mul(8) <= x.len() / BLOCK_MAX_LEN {
        top_k_by_block_maxima(x, k, out);
        return;
    }
    let mut cap = (4 * k).max(1024);
    let mut threshold = f32::NEG_INFINITY;
    const BLOCK: usize = 64;
    for (block_no, block) in x.chunks(BLOCK).enumerate() {
        // Cheap vectorised test of the whole block before looking at single values.
        if block.len() == BLOCK && super::kernels::block_max(block) < threshold {
            continue;
        }
        let base = block_no * BLOCK;
        for (j, &v) in block.iter().enumerate() {
            if v >= threshold {
                out.push(Cand::new(v, (base + j) as u32));
            }
        }
        if out.len() >= cap {
            threshold = prune(out, k);
            if out.len() * 2 > cap {
                cap *= 2; // many ties with the k-th value: let the buffer grow
            }
        }
    }
    if out.len() > k {
        prune(out, k);
    }
    out.sort_unstable_by(rank_order);
}

const BLOCK_MAX_LEN: usize = 64;

/// Top-k through block maxima, for k small next to the row: the k-th largest of the maxima
/// of blocks of 64 is a lower bound of the k-th largest value (k blocks each hold a value at
/// or above it), so only the blocks whose maximum reaches it (about k of them) are read
/// value by value. Cost: one vectorised max pass, plus ~64k values.
fn top_k_by_block_maxima(x: &[f32], k: usize, out: &mut Vec<Cand>) {
    let blocks = x.chunks_exact(BLOCK_MAX_LEN);
    let tail_start = x.len() - blocks.remainder().len();
    let maxima: Vec<f32> = blocks.map(super::kernels::block_max).collect();
    let mut order = maxima.clone();
    let bound = if k <= order.len() {
        *order.select_nth_unstable_by(k - 1, |a, b| b.total_cmp(a)).1
    } else {
        f32::NEG_INFINITY
    };
    for (b, &m) in maxima.iter().enumerate() {
        if m >= bound {
            let base = b * BLOCK_MAX_LEN;
            let block = x.get(base..base + BLOCK_MAX_LEN).unwrap_or(&[]);
            for (j, &v) in block.iter().enumerate() {
                if v >= bound {
                    out.push(Cand::new(v, (base + j) as u32));
                }
            }
        }
    }
    for (j, &v) in x.iter().enumerate().skip(tail_start) {
        if v >= bound {
            out.push(Cand::new(v, j as u32));
        }
    }
    if out.len() > k {
        prune(out, k);
    }
    out.sort_unstable_by(rank_order);
}

/// Keeps the candidates >= the k-th largest value (ties included); returns that value.
fn prune(buf: &mut Vec<Cand>, k: usize) -> f32 {
    if buf.len() <= k {
        return f32::NEG_INFINITY;
    }
    let (_, kth, _) = buf.select_nth_unstable_by(k - 1, rank_order);
    let kth = kth.value;
    buf.retain(|c| c.value >= kth);
    kth
}

/// The number of leading entries of `weights` (in rank order) that top-p keeps: the smallest
/// prefix whose mass reaches `top_p` of the total, and at least one.
pub fn top_p_prefix(weights: &[f32], top_p: f64) -> usize {
    let total: f64 = weights.iter().map(|&w| f64::from(w)).sum();
    let target = top_p * total;
    let mut mass = 0.0f64;
    for (i, &w) in weights.iter().enumerate() {
        mass += f64::from(w);
        if mass >= target {
            return i + 1;
        }
    }
    weights.len().max(1)
}

/// Buckets of exp-weights by the top bits of their float representation: bucket =
/// `bits >> 20` (8 exponent bits + 3 mantissa bits), so weights in (0, 1] fall in buckets
/// 0..=1016 (of 1024), each spanning a factor of 2^(1/8), and a higher bucket means a larger weight.
const BUCKET_SHIFT: u32 = 20;
const BUCKETS: usize = 1024;
/// Weights below this (logits ~7 nats under the top at T = 1) are first left out of the
/// histogram.
const HIST_MIN: f32 = 1.0 / 1024.0;

/// The histogram of all `weights` into `hist` (`BUCKETS` long).
///
/// Four interleaved sub-histograms: neighbouring tokens often fall in the same bucket, and
/// with one table each add would wait for the previous store to the same slot.
fn full_histogram(weights: &[f32], hist: &mut [f64]) {
    let mut sub = vec![0.0f64; 4 * BUCKETS];
    let key = |w: f32| (w.to_bits() >> BUCKET_SHIFT) as usize & (BUCKETS - 1);
    let quads = weights.chunks_exact(4);
    let tail = quads.remainder();
    for q in quads {
        sub[key(q[0])] += f64::from(q[0]);
        sub[BUCKETS + key(q[1])] += f64::from(q[1]);
        sub[2 * BUCKETS + key(q[2])] += f64::from(q[2]);
        sub[3 * BUCKETS + key(q[3])] += f64::from(q[3]);
    }
    for &w in tail {
        sub[key(w)] += f64::from(w);
    }
    for (b, h) in hist.iter_mut().enumerate().take(BUCKETS) {
        *h = sub[b] + sub[BUCKETS + b] + sub[2 * BUCKETS + b] + sub[3 * BUCKETS + b];
    }
}

/// The bucket where the running mass from the top reaches `target`, and the mass above it.
fn find_boundary(hist: &[f64], target: f64) -> Option<(usize, f64)> {
    let mut above = 0.0f64;
    for b in (0..hist.len()).rev() {
        if above + hist[b] >= target && hist[b] > 0.0 {
            return Some((b, above));
        }
        above += hist[b];
    }
    None
}

/// The last token top-p keeps when the whole row competes: the returned cut `c` means the
/// kept set is every token ranked at or before `c` (see [`rank_order`]).
///
/// `weights[i] = exp((x[i] - max) / T)`. Instead of sorting, one pass adds each weight into a
/// histogram over its float bits; walking the buckets from the top finds the bucket where
/// the running mass reaches `top_p`, and only that bucket's tokens are ranked exactly.
pub fn top_p_cut(x: &[f32], weights: &[f32], top_p: f64, scratch: &mut Vec<Cand>) -> Cand {
    // In a language model's row most tokens are far below the top. When the weights >=
    // HIST_MIN already reach the target mass (a vectorised masked sum says so), only they
    // go into the histogram, through a rarely taken branch; otherwise all of them do.
    let (total, high) = super::kernels::sum_and_high(weights, HIST_MIN);
    let target = top_p * total;
    let mut hist = vec![0.0f64; BUCKETS];
    let mut found = None;
    if high >= target {
        for &w in weights {
            if w >= HIST_MIN {
                hist[(w.to_bits() >> BUCKET_SHIFT) as usize & (BUCKETS - 1)] += f64::from(w);
            }
        }
        found = find_boundary(&hist, target);
    }
    let (boundary, above, keep_all, target) = match found {
        Some((b, above)) => (b, above, false, target),
        None => {
            full_histogram(weights, &mut hist);
            let total: f64 = hist.iter().sum();
            let target = top_p * total;
            match find_boundary(&hist, target) {
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
    scratch.clear();
    // The bucket is the weight range [lo, hi): blocks of 16 with none in it (most) are
    // skipped after a vectorised count.
    let lo = f32::from_bits((boundary as u32) << BUCKET_SHIFT);
    let hi = f32::from_bits(((boundary as u32) + 1) << BUCKET_SHIFT);
    let mut bucket_max = 0.0f32;
    let mut bucket_min = f32::INFINITY;
    const SPAN: usize = 16;
    for (b, (xb, wb)) in x.chunks(SPAN).zip(weights.chunks(SPAN)).enumerate() {
        if wb.len() == SPAN && !super::kernels::any_in_range(wb, lo, hi) {
            continue;
        }
        for (j, (&v, &w)) in xb.iter().zip(wb).enumerate() {
            if (w.to_bits() >> BUCKET_SHIFT) as usize & (BUCKETS - 1) == boundary {
                scratch.push(Cand::new(v, (b * SPAN + j) as u32));
                bucket_max = bucket_max.max(w);
                bucket_min = bucket_min.min(w);
            }
        }
    }
    if keep_all {
        scratch.sort_unstable_by(rank_order);
        return scratch.last().copied().unwrap_or(Cand {
            value: f32::INFINITY,
            id: 0,
        });
    }
    // The bucket's weights lie within a factor 2^(1/8), so the number of its tokens needed
    // is known within ~9%: at least `lo` (each adds <= bucket_max), at most `hi`. Two
    // selections isolate that window, and only the window is sorted.
    let needed = (target - above).max(0.0);
    let n = scratch.len();
    let lo = ((needed / f64::from(bucket_max)).floor() as usize)
        .saturating_sub(1)
        .min(n);
    let hi = if bucket_min > 0.0 {
        ((needed / f64::from(bucket_min)).ceil() as usize + 1).clamp(lo, n)
    } else {
        n
    };
    if hi < n && hi > 0 {
        scratch.select_nth_unstable_by(hi, rank_order);
    }
    if lo > 0 && lo < hi {
        scratch[..hi].select_nth_unstable_by(lo, rank_order);
    }
    let mut mass = above
        + scratch[..lo]
            .iter()
            .map(|c| f64::from(weights[c.id as usize]))
            .sum::<f64>();
    scratch[lo..hi].sort_unstable_by(rank_order);
    // Past `hi` only through rounding: then the rest is sorted and walked too.
    for i in lo..n {
        if i == hi {
            scratch[hi..].sort_unstable_by(rank_order);
        }
        let c = scratch[i];
        mass += f64::from(weights[c.id as usize]);
        if mass >= target {
            return c;
        }
    }
    // Rounding left the target just out of reach: keep the whole bucket.
    scratch.last().copied().unwrap_or(Cand {
        value: f32::INFINITY,
        id: 0,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lcg_row(n: usize, seed: u64) -> Vec<f32> {
        let mut s = seed;
        (0..n)
            .map(|_| {
                s = s
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                ((s >> 40) as f32 / (1u64 << 24) as f32) * 20.0 - 10.0
            })
            .collect()
    }

    fn slow_top_k(x: &[f32], k: usize) -> Vec<Cand> {
        let mut all: Vec<Cand> = x
            .iter()
            .enumerate()
            .map(|(i, &v)| Cand::new(v, i as u32))
            .collect();
        all.sort_by(rank_order);
        let kth = all[k - 1].value;
        all.into_iter().filter(|c| c.value >= kth).collect()
    }

    #[test]
    fn top_k_matches_a_full_sort() {
        let mut out = Vec::new();
        for (n, k) in [
            (50257, 50),
            (5000, 1),
            (3000, 2999),
            (100, 7),
            (20000, 3000),
        ] {
            let x = lcg_row(n, n as u64 + k as u64);
            top_k_with_ties(&x, k, &mut out);
            assert_eq!(out, slow_top_k(&x, k), "n={n} k={k}");
        }
    }

    #[test]
    fn top_k_keeps_every_tie_of_the_kth_value() {
        let mut out = Vec::new();
        let x = vec![0.5f32; 10_000];
        top_k_with_ties(&x, 3, &mut out);
        assert_eq!(out.len(), 10_000);
        let mut x: Vec<f32> = (0..5000).map(|i| (i % 7) as f32).collect();
        x[17] = -0.0;
        top_k_with_ties(&x, 1, &mut out);
        assert_eq!(out.len(), (0..5000).filter(|i| i % 7 == 6).count());
        assert_eq!(out[0].id, 6);
        let x = vec![f32::NEG_INFINITY, 1.0, f32::NEG_INFINITY, 2.0];
        top_k_with_ties(&x, 3, &mut out);
        assert_eq!(
            out.iter().map(|c| c.id).collect::<Vec<_>>(),
            vec![3, 1, 0, 2]
        );
    }

    #[test]
    fn top_p_prefix_is_the_smallest_reaching_the_mass() {
        // Binary fractions, so that the sums are exact.
        assert_eq!(top_p_prefix(&[0.5, 0.25, 0.25], 0.5), 1);
        assert_eq!(top_p_prefix(&[0.5, 0.25, 0.25], 0.51), 2);
        assert_eq!(top_p_prefix(&[0.5, 0.25, 0.25], 0.75), 2);
        assert_eq!(top_p_prefix(&[0.5, 0.25, 0.25], 1.0), 3);
        assert_eq!(top_p_prefix(&[1.0, 0.0, 0.0], 1.0), 1);
        assert_eq!(top_p_prefix(&[0.5, 0.25, 0.25], 1e-9), 1);
    }

    #[test]
    fn top_p_cut_matches_sorting_the_row() {
        let mut scratch = Vec::new();
        for (n, p) in [
            (50257usize, 0.9f64),
            (1000, 0.5),
            (1000, 1e-9),
            (4000, 0.999),
            (300, 1.0),
        ] {
            let x = lcg_row(n, n as u64);
            let max = x.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
            let w: Vec<f32> = x.iter().map(|&v| ((v - max) as f64).exp() as f32).collect();
            let mut all: Vec<Cand> = x
                .iter()
                .enumerate()
                .map(|(i, &v)| Cand::new(v, i as u32))
                .collect();
            all.sort_by(rank_order);
            let ws: Vec<f32> = all.iter().map(|c| w[c.id as usize]).collect();
            let want = all[top_p_prefix(&ws, p) - 1];
            let got = top_p_cut(&x, &w, p, &mut scratch);
            assert_eq!(got, want, "n={n} p={p}");
        }
    }
}
