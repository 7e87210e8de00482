//! The remote cache: the local store's blobs and entries, shared through a server people
//! already run (HTTP/WebDAV, S3-compatible object storage, Redis).
//!
//! Async inside (one small tokio runtime), blocking outside: every public method is called
//! from Python with the GIL released and returns when its work is done, except `push` and
//! `prefetch`, which start background tasks that `finish` and `fetch` wait for. A remote never
//! fails a build: an error that came quickly is retried a few times, a server silent for a
//! whole timeout is not asked again, and then the remote switches itself off for the rest of
//! the run (stopping every transfer still in flight) and remembers why, once.

mod backend;

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use futures::{stream, StreamExt, TryStreamExt};
use tokio::runtime::Runtime;
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use once_core::hash::Digest;
use once_core::store::envelope;
use once_core::store::{self, ActionEntry, Store};

use backend::{Backend, ByteStream};
pub use envelope::Signer;

/// How `Remote::new` is configured; built by the bindings from `once.toml` and the environment.
#[derive(Clone, Debug)]
pub struct RemoteConfig {
    /// `http(s)://host/base`, `s3://bucket/prefix` or `redis://host:port/db`.
    pub url: String,
    /// Download only; never write to the server (pull-request builds).
    pub read_only: bool,
    /// `Authorization: Bearer` for HTTP.
    pub bearer_token: Option<String>,
    /// The S3 endpoint of a non-AWS server (else `AWS_ENDPOINT_URL`, else AWS itself).
    pub s3_endpoint: Option<String>,
    pub s3_region: Option<String>,
    /// The limit on each wait for an answer: a request's, and the next chunk's of a download.
    pub timeout: Duration,
    /// Further attempts after a failed one, before the remote is switched off.
    pub retries: u32,
    /// With a key, entries are written signed and read only when their signature holds.
    pub signing_key: Option<String>,
    /// Blob transfers in flight at once, over every entry.
    pub concurrency: usize,
}

impl RemoteConfig {
    #[must_use]
    pub fn new(url: &str) -> RemoteConfig {
        RemoteConfig {
            url: url.to_owned(),
            read_only: false,
            bearer_token: None,
            s3_endpoint: None,
            s3_region: None,
            timeout: Duration::from_secs(10),
            retries: 2,
            signing_key: None,
            concurrency: 16,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RemoteError {
    #[error("unsupported remote URL {0:?}: use http(s)://, s3:// or redis://")]
    BadUrl(String),
    #[error("{0}")]
    Config(String),
    #[error("HTTP {status} from {what}")]
    Status { status: u16, what: String },
    #[error("access denied ({0})")]
    Denied(String),
    #[error("{0}")]
    Transport(String),
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    #[error("{what} is larger than {limit} bytes")]
    Oversized { what: String, limit: usize },
    #[error("{0}")]
    Local(#[from] once_core::Error),
    #[error("the remote cache is off for this run")]
    Off,
}

impl RemoteError {
    /// Worth another attempt: the server may answer next time. A refusal will not change.
    fn transient(&self) -> bool {
        matches!(
            self,
            RemoteError::Status { .. } | RemoteError::Transport(_) | RemoteError::Timeout(_)
        )
    }
}

/// What `fetch` found for one key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FetchOutcome {
    /// Entry and blobs are now in the local store.
    Hit,
    /// The server has no (complete) entry.
    Miss,
    /// Signing is on and the entry carries no signature: ignored.
    Unsigned,
    /// Signing is on and the signature does not hold: ignored.
    BadSignature,
    /// Blobs whose bytes did not match their digest, discarded; the entry is not used.
    Corrupt(usize),
    /// The entry does not decode, names another key, or holds a path restore would refuse.
    Invalid(String),
    /// The remote is (or just went) off.
    Off,
}

impl fmt::Display for FetchOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            FetchOutcome::Hit => "hit",
            FetchOutcome::Miss => "miss",
            FetchOutcome::Unsigned => "unsigned",
            FetchOutcome::BadSignature => "bad-signature",
            FetchOutcome::Corrupt(_) => "corrupt",
            FetchOutcome::Invalid(_) => "invalid",
            FetchOutcome::Off => "off",
        })
    }
}

