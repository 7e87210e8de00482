//! The remote cache: a blocking facade over `once_remote`, every call made with the GIL
//! released (transfers run on the core's own tokio runtime, never touching Python objects).

use std::time::Duration;

use once_remote::{self as remote, FetchOutcome, RemoteConfig, RemoteStats};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::PyDict;

use crate::store::Store;

#[pyclass(frozen, module = "once._core")]
pub struct Remote {
    inner: remote::Remote,
}

#[pymethods]
impl Remote {
    #[new]
    #[pyo3(signature = (
        url, *, read_only = false, token = None, signing_key = None, endpoint = None,
        region = None, timeout = 10.0, retries = 2, concurrency = 16
    ))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        url: &str,
        read_only: bool,
        token: Option<String>,
        signing_key: Option<String>,
        endpoint: Option<String>,
        region: Option<String>,
        timeout: f64,
        retries: u32,
        concurrency: usize,
    ) -> PyResult<Remote> {
        // `Duration::from_secs_f64` panics on a value past its range (1e300); the front checks
        // the range too, but a panic must not be one bad argument away.
        let timeout = Duration::try_from_secs_f64(timeout)
            .ok()
            .filter(|timeout| !timeout.is_zero())
            .ok_or_else(|| PyValueError::new_err("timeout must be a positive number of seconds"))?;
        let config = RemoteConfig {
            read_only,
            bearer_token: token,
            signing_key,
            s3_endpoint: endpoint,
            s3_region: region,
            timeout,
            retries,
            concurrency,
            ..RemoteConfig::new(url)
        };
        let inner = py
            .detach(|| remote::Remote::new(&config))
            .map_err(|err| PyValueError::new_err(err.to_string()))?;
        Ok(Remote { inner })
    }

    /// Why the remote switched itself off for this run, or None while it is on.
    #[getter]
    fn off_reason(&self) -> Option<String> {
        self.inner.off_reason()
    }

    /// Start fetching these keys in the background; `fetch` joins each.
    fn prefetch(&self, py: Python<'_>, store: &Store, keys: Vec<String>) {
        py.detach(|| self.inner.prefetch(&store.inner, keys));
    }

    /// (outcome, detail): "hit" (the entry and its blobs are now in `store`), "miss",
    /// "unsigned", "bad-signature", "corrupt" (detail: how many blobs), "invalid" (detail:
    /// why) or "off".
    fn fetch(&self, py: Python<'_>, store: &Store, key: &str) -> (String, String) {
        let outcome = py.detach(|| self.inner.fetch(&store.inner, key));
        let detail = match &outcome {
            FetchOutcome::Corrupt(count) => count.to_string(),
            FetchOutcome::Invalid(why) => why.clone(),
            _ => String::new(),
        };
        (outcome.to_string(), detail)
    }

    /// Upload the local entry for `key` and its missing blobs in the background.
    fn push(&self, py: Python<'_>, store: &Store, key: &str) {
        py.detach(|| self.inner.push(&store.inner, key));
    }

    /// Wait for every upload; the run's transfer counters.
    fn finish<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let stats: RemoteStats = py.detach(|| self.inner.finish());
        let dict = PyDict::new(py);
        dict.set_item("entries_downloaded", stats.entries_downloaded)?;
        dict.set_item("blobs_downloaded", stats.blobs_downloaded)?;
        dict.set_item("bytes_downloaded", stats.bytes_downloaded)?;
        dict.set_item("corrupt_blobs", stats.corrupt_blobs)?;
        dict.set_item("entries_uploaded", stats.entries_uploaded)?;
        dict.set_item("blobs_uploaded", stats.blobs_uploaded)?;
        dict.set_item("bytes_uploaded", stats.bytes_uploaded)?;
        dict.set_item("blobs_present", stats.blobs_present)?;
        Ok(dict)
    }
}
