//! A run's one view of the workspace: every file's stat from one walk, digests filled on demand.

use std::collections::{HashMap, HashSet};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rayon::prelude::*;

use crate::hash::{hash_file, Digest};
use crate::select::{Globs, GLOB_SYNTAX, WORKSPACE_PREFIX};
use crate::statcache::{wall_clock_ns, JournalRoom, SortedStatCache, StatCache};
use crate::tracked::Tracked;
use crate::walk::{
    walk_workspace_below_tracked, walk_workspace_tracked, FileStat, FolderLink, WalkedFile,
};
use crate::{Error, Result};

/// Indices into `Snapshot::files`, sorted; one per rule's input set.
pub type FileSet = Vec<u32>;

pub struct Snapshot {
    pub root: PathBuf,
    /// Sorted by `rel`.
    pub files: Vec<WalkedFile>,
    /// `digests[i]` is set once `files[i]` has been hashed (or found in the stat cache).
    pub digests: Vec<Option<Digest>>,
    /// Wall clock (ns since epoch) taken before the walk; the racy-mtime rule compares to it.
    pub started_ns: i64,
    /// The links to folders the walk followed: the files below them are in `files` under the
    /// link's path. Selecting one below a link leaving the workspace is an error (an input
    /// once cannot vouch for).
    pub links: Vec<FolderLink>,
    /// The stat cache `prime` read already, and what `hash` needs of it to write it back.
    pub primed: Option<(PathBuf, CacheRead)>,
    /// Why `hash` could not write the stat cache (a full disk), if it could not: the digests
    /// stand, and only the next run pays, reading those files again.
    pub stat_cache_unsaved: Option<Error>,
    /// What the walk knew of git's index (tracked files are never ignored), for walking again
    /// as it did (`changed_since_scan`); `None` outside a git work tree.
    pub tracked: Option<Arc<Tracked>>,
}

/// What `hash` needs to know of the stat cache it read, to write it back.
#[derive(Clone, Copy, Debug, Default)]
pub struct CacheRead {
    /// It held exactly this snapshot's records: with nothing new hashed, nothing to write
    /// (megabytes, for a large workspace).
    current: bool,
    /// Room in its journal: a few new records are appended there instead.
    room: Option<JournalRoom>,
}

impl Snapshot {
    pub fn scan(root: &Path, skip_dirs: &[String]) -> Result<Snapshot> {
        Snapshot::scan_tracked(root, skip_dirs, None)
    }

    /// `scan`, keeping what it learns of git's index in `tracked_memo` (see `tracked.rs`) so
    /// that the next walk need not read the index again.
    pub fn scan_tracked(
        root: &Path,
        skip_dirs: &[String],
        tracked_memo: Option<&Path>,
    ) -> Result<Snapshot> {
        // Taken before the first stat: a file changed after this instant may still show a stat
        // the walk saw, so only timestamps older than this one can vouch for a digest.
        let started_ns = wall_clock_ns();
        let tracked = Tracked::find(root, tracked_memo).map(Arc::new);
        let (files, links) = walk_workspace_tracked(root, skip_dirs, tracked.clone())?;
        if let Some(tracked) = &tracked {
            tracked.save(started_ns);
        }
        Ok(Snapshot {
            root: root.to_path_buf(),
            links,
            digests: vec![None; files.len()],
            files,
            started_ns,
            primed: None,
            stat_cache_unsaved: None,
            tracked,
        })
    }

    /// The files of the package folder `package` ("" for the root; `/`-separated) that match
    /// any `include` glob and no `exclude` glob; globs are relative to the package folder
    /// (`src/**/*.rs`, `**`; a glob naming a folder such as `dist` or `dist/` means everything
    /// below it).
    pub fn select(&self, package: &str, include: &[String], exclude: &[String]) -> Result<FileSet> {
        self.select_many(&[(package.to_owned(), include.to_vec(), exclude.to_vec())])
            .map(|mut sets| sets.pop().unwrap_or_default())
    }

