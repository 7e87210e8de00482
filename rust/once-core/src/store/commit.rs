//! The durable half of a save: flushing a save's temporary files to disk and renaming them into
//! place (blobs first, the entry last), now or on the store's commit threads.
//!
//! A run hands its saves to the commit threads and goes on with the next step; it waits for
//! them before it ends (`Store::finish_saves`). A commit thread takes every save queued at
//! once (a batch) and makes the whole batch visible together, in three phases:
//!
//! 1. every file of the batch (its blobs, and its entries, written here) is whole under a
//!    temporary name;
//! 2. the blobs' data is flushed: write-back is started for every blob, then each is waited
//!    for (`flush`). A blob's flush then finds its blocks already written or in flight instead
//!    of issuing them alone;
//! 3. the blobs are renamed into place, then the entries.
//!
//! Why this order is safe. A `kill -9` at any point leaves temporary files and, at worst, blobs
//! without an entry (found by `cache verify` and collected), never an entry naming a missing
//! blob: renames are seen in the order they are made, and every entry is renamed after the
//! blobs of its batch. A power loss: no blob is renamed before its data is on disk (phase 2
//! completes before phase 3 starts), so no blob's name shows a torn or empty file, which is
//! what ext4's delayed allocation would otherwise leave. An entry is renamed without waiting
//! for its bytes: after a power loss it may be empty, cut short or end in zeros, and its
//! envelope's checksum (`envelope.rs`) makes such an entry a miss; the step runs again and its
//! save replaces it. Waiting for the entries as well cost a cold run of 1,000 trivial steps
//! (whose small outputs travel in their entries, so the entry is a save's only file) 0.2 s of
//! 1.04 s on this project's VM disk, and nothing that a miss does not already give. The renames
//! themselves are not flushed: on a journaled file system (ext4, XFS, btrfs: what users run)
//! metadata is committed in order, so an entry's rename survives only with the renames made
//! before it; on a file system without a journal (this project's VM disk) an entry may survive
//! a lost blob rename, and then names a missing blob: `lookup` checks every blob an entry
//! names, so that is a miss, never a wrong hit.
//!
//! What it costs (cold run of 1,000 trivial steps, perf, this project's VM): one `fdatasync`
//! a file from 8 threads took 0.24 s of CPU, nearly a third of the commit threads' time.
//! Flushed in a batch (write-back started for all, then each waited for), 200 small files took
//! 0.016 ms of CPU each where 8 threads took 0.03-0.04 ms, in half their wall time (same
//! sitting). `syncfs` costs the process about as little, but it flushes everything dirty on the
//! file system (every output a large build just wrote, other programs' files) before a run may
//! end.

use std::fs::File;
use std::io::Write;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::PathBuf;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread;

use super::{parent_of, set_file_mode, StoreLock, TempFile, ENTRY_MODE};
use crate::error::{Error, IoContext};
use crate::usage_ledger;
use crate::Result;

/// Commit threads: a batch's flushes are already concurrent (see `flush`), so a second thread
/// only lets the next batch be written while one is being flushed.
const COMMIT_THREADS: usize = 2;
/// Saves queued before the next save waits too: a bound on the memory and the temporary files
/// of a run whose steps outpace the disk, and on the size of a batch.
const BACKLOG: usize = 64;
/// Files whose write-back is started before the first is waited for: each is held open in
/// between, and a save of a large tree has many.
const FLUSH_CHUNK: usize = 256;

/// A file of a save, not yet flushed: its bytes, or a temporary file holding them whole with
/// its final mode.
pub(crate) struct Staged {
    pub(crate) body: Body,
    pub(crate) dest: PathBuf,
}

pub(crate) enum Body {
    /// Copied to a temporary file already (a large output, hashed as it was copied).
    Written(TempFile),
    /// Bytes to write with `mode` (an entry, a log, a small output): the file is created by
    /// whoever commits, off the step's thread. Creating a file is the dearest part of a small
    /// save: 44% of a step thread's CPU in a cold run of 1,000 trivial steps (perf, ext4
    /// `find_inode_bit`), where reading the output costs a path lookup and a copy.
    Bytes { bytes: Vec<u8>, mode: u32 },
}

