//! Byte-level BPE training.
//!
//! [`BpeTrainer`] counts pretokens ("words") of texts and files in parallel
//! ([`count`], split by [`pretokenize`]), then learns merges from the counts ([`merge`]): the
//! most frequent adjacent pair first, ties to the smallest pair of ids, with pair counts
//! updated incrementally. The result is a rank table (token bytes by rank) in the layout of
//! GPT-2 and tiktoken: 256 single bytes, then learned tokens; special tokens come after.

pub mod count;
pub mod merge;
pub mod pretokenize;

use std::path::PathBuf;

pub use count::WordCounts;
pub use merge::{gpt2_byte_order, train, Trained};
pub use pretokenize::Pretokenizer;

use crate::error::Result;

/// Counts words of the text fed to it, then trains on the counts.
#[derive(Debug)]
pub struct BpeTrainer {
    pretokenizer: Pretokenizer,
    counts: WordCounts,
}

impl BpeTrainer {
    /// A trainer splitting text with `pattern` (a name such as `gpt2` or a regex), never
    /// counting the `special_tokens` strings.
    pub fn new(pattern: &str, special_tokens: &[String]) -> Result<Self> {
        Ok(BpeTrainer {
            pretokenizer: Pretokenizer::new(pattern, special_tokens)?,
            counts: WordCounts::new(),
        })
    }

    /// Counts the words of `texts` (parallel on the current rayon pool).
    pub fn feed_texts<S: AsRef<str> + Sync>(&mut self, texts: &[S]) -> Result<()> {
        self.counts.add_texts(&self.pretokenizer, texts)
    }

    /// Counts the words of the UTF-8 files at `paths`, each read as one text.
    pub fn feed_files(&mut self, paths: &[PathBuf]) -> Result<()> {
        self.counts.add_files(&self.pretokenizer, paths)
    }

    /// The word counts so far.
    pub fn word_counts(&self) -> &WordCounts {
        &self.counts
    }

    /// Learns merges until `vocab_size` ordinary tokens (256 bytes included; special tokens
    /// not included), or until the best pair is rarer than `min_frequency`.
    pub fn train(&self, vocab_size: usize, min_frequency: u64) -> Result<Trained> {
        train(
            self.counts.iter().map(|(w, c)| (w.as_bytes(), c)),
            vocab_size,
            min_frequency,
        )
    }
}
