//! The core's error type. Every fallible path that input can reach returns one of these;
//! the bindings map each variant to the Python exception a user expects.

use std::path::PathBuf;

/// Errors of the native core.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file could not be read. Becomes `OSError` (with the path) in Python.
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// File content is malformed; the message names the file and the line or key.
    /// Becomes `ValueError`.
    #[error("{0}")]
    Format(String),
    /// A bad argument (out of range, wrong shape, NaN...). Becomes `ValueError`.
    #[error("{0}")]
    Value(String),
    /// An unknown token id or token. Becomes `KeyError`.
    #[error("{0}")]
    Key(String),
}

/// Shorthand for results of the native core.
pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    /// An [`Error::Io`] for `path`.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }
}
