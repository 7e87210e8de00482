//! Read-only maps of files: the crate's one use of `unsafe`.
//!
//! A map is read in place, so a large file costs neither a copy nor a zeroed page of this
//! process per 4 KiB read into (the kernel maps the page cache's own pages, 16 per fault).

use std::fs::File;
use std::io;

use memmap2::{Mmap, MmapOptions};

/// Map `len` bytes of `file` from `offset` (a multiple of the page size), read-only.
///
/// The contract every caller keeps: the map is only read, and a file changed under it makes
/// the reads fault (truncated) or see mixed bytes (rewritten in place). That is the contract of
/// blake3's `update_mmap` and of `b3sum`, which map files alike; the files once maps are
/// either being hashed (mixed bytes give a digest that the next run's stat check catches) or
/// its own, which it only ever replaces whole by a rename, never changes in place.
#[allow(unsafe_code)]
pub(crate) fn map(file: &File, offset: u64, len: u64) -> io::Result<Mmap> {
    let len = usize::try_from(len).map_err(|_| io::Error::from(io::ErrorKind::FileTooLarge))?;
    // SAFETY: see above; `Mmap` only hands out `&[u8]`, and is unmapped when dropped.
    unsafe { MmapOptions::new().offset(offset).len(len).map(file) }
}

/// Drop this process's page-table entries for `map[offset..offset + len]`: the pages leave its
/// resident set (they stay in the page cache), and a later read of them faults them in again.
/// A hint: where it fails or is not supported, the pages simply stay counted.
#[allow(unsafe_code)]
pub(crate) fn release(map: &Mmap, offset: usize, len: usize) {
    let len = len.min(map.len().saturating_sub(offset));
    if len == 0 {
        return;
    }
    #[cfg(unix)]
    {
        // SAFETY: the map is a read-only map of a file (see `map`), so there is nothing of this
        // process's in the range to lose: `MADV_DONTNEED` on a file mapping only drops the
        // mapping of its pages, and a read of the range afterwards maps the file's pages
        // again, with the bytes the file holds, which by the contract above are the same.
        let _ =
            unsafe { map.unchecked_advise_range(memmap2::UncheckedAdvice::DontNeed, offset, len) };
    }
}
