//! One parallel walk of the workspace honouring `.gitignore` and `.onceignore`.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use rayon::prelude::*;

use crate::directory::{Directory, Entry, Kind, Listing, NameArg};
use crate::error::IoContext;
use crate::ignore_file::{IgnoreFile, Verdict};
use crate::tracked::Tracked;
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
    /// From the fields of a `stat`/`statx` taken relative to a folder (see `directory`): the
    /// same values `from_metadata` reads through std for the same file.
    #[must_use]
    pub(crate) fn from_parts(
        dev: u64,
        ino: u64,
        size: u64,
        mtime: (i64, i64),
        ctime: (i64, i64),
        mode: u32,
    ) -> FileStat {
        FileStat {
            dev,
            ino,
            size,
            mtime_ns: mtime.0.saturating_mul(NS_PER_SEC).saturating_add(mtime.1),
            ctime_ns: ctime.0.saturating_mul(NS_PER_SEC).saturating_add(ctime.1),
            mode,
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
    pub rel: Box<str>,
    pub stat: FileStat,
}

/// A symlink to a folder that the walk followed: the files below `target` are in the walk
/// under `link`'s path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FolderLink {
    /// Path of the link relative to the walk root, `/`-separated.
    pub link: String,
    /// The folder it resolves to, with no symlink left in the path.
    pub target: PathBuf,
    /// The target's path below the walk root (`/`-separated); `None` when it lies outside.
    pub target_rel: Option<String>,
}

/// Walk `root` in parallel. Honours `.gitignore` (also outside a git repository),
/// `.git/info/exclude`, and `.onceignore`; includes hidden files; never enters `.git` or any
/// folder named in `skip_dirs` (relative to root). Result sorted by `rel` (bytes).
///
/// A symlink to a folder is walked as if the folder were there, its files under the link's
/// path, with the ignore files in force at the link (and those of the target folder and
/// below it). A link is not followed when its target is a folder the walk is already inside
/// on the way to it (the folder holding the link, an ancestor of it, or an ancestor of a
/// folder holding a link followed on the way): that is a cycle, and the files there are
/// reached by another path. Nor is a link into `.git` or a skipped folder followed.
///
/// A file git tracks is never ignored by `.gitignore` or `.git/info/exclude` (as git never
/// treats it as ignored), also below an ignored folder, which is then entered for its tracked
/// files only; `.onceignore` still leaves it out.
pub fn walk_workspace(root: &Path, skip_dirs: &[String]) -> Result<Vec<WalkedFile>> {
    walk_workspace_links(root, skip_dirs).map(|(files, _)| files)
}

/// `walk_workspace`, and the folder links it followed (in no particular order).
pub fn walk_workspace_links(
    root: &Path,
    skip_dirs: &[String],
) -> Result<(Vec<WalkedFile>, Vec<FolderLink>)> {
    let tracked = Tracked::find(root, None).map(Arc::new);
    walk_workspace_tracked(root, skip_dirs, tracked)
}

/// `walk_workspace_links`, with what is known of git's index (`None`: no repository).
pub fn walk_workspace_tracked(
    root: &Path,
    skip_dirs: &[String],
    tracked: Option<Arc<Tracked>>,
) -> Result<(Vec<WalkedFile>, Vec<FolderLink>)> {
    let walker = workspace_walker(root, skip_dirs, tracked);
    let files = walker.run(root)?;
    let links = walker
        .rules
        .map(|rules| {
            rules
                .followed
                .into_inner()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
        })
        .unwrap_or_default();
    Ok((files, links))
}

/// The files `walk_workspace(root, skip_dirs)` finds below the folder `below` (relative to
/// `root`, `/`-separated; "" for all), found by walking only that folder: the ignore files of
/// the folders above it are read, their other entries are not. Paths stay relative to `root`.
pub fn walk_workspace_below(
    root: &Path,
    below: &str,
    skip_dirs: &[String],
) -> Result<Vec<WalkedFile>> {
    let tracked = Tracked::find(root, None).map(Arc::new);
    walk_workspace_below_tracked(root, below, skip_dirs, tracked)
}

