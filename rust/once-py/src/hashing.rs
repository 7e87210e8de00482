//! Hashing entry points: bytes, files, and b3sum-compatible lines for `once hash`.

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

/// Everything `b3sum` would print for these files, folders expanded to the files below them:
/// one buffer, formatted here, so the CLI writes it with one call instead of building and
/// joining 100,000 Python strings.
#[pyfunction]
pub fn b3sum_output(py: Python<'_>, paths: Vec<PathBuf>) -> PyResult<Bound<'_, PyBytes>> {
    let output: CoreResult<Vec<u8>> =
        py.detach(|| Ok(hash::b3sum_output(&hash::hash_tree(&paths)?)));
    Ok(PyBytes::new(py, &output?))
}

/// How many files this process has read to hash them, inputs and outputs alike; tests compare
/// it before and after a run to prove a no-op run reads metadata only.
#[pyfunction]
pub fn files_hashed() -> u64 {
    hash::files_hashed()
}
