//! The local content-addressed store: blobs by digest, action entries by key, restore of outputs.
//!
//! Split by domain: `declared` (a rule's outputs and the manifest checks), `outputs` (what is on
//! disk now, compared or removed), `restore` (putting a manifest back), `hits` (many hits
//! settled in one parallel pass), `ingest` (what comes in from another store, written with the
//! same protocol as a save), `envelope` (how an entry file and a shared entry are framed),
//! `inline` (small outputs carried inside their entry).

mod commit;
mod declared;
pub mod envelope;
mod hits;
mod ingest;
mod inline;
mod outputs;
mod restore;

pub use declared::check_manifest;
pub use hits::{Hit, HitReport, Settled};
pub use ingest::{BlobWriter, Ingesting};
use inline::INLINE_DIGEST_COST;
pub use inline::{Inline, INLINE_MAX};

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, Mutex, PoisonError, Weak};
use std::time::{SystemTime, UNIX_EPOCH};

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::directory::{is_symlink_refusal, mark_used_path, name_arg, open_no_follow, Directory};
use crate::error::{Error, IoContext};
use crate::hash::{hash_bytes, hash_open_file, Digest};
use crate::Result;
use commit::{Body, Committer, Staged, StagedSave};
use declared::Declared;
use envelope::Signer;
use outputs::{Found, FoundKind};

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum OutputKind {
    File { digest: Digest, executable: bool },
    Dir,
    Symlink { target: String },
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutputEntry {
    /// Relative to the workspace root, `/`-separated, never absolute, never containing `..`.
    pub path: String,
    #[serde(flatten)]
    pub kind: OutputKind,
}

/// How restore puts a file's bytes in the workspace.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum LinkMode {
    /// A copy-on-write clone (reflink) where the file system can, else a plain copy; the
    /// restored file is the user's to edit.
    #[default]
    Copy,
    /// A hard link to the blob, read-only (`0o444`) so an edit cannot corrupt the store.
    /// Executables are cloned or copied instead (`0o555`): the blob's single mode is shared by
    /// every link, and a blob may be both an executable and a plain output.
    Hardlink,
}

