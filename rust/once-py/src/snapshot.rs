//! The run's one walk of the workspace, rule input sets, and action keys.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Mutex, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::thread::JoinHandle;

use once_core::key::{key_of, ActionSpec, InputFile, KeyHead};
use once_core::snapshot;
use pyo3::exceptions::{PyRuntimeError, PyValueError};
use pyo3::prelude::*;
use rayon::prelude::*;

use crate::errors::{CoreError, CoreResult};

/// Every file of the workspace with its stat, from one parallel walk; digests filled by `hash`.
///
/// Frozen class with interior mutability: `hash` fills digests in place. The lock is only
/// ever taken with the GIL released (inside `py.detach`): a thread that blocked on it while
/// holding the GIL would deadlock with a holder that needs the GIL back to return.
#[pyclass(frozen, module = "once._core")]
pub struct Snapshot {
    inner: RwLock<snapshot::Snapshot>,
    /// The folders the walk left out, for walking again as it did (`changed_since_scan`).
    skip_dirs: Vec<String>,
}

/// The files one rule reads: indices into its snapshot, sorted, and what selected them.
#[pyclass(frozen, module = "once._core")]
pub struct FileSet {
    indices: snapshot::FileSet,
    selection: Selection,
}

/// A package folder, and the include and exclude globs of a rule's inputs within it.
type Selection = (String, Vec<String>, Vec<String>);

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

/// A walk, then a prime from the stat cache, running on a thread of its own: what
/// `Snapshot.start_scan` returns. A Rust thread, not a Python one, so that the walk can start
/// before `threading` (~5 ms) is even imported.
#[pyclass(frozen, module = "once._core")]
pub struct PendingScan {
    thread: Mutex<Option<JoinHandle<once_core::Result<snapshot::Snapshot>>>>,
    skip_dirs: Vec<String>,
}

#[pymethods]
impl PendingScan {
    /// The snapshot, once the walk is done; only once.
    fn wait(&self, py: Python<'_>) -> PyResult<Snapshot> {
        py.detach(|| {
            let thread = self.thread.lock().map_err(|_| poisoned())?.take();
            let thread =
                thread.ok_or_else(|| PyRuntimeError::new_err("scan already waited for"))?;
            let scanned = thread
                .join()
                .map_err(|_| PyRuntimeError::new_err("the workspace walk panicked"))?;
            Ok(Snapshot {
                inner: RwLock::new(scanned.map_err(CoreError)?),
                skip_dirs: self.skip_dirs.clone(),
            })
        })
    }
}

#[pymethods]
impl Snapshot {
    /// `scan`, then `prime` with `stat_cache`, on a new thread; `wait` on the result.
    #[staticmethod]
    #[pyo3(signature = (root, skip_dirs, stat_cache))]
    fn start_scan(root: PathBuf, skip_dirs: Vec<String>, stat_cache: PathBuf) -> PendingScan {
        let skipped = skip_dirs.clone();
        let thread = std::thread::spawn(move || {
            let mut scanned = snapshot::Snapshot::scan(&root, &skipped)?;
            scanned.prime(&stat_cache);
            Ok(scanned)
        });
        PendingScan {
            thread: Mutex::new(Some(thread)),
            skip_dirs,
        }
    }

