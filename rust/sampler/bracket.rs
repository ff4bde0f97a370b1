//! The top-p cut when it falls among the many small weights of a row's tail, without a
//! histogram of the whole row.
//!
//! A histogram of every sixteenth weight estimates where the running mass reaches the target,
//! and how uncertain that estimate is. One pass over the row then sums, exactly (f64), the
//! mass above the bracket the estimate allows, and collects the tokens inside it. Only they
//! go into a fine histogram, and only the fine bucket holding the cut is ranked. When the
//! estimate was wrong (the target is outside the bracket) the caller falls back to the
//! histogram of the whole row, so the sample decides only the speed, never the result.
//!
//! Why: the histogram of all 50k weights costs about two cycles a token (a load, an add
//! and a store to a table, which no SIMD does well); the sample costs a sixteenth of that,
//! the collecting pass is vectorised, and the bracket holds a few thousand tokens.

use super::select::Cand;
use super::top_p::{find_boundary, key, BUCKETS, BUCKET_SHIFT};

/// One weight in this many goes into the sample. Against 8: the sample costs half
/// (~4.5 us less a row), and its bracket holds ~40% more tokens (~2 us more to rank).
const STRIDE: usize = 16;
/// How many standard deviations of the sample's estimate the bracket allows on each side.
const SIGMAS: f64 = 4.0;
/// Tokens per block of the collecting pass.
const LANES: usize = 16;
/// At most this many fine buckets span the bracket.
const MAX_FINE: usize = 1024;
/// The fine histogram's table: a power of two above `MAX_FINE + 1`.
const FINE_TABLE: usize = 2 * MAX_FINE;
/// The bracket is not worth collecting when the sample puts more than this share of the
/// row in it: the whole-row histogram is then as cheap.
const MAX_SHARE: usize = 3;

/// Buffers of [`tail_cut`], kept by each worker thread between rows.
#[derive(Default)]
pub struct BracketScratch {
    mass: Vec<f64>,
    inside: Inside,
    fine: Vec<f64>,
}

/// The sampled histogram: the mass of every [`STRIDE`]-th weight per bucket, into
/// `mass`. Two tables (even and odd samples, added up after), so that an add does not
/// wait for the last one to the same bucket.
#[inline(always)]
fn sample(weights: &[f32], mass: &mut Vec<f64>) {
    mass.clear();
    mass.resize(2 * BUCKETS, 0.0);
    let (even, odd) = mass.split_at_mut(BUCKETS);
    let (Ok(even), Ok(odd)) = (
        <&mut [f64; BUCKETS]>::try_from(even),
        <&mut [f64; BUCKETS]>::try_from(odd),
    ) else {
        return;
    };
    let mut pairs = weights.chunks_exact(2 * STRIDE);
    for p in &mut pairs {
        even[key(p[0])] += f64::from(p[0]);
        odd[key(p[STRIDE])] += f64::from(p[STRIDE]);
    }
    if let Some(&w) = pairs.remainder().first() {
        even[key(w)] += f64::from(w);
    }
    for (e, o) in even.iter_mut().zip(odd.iter()) {
        *e += o;
    }
}

/// The weight range `[lo, hi)` that holds the cut unless the sample misled: `needed` is
/// the mass to take from the weights below `ceiling` (a bucket boundary), `below` the
/// total mass there. `None` when the sample cannot place the cut in a narrow enough range.
#[inline(always)]
fn bracket(mass: &[f64], ceiling: usize, needed: f64, below: f64, n: usize) -> Option<(f32, f32)> {
    let mass = mass.get(..ceiling)?;
    // The sums run from the lowest sampled bucket: below it (most of the table, for a
    // language model's row) all is zero, and each sum is a chain of dependent adds.
    let first = mass.iter().position(|&m| m > 0.0)?;
    let sampled: f64 = mass[first..].iter().sum();
    let first = first.max(1);
    let positive = |v: f64| v > 0.0;
    if !positive(sampled) || !positive(below) {
        return None;
    }
    let edge = |b: usize| f32::from_bits((b as u32) << BUCKET_SHIFT);
    // A bucket spans a factor 2^(1/8): its weights are within 9% of its middle, which
    // gives their sum of squares (mass * middle) and their count (mass / middle).
    let middle = |b: usize| {
        f64::from(f32::from_bits(
            ((b as u32) << BUCKET_SHIFT) | (1 << (BUCKET_SHIFT - 1)),
        ))
    };
    let squares: f64 = (first..ceiling).map(|b| mass[b] * middle(b)).sum();
    // A ratio estimator: scaled so that the sample's tail weighs what the row's does. Its
    // error is that of the sampled share q above a bucket, whose variance is about
    // ((1 - q)^2 A + q^2 B) / S^2, with A and B the sums of squares above and below.
    let scale = below / sampled;
    let (mut above, mut square, mut count) = (0.0f64, 0.0f64, 0.0f64);
    let mut upper = None;
    let mut lower = None;
    for b in (first..ceiling).rev() {
        above += mass[b] * scale;
        square += mass[b] * middle(b);
        let q = above / below;
        let var = (1.0 - q) * (1.0 - q) * square + q * q * (squares - square).max(0.0);
        let sigma = SIGMAS * scale * var.sqrt();
        if upper.is_none() && above + sigma >= needed {
            upper = Some(b);
        }
        if upper.is_some() {
            count += mass[b] / middle(b);
        }
        if above - sigma >= needed {
            lower = Some(b);
            break;
        }
    }
    let (upper, lower) = (upper?, lower?);
    if count * (STRIDE * MAX_SHARE) as f64 > n as f64 {
        return None;
    }
    Some((edge(lower), edge(upper + 1)))
}

