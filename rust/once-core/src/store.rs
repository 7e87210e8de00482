//! The local content-addressed store: blobs by digest, action entries by key, restore of outputs.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use globset::{GlobBuilder, GlobMatcher};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::error::{Error, IoContext};
use crate::hash::Digest;
use crate::outputstats::OutputStats;
use crate::statcache::wall_clock_ns;
use crate::walk::FileStat;
use crate::Result;

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
}

// Clone: the remote cache's background uploads each hold their own handle.
#[derive(Clone)]
pub struct Store {
    root: PathBuf,
    /// The store's own folder, so a walk of outputs never collects (or deletes) the cache
    /// itself when it lives inside the workspace, e.g. `.once/` under a `**` output glob.
    identity: Option<FolderId>,
}

impl Store {
    /// Open (creating folders as needed) the store at `root`.
    pub fn open(root: &Path) -> Result<Store> {
        for sub in [CAS, AC] {
            let dir = root.join(sub);
            fs::create_dir_all(&dir).at(&dir)?;
        }
        let identity = FolderId::of(&fs::metadata(root).at(root)?);
        Ok(Store {
            root: root.to_path_buf(),
            identity,
        })
    }
    #[must_use]
    pub fn root(&self) -> &Path {
        &self.root
    }
    pub fn put_bytes(&self, bytes: &[u8]) -> Result<Digest> {
        let digest = Digest(*blake3::hash(bytes).as_bytes());
        let dest = self.blob_path(&digest);
        if !is_file(&dest) {
            let parent = parent_of(&dest);
            let (mut file, temp) = TempFile::create(parent)?;
            file.write_all(bytes).at(&temp.path)?;
            seal(&file, &temp.path, BLOB_MODE)?;
            temp.persist(&dest)?;
        }
        Ok(digest)
    }
    /// Copy a file into the store, hashing what is copied (so the name always matches the bytes).
    pub fn put_file(&self, path: &Path) -> Result<Digest> {
        let mut source = File::open(path).at(path)?;
        // The blob's folder is known only once the digest is, so the copy starts in `cas/`,
        // which is on the same file system as every `cas/xx/`, and is renamed from there.
        let (mut file, temp) = TempFile::create(&self.root.join(CAS))?;
        let mut hasher = blake3::Hasher::new();
        // Most outputs are small: no need to zero a whole chunk for them.
        let size = source
            .metadata()
            .map_or(COPY_CHUNK, |meta| meta.len() as usize);
        let mut buf = vec![0u8; size.clamp(MIN_CHUNK, COPY_CHUNK)];
        loop {
            let n = match source.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
                Err(err) => return Err(err).at(path),
            };
            let chunk = &buf[..n];
            if n >= RAYON_MIN {
                hasher.update_rayon(chunk);
            } else {
                hasher.update(chunk);
            }
            file.write_all(chunk).at(&temp.path)?;
        }
        let digest = Digest(*hasher.finalize().as_bytes());
        let dest = self.blob_path(&digest);
        if is_file(&dest) {
            // Same name, same bytes: the existing blob is as good; `temp` removes the copy.
            return Ok(digest);
        }
        seal(&file, &temp.path, BLOB_MODE)?;
        temp.persist(&dest)?;
        Ok(digest)
    }
    #[must_use]
    pub fn contains(&self, digest: &Digest) -> bool {
        is_file(&self.blob_path(digest))
    }
    pub fn read_blob(&self, digest: &Digest) -> Result<Vec<u8>> {
        let path = self.blob_path(digest);
        fs::read(&path).at(&path)
    }
    /// The entry for `key` if it exists, decodes, and every blob it names is present.
    #[must_use]
    pub fn lookup(&self, key: &str) -> Option<ActionEntry> {
        let entry = read_entry(&self.entry_path(key)?)?;
        if entry.key != key || !self.contains(&entry.log) {
            return None;
        }
        // An index that says "hit" while its blobs are gone restores nothing (Nx 37111).
        let complete = entry.outputs.par_iter().all(|output| match &output.kind {
            OutputKind::File { digest, .. } => self.contains(digest),
            OutputKind::Dir | OutputKind::Symlink { .. } => true,
        });
        complete.then_some(entry)
    }
    /// Mark the entry for `key` as used now: eviction is least-recently-used by the entry file's
    /// mtime, and setting a time costs one syscall where rewriting the entry would cost several.
    /// False when there is no such entry or its time cannot be set (a cache shared read-only).
    #[must_use]
    pub fn touch(&self, key: &str) -> bool {
        let Some(path) = self.entry_path(key) else {
            return false;
        };
        OpenOptions::new()
            .write(true)
            .open(path)
            .and_then(|file| file.set_modified(SystemTime::now()))
            .is_ok()
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
        let entry_path = self.entry_path(key).ok_or_else(|| bad_key(key))?;
        let declared = Declared::parse(package, outputs)?;
        // Held from the first blob to the entry: until the entry is written nothing names those
        // blobs, and a collection running in between would delete them as unreferenced.
        let _writing = StoreLock::shared(&self.root)?;
        let found: Vec<(String, Found)> = self.collect(workspace, &declared)?.into_iter().collect();
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
        manifest
            .par_iter_mut()
            .zip(&found)
            .try_for_each(|(output, (_, found))| -> Result<()> {
                if let OutputKind::File { digest, .. } = &mut output.kind {
                    *digest = self.put_file(&found.abs)?;
                }
                Ok(())
            })?;
        let entry = ActionEntry {
            key: key.to_owned(),
            outputs: manifest,
            log: self.put_bytes(log)?,
            exit_code,
            duration_ms,
            created_unix: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |elapsed| elapsed.as_secs() as i64),
        };
        let json = serde_json::to_vec(&entry).map_err(|err| Error::Corrupt {
            path: entry_path.clone(),
            message: err.to_string(),
        })?;
        let (mut file, temp) = TempFile::create(parent_of(&entry_path))?;
        file.write_all(&json).at(&temp.path)?;
        seal(&file, &temp.path, ENTRY_MODE)?;
        temp.persist(&entry_path)?;
        Ok(entry)
    }
    /// True when what the declared outputs hold on disk now is exactly the entry's manifest.
    ///
    /// A file whose stat `known` vouches for is compared by digest without being read; the
    /// others are hashed, and those found equal are recorded in `known` for the next run.
    pub fn outputs_match(
        &self,
        workspace: &Path,
        package: &str,
        outputs: &[String],
        entry: &ActionEntry,
        known: Option<&OutputStats>,
    ) -> Result<bool> {
        let declared = Declared::parse(package, outputs)?;
        // Before the first stat: only a file stamped clearly before it can be vouched for.
        let checked_ns = wall_clock_ns();
        let found = self.collect(workspace, &declared)?;
        if found.len() != entry.outputs.len() {
            return Ok(false);
        }
        let mut seen = HashSet::with_capacity(entry.outputs.len());
        let mut to_hash = Vec::new();
        for output in &entry.outputs {
            let Some(now) = found.get(&output.path) else {
                return Ok(false);
            };
            if !seen.insert(output.path.as_str()) {
                return Ok(false);
            }
            match (&output.kind, &now.kind) {
                (OutputKind::Dir, FoundKind::Dir) => {}
                (OutputKind::Symlink { target }, FoundKind::Symlink(now_target))
                    if target == now_target => {}
                (
                    OutputKind::File { digest, executable },
                    FoundKind::File {
                        stat,
                        executable: now_executable,
                    },
                ) if executable == now_executable => {
                    match known.and_then(|known| known.known(&output.path, stat)) {
                        // The bytes are unchanged since they were last seen with this digest.
                        Some(seen) if seen == *digest => {}
                        Some(_) => return Ok(false),
                        None => to_hash.push((output.path.as_str(), now, digest)),
                    }
                }
                _ => return Ok(false),
            }
        }
        // A different size settles it without reading any file.
        for (_, now, digest) in &to_hash {
            if let (Ok(blob), FoundKind::File { stat, .. }) =
                (fs::metadata(self.blob_path(digest)), &now.kind)
            {
                if blob.len() != stat.size {
                    return Ok(false);
                }
            }
        }
        let same = to_hash
            .par_iter()
            .map(|(path, now, digest)| {
                let equal = hash_path(&now.abs)? == **digest;
                if let (Some(known), FoundKind::File { stat, .. }) = (known, &now.kind) {
                    if equal {
                        known.record(path, stat, **digest, checked_ns);
                    } else {
                        known.forget(path);
                    }
                }
                Ok(equal)
            })
            .collect::<Result<Vec<bool>>>()?;
        Ok(same.into_iter().all(|equal| equal))
    }
    /// `restore_with` by copy (reflink where the file system can).
    pub fn restore(
        &self,
        workspace: &Path,
        package: &str,
        outputs: &[String],
        entry: &ActionEntry,
    ) -> Result<()> {
        self.restore_with(workspace, package, outputs, entry, LinkMode::Copy)
    }
    /// Remove what the declared outputs hold now, then recreate the manifest from blobs.
    /// Refuses (`Error::Escape`) any manifest path or symlink target leaving the workspace,
    /// before anything is touched; a blob missing is `NotFound`, also before anything is touched
    /// unless a concurrent collection deletes it midway (the caller then runs the step).
    pub fn restore_with(
        &self,
        workspace: &Path,
        package: &str,
        outputs: &[String],
        entry: &ActionEntry,
        link: LinkMode,
    ) -> Result<()> {
        let declared = Declared::parse(package, outputs)?;
        // Everything is checked before anything on disk is touched.
        declared.validate(&entry.outputs)?;
        for output in &entry.outputs {
            if let OutputKind::File { digest, .. } = &output.kind {
                let blob = self.blob_path(digest);
                if !is_file(&blob) {
                    return Err(io::Error::from(io::ErrorKind::NotFound)).at(&blob);
                }
            }
        }
        // No stale file survives a restore (Turborepo 10951).
        self.remove_declared(workspace, &declared)?;

        let mut folders = BTreeSet::new();
        for output in &entry.outputs {
            if matches!(output.kind, OutputKind::Dir) {
                folders.insert(output.path.as_str());
            }
            if let Some((parent, _)) = output.path.rsplit_once('/') {
                folders.insert(parent);
            }
        }
        // Sorted, so a parent is made before its children.
        for folder in folders {
            let abs = workspace.join(folder);
            fs::create_dir_all(&abs).at(&abs)?;
        }
        entry
            .outputs
            .par_iter()
            .try_for_each(|output| -> Result<()> {
                let dest = workspace.join(&output.path);
                match &output.kind {
                    OutputKind::File { digest, executable } => {
                        restore_file(&self.blob_path(digest), &dest, *executable, link)
                    }
                    OutputKind::Symlink { target } => make_symlink(target, &dest),
                    OutputKind::Dir => Ok(()),
                }
            })
    }

    /// Before a step's command runs: replace the read-only hard links among its declared
    /// outputs (left by a `LinkMode::Hardlink` restore) with private writable copies, so a
    /// command that rewrites an output in place neither fails on the read-only mode nor, run
    /// as root (whom modes do not stop), writes into the store's blob. Returns how many.
    pub fn unshare_outputs(
        &self,
        workspace: &Path,
        package: &str,
        outputs: &[String],
    ) -> Result<usize> {
        let declared = Declared::parse(package, outputs)?;
        let found = self.collect(workspace, &declared)?;
        let linked: Vec<&Path> = found
            .values()
            .filter(|found| matches!(found.kind, FoundKind::File { .. }))
            .map(|found| found.abs.as_path())
            .filter(|abs| fs::symlink_metadata(abs).is_ok_and(|meta| is_read_only_link(&meta)))
            .collect();
        linked.par_iter().try_for_each(|abs| unshare(abs))?;
        Ok(linked.len())
    }

    pub(crate) fn blob_path(&self, digest: &Digest) -> PathBuf {
        let hex = digest.to_hex();
        self.root.join(CAS).join(&hex[..2]).join(hex)
    }

    /// `None` for a key that is not a plain name: it becomes a file name in the store.
    pub(crate) fn entry_path(&self, key: &str) -> Option<PathBuf> {
        let plain = key.len() >= 2
            && key
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        plain.then(|| {
            self.root
                .join(AC)
                .join(&key[..2])
                .join(format!("{key}.json"))
        })
    }

    fn is_store(&self, entry: &fs::DirEntry) -> bool {
        self.identity.is_some_and(|id| id.is(entry))
    }

    /// What the declared outputs hold on disk now, keyed by workspace-relative path.
    fn collect(&self, workspace: &Path, declared: &Declared) -> Result<BTreeMap<String, Found>> {
        let package_dir = workspace.join(&declared.package);
        let mut found = BTreeMap::new();
        for pattern in &declared.patterns {
            match pattern {
                Pattern::Literal(rel) => {
                    let abs = package_dir.join(rel);
                    if let Some(meta) = lstat_if_exists(&abs)? {
                        let path = declared.workspace_path(rel);
                        self.record(path, abs, meta.file_type(), &mut found)?;
                    }
                }
                Pattern::Glob { base, matcher } => {
                    for (rel, abs, file_type) in self.glob(&package_dir, base, matcher)? {
                        let path = declared.workspace_path(&rel);
                        self.record(path, abs, file_type, &mut found)?;
                    }
                }
            }
        }
        Ok(found)
    }

    fn record(
        &self,
        path: String,
        abs: PathBuf,
        file_type: fs::FileType,
        found: &mut BTreeMap<String, Found>,
    ) -> Result<()> {
        let kind = if file_type.is_symlink() {
            let target = fs::read_link(&abs).at(&abs)?;
            FoundKind::Symlink(utf8(target.into_os_string(), &abs)?)
        } else if file_type.is_dir() {
            // Every folder is recorded, so empty ones survive a restore.
            for entry in fs::read_dir(&abs).at(&abs)? {
                let entry = entry.at(&abs)?;
                if self.is_store(&entry) {
                    continue;
                }
                let child = entry.path();
                let name = utf8(entry.file_name(), &child)?;
                let file_type = entry.file_type().at(&child)?;
                self.record(format!("{path}/{name}"), child, file_type, found)?;
            }
            FoundKind::Dir
        } else if file_type.is_file() {
            let meta = fs::symlink_metadata(&abs).at(&abs)?;
            FoundKind::File {
                stat: FileStat::from_metadata(&meta),
                executable: is_executable(&meta),
            }
        } else {
            // Sockets, fifos and devices are not build outputs anyone can restore.
            return Ok(());
        };
        found.insert(path, Found { abs, kind });
        Ok(())
    }

    /// The entries under `base` (package-relative) that `matcher` matches, without descending
    /// into a matched folder (it counts whole) nor into symlinked folders. Ignore files are not
    /// honoured: outputs are usually gitignored.
    fn glob(
        &self,
        package_dir: &Path,
        base: &str,
        matcher: &GlobMatcher,
    ) -> Result<Vec<(String, PathBuf, fs::FileType)>> {
        let mut hits = Vec::new();
        let base_abs = package_dir.join(base);
        match lstat_if_exists(&base_abs)? {
            Some(meta) if meta.is_dir() => {}
            _ => return Ok(hits),
        }
        let mut pending = vec![(base.to_owned(), base_abs)];
        while let Some((rel_dir, abs_dir)) = pending.pop() {
            for entry in fs::read_dir(&abs_dir).at(&abs_dir)? {
                let entry = entry.at(&abs_dir)?;
                let abs = entry.path();
                let name = utf8(entry.file_name(), &abs)?;
                if name == ".git" || self.is_store(&entry) {
                    continue;
                }
                let rel = if rel_dir.is_empty() {
                    name
                } else {
                    format!("{rel_dir}/{name}")
                };
                let file_type = entry.file_type().at(&abs)?;
                if matcher.is_match(&rel) {
                    hits.push((rel, abs, file_type));
                } else if file_type.is_dir() {
                    pending.push((rel, abs));
                }
            }
        }
        Ok(hits)
    }

    /// Delete what the declared outputs hold now: matching files and links, folder outputs
    /// whole. Nothing else is touched.
    fn remove_declared(&self, workspace: &Path, declared: &Declared) -> Result<()> {
        let package_dir = workspace.join(&declared.package);
        for pattern in &declared.patterns {
            match pattern {
                Pattern::Literal(rel) => {
                    let abs = package_dir.join(rel);
                    if let Some(meta) = lstat_if_exists(&abs)? {
                        self.remove(&abs, meta.is_dir())?;
                    }
                }
                Pattern::Glob { base, matcher } => {
                    for (_, abs, file_type) in self.glob(&package_dir, base, matcher)? {
                        self.remove(&abs, file_type.is_dir())?;
                    }
                }
            }
        }
        Ok(())
    }

    fn remove(&self, abs: &Path, is_dir: bool) -> Result<()> {
        let result = if !is_dir {
            fs::remove_file(abs)
        } else if self.identity.is_none() {
            fs::remove_dir_all(abs)
        } else {
            return self.remove_tree(abs);
        };
        match result {
            Err(err) if err.kind() != io::ErrorKind::NotFound => Err(err).at(abs),
            _ => Ok(()),
        }
    }

    /// `remove_dir_all`, except that it spares the store should it live below `abs`.
    fn remove_tree(&self, abs: &Path) -> Result<()> {
        let mut spared = false;
        for entry in fs::read_dir(abs).at(abs)? {
            let entry = entry.at(abs)?;
            let child = entry.path();
            if self.is_store(&entry) {
                spared = true;
            } else if entry.file_type().at(&child)?.is_dir() {
                self.remove_tree(&child)?;
            } else {
                fs::remove_file(&child).at(&child)?;
            }
        }
        match fs::remove_dir(abs) {
            Err(_) if spared => Ok(()),
            result => result.at(abs),
        }
    }
}

