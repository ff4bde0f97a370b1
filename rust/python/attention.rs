//! Bindings for [`crate::attention`]: `_native.decode_attention`.

use numpy::{
    PyReadonlyArray1, PyReadonlyArray2, PyReadonlyArray3, PyReadonlyArray4, PyReadwriteArray2,
    PyReadwriteArray3, PyReadwriteArray4, PyUntypedArrayMethods,
};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;

use crate::attention::{self, CacheShape};

/// Writes into `out` ([rows, heads, head_dim]) the attention of `q` (same shape) over the
/// first `lengths[b]` positions of cache slot `b` of `k`/`v` ([slots, heads, max_len,
/// head_dim]). Every array must be C-contiguous float32 (lengths: int64).
#[pyfunction]
#[pyo3(signature = (q, k, v, lengths, scale, out))]
fn decode_attention(
    py: Python<'_>,
    q: PyReadonlyArray3<'_, f32>,
    k: PyReadonlyArray4<'_, f32>,
    v: PyReadonlyArray4<'_, f32>,
    lengths: PyReadonlyArray1<'_, i64>,
    scale: f64,
    mut out: PyReadwriteArray3<'_, f32>,
) -> PyResult<()> {
    let shape = cache_shape(k.shape(), v.shape())?;
    if q.shape()[1..] != [shape.heads, shape.head_dim] || out.shape() != q.shape() {
        return Err(PyValueError::new_err(format!(
            "shapes do not match: q {:?}, k {:?}, v {:?}, out {:?}",
            q.shape(),
            k.shape(),
            v.shape(),
            out.shape()
        )));
    }
    let lengths = lengths_of(&lengths)?;
    let q = q.as_slice().map_err(|_| contiguous("q"))?;
    let k = k.as_slice().map_err(|_| contiguous("k"))?;
    let v = v.as_slice().map_err(|_| contiguous("v"))?;
    let out = out.as_slice_mut().map_err(|_| contiguous("out"))?;
    py.detach(|| attention::decode_attention(q, k, v, shape, &lengths, scale as f32, out))?;
    Ok(())
}

/// One layer's decode step: writes each row's key and value (from `qkv`, [rows, 3 * heads *
/// head_dim], GPT-2's `c_attn` output) into cache slot `b` at position `lengths[b] - 1`, then
/// writes into `out` ([rows, heads * head_dim]) the attention of its query over the first
/// `lengths[b]` positions. Arrays as for `decode_attention`; `k`/`v` are written in place.
#[pyfunction]
#[pyo3(signature = (qkv, k, v, lengths, scale, out))]
fn decode_attention_step(
    py: Python<'_>,
    qkv: PyReadonlyArray2<'_, f32>,
    mut k: PyReadwriteArray4<'_, f32>,
    mut v: PyReadwriteArray4<'_, f32>,
    lengths: PyReadonlyArray1<'_, i64>,
    scale: f64,
    mut out: PyReadwriteArray2<'_, f32>,
) -> PyResult<()> {
    let shape = cache_shape(k.shape(), v.shape())?;
    let row = shape.heads * shape.head_dim;
    if qkv.shape()[1] != 3 * row || out.shape() != [qkv.shape()[0], row] {
        return Err(PyValueError::new_err(format!(
            "shapes do not match: qkv {:?} and out {:?} for a cache of {} heads of {}",
            qkv.shape(),
            out.shape(),
            shape.heads,
            shape.head_dim
        )));
    }
    let lengths = lengths_of(&lengths)?;
    let qkv = qkv.as_slice().map_err(|_| contiguous("qkv"))?;
    let k = k.as_slice_mut().map_err(|_| contiguous("k"))?;
    let v = v.as_slice_mut().map_err(|_| contiguous("v"))?;
    let out = out.as_slice_mut().map_err(|_| contiguous("out"))?;
    py.detach(|| attention::append_and_attend(qkv, k, v, shape, &lengths, scale as f32, out))?;
    Ok(())
}

fn contiguous(name: &str) -> PyErr {
    PyValueError::new_err(format!("{name} must be C-contiguous"))
}

fn cache_shape(k: &[usize], v: &[usize]) -> PyResult<CacheShape> {
    match k {
        &[slots, heads, max_len, head_dim] if k == v => Ok(CacheShape {
            slots,
            heads,
            max_len,
            head_dim,
        }),
        _ => Err(PyValueError::new_err(format!(
            "key/value caches must have one shape [slots, heads, max_len, head_dim]: k {k:?}, v {v:?}"
        ))),
    }
}

/// Lengths as `usize`; a negative one becomes 0, which the core rejects with its row.
fn lengths_of(lengths: &PyReadonlyArray1<'_, i64>) -> PyResult<Vec<usize>> {
    Ok(lengths
        .as_slice()
        .map_err(|_| contiguous("lengths"))?
        .iter()
        .map(|&n| usize::try_from(n).unwrap_or(0))
        .collect())
}

pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(decode_attention, m)?)?;
    m.add_function(wrap_pyfunction!(decode_attention_step, m)?)
}
