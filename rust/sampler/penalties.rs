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
        if let Some(x) = logits.get_mut(token as usize) {
            if params.repetition_penalty != 1.0 {
                *x = if *x < 0.0 { *x * rep } else { *x / rep };
            }
            let additive = params.frequency_penalty * count as f64 + params.presence_penalty;
            if additive != 0.0 {
                *x = (f64::from(*x) - additive) as f32;
            }
        }
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
}