pub(crate) const CAS: &str = "cas";
pub(crate) const AC: &str = "ac";
/// Held shared by every save and exclusively by a collection or a clear.
const LOCK: &str = "lock";
/// Blobs are shared by every entry naming them; read-only guards against editing one in place.
pub(crate) const BLOB_MODE: u32 = 0o444;
pub(crate) const ENTRY_MODE: u32 = 0o644;
/// Large enough that a big output costs few syscalls, small enough to stay in L2 while hashed.
const COPY_CHUNK: usize = 1 << 20;
const MIN_CHUNK: usize = 16 * 1024;
/// Below this BLAKE3's own docs expect `update_rayon` to lose to the single-threaded `update`.
const RAYON_MIN: usize = 128 * 1024;

/// A file or folder found under the declared outputs now.
struct Found {
    abs: PathBuf,
    kind: FoundKind,
}

enum FoundKind {
    File { stat: FileStat, executable: bool },
    Dir,
    Symlink(String),
}

/// One declared output, relative to the package folder, `.` and empty components dropped.
enum Pattern {
    /// A file or a folder (everything below it).
    Literal(String),
    /// `base` is the literal leading folder, the only one walked.
    Glob { base: String, matcher: GlobMatcher },
}

impl Pattern {
    /// Whether the package-relative `rel` is among what this pattern can collect.
    fn covers(&self, rel: &str) -> bool {
        match self {
            Pattern::Literal(lit) => {
                rel == lit || (rel.starts_with(lit.as_str()) && rel[lit.len()..].starts_with('/'))
            }
            Pattern::Glob { base, matcher } => {
                let below_base = base.is_empty()
                    || (rel.starts_with(base.as_str()) && rel[base.len()..].starts_with('/'));
                // `rel` itself, or a matched folder above it that counts whole.
                below_base
                    && rel
                        .match_indices('/')
                        .map(|(at, _)| &rel[..at])
                        .chain([rel])
                        .filter(|prefix| prefix.len() > base.len())
                        .any(|prefix| matcher.is_match(prefix))
            }
        }
    }
}