    #[staticmethod]
    #[pyo3(signature = (root, skip_dirs))]
    fn scan(py: Python<'_>, root: PathBuf, skip_dirs: Vec<String>) -> PyResult<Snapshot> {
        let scanned: CoreResult<snapshot::Snapshot> =
            py.detach(|| Ok(snapshot::Snapshot::scan(&root, &skip_dirs)?));
        Ok(Snapshot {
            inner: RwLock::new(scanned?),
            skip_dirs,
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
            Ok(FileSet {
                indices,
                selection: (package.to_owned(), include, exclude),
            })
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
                .zip(requests)
                .map(|(indices, selection)| FileSet { indices, selection })
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

    /// Why `hash` could not write the stat cache (a full disk), if it could not.
    #[getter]
    fn stat_cache_unsaved(&self, py: Python<'_>) -> PyResult<Option<String>> {
        py.detach(|| {
            Ok(self
                .read()?
                .stat_cache_unsaved
                .as_ref()
                .map(ToString::to_string))
        })
    }

    /// Fill the digests the stat cache vouches for, reading no file (see `Snapshot::prime`).
    fn prime(&self, py: Python<'_>, stat_cache: PathBuf) -> PyResult<()> {
        py.detach(|| {
            self.write()?.prime(&stat_cache);
            Ok(())
        })
    }

    /// Every file's path, executable bit and digest (where known) in one digest (hex): equal
    /// trees select the same files with the same contents (see `Snapshot::tree_digest`).
    fn tree_digest(&self, py: Python<'_>) -> PyResult<String> {
        py.detach(|| Ok(self.read()?.tree_digest().to_hex()))
    }

    /// Paths of the inputs `set` gained, lost, or saw edited or replaced since the scan (its
    /// globs matched again over a new walk of its package folder).
    fn changed_since_scan(&self, py: Python<'_>, set: &FileSet) -> PyResult<Vec<String>> {
        py.detach(|| {
            let (package, include, exclude) = &set.selection;
            let changed = self
                .read()?
                .changed_since_scan(&set.indices, package, include, exclude, &self.skip_dirs)
                .map_err(CoreError)?;
            Ok(changed)
        })
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
///
/// Actions whose dependencies are all keyed are keyed in parallel, a level of the graph at a
/// time; each key is hashed from the snapshot's paths and digests as they are (`key_of`).
#[pyfunction]
pub fn action_keys(
    py: Python<'_>,
    snapshot: &Snapshot,
    requests: Vec<KeyRequest>,
) -> PyResult<Vec<String>> {
    py.detach(|| {
        let inner = snapshot.read()?;
        let levels = levels(&requests)?;
        let mut keys: Vec<Option<String>> = vec![None; requests.len()];
        for level in levels {
            let keyed = level
                .par_iter()
                .map(|&(index, ref deps)| {
                    let (inputs, label, cmd, cwd, platform, env, tools, _, outputs) =
                        &requests[index];
                    let mut deps: Vec<(String, String)> = deps
                        .iter()
                        .map(|&dep| {
                            let key = keys[dep].clone().unwrap_or_default();
                            (requests[dep].1.clone(), key)
                        })
                        .collect();
                    deps.sort();
                    let (mut env, mut tools) = (env.clone(), tools.clone());
                    env.sort();
                    tools.sort();
                    // `Py::get` on a frozen class needs no GIL.
                    let files = inner.inputs(&inputs.get().indices).map_err(CoreError)?;
                    let head = KeyHead {
                        label,
                        cmd,
                        cwd,
                        platform,
                        env: &env,
                        tools: &tools,
                    };
                    let key = key_of(
                        &head,
                        files.len(),
                        files
                            .iter()
                            .map(|(path, digest, executable)| (*path, digest, *executable)),
                        &deps,
                        outputs,
                    );
                    Ok((index, key.to_hex()))
                })
                .collect::<PyResult<Vec<_>>>()?;
            for (index, key) in keyed {
                keys[index] = Some(key);
            }
        }
        Ok(keys.into_iter().map(Option::unwrap_or_default).collect())
    })
}

/// Requests of one depth in the dependency graph: (position, positions of its dependencies).
type Level = Vec<(usize, Vec<usize>)>;

/// The requests grouped by depth in the dependency graph: every dependency of a request is in
/// an earlier group.
fn levels(requests: &[KeyRequest]) -> PyResult<Vec<Level>> {
    let mut position: HashMap<&str, usize> = HashMap::with_capacity(requests.len());
    let mut depth: Vec<usize> = Vec::with_capacity(requests.len());
    let mut levels: Vec<Level> = Vec::new();
    for (index, request) in requests.iter().enumerate() {
        let (label, dep_labels) = (&request.1, &request.7);
        let deps = dep_labels
            .iter()
            .map(|dep| {
                position.get(dep.as_str()).copied().ok_or_else(|| {
                    PyValueError::new_err(format!(
                        "{label} depends on {dep}, which is not earlier in the batch"
                    ))
                })
            })
            .collect::<PyResult<Vec<usize>>>()?;
        let level = deps.iter().map(|&dep| depth[dep] + 1).max().unwrap_or(0);
        depth.push(level);
        if levels.len() <= level {
            levels.resize_with(level + 1, Vec::new);
        }
        levels[level].push((index, deps));
        position.insert(label.as_str(), index);
    }
    Ok(levels)
}
