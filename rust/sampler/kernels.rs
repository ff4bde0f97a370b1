//! The passes over a whole row: max with NaN detection, argmax, and a vectorisable exp.
//!
//! Performance notes: these loops run over every logit of every row (50k-128k floats), so
//! they are written as fixed-width lane loops the compiler turns into SIMD: no early exits,
//! no NaN-aware `f32::max` (which does not vectorise), and an exp made only of multiplies,
//! adds and integer bit operations.

const LANES: usize = 16;
/// Weights per block of [`exp_shifted_sums`]: summed in f32 lanes, the blocks in f64.
pub(super) const SUM_BLOCK: usize = 1024;

/// The result of [`scan`]: the largest value, and whether the row holds NaN or +inf.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Scan {
    pub max: f32,
    pub has_nan: bool,
    pub has_pos_inf: bool,
}

simd_dispatch! {
    /// One pass: the maximum (ignoring NaN) and whether any NaN is present.
    pub fn scan / scan_avx2 (x: &[f32]) -> Scan => scan_generic
}

#[inline(always)]
fn scan_generic(x: &[f32]) -> Scan {
    let mut acc = [f32::NEG_INFINITY; LANES];
    let mut nan = [false; LANES];
    let chunks = x.chunks_exact(LANES);
    let tail = chunks.remainder();
    for chunk in chunks {
        for j in 0..LANES {
            let v = chunk[j];
            // `v > acc` is false for NaN, so NaN never becomes the max.
            acc[j] = if v > acc[j] { v } else { acc[j] };
            nan[j] |= v.is_nan();
        }
    }
    let mut max = f32::NEG_INFINITY;
    let mut has_nan = false;
    for j in 0..LANES {
        max = if acc[j] > max { acc[j] } else { max };
        has_nan |= nan[j];
    }
    for &v in tail {
        max = if v > max { v } else { max };
        has_nan |= v.is_nan();
    }
    Scan {
        max,
        has_nan,
        has_pos_inf: max == f32::INFINITY,
    }
}

simd_dispatch! {
    /// The first index holding `max` (the greedy choice; `torch.argmax` also takes the first).
    pub fn first_index_of / first_index_of_avx2 (x: &[f32], max: f32) -> usize => first_index_of_generic
}

#[inline(always)]
fn first_index_of_generic(x: &[f32], max: f32) -> usize {
    // Whole blocks are tested with a vectorised lane max; only the block holding it is
    // searched value by value.
    const BLOCK: usize = 64;
    let mut start = 0;
    for block in x.chunks_exact(BLOCK) {
        if block_max(block) >= max {
            break;
        }
        start += BLOCK;
    }
    x.get(start..)
        .and_then(|rest| rest.iter().position(|&v| v == max))
        .map_or(0, |j| start + j)
}

/// The largest value of `block` (whose length is a multiple of [`LANES`]), NaN ignored.
#[inline(always)]
pub fn block_max(block: &[f32]) -> f32 {
    let mut acc = [f32::NEG_INFINITY; LANES];
    for chunk in block.chunks_exact(LANES) {
        for j in 0..LANES {
            acc[j] = if chunk[j] > acc[j] { chunk[j] } else { acc[j] };
        }
    }
    acc.iter()
        .fold(f32::NEG_INFINITY, |m, &v| if v > m { v } else { m })
}

/// Values per block of [`block_maxima`].
pub const MAXIMA_BLOCK: usize = 64;

simd_dispatch! {
    /// The maximum of every whole block of [`MAXIMA_BLOCK`] values of `x` (a partial last
    /// block is left out), NaN ignored.
    pub fn block_maxima / block_maxima_avx2 (x: &[f32]) -> Vec<f32> => block_maxima_generic
}

#[inline(always)]
fn block_maxima_generic(x: &[f32]) -> Vec<f32> {
    // A plain loop, not `collect`: the iterator adaptors' code would be compiled outside
    // this function, without the AVX2 target feature.
    let mut maxima = Vec::with_capacity(x.len() / MAXIMA_BLOCK);
    for chunk in x.chunks_exact(MAXIMA_BLOCK) {
        maxima.push(block_max(chunk));
    }
    maxima
}

pub(super) const LOG2E: f32 = std::f32::consts::LOG2_E;
pub(super) const LN2_HI: f32 = 0.693_359_4;
pub(super) const LN2_LO: f32 = -2.121_944_4e-4;
/// Below this, exp underflows past the smallest normal float: return 0.
pub(super) const EXP_MIN: f32 = -87.336_54;
/// Adding 1.5 * 2^23 rounds an f32 in (-2^22, 2^22) to an integer held in the low mantissa.
pub(super) const ROUND_MAGIC: f32 = 12_582_912.0;
/// Cephes' polynomial for `(exp(r) - 1 - r) / r^2`, highest degree first.
pub(super) const EXP_POLY: [f32; 6] = [
    1.987_569_1e-4,
    1.398_199_9e-3,
    8.333_452e-3,
    4.166_579_6e-2,
    1.666_666_5e-1,
    0.5,
];