/// A package folder and its declared outputs, checked and parsed once per call.
struct Declared {
    /// Workspace-relative, `/`-separated, "" for the root.
    package: String,
    patterns: Vec<Pattern>,
}

impl Declared {
    fn parse(package: &str, outputs: &[String]) -> Result<Declared> {
        let package = normalize(package).ok_or_else(|| Error::Escape(package.to_owned()))?;
        let mut patterns = Vec::with_capacity(outputs.len());
        for raw in outputs {
            let rel = normalize(raw).ok_or_else(|| Error::Escape(raw.clone()))?;
            if rel.is_empty() {
                // Restoring it would first delete the whole package.
                return Err(Error::Glob {
                    pattern: raw.clone(),
                    message: "an output cannot be the package folder itself".to_owned(),
                });
            }
            let Some(first_glob) = rel.split('/').position(|part| part.contains(GLOB_META)) else {
                patterns.push(Pattern::Literal(rel));
                continue;
            };
            let base = rel
                .split('/')
                .take(first_glob)
                .collect::<Vec<_>>()
                .join("/");
            let glob = GlobBuilder::new(&rel)
                .literal_separator(true)
                .build()
                .map_err(|err| Error::Glob {
                    pattern: raw.clone(),
                    message: err.kind().to_string(),
                })?;
            patterns.push(Pattern::Glob {
                base,
                matcher: glob.compile_matcher(),
            });
        }
        Ok(Declared { package, patterns })
    }

