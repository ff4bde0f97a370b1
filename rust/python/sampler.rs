//! Bindings for [`crate::sampler`]: numpy arrays in, numpy arrays out, the GIL released.
//!
//! The Python wrapper (`gpt_hybrid.sampling`) turns tensors, dtypes, scalars and history
//! lists into the flat arrays taken here; this file only checks shapes, borrows the data
//! without copying and runs the core with the GIL released.

use numpy::{
    IntoPyArray, PyArray1, PyArrayMethods, PyReadonlyArray1, PyReadonlyArray2,
    PyUntypedArrayMethods,
};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::PyTuple;

use crate::sampler::{self, History, Logits, RowParams};

/// Columns of the float parameter matrix, in this order.
const FLOAT_COLUMNS: usize = 6;
/// Columns of the integer parameter matrix, in this order.
const INT_COLUMNS: usize = 4;

fn contiguous<'a, T: numpy::Element>(
    a: &'a PyReadonlyArray2<'_, T>,
    name: &str,
) -> PyResult<&'a [T]> {
    a.as_slice()
        .map_err(|_| PyValueError::new_err(format!("{name} must be C-contiguous")))
}

fn contiguous1<'a, T: numpy::Element>(
    a: &'a PyReadonlyArray1<'_, T>,
    name: &str,
) -> PyResult<&'a [T]> {
    a.as_slice()
        .map_err(|_| PyValueError::new_err(format!("{name} must be contiguous")))
}

/// Builds one [`RowParams`] per row from the `[rows, 6]` float and `[rows, 4]` int matrices.
fn row_params(
    rows: usize,
    floats: &PyReadonlyArray2<'_, f64>,
    ints: &PyReadonlyArray2<'_, u64>,
) -> PyResult<Vec<RowParams>> {
    if floats.shape() != [rows, FLOAT_COLUMNS] || ints.shape() != [rows, INT_COLUMNS] {
        return Err(PyValueError::new_err(format!(
            "parameter matrices must be [{rows}, {FLOAT_COLUMNS}] and [{rows}, {INT_COLUMNS}], got {:?} and {:?}",
            floats.shape(),
            ints.shape()
        )));
    }
    let f = contiguous(floats, "float parameters")?;
    let i = contiguous(ints, "integer parameters")?;
    Ok(f.chunks_exact(FLOAT_COLUMNS)
        .zip(i.chunks_exact(INT_COLUMNS))
        .map(|(f, i)| RowParams {
            temperature: f[0],
            top_p: f[1],
            min_p: f[2],
            repetition_penalty: f[3],
            presence_penalty: f[4],
            frequency_penalty: f[5],
            top_k: usize::try_from(i[0]).unwrap_or(usize::MAX),
            seed: i[1],
            sequence: i[2],
            step: i[3],
        })
        .collect())
}

/// Converts the offsets array to usize, rejecting values that do not fit.
fn offsets_of(offsets: &[u64]) -> PyResult<Vec<usize>> {
    offsets
        .iter()
        .map(|&o| usize::try_from(o).map_err(|_| PyValueError::new_err("history offset too large")))
        .collect()
}

/// Samples one token per row.
///
/// Returns `(ids, logprobs, raw_logprobs, top_ids, top_logprobs)`; the last four are empty
/// unless `return_logprobs`. The public entry point is `gpt_hybrid.sample`.
#[pyfunction]
#[pyo3(signature = (logits, float_params, int_params, history_ids, history_offsets, return_logprobs, num_logprobs))]
// The arguments are the Python call's; bundling them would only move the unpacking.
#[allow(clippy::too_many_arguments)]
fn sample_batch<'py>(
    py: Python<'py>,
    logits: PyReadonlyArray2<'py, f32>,
    float_params: PyReadonlyArray2<'py, f64>,
    int_params: PyReadonlyArray2<'py, u64>,
    history_ids: PyReadonlyArray1<'py, u32>,
    history_offsets: PyReadonlyArray1<'py, u64>,
    return_logprobs: bool,
    num_logprobs: usize,
) -> PyResult<Bound<'py, PyTuple>> {
    let [rows, vocab] = [logits.shape()[0], logits.shape()[1]];
    let data = contiguous(&logits, "logits")?;
    let params = row_params(rows, &float_params, &int_params)?;
    let ids = contiguous1(&history_ids, "history ids")?;
    let offsets = offsets_of(contiguous1(&history_offsets, "history offsets")?)?;
    let out = py.detach(|| {
        let logits = Logits::new(data, rows, vocab)?;
        let history = History {
            ids,
            offsets: &offsets,
        };
        sampler::sample(logits, &params, history, return_logprobs, num_logprobs)
    })?;
    let n_top = out.n_top;
    let top_rows = if return_logprobs { rows } else { 0 };
    let top_ids = out.top_ids.into_pyarray(py).reshape([top_rows, n_top])?;
    let top_logprobs = out
        .top_logprobs
        .into_pyarray(py)
        .reshape([top_rows, n_top])?;
    (
        out.ids.into_pyarray(py),
        out.logprobs.into_pyarray(py),
        out.raw_logprobs.into_pyarray(py),
        top_ids,
        top_logprobs,
    )
        .into_pyobject(py)
}