impl std::str::FromStr for LinkMode {
    type Err = String;
    fn from_str(name: &str) -> Result<LinkMode, String> {
        match name {
            "copy" => Ok(LinkMode::Copy),
            "hardlink" => Ok(LinkMode::Hardlink),
            _ => Err(format!("link mode must be copy or hardlink, not {name:?}")),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActionEntry {
    pub key: String,
    pub outputs: Vec<OutputEntry>,
    /// The captured terminal log (stdout and stderr interleaved).
    pub log: Digest,
    pub exit_code: i32,
    pub duration_ms: u64,
    pub created_unix: i64,
    /// The bytes of its small output files (see `inline.rs`). Absent from the entries of
    /// earlier versions, and from the JSON when empty, so such an entry reads the same.
    #[serde(default, skip_serializing_if = "Inline::is_empty")]
    pub inline: Inline,
}

impl ActionEntry {
    /// Every blob a hit on this entry needs from a store: its log's (unless it carries its
    /// log) and `output_blobs`. A digest repeats when two outputs share their bytes.
    pub fn blobs(&self) -> impl Iterator<Item = &Digest> {
        std::iter::once(&self.log)
            .filter(|log| self.inline.get(log).is_none())
            .chain(self.output_blobs())
    }

    /// The blobs of its output files but those it carries itself (`inline`).
    pub fn output_blobs(&self) -> impl Iterator<Item = &Digest> {
        self.outputs.iter().filter_map(|output| match &output.kind {
            OutputKind::File { digest, .. } if self.inline.get(digest).is_none() => Some(digest),
            OutputKind::File { .. } | OutputKind::Dir | OutputKind::Symlink { .. } => None,
        })
    }

    /// What this entry gives the keys of the steps that depend on it (early cutoff): the
    /// digest of its outputs (each path, kind, contents and executable bit, or link target),
    /// in path order. The log is left out: a dependent cannot read it, and a log that names a
    /// time or a changed file would rebuild every dependent of a byte-identical output.
    #[must_use]
    pub fn result(&self) -> String {
        let mut outputs: Vec<&OutputEntry> = self.outputs.iter().collect();
        outputs.sort_by(|a, b| a.path.cmp(&b.path));
        let mut hasher = blake3::Hasher::new();
        hasher.update(b"once-outputs");
        for output in outputs {
            hasher.update(&(output.path.len() as u64).to_le_bytes());
            hasher.update(output.path.as_bytes());
            match &output.kind {
                OutputKind::File { digest, executable } => {
                    hasher.update(&[1, u8::from(*executable)]);
                    hasher.update(&digest.0);
                }
                OutputKind::Dir => {
                    hasher.update(&[2]);
                }
                OutputKind::Symlink { target } => {
                    hasher.update(&[3]);
                    hasher.update(&(target.len() as u64).to_le_bytes());
                    hasher.update(target.as_bytes());
                }
            }
        }
        crate::key::outputs_result(&Digest(*hasher.finalize().as_bytes()))
    }

    /// Each output as (path, what it is): a file's digest (with ` executable` after it when
    /// it is one), `folder`, or `-> TARGET` for a link. What `once why` compares to name the
    /// output of a dependency that changed.
    #[must_use]
    pub fn listing(&self) -> Vec<(String, String)> {
        let mut listing: Vec<(String, String)> = self
            .outputs
            .iter()
            .map(|output| {
                let what = match &output.kind {
                    OutputKind::File { digest, executable } if *executable => {
                        format!("{} executable", digest.to_hex())
                    }
                    OutputKind::File { digest, .. } => digest.to_hex(),
                    OutputKind::Dir => "folder".to_owned(),
                    OutputKind::Symlink { target } => format!("-> {target}"),
                };
                (output.path.clone(), what)
            })
            .collect();
        listing.sort();
        listing
    }
}

// Clone: the remote cache's background uploads each hold their own handle.
#[derive(Clone)]
pub struct Store {
    root: PathBuf,
    /// The store's own folder, so a walk of outputs never collects (or deletes) the cache
    /// itself when it lives inside the workspace, e.g. `.once/` under a `**` output glob.
    identity: Option<FolderId>,
    /// `ac/` and `cas/` held open, when they could be opened.
    held: Option<Arc<HeldFolders>>,
    /// Makes deferred saves durable (`save_deferred`), shared by every clone.
    committer: Arc<Committer>,
    /// The shared lock the saves in flight hold, while any does (see `writing_lock`).
    writing: Arc<Mutex<Weak<StoreLock>>>,
}

/// The store's two folders held open for reads. Finding an entry or a blob then resolves two
/// path components (`ab/abcd...`) instead of every one of the store's path: path lookups were
/// the largest part of looking up 1,500 entries (`__d_lookup_rcu`, perf). Writes still name
/// whole paths, as do the errors.
struct HeldFolders {
    entries: Directory,
    blobs: Directory,
}

/// `name` inside its two-character shard (`ab/abcd...SUFFIX`), NUL-terminated for `name_arg`.
fn sharded(name: &str, suffix: &str) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(name.len() + suffix.len() + 4);
    bytes.extend_from_slice(&name.as_bytes()[..2]);
    bytes.push(b'/');
    bytes.extend_from_slice(name.as_bytes());
    bytes.extend_from_slice(suffix.as_bytes());
    bytes.push(0);
    bytes
}

impl Store {
    /// Open (creating folders as needed) the store at `root`.
    pub fn open(root: &Path) -> Result<Store> {
        for sub in [CAS, AC] {
            let dir = root.join(sub);
            fs::create_dir_all(&dir).at(&dir)?;
        }
        let identity = FolderId::of(&fs::metadata(root).at(root)?);
        let held = Directory::open(root.join(AC), true)
            .and_then(|entries| Ok((entries, Directory::open(root.join(CAS), true)?)))
            .ok()
            .map(|(entries, blobs)| Arc::new(HeldFolders { entries, blobs }));
        Ok(Store {
            root: root.to_path_buf(),
            identity,
            held,
            committer: Arc::default(),
            writing: Arc::default(),
        })
    }
    #[must_use]
    pub fn root(&self) -> &Path {
        &self.root
    }
    pub fn put_bytes(&self, bytes: &[u8]) -> Result<Digest> {
        let (digest, staged) = self.stage_bytes(bytes)?;
        staged.map_or(Ok(()), Staged::commit)?;
        Ok(digest)
    }
    /// Copy a file into the store, hashing what is copied (so the name always matches the bytes).
    pub fn put_file(&self, path: &Path) -> Result<Digest> {
        let (digest, staged) = self.stage_file(path, false)?;
        staged.map_or(Ok(()), Staged::commit)?;
        Ok(digest)
    }
    /// `bytes` as a new blob, unless the store holds it already (then `None`): kept in memory
    /// for whoever commits it when small (see `Body::Bytes`), else written to a temporary
    /// file beside the blob now.
    fn stage_bytes(&self, bytes: &[u8]) -> Result<(Digest, Option<Staged>)> {
        let digest = Digest(*blake3::hash(bytes).as_bytes());
        if self.holds(&digest, bytes.len() as u64) {
            return Ok((digest, None));
        }
        let dest = self.blob_path(&digest);
        if bytes.len() <= SMALL_BLOB {
            let body = Body::Bytes {
                bytes: bytes.to_vec(),
                mode: BLOB_MODE,
            };
            return Ok((digest, Some(Staged { body, dest })));
        }
        let (mut file, temp) = TempFile::create(parent_of(&dest))?;
        file.write_all(bytes).at(&temp.path)?;
        set_file_mode(&file, BLOB_MODE).at(&temp.path)?;
        let body = Body::Written(temp);
        Ok((digest, Some(Staged { body, dest })))
    }
    /// The file at `path` as a new blob, unless the store holds it already (then `None`):
    /// with `in_memory`, read whole when it is small (see `stage_bytes`), else copied (and
    /// hashed) to a temporary file in the store.
    fn stage_file(&self, path: &Path, in_memory: bool) -> Result<(Digest, Option<Staged>)> {
        let mut source = File::open(path).at(path)?;
        let size = source
            .metadata()
            .map_or(COPY_CHUNK as u64, |meta| meta.len());
        if in_memory && size <= SMALL_BLOB as u64 {
            // Read to its end, not to `size`: the name must match what was read, whatever.
            let mut bytes = Vec::with_capacity(size as usize + 1);
            source.read_to_end(&mut bytes).at(path)?;
            return self.stage_bytes(&bytes);
        }
        // The blob's folder is known only once the digest is, so the copy starts in `cas/`,
        // which is on the same file system as every `cas/xx/`, and is renamed from there.
        let (mut file, temp) = TempFile::create(&self.root.join(CAS))?;
        let (digest, copied) = copy_hashing((&mut source, path), (&mut file, &temp.path), size)?;
        if self.holds(&digest, copied) {
            // Same name, same bytes: the existing blob is as good; `temp` removes the copy.
            return Ok((digest, None));
        }
        // Absent, or not the bytes its name says (edited in place, say): replaced whole.
        set_file_mode(&file, BLOB_MODE).at(&temp.path)?;
        let dest = self.blob_path(&digest);
        let body = Body::Written(temp);
        Ok((digest, Some(Staged { body, dest })))
    }
    #[must_use]
    pub fn contains(&self, digest: &Digest) -> bool {
        match &self.held {
            // A symlink is not a blob: it could point anywhere, at anything.
            Some(held) => {
                let name = sharded(&digest.to_hex(), "");
                matches!(held.blobs.stat_file(name_arg(&name), false), Ok(Some(_)))
            }
            None => is_file(&self.blob_path(digest)),
        }
    }
    /// The log of `entry`: the bytes it carries, else its blob's (see `read_blob`). Most steps
    /// print nothing: the empty log is known without opening its blob for each hit.
    pub fn read_log(&self, entry: &ActionEntry) -> Result<Vec<u8>> {
        if entry.log == hash_bytes(&[]) {
            return Ok(Vec::new());
        }
        match entry.inline.get(&entry.log) {
            Some(bytes) => Ok(bytes.to_vec()),
            None => self.read_blob(&entry.log),
        }
    }
    /// The blob's bytes, checked against its name: a blob that no longer hashes to it is
    /// deleted and reads as gone (`NotFound`), as does a symlink in its place.
    pub fn read_blob(&self, digest: &Digest) -> Result<Vec<u8>> {
        let path = self.blob_path(digest);
        let bytes = read_whole(&mut self.open_blob(digest)?).at(&path)?;
        if crate::hash::hash_bytes(&bytes) != *digest {
            return Err(drop_corrupt_blob(&path));
        }
        Ok(bytes)
    }
    /// The blob `digest` opened for reading. A symlink in its place is not followed: it is
    /// deleted, and reads as a blob gone.
    pub(crate) fn open_blob(&self, digest: &Digest) -> Result<File> {
        let opened = match &self.held {
            Some(held) => held
                .blobs
                .open_file_no_follow(name_arg(&sharded(&digest.to_hex(), ""))),
            None => open_no_follow(&self.blob_path(digest)),
        };
        opened.map_err(|err| {
            let path = self.blob_path(digest);
            if is_symlink_refusal(&err) {
                drop_corrupt_blob(&path)
            } else {
                Error::Io { path, source: err }
            }
        })
    }
    /// Whether blob `digest` is sound: a regular file of `size` bytes that hashes to its name.
    /// Restore checks this before hard-linking a blob (see `LinkMode::Hardlink`); a save before
    /// keeping the blob already there.
    pub(crate) fn blob_is_sound(&self, digest: &Digest, size: Option<u64>) -> Result<bool> {
        let path = self.blob_path(digest);
        let file = self.open_blob(digest)?;
        let meta = file.metadata().at(&path)?;
        if !meta.is_file() || size.is_some_and(|size| size != meta.len()) {
            return Ok(false);
        }
        Ok(hash_open_file(file, &path, Some(meta.len()))? == *digest)
    }
    /// Whether the store already holds a sound blob `digest` of `size` bytes.
    fn holds(&self, digest: &Digest, size: u64) -> bool {
        matches!(self.blob_is_sound(digest, Some(size)), Ok(true))
    }
    /// The entry file for `key` decoded, if it is there and decodes (see `read_entry`);
    /// `None` for a key that is not a plain name.
    pub(crate) fn read_entry_of(&self, key: &str) -> Option<ActionEntry> {
        if !is_plain_key(key) {
            return None;
        }
        let Some(held) = &self.held else {
            return read_entry(&self.entry_path(key)?, key);
        };
        let mut file = held
            .entries
            .open_file_no_follow(name_arg(&sharded(key, ".json")))
            .ok()?;
        decode_entry(key, &read_whole(&mut file).ok()?)
    }
    /// The entry for `key` if it exists, decodes, and every blob it names is present.
    #[must_use]
    pub fn lookup(&self, key: &str) -> Option<ActionEntry> {
        let entry = self.read_entry_of(key)?;
        // An index that says "hit" while its blobs are gone restores nothing (Nx 37111).
        let blobs: Vec<&Digest> = entry.blobs().collect();
        let complete = blobs.par_iter().all(|digest| self.contains(digest));
        complete.then_some(entry)
    }
    /// Mark the entry for `key` as used now: eviction is least-recently-used by the entry file's
    /// mtime, and setting a time costs one syscall where rewriting the entry would cost several.
    /// False when there is no such entry or its time cannot be set (a cache shared read-only).
    #[must_use]
    pub fn touch(&self, key: &str) -> bool {
        if !is_plain_key(key) {
            return false;
        }
        match &self.held {
            Some(held) => held.entries.mark_used(name_arg(&sharded(key, ".json"))),
            None => self
                .entry_path(key)
                .is_some_and(|path| mark_used_path(&path)),
        }
    }
    /// Store the declared outputs of a successful step and its log, then write the entry
    /// atomically (blobs first, entry last, so a visible entry never names a missing blob).
    #[allow(clippy::too_many_arguments)]
    pub fn save(
        &self,
        key: &str,
        workspace: &Path,
        package: &str,
        outputs: &[String],
        log: &[u8],
        exit_code: i32,
        duration_ms: u64,
    ) -> Result<ActionEntry> {
        let (entry, staged) = self.stage_save(
            key,
            workspace,
            package,
            outputs,
            log,
            exit_code,
            duration_ms,
        )?;
        staged.commit()?;
        Ok(entry)
    }
    /// `save`, returning once the outputs and the log are copied and hashed: flushing them and
    /// writing the entry is left to the store's commit threads (see `commit.rs`), and the entry
    /// becomes visible some moments later, after its blobs. `finish_saves` waits for them.
    #[allow(clippy::too_many_arguments)]
    pub fn save_deferred(
        &self,
        key: &str,
        workspace: &Path,
        package: &str,
        outputs: &[String],
        log: &[u8],
        exit_code: i32,
        duration_ms: u64,
    ) -> Result<ActionEntry> {
        let (entry, staged) = self.stage_save(
            key,
            workspace,
            package,
            outputs,
            log,
            exit_code,
            duration_ms,
        )?;
        self.committer.submit(staged)?;
        Ok(entry)
    }
    /// Wait until every `save_deferred` of this store (and its clones) is durable and visible;
    /// what failed since the last call (those saves left no entry: a miss next time).
    #[must_use]
    pub fn finish_saves(&self) -> Vec<Error> {
        self.committer.finish()
    }
    /// Everything of a save but making it durable and visible: the outputs and the log
    /// copied to temporary files and hashed, the entry written beside its final name.
    #[allow(clippy::too_many_arguments)]
    fn stage_save(
        &self,
        key: &str,
        workspace: &Path,
        package: &str,
        outputs: &[String],
        log: &[u8],
        exit_code: i32,
        duration_ms: u64,
    ) -> Result<(ActionEntry, StagedSave)> {
        let entry_path = self.entry_path(key).ok_or_else(|| bad_key(key))?;
        let declared = Declared::parse(package, outputs)?;
        // Held from the first blob to the entry: until the entry is written nothing names those
        // blobs, and a collection running in between would delete them as unreferenced.
        let writing = self.writing_lock()?;
        let collected = self.collect(workspace, &declared)?;
        // Temporary files a killed `once` left among the outputs: never the command's, and
        // once stored, every restore would bring them back.
        for junk in &collected.junk {
            match fs::remove_file(junk) {
                Err(err) if err.kind() != io::ErrorKind::NotFound => return Err(err).at(junk),
                _ => {}
            }
        }
        let found: Vec<(String, Found)> = collected.found.into_iter().collect();
        let mut manifest: Vec<OutputEntry> = found
            .iter()
            .map(|(path, found)| OutputEntry {
                path: path.clone(),
                kind: match &found.kind {
                    // Filled in below, once the outputs are known to be restorable.
                    FoundKind::File { executable, .. } => OutputKind::File {
                        digest: Digest::default(),
                        executable: *executable,
                    },
                    FoundKind::Dir => OutputKind::Dir,
                    FoundKind::Symlink(target) => OutputKind::Symlink {
                        target: target.clone(),
                    },
                },
            })
            .collect();
        // An entry that restore would refuse (say a symlink to an absolute path) must fail
        // here, loudly, rather than be cached and fail every later run.
        declared.validate(&manifest)?;
        let (mut blobs, mut inline) = self.stage_outputs(&mut manifest, &found)?;
        // Most steps print nothing: the empty log is one blob for the whole store.
        let log_digest = if !log.is_empty() && inline.has_room_for(log.len() as u64) {
            let digest = hash_bytes(log);
            inline.insert(digest, log.to_vec());
            digest
        } else {
            let (digest, log_blob) = self.stage_bytes(log)?;
            blobs.extend(log_blob);
            digest
        };
        let entry = ActionEntry {
            key: key.to_owned(),
            outputs: manifest,
            log: log_digest,
            exit_code,
            duration_ms,
            created_unix: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |elapsed| elapsed.as_secs() as i64),
            inline,
        };
        let json = serde_json::to_vec(&entry).map_err(|err| Error::Corrupt {
            path: entry_path.clone(),
            message: err.to_string(),
        })?;
        let sealed = encode_entry(key, &json);
        // Every blob it names, new or not (see usage_ledger.rs): the tally may only overcount.
        let outputs: u64 = found
            .iter()
            .map(|(_, found)| match &found.kind {
                FoundKind::File { stat, .. } => stat.size,
                FoundKind::Dir | FoundKind::Symlink(_) => 0,
            })
            .sum();
        let entry_bytes = sealed.len() as u64;
        let staged = StagedSave {
            lock: writing,
            blobs,
            root: self.root.clone(),
            bytes: outputs + log.len() as u64 + entry_bytes,
            entry: Staged {
                body: Body::Bytes {
                    bytes: sealed,
                    mode: ENTRY_MODE,
                },
                dest: entry_path,
            },
        };
        Ok((entry, staged))
    }

    /// The new blobs of a save's output files and the bytes of those its entry carries, each
    /// file's digest filled in `manifest`.
    fn stage_outputs(
        &self,
        manifest: &mut [OutputEntry],
        found: &[(String, Found)],
    ) -> Result<(Vec<Staged>, Inline)> {
        // Small files go in the entry up to `INLINE_MAX`, the next are kept in memory up
        // to `SAVE_MEMORY` a save: a bound on what the queue of deferred saves holds.
        let mut inline_budget = INLINE_MAX;
        let mut memory_budget = SAVE_MEMORY;
        let plans: Vec<Plan> = found
            .iter()
            .map(|(_, found)| match &found.kind {
                FoundKind::File { stat, .. } if stat.size + INLINE_DIGEST_COST <= inline_budget => {
                    inline_budget -= stat.size + INLINE_DIGEST_COST;
                    Plan::Inline(stat.size)
                }
                FoundKind::File { stat, .. }
                    if stat.size <= (SMALL_BLOB as u64).min(memory_budget) =>
                {
                    memory_budget -= stat.size;
                    Plan::Blob { in_memory: true }
                }
                _ => Plan::Blob { in_memory: false },
            })
            .collect();
        let stage =
            |((output, (_, found)), plan): ((&mut OutputEntry, &(String, Found)), &Plan)| {
                let OutputKind::File { digest, .. } = &mut output.kind else {
                    return Ok(Stored::Blob(None));
                };
                let (hashed, stored) = self.stage_output(&found.abs, *plan)?;
                *digest = hashed;
                Ok(stored)
            };
        let files = found
            .iter()
            .filter(|(_, found)| matches!(found.kind, FoundKind::File { .. }))
            .count();
        // A single file is copied here: handing it to rayon from outside its pool costs a
        // wake-up of a pool thread and of this one, for no parallelism.
        let stored: Vec<Stored> = if files > 1 {
            manifest
                .par_iter_mut()
                .zip(found)
                .zip(&plans)
                .map(stage)
                .collect::<Result<_>>()?
        } else {
            manifest
                .iter_mut()
                .zip(found)
                .zip(&plans)
                .map(stage)
                .collect::<Result<_>>()?
        };
        let mut blobs = Vec::new();
        let mut inline = Inline::default();
        for stored in stored {
            match stored {
                Stored::Inline(digest, bytes) => inline.insert(digest, bytes),
                Stored::Blob(staged) => blobs.extend(staged),
            }
        }
        Ok((blobs, inline))
    }

    /// The output file at `path` hashed, and staged as `plan` says: its bytes for the entry
    /// (unless it grew past the size planned since it was seen), or a new blob.
    fn stage_output(&self, path: &Path, plan: Plan) -> Result<(Digest, Stored)> {
        let Plan::Inline(planned) = plan else {
            let in_memory = matches!(plan, Plan::Blob { in_memory: true });
            let (digest, staged) = self.stage_file(path, in_memory)?;
            return Ok((digest, Stored::Blob(staged)));
        };
        let mut bytes = Vec::with_capacity(planned as usize + 1);
        File::open(path)
            .and_then(|mut file| file.read_to_end(&mut bytes))
            .at(path)?;
        if bytes.len() as u64 > planned {
            let (digest, staged) = self.stage_bytes(&bytes)?;
            return Ok((digest, Stored::Blob(staged)));
        }
        let digest = hash_bytes(&bytes);
        Ok((digest, Stored::Inline(digest, bytes)))
    }

    /// The store's shared lock for a save: the one the saves in flight hold, when there are
    /// some, else taken now. A cold run's saves overlap, so one lock serves a whole run of them
    /// where taking one per save cost an `open`, a `flock` and a `close` each.
    fn writing_lock(&self) -> Result<Arc<StoreLock>> {
        let mut held = self.writing.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(lock) = held.upgrade() {
            return Ok(lock);
        }
        let lock = Arc::new(StoreLock::shared(&self.root)?);
        *held = Arc::downgrade(&lock);
        Ok(lock)
    }

    /// Where the blob `digest` is (or would be).
    #[must_use]
    pub fn blob_path(&self, digest: &Digest) -> PathBuf {
        let hex = digest.to_hex();
        self.root.join(CAS).join(&hex[..2]).join(hex)
    }

    /// `None` for a key that is not a plain name: it becomes a file name in the store.
    pub(crate) fn entry_path(&self, key: &str) -> Option<PathBuf> {
        is_plain_key(key).then(|| {
            self.root
                .join(AC)
                .join(&key[..2])
                .join(format!("{key}.json"))
        })
    }

    pub(super) fn is_store(&self, entry: &fs::DirEntry) -> bool {
        self.identity.is_some_and(|id| id.is(entry))
    }
}

/// Where a save puts an output file of the size found (see `stage_outputs`).
#[derive(Clone, Copy)]
enum Plan {
    /// In the entry, unless it has grown past this size.
    Inline(u64),
    /// In a blob; read whole first, or copied to a temporary file as it is hashed.
    Blob { in_memory: bool },
}

/// An output file staged: its bytes for the entry, or its new blob (`None` when the store
/// holds it already).
enum Stored {
    Inline(Digest, Vec<u8>),
    Blob(Option<Staged>),
}

/// A key names a file in the store: only letters, digits, `-` and `_`, at least two of them.
fn is_plain_key(key: &str) -> bool {
    key.len() >= 2
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

pub(crate) const CAS: &str = "cas";
pub(crate) const AC: &str = "ac";
/// Held shared by every save and exclusively by a collection or a clear.
const LOCK: &str = "lock";
/// Blobs are shared by every entry naming them; read-only guards against editing one in place.
pub(crate) const BLOB_MODE: u32 = 0o444;
pub(crate) const ENTRY_MODE: u32 = 0o644;
/// A blob this small is kept in memory until committed rather than copied to a temporary file
/// by the step's thread (see `commit::Body::Bytes`); the size of the smallest copy buffer.
const SMALL_BLOB: usize = 16 * 1024;
/// The most a save keeps in memory of its small outputs. With its log (`SMALL_BLOB` at most)
/// and its entry, over the 192 saves that can be in flight (64 queued, two batches of 64, see
/// `commit.rs`), about 16 MB at worst.
const SAVE_MEMORY: u64 = 64 * 1024;
/// Large enough that a big output costs few syscalls, small enough to stay in L2 while hashed.
const COPY_CHUNK: usize = 1 << 20;
const MIN_CHUNK: usize = 16 * 1024;
/// Below this BLAKE3's own docs expect `update_rayon` to lose to the single-threaded `update`.
const RAYON_MIN: usize = 128 * 1024;

/// A temporary file beside its destination; removed on drop unless renamed into place.
pub(crate) struct TempFile {
    pub(crate) path: PathBuf,
    persisted: bool,
}

static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

impl TempFile {
    /// Named by pid and a per-process counter, so concurrent writers (threads or processes
    /// sharing the store) never share one; `create_new` skips a name left by a killed process.
    pub(crate) fn create(dir: &Path) -> Result<(File, TempFile)> {
        let mut made_dir = false;
        loop {
            let n = TEMP_COUNTER.fetch_add(1, Ordering::Relaxed);
            let path = dir.join(format!(".tmp-{}-{n}", std::process::id()));
            match OpenOptions::new().write(true).create_new(true).open(&path) {
                Ok(file) => {
                    let temp = TempFile {
                        path,
                        persisted: false,
                    };
                    return Ok((file, temp));
                }
                Err(err) if err.kind() == io::ErrorKind::AlreadyExists => {}
                Err(err) if err.kind() == io::ErrorKind::NotFound && !made_dir => {
                    fs::create_dir_all(dir).at(dir)?;
                    made_dir = true;
                }
                Err(err) => return Err(err).at(&path),
            }
        }
    }

    /// Whether `name` is one `create` makes.
    pub(crate) fn is_temp_name(name: &str) -> bool {
        let Some((pid, n)) = name
            .strip_prefix(".tmp-")
            .and_then(|rest| rest.split_once('-'))
        else {
            return false;
        };
        [pid, n]
            .iter()
            .all(|part| !part.is_empty() && part.bytes().all(|b| b.is_ascii_digit()))
    }

    /// `rename` is atomic: readers see no file or the whole file, also after `kill -9`.
    pub(crate) fn persist(mut self, dest: &Path) -> Result<()> {
        let mut result = fs::rename(&self.path, dest);
        if matches!(&result, Err(err) if err.kind() == io::ErrorKind::NotFound) {
            let parent = parent_of(dest);
            fs::create_dir_all(parent).at(parent)?;
            result = fs::rename(&self.path, dest);
        }
        result.at(dest)?;
        self.persisted = true;
        Ok(())
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if !self.persisted {
            let _ = fs::remove_file(&self.path);
        }
    }
}

/// Set the final mode and flush the data before the rename makes the file visible: without
/// the sync, a power loss can leave a visible but empty blob or entry (ext4 delayed alloc).
pub(crate) fn seal(file: &File, path: &Path, mode: u32) -> Result<()> {
    set_file_mode(file, mode).at(path)?;
    file.sync_data().at(path)
}

/// The entry file of `key` at `path` decoded (see `decode_entry`); `None` also when it is
/// absent or a symlink.
pub(crate) fn read_entry(path: &Path, key: &str) -> Option<ActionEntry> {
    decode_entry(key, &read_whole(&mut open_no_follow(path).ok()?).ok()?)
}

/// Tags entry files: binds each to its key and its body (see `Signer::local_store`).
static ENTRY_TAG: LazyLock<Signer> = LazyLock::new(Signer::local_store);

/// The bytes of the entry file of `key` whose JSON is `json`: the remote cache's envelope, with
/// the local store's tag.
#[must_use]
pub fn encode_entry(key: &str, json: &[u8]) -> Vec<u8> {
    envelope::seal(key, json, Some(&ENTRY_TAG))
}

/// The JSON of the entry file `bytes` filed under `key`, if its tag holds.
#[must_use]
pub fn entry_json<'a>(key: &str, bytes: &'a [u8]) -> Option<&'a [u8]> {
    envelope::open(bytes, key, Some(&ENTRY_TAG)).ok()
}