/// `exp(x)` for `x <= 0` (the shifted, scaled logits), within ~2 ulp; -inf gives 0.
///
/// Cephes' `expf` range reduction and polynomial, written branch-free so that loops over it
/// vectorise. Fused multiply-adds (`mul_add`) halve its instructions where the CPU has
/// them, and round the same everywhere: a build without hardware FMA computes the same
/// bits in software, so every build gives the same weights.
#[inline(always)]
pub fn exp_nonpositive(x: f32) -> f32 {
    let xc = if x > EXP_MIN { x } else { EXP_MIN };
    let t = xc.mul_add(LOG2E, ROUND_MAGIC);
    let n = t - ROUND_MAGIC;
    let r = n.mul_add(-LN2_HI, xc);
    let r = n.mul_add(-LN2_LO, r);
    let mut p = EXP_POLY[0];
    for &c in &EXP_POLY[1..] {
        p = p.mul_add(r, c);
    }
    let y = p.mul_add(r * r, r) + 1.0;
    // The integer n sits in the low mantissa bits of t; 2^n is built from its bits.
    let ni = (t.to_bits() as i32).wrapping_sub(ROUND_MAGIC.to_bits() as i32);
    let scale = f32::from_bits((ni.wrapping_add(127) << 23) as u32);
    if x > EXP_MIN {
        y * scale
    } else {
        0.0
    }
}

simd_dispatch! {
    /// `out[i] = exp((x[i] - max) * inv_t)` for the whole row.
    pub fn exp_shifted / exp_shifted_avx2 (x: &[f32], max: f32, inv_t: f32, out: &mut [f32]) => exp_shifted_generic
}

#[inline(always)]
fn exp_shifted_generic(x: &[f32], max: f32, inv_t: f32, out: &mut [f32]) {
    for (o, &v) in out.iter_mut().zip(x) {
        *o = exp_nonpositive((v - max) * inv_t);
    }
}

/// [`exp_shifted`] into `out`, returning what [`sum_and_high`] would of `out` (bit for bit:
/// the same blocks and lanes), while each block of the output is still in L1.
///
/// `next` (the row this thread takes next, or empty) is read into cache meanwhile: this pass
/// is bound by arithmetic, and the next row's first pass by memory. With `scan_next` on an
/// AVX-512 CPU, the third value is the max of `next`, as [`scan`] finds it, so that its
/// row needs no scan. It is `None` when not scanned, or when `next` holds NaN or an
/// infinity: the caller then scans that row (which says which it is).
pub fn exp_shifted_sums(
    x: &[f32],
    max: f32,
    inv_t: f32,
    out: &mut [f32],
    high: f32,
    next: &[f32],
    scan_next: bool,
) -> (f64, f64, Option<f32>) {
    #[cfg(target_arch = "x86_64")]
    if crate::has_avx512() {
        use super::wide::exp_shifted_sums as wide;
        // SAFETY: the CPU has AVX-512.
        return unsafe {
            match (inv_t == 1.0, scan_next) {
                (true, false) => wide::<false, false>(x, max, inv_t, out, high, next),
                (true, true) => wide::<false, true>(x, max, inv_t, out, high, next),
                (false, false) => wide::<true, false>(x, max, inv_t, out, high, next),
                (false, true) => wide::<true, true>(x, max, inv_t, out, high, next),
            }
        };
    }
    let _ = scan_next;
    let (total, above) = exp_shifted_sums_portable(x, max, inv_t, out, high, next);
    (total, above, None)
}

/// [`exp_shifted_sums`]' two sums, without a scan of `next` (the tests' form).
#[cfg(test)]
pub fn exp_sums(
    x: &[f32],
    max: f32,
    inv_t: f32,
    out: &mut [f32],
    high: f32,
    next: &[f32],
) -> (f64, f64) {
    let (total, above, _) = exp_shifted_sums(x, max, inv_t, out, high, next, false);
    (total, above)
}

simd_dispatch! {
    avx2_only
    /// [`exp_shifted_sums`] without AVX-512.
    fn exp_shifted_sums_portable / exp_shifted_sums_avx2 (x: &[f32], max: f32, inv_t: f32, out: &mut [f32], high: f32, next: &[f32]) -> (f64, f64) => exp_shifted_sums_generic
}