    fn workspace_path(&self, rel: &str) -> String {
        if self.package.is_empty() {
            rel.to_owned()
        } else {
            format!("{}/{rel}", self.package)
        }
    }

    /// Refuse a manifest that would write outside the declared outputs of this package, or
    /// outside the workspace through a symlink (Turborepo and Nx tar restores, 2025).
    fn validate(&self, manifest: &[OutputEntry]) -> Result<()> {
        check_manifest(manifest)?;
        for output in manifest {
            let path = output.path.as_str();
            let rel = if self.package.is_empty() {
                Some(path)
            } else {
                path.strip_prefix(self.package.as_str())
                    .and_then(|rest| rest.strip_prefix('/'))
            };
            if !rel.is_some_and(|rel| self.patterns.iter().any(|p| p.covers(rel))) {
                return Err(Error::Escape(format!(
                    "{path} (not among the declared outputs of {:?})",
                    self.package
                )));
            }
        }
        Ok(())
    }
}

/// What any manifest must satisfy, whatever rule it is for: relative normalized paths, each
/// once, no symlink target leaving the workspace, nothing below a symlink. `once cache verify`
/// drops entries that fail it; restore refuses them.
pub(crate) fn check_manifest(manifest: &[OutputEntry]) -> Result<()> {
    let mut paths = HashSet::with_capacity(manifest.len());
    let mut links = HashSet::new();
    for output in manifest {
        let path = output.path.as_str();
        if normalize(path).as_deref() != Some(path) || path.is_empty() {
            return Err(Error::Escape(path.to_owned()));
        }
        if !paths.insert(path) {
            return Err(Error::Corrupt {
                path: PathBuf::from(path),
                message: "listed twice in the manifest".to_owned(),
            });
        }
        if let OutputKind::Symlink { target } = &output.kind {
            check_link(path, target)?;
            links.insert(path);
        }
    }
    // Writing below a restored symlink would write wherever it points.
    for output in manifest {
        let path = output.path.as_str();
        if let Some((at, _)) = path
            .match_indices('/')
            .find(|(at, _)| links.contains(&path[..*at]))
        {
            return Err(Error::Escape(format!(
                "{path} (below the symlink {})",
                &path[..at]
            )));
        }
    }
    Ok(())
}

