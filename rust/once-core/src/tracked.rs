//! The files git tracks that an ignore file matches: git never treats a tracked file as
//! ignored (a `build/keep.txt` committed with `git add -f` while `build/` is ignored), and
//! neither may the walk, or a step reading one would keep its key when the file changes.
//!
//! Only the paths that are both tracked and ignored matter, and the walk meets few ignored
//! entries (`node_modules`, `dist`, `*.pyc`). So the walk asks, for each ignored entry it
//! meets, which tracked paths lie at or below it; the answers are kept in the state folder
//! under the stat of git's index, and a no-op reads that small file instead of the index
//! (megabytes at 100,000 files). The index is read only when it changed or when the walk
//! meets an ignored entry it has not asked about before.
//!
//! The index is read here rather than through `gix-index`: that crate brings 34 crates more
//! into the build (`gix-object`, `jiff`, `prodash`, ...) to answer what the paths of the index
//! are, which is a few dozen lines of the documented format (versions 2, 3 and 4).

use std::collections::HashMap;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use crate::statcache::{settled, temp_path};
use crate::walk::FileStat;

/// What the walk knows of git's index for one workspace: where it is, its stat, and the
/// tracked paths below each ignored entry asked about.
pub struct Tracked {
    index: PathBuf,
    index_stat: FileStat,
    /// The workspace root's path below the repository's top folder, `/`-terminated ("" when
    /// they are the same): index paths are relative to the top.
    prefix: String,
    /// 20 (SHA-1) or 32 (SHA-256) bytes per object id in the index entries.
    hash_len: usize,
    memo_path: Option<PathBuf>,
    memo: Mutex<Memo>,
    /// The tracked paths below the workspace root, sorted; read once, when first needed.
    paths: OnceLock<Option<SortedPaths>>,
}

/// Sorted, distinct paths in one buffer. Kept for the whole run once read (a build walks its
/// steps' folders again), where a `String` each cost 72 MB at 1,000,000 tracked files.
#[derive(Default)]
struct SortedPaths {
    text: String,
    /// Where each path ends in `text`; the next one starts there.
    ends: Vec<usize>,
}

impl SortedPaths {
    fn push(&mut self, path: &str) {
        self.text.push_str(path);
        self.ends.push(self.text.len());
    }

    fn len(&self) -> usize {
        self.ends.len()
    }

    fn get(&self, i: usize) -> &str {
        let start = if i == 0 { 0 } else { self.ends[i - 1] };
        &self.text[start..self.ends[i]]
    }

    /// These paths in byte order, each once: git's index is, but for the stages of a
    /// conflicted path (and should another writer differ).
    fn sorted(self) -> SortedPaths {
        if (1..self.len()).all(|i| self.get(i - 1) < self.get(i)) {
            return self;
        }
        let mut order: Vec<&str> = (0..self.len()).map(|i| self.get(i)).collect();
        order.sort_unstable();
        order.dedup();
        let mut sorted = SortedPaths::default();
        for path in order {
            sorted.push(path);
        }
        sorted
    }

    /// The first index whose path is not `before` (all those before it are).
    fn partition_point(&self, before: impl Fn(&str) -> bool) -> usize {
        let (mut low, mut high) = (0, self.len());
        while low < high {
            let mid = low + (high - low) / 2;
            if before(self.get(mid)) {
                low = mid + 1;
            } else {
                high = mid;
            }
        }
        low
    }
}

#[derive(Default)]
struct Memo {
    below: HashMap<String, Arc<[String]>>,
    /// Answers added since the memo was read: it is written back only then.
    added: bool,
}

impl Tracked {
    /// The index of the git work tree holding `root`, if there is one; `memo_path` is where
    /// the answers are kept between runs (`None`: not kept). A `.git` file (a linked worktree,
    /// a submodule) names the git folder holding the index.
    #[must_use]
    pub fn find(root: &Path, memo_path: Option<&Path>) -> Option<Tracked> {
        let (top, git_dir) = git_dir_above(root)?;
        let index = git_dir.join("index");
        let index_stat = FileStat::from_metadata(&fs::metadata(&index).ok()?);
        let below = root.strip_prefix(&top).ok()?;
        let mut prefix = String::new();
        for part in below.components() {
            prefix.push_str(part.as_os_str().to_str()?);
            prefix.push('/');
        }
        let hash_len = if uses_sha256(&git_dir) { 32 } else { 20 };
        let tracked = Tracked {
            index,
            index_stat,
            prefix,
            hash_len,
            memo_path: memo_path.map(Path::to_path_buf),
            memo: Mutex::new(Memo::default()),
            paths: OnceLock::new(),
        };
        if let Some(below) = memo_path.and_then(|path| tracked.read_memo(path)) {
            tracked.memo.lock().ok()?.below = below;
        }
        Some(tracked)
    }

