//! Hashing a file too large for one read: memory-mapped, across the rayon pool, in windows.
//!
//! Why windows rather than one map of the whole file (blake3's `update_mmap_rayon`, which is
//! what `b3sum` does): unmapping a 2 GiB map is one single-threaded `munmap` of 30-50 ms at the
//! very end, while the other core idles. Here each window is mapped, hashed and unmapped by the
//! thread that took it, so page-table setup and teardown overlap with hashing on the other core.
//! Measured on the 2 GiB file of `benches/scale.py` (2 cores, warm page cache, interleaved
//! runs): 5-7 % faster than the single map.
//!
//! Each window is a whole subtree of the BLAKE3 tree (split where the tree splits, with
//! `blake3::hazmat`), so the digest is exactly the one of hashing the bytes in one go.

use std::fs::File;
use std::io;

use blake3::hazmat::{
    left_subtree_len, merge_subtrees_non_root, merge_subtrees_root, ChainingValue, HasherExt, Mode,
};
use memmap2::Mmap;

use crate::hash::{Digest, MAP_WINDOW as WINDOW};
use crate::mapped;

/// The digest of `file`'s first `len` bytes (its size when stat'ed).
pub(crate) fn hash_mapped(file: &File, len: u64) -> io::Result<Digest> {
    if len <= WINDOW {
        let map = map(file, 0, len)?;
        let mut hasher = blake3::Hasher::new();
        hasher.update_rayon(&map);
        return Ok(Digest(*hasher.finalize().as_bytes()));
    }
    let (left, right) = children(file, 0, len)?;
    Ok(Digest(
        *merge_subtrees_root(&left, &right, Mode::Hash).as_bytes(),
    ))
}

/// The chaining values of the two children of the subtree at `offset` spanning `len` bytes,
/// hashed side by side.
fn children(file: &File, offset: u64, len: u64) -> io::Result<(ChainingValue, ChainingValue)> {
    let left = left_subtree_len(len);
    let (left_cv, right_cv) = rayon::join(
        || subtree(file, offset, left),
        || subtree(file, offset + left, len - left),
    );
    Ok((left_cv?, right_cv?))
}

/// The chaining value of a subtree that is not the root.
fn subtree(file: &File, offset: u64, len: u64) -> io::Result<ChainingValue> {
    if len > WINDOW {
        let (left, right) = children(file, offset, len)?;
        return Ok(merge_subtrees_non_root(&left, &right, Mode::Hash));
    }
    let map = map(file, offset, len)?;
    let mut hasher = blake3::Hasher::new();
    // `update_rayon` inside a window too: when the other thread is busy elsewhere it costs a
    // few joins; when the windows run out unevenly, the idle thread steals half of this one.
    hasher.set_input_offset(offset).update_rayon(&map);
    Ok(hasher.finalize_non_root())
}

fn map(file: &File, offset: u64, len: u64) -> io::Result<Mmap> {
    let map = mapped::map(file, offset, len)?;
    // Page-cache folios of 2 MiB (ext4 and XFS keep large files in them) are then mapped by
    // one page-table entry each instead of 512; a kernel that does not do it ignores the hint.
    #[cfg(target_os = "linux")]
    let _ = map.advise(memmap2::Advice::HugePage);
    Ok(map)
}
