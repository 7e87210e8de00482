//! Putting a manifest back on disk from blobs, and taking hard-linked outputs back from the store.

use std::collections::{BTreeSet, HashSet};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::Path;

use rayon::prelude::*;

use super::declared::Declared;
use super::outputs::FoundKind;
use super::{
    drop_corrupt_blob, is_executable, is_file, set_file_mode, set_mode, ActionEntry, LinkMode,
    OutputKind, Store, StoreLock, TempFile, BLOB_MODE, CAS,
};
use crate::error::{Error, IoContext};
use crate::hash::{hash_bytes, hash_file, Digest};
use crate::Result;

impl Store {
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
        declared.check_parents(workspace, &entry.outputs)?;
        for digest in entry.output_blobs() {
            let blob = self.blob_path(digest);
            if !is_file(&blob) {
                return Err(io::Error::from(io::ErrorKind::NotFound)).at(&blob);
            }
        }
        // No stale file survives a restore (Turborepo 10951). A folder the entry has is
        // emptied rather than removed: it may be a mount point.
        let kept: HashSet<&str> = entry
            .outputs
            .iter()
            .filter(|output| matches!(output.kind, OutputKind::Dir))
            .map(|output| output.path.as_str())
            .collect();
        self.remove_declared(workspace, &declared, &kept)?;

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
                    OutputKind::File { digest, executable } => match entry.inline.get(digest) {
                        Some(bytes) => write_inline(bytes, &dest, *executable),
                        None => restore_file(self, digest, &dest, *executable, link),
                    },
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
        let found = self.collect(workspace, &declared)?.found;
        // The copies are made in the store's `cas/`, never among the outputs, where a kill
        // would leave one for the next save to take as an output. A link to a blob is on the
        // store's file system, so a rename from there can replace it.
        let spare = self.root.join(CAS);
        let store_device = fs::metadata(&spare).ok().and_then(|meta| device(&meta));
        let linked: Vec<(&Path, fs::Metadata)> = found
            .values()
            .filter(|found| matches!(found.kind, FoundKind::File { .. }))
            .filter_map(|found| {
                let meta = fs::symlink_metadata(&found.abs).ok()?;
                // Elsewhere it cannot share its bytes with a blob.
                let from_store = is_read_only_link(&meta) && device(&meta) == store_device;
                from_store.then_some((found.abs.as_path(), meta))
            })
            .collect();
        if linked.is_empty() {
            return Ok(0);
        }
        // Held while copies sit in `cas/`, where a clear would otherwise delete them midway.
        let _copying = StoreLock::shared(&self.root)?;
        linked
            .par_iter()
            .try_for_each(|(abs, meta)| unshare(abs, meta, &spare))?;
        Ok(linked.len())
    }
}

/// Files smaller than this are copied by a read and a write rather than cloned. A clone of a
/// few KiB shares at most a block or two; where the file system cannot clone (ext4), the
/// attempt creates and unlinks the destination before the copy: 16 syscalls and two inode
/// creations per file instead of 8 and one (strace of a restore of 1,500 one-file outputs).
const CLONE_MIN: u64 = 64 * 1024;

/// Put blob `digest` at `dest`, checking on the way that its bytes still hash to its name:
/// a blob edited in place is deleted, and the restore fails as if it were gone (`NotFound`),
/// so the step is a miss and its save writes a sound blob again.
fn restore_file(
    store: &Store,
    digest: &Digest,
    dest: &Path,
    executable: bool,
    link: LinkMode,
) -> Result<()> {
    let blob = store.blob_path(digest);
    if link == LinkMode::Hardlink && !executable {
        // Read-only modes do not stop root: an output restored as a link may have been
        // written through, into the blob. Hashed before each new link, so no restore
        // hands on such an edit (measured in benches/RESULTS.md).
        if !store.blob_is_sound(digest, None)? {
            return Err(drop_corrupt_blob(&blob));
        }
        match fs::hard_link(&blob, dest) {
            // The blob is already `BLOB_MODE` (read-only), which is what the link must be.
            Ok(()) => return Ok(()),
            // Another file system (EXDEV), or one without links: a read-only copy instead.
            Err(err) if err.kind() != io::ErrorKind::NotFound => {}
            Err(err) => return Err(err).at(&blob),
        }
    }
    let mode = restored_mode(link, executable);
    let mut source = store.open_blob(digest)?;
    let size = source.metadata().at(&blob)?.len();
    if size < CLONE_MIN {
        let mut bytes = Vec::with_capacity(usize::try_from(size).unwrap_or(0));
        source.read_to_end(&mut bytes).at(&blob)?;
        if hash_bytes(&bytes) != *digest {
            return Err(drop_corrupt_blob(&blob));
        }
        return write_file(&bytes, dest, mode);
    }
    if clone_or_copy(source, &blob, dest)? != *digest {
        let _ = fs::remove_file(dest);
        return Err(drop_corrupt_blob(&blob));
    }
    // A clone has the blob's read-only mode, so set the manifest's after.
    set_mode(dest, mode)
}

