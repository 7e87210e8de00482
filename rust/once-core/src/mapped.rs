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