impl Staged {
    /// Write an entry file and rename it into place, without waiting for its bytes to reach
    /// the disk (see the module's comment: a torn entry is a miss).
    pub(crate) fn commit(self) -> Result<()> {
        let ready = self.write()?;
        ready.temp.persist(&ready.dest)
    }

    /// The file whole under its temporary name, kept open when this wrote it.
    fn write(self) -> Result<Ready> {
        let (file, temp) = match self.body {
            Body::Written(temp) => (None, temp),
            Body::Bytes { bytes, mode } => {
                let (mut file, temp) = TempFile::create(parent_of(&self.dest))?;
                file.write_all(&bytes).at(&temp.path)?;
                set_file_mode(&file, mode).at(&temp.path)?;
                (Some(file), temp)
            }
        };
        Ok(Ready {
            file,
            temp,
            dest: self.dest,
        })
    }
}

/// A file of a save whole under its temporary name, to be flushed and renamed.
struct Ready {
    file: Option<File>,
    temp: TempFile,
    dest: PathBuf,
}

/// A save whose outputs are hashed and whose entry is encoded: what is left is to write the
/// small files, make the blobs durable and rename everything into place.
pub(crate) struct StagedSave {
    /// The store's shared lock, held since the save's first blob: until the entry is visible,
    /// nothing names the blobs it counts on, and a collection would delete them. Shared by the
    /// saves in flight together (see `Store::writing_lock`).
    pub(crate) lock: Arc<StoreLock>,
    /// New blobs (those the store held already, sound, are not written again).
    pub(crate) blobs: Vec<Staged>,
    /// The entry file, always `Body::Bytes`: it is the last file of the save to be written.
    pub(crate) entry: Staged,
    pub(crate) root: PathBuf,
    /// What the save may have added to the store (see `usage_ledger`).
    pub(crate) bytes: u64,
}

impl StagedSave {
    /// Now, on this thread: a batch of one.
    pub(crate) fn commit(self) -> Result<()> {
        commit_batch(vec![self])
            .into_iter()
            .next()
            .map_or(Ok(()), Err)
    }
}

/// A save of a batch with every file whole under a temporary name.
struct Written {
    lock: Arc<StoreLock>,
    blobs: Vec<Ready>,
    entry: Ready,
    root: PathBuf,
    bytes: u64,
}

impl StagedSave {
    fn write(self) -> Result<Written> {
        let blobs = self
            .blobs
            .into_iter()
            .map(Staged::write)
            .collect::<Result<Vec<Ready>>>()?;
        Ok(Written {
            lock: self.lock,
            blobs,
            entry: self.entry.write()?,
            root: self.root,
            bytes: self.bytes,
        })
    }
}

