//! The local content-addressed store: lookup, save, compare and restore outputs, and its
//! upkeep (usage, size-bounded eviction, clear, verify).

use std::borrow::Cow;
use std::collections::HashSet;
use std::path::PathBuf;

use once_core::evict::{GcOptions, GcReport, Usage, VerifyReport};
use once_core::outputstats;
use once_core::store::{self, ActionEntry, Hit, HitReport, LinkMode, Settled};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict};

use crate::errors::{CoreError, CoreResult};

#[pyclass(frozen, module = "once._core")]
pub struct Store {
    pub(crate) inner: store::Store,
}

/// A cached action: its outputs' manifest, log and exit status.
#[pyclass(frozen, module = "once._core")]
pub struct Entry {
    inner: ActionEntry,
}

/// Stats and digests of output files as last checked (`.once/outputs`), so that a hit whose
/// outputs are in place is confirmed without reading them. Shared by the run's threads: the
/// core locks per lookup, and only ever with the GIL released (inside `py.detach`).
#[pyclass(frozen, module = "once._core")]
pub struct OutputStats {
    inner: outputstats::OutputStats,
}

#[pymethods]
impl OutputStats {
    #[new]
    fn new(py: Python<'_>, path: PathBuf) -> OutputStats {
        OutputStats {
            inner: py.detach(|| outputstats::OutputStats::load(&path)),
        }
    }

    /// Write the records if any changed since loading.
    fn save(&self, py: Python<'_>) -> PyResult<()> {
        let saved: CoreResult<()> = py.detach(|| Ok(self.inner.save()?));
        Ok(saved?)
    }
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

    /// `lookup` of every key at once, in parallel.
    fn lookup_many(&self, py: Python<'_>, keys: Vec<String>) -> Vec<Option<Entry>> {
        py.detach(|| self.inner.lookup_many(&keys))
            .into_iter()
            .map(|found| found.map(|inner| Entry { inner }))
            .collect()
    }

    /// Settle many hits in one call (see the stub): per hit, its state, the message of a
    /// refusal or failure, its log when `read_logs`, and its seconds.
    #[pyo3(signature = (workspace, hits, link = "copy", known = None, read_logs = false))]
    fn settle_hits(
        &self,
        py: Python<'_>,
        workspace: PathBuf,
        hits: Vec<(Bound<'_, Entry>, String, Vec<String>, u32)>,
        link: &str,
        known: Option<&OutputStats>,
        read_logs: bool,
    ) -> PyResult<Vec<SettledHit>> {
        let link: LinkMode = link.parse().map_err(PyValueError::new_err)?;
        // Borrowed from the frozen entries, which `hits` keeps alive for the whole call.
        let requests: Vec<Hit<'_>> = hits
            .iter()
            .map(|(entry, package, outputs, wave)| Hit {
                entry: &entry.get().inner,
                package,
                outputs,
                wave: *wave,
            })
            .collect();
        let reports = py.detach(|| {
            self.inner.settle_hits(
                &workspace,
                &requests,
                link,
                known.map(|known| &known.inner),
                read_logs,
            )
        });
        Ok(reports
            .into_iter()
            .map(|report| SettledHit::new(py, report))
            .collect())
    }

    #[pyo3(signature = (key, workspace, package, outputs, log, exit_code, duration_ms, deferred = false))]
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
        deferred: bool,
    ) -> PyResult<Entry> {
        let saved: CoreResult<ActionEntry> = py.detach(|| {
            let save = if deferred {
                store::Store::save_deferred
            } else {
                store::Store::save
            };
            Ok(save(
                &self.inner,
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

    /// Wait for every deferred save; the first failure among them is raised (the others were
    /// for the same store, and fail alike).
    fn finish_saves(&self, py: Python<'_>) -> PyResult<()> {
        let failures = py.detach(|| self.inner.finish_saves());
        match failures.into_iter().next() {
            Some(err) => Err(CoreError(err).into()),
            None => Ok(()),
        }
    }

    #[pyo3(signature = (entry, workspace, package, outputs, known = None))]
    fn outputs_match(
        &self,
        py: Python<'_>,
        entry: &Entry,
        workspace: PathBuf,
        package: &str,
        outputs: Vec<String>,
        known: Option<&OutputStats>,
    ) -> PyResult<bool> {
        let matched: CoreResult<bool> = py.detach(|| {
            Ok(self.inner.outputs_match(
                &workspace,
                package,
                &outputs,
                &entry.inner,
                known.map(|known| &known.inner),
            )?)
        });
        Ok(matched?)
    }

    #[pyo3(signature = (entry, workspace, package, outputs, link = "copy"))]
    fn restore(
        &self,
        py: Python<'_>,
        entry: &Entry,
        workspace: PathBuf,
        package: &str,
        outputs: Vec<String>,
        link: &str,
    ) -> PyResult<()> {
        let link: LinkMode = link.parse().map_err(PyValueError::new_err)?;
        let restored: CoreResult<()> = py.detach(|| {
            Ok(self
                .inner
                .restore_with(&workspace, package, &outputs, &entry.inner, link)?)
        });
        Ok(restored?)
    }

    fn unshare_outputs(
        &self,
        py: Python<'_>,
        workspace: PathBuf,
        package: &str,
        outputs: Vec<String>,
    ) -> PyResult<usize> {
        let unshared: CoreResult<usize> =
            py.detach(|| Ok(self.inner.unshare_outputs(&workspace, package, &outputs)?));
        Ok(unshared?)
    }

    /// Mark the entry for `key` as used now, for least-recently-used eviction.
    fn touch(&self, py: Python<'_>, key: &str) -> bool {
        py.detach(|| self.inner.touch(key))
    }

    fn usage<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let usage: CoreResult<Usage> = py.detach(|| Ok(self.inner.usage()?));
        usage_dict(py, &usage?)
    }

    #[pyo3(signature = (max_bytes, protected_keys, *, wait = true, sweep = false, count_later = false))]
    fn gc<'py>(
        &self,
        py: Python<'py>,
        max_bytes: u64,
        protected_keys: Vec<String>,
        wait: bool,
        sweep: bool,
        count_later: bool,
    ) -> PyResult<Bound<'py, PyDict>> {
        let protected: HashSet<String> = protected_keys.into_iter().collect();
        let report: CoreResult<GcReport> = py.detach(|| {
            Ok(self.inner.gc(&GcOptions {
                max_bytes,
                protected: &protected,
                wait,
                sweep,
                count_later,
            })?)
        });
        let report = report?;
        let dict = PyDict::new(py);
        dict.set_item("busy", report.busy)?;
        dict.set_item("evicted_entries", report.evicted_entries)?;
        dict.set_item("removed_blobs", report.removed_blobs)?;
        dict.set_item("removed_temps", report.removed_temps)?;
        dict.set_item("freed_bytes", report.freed_bytes)?;
        dict.set_item("bytes_before", report.bytes_before)?;
        dict.set_item("bytes_after", report.bytes_after)?;
        dict.set_item("count_due", report.count_due)?;
        Ok(dict)
    }

    fn clear<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let removed: CoreResult<Usage> = py.detach(|| Ok(self.inner.clear()?));
        usage_dict(py, &removed?)
    }

    fn verify<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let report: CoreResult<VerifyReport> = py.detach(|| Ok(self.inner.verify()?));
        let report = report?;
        let dict = PyDict::new(py);
        dict.set_item("blobs", report.blobs)?;
        dict.set_item("blob_bytes", report.blob_bytes)?;
        dict.set_item("corrupt_blobs", report.corrupt_blobs)?;
        dict.set_item("entries", report.entries)?;
        dict.set_item("removed_entries", report.removed_entries)?;
        Ok(dict)
    }

