//! One row of the pipeline: penalties → temperature → top-k → top-p → min-p → draw.

use super::kernels::{self, Scan};
use super::params::RowParams;
use super::penalties;
use super::philox;
use super::select::{self, Cand};
use crate::error::{Error, Result};

/// Buffers reused from row to row by one worker thread.
#[derive(Default)]
pub struct Scratch {
    penalised: Vec<f32>,
    weights: Vec<f32>,
    cands: Vec<Cand>,
    bucket: Vec<Cand>,
    history: Vec<u32>,
    /// The final distribution: surviving ids and their unnormalised weights.
    pub ids: Vec<u32>,
    pub probs: Vec<f32>,
}

/// The final distribution of a row, left in `scratch.ids` / `scratch.probs` (normalised).
///
/// `logits` is the raw row; `history` the ids seen so far (for the penalties).
pub fn final_distribution(
    row: usize,
    logits: &[f32],
    history: &[u32],
    params: &RowParams,
    scratch: &mut Scratch,
) -> Result<()> {
    let Scratch {
        penalised,
        weights,
        cands,
        bucket,
        history: hist_buf,
        ids,
        probs,
    } = scratch;
    ids.clear();
    probs.clear();
    let x: &[f32] = if params.has_penalties() && !history.is_empty() {
        penalised.clear();
        penalised.extend_from_slice(logits);
        penalties::apply(penalised, history, params, hist_buf);
        penalised
    } else {
        logits
    };
    let Scan {
        max,
        has_nan,
        has_pos_inf,
    } = kernels::scan(x);
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
        probs.push(1.0);
        return Ok(());
    }
    let inv_t = params.inv_temperature();
    let vocab = x.len();
    if params.top_k > 0 && params.top_k < vocab {
        // Only the top-k candidates (and their ties) go on; they come back in rank order,
        // so top-p is a prefix and min-p a threshold on the already computed weights.
        select::top_k_with_ties(x, params.top_k, cands);
        weights.clear();
        weights.extend(
            cands
                .iter()
                .map(|c| kernels::exp_nonpositive((c.value - max) * inv_t)),
        );
        let keep = if params.top_p < 1.0 {
            select::top_p_prefix(weights, params.top_p)
        } else {
            cands.len()
        };
        let min_w = params.min_p as f32;
        for (c, &w) in cands.iter().zip(weights.iter()).take(keep) {
            if w >= min_w && w > 0.0 {
                ids.push(c.id);
                probs.push(w);
            }
        }
    } else if params.top_p < 1.0 {
        weights.resize(vocab, 0.0);
        kernels::exp_shifted(x, max, inv_t, weights);
        let cut = select::top_p_cut(x, weights, params.top_p, bucket);
        let min_w = params.min_p as f32;
        for (i, (&v, &w)) in x.iter().zip(weights.iter()).enumerate() {
            if w >= min_w && w > 0.0 && select::ranks_at_or_before(v, i as u32, &cut) {
                ids.push(i as u32);
                probs.push(w);
            }
        }
    } else if params.min_p > 0.0 {
        // exp((v - max) / T) >= min_p  <=>  v >= max + T ln(min_p): most of the row fails a
        // plain compare, and exp runs only on the few that pass.
        let log_floor = params.min_p.ln() * params.temperature;
        let slack = 1e-3 * (f64::from(max).abs() + log_floor.abs() + 1.0);
        let floor = (f64::from(max) + log_floor - slack) as f32;
        let min_w = params.min_p as f32;
        for (i, &v) in x.iter().enumerate() {
            if v >= floor {
                let w = kernels::exp_nonpositive((v - max) * inv_t);
                if w >= min_w && w > 0.0 {
                    ids.push(i as u32);
                    probs.push(w);
                }
            }
        }
    } else {
        weights.resize(vocab, 0.0);
        kernels::exp_shifted(x, max, inv_t, weights);
        for (i, &w) in weights.iter().enumerate() {
            if w > 0.0 {
                ids.push(i as u32);
                probs.push(w);
            }
        }
    }
    // The top token always has weight 1, so the set is never empty; normalise in f64.
    let total: f64 = probs.iter().map(|&w| f64::from(w)).sum();
    if total.is_nan() || total <= 0.0 {
        return Err(Error::Value(format!(
            "logits row {row}: no token has positive probability"
        )));
    }
    let scale = 1.0 / total;
    for p in probs.iter_mut() {
        *p = (f64::from(*p) * scale) as f32;
    }
    Ok(())
}

/// Draws from the distribution in `scratch` with the counter-based uniform of `params`;
/// returns (token id, its probability).
pub fn draw(params: &RowParams, scratch: &Scratch) -> (u32, f32) {
    let u = philox::uniform(params.seed, params.sequence, params.step);
    let total: f64 = scratch.probs.iter().map(|&p| f64::from(p)).sum();
    let target = u * total;
    let mut mass = 0.0f64;
    let mut last = (0u32, 0.0f32);
    for (&id, &p) in scratch.ids.iter().zip(&scratch.probs) {
        if p > 0.0 {
            mass += f64::from(p);
            last = (id, p);
            if mass > target {
                return last;
            }
        }
    }
    // Only reached when rounding leaves `target` at the very top: the last positive token.
    last
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dist(x: &[f32], params: RowParams) -> Vec<(u32, f32)> {
        let mut s = Scratch::default();
        final_distribution(0, x, &[], &params, &mut s).unwrap();
        let mut out: Vec<(u32, f32)> = s.ids.iter().copied().zip(s.probs.iter().copied()).collect();
        out.sort_by_key(|p| p.0);
        out
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
        let err = final_distribution(7, &[1.0, f32::NAN], &[], &p, &mut s).unwrap_err();
        assert_eq!(err.to_string(), "logits row 7 contains NaN");
        let err = final_distribution(2, &[f32::NEG_INFINITY; 3], &[], &p, &mut s).unwrap_err();
        assert!(err.to_string().contains("row 2 is all -inf"));
        let err = final_distribution(0, &[], &[], &p, &mut s).unwrap_err();
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
            final_distribution(0, &x, &[], &p, &mut s).unwrap();
            assert_eq!(draw(&p, &s).0, 1);
        }
    }
}
