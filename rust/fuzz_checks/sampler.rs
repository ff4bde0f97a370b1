//! The sampler on arbitrary logits (NaN, ±inf, subnormals, ties) and arbitrary parameters:
//! `Ok` exactly when the input is valid, then a token of positive probability from a
//! distribution that obeys every filter; otherwise a `Value` error. Never a panic.

use super::Input;
use crate::error::Error;
use crate::sampler::{probs, sample, History, Logits, RowParams};

/// One logit: a small value (ties, realistic spreads) or, one time in four, any f32 bits.
fn logit(input: &mut Input) -> f32 {
    let tag = input.u8();
    if tag.is_multiple_of(4) {
        input.f32()
    } else {
        f32::from(input.u8() as i8) / 8.0
    }
}

/// A parameter: neutral, a plausible value, or (one time in four) any f64 bits.
fn pick(input: &mut Input, neutral: f64, plausible: impl FnOnce(u8) -> f64) -> f64 {
    match input.u8() % 4 {
        0 | 1 => neutral,
        2 => plausible(input.u8()),
        _ => input.f64(),
    }
}

fn row_params(input: &mut Input, vocab: usize) -> RowParams {
    RowParams {
        temperature: pick(input, 1.0, |b| f64::from(b) / 64.0),
        top_k: match input.u8() % 4 {
            0 | 1 => 0,
            2 => usize::from(input.u8()) % (vocab + 2),
            _ => input.u64() as usize,
        },
        top_p: pick(input, 1.0, |b| f64::from(b) / 255.0),
        min_p: pick(input, 0.0, |b| f64::from(b) / 255.0),
        repetition_penalty: pick(input, 1.0, |b| 0.25 + f64::from(b) / 32.0),
        presence_penalty: pick(input, 0.0, |b| f64::from(b as i8) / 64.0),
        frequency_penalty: pick(input, 0.0, |b| f64::from(b as i8) / 64.0),
        seed: u64::from(input.u8()),
        sequence: u64::from(input.u8()),
        step: u64::from(input.u8()),
    }
}

/// Tokens ranked as the sampler ranks them: highest logit first, then lowest id.
fn rank_order(x: &[f32]) -> Vec<usize> {
    let mut order: Vec<usize> = (0..x.len()).collect();
    order.sort_by(|&a, &b| (x[b] + 0.0).total_cmp(&(x[a] + 0.0)).then(a.cmp(&b)));
    order
}

fn close(a: f64, b: f64, tol: f64) -> bool {
    a == b || (a - b).abs() <= tol * (1.0 + a.abs().max(b.abs()))
}

/// Layout: rows, vocabulary mode, flags, then per row its parameters, history and logits.
pub fn check_sampler(data: &[u8]) {
    let mut input = Input::new(data);
    let rows = 1 + usize::from(input.u8() % 3);
    let size = input.u8();
    // Small rows come from the input; big ones (the dense, histogram and parallel paths)
    // from a generator seeded by it, with a few input values dropped in.
    let vocab = if size < 200 {
        1 + usize::from(size % 64)
    } else {
        1000 + (usize::from(input.u16()) * 3) % 40_000
    };
    let flags = input.u8();
    let (want_logprobs, n_top) = (flags & 1 == 1, usize::from(flags >> 1) % 6);
    let mut params = Vec::new();
    let mut hist_ids = Vec::new();
    let mut offsets = vec![0usize];
    let mut logits = Vec::with_capacity(rows * vocab);
    for _ in 0..rows {
        params.push(row_params(&mut input, vocab));
        for _ in 0..input.u8() % 8 {
            hist_ids.push(u32::from(input.u16()) % (vocab as u32 + 3));
        }
        offsets.push(hist_ids.len());
        if size < 200 {
            logits.extend((0..vocab).map(|_| logit(&mut input)));
        } else {
            let mut state = input.u64() | 1;
            let scale = f32::from(input.u8()) / 16.0;
            let start = logits.len();
            logits.extend((0..vocab).map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                ((state >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * scale
            }));
            for _ in 0..input.u8() % 4 {
                let at = start + usize::from(input.u16()) % vocab;
                logits[at] = logit(&mut input);
            }
        }
    }
    if flags & 0x80 != 0 {
        offsets.pop(); // a malformed history
    }
    let history = History {
        ids: &hist_ids,
        offsets: &offsets,
    };
    let l = Logits::new(&logits, rows, vocab).expect("shape is consistent");
    let plain = sample(l, &params, history, false, 0);
    let with_lp = sample(l, &params, history, want_logprobs, n_top);
    let dist = probs(l, &params, history);
    let valid = params
        .iter()
        .enumerate()
        .all(|(r, p)| p.validate(r).is_ok());
    let clean = (0..rows).all(|r| {
        let x = &logits[r * vocab..(r + 1) * vocab];
        !x.iter().any(|v| v.is_nan() || *v == f32::INFINITY)
            && x.iter().any(|v| *v > f32::NEG_INFINITY)
    });
    if !valid || flags & 0x80 != 0 || !clean {
        for r in [&plain.map(|_| ()), &with_lp.map(|_| ()), &dist.map(|_| ())] {
            assert!(
                matches!(r, Err(Error::Value(_))),
                "should be ValueError: {r:?}"
            );
        }
        return;
    }
    let plain = plain.unwrap_or_else(|e| panic!("valid input rejected: {e}"));
    let with_lp = with_lp.unwrap_or_else(|e| panic!("valid input rejected: {e}"));
    let dist = dist.unwrap_or_else(|e| panic!("valid input rejected: {e}"));
    assert_eq!(plain.ids, with_lp.ids, "logprobs changed the draw");
    for r in 0..rows {
        let x = &logits[r * vocab..(r + 1) * vocab];
        let p = &params[r];
        let pr = &dist[r * vocab..(r + 1) * vocab];
        let id = usize::try_from(plain.ids[r]).expect("non-negative id");
        check_row(x, p, pr, id, history.ids.get(offsets[r]..offsets[r + 1]));
        let alone = sample(
            Logits::new(x, 1, vocab).expect("one row"),
            &[*p],
            History {
                ids: &hist_ids[offsets[r]..offsets[r + 1]],
                offsets: &[0, offsets[r + 1] - offsets[r]],
            },
            false,
            0,
        );
        match alone {
            Ok(s) => assert_eq!(
                s.ids,
                vec![plain.ids[r]],
                "row {r} alone draws another token"
            ),
            Err(e) => panic!("row {r} alone fails: {e}"),
        }
        if want_logprobs {
            check_logprobs(x, pr, id, &with_lp, r);
        }
    }
}