/// The entry file `bytes` filed under `key`, if it is sound: its tag holds (so it was written
/// for this key, whole, and not edited since), it decodes, it names `key`, and its manifest
/// passes `check_manifest`. Anything else (an older version's file, a torn write, an entry
/// copied from another key, a crafted one) is `None`, a miss, never an error or a panic.
#[must_use]
pub fn decode_entry(key: &str, bytes: &[u8]) -> Option<ActionEntry> {
    let entry: ActionEntry = serde_json::from_slice(entry_json(key, bytes)?).ok()?;
    (entry.key == key && check_manifest(&entry.outputs).is_ok()).then_some(entry)
}

/// A blob found not to hash to its name while being read: deleted on the spot, and reported
/// as gone (`NotFound`), so the step is a miss and its save writes a sound blob again.
pub(crate) fn drop_corrupt_blob(path: &Path) -> Error {
    let _ = fs::remove_file(path);
    Error::Io {
        path: path.to_path_buf(),
        source: io::Error::new(
            io::ErrorKind::NotFound,
            "blob did not match its digest (deleted)",
        ),
    }
}

/// Copy `source` to `dest` (each with its path, for errors), hashing what is copied; `size` is
/// the source's expected size, to size the buffer. Returns the digest and the bytes copied.
pub(crate) fn copy_hashing(
    (source, from): (&mut File, &Path),
    (dest, to): (&mut File, &Path),
    size: u64,
) -> Result<(Digest, u64)> {
    let mut hasher = blake3::Hasher::new();
    // Most files are small: no need to zero a whole chunk for them.
    let mut buf = vec![0u8; (size as usize).clamp(MIN_CHUNK, COPY_CHUNK)];
    let mut copied = 0;
    loop {
        let n = match source.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
            Err(err) => return Err(err).at(from),
        };
        let chunk = &buf[..n];
        if n >= RAYON_MIN {
            hasher.update_rayon(chunk);
        } else {
            hasher.update(chunk);
        }
        dest.write_all(chunk).at(to)?;
        copied += n as u64;
    }
    Ok((Digest(*hasher.finalize().as_bytes()), copied))
}