    /// The JSON of an entry file's bytes `data` filed under `key`, if its tag holds.
    #[staticmethod]
    fn entry_json(key: &str, data: &[u8]) -> Option<Cow<'static, [u8]>> {
        store::entry_json(key, data).map(|json| Cow::Owned(json.to_vec()))
    }

    /// The bytes of the entry file for `key` whose JSON is `json`, tag included.
    #[staticmethod]
    fn seal_entry(key: &str, json: &[u8]) -> Cow<'static, [u8]> {
        Cow::Owned(store::encode_entry(key, json))
    }

    fn read_log(&self, py: Python<'_>, entry: &Entry) -> PyResult<Cow<'static, [u8]>> {
        let bytes: CoreResult<Vec<u8>> = py.detach(|| Ok(self.inner.read_log(&entry.inner)?));
        Ok(Cow::Owned(bytes?))
    }
}

/// One settled hit as Python sees it: (state, message, log, seconds).
/// How `Store.settle_hits` settled one hit.
#[pyclass(frozen, eq, eq_int, skip_from_py_object, module = "once._core")]
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum SettleState {
    /// The outputs were in place.
    Cached,
    /// The outputs were put back.
    Restored,
    /// Restoring would leave the declared outputs: nothing was touched (a miss).
    Refused,
    /// A blob disappeared since the lookup, or no longer held its name (a miss).
    Gone,
    /// Another error (a miss).
    Failed,
}

/// One hit settled by `Store.settle_hits`.
#[pyclass(frozen, module = "once._core")]
pub struct SettledHit {
    #[pyo3(get)]
    state: SettleState,
    /// Why, for `Refused` and `Failed`.
    #[pyo3(get)]
    message: Option<String>,
    /// The replayed log, when asked for.
    #[pyo3(get)]
    log: Option<Py<PyBytes>>,
    #[pyo3(get)]
    seconds: f64,
}

impl SettledHit {
    fn new(py: Python<'_>, report: HitReport) -> SettledHit {
        let (state, message) = match report.settled {
            Settled::Cached => (SettleState::Cached, None),
            Settled::Restored => (SettleState::Restored, None),
            Settled::Refused(message) => (SettleState::Refused, Some(message)),
            Settled::Gone => (SettleState::Gone, None),
            Settled::Failed(err) => (SettleState::Failed, Some(err.to_string())),
        };
        SettledHit {
            state,
            message,
            log: report.log.map(|log| PyBytes::new(py, &log).unbind()),
            seconds: report.seconds,
        }
    }
}

/// Plain dicts rather than more classes: they go straight into `--json` output, and the stub
/// types them as `TypedDict`s.
fn usage_dict<'py>(py: Python<'py>, usage: &Usage) -> PyResult<Bound<'py, PyDict>> {
    let dict = PyDict::new(py);
    dict.set_item("entries", usage.entries)?;
    dict.set_item("entry_bytes", usage.entry_bytes)?;
    dict.set_item("blobs", usage.blobs)?;
    dict.set_item("blob_bytes", usage.blob_bytes)?;
    dict.set_item("temp_files", usage.temp_files)?;
    dict.set_item("temp_bytes", usage.temp_bytes)?;
    dict.set_item("bytes", usage.total_bytes())?;
    Ok(dict)
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
    /// What this entry gives its dependents' keys (`ActionEntry::result`).
    #[getter]
    fn result(&self) -> String {
        self.inner.result()
    }
    /// Each output as (path, digest, or `folder`, or `-> TARGET`), in path order.
    fn listing(&self) -> Vec<(String, String)> {
        self.inner.listing()
    }
}