/// Make `saves` durable and visible together (see the module's comment for the order); the
/// failures, one for each save that failed (it left no entry: a miss next time).
fn commit_batch(saves: Vec<StagedSave>) -> Vec<Error> {
    let mut failures = Vec::new();
    // 1. Every file whole under a temporary name.
    let mut written: Vec<Written> = Vec::with_capacity(saves.len());
    for save in saves {
        match save.write() {
            Ok(save) => written.push(save),
            Err(err) => failures.push(err),
        }
    }
    // 2. Every blob's data on disk; a save any of whose blobs failed is dropped whole.
    let files: Vec<(&Ready, usize)> = written
        .iter()
        .enumerate()
        .flat_map(|(n, save)| save.blobs.iter().map(move |ready| (ready, n)))
        .collect();
    let mut sound = vec![true; written.len()];
    for (err, n) in flush(&files) {
        if std::mem::replace(&mut sound[n], false) {
            failures.push(err);
        }
    }
    drop(files);
    let mut sound = sound.into_iter();
    written.retain(|_| sound.next().unwrap_or(false));
    // 3. Blobs into place, then the entries naming them.
    let mut renamed = Vec::with_capacity(written.len());
    for save in written {
        let Written {
            lock,
            blobs,
            entry,
            root,
            bytes,
        } = save;
        match blobs
            .into_iter()
            .try_for_each(|blob| blob.temp.persist(&blob.dest))
        {
            Ok(()) => renamed.push((entry, root, bytes, lock)),
            Err(err) => failures.push(err),
        }
    }
    let mut added: Vec<(PathBuf, u64)> = Vec::new();
    let mut locks = Vec::with_capacity(renamed.len());
    for (entry, root, bytes, lock) in renamed {
        drop(entry.file);
        match entry.temp.persist(&entry.dest) {
            Ok(()) => match added.iter_mut().find(|(known, _)| *known == root) {
                Some((_, total)) => *total += bytes,
                None => added.push((root, bytes)),
            },
            Err(err) => failures.push(err),
        }
        locks.push(lock);
    }
    // One line for the batch, under the shared lock (see `usage_ledger`).
    for (root, bytes) in added {
        usage_ledger::add(&root, bytes);
    }
    drop(locks);
    failures
}

/// Flush the data of `files` (each with the index of its save): the failures, each with its
/// save's index. Write-back of a chunk of files is started before any is waited for, so the
/// disk takes them together; `fdatasync` then waits for what is left and for the file's size.
fn flush(files: &[(&Ready, usize)]) -> Vec<(Error, usize)> {
    let mut failures = Vec::new();
    for chunk in files.chunks(FLUSH_CHUNK) {
        let mut opened: Vec<(Option<File>, &Ready, usize)> = Vec::with_capacity(chunk.len());
        for &(ready, save) in chunk {
            let owned = if ready.file.is_some() {
                None
            } else {
                match File::open(&ready.temp.path) {
                    Ok(file) => Some(file),
                    Err(err) => {
                        failures.push((
                            Error::Io {
                                path: ready.temp.path.clone(),
                                source: err,
                            },
                            save,
                        ));
                        continue;
                    }
                }
            };
            if let Some(file) = owned.as_ref().or(ready.file.as_ref()) {
                start_writeback(file);
            }
            opened.push((owned, ready, save));
        }
        for (owned, ready, save) in opened {
            let Some(file) = owned.as_ref().or(ready.file.as_ref()) else {
                continue;
            };
            if let Err(err) = file.sync_data() {
                failures.push((
                    Error::Io {
                        path: ready.temp.path.clone(),
                        source: err,
                    },
                    save,
                ));
            }
        }
    }
    failures
}

/// Ask the kernel to start writing `file`'s dirty pages without waiting for them: a hint, so
/// a failure is left to the `fdatasync` that follows.
#[cfg(target_os = "linux")]
#[allow(unsafe_code)]
fn start_writeback(file: &File) {
    use std::os::fd::AsRawFd;
    // SAFETY: `sync_file_range` only reads its integer arguments; the descriptor is borrowed
    // from a `File` that outlives the call, and a bad one yields EBADF, not undefined behaviour.
    unsafe {
        libc::sync_file_range(file.as_raw_fd(), 0, 0, libc::SYNC_FILE_RANGE_WRITE);
    }
}

#[cfg(not(target_os = "linux"))]
fn start_writeback(_file: &File) {}

/// An entry file's `bytes` written under a temporary name with the entry's mode and renamed to
/// `dest`: how an entry from another store becomes visible (a save's goes through its batch).
pub(crate) fn write_entry_file(bytes: &[u8], dest: PathBuf) -> Result<()> {
    Staged {
        body: Body::Bytes {
            bytes: bytes.to_vec(),
            mode: ENTRY_MODE,
        },
        dest,
    }
    .commit()
}

/// The store's commit threads, started on the first deferred save.
#[derive(Default)]
pub(crate) struct Committer {
    shared: Arc<Shared>,
}