/// Asks for the cache line holding `x[i]` (nothing if out of range).
#[inline(always)]
fn prefetch(x: &[f32], i: usize) {
    #[cfg(target_arch = "x86_64")]
    if let Some(v) = x.get(i) {
        // SAFETY: the address is inside `x`; a prefetch reads nothing into registers.
        unsafe {
            std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T1 }>(
                (v as *const f32).cast(),
            )
        };
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = (x, i);
}

#[inline(always)]
fn exp_shifted_sums_generic(
    x: &[f32],
    max: f32,
    inv_t: f32,
    out: &mut [f32],
    high: f32,
    next: &[f32],
) -> (f64, f64) {
    let mut total = 0.0f64;
    let mut above = 0.0f64;
    // One cache line (16 floats) of the next row for each 16 weights computed.
    let mut ahead = 0;
    for (xb, ob) in x.chunks(SUM_BLOCK).zip(out.chunks_mut(SUM_BLOCK)) {
        // One loop computes, stores and adds each weight while it is in a register.
        let mut all = [0.0f32; LANES];
        let mut big = [0.0f32; LANES];
        let xc = xb.chunks_exact(LANES);
        let x_tail = xc.remainder();
        let mut oc = ob.chunks_exact_mut(LANES);
        for (xs, os) in xc.zip(&mut oc) {
            let xs: &[f32; LANES] = xs.try_into().unwrap_or(&[0.0; LANES]);
            let os: &mut [f32; LANES] = match os.try_into() {
                Ok(os) => os,
                Err(_) => continue,
            };
            prefetch(next, ahead);
            ahead += LANES;
            for j in 0..LANES {
                let w = exp_nonpositive((xs[j] - max) * inv_t);
                os[j] = w;
                all[j] += w;
                big[j] += if w >= high { w } else { 0.0 };
            }
        }
        for (j, (&v, o)) in x_tail.iter().zip(oc.into_remainder()).enumerate() {
            let w = exp_nonpositive((v - max) * inv_t);
            *o = w;
            all[j] += w;
            big[j] += if w >= high { w } else { 0.0 };
        }
        total += f64::from(lane_total(&all));
        above += f64::from(lane_total(&big));
    }
    (total, above)
}

/// The sum of 16 lanes, in a fixed order (the same in every build).
#[inline(always)]
pub(super) fn lane_total(lanes: &[f32; LANES]) -> f32 {
    let mut half = [0.0f32; LANES / 2];
    for j in 0..LANES / 2 {
        half[j] = lanes[j] + lanes[j + LANES / 2];
    }
    half.iter().sum()
}

simd_dispatch! {
    /// `log(sum(exp(x)))` of a row without NaN or +inf, given its max; -inf for an all -inf row.
    pub fn log_sum_exp / log_sum_exp_avx2 (x: &[f32], max: f32) -> f64 => log_sum_exp_generic
}

#[inline(always)]
fn log_sum_exp_generic(x: &[f32], max: f32) -> f64 {
    if max == f32::NEG_INFINITY {
        return f64::NEG_INFINITY;
    }
    let mut lanes = [0.0f32; LANES];
    let chunks = x.chunks_exact(LANES);
    let tail = chunks.remainder();
    let mut total = 0.0f64;
    for chunk in chunks {
        for j in 0..LANES {
            lanes[j] += exp_nonpositive(chunk[j] - max);
        }
    }
    // The lanes hold at most V / 16 terms of size <= 1: f32 is ample for a logprob.
    for lane in lanes {
        total += f64::from(lane);
    }
    for &v in tail {
        total += f64::from(exp_nonpositive(v - max));
    }
    f64::from(max) + total.ln()
}

/// The sum of non-negative weights, and the sum of those >= `high` (16 f32 lanes, each
/// block of [`SUM_BLOCK`] weights added in f64): what [`exp_shifted_sums`] returns, computed
/// from the weights (the tests' reference).
#[cfg(test)]
fn sum_and_high(w: &[f32], high: f32) -> (f64, f64) {
    let mut total = 0.0f64;
    let mut above = 0.0f64;
    for block in w.chunks(SUM_BLOCK) {
        let mut all = [0.0f32; LANES];
        let mut big = [0.0f32; LANES];
        for (i, &v) in block.iter().enumerate() {
            all[i % LANES] += v;
            big[i % LANES] += if v >= high { v } else { 0.0 };
        }
        total += f64::from(lane_total(&all));
        above += f64::from(lane_total(&big));
    }
    (total, above)
}

