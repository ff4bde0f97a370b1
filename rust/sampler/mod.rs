//! Batched logits sampling with Hugging Face's semantics and counter-based randomness.
//!
//! Each row goes through repetition/presence/frequency penalties → temperature → top-k →
//! top-p → min-p (the order of Hugging Face's `generate`), then one token is drawn with a
//! uniform from Philox4x32-10 keyed by (seed, sequence, step): the result of a row depends
//! on nothing else in the batch. Rows run in parallel on rayon's pool.
//!
//! No path sorts the vocabulary: top-k is a one-pass selection, top-p a histogram threshold
//! search (over a sample of the row where it can, see `bracket`) with an exact ranking of
//! one bucket (see [`top_p`]), min-p a plain threshold.

#[cfg(target_arch = "x86_64")]
mod bracket;
pub(crate) mod kernels;
mod params;
mod penalties;
mod philox;
mod row;
mod select;
mod top_p;
#[cfg(target_arch = "x86_64")]
mod wide;

use std::cell::RefCell;
use std::sync::atomic::{AtomicU64, Ordering};

use rayon::prelude::*;

pub use params::RowParams;
pub use philox::{philox4x32_10, uniform};
use row::Scratch;

use crate::error::{Error, Result};

/// A `[rows, vocab]` row-major block of logits.
#[derive(Clone, Copy, Debug)]
pub struct Logits<'a> {
    pub data: &'a [f32],
    pub rows: usize,
    pub vocab: usize,
}

impl<'a> Logits<'a> {
    /// Checks that `data` holds `rows * vocab` values.
    pub fn new(data: &'a [f32], rows: usize, vocab: usize) -> Result<Self> {
        if rows.checked_mul(vocab) != Some(data.len()) {
            return Err(Error::Value(format!(
                "logits hold {} values, not rows * vocab = {rows} * {vocab}",
                data.len()
            )));
        }
        if vocab == 0 {
            return Err(Error::Value("logits have an empty vocabulary axis".into()));
        }
        if vocab > u32::MAX as usize {
            return Err(Error::Value(format!("vocabulary of {vocab} is too large")));
        }
        Ok(Logits { data, rows, vocab })
    }

    fn row(&self, r: usize) -> &'a [f32] {
        self.data
            .get(r * self.vocab..(r + 1) * self.vocab)
            .unwrap_or(&[])
    }

    /// Row `r + 1` (empty after the last): rayon hands each thread runs of consecutive
    /// rows, so it is usually the one the thread takes next.
    fn next_row(&self, r: usize) -> &'a [f32] {
        self.row(r + 1)
    }
}

/// The token ids each row has seen (for penalties), as one flat list with row offsets
/// (`offsets.len() == rows + 1`), or empty for no history.
#[derive(Clone, Copy, Debug, Default)]
pub struct History<'a> {
    pub ids: &'a [u32],
    pub offsets: &'a [usize],
}

impl<'a> History<'a> {
    fn check(&self, rows: usize) -> Result<()> {
        if self.offsets.is_empty() && self.ids.is_empty() {
            return Ok(());
        }
        if self.offsets.len() != rows + 1 {
            return Err(Error::Value(format!(
                "history has {} offsets for {rows} rows (want rows + 1)",
                self.offsets.len()
            )));
        }
        let ordered = self.offsets.windows(2).all(|w| w[0] <= w[1]);
        if !ordered || self.offsets.last().copied().unwrap_or(0) > self.ids.len() {
            return Err(Error::Value(
                "history offsets are not increasing within the ids".into(),
            ));
        }
        Ok(())
    }

    fn row(&self, r: usize) -> &'a [u32] {
        match (self.offsets.get(r), self.offsets.get(r + 1)) {
            (Some(&a), Some(&b)) => self.ids.get(a..b).unwrap_or(&[]),
            _ => &[],
        }
    }
}

/// What [`sample`] returns, one entry per row (`top_*` hold `n_top` per row).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Samples {
    pub ids: Vec<i64>,
    /// log-probability of the chosen token under the final (filtered, renormalised) distribution.
    pub logprobs: Vec<f32>,
    /// log-probability of the chosen token under softmax of the raw logits.
    pub raw_logprobs: Vec<f32>,
    /// The `n_top` most likely tokens of the raw distribution and their raw log-probabilities.
    pub top_ids: Vec<i64>,
    pub top_logprobs: Vec<f32>,
    pub n_top: usize,
}

fn check_params(params: &[RowParams], rows: usize) -> Result<()> {
    if params.len() != rows {
        return Err(Error::Value(format!(
            "{} parameter rows for {rows} logits rows",
            params.len()
        )));
    }
    params
        .iter()
        .enumerate()
        .try_for_each(|(r, p)| p.validate(r))
}