/// Fine buckets over a bracket `[lo, hi)`: as many float bits as keep them within
/// [`MAX_FINE`] (weights are >= 0, so their bits are in numeric order).
#[derive(Clone, Copy)]
struct Fine {
    base: u32,
    shift: u32,
    len: usize,
}

impl Fine {
    fn new(lo: f32, hi: f32) -> Self {
        let (base, top) = (lo.to_bits(), hi.to_bits());
        let mut shift = 8u32;
        while ((top - base) >> shift) as usize >= MAX_FINE {
            shift += 1;
        }
        Fine {
            base,
            shift,
            len: ((top - base) >> shift) as usize + 1,
        }
    }

    #[inline(always)]
    fn key(&self, w: f32) -> usize {
        (w.to_bits().wrapping_sub(self.base) >> self.shift) as usize
    }

    /// The weight range of fine bucket `f` within the bracket `[.., hi)`.
    fn range(&self, f: usize, hi: f32) -> (f32, f32) {
        let edge = |f: usize| f32::from_bits(self.base + ((f as u32) << self.shift));
        (edge(f), edge(f + 1).min(hi))
    }
}

/// The weights in a bracket, in index order, and where they came from: per block of
/// [`LANES`] weights of the row, the mask of those inside and how many came before.
#[derive(Default)]
struct Inside {
    weights: Vec<f32>,
    masks: Vec<u16>,
    starts: Vec<u32>,
}

impl Inside {
    /// The token id of `weights[j]`: in the last block starting at or before `j` (a block
    /// with none inside starts where the next does), the set bit of its mask ranked
    /// `j - start`.
    fn id(&self, j: usize) -> Option<u32> {
        let b = self
            .starts
            .partition_point(|&s| s as usize <= j)
            .checked_sub(1)?;
        let mut mask = u32::from(*self.masks.get(b)?);
        for _ in 0..j - *self.starts.get(b)? as usize {
            mask &= mask.wrapping_sub(1);
        }
        (mask != 0).then(|| (b * LANES) as u32 + mask.trailing_zeros())
    }
}

/// One pass over the row: the exact mass of the weights `>= hi`, the exact total, and the
/// weights in `[lo, hi)` (into `inside`).
///
/// # Safety
/// The CPU must have AVX-512 (see [`crate::has_avx512`]). (The bracket must also have
/// `0 < lo <= hi`, for the result to be right.)
#[inline(always)]
unsafe fn collect(weights: &[f32], lo: f32, hi: f32, inside: &mut Inside) -> (f64, f64) {
    let Inside {
        weights: kept,
        masks,
        starts,
    } = inside;
    kept.clear();
    masks.clear();
    starts.clear();
    let (body, tail) = weights.split_at(weights.len() - weights.len() % LANES);
    // SAFETY: the caller's.
    let (mut above, mut total) = unsafe { super::wide::collect(body, lo, hi, kept, masks, starts) };
    // The last, partial block.
    if !tail.is_empty() {
        starts.push(kept.len() as u32);
        let mut mask = 0u16;
        for (i, &w) in tail.iter().enumerate() {
            total += f64::from(w);
            if w >= hi {
                above += f64::from(w);
            } else if w >= lo {
                kept.push(w);
                mask |= 1 << i;
            }
        }
        masks.push(mask);
    }
    (above, total)
}