/// Counters over the whole run, read by `finish`.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct RemoteStats {
    pub entries_downloaded: u64,
    pub blobs_downloaded: u64,
    pub bytes_downloaded: u64,
    pub corrupt_blobs: u64,
    pub entries_uploaded: u64,
    pub blobs_uploaded: u64,
    pub bytes_uploaded: u64,
    /// Blobs a HEAD found already on the server, so not sent again.
    pub blobs_present: u64,
}

#[derive(Default)]
struct Counters {
    entries_downloaded: AtomicU64,
    blobs_downloaded: AtomicU64,
    bytes_downloaded: AtomicU64,
    corrupt_blobs: AtomicU64,
    entries_uploaded: AtomicU64,
    blobs_uploaded: AtomicU64,
    bytes_uploaded: AtomicU64,
    blobs_present: AtomicU64,
}

fn add(counter: &AtomicU64, n: u64) {
    counter.fetch_add(n, Ordering::Relaxed);
}

/// State shared by the facade and its background tasks.
struct Shared {
    backend: Box<dyn Backend>,
    read_only: bool,
    timeout: Duration,
    retries: u32,
    signer: Option<Signer>,
    concurrency: usize,
    /// Bounds blob transfers (and so memory: each holds at most one chunk) over all entries.
    transfers: Semaphore,
    /// Set once, by the first failure that switches the remote off; never cleared.
    off: OnceLock<String>,
    /// Cancelled with `off`: what is still waiting on the server stops at once, rather than
    /// each transfer in flight waiting out a timeout of its own.
    switched_off: CancellationToken,
    counters: Counters,
}

/// Entry fetches a prefetch keeps in flight: each is one small GET before any blob moves, so
/// round trips, not bandwidth, bound them.
const PREFETCH_CONCURRENCY: usize = 32;
/// First pause before a retry; each later pause is four times longer (100 ms, 400 ms, ...).
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
/// The most an entry may take, downloaded: an entry lists a step's outputs at ~150 bytes
/// each, so this holds a step of some 400,000 output files, while a server sending an endless
/// body is cut off after a fraction of a second on a fast link instead of filling memory.
const ENTRY_MAX_BYTES: usize = 64 << 20;
/// Upload deadlines, and how long an entry may take to arrive, grow with size at this pace, so
/// a big blob on a slow link is not cut off by the timeout meant for small requests.
const SLOWEST_UPLOAD_BYTES_PER_SEC: u64 = 1 << 20;

pub struct Remote {
    runtime: Runtime,
    shared: Arc<Shared>,
    prefetches: Mutex<HashMap<String, JoinHandle<FetchOutcome>>>,
    pushes: Mutex<Vec<JoinHandle<()>>>,
    prefetch_slots: Arc<Semaphore>,
}

impl Remote {
    /// Parse the URL and build the client; no connection is made yet, so a server that is down
    /// costs nothing until the first lookup (and then at most one warning).
    pub fn new(config: &RemoteConfig) -> Result<Remote, RemoteError> {
        // Two workers: transfers wait on the network, not the CPU, and the machine's cores
        // belong to the build's own commands and to hashing.
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("once-remote")
            .enable_all()
            .build()
            .map_err(|err| {
                RemoteError::Config(format!("cannot start the remote runtime: {err}"))
            })?;
        let backend = {
            // reqwest and redis want a runtime context when their clients are built.
            let _entered = runtime.enter();
            backend::open(config)?
        };
        let shared = Shared {
            backend,
            read_only: config.read_only,
            timeout: config.timeout,
            retries: config.retries,
            signer: config.signing_key.as_deref().map(Signer::new),
            concurrency: config.concurrency.max(1),
            transfers: Semaphore::new(config.concurrency.max(1)),
            off: OnceLock::new(),
            switched_off: CancellationToken::new(),
            counters: Counters::default(),
        };
        Ok(Remote {
            runtime,
            shared: Arc::new(shared),
            prefetches: Mutex::new(HashMap::new()),
            pushes: Mutex::new(Vec::new()),
            prefetch_slots: Arc::new(Semaphore::new(PREFETCH_CONCURRENCY)),
        })
    }