/// An output file's mode once restored. A hard-link restore gives the modes of a link to a
/// blob (read-only) also to the files it copies.
fn restored_mode(link: LinkMode, executable: bool) -> u32 {
    match (link, executable) {
        (LinkMode::Copy, false) => 0o644,
        (LinkMode::Copy, true) => 0o755,
        (LinkMode::Hardlink, false) => BLOB_MODE,
        (LinkMode::Hardlink, true) => 0o555,
    }
}

/// Put an output the entry carries (`inline.rs`; its bytes were checked against their digest
/// when the entry was decoded) at `dest`: a private copy the user may edit, whatever the link
/// mode. There is no blob to link to, so nothing for a read-only mode to protect, and nothing
/// for `unshare_outputs` (which replaces only links) to make writable before a command that
/// rewrites it in place.
fn write_inline(bytes: &[u8], dest: &Path, executable: bool) -> Result<()> {
    write_file(bytes, dest, restored_mode(LinkMode::Copy, executable))
}

/// `bytes` at `dest`, with `mode`.
fn write_file(bytes: &[u8], dest: &Path, mode: u32) -> Result<()> {
    let mut file = create(dest)?;
    file.write_all(bytes).at(dest)?;
    // Set on the open file, whatever the umask made of the creation mode.
    set_file_mode(&file, mode).at(dest)
}

/// Put the blob `source` (at `blob`) at `dest`; returns the digest of what was put there.
fn clone_or_copy(mut source: File, blob: &Path, dest: &Path) -> Result<Digest> {
    // FICLONE (Linux), clonefile (macOS) or block cloning (ReFS) where the file system has it:
    // instant, and the bytes are shared until one side writes. Else a copy in the kernel
    // (`copy_file_range`). Either way hashed after, mapped and on every core: a restore of
    // 256 MiB then takes 1.5x the unchecked copy's time, where hashing as the bytes went
    // through user space took 4x (benches/RESULTS.md).
    match reflink_copy::reflink_file_to_path(&source, dest) {
        Ok(()) => {}
        Err(err)
            if matches!(
                err.kind(),
                io::ErrorKind::NotFound
                    | io::ErrorKind::PermissionDenied
                    | io::ErrorKind::AlreadyExists
            ) =>
        {
            return Err(err).at(dest);
        }
        // The file system cannot clone: copy.
        Err(_) => {
            let mut file = create(dest)?;
            io::copy(&mut source, &mut file).map_err(|err| {
                // The blob is the usual culprit (gone under a concurrent collection).
                let at = if is_file(blob) { dest } else { blob };
                Error::Io {
                    path: at.to_path_buf(),
                    source: err,
                }
            })?;
        }
    }
    hash_file(dest)
}

/// `dest` created, or emptied, for writing.
fn create(dest: &Path) -> Result<File> {
    OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(dest)
        .at(dest)
}

/// Replace `path` (whose metadata is `meta`) by a writable copy of itself, a clone where the
/// file system can, made in `spare` and renamed into place so the name never disappears.
fn unshare(path: &Path, meta: &fs::Metadata, spare: &Path) -> Result<()> {
    let mode = if is_executable(meta) { 0o755 } else { 0o644 };
    let (file, temp) = TempFile::create(spare)?;
    drop(file);
    // `reflink_or_copy` wants to create the destination itself.
    fs::remove_file(&temp.path).at(&temp.path)?;
    reflink_copy::reflink_or_copy(path, &temp.path).at(&temp.path)?;
    set_mode(&temp.path, mode)?;
    match temp.persist(path) {
        // The same file system mounted twice (a bind mount): no rename crosses that either.
        Err(Error::Io { source, .. }) if source.kind() == io::ErrorKind::CrossesDevices => {
            unshare_in_place(path, mode)
        }
        result => result,
    }
}

/// `unshare` without a rename: the name is missing for a moment, but the bytes are safe in the
/// blob the link shares them with.
fn unshare_in_place(path: &Path, mode: u32) -> Result<()> {
    let mut linked = File::open(path).at(path)?;
    fs::remove_file(path).at(path)?;
    let mut copy = OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
        .at(path)?;
    io::copy(&mut linked, &mut copy).at(path)?;
    set_file_mode(&copy, mode).at(path)
}

#[cfg(unix)]
// `Option` for the platforms without devices, where it is always `None`.
#[allow(clippy::unnecessary_wraps)]
fn device(meta: &fs::Metadata) -> Option<u64> {
    use std::os::unix::fs::MetadataExt;
    Some(meta.dev())
}

#[cfg(not(unix))]
fn device(_meta: &fs::Metadata) -> Option<u64> {
    None
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

#[cfg(unix)]
fn make_symlink(target: &str, link: &Path) -> Result<()> {
    std::os::unix::fs::symlink(target, link).at(link)
}

#[cfg(windows)]
fn make_symlink(target: &str, link: &Path) -> Result<()> {
    std::os::windows::fs::symlink_file(target, link).at(link)
}
