//! The decode step's attention: one new query per row over that row's key/value cache.
//!
//! `out[b, h] = softmax(scale * K[b, h, :len_b] · q[b, h]) · V[b, h, :len_b]`, for the rows
//! `b < lengths.len()` (cache slots `0..rows`) and every head `h`. With a single query the
//! work is two streaming passes over the cached keys and values, so this is bound by memory;
//! torch's CPU flash-attention kernel for this shape (plus the mask that covers rows of
//! different lengths) read the cache at a third of that speed. Each (row, head) is computed on
//! its own, in a fixed order, so a row's result does not depend on the other rows: batch
//! invariance for free.

use crate::error::{Error, Result};

#[cfg(target_arch = "x86_64")]
mod wide;

/// One layer's cache: `[slots, heads, max_len, head_dim]`, row-major and contiguous.
#[derive(Clone, Copy, Debug)]
pub struct CacheShape {
    pub slots: usize,
    pub heads: usize,
    pub max_len: usize,
    pub head_dim: usize,
}

/// Attention of `q` (`[rows, heads, head_dim]`) over the first `lengths[b]` positions of cache
/// slot `b`; writes `out` (same shape as `q`). `Error::Value` for inconsistent sizes or a
/// length outside `1..=max_len`.
pub fn decode_attention(
    q: &[f32],
    k: &[f32],
    v: &[f32],
    shape: CacheShape,
    lengths: &[usize],
    scale: f32,
    out: &mut [f32],
) -> Result<()> {
    let row = shape.heads * shape.head_dim;
    check(q.len(), row, k.len(), v.len(), shape, lengths, out.len())?;
    attend_rows(q, row, k, v, shape, lengths, scale, out);
    Ok(())
}

/// The decode step of one layer: writes each row's new key and value into its cache slot at
/// position `lengths[b] - 1`, then [`decode_attention`] of its query over `lengths[b]`
/// positions. `qkv` is `[rows, 3, heads, head_dim]` (query, key, value: the layout of
/// GPT-2's `c_attn` output), so no split or copy happens before.
pub fn append_and_attend(
    qkv: &[f32],
    k: &mut [f32],
    v: &mut [f32],
    shape: CacheShape,
    lengths: &[usize],
    scale: f32,
    out: &mut [f32],
) -> Result<()> {
    let row = shape.heads * shape.head_dim;
    check(
        qkv.len(),
        3 * row,
        k.len(),
        v.len(),
        shape,
        lengths,
        out.len(),
    )?;
    let d = shape.head_dim;
    for (b, (&n, new)) in lengths.iter().zip(qkv.chunks_exact(3 * row)).enumerate() {
        for h in 0..shape.heads {
            let at = ((b * shape.heads + h) * shape.max_len + n - 1) * d;
            k[at..at + d].copy_from_slice(&new[row + h * d..row + (h + 1) * d]);
            v[at..at + d].copy_from_slice(&new[2 * row + h * d..2 * row + (h + 1) * d]);
        }
    }
    attend_rows(qkv, 3 * row, k, v, shape, lengths, scale, out);
    Ok(())
}

/// The sizes [`decode_attention`] and [`append_and_attend`] need: `q_values` = rows x
/// `q_row` queries, caches of `shape`, lengths in `1..=max_len`, an output of rows x heads
/// x head_dim.
fn check(
    q_values: usize,
    q_row: usize,
    k_values: usize,
    v_values: usize,
    shape: CacheShape,
    lengths: &[usize],
    out_values: usize,
) -> Result<()> {
    let CacheShape {
        slots,
        heads,
        max_len,
        head_dim: d,
    } = shape;
    let rows = lengths.len();
    let cache_len = slots
        .checked_mul(heads)
        .and_then(|n| n.checked_mul(max_len))
        .and_then(|n| n.checked_mul(d));
    if cache_len != Some(k_values) || cache_len != Some(v_values) {
        return Err(Error::Value(format!(
            "key/value caches hold {k_values} and {v_values} values, not {slots}x{heads}x{max_len}x{d}"
        )));
    }
    if rows > slots
        || q_values != rows * q_row
        || out_values != rows * heads * d
        || d == 0
        || heads == 0
    {
        return Err(Error::Value(format!(
            "{rows} rows of {q_row} query values ({q_values} values, output {out_values}) do not \
             fit a cache of {slots} slots, {heads} heads of {d}"
        )));
    }
    if let Some((b, &n)) = lengths
        .iter()
        .enumerate()
        .find(|(_, &n)| n == 0 || n > max_len)
    {
        return Err(Error::Value(format!(
            "row {b} attends over {n} positions; a row needs 1 to {max_len}"
        )));
    }
    Ok(())
}