/// One row's final distribution `pr` against the filters, and the drawn token `id`.
fn check_row(x: &[f32], p: &RowParams, pr: &[f32], id: usize, history: Option<&[u32]>) {
    assert!(
        id < x.len(),
        "id {id} outside the vocabulary of {}",
        x.len()
    );
    assert!(
        pr.iter().all(|v| v.is_finite() && *v >= 0.0),
        "bad probabilities"
    );
    let sum: f64 = pr.iter().map(|&v| f64::from(v)).sum();
    assert!((sum - 1.0).abs() < 1e-3, "probabilities sum to {sum}");
    assert!(pr[id] > 0.0, "drew token {id} of probability 0");
    if p.has_penalties() && history.is_some_and(|h| !h.is_empty()) {
        return; // the filters below apply to the penalised logits
    }
    let order = rank_order(x);
    let kept = pr.iter().filter(|&&v| v > 0.0).count();
    assert!(
        order[..kept].iter().all(|&i| pr[i] > 0.0),
        "the kept tokens are not the most likely ones"
    );
    if p.is_greedy() {
        assert_eq!((kept, id), (1, order[0]), "greedy");
        return;
    }
    if p.top_k > 0 && p.top_k < x.len() {
        let kth = x[order[p.top_k - 1]] + 0.0;
        let ties = x.iter().filter(|&&v| v + 0.0 >= kth).count();
        assert!(kept <= ties, "top_k {} kept {kept}", p.top_k);
    }
    let pmax = f64::from(pr[order[0]]);
    if p.min_p > 0.0 {
        for &i in &order[..kept] {
            let ok = f64::from(pr[i]) >= p.min_p * pmax * (1.0 - 1e-3) - 1e-9;
            assert!(ok, "min_p {} kept {i} at {}", p.min_p, pr[i]);
        }
    } else if p.top_p < 1.0 {
        // Mass under the top-k distribution (f64 reference) of the kept prefix.
        let pool = if p.top_k > 0 && p.top_k < x.len() {
            let kth = x[order[p.top_k - 1]] + 0.0;
            order.iter().take_while(|&&i| x[i] + 0.0 >= kth).count()
        } else {
            x.len()
        };
        let max = f64::from(x[order[0]]);
        let inv_t = f64::from(p.inv_temperature());
        let w: Vec<f64> = order[..pool]
            .iter()
            .map(|&i| ((f64::from(x[i]) - max) * inv_t).exp())
            .collect();
        let total: f64 = w.iter().sum();
        let mass: f64 = w[..kept].iter().sum::<f64>() / total;
        assert!(mass >= p.top_p - 1e-3, "top_p {} kept mass {mass}", p.top_p);
        if kept >= 2 {
            let less: f64 = w[..kept - 1].iter().sum::<f64>() / total;
            assert!(
                less <= p.top_p + 1e-3,
                "top_p {} kept too many ({less})",
                p.top_p
            );
        }
    }
}

/// Log-probabilities: of the draw (final and raw distributions) and the raw top tokens.
fn check_logprobs(x: &[f32], pr: &[f32], id: usize, s: &crate::sampler::Samples, r: usize) {
    let max = x
        .iter()
        .fold(f64::NEG_INFINITY, |m, &v| m.max(f64::from(v)));
    let lse = max
        + x.iter()
            .map(|&v| (f64::from(v) - max).exp())
            .sum::<f64>()
            .ln();
    let raw = |i: usize| f64::from(x[i]) - lse;
    let lp = f64::from(s.logprobs[r]);
    assert!(
        close(lp, f64::from(pr[id]).ln(), 1e-3),
        "logprob {lp} vs {}",
        pr[id]
    );
    let rlp = f64::from(s.raw_logprobs[r]);
    assert!(
        close(rlp, raw(id), 1e-3),
        "raw logprob {rlp} vs {}",
        raw(id)
    );
    let n = s.n_top;
    assert_eq!(n, n.min(x.len()));
    let top: Vec<usize> = s.top_ids[r * n..(r + 1) * n]
        .iter()
        .map(|&t| usize::try_from(t).expect("id"))
        .collect();
    let order = rank_order(x);
    for (k, &t) in top.iter().enumerate() {
        // The k-th entry ties the k-th most likely token (ties may come in any id order).
        assert_eq!(x[t] + 0.0, x[order[k]] + 0.0, "top_ids[{k}]");
        let tl = f64::from(s.top_logprobs[r * n + k]);
        assert!(close(tl, raw(t), 1e-3), "top logprob {tl} vs {}", raw(t));
    }
    let mut distinct = top.clone();
    distinct.sort_unstable();
    distinct.dedup();
    assert_eq!(distinct.len(), top.len(), "top_ids repeat a token");
}
