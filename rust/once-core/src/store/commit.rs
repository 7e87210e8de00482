//! The durable half of a save: flushing a save's temporary files to disk and renaming them into
//! place (blobs first, the entry last), now or on the store's commit threads.
//!
//! A flush (`fdatasync`) of a small new file costs a journal commit: 5-8 ms on this project's
//! ext4 VM, three per step (an output, the log, the entry), where the step's own command is
//! 1-2 ms. The file system commits concurrent flushes together: 256 small files flushed from
//! one thread took 7.7 ms each, from 8 threads 0.36 ms each (same disk, same sitting). So a
//! run hands its saves to `COMMIT_THREADS` threads and goes on with the next step; it waits for
//! them before it ends (`Store::finish_saves`). What is on disk at every moment is what a
//! synchronous save leaves: temporary files, then sound blobs, then the entry naming them.

use std::fs::File;
use std::path::PathBuf;
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::thread;

use std::io::Write;

use super::{parent_of, set_file_mode, StoreLock, TempFile, ENTRY_MODE};
use crate::error::{Error, IoContext};
use crate::usage_ledger;
use crate::Result;

/// Enough concurrent flushes for the file system to commit them together (see above).
const COMMIT_THREADS: usize = 8;
/// Saves waiting for a thread before the next one waits too: a bound on the memory and the
/// temporary files of a run whose steps outpace the disk.
const BACKLOG: usize = 64;

/// A file of a save, written whole to its temporary name with its final mode, not yet flushed.
pub(crate) struct Staged {
    pub(crate) temp: TempFile,
    pub(crate) dest: PathBuf,
}

impl Staged {
    /// Flush the bytes, then rename into place: a visible file is never a torn one, also after
    /// a power loss (ext4's delayed allocation can otherwise leave it empty).
    pub(crate) fn commit(self) -> Result<()> {
        File::open(&self.temp.path)
            .and_then(|file| file.sync_data())
            .at(&self.temp.path)?;
        self.temp.persist(&self.dest)
    }
}

/// A save whose files are all written and whose digests are known: what is left is to make it
/// durable and visible.
pub(crate) struct StagedSave {
    /// The store's shared lock, held since the save's first blob: until the entry is visible,
    /// nothing names the blobs it counts on, and a collection would delete them.
    pub(crate) lock: StoreLock,
    /// New blobs (those the store held already, sound, are not written again).
    pub(crate) blobs: Vec<Staged>,
    /// The entry file's bytes and its final name. Written here, not staged by the step's
    /// thread: creating a file waits for the file system's journal, which the flushes keep
    /// busy (half of a deferred save's time was that `open`, py-spy).
    pub(crate) entry: (Vec<u8>, PathBuf),
    pub(crate) root: PathBuf,
    /// What the save may have added to the store (see `usage_ledger`).
    pub(crate) bytes: u64,
}

impl StagedSave {
    /// Blobs first, entry last, so a visible entry never names a missing blob.
    pub(crate) fn commit(self) -> Result<()> {
        for blob in self.blobs {
            blob.commit()?;
        }
        let (bytes, dest) = self.entry;
        write_entry_file(&bytes, dest)?;
        drop(self.lock);
        usage_ledger::add(&self.root, self.bytes);
        Ok(())
    }
}

/// An entry file's `bytes` written under a temporary name with the entry's mode, flushed and
/// renamed to `dest`: how every entry (a save's, or one from another store) becomes visible.
pub(crate) fn write_entry_file(bytes: &[u8], dest: PathBuf) -> Result<()> {
    let (mut file, temp) = TempFile::create(parent_of(&dest))?;
    file.write_all(bytes).at(&temp.path)?;
    set_file_mode(&file, ENTRY_MODE).at(&temp.path)?;
    drop(file);
    Staged { temp, dest }.commit()
}

type Job = Box<dyn FnOnce() + Send>;

/// The store's commit threads, started on the first deferred save.
#[derive(Default)]
pub(crate) struct Committer {
    queue: Mutex<Option<SyncSender<Job>>>,
    state: Arc<(Mutex<Progress>, Condvar)>,
}

#[derive(Default)]
struct Progress {
    pending: usize,
    failures: Vec<Error>,
}

impl Committer {
    /// Commit `save` on a commit thread; waits only while `BACKLOG` saves are queued. When no
    /// thread can be started, the save is committed here and now.
    pub(crate) fn submit(&self, save: StagedSave) -> Result<()> {
        let sender = {
            let mut queue = self.queue.lock().unwrap_or_else(PoisonError::into_inner);
            if queue.is_none() {
                *queue = Self::start();
            }
            queue.clone()
        };
        let Some(sender) = sender else {
            return save.commit();
        };
        self.progress().pending += 1;
        let state = Arc::clone(&self.state);
        let job: Job = Box::new(move || {
            let outcome = save.commit();
            let (progress, done) = &*state;
            let mut progress = progress.lock().unwrap_or_else(PoisonError::into_inner);
            if let Err(err) = outcome {
                progress.failures.push(err);
            }
            progress.pending -= 1;
            done.notify_all();
        });
        if let Err(unsent) = sender.send(job) {
            // Every thread is gone (a thread that panicked): commit here, as it would have.
            (unsent.0)();
        }
        Ok(())
    }

    /// Wait until every submitted save is committed; the failures since the last call.
    pub(crate) fn finish(&self) -> Vec<Error> {
        let (progress, done) = &*self.state;
        let mut progress = progress.lock().unwrap_or_else(PoisonError::into_inner);
        while progress.pending > 0 {
            progress = done.wait(progress).unwrap_or_else(PoisonError::into_inner);
        }
        std::mem::take(&mut progress.failures)
    }

    fn progress(&self) -> std::sync::MutexGuard<'_, Progress> {
        self.state.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The queue's sender, with `COMMIT_THREADS` threads taking from it; `None` when not even
    /// one thread could be started.
    fn start() -> Option<SyncSender<Job>> {
        let (sender, receiver) = sync_channel::<Job>(BACKLOG);
        let receiver = Arc::new(Mutex::new(receiver));
        let mut started = 0;
        for n in 0..COMMIT_THREADS {
            let receiver = Arc::clone(&receiver);
            let spawned = thread::Builder::new()
                .name(format!("once-commit-{n}"))
                .spawn(move || commit_loop(&receiver));
            started += usize::from(spawned.is_ok());
        }
        (started > 0).then_some(sender)
    }
}

/// Take jobs until the sender is dropped (with the store).
fn commit_loop(receiver: &Mutex<Receiver<Job>>) {
    loop {
        // The lock is held only to take a job, not while committing it.
        let job = receiver
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .recv();
        let Ok(job) = job else { return };
        job();
    }
}