/// `walk_workspace_below`, with what is known of git's index (`None`: no repository).
pub fn walk_workspace_below_tracked(
    root: &Path,
    below: &str,
    skip_dirs: &[String],
    tracked: Option<Arc<Tracked>>,
) -> Result<Vec<WalkedFile>> {
    workspace_walker(root, skip_dirs, tracked).run_below(root, below)
}

fn workspace_walker(
    root: &Path,
    skip_dirs: &[String],
    tracked: Option<Arc<Tracked>>,
) -> Walker<impl Fn(Found<'_>) -> Result<Option<WalkedFile>> + Sync> {
    let skip = skip_dirs
        .iter()
        .map(|dir| {
            dir.split('/')
                .filter(|part| !part.is_empty() && *part != ".")
                .collect::<Vec<_>>()
                .join("/")
                .into_bytes()
        })
        .filter(|dir| !dir.is_empty())
        .collect();
    Walker {
        rules: Some(WorkspaceRules {
            skip,
            root: root.to_path_buf(),
            root_real: OnceLock::new(),
            followed: Mutex::new(Vec::new()),
            tracked,
        }),
        visit: |found: Found<'_>| {
            // A symlink is followed for its target's stat (a link to a folder reaches here
            // only when `walk_workspace` does not follow it); dangling links and links to
            // devices are not inputs.
            let follow = found.kind == Kind::Symlink;
            let stat = match found.dir.stat_file(found.name, follow) {
                Ok(Some(stat)) => stat,
                Ok(None) => return Ok(None),
                // Deleted between the listing and the stat: it is simply not there.
                Err(err) if follow || err.kind() == io::ErrorKind::NotFound => return Ok(None),
                Err(source) => {
                    return Err(Error::Io {
                        path: found.dir.child_path(found.name),
                        source,
                    })
                }
            };
            // Globs, the stat cache and action keys all work on strings; a lossy conversion
            // could make two files collide or name a file that does not exist, so refuse.
            let rel = String::from_utf8(found.rel).map_err(|_| Error::Io {
                path: found.dir.child_path(found.name),
                source: io::Error::new(
                    io::ErrorKind::InvalidData,
                    "file name is not valid UTF-8; once needs UTF-8 paths",
                ),
            })?;
            Ok(Some(WalkedFile {
                rel: rel.into_boxed_str(),
                stat,
            }))
        },
    }
}

/// A file (or a symlink, not yet followed) that the walk found and did not filter out.
pub(crate) struct Found<'a> {
    /// The open folder holding it: stat or open it by `name` relative to this.
    pub dir: &'a Directory,
    pub name: &'a NameArg,
    /// `Kind::File` or `Kind::Symlink`.
    pub kind: Kind,
    /// Path below the walk root, `/`-separated; bytes, since `once hash` takes any name.
    pub rel: Vec<u8>,
}