/// Samples one token per row with the same parameters for every row and no history: the
/// common call, without the parameter matrices, history arrays and logprob outputs of
/// [`sample_batch`] (at batch 1 their extraction and building cost more than the kernel).
///
/// `seeds`, when given, holds one seed per row and replaces `seed` (rows that draw from the
/// global generator). Returns the int64 ids. The public entry point is `gpt_hybrid.sample`,
/// which checks the parameters first.
#[pyfunction]
#[pyo3(signature = (logits, temperature, top_k, top_p, min_p, repetition_penalty, presence_penalty, frequency_penalty, seed, sequence, step, seeds=None))]
// The arguments are the Python call's scalars; bundling them would only move the unpacking.
#[allow(clippy::too_many_arguments)]
fn sample_scalar<'py>(
    py: Python<'py>,
    logits: PyReadonlyArray2<'py, f32>,
    temperature: f64,
    top_k: u64,
    top_p: f64,
    min_p: f64,
    repetition_penalty: f64,
    presence_penalty: f64,
    frequency_penalty: f64,
    seed: u64,
    sequence: u64,
    step: u64,
    seeds: Option<PyReadonlyArray1<'py, u64>>,
) -> PyResult<Bound<'py, PyArray1<i64>>> {
    let [rows, vocab] = [logits.shape()[0], logits.shape()[1]];
    let data = contiguous(&logits, "logits")?;
    let row = RowParams {
        temperature,
        top_p,
        min_p,
        repetition_penalty,
        presence_penalty,
        frequency_penalty,
        top_k: usize::try_from(top_k).unwrap_or(usize::MAX),
        seed,
        sequence,
        step,
    };
    let params = match &seeds {
        None => vec![row; rows],
        Some(seeds) => {
            let seeds = contiguous1(seeds, "seeds")?;
            if seeds.len() != rows {
                return Err(PyValueError::new_err(format!(
                    "{} seeds for {rows} rows",
                    seeds.len()
                )));
            }
            seeds
                .iter()
                .map(|&seed| RowParams { seed, ..row })
                .collect()
        }
    };
    let run = || {
        let logits = Logits::new(data, rows, vocab)?;
        sampler::sample(logits, &params, History::default(), false, 0)
    };
    // Small calls keep the GIL: they end in microseconds, before another thread could use it.
    let out = if rows * vocab < DETACH_FROM {
        run()
    } else {
        py.detach(run)
    }?;
    // A numpy-owned copy of the few ids rather than handing numpy the Vec (together with
    // keeping the GIL for small calls: 0.72 instead of 0.79 µs a call on an 8-logit row).
    Ok(PyArray1::from_slice(py, &out.ids))
}

/// Calls with fewer logits than this keep the GIL (they take a few microseconds).
const DETACH_FROM: usize = 1 << 14;

/// The final filtered, renormalised distribution of every row, `[rows, vocab]` float32.
/// The public entry point is `gpt_hybrid.probs`.
#[pyfunction]
#[pyo3(signature = (logits, float_params, int_params, history_ids, history_offsets))]
fn probs_batch<'py>(
    py: Python<'py>,
    logits: PyReadonlyArray2<'py, f32>,
    float_params: PyReadonlyArray2<'py, f64>,
    int_params: PyReadonlyArray2<'py, u64>,
    history_ids: PyReadonlyArray1<'py, u32>,
    history_offsets: PyReadonlyArray1<'py, u64>,
) -> PyResult<Bound<'py, PyAny>> {
    let [rows, vocab] = [logits.shape()[0], logits.shape()[1]];
    let data = contiguous(&logits, "logits")?;
    let params = row_params(rows, &float_params, &int_params)?;
    let ids = contiguous1(&history_ids, "history ids")?;
    let offsets = offsets_of(contiguous1(&history_offsets, "history offsets")?)?;
    let dense = py.detach(|| {
        let logits = Logits::new(data, rows, vocab)?;
        sampler::probs(
            logits,
            &params,
            History {
                ids,
                offsets: &offsets,
            },
        )
    })?;
    let array: Bound<'py, PyArray1<f32>> = dense.into_pyarray(py);
    Ok(array.reshape([rows, vocab])?.into_any())
}

/// One Philox4x32-10 uniform in [0, 1) for (seed, sequence, step); exposed for tests.
#[pyfunction]
fn philox_uniform(seed: u64, sequence: u64, step: u64) -> f64 {
    sampler::uniform(seed, sequence, step)
}

pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(sample_batch, m)?)?;
    m.add_function(wrap_pyfunction!(sample_scalar, m)?)?;
    m.add_function(wrap_pyfunction!(probs_batch, m)?)?;
    m.add_function(wrap_pyfunction!(philox_uniform, m)?)?;
    Ok(())
}