    /// Why the remote switched itself off, if it did.
    #[must_use]
    pub fn off_reason(&self) -> Option<String> {
        self.shared.off.get().cloned()
    }

    /// Start fetching, in the background, every key the local store lacks, so that by the time
    /// the scheduler reaches a step its entry is usually already here. `fetch` joins them.
    pub fn prefetch(&self, store: &Store, keys: Vec<String>) {
        let mut pending = self
            .prefetches
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        for key in keys {
            if pending.contains_key(&key) {
                continue;
            }
            let shared = Arc::clone(&self.shared);
            let slots = Arc::clone(&self.prefetch_slots);
            let store = store.clone();
            let task_key = key.clone();
            let handle = self.runtime.spawn(async move {
                let Ok(_slot) = slots.acquire_owned().await else {
                    return FetchOutcome::Off;
                };
                if store.lookup(&task_key).is_some() {
                    return FetchOutcome::Hit;
                }
                shared.fetch(&store, &task_key).await
            });
            pending.insert(key, handle);
        }
    }

    /// Download the entry for `key` and every blob it names that the local store lacks,
    /// re-hashing each, then write the entry locally. Joins a prefetch of the same key.
    pub fn fetch(&self, store: &Store, key: &str) -> FetchOutcome {
        let prefetched = self
            .prefetches
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(key);
        match prefetched {
            Some(handle) => self.runtime.block_on(handle).unwrap_or(FetchOutcome::Off),
            None => self.runtime.block_on(self.shared.fetch(store, key)),
        }
    }

    /// Upload, in the background, the blobs of the local entry for `key` that the server lacks
    /// (HEAD first), then the entry. Nothing in read-only mode. `finish` waits for it.
    pub fn push(&self, store: &Store, key: &str) {
        if self.shared.read_only {
            return;
        }
        let shared = Arc::clone(&self.shared);
        let store = store.clone();
        let key = key.to_owned();
        let handle = self.runtime.spawn(async move {
            // Errors are already recorded (the remote is off); nothing else to report per key.
            let _ = shared.push(&store, &key).await;
        });
        self.pushes
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(handle);
    }

    /// Wait for every upload, drop prefetches nobody asked for, and report the run's counters.
    pub fn finish(&self) -> RemoteStats {
        let pushes: Vec<JoinHandle<()>> = std::mem::take(
            &mut *self
                .pushes
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        );
        self.runtime.block_on(async {
            for handle in pushes {
                let _ = handle.await;
            }
        });
        for (_, handle) in self
            .prefetches
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .drain()
        {
            handle.abort();
        }
        self.shared.stats()
    }
}

impl Shared {
    fn stats(&self) -> RemoteStats {
        let c = &self.counters;
        let get = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        RemoteStats {
            entries_downloaded: get(&c.entries_downloaded),
            blobs_downloaded: get(&c.blobs_downloaded),
            bytes_downloaded: get(&c.bytes_downloaded),
            corrupt_blobs: get(&c.corrupt_blobs),
            entries_uploaded: get(&c.entries_uploaded),
            blobs_uploaded: get(&c.blobs_uploaded),
            bytes_uploaded: get(&c.bytes_uploaded),
            blobs_present: get(&c.blobs_present),
        }
    }

    fn switch_off(&self, why: String) {
        let _ = self.off.set(why);
        self.switched_off.cancel();
    }

