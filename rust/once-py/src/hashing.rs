//! Hashing entry points: bytes, files, and b3sum-compatible lines for `once hash`.

use std::io;
use std::path::PathBuf;

use once_core::hash;
use pyo3::prelude::*;
use pyo3::types::PyBytes;

use crate::errors::{CoreError, CoreResult};

/// BLAKE3 of `data` as hex. Bytes are immutable, so reading them without the GIL is sound.
#[pyfunction]
pub fn hash_bytes(py: Python<'_>, data: &[u8]) -> String {
    py.detach(|| hash::hash_bytes(data).to_hex())
}

/// BLAKE3 of each file, in order, as hex.
#[pyfunction]
pub fn hash_files(py: Python<'_>, paths: Vec<PathBuf>) -> PyResult<Vec<String>> {
    let digests: CoreResult<Vec<String>> = py.detach(|| {
        hash::hash_files(&paths)
            .into_iter()
            .map(|digest| digest.map(|d| d.to_hex()).map_err(CoreError))
            .collect()
    });
    Ok(digests?)
}

/// Write what `b3sum` would print for these files, folders expanded to the files below them,
/// by calling `write` with each chunk of lines (bytes) as soon as it is hashed (again with the
/// rest when it says it took only part): no list of every line, and no Python string per
/// line. The GIL is held only for the calls to `write`.
#[pyfunction]
pub fn write_b3sum(py: Python<'_>, paths: Vec<PathBuf>, write: Py<PyAny>) -> PyResult<()> {
    let mut out = PyWriter {
        write,
        raised: None,
    };
    let done = py.detach(|| hash::write_b3sum(&paths, &mut out));
    // What `write` raised (a reader gone, a full disk) is the error, as Python raised it.
    if let Some(err) = out.raised {
        return Err(err);
    }
    Ok(done.map_err(CoreError)?)
}

/// A Python `write(bytes) -> int` as an `io::Write`: a raw file's (`sys.stdout.buffer` under
/// `PYTHONUNBUFFERED`) may take only part of it, and says how much; a buffered one takes all.
struct PyWriter {
    write: Py<PyAny>,
    raised: Option<PyErr>,
}

impl io::Write for PyWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        Python::attach(|py| {
            let written = self
                .write
                .call1(py, (PyBytes::new(py, buf),))
                .and_then(|written| written.extract::<usize>(py));
            match written {
                Ok(written) => Ok(written.min(buf.len())),
                Err(err) => {
                    let failed = io::Error::other(err.to_string());
                    self.raised = Some(err);
                    Err(failed)
                }
            }
        })
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// How many files this process has read to hash them, inputs and outputs alike; tests compare
/// it before and after a run to prove a no-op run reads metadata only.
#[pyfunction]
pub fn files_hashed() -> u64 {
    hash::files_hashed()
}
