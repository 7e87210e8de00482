//! The local content-addressed store: lookup, save, compare and restore outputs.

use std::borrow::Cow;
use std::path::PathBuf;

use once_core::hash::Digest;
use once_core::store::{self, ActionEntry};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;

use crate::errors::CoreResult;

#[pyclass(frozen, module = "once._core")]
pub struct Store {
    inner: store::Store,
}

/// A cached action: its outputs' manifest, log and exit status.
#[pyclass(frozen, module = "once._core")]
pub struct Entry {
    inner: ActionEntry,
}

#[pymethods]
impl Store {
    #[new]
    fn new(py: Python<'_>, root: PathBuf) -> PyResult<Store> {
        let opened: CoreResult<store::Store> = py.detach(|| Ok(store::Store::open(&root)?));
        Ok(Store { inner: opened? })
    }

    #[getter]
    fn root(&self) -> String {
        self.inner.root().to_string_lossy().into_owned()
    }

    /// The entry for `key` if it and every blob it names are present.
    fn lookup(&self, py: Python<'_>, key: &str) -> Option<Entry> {
        py.detach(|| self.inner.lookup(key))
            .map(|inner| Entry { inner })
    }

    #[pyo3(signature = (key, workspace, package, outputs, log, exit_code, duration_ms))]
    #[allow(clippy::too_many_arguments)]
    fn save(
        &self,
        py: Python<'_>,
        key: &str,
        workspace: PathBuf,
        package: &str,
        outputs: Vec<String>,
        log: &[u8],
        exit_code: i32,
        duration_ms: u64,
    ) -> PyResult<Entry> {
        let saved: CoreResult<ActionEntry> = py.detach(|| {
            Ok(self.inner.save(
                key,
                &workspace,
                package,
                &outputs,
                log,
                exit_code,
                duration_ms,
            )?)
        });
        Ok(Entry { inner: saved? })
    }

    fn outputs_match(
        &self,
        py: Python<'_>,
        entry: &Entry,
        workspace: PathBuf,
        package: &str,
        outputs: Vec<String>,
    ) -> PyResult<bool> {
        let matched: CoreResult<bool> = py.detach(|| {
            Ok(self
                .inner
                .outputs_match(&workspace, package, &outputs, &entry.inner)?)
        });
        Ok(matched?)
    }

    fn restore(
        &self,
        py: Python<'_>,
        entry: &Entry,
        workspace: PathBuf,
        package: &str,
        outputs: Vec<String>,
    ) -> PyResult<()> {
        let restored: CoreResult<()> = py.detach(|| {
            Ok(self
                .inner
                .restore(&workspace, package, &outputs, &entry.inner)?)
        });
        Ok(restored?)
    }

    fn read_blob(&self, py: Python<'_>, digest: &str) -> PyResult<Cow<'static, [u8]>> {
        let digest = Digest::from_hex(digest)
            .ok_or_else(|| PyValueError::new_err(format!("not a digest: {digest:?}")))?;
        let bytes: CoreResult<Vec<u8>> = py.detach(|| Ok(self.inner.read_blob(&digest)?));
        Ok(Cow::Owned(bytes?))
    }
}

#[pymethods]
impl Entry {
    #[getter]
    fn key(&self) -> &str {
        &self.inner.key
    }
    #[getter]
    fn log(&self) -> String {
        self.inner.log.to_hex()
    }
    #[getter]
    fn exit_code(&self) -> i32 {
        self.inner.exit_code
    }
    #[getter]
    fn duration_ms(&self) -> u64 {
        self.inner.duration_ms
    }
    #[getter]
    fn output_count(&self) -> usize {
        self.inner.outputs.len()
    }
}