/// All of a store file. Entries and blobs are renamed into place whole and never written
/// after, so the size `fstat` gives is all there is and one read takes it: four syscalls a
/// file where `read_to_end` makes six (it also seeks, and reads again to find the end), and a
/// no-op run reads the entry and the log of every step.
fn read_whole(file: &mut File) -> io::Result<Vec<u8>> {
    let len = usize::try_from(file.metadata()?.len())
        .map_err(|_| io::Error::from(io::ErrorKind::FileTooLarge))?;
    let mut bytes = vec![0; len];
    file.read_exact(&mut bytes)?;
    Ok(bytes)
}

/// An advisory lock on the store's `lock` file, released when dropped (and by the kernel when
/// the process dies, even by `kill -9`, so a crash never leaves the store locked).
pub(crate) struct StoreLock {
    // Only held: closing the file releases the lock.
    _file: File,
}

impl StoreLock {
    /// Many holders at once: the writers.
    pub(crate) fn shared(root: &Path) -> Result<StoreLock> {
        // A blocking flock only returns once it holds the lock; `None` cannot happen.
        Self::take(root, LockKind::Shared, true)?.ok_or_else(|| Error::Io {
            path: root.join(LOCK),
            source: io::ErrorKind::WouldBlock.into(),
        })
    }
    /// One holder, no writer: a collection or a clear. `None` when `wait` is false and the
    /// store is busy.
    pub(crate) fn exclusive(root: &Path, wait: bool) -> Result<Option<StoreLock>> {
        Self::take(root, LockKind::Exclusive, wait)
    }
    fn take(root: &Path, kind: LockKind, wait: bool) -> Result<Option<StoreLock>> {
        let path = root.join(LOCK);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .at(&path)?;
        if lock_file(&file, kind, wait).at(&path)? {
            Ok(Some(StoreLock { _file: file }))
        } else {
            Ok(None)
        }
    }
}