/// Whether any value of `block` lies in `[lo, hi)` (a vectorised count over 8 lanes).
#[inline(always)]
pub fn any_in_range(block: &[f32], lo: f32, hi: f32) -> bool {
    let mut hits = [0.0f32; 8];
    let chunks = block.chunks_exact(8);
    let tail = chunks.remainder();
    for chunk in chunks {
        let c: [f32; 8] = chunk.try_into().unwrap_or([0.0; 8]);
        for j in 0..8 {
            hits[j] += if (c[j] >= lo) & (c[j] < hi) { 1.0 } else { 0.0 };
        }
    }
    hits.iter().any(|&h| h > 0.0) || tail.iter().any(|&v| v >= lo && v < hi)
}

simd_dispatch! {
    /// The indices of the values `>= floor`, in order, into `out`.
    pub fn indices_at_or_above / indices_at_or_above_avx2 (x: &[f32], floor: f32, out: &mut Vec<u32>) => indices_at_or_above_generic
}

#[inline(always)]
fn indices_at_or_above_generic(x: &[f32], floor: f32, out: &mut Vec<u32>) {
    out.clear();
    // Blocks whose maximum is below the floor (most of them, when few tokens pass) are
    // skipped after one vectorised max.
    const BLOCK: usize = 64;
    for (b, block) in x.chunks(BLOCK).enumerate() {
        if block.len() == BLOCK && block_max(block) < floor {
            continue;
        }
        let base = b * BLOCK;
        out.extend(
            block
                .iter()
                .enumerate()
                .filter(|(_, &v)| v >= floor)
                .map(|(j, _)| (base + j) as u32),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scan_finds_max_nan_and_inf() {
        let mut x: Vec<f32> = (0..100).map(|i| (i as f32 * 0.37).sin()).collect();
        let want = x.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
        assert_eq!(
            scan(&x),
            Scan {
                max: want,
                has_nan: false,
                has_pos_inf: false
            }
        );
        x[97] = f32::NAN; // in the tail
        assert!(scan(&x).has_nan);
        x[97] = 0.0;
        x[3] = f32::NAN; // in a lane
        assert!(scan(&x).has_nan);
        x[3] = f32::INFINITY;
        assert!(scan(&x).has_pos_inf);
        assert_eq!(scan(&[f32::NEG_INFINITY; 40]).max, f32::NEG_INFINITY);
        assert_eq!(scan(&[]).max, f32::NEG_INFINITY);
    }

    #[test]
    fn exp_is_accurate_over_the_whole_range() {
        let mut worst = 0.0f64;
        let mut x = 0.0f32;
        while x > -87.0 {
            let got = f64::from(exp_nonpositive(x));
            let want = f64::from(x).exp();
            worst = worst.max(((got - want) / want).abs());
            x -= 0.001_37;
        }
        assert!(worst < 4e-7, "worst relative error {worst}");
        assert_eq!(exp_nonpositive(0.0), 1.0);
        assert_eq!(exp_nonpositive(f32::NEG_INFINITY), 0.0);
        assert_eq!(exp_nonpositive(-1e30), 0.0);
        assert_eq!(exp_nonpositive(-100.0), 0.0);
    }

    #[test]
    fn log_sum_exp_matches_the_obvious_sum() {
        let x: Vec<f32> = (0..1000).map(|i| (i as f32 * 0.11).cos() * 5.0).collect();
        let m = scan(&x).max;
        let want = x.iter().map(|&v| f64::from(v).exp()).sum::<f64>().ln();
        assert!((log_sum_exp(&x, m) - want).abs() < 1e-5);
    }

    #[test]
    fn the_avx2_builds_agree_bit_for_bit_with_the_portable_ones() {
        let x: Vec<f32> = (0..5003)
            .map(|i| ((i * 7919) % 1013) as f32 * -0.05)
            .collect();
        let max = scan(&x).max;
        assert_eq!(scan(&x), scan_generic(&x));
        let (mut a, mut b) = (vec![0.0; x.len()], vec![0.0; x.len()]);
        exp_shifted(&x, max, 0.7, &mut a);
        exp_shifted_generic(&x, max, 0.7, &mut b);
        assert_eq!(a, b);
        // The exp pass (AVX-512 intrinsics where the CPU has them) at T = 1 and T != 1, on
        // rows with -inf, logits past exp's underflow and a partial last block.
        for (n, inv_t) in [(5003, 0.7f32), (5003, 1.0), (2048, 1.0), (37, 1.3)] {
            let mut y = x[..n].to_vec();
            y[5] = f32::NEG_INFINITY;
            y[n - 1] = -95.0;
            y[n - 3] = -1e30;
            let mut want = vec![0.0; n];
            exp_shifted_generic(&y, max, inv_t, &mut want);
            let mut c = vec![0.0; n];
            let fused = exp_sums(&y, max, inv_t, &mut c, 0.01, &x);
            assert_eq!(c, want, "n {n} inv_t {inv_t}");
            assert_eq!(c[5], 0.0);
            assert_eq!(fused, sum_and_high(&want, 0.01));
            assert_eq!(
                fused,
                exp_shifted_sums_generic(&y, max, inv_t, &mut c, 0.01, &[])
            );
            // The scan of the next row during the pass: its max (with AVX-512), or None
            // where the row holds NaN or an infinity, or is not as long.
            let mut next: Vec<f32> = x[x.len() - n..].iter().map(|v| v * 0.5 - 3.0).collect();
            #[cfg(target_arch = "x86_64")]
            let wide = crate::has_avx512();
            #[cfg(not(target_arch = "x86_64"))]
            let wide = false;
            let mut d = vec![0.0; n];
            for (bad, want_max) in [
                (None, wide),
                (Some(f32::NAN), false),
                (Some(f32::INFINITY), false),
                (Some(f32::NEG_INFINITY), false),
            ] {
                if let Some(v) = bad {
                    next[n / 2] = v;
                }
                let (t, a, next_max) = exp_shifted_sums(&y, max, inv_t, &mut d, 0.01, &next, true);
                assert_eq!((t, a), fused);
                assert_eq!(d, want);
                assert_eq!(next_max, want_max.then(|| scan(&next).max), "n {n} {bad:?}");
            }
            let short = &next[1..];
            assert_eq!(
                exp_shifted_sums(&y, max, inv_t, &mut d, 0.01, short, true).2,
                None
            );
        }
        assert_eq!(log_sum_exp(&x, max), log_sum_exp_generic(&x, max));
        assert_eq!(first_index_of(&x, max), first_index_of_generic(&x, max));
        let maxima = block_maxima(&x);
        assert_eq!(maxima, block_maxima_generic(&x));
        let want: Vec<f32> = x
            .chunks_exact(MAXIMA_BLOCK)
            .map(|b| b.iter().copied().fold(f32::NEG_INFINITY, f32::max))
            .collect();
        assert_eq!(maxima, want);
        let (mut i, mut j) = (Vec::new(), Vec::new());
        indices_at_or_above(&x, -3.0, &mut i);
        indices_at_or_above_generic(&x, -3.0, &mut j);
        assert_eq!(i, j);
        assert_eq!(
            i,
            (0..x.len() as u32)
                .filter(|&k| x[k as usize] >= -3.0)
                .collect::<Vec<_>>()
        );
        let (total, high) = sum_and_high(&a, 0.01);
        let want: f64 = a.iter().map(|&w| f64::from(w)).sum();
        let want_high: f64 = a
            .iter()
            .filter(|&&w| w >= 0.01)
            .map(|&w| f64::from(w))
            .sum();
        assert!((total - want).abs() < 1e-4 * want && (high - want_high).abs() < 1e-4 * want);
    }

    /// On an AVX-512 machine the dispatchers above run the AVX-512 build; the AVX2 build
    /// (what CPUs without AVX-512 run) is compared here directly.
    #[cfg(target_arch = "x86_64")]
    #[test]
    fn the_avx2_builds_agree_with_the_dispatched_ones() {
        if !(std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma")) {
            return;
        }
        let x: Vec<f32> = (0..5003)
            .map(|i| ((i * 104_729) % 2039) as f32 * -0.03)
            .collect();
        let max = scan(&x).max;
        let (mut a, mut b) = (vec![0.0; x.len()], vec![0.0; x.len()]);
        // SAFETY: the CPU has AVX2 and FMA (checked above).
        unsafe {
            assert_eq!(scan_avx2(&x), scan(&x));
            assert_eq!(
                exp_shifted_sums_avx2(&x, max, 0.7, &mut a, 0.01, &x),
                exp_sums(&x, max, 0.7, &mut b, 0.01, &x)
            );
            assert_eq!(a, b);
            assert_eq!(log_sum_exp_avx2(&x, max), log_sum_exp(&x, max));
            assert_eq!(block_maxima_avx2(&x), block_maxima(&x));
            let (mut i, mut j) = (Vec::new(), Vec::new());
            indices_at_or_above_avx2(&x, -3.0, &mut i);
            indices_at_or_above(&x, -3.0, &mut j);
            assert_eq!(i, j);
        }
    }

    #[test]
    fn first_index_of_takes_the_first_tie() {
        assert_eq!(first_index_of(&[1.0, 3.0, 2.0, 3.0], 3.0), 1);
    }
}
