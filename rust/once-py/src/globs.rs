//! The core's glob engine for Python: the same compiled globs that select a rule's inputs
//! answer the configuration's checks (overlaps, outputs covering a once.toml), member folders
//! and `--affected`, so no second reading of a glob can disagree with the key.

use once_core::select;
use pyo3::prelude::*;

use crate::errors::CoreError;

/// A compiled list of package-relative globs, with the meaning inputs have.
#[pyclass(frozen, module = "once._core")]
pub struct Globs {
    inner: select::Globs,
}

#[pymethods]
impl Globs {
    /// Raises `GlobError` naming the first pattern that does not parse.
    #[new]
    fn new(patterns: Vec<String>) -> PyResult<Globs> {
        let inner = select::Globs::compile(&patterns).map_err(CoreError)?;
        Ok(Globs { inner })
    }

    fn is_match(&self, path: &str) -> bool {
        self.inner.is_match(path)
    }

    /// The paths matching `self` and not `exclude`, sorted.
    #[pyo3(signature = (paths, exclude=None))]
    fn filter(
        &self,
        py: Python<'_>,
        mut paths: Vec<String>,
        exclude: Option<Py<Globs>>,
    ) -> Vec<String> {
        py.detach(|| {
            paths.sort_unstable();
            paths.dedup();
            let refs: Vec<&str> = paths.iter().map(String::as_str).collect();
            let none = select::Globs::default();
            // `Py::get` on a frozen class needs no GIL.
            let exclude = exclude.as_ref().map_or(&none, |globs| &globs.get().inner);
            let chosen = self.inner.select(&refs, exclude);
            chosen
                .into_iter()
                .map(|index| paths[index as usize].clone())
                .collect()
        })
    }
}
