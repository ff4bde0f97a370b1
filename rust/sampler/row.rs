//! One row of the pipeline: penalties → temperature → top-k → top-p → min-p → draw.

use super::kernels::{self, Scan};
use super::params::RowParams;
use super::penalties;
use super::philox;
use super::select::{self, Cand};
use super::top_p::{self, TopPScratch};
use crate::error::{Error, Result};

/// Buffers reused from row to row by one worker thread, and the final distribution.
#[derive(Default)]
pub struct Scratch {
    penalised: Vec<f32>,
    cands: Vec<Cand>,
    top_p: TopPScratch,
    history: Vec<u32>,
    /// Dense form: the unnormalised weight of every token of the row, kept when it is
    /// `>= threshold` and positive, and the sums of the kept weights of its blocks of
    /// [`BLOCK`] tokens (so that a draw skips whole blocks).
    weights: Vec<f32>,
    threshold: f32,
    block_sums: Vec<f32>,
    /// Sparse form: the surviving ids and their unnormalised weights.
    ids: Vec<u32>,
    sparse_weights: Vec<f32>,
    dense: bool,
    /// The total weight of the survivors.
    total: f64,
    /// The call this scratch serves now (see [`Scratch::start_call`]).
    call: u64,
    /// The max of the row this thread is likely to take next, found during this row's exp
    /// pass: (call, where that row starts, its max). It holds no NaN or infinity.
    next_scan: Option<(u64, usize, f32)>,
}

impl Scratch {
    /// Marks the rows that follow as those of call `call` (a number no other call has):
    /// a row's max read in an earlier call is not used, even if the same buffer holds it.
    pub fn start_call(&mut self, call: u64) {
        self.call = call;
    }
}

/// Tokens per block of the dense form.
const BLOCK: usize = 256;
const LANES: usize = 16;

simd_dispatch! {
    /// Fills the block sums of the dense form with the weights `>= threshold` (the others
    /// are filtered); returns their total. Each block is summed in 16 lanes, then lane by
    /// lane.
    fn sum_blocks / sum_blocks_avx2 (weights: &[f32], block_sums: &mut Vec<f32>, threshold: f32) -> f64 => sum_blocks_generic
}

#[inline(always)]
fn sum_blocks_generic(weights: &[f32], block_sums: &mut Vec<f32>, threshold: f32) -> f64 {
    block_sums.clear();
    let mut total = 0.0f64;
    for wb in weights.chunks(BLOCK) {
        let mut lanes = [0.0f32; LANES];
        // Whole chunks of LANES as fixed-size arrays, so that the loop is one vector body;
        // the row's last partial chunk adds to the same lanes in the same order.
        let chunks = wb.chunks_exact(LANES);
        let tail = chunks.remainder();
        for ws in chunks {
            let ws: &[f32; LANES] = ws.try_into().unwrap_or(&[0.0; LANES]);
            for j in 0..LANES {
                lanes[j] += if ws[j] >= threshold { ws[j] } else { 0.0 };
            }
        }
        for (j, &w) in tail.iter().enumerate() {
            lanes[j] += if w >= threshold { w } else { 0.0 };
        }
        let sum: f32 = lanes.iter().sum();
        block_sums.push(sum);
        total += f64::from(sum);
    }
    total
}

