//! The one mapping from core errors to Python exceptions.

use std::io;

use once_core::Error;
use pyo3::exceptions::{
    PyFileNotFoundError, PyIsADirectoryError, PyOSError, PyPermissionError, PyValueError,
};
use pyo3::{create_exception, PyErr};

create_exception!(
    once._core,
    GlobError,
    PyValueError,
    "A glob in a once.toml does not parse."
);
create_exception!(
    once._core,
    UnsafePathError,
    PyValueError,
    "A manifest path or symlink target would leave the workspace."
);
create_exception!(
    once._core,
    SymlinkedOutputError,
    PyValueError,
    "A declared output is reached through a symlink, which once never writes or deletes through."
);

/// Wraps a core error so this crate may implement `From` for `PyErr` (orphan rule).
pub struct CoreError(pub Error);

impl From<Error> for CoreError {
    fn from(err: Error) -> Self {
        CoreError(err)
    }
}

impl From<CoreError> for PyErr {
    fn from(CoreError(err): CoreError) -> PyErr {
        let message = err.to_string();
        match err {
            // Keep the OSError subclass so Python callers can catch FileNotFoundError etc.
            Error::Io { path, source } => {
                let args = (source.raw_os_error().unwrap_or(0), message, path);
                match source.kind() {
                    io::ErrorKind::NotFound => PyFileNotFoundError::new_err(args),
                    io::ErrorKind::PermissionDenied => PyPermissionError::new_err(args),
                    io::ErrorKind::IsADirectory => PyIsADirectoryError::new_err(args),
                    _ => PyOSError::new_err(args),
                }
            }
            // OSError picks the subclass from the errno: a reader gone is a BrokenPipeError.
            Error::Output(source) => {
                PyOSError::new_err((source.raw_os_error().unwrap_or(0), message))
            }
            Error::Glob { .. } => GlobError::new_err(message),
            Error::Escape(_) => UnsafePathError::new_err(message),
            Error::Symlinked { .. } => SymlinkedOutputError::new_err(message),
            Error::Corrupt { .. } | Error::KeyBatch { .. } => PyValueError::new_err(message),
        }
    }
}

/// Result of a core call, convertible with `?` in a `PyResult` function.
pub type CoreResult<T> = Result<T, CoreError>;