thread_local! {
    /// Each thread's buffers, kept between calls: a fresh row-sized buffer per call would
    /// cost page faults on every step of a generation loop.
    static SCRATCH: RefCell<Scratch> = RefCell::new(Scratch::default());
}

/// Runs `f` with this thread's scratch buffers (fresh ones if they are already in use).
fn with_scratch<T>(f: impl FnOnce(&mut Scratch) -> T) -> T {
    SCRATCH.with(|cell| match cell.try_borrow_mut() {
        Ok(mut scratch) => f(&mut scratch),
        Err(_) => f(&mut Scratch::default()),
    })
}

/// Batches with less estimated work than this ([`row_passes`] x vocabulary, summed over the
/// rows) run on the calling thread. Handing rows to the pool costs two wake-ups (the pool's
/// threads, then the caller) of 30-150 us each on the 2-core VM, more than 8 rows of top-k
/// take on one thread (8 x ~7 us at V = 50,257: 103 us through the pool, ~60 us without).
const SEQUENTIAL_BELOW: usize = 3 << 19;

/// A row's work in passes over its logits: about 2 when a top-k, min-p or greedy row reads
/// the logits and then only its few survivors, 16 when it must exponentiate the whole row
/// (top-p alone, or plain sampling: ~90 us per 50,257 logits against ~6).
fn row_passes(p: &RowParams) -> usize {
    let light = p.temperature == 0.0 || p.top_k > 0 || p.min_p > 0.0;
    if light {
        2
    } else {
        16
    }
}

/// Runs `f` on every row, in parallel unless the batch is small ([`SEQUENTIAL_BELOW`]);
/// returns the results in row order, or the error of the lowest failing row (so the message
/// does not depend on thread timing).
fn per_row<T: Send>(
    params: &[RowParams],
    vocab: usize,
    f: impl Fn(usize, &mut Scratch) -> Result<T> + Sync,
) -> Result<Vec<T>> {
    let rows = params.len();
    let work = params
        .iter()
        .map(row_passes)
        .fold(0usize, |w, p| w.saturating_add(p.saturating_mul(vocab)));
    static CALLS: AtomicU64 = AtomicU64::new(0);
    let call = CALLS.fetch_add(1, Ordering::Relaxed);
    let run = |r: usize| {
        with_scratch(|s| {
            s.start_call(call);
            f(r, s)
        })
    };
    let results: Vec<Result<T>> = if work < SEQUENTIAL_BELOW {
        (0..rows).map(run).collect()
    } else {
        (0..rows).into_par_iter().map(run).collect()
    };
    results.into_iter().collect()
}

/// Samples one token per row. `n_top` alternatives per row are returned when `want_logprobs`.
pub fn sample(
    logits: Logits<'_>,
    params: &[RowParams],
    history: History<'_>,
    want_logprobs: bool,
    n_top: usize,
) -> Result<Samples> {
    check_params(params, logits.rows)?;
    history.check(logits.rows)?;
    let n_top = if want_logprobs {
        n_top.min(logits.vocab)
    } else {
        0
    };
    let per = per_row(params, logits.vocab, |r, s| {
        let raw = logits.row(r);
        let p = &params[r];
        row::final_distribution(r, raw, logits.next_row(r), history.row(r), p, s)?;
        let (id, prob) = row::draw(p, s);
        if !want_logprobs {
            return Ok((id, 0.0, 0.0, Vec::new()));
        }
        let lse = kernels::log_sum_exp(raw, kernels::scan(raw).max);
        let raw_lp = |i: u32| {
            (f64::from(raw.get(i as usize).copied().unwrap_or(f32::NEG_INFINITY)) - lse) as f32
        };
        let mut top = Vec::with_capacity(n_top);
        if n_top > 0 {
            let mut cands = Vec::new();
            select::top_k_with_ties(raw, n_top, &mut cands);
            top.extend(cands.iter().take(n_top).map(|c| (c.id, raw_lp(c.id))));
        }
        Ok((id, f64::from(prob).ln() as f32, raw_lp(id), top))
    })?;
    let mut out = Samples {
        n_top,
        ..Default::default()
    };
    for (id, lp, raw_lp, top) in per {
        out.ids.push(i64::from(id));
        if want_logprobs {
            out.logprobs.push(lp);
            out.raw_logprobs.push(raw_lp);
            for (tid, tlp) in top {
                out.top_ids.push(i64::from(tid));
                out.top_logprobs.push(tlp);
            }
        }
    }
    Ok(out)
}