    /// The tracked paths (relative to the workspace root) equal to `rel` or below it as a
    /// folder, sorted; empty when none is, or when the index cannot be read.
    pub(crate) fn at_or_below(&self, rel: &str) -> Arc<[String]> {
        if let Some(known) = self
            .memo
            .lock()
            .ok()
            .and_then(|m| m.below.get(rel).cloned())
        {
            return known;
        }
        let found: Arc<[String]> = match self.paths.get_or_init(|| self.read_index()) {
            Some(paths) => at_or_below(paths, rel).into(),
            None => Arc::from(Vec::new()),
        };
        if let Ok(mut memo) = self.memo.lock() {
            memo.below.insert(rel.to_owned(), found.clone());
            memo.added = true;
        }
        found
    }

    /// Keep the answers for the next walk, if new ones were found and the index's stat is
    /// settled (the racy-timestamp rule: an index rewritten within the same clock tick could
    /// keep its stat). A memo that cannot be written only costs the next walk a read.
    pub fn save(&self, started_ns: i64) {
        let Some(path) = &self.memo_path else { return };
        let Ok(memo) = self.memo.lock() else { return };
        if !memo.added
            || !settled(
                self.index_stat.mtime_ns,
                self.index_stat.ctime_ns,
                started_ns,
            )
            || !path.parent().is_some_and(Path::is_dir)
        {
            return;
        }
        let bytes = self.encode_memo(&memo.below);
        let temp = temp_path(path);
        let written = fs::File::create(&temp)
            .and_then(|mut file| file.write_all(&bytes))
            .and_then(|()| fs::rename(&temp, path));
        if written.is_err() {
            let _ = fs::remove_file(&temp);
        }
    }

    fn read_index(&self) -> Option<SortedPaths> {
        let bytes = fs::read(&self.index).ok()?;
        let mut paths = SortedPaths::default();
        index_paths(&bytes, self.hash_len, |path| {
            if let Some(rel) = std::str::from_utf8(path)
                .ok()
                .and_then(|path| path.strip_prefix(self.prefix.as_str()))
            {
                paths.push(rel);
            }
        })?;
        Some(paths.sorted())
    }

    /// The header every memo starts with: what its answers are valid for.
    fn memo_header(&self) -> Vec<u8> {
        let mut header = MEMO_MAGIC.to_vec();
        put_bytes(&mut header, self.index.to_string_lossy().as_bytes());
        put_bytes(&mut header, self.prefix.as_bytes());
        let stat = &self.index_stat;
        for value in [stat.dev, stat.ino, stat.size] {
            header.extend_from_slice(&value.to_le_bytes());
        }
        for value in [stat.mtime_ns, stat.ctime_ns] {
            header.extend_from_slice(&value.to_le_bytes());
        }
        header
    }

    fn encode_memo(&self, below: &HashMap<String, Arc<[String]>>) -> Vec<u8> {
        let mut bytes = self.memo_header();
        put_len(&mut bytes, below.len());
        for (rel, paths) in below {
            put_bytes(&mut bytes, rel.as_bytes());
            put_len(&mut bytes, paths.len());
            for path in paths.iter() {
                put_bytes(&mut bytes, path.as_bytes());
            }
        }
        let check = blake3::hash(&bytes);
        bytes.extend_from_slice(check.as_bytes());
        bytes
    }

    /// The memo at `path`, when it was written for this index in its current state; a damaged
    /// or foreign file is no memo.
    fn read_memo(&self, path: &Path) -> Option<HashMap<String, Arc<[String]>>> {
        let bytes = fs::read(path).ok()?;
        let (body, check) = bytes.split_at_checked(bytes.len().checked_sub(32)?)?;
        if blake3::hash(body).as_bytes() != check {
            return None;
        }
        let mut reader = Reader {
            rest: body.strip_prefix(self.memo_header().as_slice())?,
        };
        let count = reader.len()?;
        let mut below = HashMap::with_capacity(count.min(1 << 16));
        for _ in 0..count {
            let rel = reader.string()?;
            let n = reader.len()?;
            let paths = (0..n)
                .map(|_| reader.string())
                .collect::<Option<Vec<String>>>()?;
            below.insert(rel, paths.into());
        }
        reader.rest.is_empty().then_some(below)
    }
}

const MEMO_MAGIC: &[u8] = b"once tracked-ignored 1\n";

fn put_len(bytes: &mut Vec<u8>, len: usize) {
    bytes.extend_from_slice(&(len as u64).to_le_bytes());
}

fn put_bytes(bytes: &mut Vec<u8>, item: &[u8]) {
    put_len(bytes, item.len());
    bytes.extend_from_slice(item);
}

