//! The Python bindings: the only place that names pyo3 or numpy.
//!
//! One submodule per core module; each extracts arguments, releases the GIL around the
//! real work (`py.detach`), converts results and maps errors. Rules (special-token policy,
//! friendly messages) live in the Python package, mechanics here and in the core.

use pyo3::exceptions::{PyKeyError, PyOSError, PyValueError};
use pyo3::prelude::*;

use crate::error::Error;

mod attention;
mod batch;
mod sampler;
mod tokenizer;
mod trainer;

impl From<Error> for PyErr {
    fn from(err: Error) -> PyErr {
        match err {
            Error::Io { path, source } => PyOSError::new_err((
                source.raw_os_error().unwrap_or(0),
                source.to_string(),
                path.display().to_string(),
            )),
            Error::Format(msg) | Error::Value(msg) => PyValueError::new_err(msg),
            Error::Key(msg) => PyKeyError::new_err(msg),
        }
    }
}

/// The native extension module `gpt_hybrid._native`.
#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    tokenizer::register(m)?;
    sampler::register(m)?;
    trainer::register(m)?;
    attention::register(m)?;
    Ok(())
}