    /// `select` for many (package, include, exclude) at once, in parallel; each distinct list
    /// of globs is compiled once (a monorepo's rules mostly share theirs, and compiling was
    /// most of the cost of one `select`), and the `//` (workspace) files of each distinct
    /// include list are selected once. The first glob that does not parse is the error.
    pub fn select_many(
        &self,
        requests: &[(String, Vec<String>, Vec<String>)],
    ) -> Result<Vec<FileSet>> {
        let mut compiled: HashMap<&[String], Globs> = HashMap::new();
        for (_, include, exclude) in requests {
            for globs in [include, exclude] {
                if !compiled.contains_key(globs.as_slice()) {
                    compiled.insert(globs.as_slice(), Globs::compile(globs)?);
                }
            }
        }
        // `//` inputs: workspace files, whatever package they lie in (a root lockfile, a
        // shared tsconfig); a package's excludes are relative to it, and not theirs.
        let mut workspace_files: HashMap<&[String], FileSet> = HashMap::new();
        let mut all: Vec<&str> = Vec::new();
        for (_, include, _) in requests {
            if let Some(rooted) = compiled[include.as_slice()].workspace() {
                if all.is_empty() {
                    all = self.files.iter().map(|file| &*file.rel).collect();
                }
                workspace_files
                    .entry(include.as_slice())
                    .or_insert_with(|| rooted.select(&all, &Globs::default()));
            }
        }
        let sets: Vec<FileSet> = requests
            .par_iter()
            .map(|(package, include, exclude)| {
                let mut set = self.select_compiled(
                    package,
                    &compiled[include.as_slice()],
                    &compiled[exclude.as_slice()],
                );
                if let Some(rooted) = workspace_files.get(include.as_slice()) {
                    set.extend(rooted);
                    set.sort_unstable();
                    set.dedup();
                }
                set
            })
            .collect();
        self.refuse_leaving(&sets)?;
        Ok(sets)
    }

    /// The files whose name (the last part of their path) is one of `names`, wherever they
    /// lie: what `select` of `**/NAME` globs gives, with one set lookup per file instead of
    /// matching every path against every glob (a lockfile and a manifest in every package
    /// folder and above). Files below a folder link leaving the workspace are left out.
    #[must_use]
    pub fn select_named(&self, names: &[String]) -> FileSet {
        let names: HashSet<&str> = names.iter().map(String::as_str).collect();
        let leaving: Vec<&str> = self
            .links
            .iter()
            .filter(|link| link.target_rel.is_none())
            .map(|link| link.link.as_str())
            .collect();
        self.files
            .iter()
            .enumerate()
            .filter(|(_, file)| {
                let name = file.rel.rsplit('/').next().unwrap_or_default();
                names.contains(name)
                    && !leaving.iter().any(|link| {
                        file.rel
                            .strip_prefix(link)
                            .is_some_and(|rest| rest.starts_with('/'))
                    })
            })
            .map(|(index, _)| index as u32)
            .collect()
    }

    /// An error naming the first folder link leaving the workspace that one of `sets` selects
    /// a file below.
    fn refuse_leaving(&self, sets: &[FileSet]) -> Result<()> {
        let leaving: Vec<&FolderLink> = self
            .links
            .iter()
            .filter(|link| link.target_rel.is_none())
            .collect();
        if leaving.is_empty() {
            return Ok(());
        }
        for &index in sets.iter().flatten() {
            let rel = &self.files[index as usize].rel;
            for link in &leaving {
                if rel
                    .strip_prefix(link.link.as_str())
                    .is_some_and(|rest| rest.starts_with('/'))
                {
                    return Err(Error::Escape(format!(
                        "input {rel} is reached through the symlink {} -> {}, which leaves \
                         the workspace",
                        link.link,
                        link.target.display()
                    )));
                }
            }
        }
        Ok(())
    }

    fn select_compiled(&self, package: &str, includes: &Globs, excludes: &Globs) -> FileSet {
        let package = package.trim_start_matches("./").trim_matches('/');
        let package = if package == "." { "" } else { package };
        let (start, end, prefix_len) = self.package_range(package);
        let paths: Vec<&str> = self.files[start..end]
            .iter()
            .map(|file| &file.rel[prefix_len..])
            .collect();
        let mut set = includes.select(&paths, excludes);
        for index in &mut set {
            *index += start as u32;
        }
        set
    }

