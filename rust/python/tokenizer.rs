//! Bindings for [`crate::tokenizer`]: `_native.Encoding` and `_native.IncrementalDecoder`.
//!
//! Mechanics only: the special-token policy and friendly messages live in
//! `gpt_hybrid/tokenizer.py`. Every method that walks text or ids runs without the GIL.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};

use pyo3::exceptions::{PyKeyError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict};
use rayon::prelude::*;
use rustc_hash::FxHashSet;

use crate::tokenizer::stream::Utf8Stream;
use crate::tokenizer::{load, Allowed, Encoding, Rules};

/// A byte-level BPE encoding (vocabulary, merges, split pattern, special tokens).
#[pyclass(frozen, module = "gpt_hybrid._native", name = "Encoding")]
pub struct PyEncoding {
    inner: Arc<Encoding>,
}

fn allowed(set: Option<HashSet<String>>) -> Allowed {
    match set {
        None => Allowed::All,
        Some(s) => Allowed::Some(s.into_iter().collect::<FxHashSet<_>>()),
    }
}

/// Ids from Python ints: anything outside u32 is an unknown token (`KeyError`), not an
/// `OverflowError`.
fn ids_u32(ids: Vec<i64>) -> PyResult<Vec<u32>> {
    ids.into_iter()
        .map(|i| u32::try_from(i).map_err(|_| PyKeyError::new_err(format!("unknown token id {i}"))))
        .collect()
}

/// A rayon pool per requested thread count, built once (building one costs thread spawns).
fn pool(threads: usize) -> PyResult<Arc<rayon::ThreadPool>> {
    static POOLS: OnceLock<Mutex<HashMap<usize, Arc<rayon::ThreadPool>>>> = OnceLock::new();
    let pools = POOLS.get_or_init(Default::default);
    let mut map = pools
        .lock()
        .map_err(|_| PyValueError::new_err("thread pool registry poisoned"))?;
    if let Some(p) = map.get(&threads) {
        return Ok(p.clone());
    }
    let p = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .map_err(|e| PyValueError::new_err(format!("num_threads={threads}: {e}")))?;
    let p = Arc::new(p);
    map.insert(threads, p.clone());
    Ok(p)
}

#[pymethods]
impl PyEncoding {
    /// Loads Hugging Face vocab.json + merges.txt (or OpenAI encoder.json + vocab.bpe).
    #[staticmethod]
    #[pyo3(signature = (vocab, merges, pattern = "gpt2"))]
    fn from_files(
        py: Python<'_>,
        vocab: PathBuf,
        merges: PathBuf,
        pattern: &str,
    ) -> PyResult<Self> {
        let enc = py.detach(|| load::from_vocab_merges(&vocab, &merges, pattern))?;
        Ok(PyEncoding {
            inner: Arc::new(enc),
        })
    }

    /// Loads a Hugging Face tokenizer.json (byte-level BPE).
    #[staticmethod]
    fn from_tokenizer_json(py: Python<'_>, path: PathBuf) -> PyResult<Self> {
        let enc = py.detach(|| load::from_tokenizer_json(&path))?;
        Ok(PyEncoding {
            inner: Arc::new(enc),
        })
    }

    /// Loads a tiktoken rank file (plain or gzip).
    #[staticmethod]
    fn from_tiktoken(
        py: Python<'_>,
        path: PathBuf,
        pattern: &str,
        specials: Vec<(String, u32)>,
    ) -> PyResult<Self> {
        let enc = py.detach(|| load::from_tiktoken(&path, pattern, specials))?;
        Ok(PyEncoding {
            inner: Arc::new(enc),
        })
    }

    /// Builds an encoding from tiktoken-style ranks (bytes, rank).
    #[staticmethod]
    fn from_ranks(
        py: Python<'_>,
        ranks: Vec<(Vec<u8>, u32)>,
        pattern: &str,
        specials: Vec<(String, u32)>,
    ) -> PyResult<Self> {
        let enc = py.detach(|| Encoding::new(ranks, Rules::Ranks, specials, pattern, "ranks"))?;
        Ok(PyEncoding {
            inner: Arc::new(enc),
        })
    }