/// Computes the final distribution of a row into `scratch` (see [`draw`], [`write_probs`]).
///
/// `logits` is the raw row; `next` the row this thread takes next (fetched into cache
/// while this one computes; may be empty); `history` the ids seen so far (for the penalties).
pub fn final_distribution(
    row: usize,
    logits: &[f32],
    next: &[f32],
    history: &[u32],
    params: &RowParams,
    scratch: &mut Scratch,
) -> Result<()> {
    let Scratch {
        penalised,
        cands,
        top_p: top_p_scratch,
        history: hist_buf,
        weights,
        threshold,
        block_sums,
        ids,
        sparse_weights,
        dense,
        total,
        call,
        next_scan,
    } = scratch;
    ids.clear();
    sparse_weights.clear();
    *dense = false;
    *threshold = 0.0;
    *total = 0.0;
    let x: &[f32] = if params.has_penalties() && !history.is_empty() {
        penalised.clear();
        penalised.extend_from_slice(logits);
        penalties::apply(penalised, history, params, hist_buf);
        penalised
    } else {
        logits
    };
    // The previous row's exp pass may have found this row's max already.
    let known = next_scan
        .take()
        .filter(|&(c, at, _)| c == *call && at == x.as_ptr() as usize)
        .map(|(_, _, max)| Scan {
            max,
            has_nan: false,
            has_pos_inf: false,
        });
    let Scan {
        max,
        has_nan,
        has_pos_inf,
    } = known.unwrap_or_else(|| kernels::scan(x));
    if has_nan {
        return Err(Error::Value(format!("logits row {row} contains NaN")));
    }
    if has_pos_inf {
        return Err(Error::Value(format!("logits row {row} contains +inf")));
    }
    if max == f32::NEG_INFINITY {
        return Err(Error::Value(format!(
            "logits row {row} is all -inf: no token can be sampled"
        )));
    }
    if params.is_greedy() {
        ids.push(kernels::first_index_of(x, max) as u32);
        sparse_weights.push(1.0);
        *total = 1.0;
        return Ok(());
    }
    let inv_t = params.inv_temperature();
    let vocab = x.len();
    let min_w = params.min_p as f32;
    if params.top_k > 0 && params.top_k < vocab {
        // Only the top-k candidates (and their ties) go on; they come back in rank order,
        // so top-p is a prefix and min-p a threshold on the already computed weights.
        select::top_k_with_ties(x, params.top_k, cands);
        sparse_weights.extend(
            cands
                .iter()
                .map(|c| kernels::exp_nonpositive((c.value - max) * inv_t)),
        );
        let keep = if params.top_p < 1.0 {
            select::top_p_prefix(sparse_weights, params.top_p)
        } else {
            cands.len()
        };
        let mut n = 0;
        for i in 0..keep.min(cands.len()) {
            let w = sparse_weights[i];
            if w >= min_w && w > 0.0 {
                sparse_weights[n] = w;
                ids.push(cands[i].id);
                n += 1;
            }
        }
        sparse_weights.truncate(n);
    } else if params.top_p < 1.0 || params.min_p == 0.0 {
        // Dense form: every token's weight; top-p and min-p become one threshold on it.
        weights.resize(vocab, 0.0);
        *dense = true;
        if params.top_p < 1.0 {
            let (total_w, high, next_max) =
                kernels::exp_shifted_sums(x, max, inv_t, weights, top_p::HIST_MIN, next, true);
            *next_scan = next_max.map(|m| (*call, next.as_ptr() as usize, m));
            let sums = (total_w, high);
            let cut = top_p::top_p_cut(x, weights, params.top_p, sums, top_p_scratch);
            // Past the cut, top-p is a threshold on the weight; ties at it that rank after
            // the cut are zeroed. min-p is a threshold too.
            *threshold = top_p::settle_ties(weights, &cut, top_p_scratch).max(min_w);
        } else {
            kernels::exp_shifted(x, max, inv_t, weights);
        }
        *total = sum_blocks(weights, block_sums, *threshold);
        if total.is_nan() || *total <= 0.0 {
            return Err(Error::Value(format!(
                "logits row {row}: no token has positive probability"
            )));
        }
        return Ok(());
    } else {
        // min-p alone: exp((v - max) / T) >= min_p  <=>  v >= max + T ln(min_p). A compare
        // pass collects the few tokens that pass, and exp runs on those only.
        let log_floor = params.min_p.ln() * params.temperature;
        let slack = 1e-3 * (f64::from(max).abs() + log_floor.abs() + 1.0);
        let floor = (f64::from(max) + log_floor - slack) as f32;
        kernels::indices_at_or_above(x, floor, ids);
        let mut kept = 0;
        for i in 0..ids.len() {
            let id = ids[i];
            let w = kernels::exp_nonpositive((x[id as usize] - max) * inv_t);
            if w >= min_w && w > 0.0 {
                ids[kept] = id;
                sparse_weights.push(w);
                kept += 1;
            }
        }
        ids.truncate(kept);
    }
    *total = sparse_weights.iter().map(|&w| f64::from(w)).sum();
    // The top token always has weight 1, so this only guards against a logic error.
    if total.is_nan() || *total <= 0.0 {
        return Err(Error::Value(format!(
            "logits row {row}: no token has positive probability"
        )));
    }
    Ok(())
}

/// Draws from the distribution in `scratch` with the counter-based uniform of `params`;
/// returns (token id, its probability under the final distribution).
pub fn draw(params: &RowParams, scratch: &Scratch) -> (u32, f32) {
    let u = philox::uniform(params.seed, params.sequence, params.step);
    let target = u * scratch.total;
    let prob = |w: f32| (f64::from(w) / scratch.total) as f32;
    let mut mass = 0.0f64;
    let mut last = (0u32, 0.0f32);
    if !scratch.dense {
        for (&id, &w) in scratch.ids.iter().zip(&scratch.sparse_weights) {
            if w > 0.0 {
                mass += f64::from(w);
                last = (id, w);
                if mass > target {
                    break;
                }
            }
        }
        return (last.0, prob(last.1));
    }
    // Skip whole blocks by their sums, then walk the block that crosses the target.
    let mut last_block = None;
    for (b, &sum) in scratch.block_sums.iter().enumerate() {
        if sum > 0.0 {
            last_block = Some(b);
            if mass + f64::from(sum) > target {
                break;
            }
            mass += f64::from(sum);
        }
    }
    let Some(b) = last_block else { return (0, 0.0) };
    let start = b * BLOCK;
    let block = scratch.weights.get(start..).unwrap_or(&[]);
    for (j, &w) in block.iter().take(BLOCK).enumerate() {
        if w >= scratch.threshold && w > 0.0 {
            mass += f64::from(w);
            last = ((start + j) as u32, w);
            if mass > target {
                break;
            }
        }
    }
    // Rounding may leave `target` just above the walked mass: `last` is then the last
    // positive token of the last positive block, never a filtered one.
    (last.0, prob(last.1))
}