struct Reader<'a> {
    rest: &'a [u8],
}

impl Reader<'_> {
    fn len(&mut self) -> Option<usize> {
        let (head, rest) = self.rest.split_first_chunk::<8>()?;
        self.rest = rest;
        usize::try_from(u64::from_le_bytes(*head)).ok()
    }

    fn string(&mut self) -> Option<String> {
        let len = self.len()?;
        let (item, rest) = self.rest.split_at_checked(len)?;
        self.rest = rest;
        String::from_utf8(item.to_vec()).ok()
    }
}

/// The paths of `paths` equal to `rel` or below it as a folder.
fn at_or_below(paths: &SortedPaths, rel: &str) -> Vec<String> {
    let mut found = Vec::new();
    let at = paths.partition_point(|path| path < rel);
    if at < paths.len() && paths.get(at) == rel {
        found.push(rel.to_owned());
    }
    // Not right after `rel` itself: `a.txt` sorts between `a` and `a/b`.
    let folder = format!("{rel}/");
    let start = paths.partition_point(|path| path < folder.as_str());
    found.extend(
        (start..paths.len())
            .map(|i| paths.get(i))
            .take_while(|path| path.starts_with(&folder))
            .map(str::to_owned),
    );
    found
}

/// The top folder of the git work tree holding `root` and its git folder: the nearest folder
/// at or above `root` with a `.git` entry (a folder, or a file naming one as `gitdir: ...`).
fn git_dir_above(root: &Path) -> Option<(PathBuf, PathBuf)> {
    for folder in root.ancestors() {
        let dot_git = folder.join(".git");
        let Ok(meta) = fs::metadata(&dot_git) else {
            continue;
        };
        if meta.is_dir() {
            return Some((folder.to_path_buf(), dot_git));
        }
        let text = fs::read_to_string(&dot_git).ok()?;
        let named = text.lines().next()?.strip_prefix("gitdir:")?.trim();
        return Some((folder.to_path_buf(), folder.join(named)));
    }
    None
}

/// Whether the repository's objects are named by SHA-256 (`extensions.objectFormat`), which
/// makes every index entry 12 bytes longer. Read from the config of the main repository (a
/// linked worktree's git folder names it in `commondir`).
fn uses_sha256(git_dir: &Path) -> bool {
    let common = fs::read_to_string(git_dir.join("commondir"))
        .ok()
        .map_or_else(|| git_dir.to_path_buf(), |dir| git_dir.join(dir.trim()));
    fs::read_to_string(common.join("config")).is_ok_and(|config| {
        config.lines().any(|line| {
            let line = line.trim().to_ascii_lowercase();
            line.starts_with("objectformat") && line.ends_with("sha256")
        })
    })
}

/// Size of the fixed part of an index entry before the object id: ctime, mtime (8 bytes
/// each), dev, ino, mode, uid, gid, size (4 bytes each).
const ENTRY_STATS: usize = 40;
/// Mode bits of a submodule (a commit, not a file) and of a sparse index's folder entry.
const GITLINK: u32 = 0o160_000;
const SPARSE_DIR: u32 = 0o040_000;

/// Each path of the file entries of an index (format versions 2, 3 and 4) given to `visit`,
/// as git stores them; `None` for anything else, or a split index (whose entries live partly
/// in another file): the walk then knows no tracked file, as before it asked git.
pub(crate) fn index_paths(
    bytes: &[u8],
    hash_len: usize,
    mut visit: impl FnMut(&[u8]),
) -> Option<()> {
    let word = |at: usize| -> Option<u32> {
        Some(u32::from_be_bytes(bytes.get(at..at + 4)?.try_into().ok()?))
    };
    if bytes.get(..4)? != b"DIRC" {
        return None;
    }
    let version = word(4)?;
    if !(2..=4).contains(&version) {
        return None;
    }
    let count = usize::try_from(word(8)?).ok()?;
    // Version 4: each path is the previous one with its last N bytes replaced.
    let mut previous: Vec<u8> = Vec::new();
    let mut at = 12;
    for _ in 0..count {
        let start = at;
        let mode = word(start + 24)?;
        let flags_at = start + ENTRY_STATS + hash_len;
        let flags = u16::from_be_bytes(bytes.get(flags_at..flags_at + 2)?.try_into().ok()?);
        let mut path_at = flags_at + 2;
        // Version 3 and later: an extended entry has a second flags word.
        if version >= 3 && flags & 0x4000 != 0 {
            path_at += 2;
        }
        let path: &[u8] = if version == 4 {
            let (strip, used) = varint(bytes.get(path_at..)?)?;
            let suffix_at = path_at + used;
            let end = suffix_at + nul(bytes.get(suffix_at..)?)?;
            let keep = previous.len().checked_sub(strip)?;
            previous.truncate(keep);
            previous.extend_from_slice(&bytes[suffix_at..end]);
            at = end + 1;
            &previous
        } else {
            let end = path_at + nul(bytes.get(path_at..)?)?;
            // Entries are padded with 1 to 8 NULs to a multiple of 8 bytes.
            at = start + ((end - start + 8) & !7);
            &bytes[path_at..end]
        };
        let kind = mode & 0o170_000;
        if kind != GITLINK && kind != SPARSE_DIR {
            visit(path);
        }
    }
    // Extensions follow the entries: a 4-byte signature and a 4-byte size each, then the
    // checksum of the whole file.
    while at + 8 + hash_len <= bytes.len() {
        let signature = bytes.get(at..at + 4)?;
        if signature == b"link" {
            return None;
        }
        let size = usize::try_from(word(at + 4)?).ok()?;
        at = at.checked_add(8 + size)?;
    }
    Some(())
}

