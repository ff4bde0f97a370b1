//! Counting pretokens ("words") over many texts and files, in parallel.
//!
//! BPE training only needs each distinct pretoken and how often it occurs: a 32 MB novel
//! corpus has ~6 M pretokens but only ~100 k distinct ones, so the merge loop works on the
//! small table and never sees the text again.

use std::path::{Path, PathBuf};

use rayon::prelude::*;
use rustc_hash::FxHashMap;

use super::pretokenize::Pretokenizer;
use crate::error::{Error, Result};

/// Texts longer than this are cut into chunks (where safe) so that one big file still keeps
/// every core busy.
const CHUNK_BYTES: usize = 1 << 20;

/// Distinct pretokens and their counts.
#[derive(Debug, Default, Clone)]
pub struct WordCounts {
    counts: FxHashMap<String, u64>,
}

impl WordCounts {
    /// An empty table.
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of distinct pretokens.
    pub fn len(&self) -> usize {
        self.counts.len()
    }

    /// Whether nothing has been counted.
    pub fn is_empty(&self) -> bool {
        self.counts.is_empty()
    }

    /// The distinct pretokens and their counts (in no particular order).
    pub fn iter(&self) -> impl Iterator<Item = (&str, u64)> {
        self.counts.iter().map(|(w, &c)| (w.as_str(), c))
    }

    /// Counts the pretokens of `texts`, in parallel on the current rayon pool.
    pub fn add_texts<S: AsRef<str> + Sync>(
        &mut self,
        pre: &Pretokenizer,
        texts: &[S],
    ) -> Result<()> {
        let mut segments = Vec::new();
        for text in texts {
            segments.extend(pre.segments(text.as_ref(), CHUNK_BYTES)?);
        }
        let local = segments
            .par_iter()
            .try_fold(FxHashMap::<&str, u64>::default, |mut acc, seg| {
                pre.for_each_piece(seg, |piece| *acc.entry(piece).or_insert(0) += 1)?;
                Ok::<_, Error>(acc)
            })
            .try_reduce(FxHashMap::default, |mut a, b| {
                // Fold the smaller table into the larger one.
                let (mut big, small) = if a.len() >= b.len() { (a, b) } else { (b, a) };
                for (w, c) in small {
                    *big.entry(w).or_insert(0) += c;
                }
                a = big;
                Ok(a)
            })?;
        self.counts.reserve(local.len());
        for (w, c) in local {
            match self.counts.get_mut(w) {
                Some(n) => *n += c,
                None => {
                    self.counts.insert(w.to_owned(), c);
                }
            }
        }
        Ok(())
    }

    /// Reads the UTF-8 files at `paths` (each as one text) and counts their pretokens.
    pub fn add_files(&mut self, pre: &Pretokenizer, paths: &[PathBuf]) -> Result<()> {
        let texts = paths
            .par_iter()
            .map(|p| read_utf8(p))
            .collect::<Result<Vec<String>>>()?;
        self.add_texts(pre, &texts)
    }
}

/// The file's text; `Error::Io` (with the path) if it cannot be read, `Error::Format` naming
/// the file and byte offset if it is not UTF-8.
fn read_utf8(path: &Path) -> Result<String> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    String::from_utf8(bytes).map_err(|e| {
        Error::Format(format!(
            "{}: not valid UTF-8 at byte {}",
            path.display(),
            e.utf8_error().valid_up_to()
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_and_merges_batches() {
        let pre = Pretokenizer::new("gpt2", &[]).unwrap();
        let mut wc = WordCounts::new();
        wc.add_texts(&pre, &["a b a", " b"]).unwrap();
        wc.add_texts(&pre, &[String::from("a")]).unwrap();
        let mut got: Vec<(String, u64)> = wc.iter().map(|(w, c)| (w.to_string(), c)).collect();
        got.sort();
        let want = [(" a", 1), (" b", 2), ("a", 2)];
        assert_eq!(got, want.map(|(w, c)| (w.to_string(), c)));
    }

    #[test]
    fn missing_file_is_io_error_with_path() {
        let pre = Pretokenizer::new("gpt2", &[]).unwrap();
        let mut wc = WordCounts::new();
        let missing = PathBuf::from("/nonexistent/trainer-input.txt");
        match wc.add_files(&pre, std::slice::from_ref(&missing)) {
            Err(Error::Io { path, .. }) => assert_eq!(path, missing),
            other => panic!("expected Io error, got {other:?}"),
        }
    }
}
