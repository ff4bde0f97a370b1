//! Bindings for [`crate::tokenizer`]: `_native.Encoding` and `_native.IncrementalDecoder`.
//!
//! Mechanics only: the special-token policy and friendly messages live in
//! `gpt_hybrid/tokenizer.py`. Every method that walks text or ids runs without the GIL.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};

use pyo3::exceptions::{PyKeyError, PyValueError};
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyBytes, PyDict, PyList, PyString};
use rustc_hash::FxHashSet;

use super::batch;
use crate::tokenizer::stream::Utf8Stream;
use crate::tokenizer::{load, Allowed, Encoding, MergeCache, Rules};

/// A byte-level BPE encoding (vocabulary, merges, split pattern, special tokens).
#[pyclass(frozen, module = "gpt_hybrid._native", name = "Encoding")]
pub struct PyEncoding {
    inner: Arc<Encoding>,
    /// One Python int per id, made on first use: building a result list then only bumps
    /// reference counts instead of allocating an int object per token.
    /// (PyOnceLock: safe if making the ints runs Python code that lets another thread in.)
    ints: PyOnceLock<Vec<Py<PyAny>>>,
}

impl PyEncoding {
    fn new(enc: Encoding) -> Self {
        PyEncoding {
            inner: Arc::new(enc),
            ints: PyOnceLock::new(),
        }
    }

    /// `ids` as a Python list of ints.
    fn to_list<'py>(&self, py: Python<'py>, ids: &[u32]) -> PyResult<Bound<'py, PyList>> {
        let ints = self.ints.get_or_init(py, || {
            (0..self.inner.n_vocab())
                .map(|i| {
                    let Ok(o) = i.into_pyobject(py);
                    o.into_any().unbind()
                })
                .collect()
        });
        // Every id of an encode result is below n_vocab; any other gets a fresh int.
        let items = ids.iter().map(|&i| match ints.get(i as usize) {
            Some(o) => o.clone_ref(py).into_bound(py),
            None => {
                let Ok(o) = (i as usize).into_pyobject(py);
                o.into_any()
            }
        });
        let list = PyList::new(py, items)?;
        // A list of ints cannot be part of a reference cycle, so the cyclic GC need not track
        // it. Tracked, a batch's thousands of lists set off collections that traverse them all
        // while the list is being built (a tenth of a batch call, and serial), and every later
        // full collection in the user's program walks each id again. (Only a cycle the user
        // builds through this list later would go uncollected.)
        // SAFETY: `list` is a live, fully built list; untracking only skips GC traversal.
        unsafe { pyo3::ffi::PyObject_GC_UnTrack(list.as_ptr().cast()) };
        Ok(list)
    }
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

/// Ids from a 1-D numpy integer array, read in place (pyo3's generic path takes an element
/// at a time through Python objects, ~10x slower). `None` when `obj` is not such an array.
fn numpy_ids(obj: &Bound<'_, PyAny>) -> PyResult<Option<Vec<u32>>> {
    use numpy::PyReadonlyArray1;
    fn convert<'a, T: Copy + TryInto<u32> + std::fmt::Display + 'a>(
        a: impl Iterator<Item = &'a T>,
    ) -> PyResult<Vec<u32>> {
        a.map(|&v| {
            v.try_into()
                .map_err(|_| PyKeyError::new_err(format!("unknown token id {v}")))
        })
        .collect()
    }
    macro_rules! try_dtype {
        ($t:ty) => {
            if let Ok(a) = obj.extract::<PyReadonlyArray1<'_, $t>>() {
                // A view, so strided arrays (ids[::2]) read correctly too.
                return Ok(Some(convert(a.as_array().iter())?));
            }
        };
    }
    try_dtype!(i64);
    try_dtype!(i32);
    try_dtype!(u32);
    try_dtype!(u64);
    try_dtype!(u16);
    try_dtype!(i16);
    try_dtype!(u8);
    Ok(None)
}

