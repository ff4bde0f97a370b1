//! Exact selection without sorting the vocabulary: top-k with ties, and top-p over ranked
//! candidates (the whole-row top-p cut is in [`super::top_p`]).
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

const BLOCK_MAX_LEN: usize = super::kernels::MAXIMA_BLOCK;

/// Top-k through block maxima, for k small next to the row: the k-th largest of the maxima
/// of blocks of 64 is a lower bound of the k-th largest value (k blocks each hold a value at
/// or above it), so only the blocks whose maximum reaches it (about k of them) are read
/// value by value. Cost: one vectorised max pass, plus ~64k values.
fn top_k_by_block_maxima(x: &[f32], k: usize, out: &mut Vec<Cand>) {
    let blocks = x.chunks_exact(BLOCK_MAX_LEN);
    let tail_start = x.len() - blocks.remainder().len();
    let maxima = super::kernels::block_maxima(x);
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

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A reproducible row of `n` values in [-10, 10) (an LCG, so tests need no rand crate).
    pub(crate) fn lcg_row(n: usize, seed: u64) -> Vec<f32> {
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

    /// Every entry of `x` as a candidate, fully sorted in rank order (the slow reference).
    pub(crate) fn ranked(x: &[f32]) -> Vec<Cand> {
        let mut all: Vec<Cand> = x
            .iter()
            .enumerate()
            .map(|(i, &v)| Cand::new(v, i as u32))
            .collect();
        all.sort_by(rank_order);
        all
    }

    fn slow_top_k(x: &[f32], k: usize) -> Vec<Cand> {
        let all = ranked(x);
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
}