    /// Ids of `text`, special texts encoded as ordinary text.
    fn encode_ordinary(&self, py: Python<'_>, text: &str) -> PyResult<Vec<u32>> {
        Ok(py.detach(|| self.inner.encode_ordinary(text))?)
    }

    /// Ids of `text`; `allowed` special tokens (None: all) become their ids.
    #[pyo3(signature = (text, allowed))]
    fn encode(
        &self,
        py: Python<'_>,
        text: &str,
        allowed: Option<HashSet<String>>,
    ) -> PyResult<Vec<u32>> {
        let allowed = self::allowed(allowed);
        Ok(py.detach(|| self.inner.encode(text, &allowed))?)
    }

    /// The first special token in `text` among `disallowed` (None: all), if any.
    #[pyo3(signature = (text, disallowed))]
    fn find_disallowed(
        &self,
        py: Python<'_>,
        text: &str,
        disallowed: Option<HashSet<String>>,
    ) -> Option<String> {
        let d = allowed(disallowed);
        py.detach(|| self.inner.find_disallowed(text, &d))
    }

    /// Encodes many texts in parallel. `allowed` as for `encode`; `ordinary` ignores specials;
    /// `disallowed` texts raise (ValueError naming the token) before any work is returned.
    #[pyo3(signature = (texts, allowed, disallowed, ordinary, num_threads = None))]
    fn encode_batch(
        &self,
        py: Python<'_>,
        texts: Vec<String>,
        allowed: Option<HashSet<String>>,
        disallowed: Option<HashSet<String>>,
        ordinary: bool,
        num_threads: Option<usize>,
    ) -> PyResult<Vec<Vec<u32>>> {
        let allowed = self::allowed(allowed);
        let disallowed = disallowed.map(|d| self::allowed(Some(d)));
        let enc = &self.inner;
        let work = || -> Result<Vec<Vec<u32>>, BatchError> {
            texts
                .par_iter()
                .map(|t| {
                    if ordinary {
                        return enc.encode_ordinary(t).map_err(BatchError::Core);
                    }
                    if let Some(d) = &disallowed {
                        if let Some(tok) = enc.find_disallowed(t, d) {
                            return Err(BatchError::Disallowed(tok));
                        }
                    }
                    enc.encode(t, &allowed).map_err(BatchError::Core)
                })
                .collect()
        };
        let pool = match num_threads {
            Some(0) => return Err(PyValueError::new_err("num_threads must be at least 1")),
            Some(n) => Some(pool(n)?),
            None => None,
        };
        let out = py.detach(|| match pool {
            Some(p) => p.install(work),
            None => work(),
        });
        match out {
            Ok(v) => Ok(v),
            Err(BatchError::Core(e)) => Err(e.into()),
            Err(BatchError::Disallowed(tok)) => Err(PyValueError::new_err(tok)),
        }
    }