#[derive(Clone, Copy)]
enum LockKind {
    Shared,
    Exclusive,
}

/// `Ok(false)` when `wait` is false and someone else holds a conflicting lock.
#[cfg(unix)]
fn lock_file(file: &File, kind: LockKind, wait: bool) -> io::Result<bool> {
    use rustix::fs::{flock, FlockOperation};
    let operation = match (kind, wait) {
        (LockKind::Shared, true) => FlockOperation::LockShared,
        (LockKind::Shared, false) => FlockOperation::NonBlockingLockShared,
        (LockKind::Exclusive, true) => FlockOperation::LockExclusive,
        (LockKind::Exclusive, false) => FlockOperation::NonBlockingLockExclusive,
    };
    loop {
        match flock(file, operation) {
            Ok(()) => return Ok(true),
            Err(rustix::io::Errno::INTR) => {}
            Err(rustix::io::Errno::WOULDBLOCK) => return Ok(false),
            Err(errno) => return Err(errno.into()),
        }
    }
}

/// Without flock (not unix) writers and collections are not kept apart: a collection may then
/// cost a concurrent writer its entry (a miss later), never a wrong hit.
#[cfg(not(unix))]
fn lock_file(_file: &File, _kind: LockKind, _wait: bool) -> io::Result<bool> {
    Ok(true)
}

