//! Bindings for [`crate::trainer`]: `_native.BpeTrainer`.
//!
//! The Python wrapper (`gpt_hybrid.training.train_bpe`) validates arguments, streams texts and
//! files in batches into `feed_texts` / `feed_files`, then calls `train` and builds a
//! `Tokenizer` from the ranks. Counting and training run with the GIL released.

use std::path::PathBuf;

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::PyBytes;

use crate::error::Result;
use crate::trainer::{BpeTrainer, Trained};

/// What `train` returns: token bytes by rank, and merges as pairs of ranks.
type TrainedPy<'py> = (Vec<Bound<'py, PyBytes>>, Vec<(u32, u32)>);

/// Counts words of texts and files, then learns byte-level BPE merges from the counts.
#[pyclass(name = "BpeTrainer", module = "gpt_hybrid._native")]
struct PyBpeTrainer {
    inner: BpeTrainer,
    /// A private pool when the caller asked for a thread count; otherwise rayon's global one.
    pool: Option<rayon::ThreadPool>,
}

impl PyBpeTrainer {
    fn run<T: Send>(
        &mut self,
        work: impl FnOnce(&mut BpeTrainer) -> Result<T> + Send,
    ) -> Result<T> {
        match &self.pool {
            Some(pool) => pool.install(|| work(&mut self.inner)),
            None => work(&mut self.inner),
        }
    }
}

#[pymethods]
impl PyBpeTrainer {
    /// BpeTrainer(pattern, special_tokens, num_threads=None)
    ///
    /// `pattern` is a name (`gpt2`, `r50k_base`, `p50k_base`, `cl100k_base`, `o200k_base`)
    /// or a regex; `special_tokens` are cut out of the text and never counted.
    #[new]
    #[pyo3(signature = (pattern, special_tokens, num_threads=None))]
    #[pyo3(text_signature = "(pattern, special_tokens, num_threads=None)")]
    fn new(
        pattern: &str,
        special_tokens: Vec<String>,
        num_threads: Option<usize>,
    ) -> PyResult<Self> {
        let pool = match num_threads {
            None => None,
            Some(0) => return Err(PyValueError::new_err("num_threads: must be at least 1")),
            Some(n) => Some(
                rayon::ThreadPoolBuilder::new()
                    .num_threads(n)
                    .build()
                    .map_err(|e| PyValueError::new_err(format!("num_threads: {e}")))?,
            ),
        };
        Ok(PyBpeTrainer {
            inner: BpeTrainer::new(pattern, &special_tokens)?,
            pool,
        })
    }

    /// Counts the words of each text in `texts` (list of str).
    #[pyo3(text_signature = "(self, texts)")]
    fn feed_texts(&mut self, py: Python<'_>, texts: Vec<String>) -> PyResult<()> {
        py.detach(|| self.run(|t| t.feed_texts(&texts)))?;
        Ok(())
    }

    /// Counts the words of each UTF-8 file in `paths`, each read whole as one text.
    #[pyo3(text_signature = "(self, paths)")]
    fn feed_files(&mut self, py: Python<'_>, paths: Vec<PathBuf>) -> PyResult<()> {
        py.detach(|| self.run(|t| t.feed_files(&paths)))?;
        Ok(())
    }

    /// Number of distinct words counted so far.
    fn __len__(&self) -> usize {
        self.inner.word_counts().len()
    }

    /// train(vocab_size, min_frequency) -> (tokens, merges)
    ///
    /// `tokens`: token bytes by rank (256 single bytes in GPT-2 order, then learned tokens);
    /// `merges`: (left rank, right rank) in the order learned. `vocab_size` excludes special
    /// tokens.
    #[pyo3(text_signature = "(self, vocab_size, min_frequency)")]
    fn train<'py>(
        &mut self,
        py: Python<'py>,
        vocab_size: usize,
        min_frequency: u64,
    ) -> PyResult<TrainedPy<'py>> {
        let Trained { tokens, merges } =
            py.detach(|| self.run(|t| t.train(vocab_size, min_frequency)))?;
        let tokens = tokens.iter().map(|t| PyBytes::new(py, t)).collect();
        Ok((tokens, merges))
    }
}

pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyBpeTrainer>()?;
    Ok(())
}
