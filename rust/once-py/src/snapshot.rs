//! The run's one walk of the workspace, rule input sets, and action keys.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};

use once_core::key::{ActionSpec, InputFile};
use once_core::snapshot;
use pyo3::exceptions::{PyRuntimeError, PyValueError};
use pyo3::prelude::*;

use crate::errors::{CoreError, CoreResult};

/// Every file of the workspace with its stat, from one parallel walk; digests filled by `hash`.
///
/// Frozen class with interior mutability: `hash` fills digests in place. The lock is only
/// ever taken with the GIL released (inside `py.detach`): a thread that blocked on it while
/// holding the GIL would deadlock with a holder that needs the GIL back to return.
#[pyclass(frozen, module = "once._core")]
pub struct Snapshot {
    inner: RwLock<snapshot::Snapshot>,
}

/// The files one rule reads: indices into its snapshot, sorted.
#[pyclass(frozen, module = "once._core")]
pub struct FileSet {
    indices: snapshot::FileSet,
}

fn poisoned() -> PyErr {
    PyRuntimeError::new_err("snapshot poisoned by an earlier panic")
}

impl Snapshot {
    /// Shared access; call only inside `py.detach`.
    fn read(&self) -> PyResult<RwLockReadGuard<'_, snapshot::Snapshot>> {
        self.inner.read().map_err(|_| poisoned())
    }

    /// Exclusive access; call only inside `py.detach`.
    fn write(&self) -> PyResult<RwLockWriteGuard<'_, snapshot::Snapshot>> {
        self.inner.write().map_err(|_| poisoned())
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
            inner: RwLock::new(scanned?),
        })
    }

    #[getter]
    fn file_count(&self, py: Python<'_>) -> PyResult<usize> {
        py.detach(|| Ok(self.read()?.files.len()))
    }

    #[pyo3(signature = (package, include, exclude))]
    fn select(
        &self,
        py: Python<'_>,
        package: &str,
        include: Vec<String>,
        exclude: Vec<String>,
    ) -> PyResult<FileSet> {
        py.detach(|| {
            let indices = self
                .read()?
                .select(package, &include, &exclude)
                .map_err(CoreError)?;
            Ok(FileSet { indices })
        })
    }

    /// `select` for many (package, include, exclude) in one call, each glob list compiled once.
    fn select_many(
        &self,
        py: Python<'_>,
        requests: Vec<(String, Vec<String>, Vec<String>)>,
    ) -> PyResult<Vec<FileSet>> {
        py.detach(|| {
            let sets = self.read()?.select_many(&requests).map_err(CoreError)?;
            Ok(sets
                .into_iter()
                .map(|indices| FileSet { indices })
                .collect())
        })
    }

    /// Hash every file of `sets` not already known from the stat cache; returns files read.
    #[pyo3(signature = (sets, stat_cache=None))]
    fn hash(
        &self,
        py: Python<'_>,
        sets: Vec<Py<FileSet>>,
        stat_cache: Option<PathBuf>,
    ) -> PyResult<usize> {
        py.detach(|| {
            // `Py::get` on a frozen class needs no GIL.
            let refs: Vec<&snapshot::FileSet> = sets.iter().map(|s| &s.get().indices).collect();
            let read = self
                .write()?
                .hash(&refs, stat_cache.as_deref())
                .map_err(CoreError)?;
            Ok(read)
        })
    }

    /// Paths of `set` edited, replaced or deleted since the scan.
    fn changed_since_scan(&self, py: Python<'_>, set: &FileSet) -> PyResult<Vec<String>> {
        py.detach(|| Ok(self.read()?.changed_since_scan(&set.indices)))
    }

    /// (path, digest hex, executable) of each file of `set`.
    fn inputs(&self, py: Python<'_>, set: &FileSet) -> PyResult<Vec<(String, String, bool)>> {
        py.detach(|| {
            let inner = self.read()?;
            let inputs = inner.inputs(&set.indices).map_err(CoreError)?;
            Ok(inputs
                .into_iter()
                .map(|(path, digest, executable)| (path.to_owned(), digest.to_hex(), executable))
                .collect())
        })
    }
}

#[pymethods]
impl FileSet {
    fn __len__(&self) -> usize {
        self.indices.len()
    }
}

/// The key's view of a rule's input files.
fn input_files(inner: &snapshot::Snapshot, set: &snapshot::FileSet) -> PyResult<Vec<InputFile>> {
    Ok(inner
        .inputs(set)
        .map_err(CoreError)?
        .into_iter()
        .map(|(path, digest, executable)| InputFile {
            path: path.to_owned(),
            digest,
            executable,
        })
        .collect())
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
    py.detach(|| {
        let inner = snapshot.read()?;
        let inputs = input_files(&inner, &inputs.indices)?;
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
    })
}

/// What `action_keys` takes per action: inputs, label, cmd, cwd, platform, env, tools, the
/// labels of the actions it depends on (earlier in the same batch), outputs.
type KeyRequest = (
    Py<FileSet>,
    String,
    String,
    String,
    String,
    Vec<(String, String)>,
    Vec<(String, String)>,
    Vec<String>,
    Vec<String>,
);

/// The keys of many actions, given in dependency order, in one call: a dependency's key is
/// taken from earlier in the batch. Only the keys: what went into one (`action_key`'s JSON) is
/// wanted only when a key changed, and building it for every action cost more than the key.
#[pyfunction]
pub fn action_keys(
    py: Python<'_>,
    snapshot: &Snapshot,
    requests: Vec<KeyRequest>,
) -> PyResult<Vec<String>> {
    py.detach(|| {
        let inner = snapshot.read()?;
        let mut keys: HashMap<&str, String> = HashMap::with_capacity(requests.len());
        let mut out = Vec::with_capacity(requests.len());
        for (inputs, label, cmd, cwd, platform, env, tools, dep_labels, outputs) in &requests {
            let deps = dep_labels
                .iter()
                .map(|dep| match keys.get(dep.as_str()) {
                    Some(key) => Ok((dep.clone(), key.clone())),
                    None => Err(PyValueError::new_err(format!(
                        "{label} depends on {dep}, which is not earlier in the batch"
                    ))),
                })
                .collect::<PyResult<Vec<_>>>()?;
            // `Py::get` on a frozen class needs no GIL.
            let inputs = input_files(&inner, &inputs.get().indices)?;
            let key = ActionSpec {
                label: label.clone(),
                cmd: cmd.clone(),
                cwd: cwd.clone(),
                platform: platform.clone(),
                env: env.clone(),
                tools: tools.clone(),
                inputs,
                deps,
                outputs: outputs.clone(),
            }
            .normalized()
            .key()
            .to_hex();
            keys.insert(label.as_str(), key.clone());
            out.push(key);
        }
        Ok(out)
    })
}