    /// Fill the digests of every file in `sets`, using `stat_cache` (a path) for unchanged files
    /// and hashing the rest in parallel; then record them in the stat cache (appended to its
    /// journal when they are few, else the whole cache rewritten). Returns how many files were
    /// actually read. A stat cache that cannot be written is no error (see
    /// `stat_cache_unsaved`): it only makes later runs slower.
    ///
    /// Each call that finds unknown digests loads the stat cache and writes it, so callers pass
    /// all the sets of a run at once.
    pub fn hash(&mut self, sets: &[&FileSet], stat_cache: Option<&Path>) -> Result<usize> {
        let mut wanted = vec![false; self.files.len()];
        for &index in sets.iter().flat_map(|set| set.iter()) {
            *wanted
                .get_mut(index as usize)
                .ok_or_else(|| self.foreign_index(index))? = true;
        }
        if !wanted
            .iter()
            .zip(&self.digests)
            .any(|(&wanted, digest)| wanted && digest.is_none())
        {
            return Ok(0);
        }
        let mut read = CacheRead::default();
        if let Some(cache_path) = stat_cache {
            read = match self.primed.take() {
                Some((primed, read)) if primed == cache_path => read,
                _ => self.fill_from_stat_cache(cache_path),
            };
        }
        // From here on, `wanted` marks the files this call reads: a flag each, where a list of
        // their indices cost 8 MB at 1,000,000 files, at a cold run's peak.
        let mut to_read = 0;
        for (wanted, digest) in wanted.iter_mut().zip(&self.digests) {
            *wanted &= digest.is_none();
            to_read += usize::from(*wanted);
        }
        // Each digest written in place, each path made where its file is read: a list of every
        // path and of every result first cost ~150 MB at 1,000,000 files, beside the snapshot.
        let root = &self.root;
        let first_failure = self
            .digests
            .par_iter_mut()
            .zip(&self.files)
            .enumerate()
            .filter(|(i, _)| wanted[*i])
            .filter_map(
                |(i, (digest, file))| match hash_file(&root.join(&*file.rel)) {
                    Ok(hashed) => {
                        *digest = Some(hashed);
                        None
                    }
                    Err(err) => Some((i, err)),
                },
            )
            .min_by_key(|(i, _)| *i);
        if let Some((_, err)) = first_failure {
            return Err(err);
        }
        let Some(cache_path) = stat_cache.filter(|_| !(read.current && to_read == 0)) else {
            return Ok(to_read);
        };
        if let Err(err) = self.record_in_stat_cache(cache_path, read, &wanted, to_read) {
            self.stat_cache_unsaved = Some(err);
        }
        Ok(to_read)
    }

    /// Write the digests of the files just read (`read_now`, `count` of them) to the stat
    /// cache at `cache_path`, whose state `read` describes.
    fn record_in_stat_cache(
        &self,
        cache_path: &Path,
        read: CacheRead,
        read_now: &[bool],
        count: usize,
    ) -> Result<()> {
        // Recorded with this snapshot's start: a file stamped after it (or too close to it)
        // is written but not trusted next run, which hashes it again.
        let room = read.room.filter(|room| count > 0 && room.fits(count));
        if let Some(room) = room {
            // A few files read (one edited): their records go to the journal.
            let records = (0..self.files.len())
                .filter(|&i| read_now[i])
                .filter_map(|i| {
                    let file = &self.files[i];
                    Some((&*file.rel, &file.stat, self.digests[i].as_ref()?))
                });
            StatCache::append(cache_path, room, self.started_ns, records)
        } else {
            let records = self
                .files
                .iter()
                .zip(&self.digests)
                .filter_map(|(file, digest)| Some((&*file.rel, &file.stat, digest.as_ref()?)));
            StatCache::save(cache_path, self.started_ns, records)?;
            StatCache::remove_journal(cache_path);
            Ok(())
        }
    }

    /// Fill every digest the stat cache at `stat_cache` vouches for, reading no file: the part
    /// of `hash` that needs no rule, so the prelude does it while the CLI is still loading.
    /// A later `hash` with the same cache does not read it again.
    pub fn prime(&mut self, stat_cache: &Path) {
        let read = self.fill_from_stat_cache(stat_cache);
        self.primed = Some((stat_cache.to_path_buf(), read));
    }

    /// Take from the cache file (and its journal) every digest they vouch for. Every file, not
    /// only the wanted ones: the cache is rewritten from this snapshot's digests, and a run of
    /// a few rules must not evict the records of the rest. Both the walk and the file are in
    /// path order: one pass over each.
    fn fill_from_stat_cache(&mut self, cache_path: &Path) -> CacheRead {
        let cache = SortedStatCache::load(cache_path);
        let mut cursor = cache.cursor();
        let mut known_before = 0;
        let mut trusted = 0;
        for (file, digest) in self.files.iter().zip(&mut self.digests) {
            if digest.is_some() {
                known_before += 1;
            } else {
                *digest = cursor.lookup(&file.rel, &file.stat);
                trusted += usize::from(digest.is_some());
            }
        }
        CacheRead {
            current: known_before == 0 && trusted == cache.len() && !cache.has_journal(),
            room: cache.journal_room(),
        }
    }

