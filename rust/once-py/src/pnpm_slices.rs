//! The slices of a pnpm-lock.yaml, for `plan/lockfile_formats.py`.

use std::path::PathBuf;

use once_core::pnpm_slices;
use pyo3::prelude::*;
use pyo3::types::PyDict;

/// The slice digest (hex) of each importer of a pnpm-lock.yaml, by its key as the lockfile writes
/// it (None for an importer whose slice cannot be told); None when the file cannot be sliced.
/// Bytes are immutable, so reading them without the GIL is sound.
#[pyfunction]
pub fn pnpm_slice_digests<'py>(
    py: Python<'py>,
    data: &[u8],
) -> PyResult<Option<Bound<'py, PyDict>>> {
    let Some(digests) = py.detach(|| pnpm_slices::slice_digests(data)) else {
        return Ok(None);
    };
    by_importer(py, digests).map(Some)
}

/// The digest (hex) of the pnpm-lock.yaml at `path` and its importers' slice digests (as
/// `pnpm_slice_digests`'s), from one read that never holds the whole file.
#[pyfunction]
pub fn pnpm_file_slice_digests(
    py: Python<'_>,
    path: PathBuf,
) -> PyResult<(String, Option<Bound<'_, PyDict>>)> {
    let (digest, digests) = py.detach(|| pnpm_slices::file_slice_digests(&path))?;
    Ok((
        digest.to_hex(),
        digests
            .map(|digests| by_importer(py, digests))
            .transpose()?,
    ))
}

fn by_importer(py: Python<'_>, digests: pnpm_slices::Slices) -> PyResult<Bound<'_, PyDict>> {
    // Into the dict directly: a map of hex strings first would be one more copy of them all.
    let found = PyDict::new(py);
    for (importer, digest) in digests {
        found.set_item(importer, digest.map(|d| d.to_hex()))?;
    }
    Ok(found)
}