    /// The bytes of `ids`; `KeyError` for an unknown id.
    fn decode_bytes<'py>(&self, py: Python<'py>, ids: Vec<i64>) -> PyResult<Bound<'py, PyBytes>> {
        let ids = ids_u32(ids)?;
        let bytes = py.detach(|| self.inner.decode_bytes(&ids))?;
        Ok(PyBytes::new(py, &bytes))
    }

    /// The text of `ids`, invalid UTF-8 replaced by U+FFFD (`strict`: ValueError instead).
    #[pyo3(signature = (ids, strict = false))]
    fn decode(&self, py: Python<'_>, ids: Vec<i64>, strict: bool) -> PyResult<String> {
        let ids = ids_u32(ids)?;
        let bytes = py.detach(|| self.inner.decode_bytes(&ids))?;
        match String::from_utf8(bytes) {
            Ok(s) => Ok(s),
            Err(e) if strict => Err(PyValueError::new_err(format!(
                "ids decode to invalid UTF-8: {e}"
            ))),
            Err(e) => Ok(String::from_utf8_lossy(e.as_bytes()).into_owned()),
        }
    }

    /// The bytes of one token; `KeyError` for an unknown id.
    fn token_bytes<'py>(&self, py: Python<'py>, id: i64) -> PyResult<Bound<'py, PyBytes>> {
        let id = ids_u32(vec![id])?.into_iter().next().unwrap_or(u32::MAX);
        Ok(PyBytes::new(py, self.inner.token_bytes(id)?))
    }

    /// The id of the token whose bytes are exactly `bytes`; `KeyError` otherwise.
    fn encode_single_token(&self, bytes: &[u8]) -> PyResult<u32> {
        Ok(self.inner.encode_single_token(bytes)?)
    }

    /// A streaming decoder over this encoding.
    fn incremental_decoder(&self) -> PyIncrementalDecoder {
        PyIncrementalDecoder {
            enc: self.inner.clone(),
            stream: Mutex::new(Utf8Stream::new()),
        }
    }

    /// One more than the largest id.
    #[getter]
    fn n_vocab(&self) -> usize {
        self.inner.n_vocab()
    }

    /// The split regex.
    #[getter]
    fn pattern(&self) -> String {
        self.inner.pattern().to_string()
    }

    /// Special token texts → ids.
    #[getter]
    fn special_tokens<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let d = PyDict::new(py);
        for (k, v) in self.inner.specials() {
            d.set_item(k, v)?;
        }
        Ok(d)
    }

    /// Ordinary token bytes → ids.
    fn mergeable_ranks<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let mut items: Vec<(&Vec<u8>, &u32)> = self.inner.mergeable_ranks().iter().collect();
        items.sort_by_key(|(_, id)| **id);
        let d = PyDict::new(py);
        for (k, v) in items {
            d.set_item(PyBytes::new(py, k), v)?;
        }
        Ok(d)
    }

    /// The pieces the split pattern cuts `text` into (for inspection and tests).
    fn pretokenize(&self, py: Python<'_>, text: &str) -> PyResult<Vec<String>> {
        let pieces = py.detach(|| {
            self.inner
                .pretokenizer()
                .pieces(text)
                .map(|v| v.into_iter().map(str::to_string).collect::<Vec<_>>())
        })?;
        Ok(pieces)
    }
}

enum BatchError {
    Core(crate::Error),
    Disallowed(String),
}

/// Streams ids to text, one complete character at a time.
#[pyclass(frozen, module = "gpt_hybrid._native", name = "IncrementalDecoder")]
pub struct PyIncrementalDecoder {
    enc: Arc<Encoding>,
    stream: Mutex<Utf8Stream>,
}

#[pymethods]
impl PyIncrementalDecoder {
    /// Adds ids; returns the text whose characters are complete. `KeyError` for an unknown id
    /// (nothing of that call is consumed then).
    fn push(&self, ids: Vec<i64>) -> PyResult<String> {
        let ids = ids_u32(ids)?;
        let bytes = self.enc.decode_bytes(&ids)?;
        let mut s = self
            .stream
            .lock()
            .map_err(|_| PyValueError::new_err("decoder state poisoned"))?;
        Ok(s.push(&bytes))
    }

    /// Ends the stream: the bytes held back, incomplete characters as U+FFFD.
    fn flush(&self) -> PyResult<String> {
        let mut s = self
            .stream
            .lock()
            .map_err(|_| PyValueError::new_err("decoder state poisoned"))?;
        Ok(s.flush())
    }

    /// Bytes held back, waiting for the rest of a character.
    #[getter]
    fn pending<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyBytes>> {
        let s = self
            .stream
            .lock()
            .map_err(|_| PyValueError::new_err("decoder state poisoned"))?;
        Ok(PyBytes::new(py, s.pending()))
    }
}

pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyEncoding>()?;
    m.add_class::<PyIncrementalDecoder>()?;
    Ok(())
}