    /// One digest of every file's path, executable bit and digest (zeros where none is known
    /// yet). Two snapshots with the same tree digest select the same files for any rule, with
    /// the same contents wherever a digest was known in both: the keys computed from one hold
    /// for the other, as long as every file they select had its digest known.
    ///
    /// Files are taken in runs of `TREE_RUN`, each run hashed on its own across the thread
    /// pool, then the runs' digests in order: a no-op run of 100,000 files spent 7.5 ms here
    /// on one thread, after the walk.
    #[must_use]
    pub fn tree_digest(&self) -> Digest {
        const TREE_RUN: usize = 1024;
        let runs: Vec<[u8; 32]> = self
            .files
            .par_chunks(TREE_RUN)
            .zip(self.digests.par_chunks(TREE_RUN))
            .map(|(files, digests)| {
                let mut buffer = Vec::with_capacity(files.len() * 96);
                for (file, digest) in files.iter().zip(digests) {
                    // A path holds no NUL: each record reads back unambiguously.
                    buffer.extend_from_slice(file.rel.as_bytes());
                    buffer.push(0);
                    buffer.push(u8::from(file.stat.executable()));
                    buffer.extend_from_slice(&digest.unwrap_or_default().0);
                }
                *blake3::hash(&buffer).as_bytes()
            })
            .collect();
        let mut hasher = blake3::Hasher::new();
        hasher.update(&(self.files.len() as u64).to_le_bytes());
        for run in &runs {
            hasher.update(run);
        }
        Digest(*hasher.finalize().as_bytes())
    }

    /// (rel path, digest, executable) of each file in `set`; panics-free: unhashed files are
    /// an error.
    pub fn inputs(&self, set: &FileSet) -> Result<Vec<(&str, Digest, bool)>> {
        set.iter()
            .map(|&index| {
                let i = index as usize;
                let file = self.files.get(i).ok_or_else(|| self.foreign_index(index))?;
                let digest = self.digests[i].ok_or_else(|| Error::Io {
                    path: self.root.join(&*file.rel),
                    source: io::Error::new(
                        io::ErrorKind::InvalidInput,
                        "file not hashed yet: pass its set to Snapshot.hash first",
                    ),
                })?;
                Ok((&*file.rel, digest, file.stat.executable()))
            })
            .collect()
    }

    /// The workspace-relative paths of `set`, in order.
    pub fn paths(&self, set: &FileSet) -> Result<Vec<&str>> {
        set.iter()
            .map(|&index| {
                let file = self.files.get(index as usize);
                file.map(|file| &*file.rel)
                    .ok_or_else(|| self.foreign_index(index))
            })
            .collect()
    }

    /// Paths of the input files that `set` (selected from `package` by `include` and
    /// `exclude`) gained, lost or saw edited or replaced since the scan, sorted. Checked after
    /// a rule's command ran: a step whose inputs changed under it must not be cached under the
    /// key computed from the earlier contents. The globs are matched again over a new walk of
    /// the package folder (as the scan walked it: `skip_dirs`, ignore files), so a file
    /// created while the command ran counts as much as one edited.
    pub fn changed_since_scan(
        &self,
        set: &FileSet,
        package: &str,
        include: &[String],
        exclude: &[String],
        skip_dirs: &[String],
    ) -> Result<Vec<String>> {
        if include.is_empty() {
            return Ok(Vec::new()); // no glob to match anything, now or then
        }
        let folder = package.trim_start_matches("./").trim_matches('/');
        if let Some(changed) = self.named_inputs_changed(set, folder, include) {
            return Ok(changed);
        }
        let now = Snapshot {
            root: self.root.clone(),
            files: walk_workspace_below_tracked(
                &self.root,
                folder,
                skip_dirs,
                self.tracked.clone(),
            )?,
            digests: Vec::new(),
            started_ns: self.started_ns,
            links: Vec::new(),
            primed: None,
            stat_cache_unsaved: None,
            tracked: None,
        };
        let now_set = now.select(package, include, exclude)?;
        // `//` inputs outside the package folder are not walked again (that would be the
        // whole workspace): their stat is checked, so an edit or a removal counts, a file
        // added there while the command ran does not.
        let prefix = if folder.is_empty() {
            String::new()
        } else {
            format!("{folder}/")
        };
        let (before, outside): (Vec<&WalkedFile>, Vec<&WalkedFile>) = set
            .iter()
            .filter_map(|&i| self.files.get(i as usize))
            .partition(|file| file.rel.starts_with(&prefix));
        let mut changed: Vec<String> = outside
            .iter()
            .filter(|file| {
                let now = std::fs::metadata(self.root.join(&*file.rel))
                    .ok()
                    .map(|meta| FileStat::from_metadata(&meta));
                now != Some(file.stat)
            })
            .map(|file| file.rel.to_string())
            .collect();
        let after: Vec<&WalkedFile> = now_set
            .iter()
            .filter_map(|&i| now.files.get(i as usize))
            .collect();
        let (mut i, mut j) = (0, 0);
        loop {
            match (before.get(i), after.get(j)) {
                (Some(then), Some(current)) if then.rel == current.rel => {
                    if then.stat != current.stat {
                        changed.push(then.rel.to_string());
                    }
                    i += 1;
                    j += 1;
                }
                // Both are sorted by path: the smaller path is in one list only.
                (Some(gone), Some(current)) if gone.rel < current.rel => {
                    changed.push(gone.rel.to_string());
                    i += 1;
                }
                (Some(gone), None) => {
                    changed.push(gone.rel.to_string());
                    i += 1;
                }
                (_, Some(added)) => {
                    changed.push(added.rel.to_string());
                    j += 1;
                }
                (None, None) => break,
            }
        }
        changed.sort();
        Ok(changed)
    }

