//! The run's one walk of the workspace, rule input sets, and action keys.

use std::path::PathBuf;
use std::sync::{Mutex, MutexGuard};

use once_core::key::{ActionSpec, InputFile};
use once_core::snapshot;
use pyo3::exceptions::PyRuntimeError;
use pyo3::prelude::*;

use crate::errors::CoreResult;

/// Every file of the workspace with its stat, from one parallel walk; digests filled by `hash`.
#[pyclass(frozen, module = "once._core")]
pub struct Snapshot {
    // Frozen class with interior mutability: `hash` fills digests in place.
    inner: Mutex<snapshot::Snapshot>,
}

/// The files one rule reads: indices into its snapshot, sorted.
#[pyclass(frozen, module = "once._core")]
pub struct FileSet {
    indices: snapshot::FileSet,
}

impl Snapshot {
    fn lock(&self) -> PyResult<MutexGuard<'_, snapshot::Snapshot>> {
        self.inner
            .lock()
            .map_err(|_| PyRuntimeError::new_err("snapshot poisoned by an earlier panic"))
    }
}

#[pymethods]
impl Snapshot {
    #[staticmethod]
    #[pyo3(signature = (root, skip_dirs))]
    fn scan(py: Python<'_>, root: PathBuf, skip_dirs: Vec<String>) -> PyResult<Snapshot> {
        let scanned: CoreResult<snapshot::Snapshot> =
            py.detach(|| Ok(snapshot::Snapshot::scan(&root, &skip_dirs)?));
        Ok(Snapshot {
            inner: Mutex::new(scanned?),
        })
    }

    #[getter]
    fn file_count(&self) -> PyResult<usize> {
        Ok(self.lock()?.files.len())
    }

    #[pyo3(signature = (package, include, exclude))]
    fn select(
        &self,
        py: Python<'_>,
        package: &str,
        include: Vec<String>,
        exclude: Vec<String>,
    ) -> PyResult<FileSet> {
        let inner = self.lock()?;
        let indices: CoreResult<snapshot::FileSet> =
            py.detach(|| Ok(inner.select(package, &include, &exclude)?));
        Ok(FileSet { indices: indices? })
    }

    /// Hash every file of `sets` not already known from the stat cache; returns files read.
    #[pyo3(signature = (sets, stat_cache=None))]
    fn hash(
        &self,
        py: Python<'_>,
        sets: Vec<Py<FileSet>>,
        stat_cache: Option<PathBuf>,
    ) -> PyResult<usize> {
        let mut guard = self.lock()?;
        // A plain `&mut` (Send) crosses into the GIL-free closure; the guard itself may not.
        let inner: &mut snapshot::Snapshot = &mut guard;
        let read: CoreResult<usize> = py.detach(|| {
            let refs: Vec<&snapshot::FileSet> = sets.iter().map(|s| &s.get().indices).collect();
            Ok(inner.hash(&refs, stat_cache.as_deref())?)
        });
        Ok(read?)
    }

    /// Paths of `set` edited, replaced or deleted since the scan.
    fn changed_since_scan(&self, py: Python<'_>, set: &FileSet) -> PyResult<Vec<String>> {
        let inner = self.lock()?;
        Ok(py.detach(|| inner.changed_since_scan(&set.indices)))
    }

    /// (path, digest hex, executable) of each file of `set`.
    fn inputs(&self, set: &FileSet) -> PyResult<Vec<(String, String, bool)>> {
        let inner = self.lock()?;
        let inputs = inner
            .inputs(&set.indices)
            .map_err(crate::errors::CoreError)?;
        Ok(inputs
            .into_iter()
            .map(|(path, digest, executable)| (path.to_owned(), digest.to_hex(), executable))
            .collect())
    }
}

#[pymethods]
impl FileSet {
    fn __len__(&self) -> usize {
        self.indices.len()
    }
}

/// The action key and the JSON of everything that went into it (kept for `once why`).
#[pyfunction]
#[pyo3(signature = (snapshot, inputs, *, label, cmd, cwd, platform, env, tools, deps, outputs))]
#[allow(clippy::too_many_arguments)]
pub fn action_key(
    py: Python<'_>,
    snapshot: &Snapshot,
    inputs: &FileSet,
    label: String,
    cmd: String,
    cwd: String,
    platform: String,
    env: Vec<(String, String)>,
    tools: Vec<(String, String)>,
    deps: Vec<(String, String)>,
    outputs: Vec<String>,
) -> PyResult<(String, String)> {
    let inner = snapshot.lock()?;
    let keyed: CoreResult<(String, String)> = py.detach(|| {
        let inputs = inner
            .inputs(&inputs.indices)?
            .into_iter()
            .map(|(path, digest, executable)| InputFile {
                path: path.to_owned(),
                digest,
                executable,
            })
            .collect();
        let spec = ActionSpec {
            label,
            cmd,
            cwd,
            platform,
            env,
            tools,
            inputs,
            deps,
            outputs,
        }
        .normalized();
        // Serializing plain strings, bools and digests cannot fail.
        let json = serde_json::to_string(&spec).unwrap_or_default();
        Ok((spec.key().to_hex(), json))
    });
    Ok(keyed?)
}
