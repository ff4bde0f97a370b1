//! Repetition (Hugging Face), presence and frequency (OpenAI) penalties.

use super::params::RowParams;

/// Applies the penalties of `params` to `logits` in place, for the tokens in `history`.
///
/// Order as vLLM: the repetition penalty first (HF: positive logits divided, negative ones
/// multiplied, once per distinct token), then `frequency * count + presence` subtracted.
/// Ids outside the vocabulary are skipped, as Hugging Face's processor does (an embedding
/// table may be larger than the output layer). `scratch` receives the sorted history.
pub fn apply(logits: &mut [f32], history: &[u32], params: &RowParams, scratch: &mut Vec<u32>) {
    scratch.clear();
    scratch.extend(
        history
            .iter()
            .copied()
            .filter(|&t| (t as usize) < logits.len()),
    );
    scratch.sort_unstable();
    let rep = params.repetition_penalty as f32;
    let mut i = 0;
    while i < scratch.len() {
        let token = scratch[i];
        let mut count = 0usize;
        while i < scratch.len() && scratch[i] == token {
            count += 1;
            i += 1;
        }
        // Non-finite logits stay as they are: -inf (a masked token) is still -inf after any
        // penalty (and -inf * 0 would be NaN), NaN and +inf are reported by the caller.
        if let Some(x) = logits.get_mut(token as usize).filter(|x| x.is_finite()) {
            if params.repetition_penalty != 1.0 {
                *x = if *x < 0.0 { *x * rep } else { *x / rep };
            }
            let additive = params.frequency_penalty * count as f64 + params.presence_penalty;
            if additive != 0.0 {
                *x = (f64::from(*x) - additive) as f32;
            }
            if !x.is_finite() {
                *x = saturate(*x);
            }
        }
    }
}

/// A finite logit the penalties pushed out of f32's range: a tiny penalty (or one below
/// f32's smallest positive value, which rounds to 0) divides a large logit into +inf, or 0 by
/// 0 into NaN. The user's logits and parameters are valid, so the result saturates to the
/// largest finite value of that sign (0 stays 0) instead of failing as "contains +inf/NaN".
fn saturate(x: f32) -> f32 {
    if x.is_nan() {
        0.0
    } else {
        x.clamp(-f32::MAX, f32::MAX)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repetition_penalty_divides_positive_and_multiplies_negative_once() {
        let mut x = vec![2.0f32, -2.0, 3.0, 0.0];
        let p = RowParams {
            repetition_penalty: 2.0,
            ..Default::default()
        };
        apply(&mut x, &[0, 1, 1, 1, 3, 99], &p, &mut Vec::new());
        assert_eq!(x, vec![1.0, -4.0, 3.0, 0.0]);
    }

    #[test]
    fn presence_and_frequency_count_occurrences() {
        let mut x = vec![1.0f32, 1.0, 1.0];
        let p = RowParams {
            presence_penalty: 0.5,
            frequency_penalty: 0.25,
            ..Default::default()
        };
        apply(&mut x, &[2, 0, 2, 2], &p, &mut Vec::new());
        assert_eq!(x, vec![0.25, 1.0, -0.25]);
    }

    #[test]
    fn extreme_penalties_saturate_instead_of_overflowing() {
        // Found by the `sampler` fuzz target: repetition_penalty 1e-300 is valid, but as f32 it
        // is 0, so 5 / 0 = +inf, 0 / 0 = NaN and -inf * 0 = NaN; the row then failed as
        // "contains +inf" (or NaN) although the logits were fine.
        let mut x = vec![5.0f32, 0.0, -3.0, f32::NEG_INFINITY, 1.0];
        let p = RowParams {
            repetition_penalty: 1e-300,
            ..Default::default()
        };
        apply(&mut x, &[0, 1, 2, 3], &p, &mut Vec::new());
        assert_eq!(x, vec![f32::MAX, 0.0, -0.0, f32::NEG_INFINITY, 1.0]);
        let mut y = vec![3e38f32, -3e38];
        let p = RowParams {
            repetition_penalty: 1e-3,
            ..Default::default()
        };
        apply(&mut y, &[0, 1], &p, &mut Vec::new());
        assert_eq!(y, vec![f32::MAX, -3e38f32 * 1e-3f32]);
    }
}