pub(crate) fn parent_of(path: &Path) -> &Path {
    path.parent().unwrap_or(Path::new("."))
}

/// A regular file, not a symlink to one: the store's files are never symlinks.
pub(crate) fn is_file(path: &Path) -> bool {
    fs::symlink_metadata(path).is_ok_and(|meta| meta.is_file())
}

/// Manifest paths and link targets are strings; a name that is not UTF-8 is an error rather
/// than an output silently left out of the cache.
pub(super) fn utf8(name: std::ffi::OsString, path: &Path) -> Result<String> {
    name.into_string().map_err(|_| Error::Io {
        path: path.to_path_buf(),
        source: io::Error::new(io::ErrorKind::InvalidData, "name is not valid UTF-8"),
    })
}

fn bad_key(key: &str) -> Error {
    Error::Io {
        path: PathBuf::from(key),
        source: io::Error::new(
            io::ErrorKind::InvalidInput,
            "an action key is ASCII letters, digits, '-' and '_'",
        ),
    }
}

/// Device and inode of a folder: how a walk recognises the store without canonicalizing.
#[derive(Clone, Copy)]
struct FolderId {
    dev: u64,
    ino: u64,
}

#[cfg(unix)]
impl FolderId {
    // `Option` for the platforms without inodes, where it is always `None`.
    #[allow(clippy::unnecessary_wraps)]
    fn of(meta: &fs::Metadata) -> Option<FolderId> {
        use std::os::unix::fs::MetadataExt;
        Some(FolderId {
            dev: meta.dev(),
            ino: meta.ino(),
        })
    }
    fn is(self, entry: &fs::DirEntry) -> bool {
        use std::os::unix::fs::{DirEntryExt, MetadataExt};
        // The inode comes with the directory entry; only a match costs a stat.
        entry.ino() == self.ino && entry.metadata().is_ok_and(|meta| meta.dev() == self.dev)
    }
}