/// The attention of every row (sizes checked): row `b`'s queries start at `b * q_stride`.
#[allow(clippy::too_many_arguments)]
fn attend_rows(
    q: &[f32],
    q_stride: usize,
    k: &[f32],
    v: &[f32],
    shape: CacheShape,
    lengths: &[usize],
    scale: f32,
    out: &mut [f32],
) {
    let CacheShape {
        heads,
        max_len,
        head_dim: d,
        ..
    } = shape;
    let mut scores: [Vec<f32>; 4] = std::array::from_fn(|_| Vec::with_capacity(max_len));
    #[cfg(target_arch = "x86_64")]
    let wide = d == wide::HEAD_DIM && crate::has_avx512();
    #[cfg(not(target_arch = "x86_64"))]
    let wide = false;
    for (b, &n) in lengths.iter().enumerate() {
        // Four heads at a time: four streams of keys (then of values) in flight at once. A
        // row's runs of positions are separated by gaps (`max_len - n` positions), and one
        // stream alone restarts after every gap (measured at 64 of 96 positions: 12.8 GB/s
        // against 28 GB/s when the same data is contiguous).
        let mut h = 0;
        while h < heads {
            let (at, base) = ((b * heads + h) * d, (b * heads + h) * max_len * d);
            let qa = b * q_stride + h * d;
            let stride = max_len * d;
            if h + 4 <= heads {
                let mut outs = out[at..at + 4 * d].chunks_exact_mut(d);
                let mut next = || outs.next().unwrap_or_default();
                let o = [next(), next(), next(), next()];
                let qs: [&[f32]; 4] = std::array::from_fn(|j| &q[qa + j * d..qa + (j + 1) * d]);
                let ks: [&[f32]; 4] = std::array::from_fn(|j| &k[base + j * stride..][..n * d]);
                let vs: [&[f32]; 4] = std::array::from_fn(|j| &v[base + j * stride..][..n * d]);
                if wide {
                    let next = next_keys(k, shape, lengths, b, h + 4);
                    // SAFETY: `wide` requires the CPU features the kernel is built for.
                    #[cfg(target_arch = "x86_64")]
                    unsafe {
                        wide::attend_group(qs, ks, vs, next, scale, &mut scores, o)
                    };
                } else {
                    attend_four(qs, ks, vs, scale, &mut scores, o);
                }
                h += 4;
            } else {
                let qs = [&q[qa..qa + d]];
                let (ks, vs) = ([&k[base..base + n * d]], [&v[base..base + n * d]]);
                let s = std::array::from_mut(&mut scores[0]);
                let o = [&mut out[at..at + d]];
                if wide {
                    let next = [next_keys(k, shape, lengths, b, h + 1)[0]];
                    // SAFETY: as above.
                    #[cfg(target_arch = "x86_64")]
                    unsafe {
                        wide::attend_group(qs, ks, vs, next, scale, s, o)
                    };
                } else {
                    attend_one(qs, ks, vs, scale, s, o);
                }
                h += 1;
            }
        }
    }
}

/// The keys of the (up to) four heads computed after those before head `h` of row `b`
/// (empty slices past the last): the kernel fetches them into cache ahead of use.
fn next_keys<'a>(
    k: &'a [f32],
    shape: CacheShape,
    lengths: &[usize],
    b: usize,
    h: usize,
) -> [&'a [f32]; 4] {
    let (b, h) = if h < shape.heads { (b, h) } else { (b + 1, 0) };
    let n = lengths.get(b).copied().unwrap_or(0);
    let stride = shape.max_len * shape.head_dim;
    std::array::from_fn(|j| {
        let start = (b * shape.heads + h + j) * stride;
        if h + j < shape.heads {
            k.get(start..start + n * shape.head_dim).unwrap_or(&[])
        } else {
            &[]
        }
    })
}

// avx2_only: LLVM compiles these loops worse for AVX-512 (see `wide`, which takes over there).
simd_dispatch! {
    avx2_only fn attend_one / attend_one_avx2 (
        q: [&[f32]; 1], k: [&[f32]; 1], v: [&[f32]; 1], scale: f32,
        scores: &mut [Vec<f32>; 1], out: [&mut [f32]; 1]
    ) => attend_group::<1>
}

