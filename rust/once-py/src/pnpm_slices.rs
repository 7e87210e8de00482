//! The slices of a pnpm-lock.yaml, for `plan/lockfile_formats.py`.

use std::collections::HashMap;

use once_core::pnpm_slices;
use pyo3::prelude::*;

/// The slice digest (hex) of each importer of a pnpm-lock.yaml, by its key as the lockfile writes
/// it (None for an importer whose slice cannot be told); None when the file cannot be sliced.
/// Bytes are immutable, so reading them without the GIL is sound.
#[pyfunction]
pub fn pnpm_slice_digests(py: Python<'_>, data: &[u8]) -> Option<HashMap<String, Option<String>>> {
    py.detach(|| {
        let digests = pnpm_slices::slice_digests(data).ok()?;
        Some(
            digests
                .into_iter()
                .map(|(importer, digest)| (importer, digest.map(|d| d.to_hex())))
                .collect(),
        )
    })
}