const GLOB_META: [char; 7] = ['*', '?', '[', ']', '{', '}', '\\'];

/// `/`-separated, relative, `.` and empty components dropped; `None` if absolute, containing
/// `..` or a NUL.
fn normalize(path: &str) -> Option<String> {
    if path.starts_with('/') || path.contains('\0') || Path::new(path).is_absolute() {
        return None;
    }
    let mut parts = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => return None,
            part => parts.push(part),
        }
    }
    Some(parts.join("/"))
}

/// A symlink target must be relative and, resolved against the link's folder, stay inside the
/// workspace. `..` is allowed only before the first name: after one (`sub/../..`) the name may
/// itself be a symlink, and the lexical answer would not be the file system's.
fn check_link(path: &str, target: &str) -> Result<()> {
    let refuse = || Error::Escape(format!("{path} -> {target}"));
    if target.is_empty()
        || target.starts_with('/')
        || target.contains('\0')
        || Path::new(target).is_absolute()
    {
        return Err(refuse());
    }
    let depth = path.matches('/').count();
    let mut ups = 0;
    let mut named = false;
    for part in target.split('/') {
        match part {
            "" | "." => {}
            ".." if named => return Err(refuse()),
            ".." => {
                ups += 1;
                if ups > depth {
                    return Err(refuse());
                }
            }
            _ => named = true,
        }
    }
    Ok(())
}

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