simd_dispatch! {
    avx2_only fn attend_four / attend_four_avx2 (
        q: [&[f32]; 4], k: [&[f32]; 4], v: [&[f32]; 4], scale: f32,
        scores: &mut [Vec<f32>; 4], out: [&mut [f32]; 4]
    ) => attend_group::<4>
}

/// Attention of `N` heads of one row (the same length), their passes interleaved. Each head's
/// arithmetic is the same whatever `N` (so a head gives the same bits alone or in a group):
/// scores, max, `exp(s - max)` and their sum, then the weighted values divided by the sum.
#[inline(always)]
fn attend_group<const N: usize>(
    q: [&[f32]; N],
    k: [&[f32]; N],
    v: [&[f32]; N],
    scale: f32,
    scores: &mut [Vec<f32>; N],
    out: [&mut [f32]; N],
) {
    let d = q[0].len();
    let n = k[0].len() / d;
    let mut max = [f32::NEG_INFINITY; N];
    for s in scores.iter_mut() {
        s.clear();
    }
    for i in 0..n {
        for j in 0..N {
            let s = dot(q[j], &k[j][i * d..(i + 1) * d]) * scale;
            max[j] = max[j].max(s);
            scores[j].push(s);
        }
    }
    let mut sum = [0.0f32; N];
    for j in 0..N {
        for s in scores[j].iter_mut() {
            *s = (*s - max[j]).exp();
            sum[j] += *s;
        }
    }
    let mut out = out;
    for o in out.iter_mut() {
        o.fill(0.0);
    }
    for i in 0..n {
        for j in 0..N {
            let p = scores[j][i];
            for (o, &x) in out[j].iter_mut().zip(&v[j][i * d..(i + 1) * d]) {
                *o += p * x;
            }
        }
    }
    for j in 0..N {
        let inv = 1.0 / sum[j];
        for o in out[j].iter_mut() {
            *o *= inv;
        }
    }
}

