//! Per-row sampling parameters and their validation.
//!
//! The neutral value of every filter switches it off: `top_k == 0`, `top_p == 1`, `min_p == 0`,
//! `repetition_penalty == 1`, `presence_penalty == frequency_penalty == 0`.

use crate::error::{Error, Result};

/// The settings of one row of a batch.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RowParams {
    /// Divides the logits; `0` means greedy (argmax of the penalised logits).
    pub temperature: f64,
    /// Keep the `top_k` largest logits and every logit tied with the k-th; `0` = off.
    pub top_k: usize,
    /// Keep the smallest set of most likely tokens with mass >= `top_p`; `1` = off.
    pub top_p: f64,
    /// Drop tokens whose probability is below `min_p` times the top probability; `0` = off.
    pub min_p: f64,
    /// Hugging Face's rule: seen tokens' positive logits are divided by it, negative ones
    /// multiplied, once per distinct token.
    pub repetition_penalty: f64,
    /// OpenAI's rule: subtracted once from the logit of every seen token.
    pub presence_penalty: f64,
    /// OpenAI's rule: subtracted once per occurrence of a seen token.
    pub frequency_penalty: f64,
    /// The random stream: the draw depends only on (seed, sequence, step).
    pub seed: u64,
    /// Which sequence of a request (e.g. one of `num_return_sequences`).
    pub sequence: u64,
    /// The decoding step (position of the token being drawn).
    pub step: u64,
}

impl Default for RowParams {
    fn default() -> Self {
        RowParams {
            temperature: 1.0,
            top_k: 0,
            top_p: 1.0,
            min_p: 0.0,
            repetition_penalty: 1.0,
            presence_penalty: 0.0,
            frequency_penalty: 0.0,
            seed: 0,
            sequence: 0,
            step: 0,
        }
    }
}

/// The largest magnitude accepted for presence and frequency penalties (OpenAI's range).
pub const MAX_ADDITIVE_PENALTY: f64 = 2.0;

impl RowParams {
    /// Checks every field, naming the argument and `row` in the error.
    pub fn validate(&self, row: usize) -> Result<()> {
        let bad = |name: &str, value: f64, want: &str| {
            Err(Error::Value(format!(
                "{name}[{row}] = {value} is invalid: {name} must be {want}"
            )))
        };
        if !(self.temperature >= 0.0 && self.temperature.is_finite()) {
            return bad("temperature", self.temperature, "finite and >= 0");
        }
        if !(self.top_p > 0.0 && self.top_p <= 1.0) {
            return bad("top_p", self.top_p, "in (0, 1]");
        }
        if !(0.0..=1.0).contains(&self.min_p) {
            return bad("min_p", self.min_p, "in [0, 1]");
        }
        if !(self.repetition_penalty > 0.0 && self.repetition_penalty.is_finite()) {
            return bad(
                "repetition_penalty",
                self.repetition_penalty,
                "finite and > 0",
            );
        }
        let additive = -MAX_ADDITIVE_PENALTY..=MAX_ADDITIVE_PENALTY;
        if !additive.contains(&self.presence_penalty) {
            return bad("presence_penalty", self.presence_penalty, "in [-2, 2]");
        }
        if !additive.contains(&self.frequency_penalty) {
            return bad("frequency_penalty", self.frequency_penalty, "in [-2, 2]");
        }
        Ok(())
    }

    /// Whether the row is greedy (temperature 0).
    pub fn is_greedy(&self) -> bool {
        self.temperature == 0.0
    }

    /// Whether any penalty changes the logits.
    pub fn has_penalties(&self) -> bool {
        self.repetition_penalty != 1.0
            || self.presence_penalty != 0.0
            || self.frequency_penalty != 0.0
    }

    /// `1 / temperature` as f32, kept finite so that `0 * inv_t` stays 0 for tiny temperatures.
    pub fn inv_temperature(&self) -> f32 {
        (1.0 / self.temperature).min(f32::MAX as f64) as f32
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        assert!(RowParams::default().validate(0).is_ok());
    }

    #[test]
    fn out_of_range_values_are_rejected_with_their_name_and_row() {
        let cases: [(RowParams, &str); 9] = [
            (
                RowParams {
                    top_p: 0.0,
                    ..Default::default()
                },
                "top_p[3]",
            ),
            (
                RowParams {
                    top_p: 1.5,
                    ..Default::default()
                },
                "top_p[3]",
            ),
            (
                RowParams {
                    top_p: f64::NAN,
                    ..Default::default()
                },
                "top_p[3]",
            ),
            (
                RowParams {
                    temperature: -0.1,
                    ..Default::default()
                },
                "temperature[3]",
            ),
            (
                RowParams {
                    temperature: f64::INFINITY,
                    ..Default::default()
                },
                "temperature[3]",
            ),
            (
                RowParams {
                    min_p: 1.01,
                    ..Default::default()
                },
                "min_p[3]",
            ),
            (
                RowParams {
                    repetition_penalty: 0.0,
                    ..Default::default()
                },
                "repetition_penalty[3]",
            ),
            (
                RowParams {
                    presence_penalty: 2.5,
                    ..Default::default()
                },
                "presence_penalty[3]",
            ),
            (
                RowParams {
                    frequency_penalty: f64::NAN,
                    ..Default::default()
                },
                "frequency_penalty[3]",
            ),
        ];
        for (params, name) in cases {
            let err = params.validate(3).unwrap_err().to_string();
            assert!(err.starts_with(name), "{err}");
        }
    }

    #[test]
    fn tiny_temperature_keeps_a_finite_inverse() {
        let p = RowParams {
            temperature: 1e-300,
            ..Default::default()
        };
        assert!(p.inv_temperature().is_finite());
        assert_eq!(0.0 * p.inv_temperature(), 0.0);
    }
}