    fn is_off(&self) -> bool {
        self.off.get().is_some()
    }

    /// Run `op` (within `deadline`, when given), retrying an error that came quickly with
    /// growing pauses; on final failure the remote goes off for the rest of the run.
    ///
    /// A dead server costs about one timeout, however many retries are allowed: one that let
    /// a whole timeout pass without answering is not asked again, and the pauses between quick
    /// failures end within one timeout of the first try.
    async fn attempt<T, F, Fut>(
        &self,
        what: &str,
        deadline: Option<Duration>,
        mut op: F,
    ) -> Result<T, RemoteError>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T, RemoteError>>,
    {
        let started = Instant::now();
        let mut pause = FIRST_BACKOFF;
        let mut tries = 0;
        loop {
            if self.is_off() {
                return Err(RemoteError::Off);
            }
            let timed = async {
                match deadline {
                    Some(deadline) => tokio::time::timeout(deadline, op())
                        .await
                        .unwrap_or(Err(RemoteError::Timeout(deadline))),
                    None => op().await,
                }
            };
            let error = match self.switched_off.run_until_cancelled(timed).await {
                Some(Ok(value)) => return Ok(value),
                Some(Err(err)) => err,
                None => return Err(RemoteError::Off),
            };
            if matches!(error, RemoteError::Off) {
                return Err(error);
            }
            let retry = error.transient()
                && !matches!(error, RemoteError::Timeout(_))
                && tries < self.retries
                && started.elapsed() + pause < self.timeout;
            if !retry {
                // The local store's trouble, or one entry too large, says nothing of the server.
                if !matches!(error, RemoteError::Local(_) | RemoteError::Oversized { .. }) {
                    let attempts = tries + 1;
                    let note = if attempts == 1 {
                        String::new()
                    } else {
                        format!(" ({attempts} attempts)")
                    };
                    self.switch_off(format!("{what}: {error}{note}"));
                }
                return Err(error);
            }
            tries += 1;
            tokio::time::sleep(pause).await;
            pause *= 4;
        }
    }

    /// `fut` (a request), failing when the server has not answered within the timeout.
    async fn answer<T>(
        &self,
        fut: impl std::future::Future<Output = Result<T, RemoteError>>,
    ) -> Result<T, RemoteError> {
        tokio::time::timeout(self.timeout, fut)
            .await
            .map_err(|_| RemoteError::Timeout(self.timeout))?
    }

    /// The next chunk of `body`, failing when none came within the timeout: a download is
    /// timed by its pauses, not its length, so a big blob on a slow link still arrives.
    async fn next_chunk(&self, body: &mut ByteStream) -> Result<Option<Bytes>, RemoteError> {
        tokio::time::timeout(self.timeout, body.next())
            .await
            .map_err(|_| RemoteError::Timeout(self.timeout))?
            .transpose()
    }

    /// The entry `name` whole, `None` when absent; an error past `ENTRY_MAX_BYTES`, or when
    /// it comes slower than `SLOWEST_UPLOAD_BYTES_PER_SEC` after the first timeout: a server
    /// trickling a byte now and then would otherwise hold the step for as long as it likes.
    async fn read_entry(&self, name: &str) -> Result<Option<Bytes>, RemoteError> {
        let started = Instant::now();
        let Some(mut body) = self.answer(self.backend.get_stream(name)).await? else {
            return Ok(None);
        };
        let mut entry = BytesMut::new();
        while let Some(chunk) = self.next_chunk(&mut body).await? {
            if entry.len() + chunk.len() > ENTRY_MAX_BYTES {
                return Err(RemoteError::Oversized {
                    what: format!("the entry {name}"),
                    limit: ENTRY_MAX_BYTES,
                });
            }
            entry.extend_from_slice(&chunk);
            let allowed = self.timeout
                + Duration::from_secs(entry.len() as u64 / SLOWEST_UPLOAD_BYTES_PER_SEC);
            if started.elapsed() > allowed {
                return Err(RemoteError::Timeout(allowed));
            }
        }
        Ok(Some(entry.freeze()))
    }