/// `visit(i)` for every `i` with `lo <= w[i] < hi`, in order. Most `w[i]` are outside:
/// blocks are tested whole.
///
/// # Safety
/// The CPU must have AVX-512 (see [`crate::has_avx512`]).
#[inline(always)]
unsafe fn for_in_range(w: &[f32], lo: f32, hi: f32, mut visit: impl FnMut(usize)) {
    // SAFETY: the caller's.
    let end = unsafe { super::wide::in_range(w, lo, hi, &mut visit) };
    for (i, &v) in w.iter().enumerate().skip(end) {
        if (v >= lo) & (v < hi) {
            visit(i);
        }
    }
}

/// What [`tail_cut`] found: the tokens of the fine bucket holding the cut (in `bucket`),
/// the mass above them, the target and their largest and smallest weight.
pub struct Boundary {
    pub above: f64,
    pub target: f64,
    pub max: f32,
    pub min: f32,
}

/// Finds the fine bucket where the running mass reaches `top_p` of the row's, when the
/// cut is among the weights below `ceiling` (a bucket of [`key`]) and those above it
/// weigh `high`; `total` is the row's approximate mass (for the estimate only). Fills
/// `bucket` with that fine bucket's tokens. `None`: the caller must histogram the row.
///
/// # Safety
/// The CPU must have AVX-512 (see [`crate::has_avx512`]).
#[allow(clippy::too_many_arguments)]
#[inline(always)]
pub unsafe fn tail_cut(
    x: &[f32],
    weights: &[f32],
    top_p: f64,
    total: f64,
    high: f64,
    ceiling: usize,
    s: &mut BracketScratch,
    bucket: &mut Vec<Cand>,
) -> Option<Boundary> {
    sample(weights, &mut s.mass);
    let (lo, hi) = bracket(
        &s.mass,
        ceiling,
        top_p * total - high,
        total - high,
        weights.len(),
    )?;
    // SAFETY: the caller's.
    let (above, total) = unsafe { collect(weights, lo, hi, &mut s.inside) };
    let target = top_p * total;
    if above >= target {
        return None;
    }
    let fine = Fine::new(lo, hi);
    // A table of fixed size, indexed by a masked key: no bounds check in the loop. Every
    // weight inside has a key below `fine.len`, so only that part is cleared and read.
    s.fine.resize(FINE_TABLE, 0.0);
    let table = <&mut [f64; FINE_TABLE]>::try_from(&mut s.fine[..FINE_TABLE]).ok()?;
    table[..fine.len].fill(0.0);
    for &w in &s.inside.weights {
        table[fine.key(w) & (FINE_TABLE - 1)] += f64::from(w);
    }
    let found = find_boundary(&table[..fine.len], above, target);
    // The target lies below the bracket: the sample misled.
    let (f, mass) = found?;
    let (f_lo, f_hi) = fine.range(f, hi);
    bucket.clear();
    let (mut max, mut min) = (0.0f32, f32::INFINITY);
    let mut take = |i: usize| {
        if let (Some(&w), Some(id)) = (s.inside.weights.get(i), s.inside.id(i)) {
            if let Some(&v) = x.get(id as usize) {
                bucket.push(Cand::new(v, id));
                max = max.max(w);
                min = min.min(w);
            }
        }
    };
    // SAFETY: the caller's.
    unsafe { for_in_range(&s.inside.weights, f_lo, f_hi, &mut take) };
    Some(Boundary {
        above: mass,
        target,
        max,
        min,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sampler::kernels;
    use crate::sampler::select::tests::{lcg_row, ranked};
    use crate::sampler::select::top_p_prefix;
    use crate::sampler::top_p::{self, HIST_MIN};

    /// A language-model-like row: logit -1.1 ln(rank) plus noise, ranks shuffled.
    fn zipf_row(n: usize, seed: u64) -> Vec<f32> {
        let u = lcg_row(n, seed);
        let noise = lcg_row(n, seed + 1);
        let mut order: Vec<usize> = (0..n).collect();
        order.sort_by(|&a, &b| u[a].total_cmp(&u[b]));
        let mut x = vec![0.0f32; n];
        for (rank, &i) in order.iter().enumerate() {
            x[i] = -1.1 * ((rank + 1) as f32).ln() + 0.03 * noise[i];
        }
        x
    }

    /// The cut [`tail_cut`] finds, ranked as [`top_p::top_p_cut`] ranks it; `None` when it
    /// leaves the row to the whole-row histogram.
    fn tail(x: &[f32], p: f64) -> (Option<Cand>, Cand) {
        let max = kernels::scan(x).max;
        let mut w = vec![0.0; x.len()];
        let (total, high) = kernels::exp_sums(x, max, 1.0, &mut w, HIST_MIN, &[]);
        let all = ranked(x);
        let ws: Vec<f32> = all.iter().map(|c| w[c.id as usize]).collect();
        let want = all[top_p_prefix(&ws, p) - 1];
        let mut s = BracketScratch::default();
        let mut bucket = Vec::new();
        let ceiling = top_p::key(HIST_MIN);
        // SAFETY: the tests run only where the CPU has AVX-512.
        let got =
            unsafe { tail_cut(x, &w, p, total, high, ceiling, &mut s, &mut bucket) }.map(|b| {
                bucket.sort_by(crate::sampler::select::rank_order);
                let mut mass = b.above;
                *bucket
                    .iter()
                    .find(|c| {
                        mass += f64::from(w[c.id as usize]);
                        mass >= b.target
                    })
                    .unwrap_or(&bucket[bucket.len() - 1])
            });
        (got, want)
    }

    #[test]
    fn the_tail_cut_of_language_model_rows_is_the_sorted_rows_cut() {
        if !crate::has_avx512() {
            return;
        }
        for seed in 1..6 {
            let x = zipf_row(50257, seed);
            for p in [0.8, 0.9, 0.95, 0.99] {
                let (got, want) = tail(&x, p);
                assert_eq!(got, Some(want), "seed {seed} p {p}");
            }
        }
    }

    #[test]
    fn a_sample_that_misleads_changes_the_path_not_the_cut() {
        if !crate::has_avx512() {
            return;
        }
        // The sampled positions (multiples of 8) hold logits 7 nats above the others, or
        // below them: the sample sees a row far more, or less, peaked than it is.
        let n = 20_000;
        let base = lcg_row(n, 3);
        let mut misled = 0;
        for shift in [7.0f32, -7.0] {
            let x: Vec<f32> = (0..n)
                .map(|i| base[i] * 0.1 + if i % STRIDE == 0 { shift } else { 0.0 })
                .collect();
            for p in [0.5, 0.9, 0.999] {
                let (got, want) = tail(&x, p);
                assert!(got.is_none() || got == Some(want), "shift {shift} p {p}");
                misled += usize::from(got.is_none());
                let max = kernels::scan(&x).max;
                let mut w = vec![0.0; n];
                let sums = kernels::exp_sums(&x, max, 1.0, &mut w, HIST_MIN, &[]);
                let mut scratch = top_p::TopPScratch::default();
                let cut = top_p::top_p_cut(&x, &w, p, sums, &mut scratch);
                assert_eq!(cut, want, "shift {shift} p {p}");
            }
        }
        assert!(misled > 0, "no case fell back to the whole-row histogram");
    }

    #[test]
    fn collect_and_in_range_agree_with_plain_loops() {
        if !crate::has_avx512() {
            return;
        }
        let x = zipf_row(5003, 9);
        let mut w = vec![0.0; x.len()];
        kernels::exp_sums(&x, kernels::scan(&x).max, 1.0, &mut w, HIST_MIN, &[]);
        let (lo, hi) = (1e-4, 1e-3);
        let mut inside = Inside {
            weights: vec![7.0],
            masks: vec![7],
            starts: vec![7],
        };
        // SAFETY: the CPU has AVX-512.
        let (above, total) = unsafe { collect(&w, lo, hi, &mut inside) };
        let slow: Vec<u32> = (0..w.len() as u32)
            .filter(|&i| (w[i as usize] >= lo) & (w[i as usize] < hi))
            .collect();
        assert!(slow.len() > 100);
        assert_ne!(w.len() % LANES, 0, "a partial last block");
        assert_eq!(inside.masks.len(), w.len().div_ceil(LANES));
        let ids: Vec<Option<u32>> = (0..slow.len()).map(|j| inside.id(j)).collect();
        assert_eq!(ids, slow.iter().map(|&i| Some(i)).collect::<Vec<_>>());
        assert_eq!(inside.id(slow.len()), None);
        assert_eq!(
            inside.weights,
            slow.iter().map(|&i| w[i as usize]).collect::<Vec<_>>()
        );
        let inside = inside.weights;
        let exact = |keep: &dyn Fn(f32) -> bool| -> f64 {
            w.iter().filter(|&&v| keep(v)).map(|&v| f64::from(v)).sum()
        };
        assert!((above - exact(&|v| v >= hi)).abs() < 1e-12);
        assert!((total - exact(&|_| true)).abs() < 1e-12);
        let mut visited = Vec::new();
        // SAFETY: as above.
        unsafe { for_in_range(&inside, 2e-4, 5e-4, |i| visited.push(i)) };
        let slow: Vec<usize> = (0..inside.len())
            .filter(|&i| (inside[i] >= 2e-4) & (inside[i] < 5e-4))
            .collect();
        assert!(!slow.is_empty());
        assert_eq!(visited, slow);
    }
}