fn restore_file(blob: &Path, dest: &Path, executable: bool, link: LinkMode) -> Result<()> {
    if link == LinkMode::Hardlink && !executable {
        match fs::hard_link(blob, dest) {
            // The blob is already `BLOB_MODE` (read-only), which is what the link must be.
            Ok(()) => return Ok(()),
            // Another file system (EXDEV), or one without links: a read-only copy instead.
            Err(err) if err.kind() != io::ErrorKind::NotFound => {}
            Err(err) => return Err(err).at(blob),
        }
    }
    // FICLONE (Linux), clonefile (macOS) or block cloning (ReFS) where the file system has
    // it: instant, and the bytes are shared until one side writes. Else a plain copy.
    reflink_copy::reflink_or_copy(blob, dest).map_err(|err| {
        // The blob is the usual culprit (gone under a concurrent collection); name it then.
        let at = if err.kind() == io::ErrorKind::NotFound && !is_file(blob) {
            blob
        } else {
            dest
        };
        Error::Io {
            path: at.to_path_buf(),
            source: err,
        }
    })?;
    // Both ways the clone has the blob's read-only mode, so set the manifest's after.
    let mode = match (link, executable) {
        (LinkMode::Copy, false) => 0o644,
        (LinkMode::Copy, true) => 0o755,
        (LinkMode::Hardlink, false) => BLOB_MODE,
        (LinkMode::Hardlink, true) => 0o555,
    };
    set_mode(dest, mode)
}