#[derive(Default)]
struct Shared {
    queue: Mutex<Queue>,
    /// Signalled on every change: saves queued, taken or committed, or the store dropped.
    changed: Condvar,
}

#[derive(Default)]
struct Queue {
    /// Saves not yet taken by a thread.
    waiting: Vec<StagedSave>,
    /// Saves submitted and not yet committed (waiting or in a batch).
    pending: usize,
    failures: Vec<Error>,
    /// Whether the threads were started; how many are alive.
    started: bool,
    threads: usize,
    /// The store is gone: threads leave once the queue is empty.
    closed: bool,
}

impl Committer {
    /// Commit `save` on a commit thread; waits only while `BACKLOG` saves are queued. When no
    /// thread can be started (or none is left), the save is committed here and now.
    pub(crate) fn submit(&self, save: StagedSave) -> Result<()> {
        let mut queue = self.lock();
        if !queue.started {
            queue.started = true;
            queue.threads = self.start();
        }
        if queue.threads == 0 {
            drop(queue);
            return save.commit();
        }
        while queue.waiting.len() >= BACKLOG && queue.threads > 0 {
            queue = self.wait(queue);
        }
        if queue.threads == 0 {
            // Every thread is gone (a panic): committed here, as it would have been there.
            drop(queue);
            return save.commit();
        }
        queue.waiting.push(save);
        queue.pending += 1;
        self.shared.changed.notify_all();
        Ok(())
    }

    /// Wait until every submitted save is committed; the failures since the last call.
    pub(crate) fn finish(&self) -> Vec<Error> {
        let mut queue = self.lock();
        while queue.pending > 0 {
            if queue.threads == 0 {
                // Every thread is gone (a panic): what they left is committed here.
                let saves = std::mem::take(&mut queue.waiting);
                drop(queue);
                let failures = commit_batch(saves);
                queue = self.lock();
                queue.pending = 0;
                queue.failures.extend(failures);
                break;
            }
            queue = self.wait(queue);
        }
        std::mem::take(&mut queue.failures)
    }

    fn lock(&self) -> MutexGuard<'_, Queue> {
        self.shared
            .queue
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn wait<'a>(&self, queue: MutexGuard<'a, Queue>) -> MutexGuard<'a, Queue> {
        self.shared
            .changed
            .wait(queue)
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Start `COMMIT_THREADS` threads; how many started.
    fn start(&self) -> usize {
        (0..COMMIT_THREADS)
            .filter(|n| {
                let shared = Arc::clone(&self.shared);
                thread::Builder::new()
                    .name(format!("once-commit-{n}"))
                    .spawn(move || commit_loop(&shared))
                    .is_ok()
            })
            .count()
    }
}

impl Drop for Committer {
    /// The threads commit what is queued, then leave.
    fn drop(&mut self) {
        self.lock().closed = true;
        self.shared.changed.notify_all();
    }
}