    async fn fetch(&self, store: &Store, key: &str) -> FetchOutcome {
        match self.try_fetch(store, key).await {
            Ok(outcome) => outcome,
            Err(RemoteError::Local(err)) => FetchOutcome::Invalid(err.to_string()),
            Err(err @ RemoteError::Oversized { .. }) => FetchOutcome::Invalid(err.to_string()),
            Err(_) => FetchOutcome::Off,
        }
    }

    async fn try_fetch(&self, store: &Store, key: &str) -> Result<FetchOutcome, RemoteError> {
        let name = entry_name(key);
        let wire = self
            .attempt("reading an entry", None, || self.read_entry(&name))
            .await?;
        let Some(wire) = wire else {
            return Ok(FetchOutcome::Miss);
        };
        let body = match envelope::open(&wire, key, self.signer.as_ref()) {
            Ok(body) => body,
            Err(envelope::Refused::Unsigned) => return Ok(FetchOutcome::Unsigned),
            Err(envelope::Refused::BadSignature) => return Ok(FetchOutcome::BadSignature),
            Err(envelope::Refused::Malformed(why)) => return Ok(FetchOutcome::Invalid(why)),
        };
        let entry: ActionEntry = match serde_json::from_slice(body) {
            Ok(entry) => entry,
            Err(err) => {
                return Ok(FetchOutcome::Invalid(format!(
                    "entry does not decode: {err}"
                )))
            }
        };
        if entry.key != key {
            return Ok(FetchOutcome::Invalid(format!(
                "entry is filed under {key} but names {}",
                entry.key
            )));
        }
        // Refused before a single blob is downloaded for it.
        if let Err(err) = store::check_manifest(&entry.outputs) {
            return Ok(FetchOutcome::Invalid(err.to_string()));
        }
        // From the first blob to the entry, like a local save: a collection in between would
        // delete blobs that no entry names yet.
        let holder = store.clone();
        let _writing = tokio::task::spawn_blocking(move || holder.ingesting())
            .await
            .map_err(|err| RemoteError::Transport(err.to_string()))??;
        let needed: Vec<Digest> = entry_digests(&entry)
            .into_iter()
            .filter(|digest| !store.contains(digest))
            .collect();
        let results: Vec<Download> = stream::iter(needed)
            .map(|digest| self.download_blob(store, digest))
            .buffer_unordered(self.concurrency)
            .try_collect()
            .await?;
        let corrupt = results.iter().filter(|r| **r == Download::Corrupt).count();
        if corrupt > 0 {
            add(&self.counters.corrupt_blobs, corrupt as u64);
            return Ok(FetchOutcome::Corrupt(corrupt));
        }
        if results.contains(&Download::Missing) {
            // The server lost a blob (its own eviction): incomplete, so a miss.
            return Ok(FetchOutcome::Miss);
        }
        let (writer, key, body) = (store.clone(), key.to_owned(), body.to_vec());
        tokio::task::spawn_blocking(move || writer.put_entry(&key, &body))
            .await
            .map_err(|err| RemoteError::Transport(err.to_string()))??;
        add(&self.counters.entries_downloaded, 1);
        Ok(FetchOutcome::Hit)
    }

