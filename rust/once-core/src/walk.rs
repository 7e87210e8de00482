//! One parallel walk of the workspace honouring `.gitignore` and `.onceignore`.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};

use ignore::{DirEntry, ParallelVisitor, ParallelVisitorBuilder, WalkBuilder, WalkState};

use crate::{Error, Result};

/// The per-folder ignore file of `once` itself, with the syntax of `.gitignore`.
pub const ONCE_IGNORE_FILENAME: &str = ".onceignore";

/// The metadata the stat cache keys on, plus the mode for the executable bit.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct FileStat {
    pub dev: u64,
    pub ino: u64,
    pub size: u64,
    pub mtime_ns: i64,
    pub ctime_ns: i64,
    pub mode: u32,
}

const NS_PER_SEC: i64 = 1_000_000_000;

impl FileStat {
    #[cfg(unix)]
    #[must_use]
    pub fn from_metadata(meta: &std::fs::Metadata) -> FileStat {
        use std::os::unix::fs::MetadataExt;
        FileStat {
            dev: meta.dev(),
            ino: meta.ino(),
            size: meta.size(),
            mtime_ns: meta
                .mtime()
                .saturating_mul(NS_PER_SEC)
                .saturating_add(meta.mtime_nsec()),
            ctime_ns: meta
                .ctime()
                .saturating_mul(NS_PER_SEC)
                .saturating_add(meta.ctime_nsec()),
            mode: meta.mode(),
        }
    }
    /// Without inode numbers or ctime the stat cache can only key on size and mtime; files
    /// count as readable and writable, never executable.
    #[cfg(not(unix))]
    #[must_use]
    pub fn from_metadata(meta: &std::fs::Metadata) -> FileStat {
        let mtime_ns = meta
            .modified()
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX));
        FileStat {
            size: meta.len(),
            mtime_ns,
            ctime_ns: mtime_ns,
            mode: 0o644,
            ..FileStat::default()
        }
    }
    #[must_use]
    pub fn executable(&self) -> bool {
        self.mode & 0o111 != 0
    }
}

/// A regular file found by the walk (symlinks to files are followed for their stat).
#[derive(Clone, Debug)]
pub struct WalkedFile {
    /// Path relative to the walk root, `/`-separated.
    pub rel: String,
    pub stat: FileStat,
}

/// Walk `root` in parallel. Honours `.gitignore` (also outside a git repository),
/// `.git/info/exclude`, and `.onceignore`; includes hidden files; never enters `.git` or any
/// folder named in `skip_dirs` (relative to root). Result sorted by `rel`.
pub fn walk_workspace(root: &Path, skip_dirs: &[String]) -> Result<Vec<WalkedFile>> {
    let skipped: Vec<PathBuf> = skip_dirs
        .iter()
        .map(|dir| dir.trim_start_matches("./").trim_end_matches('/'))
        .filter(|dir| !dir.is_empty() && *dir != ".")
        .map(|dir| root.join(dir))
        .collect();
    let mut builder = WalkBuilder::new(root);
    builder
        .hidden(false)
        // `.gitignore` rules apply whether or not the workspace is a git checkout (a tarball
        // or a CI cache restore has no `.git`), so the same tree gives the same inputs.
        .require_git(false)
        .git_ignore(true)
        .git_exclude(true)
        // The user's global excludes (core.excludesFile) differ between machines; honouring
        // them would make a teammate's inputs, and so their keys, differ from ours.
        .git_global(false)
        // Ignore files above the workspace root are not part of the workspace: a stray
        // `.gitignore` in a home or temp folder must not change what a rule reads.
        .parents(false)
        // ripgrep's `.ignore` files are not part of our contract; `.onceignore` is.
        .ignore(false)
        .add_custom_ignore_filename(ONCE_IGNORE_FILENAME)
        .filter_entry(move |entry| {
            if entry.file_name() == ".git" {
                return false;
            }
            !skipped.iter().any(|dir| {
                dir.file_name() == Some(entry.file_name()) && entry.path() == dir.as_path()
            })
        });
    let found = collect_files(&builder)?;
    let mut files = Vec::with_capacity(found.len());
    for (path, stat) in found {
        let rel = relative_name(root, &path)?;
        files.push(WalkedFile { rel, stat });
    }
    files.sort_unstable_by(|a, b| a.rel.cmp(&b.rel));
    Ok(files)
}

/// Every regular file below `root` (symlinks to files followed), hidden ones included, no
/// ignore rules; unsorted. This is what `once hash FOLDER` reads.
pub(crate) fn walk_all(root: &Path) -> Result<Vec<PathBuf>> {
    let mut builder = WalkBuilder::new(root);
    builder.standard_filters(false).hidden(false);
    Ok(collect_files(&builder)?
        .into_iter()
        .map(|(path, _)| path)
        .collect())
}