/// Where the first NUL of `bytes` is.
fn nul(bytes: &[u8]) -> Option<usize> {
    bytes.iter().position(|&b| b == 0)
}

/// Git's offset varint (`varint.c`): 7 bits a byte, high bit for more, and each continuation
/// adds one before shifting so that every number has one encoding. (value, bytes used).
fn varint(bytes: &[u8]) -> Option<(usize, usize)> {
    let mut value: usize = 0;
    for (i, &byte) in bytes.iter().enumerate().take(9) {
        if i > 0 {
            value = value.checked_add(1)?.checked_shl(7)?;
        }
        value |= usize::from(byte & 0x7f);
        if byte & 0x80 == 0 {
            return Some((value, i + 1));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints_read_as_git_writes_them() {
        assert_eq!(varint(&[0x00]), Some((0, 1)));
        assert_eq!(varint(&[0x7f]), Some((127, 1)));
        // 128 is 0x80 0x00 in git's encoding (not 0x81 0x00 as in LEB128 order).
        assert_eq!(varint(&[0x80, 0x00]), Some((128, 2)));
        assert_eq!(varint(&[0x80, 0x01]), Some((129, 2)));
        assert_eq!(varint(&[0xff]), None);
    }

    #[test]
    fn paths_at_or_below_skip_siblings_sorting_between() {
        let mut paths = SortedPaths::default();
        // Out of order, one twice: as a conflicted path's stages could come.
        for path in ["a/b", "a", "a.txt", "a/c/d", "ab", "b", "a.txt"] {
            paths.push(path);
        }
        let paths = paths.sorted();
        assert_eq!(
            (0..paths.len()).map(|i| paths.get(i)).collect::<Vec<_>>(),
            ["a", "a.txt", "a/b", "a/c/d", "ab", "b"]
        );
        assert_eq!(at_or_below(&paths, "a"), ["a", "a/b", "a/c/d"]);
        assert_eq!(at_or_below(&paths, "a/c"), ["a/c/d"]);
        assert!(at_or_below(&paths, "c").is_empty());
    }

    fn git(dir: &Path, args: &[&str]) -> String {
        let out = std::process::Command::new("git")
            .args(args)
            .current_dir(dir)
            .output()
            .unwrap();
        assert!(out.status.success(), "git {args:?}");
        String::from_utf8(out.stdout).unwrap()
    }

    /// The paths read from the index are those `git ls-files` lists, in every index version
    /// git writes (version 3 when an entry has extended flags, here an intent-to-add one).
    #[test]
    fn index_paths_match_git_in_versions_2_3_and_4() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        git(root, &["init", "-q"]);
        for rel in [
            "a.txt",
            "a/b.txt",
            "a/b/c.txt",
            "a/bc.txt",
            "zz/long-name-here.txt",
        ] {
            let path = root.join(rel);
            fs::create_dir_all(path.parent().unwrap()).unwrap();
            fs::write(path, rel).unwrap();
        }
        git(root, &["add", "."]);
        fs::write(root.join("later.txt"), "x").unwrap();
        git(root, &["add", "-N", "later.txt"]);
        let listed = git(root, &["ls-files", "-z"]);
        let expected: Vec<&[u8]> = listed
            .split('\0')
            .filter(|p| !p.is_empty())
            .map(str::as_bytes)
            .collect();
        for version in ["2", "3", "4"] {
            git(root, &["update-index", "--index-version", version]);
            let bytes = fs::read(root.join(".git/index")).unwrap();
            let mut paths: Vec<Vec<u8>> = Vec::new();
            index_paths(&bytes, 20, |path| paths.push(path.to_vec())).unwrap();
            assert_eq!(paths, expected, "index version {version}");
        }
    }
}