/// Ids from a Python list of ints, fast: this extraction is most of what decoding costs.
/// Anything else (tuples, numpy arrays, int subclasses) goes through pyo3's generic path.
fn extract_ids(obj: &Bound<'_, PyAny>) -> PyResult<Vec<u32>> {
    if let Ok(list) = obj.cast::<PyList>() {
        let n = list.len();
        let mut out = Vec::with_capacity(n);
        let ptr = list.as_ptr();
        for i in 0..n {
            // SAFETY: we hold the GIL and `i < len`; the borrowed item stays alive while the
            // list does, and nothing between here and its use runs Python code (exact ints
            // only: PyLong_AsLongLong then calls no __index__ that could mutate the list).
            let v = unsafe {
                let item = pyo3::ffi::PyList_GetItem(ptr, i as pyo3::ffi::Py_ssize_t);
                if item.is_null() || pyo3::ffi::PyLong_CheckExact(item) == 0 {
                    None
                } else {
                    Some(pyo3::ffi::PyLong_AsLongLong(item))
                }
            };
            match v {
                Some(-1) if PyErr::take(obj.py()).is_some() => {
                    return Err(PyKeyError::new_err("unknown token id (too large)"))
                }
                Some(v) => out.push(
                    u32::try_from(v)
                        .map_err(|_| PyKeyError::new_err(format!("unknown token id {v}")))?,
                ),
                None => return ids_u32(obj.extract::<Vec<i64>>()?),
            }
        }
        return Ok(out);
    }
    if let Some(ids) = numpy_ids(obj)? {
        return Ok(ids);
    }
    ids_u32(obj.extract::<Vec<i64>>()?)
}

/// Text bytes per unit of batch work. Each unit's result is handed to the GIL-holding thread
/// as one message, so units must be big enough to amortise that, yet small enough that the
/// two threads finish together and the results are converted while still in cache: 4-16 KB
/// measured best (2 threads, 4 MB of English in 7,211 or 722 texts); 60 KB units were 20 %
/// slower.
const CHUNK_BYTES: usize = 12 << 10;