/// `path` below `root` as a `/`-separated UTF-8 string.
fn relative_name(root: &Path, path: &Path) -> Result<String> {
    let rel = path.strip_prefix(root).unwrap_or(path);
    // Globs, the stat cache and action keys all work on strings; a lossy conversion could
    // make two files collide or name a file that does not exist, so refuse instead.
    let Some(rel) = rel.to_str() else {
        return Err(Error::Io {
            path: path.to_path_buf(),
            source: io::Error::new(
                io::ErrorKind::InvalidData,
                "file name is not valid UTF-8; once needs UTF-8 paths",
            ),
        });
    };
    Ok(if std::path::MAIN_SEPARATOR == '/' {
        rel.to_owned()
    } else {
        rel.replace(std::path::MAIN_SEPARATOR, "/")
    })
}

/// Run the parallel walk of `builder`; regular files (and symlinks to regular files, with the
/// target's stat) with their stat, unsorted. The first I/O failure ends the walk.
fn collect_files(builder: &WalkBuilder) -> Result<Vec<(PathBuf, FileStat)>> {
    let found = Mutex::new(Vec::new());
    let failure = Mutex::new(None);
    builder.build_parallel().visit(&mut CollectorBuilder {
        found: &found,
        failure: &failure,
    });
    if let Some(err) = failure.into_inner().unwrap_or_else(PoisonError::into_inner) {
        return Err(err);
    }
    Ok(found.into_inner().unwrap_or_else(PoisonError::into_inner))
}

struct CollectorBuilder<'s> {
    found: &'s Mutex<Vec<(PathBuf, FileStat)>>,
    failure: &'s Mutex<Option<Error>>,
}

impl<'s> ParallelVisitorBuilder<'s> for CollectorBuilder<'s> {
    fn build(&mut self) -> Box<dyn ParallelVisitor + 's> {
        Box::new(Collector {
            local: Vec::new(),
            found: self.found,
            failure: self.failure,
        })
    }
}

/// One walker thread's files, kept locally and merged once when the thread finishes, so the
/// threads never contend on a lock per file.
struct Collector<'s> {
    local: Vec<(PathBuf, FileStat)>,
    found: &'s Mutex<Vec<(PathBuf, FileStat)>>,
    failure: &'s Mutex<Option<Error>>,
}

impl Collector<'_> {
    fn fail(&self, err: Error) -> WalkState {
        let mut failure = self.failure.lock().unwrap_or_else(PoisonError::into_inner);
        failure.get_or_insert(err);
        WalkState::Quit
    }

    fn visit_entry(&mut self, entry: &DirEntry) -> WalkState {
        let Some(file_type) = entry.file_type() else {
            return WalkState::Continue;
        };
        let meta = if file_type.is_file() {
            match fs::symlink_metadata(entry.path()) {
                Ok(meta) => meta,
                // Deleted between the directory read and the stat: it is simply not there.
                Err(err) if err.kind() == io::ErrorKind::NotFound => return WalkState::Continue,
                Err(source) => {
                    return self.fail(Error::Io {
                        path: entry.path().to_path_buf(),
                        source,
                    })
                }
            }
        } else if file_type.is_symlink() {
            // Follow the link for its target's stat; dangling links, links to folders (which
            // could loop) and links to devices are not inputs.
            match fs::metadata(entry.path()) {
                Ok(meta) if meta.is_file() => meta,
                _ => return WalkState::Continue,
            }
        } else {
            // Folders are descended by the walker; sockets, FIFOs and devices are not inputs.
            return WalkState::Continue;
        };
        self.local
            .push((entry.path().to_path_buf(), FileStat::from_metadata(&meta)));
        WalkState::Continue
    }
}

impl ParallelVisitor for Collector<'_> {
    fn visit(&mut self, entry: std::result::Result<DirEntry, ignore::Error>) -> WalkState {
        match entry {
            Ok(entry) => self.visit_entry(&entry),
            Err(err) => match io_failure(err, None) {
                Some(err) => self.fail(err),
                // A malformed line in an ignore file: git skips such lines, and so do we.
                None => WalkState::Continue,
            },
        }
    }
}

impl Drop for Collector<'_> {
    fn drop(&mut self) {
        let mut found = self.found.lock().unwrap_or_else(PoisonError::into_inner);
        found.append(&mut self.local);
    }
}

/// The I/O failure inside a walker error, with the path it names; `None` for the soft errors
/// of parsing ignore files.
fn io_failure(err: ignore::Error, path: Option<PathBuf>) -> Option<Error> {
    match err {
        ignore::Error::WithPath { path, err } => io_failure(*err, Some(path)),
        ignore::Error::WithDepth { err, .. } | ignore::Error::WithLineNumber { err, .. } => {
            io_failure(*err, path)
        }
        ignore::Error::Io(source) => Some(Error::Io {
            path: path.unwrap_or_default(),
            source,
        }),
        _ => None,
    }
}