/// Replace `path` by a writable copy of itself (a clone where the file system can), renamed
/// into place so the name never disappears.
fn unshare(path: &Path) -> Result<()> {
    let meta = fs::symlink_metadata(path).at(path)?;
    let (file, temp) = TempFile::create(parent_of(path))?;
    drop(file);
    // `reflink_or_copy` wants to create the destination itself.
    fs::remove_file(&temp.path).at(&temp.path)?;
    reflink_copy::reflink_or_copy(path, &temp.path).at(&temp.path)?;
    set_mode(&temp.path, if is_executable(&meta) { 0o755 } else { 0o644 })?;
    temp.persist(path)
}

/// A file with more than one name and no write permission: what a hard-link restore makes.
#[cfg(unix)]
fn is_read_only_link(meta: &fs::Metadata) -> bool {
    use std::os::unix::fs::MetadataExt;
    meta.is_file() && meta.nlink() > 1 && meta.mode() & 0o222 == 0
}

#[cfg(not(unix))]
fn is_read_only_link(_meta: &fs::Metadata) -> bool {
    false
}

/// An entry file decoded, or `None` when it is absent or does not decode (a cache file from
/// another version or a torn disk is a miss, never an error).
pub(crate) fn read_entry(path: &Path) -> Option<ActionEntry> {
    let bytes = fs::read(path).ok()?;
    serde_json::from_slice(&bytes).ok()
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

pub(crate) fn is_file(path: &Path) -> bool {
    fs::metadata(path).is_ok_and(|meta| meta.is_file())
}

fn lstat_if_exists(path: &Path) -> Result<Option<fs::Metadata>> {
    match fs::symlink_metadata(path) {
        Ok(meta) => Ok(Some(meta)),
        Err(err)
            if matches!(
                err.kind(),
                io::ErrorKind::NotFound | io::ErrorKind::NotADirectory
            ) =>
        {
            Ok(None)
        }
        Err(err) => Err(err).at(path),
    }
}

pub(crate) fn hash_path(path: &Path) -> Result<Digest> {
    crate::hash::count_file_hashed();
    let mut hasher = blake3::Hasher::new();
    hasher.update_mmap_rayon(path).at(path)?;
    Ok(Digest(*hasher.finalize().as_bytes()))
}

/// Manifest paths and link targets are strings; a name that is not UTF-8 is an error rather
/// than an output silently left out of the cache.
fn utf8(name: std::ffi::OsString, path: &Path) -> Result<String> {
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
fn is_executable(meta: &fs::Metadata) -> bool {
    use std::os::unix::fs::PermissionsExt;
    meta.permissions().mode() & 0o111 != 0
}

#[cfg(not(unix))]
fn is_executable(_meta: &fs::Metadata) -> bool {
    false
}

#[cfg(unix)]
fn set_file_mode(file: &File, mode: u32) -> io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    file.set_permissions(fs::Permissions::from_mode(mode))
}

#[cfg(not(unix))]
fn set_file_mode(file: &File, mode: u32) -> io::Result<()> {
    let mut permissions = file.metadata()?.permissions();
    permissions.set_readonly(mode & 0o200 == 0);
    file.set_permissions(permissions)
}

#[cfg(unix)]
fn set_mode(path: &Path, mode: u32) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).at(path)
}

#[cfg(not(unix))]
fn set_mode(path: &Path, mode: u32) -> Result<()> {
    let mut permissions = fs::metadata(path).at(path)?.permissions();
    permissions.set_readonly(mode & 0o200 == 0);
    fs::set_permissions(path, permissions).at(path)
}

#[cfg(unix)]
fn make_symlink(target: &str, link: &Path) -> Result<()> {
    std::os::unix::fs::symlink(target, link).at(link)
}

#[cfg(windows)]
fn make_symlink(target: &str, link: &Path) -> Result<()> {
    std::os::windows::fs::symlink_file(target, link).at(link)
}