    /// Stream one blob into a temporary file of the store, hashing as it comes; renamed into
    /// place only when its digest is the one asked for.
    async fn download_blob(&self, store: &Store, digest: Digest) -> Result<Download, RemoteError> {
        let Ok(_permit) = self.transfers.acquire().await else {
            return Err(RemoteError::Off);
        };
        let name = blob_name(&digest);
        // Timed by the wait for an answer and then for each chunk, never as a whole: a large
        // blob is not cut off merely for being large.
        self.attempt("downloading a blob", None, || async {
            let Some(mut body) = self.answer(self.backend.get_stream(&name)).await? else {
                return Ok(Download::Missing);
            };
            // Chunks go to the page cache: written here, not on a blocking thread each.
            let mut blob = store.blob_writer()?;
            while let Some(chunk) = self.next_chunk(&mut body).await? {
                blob.write(&chunk)?;
            }
            let bytes = blob.bytes_written();
            let writer = store.clone();
            let kept = tokio::task::spawn_blocking(move || blob.commit(&writer, &digest))
                .await
                .map_err(|err| RemoteError::Transport(err.to_string()))??;
            if !kept {
                return Ok(Download::Corrupt); // never reached the store
            }
            add(&self.counters.blobs_downloaded, 1);
            add(&self.counters.bytes_downloaded, bytes);
            Ok(Download::Done)
        })
        .await
    }

    async fn push(&self, store: &Store, key: &str) -> Result<(), RemoteError> {
        if self.is_off() {
            return Err(RemoteError::Off);
        }
        // Only a sound entry is shared (none: evicted or never saved); the server keeps the
        // JSON alone, in its own envelope.
        let (reader, owned) = (store.clone(), key.to_owned());
        let Some((entry, body)) =
            tokio::task::spawn_blocking(move || reader.entry_to_share(&owned))
                .await
                .map_err(|err| RemoteError::Transport(err.to_string()))?
        else {
            return Ok(());
        };
        let digests: Vec<Digest> = entry_digests(&entry).into_iter().collect();
        stream::iter(digests)
            .map(|digest| self.upload_blob(store, digest))
            .buffer_unordered(self.concurrency)
            .try_collect::<Vec<()>>()
            .await?;
        // Blobs first, entry last: a reader never finds an entry whose blobs are not there yet.
        let wire = envelope::seal(key, &body, self.signer.as_ref());
        let name = entry_name(key);
        self.attempt("uploading an entry", Some(self.timeout), || {
            self.backend.put_bytes(&name, wire.clone().into())
        })
        .await?;
        add(&self.counters.entries_uploaded, 1);
        Ok(())
    }

    async fn upload_blob(&self, store: &Store, digest: Digest) -> Result<(), RemoteError> {
        let Ok(_permit) = self.transfers.acquire().await else {
            return Err(RemoteError::Off);
        };
        let name = blob_name(&digest);
        let present = self
            .attempt("checking a blob", Some(self.timeout), || {
                self.backend.exists(&name)
            })
            .await?;
        if present {
            add(&self.counters.blobs_present, 1);
            return Ok(());
        }
        let path = store.blob_path(&digest);
        let size = tokio::fs::metadata(&path)
            .await
            .map_err(|err| local_io(&path, err))?
            .len();
        let deadline = self
            .timeout
            .saturating_add(Duration::from_secs(size / SLOWEST_UPLOAD_BYTES_PER_SEC));
        self.attempt("uploading a blob", Some(deadline), || {
            self.backend.put_file(&name, &path, size)
        })
        .await?;
        add(&self.counters.blobs_uploaded, 1);
        add(&self.counters.bytes_uploaded, size);
        Ok(())
    }
}

#[derive(Debug, PartialEq, Eq)]
enum Download {
    Done,
    Missing,
    Corrupt,
}

/// Every blob an entry needs, each once: not those of the outputs it carries itself, which
/// travel in the entry and were checked against their digests as it was decoded.
fn entry_digests(entry: &ActionEntry) -> HashSet<Digest> {
    entry.blobs().copied().collect()
}

/// Server-side names, the layout `bazel-remote` and nginx `WebDAV` setups use.
fn blob_name(digest: &Digest) -> String {
    format!("cas/{}", digest.to_hex())
}

fn entry_name(key: &str) -> String {
    format!("ac/{key}")
}

fn local_io(path: &Path, source: std::io::Error) -> RemoteError {
    RemoteError::Local(once_core::Error::Io {
        path: path.to_path_buf(),
        source,
    })
}
