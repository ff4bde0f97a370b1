//! Bindings for [`crate::attention`]: `_native.decode_attention`.

use numpy::{
    PyReadonlyArray1, PyReadonlyArray3, PyReadonlyArray4, PyReadwriteArray3, PyUntypedArrayMethods,
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
    let contiguous = |name: &str| PyValueError::new_err(format!("{name} must be C-contiguous"));
    let [slots, heads, max_len, head_dim] =
        [k.shape()[0], k.shape()[1], k.shape()[2], k.shape()[3]];
    if v.shape() != k.shape() || q.shape()[1..] != [heads, head_dim] || out.shape() != q.shape() {
        return Err(PyValueError::new_err(format!(
            "shapes do not match: q {:?}, k {:?}, v {:?}, out {:?}",
            q.shape(),
            k.shape(),
            v.shape(),
            out.shape()
        )));
    }
    let lengths = lengths
        .as_slice()
        .map_err(|_| contiguous("lengths"))?
        .iter()
        .map(|&n| usize::try_from(n).unwrap_or(0))
        .collect::<Vec<_>>();
    let q = q.as_slice().map_err(|_| contiguous("q"))?;
    let k = k.as_slice().map_err(|_| contiguous("k"))?;
    let v = v.as_slice().map_err(|_| contiguous("v"))?;
    let out = out.as_slice_mut().map_err(|_| contiguous("out"))?;
    let shape = CacheShape {
        slots,
        heads,
        max_len,
        head_dim,
    };
    py.detach(|| attention::decode_attention(q, k, v, shape, &lengths, scale as f32, out))?;
    Ok(())
}

pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(decode_attention, m)?)
}
