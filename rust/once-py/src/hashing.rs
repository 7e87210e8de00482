//! Hashing entry points: bytes, files, and b3sum-compatible lines for `once hash`.

use std::path::PathBuf;

use once_core::hash;
use pyo3::prelude::*;

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

/// The lines `b3sum` would print for these files, folders expanded to the files below them.
#[pyfunction]
pub fn b3sum_lines(py: Python<'_>, paths: Vec<PathBuf>) -> PyResult<Vec<String>> {
    let lines: CoreResult<Vec<String>> = py.detach(|| {
        let hashed = hash::hash_tree(&paths)?;
        Ok(hashed
            .iter()
            .map(|(path, digest)| hash::b3sum_line(digest, path))
            .collect())
    });
    Ok(lines?)
}

/// How many files this process has read to hash them, inputs and outputs alike; tests compare
/// it before and after a run to prove a no-op run reads metadata only.
#[pyfunction]
pub fn files_hashed() -> u64 {
    hash::files_hashed()
}
