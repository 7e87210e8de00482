//! The run's one walk of the workspace, rule input sets, and action keys.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Mutex, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::thread::JoinHandle;

use once_core::key;
use once_core::snapshot;
use pyo3::exceptions::PyRuntimeError;
use pyo3::prelude::*;

use crate::errors::{CoreError, CoreResult};
use crate::store::Store;

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
    #[pyo3(signature = (root, skip_dirs, stat_cache, tracked_cache=None))]
    fn start_scan(
        root: PathBuf,
        skip_dirs: Vec<String>,
        stat_cache: PathBuf,
        tracked_cache: Option<PathBuf>,
    ) -> PendingScan {
        let skipped = skip_dirs.clone();
        let thread = std::thread::spawn(move || {
            let mut scanned =
                snapshot::Snapshot::scan_tracked(&root, &skipped, tracked_cache.as_deref())?;
            scanned.prime(&stat_cache);
            Ok(scanned)
        });
        PendingScan {
            thread: Mutex::new(Some(thread)),
            skip_dirs,
        }
    }

    /// The walk; what it learns of git's index is kept in `tracked_cache`, when given.
    #[staticmethod]
    #[pyo3(signature = (root, skip_dirs, tracked_cache=None))]
    fn scan(
        py: Python<'_>,
        root: PathBuf,
        skip_dirs: Vec<String>,
        tracked_cache: Option<PathBuf>,
    ) -> PyResult<Snapshot> {
        let scanned: CoreResult<snapshot::Snapshot> = py.detach(|| {
            Ok(snapshot::Snapshot::scan_tracked(
                &root,
                &skip_dirs,
                tracked_cache.as_deref(),
            )?)
        });
        Ok(Snapshot {
            inner: RwLock::new(scanned?),
            skip_dirs,
        })
    }

    /// The followed links to folders inside the workspace, as (link, target) paths below it.
    fn folder_links(&self, py: Python<'_>) -> PyResult<Vec<(String, String)>> {
        py.detach(|| {
            Ok(self
                .read()?
                .links
                .iter()
                .filter_map(|link| Some((link.link.clone(), link.target_rel.clone()?)))
                .collect())
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

    /// The workspace-relative paths of `set`, in order (no digest needed).
    fn paths(&self, py: Python<'_>, set: &FileSet) -> PyResult<Vec<String>> {
        py.detach(|| {
            let inner = self.read()?;
            let paths = inner.paths(&set.indices).map_err(CoreError)?;
            Ok(paths.into_iter().map(str::to_owned).collect())
        })
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

/// One step to key (`once_core::key::KeyRequest`), made once in Python and read by Rust
/// without converting it again.
#[pyclass(frozen, module = "once._core")]
pub struct KeyRequest {
    #[pyo3(get)]
    inputs: Py<FileSet>,
    #[pyo3(get)]
    label: String,
    #[pyo3(get)]
    cmd: String,
    #[pyo3(get)]
    cwd: String,
    #[pyo3(get)]
    platform: String,
    #[pyo3(get)]
    env_mode: String,
    #[pyo3(get)]
    env: Vec<(String, String)>,
    #[pyo3(get)]
    tools: Vec<(String, String)>,
    #[pyo3(get)]
    deps: Vec<String>,
    #[pyo3(get)]
    outputs: Vec<String>,
    #[pyo3(get)]
    cutoff: bool,
}

#[pymethods]
impl KeyRequest {
    #[new]
    #[pyo3(signature = (*, inputs, label, cmd, cwd, platform, env_mode, env, tools, deps, outputs, cutoff))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        inputs: Py<FileSet>,
        label: String,
        cmd: String,
        cwd: String,
        platform: String,
        env_mode: String,
        env: Vec<(String, String)>,
        tools: Vec<(String, String)>,
        deps: Vec<String>,
        outputs: Vec<String>,
        cutoff: bool,
    ) -> KeyRequest {
        KeyRequest {
            inputs,
            label,
            cmd,
            cwd,
            platform,
            env_mode,
            env,
            tools,
            deps,
            outputs,
            cutoff,
        }
    }
}

impl KeyRequest {
    /// The core's view, borrowing the file set (`Py::get` on a frozen class needs no GIL).
    fn core(&self) -> key::KeyRequest<'_> {
        key::KeyRequest {
            inputs: &self.inputs.get().indices,
            label: self.label.clone(),
            cmd: self.cmd.clone(),
            cwd: self.cwd.clone(),
            platform: self.platform.clone(),
            env_mode: self.env_mode.clone(),
            env: self.env.clone(),
            tools: self.tools.clone(),
            deps: self.deps.clone(),
            outputs: self.outputs.clone(),
            cutoff: self.cutoff,
        }
    }
}

/// The key and result of many steps, given in dependency order, in one call
/// (`key::batch_keys`). A step with `cutoff` gives its dependents the digest of the outputs
/// `store` has under its key (its result); a key is None when it waits on a dependency whose
/// result is unknown (not in `store`, or no store).
#[pyfunction]
#[pyo3(signature = (snapshot, requests, store = None))]
pub fn action_keys(
    py: Python<'_>,
    snapshot: &Snapshot,
    requests: Vec<Py<KeyRequest>>,
    store: Option<&Store>,
) -> PyResult<Vec<(Option<String>, Option<String>)>> {
    py.detach(|| {
        let requests: Vec<key::KeyRequest<'_>> = requests
            .iter()
            .map(|request| request.get().core())
            .collect();
        let inner = snapshot.read()?;
        let store = store.map(|store| &store.inner);
        let keyed = key::batch_keys(&inner, &requests, |_, key| {
            Some(store?.lookup(&key.to_hex())?.result())
        })
        .map_err(CoreError)?;
        Ok(keyed
            .keys
            .iter()
            .map(|key| key.map(|key| key.to_hex()))
            .zip(keyed.results)
            .collect())
    })
}

/// The key of one step given its dependencies' (label, result), and the result it gives its
/// dependents when its outputs are not compared: for a step keyed after its dependencies ran
/// (`key::request_key`).
#[pyfunction]
pub fn action_key(
    py: Python<'_>,
    snapshot: &Snapshot,
    request: &KeyRequest,
    mut deps: Vec<(String, String)>,
) -> PyResult<(String, String)> {
    py.detach(|| {
        deps.sort();
        let inner = snapshot.read()?;
        let key = key::request_key(&inner, &request.core(), &deps).map_err(CoreError)?;
        Ok((key.to_hex(), key::key_result(&key)))
    })
}

/// Everything that went into the key of `request` as JSON, given its dependencies' (label,
/// result) and, for `once why`, the outputs (path, digest) of those keyed by their outputs:
/// kept for `once why` and `--dry-run --json` (`key::spec_of`).
#[pyfunction]
#[pyo3(signature = (snapshot, request, deps, dep_outputs = None))]
pub fn action_spec(
    py: Python<'_>,
    snapshot: &Snapshot,
    request: &KeyRequest,
    deps: Vec<(String, String)>,
    dep_outputs: Option<BTreeMap<String, Vec<(String, String)>>>,
) -> PyResult<String> {
    py.detach(|| {
        let inner = snapshot.read()?;
        let spec = key::spec_of(
            &inner,
            &request.core(),
            deps,
            dep_outputs.unwrap_or_default(),
        )
        .map_err(CoreError)?;
        // Serializing plain strings, bools and digests cannot fail.
        Ok(serde_json::to_string(&spec).unwrap_or_default())
    })
}

/// The racy-timestamp rule (`statcache::settled`) for stamps kept in Python.
#[pyfunction]
pub fn settled(mtime_ns: i64, ctime_ns: i64, started_ns: i64) -> bool {
    once_core::statcache::settled(mtime_ns, ctime_ns, started_ns)
}
