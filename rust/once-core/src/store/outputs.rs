//! What the declared outputs hold on disk: collected, compared with a manifest, removed.

use std::collections::{BTreeMap, HashSet};
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use globset::GlobMatcher;
use rayon::prelude::*;

use super::declared::{Declared, Pattern};
use super::{is_executable, utf8, ActionEntry, OutputKind, Store, TempFile};
use crate::error::IoContext;
use crate::outputstats::OutputStats;
use crate::statcache::wall_clock_ns;
use crate::walk::FileStat;
use crate::Result;

impl Store {
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
        let found = self.collect(workspace, &declared)?.found;
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
        // Hashed, not compared by size with the blob: a blob grown in the store would then
        // have correct outputs deleted to restore it (and the restore fail on its digest).
        let same = to_hash
            .par_iter()
            .map(|(path, now, digest)| {
                let equal = crate::hash::hash_file(&now.abs)? == **digest;
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

    /// What the declared outputs hold on disk now, keyed by workspace-relative path.
    pub(super) fn collect(&self, workspace: &Path, declared: &Declared) -> Result<Collected> {
        declared.check_parents(workspace, &[])?;
        let package_dir = workspace.join(&declared.package);
        let mut collected = Collected::default();
        for pattern in &declared.patterns {
            match pattern {
                Pattern::Literal(rel) => {
                    let abs = package_dir.join(rel);
                    if let Some(meta) = lstat_if_exists(&abs)? {
                        let path = declared.workspace_path(rel);
                        self.record(path, abs, meta.file_type(), &mut collected)?;
                    }
                }
                Pattern::Glob { base, matcher } => {
                    for (rel, abs, file_type) in self.glob(&package_dir, base, matcher)? {
                        let path = declared.workspace_path(&rel);
                        self.record(path, abs, file_type, &mut collected)?;
                    }
                }
            }
        }
        Ok(collected)
    }

    fn record(
        &self,
        path: String,
        abs: PathBuf,
        file_type: fs::FileType,
        collected: &mut Collected,
    ) -> Result<()> {
        let name = path
            .rsplit_once('/')
            .map_or(path.as_str(), |(_, name)| name);
        if file_type.is_file() && TempFile::is_temp_name(name) {
            collected.junk.push(abs);
            return Ok(());
        }
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
                self.record(format!("{path}/{name}"), child, file_type, collected)?;
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
        collected.found.insert(path, Found { abs, kind });
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
    /// whole, except that a folder in `kept` (workspace-relative) is emptied rather than
    /// removed. Nothing else is touched.
    pub(super) fn remove_declared(
        &self,
        workspace: &Path,
        declared: &Declared,
        kept: &HashSet<&str>,
    ) -> Result<()> {
        let package_dir = workspace.join(&declared.package);
        let remove = |rel: &str, abs: &Path, is_dir: bool| {
            let keep = is_dir && kept.contains(declared.workspace_path(rel).as_str());
            self.remove(abs, is_dir, keep)
        };
        for pattern in &declared.patterns {
            match pattern {
                Pattern::Literal(rel) => {
                    let abs = package_dir.join(rel);
                    if let Some(meta) = lstat_if_exists(&abs)? {
                        remove(rel, &abs, meta.is_dir())?;
                    }
                }
                Pattern::Glob { base, matcher } => {
                    for (rel, abs, file_type) in self.glob(&package_dir, base, matcher)? {
                        remove(&rel, &abs, file_type.is_dir())?;
                    }
                }
            }
        }
        Ok(())
    }

    /// Remove `abs`; a folder with `keep` is only emptied. An output folder may be a mount
    /// point (a container volume), which no `rmdir` can remove (EBUSY).
    fn remove(&self, abs: &Path, is_dir: bool, keep: bool) -> Result<()> {
        let result = if is_dir {
            let spared = self.empty_tree(abs)?;
            if keep || spared {
                return Ok(());
            }
            fs::remove_dir(abs)
        } else {
            fs::remove_file(abs)
        };
        match result {
            Err(err) if err.kind() != io::ErrorKind::NotFound => Err(err).at(abs),
            _ => Ok(()),
        }
    }

    /// Delete everything below `abs`, never following a symlink, and sparing the store should
    /// it live there; true when it did.
    fn empty_tree(&self, abs: &Path) -> Result<bool> {
        let mut spared = false;
        for entry in fs::read_dir(abs).at(abs)? {
            let entry = entry.at(abs)?;
            let child = entry.path();
            if self.is_store(&entry) {
                spared = true;
            } else if entry.file_type().at(&child)?.is_dir() {
                if self.empty_tree(&child)? {
                    spared = true;
                } else {
                    fs::remove_dir(&child).at(&child)?;
                }
            } else {
                fs::remove_file(&child).at(&child)?;
            }
        }
        Ok(spared)
    }
}

/// What the declared outputs hold, and the temporary files a killed `once` left among them.
#[derive(Default)]
pub(super) struct Collected {
    /// Keyed by workspace-relative path.
    pub(super) found: BTreeMap<String, Found>,
    /// Never outputs: no run of the command made them.
    pub(super) junk: Vec<PathBuf>,
}

/// A file or folder found under the declared outputs now.
pub(super) struct Found {
    pub(super) abs: PathBuf,
    pub(super) kind: FoundKind,
}

pub(super) enum FoundKind {
    File { stat: FileStat, executable: bool },
    Dir,
    Symlink(String),
}

pub(super) fn lstat_if_exists(path: &Path) -> Result<Option<fs::Metadata>> {
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