/// The final filtered, renormalised distribution of every row, `[rows, vocab]` row-major.
pub fn probs(logits: Logits<'_>, params: &[RowParams], history: History<'_>) -> Result<Vec<f32>> {
    check_params(params, logits.rows)?;
    history.check(logits.rows)?;
    let vocab = logits.vocab;
    let rows = per_row(params, logits.vocab, |r, s| {
        let next = logits.next_row(r);
        row::final_distribution(r, logits.row(r), next, history.row(r), &params[r], s)?;
        let mut dense = vec![0.0f32; vocab];
        row::write_probs(s, &mut dense);
        Ok(dense)
    })?;
    Ok(rows.concat())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row_of(vocab: usize, seed: u32) -> Vec<f32> {
        (0..vocab)
            .map(|i| {
                ((i as u32).wrapping_mul(2654435761).wrapping_add(seed) % 10007) as f32 / 1000.0
            })
            .collect()
    }

    #[test]
    fn a_seeded_row_draws_the_same_token_wherever_it_sits() {
        let vocab = 1000;
        let params = RowParams {
            seed: 42,
            step: 3,
            top_p: 0.9,
            ..Default::default()
        };
        let alone = row_of(vocab, 1);
        let one = sample(
            Logits::new(&alone, 1, vocab).unwrap(),
            &[params],
            History::default(),
            false,
            0,
        )
        .unwrap();
        let mut batch = Vec::new();
        let mut ps = Vec::new();
        for r in 0..64 {
            batch.extend(if r == 0 || r == 63 {
                alone.clone()
            } else {
                row_of(vocab, r as u32 + 5)
            });
            ps.push(if r == 0 || r == 63 {
                params
            } else {
                RowParams {
                    seed: r as u64,
                    ..params
                }
            });
        }
        let many = sample(
            Logits::new(&batch, 64, vocab).unwrap(),
            &ps,
            History::default(),
            false,
            0,
        )
        .unwrap();
        assert_eq!(many.ids[0], one.ids[0]);
        assert_eq!(many.ids[63], one.ids[0]);
    }

    #[test]
    fn shape_params_and_history_are_checked() {
        let x = vec![0.0f32; 6];
        assert!(Logits::new(&x, 4, 2).is_err());
        assert!(Logits::new(&x, 6, 0).is_err());
        let l = Logits::new(&x, 2, 3).unwrap();
        assert!(sample(l, &[RowParams::default()], History::default(), false, 0).is_err());
        let bad = [
            RowParams::default(),
            RowParams {
                top_k: 1,
                top_p: 2.0,
                ..Default::default()
            },
        ];
        let err = sample(l, &bad, History::default(), false, 0)
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("top_p[1]"), "{err}");
        let ok = [RowParams::default(); 2];
        let h = History {
            ids: &[1, 2],
            offsets: &[0, 3, 2],
        };
        assert!(sample(l, &ok, h, false, 0).is_err());
        let h = History {
            ids: &[1, 2],
            offsets: &[0, 1, 2],
        };
        assert!(sample(l, &ok, h, false, 0).is_ok());
    }

    #[test]
    fn the_lowest_bad_row_is_reported() {
        let mut x = vec![0.0f32; 40];
        x[5 * 4] = f32::NAN;
        x[9 * 4 + 1] = f32::NAN;
        let l = Logits::new(&x, 10, 4).unwrap();
        let err = sample(l, &[RowParams::default(); 10], History::default(), false, 0).unwrap_err();
        assert_eq!(err.to_string(), "logits row 5 contains NaN");
    }

    #[test]
    fn logprobs_are_consistent() {
        let x = [0.0f32, 1.0, 2.0, 3.0];
        let l = Logits::new(&x, 1, 4).unwrap();
        let p = [RowParams {
            top_k: 2,
            seed: 5,
            ..Default::default()
        }];
        let s = sample(l, &p, History::default(), true, 3).unwrap();
        assert!(s.ids[0] == 2 || s.ids[0] == 3);
        let lse = (0..4).map(|i| (i as f64).exp()).sum::<f64>().ln();
        assert!((f64::from(s.raw_logprobs[0]) - (s.ids[0] as f64 - lse)).abs() < 1e-5);
        let z = 1.0 + (-1.0f64).exp();
        let want = if s.ids[0] == 3 {
            -z.ln()
        } else {
            -1.0 - z.ln()
        };
        assert!((f64::from(s.logprobs[0]) - want).abs() < 1e-5);
        assert_eq!(s.top_ids, vec![3, 2, 1]);
        let dense = probs(l, &p, History::default()).unwrap();
        assert_eq!(dense[0], 0.0);
        assert!((dense.iter().sum::<f32>() - 1.0).abs() < 1e-6);
    }
}