    /// `changed_since_scan` without a walk, when every include names one path (no glob, no
    /// trailing `/`): each is stat'ed. A rule of a few named inputs in a package of many files
    /// would otherwise walk the whole package after its command (most of a cold run's cost per
    /// step in a package of 100 such rules, py-spy). `None` (walk) when an include is a
    /// pattern, when an input then is not one of the named paths (a name that is a folder
    /// selects the files below it), or when a named path that was no input then exists now
    /// (created by the command, or ignored, or excluded): the walk decides those.
    fn named_inputs_changed(
        &self,
        set: &FileSet,
        folder: &str,
        include: &[String],
    ) -> Option<Vec<String>> {
        let mut named: Vec<String> = Vec::with_capacity(include.len());
        for pattern in include {
            // Read as `Globs::compile` reads it: `//` from the root, a leading `./` dropped.
            let (base, rel) = match pattern.strip_prefix(WORKSPACE_PREFIX) {
                Some(rooted) => ("", rooted),
                None => (folder, pattern.as_str()),
            };
            let rel = rel.trim_start_matches("./");
            let plain = !rel.is_empty()
                && !rel.contains(GLOB_SYNTAX)
                && rel
                    .split('/')
                    .all(|part| !part.is_empty() && part != "." && part != "..");
            if !plain {
                return None;
            }
            named.push(if base.is_empty() {
                rel.to_owned()
            } else {
                format!("{base}/{rel}")
            });
        }
        let mut before: HashMap<&str, &FileStat> = HashMap::with_capacity(set.len());
        for &index in set {
            let file = self.files.get(index as usize)?;
            before.insert(&*file.rel, &file.stat);
        }
        if before
            .keys()
            .any(|rel| !named.iter().any(|path| path == rel))
        {
            return None;
        }
        let mut changed = Vec::new();
        for path in named {
            let on_disk = self.root.join(&path);
            if let Some(then) = before.get(path.as_str()) {
                // Followed, as the walk follows a link to a file for its stat.
                let now = std::fs::metadata(&on_disk)
                    .ok()
                    .map(|meta| FileStat::from_metadata(&meta));
                if now.as_ref() != Some(*then) {
                    changed.push(path);
                }
            } else if std::fs::symlink_metadata(&on_disk).is_ok() {
                return None;
            }
        }
        changed.sort();
        changed.dedup();
        Some(changed)
    }

    /// `files[start..end]` are the files below `package`, and `prefix_len` bytes of each path
    /// name the package folder. Binary search, since `files` is sorted: selecting the inputs
    /// of 1,000 packages from 100,000 files must not scan all of them 1,000 times.
    fn package_range(&self, package: &str) -> (usize, usize, usize) {
        if package.is_empty() {
            return (0, self.files.len(), 0);
        }
        let prefix = format!("{package}/");
        let start = self
            .files
            .partition_point(|file| &*file.rel < prefix.as_str());
        // Byte order keeps every path starting with `prefix` together right after `start`.
        let len = self.files[start..].partition_point(|file| file.rel.starts_with(&prefix));
        (start, start + len, prefix.len())
    }

    fn foreign_index(&self, index: u32) -> Error {
        Error::Io {
            path: self.root.clone(),
            source: io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "file index {index} is not in this snapshot of {} files",
                    self.files.len()
                ),
            ),
        }
    }
}