/// Where the units of work of a batch start (and, last, `texts.len()`): runs of whole texts
/// of about [`CHUNK_BYTES`] each.
fn chunk_bounds(texts: &[&str]) -> Vec<usize> {
    let mut bounds = vec![0];
    let mut bytes = 0;
    for (i, t) in texts.iter().enumerate() {
        bytes += t.len();
        if bytes >= CHUNK_BYTES {
            bounds.push(i + 1);
            bytes = 0;
        }
    }
    if bounds.last() != Some(&texts.len()) {
        bounds.push(texts.len());
    }
    bounds
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
        Ok(PyEncoding::new(enc))
    }

    /// Loads a Hugging Face tokenizer.json (byte-level BPE).
    #[staticmethod]
    fn from_tokenizer_json(py: Python<'_>, path: PathBuf) -> PyResult<Self> {
        let enc = py.detach(|| load::from_tokenizer_json(&path))?;
        Ok(PyEncoding::new(enc))
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
        Ok(PyEncoding::new(enc))
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
        Ok(PyEncoding::new(enc))
    }

    /// Ids of `text`, special texts encoded as ordinary text.
    fn encode_ordinary<'py>(&self, py: Python<'py>, text: &str) -> PyResult<Bound<'py, PyList>> {
        let ids = py.detach(|| self.inner.encode_ordinary(text))?;
        self.to_list(py, &ids)
    }

    /// Ids of `text`; `allowed` special tokens (None: all) become their ids.
    #[pyo3(signature = (text, allowed))]
    fn encode<'py>(
        &self,
        py: Python<'py>,
        text: &str,
        allowed: Option<HashSet<String>>,
    ) -> PyResult<Bound<'py, PyList>> {
        let allowed = self::allowed(allowed);
        let ids = py.detach(|| self.inner.encode(text, &allowed))?;
        self.to_list(py, &ids)
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
    fn encode_batch<'py>(
        &self,
        py: Python<'py>,
        texts: Vec<Bound<'py, PyString>>,
        allowed: Option<HashSet<String>>,
        disallowed: Option<HashSet<String>>,
        ordinary: bool,
        num_threads: Option<usize>,
    ) -> PyResult<Bound<'py, PyList>> {
        let allowed = self::allowed(allowed);
        let disallowed = disallowed.map(|d| self::allowed(Some(d)));
        // Borrowed UTF-8 views of the Python strings (no copy; they live as long as `texts`).
        let texts = texts
            .iter()
            .map(|t| t.to_str())
            .collect::<PyResult<Vec<&str>>>()?;
        let enc = &self.inner;
        let encode_one = |t: &str, cache: &mut MergeCache| -> Result<Vec<u32>, BatchError> {
            if ordinary {
                return enc
                    .encode_ordinary_cached(t, cache)
                    .map_err(BatchError::Core);
            }
            if let Some(d) = &disallowed {
                if let Some(tok) = enc.find_disallowed(t, d) {
                    return Err(BatchError::Disallowed(tok));
                }
            }
            enc.encode_cached(t, &allowed, cache)
                .map_err(BatchError::Core)
        };
        let pool = match num_threads {
            Some(0) => return Err(PyValueError::new_err("num_threads must be at least 1")),
            Some(n) => Some(pool(n)?),
            None => None,
        };
        let threads = pool
            .as_ref()
            .map_or_else(rayon::current_num_threads, |p| p.current_num_threads());
        let n = texts.len();
        let mut lists: Vec<Option<Bound<'py, PyList>>> = (0..n).map(|_| None).collect();
        let mut first_err: Option<(usize, BatchError)> = None;
        let bounds = chunk_bounds(&texts);
        batch::run_chunks(
            py,
            pool.as_deref(),
            threads,
            &bounds,
            // One merge cache per thread for the whole call, from the encoding's pool, so every
            // text finds the common words earlier texts and calls merged already.
            || enc.lease_cache(),
            |r, cache: &mut MergeCache| -> Vec<Result<Vec<u32>, BatchError>> {
                texts[r].iter().map(|t| encode_one(t, cache)).collect()
            },
            |cache| enc.return_cache(cache),
            |r, results| {
                for (i, result) in r.zip(results) {
                    match result {
                        Ok(ids) => lists[i] = Some(self.to_list(py, &ids)?),
                        Err(e) => {
                            if first_err.as_ref().is_none_or(|(j, _)| i < *j) {
                                first_err = Some((i, e));
                            }
                        }
                    }
                }
                // Once a text failed the call raises: start no more work.
                Ok(first_err.is_none())
            },
        )?;
        match first_err {
            Some((_, BatchError::Core(e))) => Err(e.into()),
            Some((_, BatchError::Disallowed(tok))) => Err(PyValueError::new_err(tok)),
            None => PyList::new(py, lists.into_iter().flatten()),
        }
    }

    /// The bytes of `ids`; `KeyError` for an unknown id.
    fn decode_bytes<'py>(
        &self,
        py: Python<'py>,
        ids: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyBytes>> {
        let ids = extract_ids(ids)?;
        let bytes = py.detach(|| self.inner.decode_bytes(&ids))?;
        Ok(PyBytes::new(py, &bytes))
    }

    /// The text of `ids`, invalid UTF-8 replaced by U+FFFD (`strict`: ValueError instead).
    #[pyo3(signature = (ids, strict = false))]
    fn decode<'py>(
        &self,
        py: Python<'py>,
        ids: &Bound<'py, PyAny>,
        strict: bool,
    ) -> PyResult<Bound<'py, PyAny>> {
        let ids = extract_ids(ids)?;
        let bytes = py.detach(|| self.inner.decode_bytes(&ids))?;
        if strict {
            let s = String::from_utf8(bytes)
                .map_err(|e| PyValueError::new_err(format!("ids decode to invalid UTF-8: {e}")))?;
            return Ok(PyString::new(py, &s).into_any());
        }
        // CPython's own decoder, errors="replace": the text is checked once, where a Rust
        // `String` was checked by Rust and then again by CPython making the `str` (16 % and
        // 10 % of decoding Chinese); and the U+FFFDs are by construction those of
        // `bytes.decode("utf-8", "replace")`, as tiktoken gives.
        let len = pyo3::ffi::Py_ssize_t::try_from(bytes.len())
            .map_err(|_| PyValueError::new_err("decoded text too long"))?;
        // SAFETY: the pointer and length describe `bytes`, alive across the call; the GIL is
        // held; the errors name is a NUL-terminated static string.
        unsafe {
            let ptr =
                pyo3::ffi::PyUnicode_DecodeUTF8(bytes.as_ptr().cast(), len, c"replace".as_ptr());
            Bound::from_owned_ptr_or_err(py, ptr)
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
    fn push(&self, ids: &Bound<'_, PyAny>) -> PyResult<String> {
        let ids = extract_ids(ids)?;
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