/// Every regular file below `root` (symlinks to files followed by `visit`), hidden ones and
/// `.git` included, no ignore rules: what `once hash FOLDER` reads. `visit` turns each into an
/// item (`None` leaves it out); the items come back in the byte order of the paths.
pub(crate) fn walk_every_file<T, V>(root: &Path, visit: V) -> Result<Vec<T>>
where
    T: Send,
    V: Fn(Found<'_>) -> Result<Option<T>> + Sync,
{
    Walker { rules: None, visit }.run(root)
}

/// What the workspace walk leaves out besides ignored files: `.git` and the skipped folders.
struct WorkspaceRules {
    /// `/`-separated paths below the root, normalized (no `./`, no trailing `/`).
    skip: Vec<Vec<u8>>,
    root: PathBuf,
    /// The root with no symlink in its path, resolved at the first folder link (a walk
    /// without one never pays for it); `None` when it cannot be resolved.
    root_real: OnceLock<Option<PathBuf>>,
    followed: Mutex<Vec<FolderLink>>,
    /// The git index of the work tree holding the root: its tracked files are not ignored.
    tracked: Option<Arc<Tracked>>,
}

/// The folder links followed on the way down to a folder, newest first.
struct LinkChain {
    /// Length of the link's path below the walk root.
    rel_len: usize,
    target: PathBuf,
    /// The real path of the folder holding the link.
    holder: PathBuf,
    parent: Option<Arc<LinkChain>>,
}

/// The real path of the folder at `rel` below the walk root, reached through `chain`.
fn real_folder(root_real: &Path, chain: Option<&LinkChain>, rel: &[u8]) -> PathBuf {
    let (base, suffix) = match chain {
        Some(link) => (
            link.target.as_path(),
            rel.get(link.rel_len..).unwrap_or_default(),
        ),
        None => (root_real, rel),
    };
    let suffix = suffix.strip_prefix(b"/").unwrap_or(suffix);
    if suffix.is_empty() {
        base.to_path_buf()
    } else {
        base.join(bytes_path(suffix))
    }
}

#[cfg(unix)]
fn bytes_path(bytes: &[u8]) -> &Path {
    use std::os::unix::ffi::OsStrExt;
    Path::new(std::ffi::OsStr::from_bytes(bytes))
}

#[cfg(not(unix))]
fn bytes_path(bytes: &[u8]) -> &Path {
    Path::new(std::str::from_utf8(bytes).unwrap_or_default())
}

impl WorkspaceRules {
    /// Where the symlink `link` (at `child` below the root, in the folder at `rel` reached
    /// through `chain`) leads when it is a folder to walk: its real path and the chain below
    /// it. `None` for a link to a file, a dangling link, or a link cut by the rules of
    /// `walk_workspace`.
    fn folder_link(
        &self,
        link: &Path,
        rel: &[u8],
        child: &[u8],
        chain: Option<&Arc<LinkChain>>,
    ) -> Option<(FolderLink, Arc<LinkChain>)> {
        let target = std::fs::canonicalize(link).ok()?;
        if !target.is_dir() {
            return None;
        }
        let root_real = self
            .root_real
            .get_or_init(|| std::fs::canonicalize(&self.root).ok())
            .as_ref()?;
        let holder = real_folder(root_real, chain.map(AsRef::as_ref), rel);
        let mut on_the_way = std::iter::successors(chain, |link| link.parent.as_ref())
            .map(|link| link.holder.as_path());
        if holder.starts_with(&target) || on_the_way.any(|folder| folder.starts_with(&target)) {
            return None;
        }
        let target_rel = match target.strip_prefix(root_real) {
            Ok(below) => {
                let below = below
                    .to_string_lossy()
                    .replace(std::path::MAIN_SEPARATOR, "/");
                let mut prefix = String::new();
                for part in below.split('/') {
                    if part == ".git"
                        || self
                            .skip
                            .contains(&[prefix.as_bytes(), part.as_bytes()].concat())
                    {
                        return None;
                    }
                    prefix.push_str(part);
                    prefix.push('/');
                }
                Some(below)
            }
            Err(_) => None,
        };
        let below = Arc::new(LinkChain {
            rel_len: child.len(),
            target: target.clone(),
            holder,
            parent: chain.cloned(),
        });
        let link = FolderLink {
            link: String::from_utf8_lossy(child).into_owned(),
            target,
            target_rel,
        };
        Some((link, below))
    }
}

/// One parallel walk: one rayon task per folder, entries sorted per folder so the results
/// concatenate in path order (no global sort of 100,000 strings), files handed to `visit`
/// relative to their open folder.
struct Walker<V> {
    /// `None`: every file, no ignore files.
    rules: Option<WorkspaceRules>,
    visit: V,
}

/// Below this many files, a folder's files are visited on one thread: a stat is about a
/// microsecond and a small file's hash some ten, less than handing work to another thread
/// costs, and folders already run in parallel.
pub(crate) const PARALLEL_FILES: usize = 32;

/// A folder's results in path order, as a list of runs (concatenated once at the end, so a
/// file deep in the tree is moved once, not once per level).
type Runs<T> = Vec<Vec<T>>;

impl<T, V> Walker<V>
where
    T: Send,
    V: Fn(Found<'_>) -> Result<Option<T>> + Sync,
{
    fn run(&self, root: &Path) -> Result<Vec<T>> {
        let dir = Directory::open(root.to_path_buf(), true)
            .map_err(|(path, source)| Error::Io { path, source })?;
        let runs = self.walk_dir(dir, &[], None, None, None)?;
        Ok(concatenated(runs))
    }

    /// `run`, but only below the folder `below` of `root`: each folder on the way down is
    /// listed for its ignore files and for the next folder, which must be a kept folder as
    /// `run` would have entered it (else nothing is below it, as far as `run` knows).
    fn run_below(&self, root: &Path, below: &str) -> Result<Vec<T>> {
        let mut dir = Directory::open(root.to_path_buf(), true)
            .map_err(|(path, source)| Error::Io { path, source })?;
        let mut rel: Vec<u8> = Vec::new();
        let mut ignores = None;
        let mut chain = None;
        let mut forced = None;
        for part in below
            .split('/')
            .filter(|part| !part.is_empty() && *part != ".")
        {
            let listing = dir.list().at(dir.path())?;
            if self.rules.is_some() {
                ignores = IgnoreRules::for_folder(&dir, &listing, &rel, ignores);
            }
            let kept = self.keep(
                &dir,
                &listing,
                &rel,
                ignores.as_deref(),
                chain.as_ref(),
                forced.as_ref(),
            );
            let mut child = rel.clone();
            if !child.is_empty() {
                child.push(b'/');
            }
            child.extend_from_slice(part.as_bytes());
            let Some(folder) = kept.folders.into_iter().find(|folder| folder.rel == child) else {
                return Ok(Vec::new()); // a file, an ignored or skipped folder
            };
            let Folder {
                path, below, only, ..
            } = folder;
            if below.is_some() {
                chain = below;
            }
            forced = only;
            dir = match Directory::open(path, false) {
                Ok(sub) => sub,
                Err((_, err))
                    if matches!(
                        err.kind(),
                        io::ErrorKind::NotFound | io::ErrorKind::NotADirectory
                    ) =>
                {
                    return Ok(Vec::new());
                }
                Err((path, source)) => return Err(Error::Io { path, source }),
            };
            rel = child;
        }
        let runs = self.walk_dir(dir, &rel, ignores, chain.as_ref(), forced.as_ref())?;
        Ok(concatenated(runs))
    }

    /// Walk the folder `dir` at `rel`; `only`, below an ignored folder holding tracked files,
    /// is the tracked paths there: nothing else below it is walked.
    fn walk_dir(
        &self,
        dir: Directory,
        rel: &[u8],
        ignores: Option<Arc<IgnoreRules>>,
        chain: Option<&Arc<LinkChain>>,
        only: Option<&Arc<[String]>>,
    ) -> Result<Runs<T>> {
        let mut listing = dir.list().at(dir.path())?;
        let ignores = match &self.rules {
            Some(_) => IgnoreRules::for_folder(&dir, &listing, rel, ignores),
            None => None,
        };
        listing.sort_as_paths();
        let Kept {
            files,
            folders,
            order,
        } = self.keep(&dir, &listing, rel, ignores.as_deref(), chain, only);
        let (no_files, no_folders) = (files.is_empty(), folders.is_empty());
        // One result per file and per folder, collected in order: an indexed collect fills
        // one buffer of the right size (collecting into `Result<Vec<_>>` grows one), and the
        // first failure in path order is the one reported. The closure owns the folder: its
        // descriptor closes once its own files are done, not after the whole tree below it
        // (open descriptors stay a few per thread however deep the tree).
        let visit_files = move || -> Vec<Result<Option<T>>> {
            let visit = |(entry, rel): (Entry, Vec<u8>)| {
                (self.visit)(Found {
                    dir: &dir,
                    name: listing.name_arg(&entry),
                    kind: entry.kind,
                    rel,
                })
            };
            if files.len() < PARALLEL_FILES {
                files.into_iter().map(visit).collect()
            } else {
                files
                    .into_par_iter()
                    .with_min_len(PARALLEL_FILES / 2)
                    .map(visit)
                    .collect()
            }
        };
        let walk_folder = |folder: Folder| match Directory::open(folder.path, false) {
            Ok(sub) => self.walk_dir(
                sub,
                &folder.rel,
                ignores.clone(),
                folder.below.as_ref().or(chain),
                folder.only.as_ref(),
            ),
            // Deleted (or replaced by a file) since the listing: nothing below it.
            Err((_, err))
                if matches!(
                    err.kind(),
                    io::ErrorKind::NotFound | io::ErrorKind::NotADirectory
                ) =>
            {
                Ok(Vec::new())
            }
            Err((path, source)) => Err(Error::Io { path, source }),
        };
        let walk_folders = || -> Vec<Result<Runs<T>>> {
            if folders.len() == 1 {
                folders.into_iter().map(walk_folder).collect()
            } else {
                folders.into_par_iter().map(walk_folder).collect()
            }
        };
        let (found, below) = if no_folders {
            (visit_files(), Vec::new())
        } else if no_files {
            (Vec::new(), walk_folders())
        } else {
            rayon::join(visit_files, walk_folders)
        };

        in_path_order(order, found, below)
    }

    /// The entries of `listing` (sorted) that the walk keeps: files to visit and folders to
    /// descend, each with its path below the root, and per kept entry whether it is a folder.
    /// `only`: see `walk_dir`.
    #[allow(clippy::too_many_lines)] // one pass over the entries, each rule in order
    fn keep(
        &self,
        dir: &Directory,
        listing: &Listing,
        rel: &[u8],
        ignores: Option<&IgnoreRules>,
        chain: Option<&Arc<LinkChain>>,
        only: Option<&Arc<[String]>>,
    ) -> Kept {
        let mut kept = Kept {
            files: Vec::with_capacity(listing.entries().len()),
            folders: Vec::new(),
            order: Vec::with_capacity(listing.entries().len()),
        };
        for entry in listing.entries() {
            if entry.kind == Kind::Other {
                // Sockets, FIFOs and devices are not inputs.
                continue;
            }
            let name = listing.name(entry);
            if self.rules.is_some() && name == b".git" {
                continue;
            }
            let mut child = Vec::with_capacity(rel.len() + 1 + name.len());
            if !rel.is_empty() {
                child.extend_from_slice(rel);
                child.push(b'/');
            }
            child.extend_from_slice(name);
            // Only the workspace walk follows links to folders, and it stats only symlinks
            // for it: a tree without any pays nothing.
            let mut linked = None;
            // Below an ignored folder, or for an ignored entry git tracks (or holding tracked
            // files): the tracked paths at or below it, the only ones kept there.
            let mut tracked_only = None;
            if let Some(rules) = &self.rules {
                if rules.skip.contains(&child) {
                    continue;
                }
                if entry.kind == Kind::Symlink && only.is_none() {
                    let link = dir.child_path(listing.name_arg(entry));
                    linked = rules.folder_link(&link, rel, &child, chain);
                }
                let is_dir = entry.kind == Kind::Dir || linked.is_some();
                let verdict = is_ignored(ignores, &child, is_dir);
                if verdict == Ignored::ByOnce {
                    continue;
                }
                if let Some(only) = only {
                    if !holds(only, &child) {
                        continue;
                    }
                    tracked_only = Some(only.clone());
                } else if verdict == Ignored::ByGit {
                    let found = match (&rules.tracked, std::str::from_utf8(&child)) {
                        (Some(tracked), Ok(path)) => tracked.at_or_below(path),
                        _ => continue,
                    };
                    if found.is_empty() {
                        continue;
                    }
                    tracked_only = Some(found);
                }
                if tracked_only.is_some() {
                    // A tracked symlink is the link itself to git: not followed as a folder.
                    linked = None;
                }
            }
            if let (Some((link, below)), Some(rules)) = (linked, &self.rules) {
                kept.order.push(true);
                kept.folders.push(Folder {
                    path: link.target.clone(),
                    rel: child,
                    below: Some(below),
                    only: None,
                });
                if let Ok(mut followed) = rules.followed.lock() {
                    followed.push(link);
                }
            } else if entry.kind == Kind::Dir {
                kept.order.push(true);
                kept.folders.push(Folder {
                    path: dir.child_path(listing.name_arg(entry)),
                    rel: child,
                    below: None,
                    only: tracked_only,
                });
            } else {
                kept.order.push(false);
                kept.files.push((*entry, child));
            }
        }
        kept
    }
}

fn concatenated<T>(runs: Runs<T>) -> Vec<T> {
    let mut items = Vec::with_capacity(runs.iter().map(Vec::len).sum());
    for run in runs {
        items.extend(run);
    }
    items
}

/// A folder to descend.
struct Folder {
    /// Where to open it.
    path: PathBuf,
    /// Its path below the root.
    rel: Vec<u8>,
    /// The links followed on the way to it when it is reached through a new one (else those
    /// of its parent).
    below: Option<Arc<LinkChain>>,
    /// For an ignored folder holding tracked files: those files, the only ones walked there.
    only: Option<Arc<[String]>>,
}

/// Whether `child` is one of the sorted paths `only`, or a folder holding one of them.
fn holds(only: &[String], child: &[u8]) -> bool {
    let start = only.partition_point(|path| path.as_bytes() < child);
    only[start..]
        .iter()
        .take_while(|path| path.as_bytes().starts_with(child))
        .any(|path| path.len() == child.len() || path.as_bytes()[child.len()] == b'/')
}

/// A folder's entries that the walk keeps (see `Walker::keep`).
struct Kept {
    files: Vec<(Entry, Vec<u8>)>,
    folders: Vec<Folder>,
    /// Per kept entry, in path order: whether it is a folder (else a file).
    order: Vec<bool>,
}

/// A folder's own items and its subfolders' runs, interleaved in path order (`order` says which
/// comes next); the first failure in that order is the result.
fn in_path_order<T>(
    order: Vec<bool>,
    found: Vec<Result<Option<T>>>,
    below: Vec<Result<Runs<T>>>,
) -> Result<Runs<T>> {
    let mut runs = Vec::new();
    let mut run = Vec::with_capacity(found.len());
    let mut found = found.into_iter();
    let mut below = below.into_iter();
    for is_folder in order {
        if is_folder {
            let sub = below.next().unwrap_or_else(|| Ok(Vec::new()))?;
            if !run.is_empty() {
                runs.push(std::mem::take(&mut run));
            }
            runs.extend(sub.into_iter().filter(|r| !r.is_empty()));
        } else if let Some(item) = found.next().transpose()?.flatten() {
            run.push(item);
        }
    }
    if !run.is_empty() {
        runs.push(run);
    }
    Ok(runs)
}

/// The ignore files of one folder, and those of the folders above it (`parent`). Only folders
/// that have one get a node; the rest share their parent's.
struct IgnoreRules {
    once: Option<IgnoreFile>,
    git: Option<IgnoreFile>,
    exclude: Option<IgnoreFile>,
    parent: Option<Arc<IgnoreRules>>,
}

impl IgnoreRules {
    /// The rules in force below `dir` (at `rel`), given those in force in its parent. Which
    /// ignore files exist is read from the listing: no probing of names that are not there.
    fn for_folder(
        dir: &Directory,
        listing: &Listing,
        rel: &[u8],
        parent: Option<Arc<IgnoreRules>>,
    ) -> Option<Arc<IgnoreRules>> {
        let (mut has_once, mut has_git_ignore, mut has_git) = (false, false, false);
        for entry in listing.entries() {
            match listing.name(entry) {
                b".onceignore" => has_once = true,
                b".gitignore" => has_git_ignore = true,
                b".git" => has_git = true,
                _ => {}
            }
        }
        if !(has_once || has_git_ignore || has_git) {
            return parent;
        }
        // Each file is asked about paths relative to the walk root, below its folder `rel`. An
        // unreadable ignore file and lines that do not parse are skipped (as git does, and as
        // the `ignore` crate's walker did before this one).
        let load = |file: PathBuf| IgnoreFile::load(rel, &file);
        let once = has_once
            .then(|| load(dir.path().join(ONCE_IGNORE_FILENAME)))
            .flatten();
        let git = has_git_ignore
            .then(|| load(dir.path().join(".gitignore")))
            .flatten();
        let exclude = has_git
            .then(|| git_common_dir(dir.path()).map(|git_dir| load(git_dir.join("info/exclude"))))
            .flatten()
            .flatten();
        if once.is_none() && git.is_none() && exclude.is_none() {
            return parent;
        }
        Some(Arc::new(IgnoreRules {
            once,
            git,
            exclude,
            parent,
        }))
    }
}

/// Whether `path` (relative to the walk root) is ignored by `rules`. Per kind of file, the
/// nearest folder whose file says anything about the path decides (a `!pattern` there
/// re-includes it); `.onceignore` overrides `.gitignore`, which overrides `.git/info/exclude`.
/// Unlike git, a `.gitignore` above a nested repository still applies inside it.
fn is_ignored(rules: Option<&IgnoreRules>, path: &[u8], is_dir: bool) -> Ignored {
    let (mut once, mut git, mut exclude) = (None, None, None);
    let mut next = rules;
    while let Some(rules) = next {
        for (found, matcher) in [
            (&mut once, &rules.once),
            (&mut git, &rules.git),
            (&mut exclude, &rules.exclude),
        ] {
            if found.is_none() {
                if let Some(matcher) = matcher {
                    *found = matcher.verdict(path, is_dir);
                }
            }
        }
        next = rules.parent.as_deref();
    }
    match once {
        Some(Verdict::Ignore) => Ignored::ByOnce,
        None if git.or(exclude) == Some(Verdict::Ignore) => Ignored::ByGit,
        // A `!pattern` in `.onceignore` keeps what git's files leave out.
        _ => Ignored::No,
    }
}

/// Which ignore file leaves a path out, if any: git's (which a tracked file overrides) or
/// once's own.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Ignored {
    No,
    ByGit,
    ByOnce,
}

/// The git folder whose `info/exclude` applies in `folder`, which has a `.git` entry: that
/// folder itself, or for a linked worktree (`.git` is a file saying `gitdir: ...`) the main
/// repository's, named by the `commondir` file there. `None` when it cannot be found (a
/// submodule's `.git` file names a folder without `commondir`).
fn git_common_dir(folder: &Path) -> Option<PathBuf> {
    let dot_git = folder.join(".git");
    if !std::fs::metadata(&dot_git).is_ok_and(|meta| meta.is_file()) {
        return Some(dot_git);
    }
    let first_line = |path: &Path| {
        std::fs::read_to_string(path)
            .ok()
            .and_then(|text| text.lines().next().map(str::to_owned))
    };
    let git_dir = folder.join(first_line(&dot_git)?.strip_prefix("gitdir: ")?);
    let common = first_line(&git_dir.join("commondir"))?;
    Some(if common.starts_with('.') {
        git_dir.join(common)
    } else {
        PathBuf::from(common)
    })
}