/// A dot product in 16 independent lanes (so that it vectorises; the lanes are summed in a
/// fixed order at the end).
#[inline(always)]
fn dot(a: &[f32], b: &[f32]) -> f32 {
    const LANES: usize = 16;
    let mut acc = [0.0f32; LANES];
    let (a16, b16) = (a.chunks_exact(LANES), b.chunks_exact(LANES));
    let (ra, rb) = (a16.remainder(), b16.remainder());
    for (x, y) in a16.zip(b16) {
        for i in 0..LANES {
            acc[i] += x[i] * y[i];
        }
    }
    let mut s = ra.iter().zip(rb).map(|(x, y)| x * y).sum::<f32>();
    for lane in acc {
        s += lane;
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reference(q: &[f32], k: &[f32], v: &[f32], n: usize, scale: f32) -> Vec<f64> {
        let d = q.len();
        let s: Vec<f64> = (0..n)
            .map(|i| {
                (0..d)
                    .map(|j| f64::from(q[j]) * f64::from(k[i * d + j]))
                    .sum::<f64>()
                    * f64::from(scale)
            })
            .collect();
        let m = s.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let e: Vec<f64> = s.iter().map(|x| (x - m).exp()).collect();
        let z: f64 = e.iter().sum();
        (0..d)
            .map(|j| (0..n).map(|i| e[i] * f64::from(v[i * d + j])).sum::<f64>() / z)
            .collect()
    }

    fn values(n: usize, seed: u32) -> Vec<f32> {
        (0..n)
            .map(|i| {
                let x = (i as u32).wrapping_mul(2_654_435_761).wrapping_add(seed) >> 8;
                (x % 2001) as f32 / 1000.0 - 1.0
            })
            .collect()
    }

    #[test]
    fn matches_a_float64_softmax_and_ignores_positions_past_the_length() {
        // 20 dimensions: the portable loops; 64: the AVX-512 kernel where the CPU has it.
        for d in [20, 64] {
            matches_reference(d);
        }
    }

    /// Three slots of five heads (one group of four, with interleaved passes, and one on its
    /// own) and seven positions, heads of `d` dimensions; the cache's keys and values.
    fn small_cache(d: usize) -> (CacheShape, Vec<f32>, Vec<f32>) {
        let shape = CacheShape {
            slots: 3,
            heads: 5,
            max_len: 7,
            head_dim: d,
        };
        let cache = shape.slots * shape.heads * shape.max_len * d;
        (shape, values(cache, 1), values(cache, 2))
    }

    fn matches_reference(d: usize) {
        let (shape, k, mut v) = small_cache(d);
        let (heads, max_len) = (shape.heads, shape.max_len);
        let q = values(2 * heads * d, 3);
        let lengths = [5, 7];
        let mut out = vec![0.0; q.len()];
        decode_attention(&q, &k, &v, shape, &lengths, 0.3, &mut out).unwrap();
        for (b, &n) in lengths.iter().enumerate() {
            for h in 0..heads {
                let at = (b * heads + h) * d;
                let base = (b * heads + h) * max_len * d;
                let want = reference(&q[at..at + d], &k[base..], &v[base..], n, 0.3);
                for (got, want) in out[at..at + d].iter().zip(want) {
                    assert!((f64::from(*got) - want).abs() < 1e-5, "{got} vs {want}");
                }
            }
        }
        // Garbage beyond a row's length (and in unused slots) must not change anything.
        let before = out.clone();
        for h in 0..heads {
            let base = h * max_len * d; // row 0 (length 5): positions 5 and 6
            v[base + 5 * d..base + 7 * d].fill(f32::NAN);
        }
        v[2 * heads * max_len * d..].fill(f32::NAN);
        decode_attention(&q, &k, &v, shape, &lengths, 0.3, &mut out).unwrap();
        assert_eq!(before, out);
    }

    #[test]
    fn append_and_attend_writes_the_new_position_then_attends() {
        for d in [20, 64] {
            let (shape, mut k, mut v) = small_cache(d);
            let (heads, max_len) = (shape.heads, shape.max_len);
            let (k0, v0) = (k.clone(), v.clone());
            let row = heads * d;
            let qkv = values(2 * 3 * row, 3);
            let lengths = [4, 7];
            let mut out = vec![0.0; 2 * row];
            append_and_attend(&qkv, &mut k, &mut v, shape, &lengths, 0.3, &mut out).unwrap();
            let (mut k_want, mut v_want) = (k0, v0);
            let mut q = Vec::new();
            for (b, &n) in lengths.iter().enumerate() {
                let new = &qkv[b * 3 * row..(b + 1) * 3 * row];
                q.extend_from_slice(&new[..row]);
                for h in 0..heads {
                    let at = ((b * heads + h) * max_len + n - 1) * d;
                    k_want[at..at + d].copy_from_slice(&new[row + h * d..row + (h + 1) * d]);
                    v_want[at..at + d]
                        .copy_from_slice(&new[2 * row + h * d..2 * row + (h + 1) * d]);
                }
            }
            assert_eq!((&k, &v), (&k_want, &v_want));
            let mut plain = vec![0.0; 2 * row];
            decode_attention(&q, &k, &v, shape, &lengths, 0.3, &mut plain).unwrap();
            assert_eq!(out, plain);
            // A length of 0 has no position to write: an error, and nothing written.
            let err = append_and_attend(&qkv, &mut k, &mut v, shape, &[0, 1], 0.3, &mut out);
            assert!(err.is_err());
            assert_eq!((&k, &v), (&k_want, &v_want));
        }
    }

    #[test]
    fn bad_sizes_and_lengths_are_errors() {
        let shape = CacheShape {
            slots: 2,
            heads: 1,
            max_len: 4,
            head_dim: 8,
        };
        let (k, v) = (vec![0.0; 64], vec![0.0; 64]);
        let q = vec![0.0; 16];
        let mut out = vec![0.0; 16];
        assert!(decode_attention(&q, &k, &v, shape, &[1, 5], 1.0, &mut out).is_err());
        assert!(decode_attention(&q, &k, &v, shape, &[0, 1], 1.0, &mut out).is_err());
        assert!(decode_attention(&q, &k[..60], &v, shape, &[1, 1], 1.0, &mut out).is_err());
        assert!(decode_attention(&q[..8], &k, &v, shape, &[1, 1], 1.0, &mut out).is_err());
        assert!(decode_attention(&q, &k, &v, shape, &[1, 2, 3], 1.0, &mut out).is_err());
        assert!(decode_attention(&q, &k, &v, shape, &[4, 4], 1.0, &mut out).is_ok());
        // No heads: an error, not a division of the rows into zero-sized chunks.
        let none = CacheShape { heads: 0, ..shape };
        let (mut k0, mut v0) = (Vec::new(), Vec::new());
        let err = append_and_attend(&[], &mut k0, &mut v0, none, &[1, 1], 1.0, &mut []);
        assert!(err.is_err());
        assert!(decode_attention(&[], &k0, &v0, none, &[1, 1], 1.0, &mut []).is_err());
    }
}