/// Writes the normalised final distribution into `out` (one row, zeros where filtered).
pub fn write_probs(scratch: &Scratch, out: &mut [f32]) {
    let scale = 1.0 / scratch.total;
    if scratch.dense {
        for (o, &w) in out.iter_mut().zip(&scratch.weights) {
            *o = if w >= scratch.threshold {
                (f64::from(w) * scale) as f32
            } else {
                0.0
            };
        }
    } else {
        out.fill(0.0);
        for (&id, &w) in scratch.ids.iter().zip(&scratch.sparse_weights) {
            if let Some(slot) = out.get_mut(id as usize) {
                *slot = (f64::from(w) * scale) as f32;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dist(x: &[f32], params: RowParams) -> Vec<(u32, f32)> {
        let mut s = Scratch::default();
        final_distribution(0, x, &[], &[], &params, &mut s).unwrap();
        let mut dense = vec![0.0f32; x.len()];
        write_probs(&s, &mut dense);
        (0..x.len() as u32)
            .zip(dense)
            .filter(|p| p.1 > 0.0)
            .collect()
    }

    #[test]
    fn greedy_takes_the_first_maximum() {
        let x = [1.0, 5.0, 5.0, -1.0];
        assert_eq!(
            dist(
                &x,
                RowParams {
                    temperature: 0.0,
                    ..Default::default()
                }
            ),
            vec![(1, 1.0)]
        );
    }

    #[test]
    fn the_filters_compose_in_hugging_face_order() {
        // weights at T=1: 1, e^-1, e^-2, e^-3 (normalised 0.644, 0.237, 0.087, 0.032)
        let x = [3.0f32, 2.0, 1.0, 0.0];
        let ids = |p: RowParams| dist(&x, p).into_iter().map(|d| d.0).collect::<Vec<_>>();
        assert_eq!(
            ids(RowParams {
                top_k: 2,
                ..Default::default()
            }),
            vec![0, 1]
        );
        assert_eq!(
            ids(RowParams {
                top_p: 0.85,
                ..Default::default()
            }),
            vec![0, 1]
        );
        assert_eq!(
            ids(RowParams {
                top_p: 0.89,
                ..Default::default()
            }),
            vec![0, 1, 2]
        );
        // After top-k 2 the mass is renormalised: 0.731, 0.269, so top-p 0.7 keeps one.
        assert_eq!(
            ids(RowParams {
                top_k: 2,
                top_p: 0.7,
                ..Default::default()
            }),
            vec![0]
        );
        assert_eq!(
            ids(RowParams {
                min_p: 0.3,
                ..Default::default()
            }),
            vec![0, 1]
        );
        assert_eq!(
            ids(RowParams {
                min_p: 0.3,
                top_p: 0.5,
                ..Default::default()
            }),
            vec![0]
        );
        assert_eq!(
            ids(RowParams {
                min_p: 0.3,
                top_k: 3,
                ..Default::default()
            }),
            vec![0, 1]
        );
        // A high temperature flattens the row: min-p 0.3 now keeps three.
        assert_eq!(
            ids(RowParams {
                min_p: 0.3,
                temperature: 2.0,
                ..Default::default()
            }),
            vec![0, 1, 2]
        );
        let p = dist(&x, RowParams::default());
        let z: f32 = [1.0f32, (-1.0f32).exp(), (-2.0f32).exp(), (-3.0f32).exp()]
            .iter()
            .sum();
        assert!((p[1].1 - (-1.0f32).exp() / z).abs() < 1e-6);
    }

    #[test]
    fn bad_rows_are_errors_naming_the_row() {
        let mut s = Scratch::default();
        let p = RowParams::default();
        let err = final_distribution(7, &[1.0, f32::NAN], &[], &[], &p, &mut s).unwrap_err();
        assert_eq!(err.to_string(), "logits row 7 contains NaN");
        let err = final_distribution(2, &[f32::NEG_INFINITY; 3], &[], &[], &p, &mut s).unwrap_err();
        assert!(err.to_string().contains("row 2 is all -inf"));
        let err = final_distribution(0, &[], &[], &[], &p, &mut s).unwrap_err();
        assert!(err.to_string().contains("all -inf"));
    }

    #[test]
    fn never_draws_a_filtered_or_impossible_token() {
        let x = [f32::NEG_INFINITY, 0.0, f32::NEG_INFINITY, -200.0];
        let mut s = Scratch::default();
        for step in 0..2000 {
            let p = RowParams {
                step,
                ..Default::default()
            };
            final_distribution(0, &x, &[], &[], &p, &mut s).unwrap();
            assert_eq!(draw(&p, &s).0, 1);
        }
    }

    #[test]
    fn a_top_p_cut_inside_a_group_of_equal_weights_keeps_the_reference_prefix() {
        use crate::sampler::select::{tests::ranked, top_p_prefix};
        // Equal logits, and logits one ulp apart whose weights round to the same float,
        // around where the cut falls; the reference ranks by logit, then by id.
        let n = 3000;
        let x: Vec<f32> = (0..n)
            .map(|i| match i % 3 {
                0 => 0.49,
                1 => f32::from_bits(0.49f32.to_bits() - 1),
                _ => -12.0 + (i as f32) * 1e-4,
            })
            .chain([0.0, 0.5])
            .collect();
        let max = 0.5;
        let all = ranked(&x);
        let w: Vec<f32> = all
            .iter()
            .map(|c| kernels::exp_nonpositive(c.value - max))
            .collect();
        // ranked: 0.5, 0.0, 1000 x 0.49, 1000 x (0.49 - 1 ulp), the rest.
        assert_eq!(w[1001], w[1002], "the two logits near 0.49 have one weight");
        let total: f64 = w.iter().map(|&v| f64::from(v)).sum();
        for k in [40usize, 1001, 1002, 1003, 1501, 2500] {
            // A p that ends the kept prefix at the k-th token, inside the group.
            let mass: f64 = w[..k].iter().map(|&v| f64::from(v)).sum();
            let p = (mass - 0.5 * f64::from(w[k - 1])) / total;
            let want = top_p_prefix(&w, p);
            assert_eq!(want, k);
            let kept: Vec<u32> = dist(
                &x,
                RowParams {
                    top_p: p,
                    ..Default::default()
                },
            )
            .into_iter()
            .map(|d| d.0)
            .collect();
            let mut reference: Vec<u32> = all[..want].iter().map(|c| c.id).collect();
            reference.sort_unstable();
            assert_eq!(kept, reference, "k {k}");
        }
    }

    #[test]
    fn a_max_found_by_the_previous_row_serves_only_that_row_of_that_call() {
        use crate::sampler::select::tests::lcg_row;
        let n = 3001;
        let mut data = lcg_row(2 * n, 5);
        let p = RowParams {
            top_p: 0.8,
            ..Default::default()
        };
        let fresh = |x: &[f32]| {
            let mut s = Scratch::default();
            final_distribution(1, x, &[], &[], &p, &mut s).map(|_| {
                let mut out = vec![0.0f32; x.len()];
                write_probs(&s, &mut out);
                out
            })
        };
        let second = |s: &mut Scratch, data: &[f32], first_call: u64, second_call: u64| {
            let (a, b) = data.split_at(n);
            s.start_call(first_call);
            final_distribution(0, a, b, &[], &p, s).unwrap();
            // Found where the CPU has AVX-512 and the row is finite.
            #[cfg(target_arch = "x86_64")]
            let wide = crate::has_avx512();
            #[cfg(not(target_arch = "x86_64"))]
            let wide = false;
            let finite = b.iter().all(|v| v.is_finite());
            assert_eq!(s.next_scan.is_some(), wide && finite);
            s.start_call(second_call);
            final_distribution(1, b, &[], &[], &p, s).map(|_| {
                let mut out = vec![0.0f32; n];
                write_probs(s, &mut out);
                out
            })
        };
        let mut s = Scratch::default();
        // In one call the second row's max comes from the first row's pass.
        assert_eq!(second(&mut s, &data, 1, 1).ok(), fresh(&data[n..]).ok());
        // The buffer changes between calls (a new max in it): the next call scans.
        let (a, b) = data.split_at(n);
        s.start_call(2);
        final_distribution(0, a, b, &[], &p, &mut s).unwrap();
        data[n + 17] = 40.0;
        s.start_call(3);
        let mut out = vec![0.0f32; n];
        final_distribution(1, &data[n..], &[], &[], &p, &mut s).unwrap();
        write_probs(&s, &mut out);
        assert_eq!(Some(out.clone()), fresh(&data[n..]).ok());
        assert!(out[17] > 0.99);
        // NaN and +inf in the next row are still found and named.
        for bad in [f32::NAN, f32::INFINITY] {
            data[n + 5] = bad;
            let err = second(&mut s, &data, 4, 4).unwrap_err().to_string();
            assert!(err.starts_with("logits row 1 contains"), "{err}");
        }
    }
}