#[cfg(not(unix))]
impl FolderId {
    fn of(_meta: &fs::Metadata) -> Option<FolderId> {
        None
    }
    fn is(self, _entry: &fs::DirEntry) -> bool {
        false
    }
}

#[cfg(unix)]
pub(super) fn is_executable(meta: &fs::Metadata) -> bool {
    use std::os::unix::fs::PermissionsExt;
    meta.permissions().mode() & 0o111 != 0
}

#[cfg(not(unix))]
pub(super) fn is_executable(_meta: &fs::Metadata) -> bool {
    false
}

#[cfg(unix)]
pub(super) fn set_file_mode(file: &File, mode: u32) -> io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    file.set_permissions(fs::Permissions::from_mode(mode))
}

#[cfg(not(unix))]
pub(super) fn set_file_mode(file: &File, mode: u32) -> io::Result<()> {
    let mut permissions = file.metadata()?.permissions();
    permissions.set_readonly(mode & 0o200 == 0);
    file.set_permissions(permissions)
}

#[cfg(unix)]
pub(super) fn set_mode(path: &Path, mode: u32) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).at(path)
}

#[cfg(not(unix))]
pub(super) fn set_mode(path: &Path, mode: u32) -> Result<()> {
    let mut permissions = fs::metadata(path).at(path)?.permissions();
    permissions.set_readonly(mode & 0o200 == 0);
    fs::set_permissions(path, permissions).at(path)
}