/// Take every queued save as one batch and commit it, until the store is dropped.
fn commit_loop(shared: &Shared) {
    let lock = || shared.queue.lock().unwrap_or_else(PoisonError::into_inner);
    loop {
        let batch = {
            let mut queue = lock();
            while queue.waiting.is_empty() && !queue.closed {
                queue = shared
                    .changed
                    .wait(queue)
                    .unwrap_or_else(PoisonError::into_inner);
            }
            if queue.waiting.is_empty() {
                queue.threads -= 1;
                return;
            }
            std::mem::take(&mut queue.waiting)
        };
        shared.changed.notify_all();
        let count = batch.len();
        // A panic must not leave `finish` waiting for saves nobody will commit.
        let outcome = catch_unwind(AssertUnwindSafe(|| commit_batch(batch)));
        let mut queue = lock();
        queue.pending -= count;
        let panicked = outcome.is_err();
        match outcome {
            Ok(failures) => queue.failures.extend(failures),
            Err(_) => queue.failures.push(Error::Io {
                path: PathBuf::from("once-commit"),
                source: std::io::Error::other("a commit thread failed; its saves were dropped"),
            }),
        }
        if panicked {
            queue.threads -= 1;
        }
        drop(queue);
        shared.changed.notify_all();
        if panicked {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{OutputKind, Store};
    use std::fs;
    use std::path::Path;

    /// A store and a workspace whose package `p` has outputs `out0.txt` .. `out{n-1}.txt`, each
    /// `size` bytes or more.
    fn fixture(n: usize, size: usize) -> (tempfile::TempDir, Store, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("cache")).unwrap();
        let ws = dir.path().join("ws");
        fs::create_dir_all(ws.join("p")).unwrap();
        for i in 0..n {
            let text = format!("output {i}\n{}", "x".repeat(size));
            fs::write(ws.join(format!("p/out{i}.txt")), text).unwrap();
        }
        (dir, store, ws)
    }

    fn key(i: usize) -> String {
        format!("{i:064x}")
    }

    fn stage(store: &Store, ws: &Path, i: usize) -> StagedSave {
        let outputs = [format!("out{i}.txt")];
        let log = format!("log {i}\n");
        store
            .stage_save(&key(i), ws, "p", &outputs, log.as_bytes(), 0, 1)
            .unwrap()
            .1
    }

    fn temporaries(root: &Path) -> Vec<PathBuf> {
        let mut found = Vec::new();
        let mut pending = vec![root.to_path_buf()];
        while let Some(dir) = pending.pop() {
            for entry in fs::read_dir(&dir).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    pending.push(path);
                } else if path
                    .file_name()
                    .unwrap()
                    .to_string_lossy()
                    .starts_with(".tmp-")
                {
                    found.push(path);
                }
            }
        }
        found
    }

    /// A save of a batch whose file cannot be flushed fails alone, leaving no entry; the other
    /// saves of the batch are committed whole; no temporary file is left.
    #[test]
    fn a_failed_save_of_a_batch_costs_only_its_own_entry() {
        let (_dir, store, ws) = fixture(3, super::super::SMALL_BLOB + 1);
        let saves: Vec<StagedSave> = (0..3).map(|i| stage(&store, &ws, i)).collect();
        // The second save's output blob vanishes before the flush (as if removed by hand).
        let Body::Written(temp) = &saves[1].blobs[0].body else {
            panic!("a large output is copied to a temporary file");
        };
        fs::remove_file(&temp.path).unwrap();
        let failures = commit_batch(saves);
        assert_eq!(failures.len(), 1, "{failures:?}");
        assert!(store.lookup(&key(0)).is_some());
        assert!(store.lookup(&key(1)).is_none());
        assert!(store.read_entry_of(&key(1)).is_none());
        let entry = store.lookup(&key(2)).unwrap();
        let OutputKind::File { digest, .. } = &entry.outputs[0].kind else {
            panic!("{entry:?}");
        };
        assert!(store.read_blob(digest).unwrap().starts_with(b"output 2\n"));
        assert_eq!(temporaries(store.root()), Vec::<PathBuf>::new());
    }

    /// The saves in flight share one shared lock: a collection cannot start while any is, and
    /// can once they are all committed.
    #[test]
    fn saves_in_flight_share_the_store_lock_until_committed() {
        let (_dir, store, ws) = fixture(2, 0);
        let first = stage(&store, &ws, 0);
        let second = stage(&store, &ws, 1);
        assert!(Arc::ptr_eq(&first.lock, &second.lock));
        let root = store.root().to_path_buf();
        assert!(StoreLock::exclusive(&root, false).unwrap().is_none());
        store.committer.submit(first).unwrap();
        assert!(StoreLock::exclusive(&root, false).unwrap().is_none());
        store.committer.submit(second).unwrap();
        assert!(store.finish_saves().is_empty());
        assert!(StoreLock::exclusive(&root, false).unwrap().is_some());
        assert!(store.lookup(&key(0)).is_some() && store.lookup(&key(1)).is_some());
    }
}
