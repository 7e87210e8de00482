//! One open folder: its entries, and the stat or contents of each, named relative to it.
//!
//! On Unix every operation goes through the folder's descriptor (`getdents`, `statx`/`fstatat`,
//! `openat`): the kernel resolves one name instead of the whole path, which was a fifth of the
//! walk's time when each file was stat'ed by its full path (`perf`: `__d_lookup_rcu`,
//! `link_path_walk`). Elsewhere the same calls take the joined path.

use std::path::Path;

/// What a folder entry is, as the listing reports it (symlinks are not followed).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    Dir,
    File,
    Symlink,
    /// Sockets, FIFOs, devices: never inputs.
    Other,
}

/// A folder's entries (without `.` and `..`), names kept in one buffer: no allocation per entry.
pub(crate) struct Listing {
    /// Each name followed by a NUL, so Unix calls can take it as a C string as it is.
    names: Vec<u8>,
    entries: Vec<Entry>,
}

#[derive(Clone, Copy)]
pub(crate) struct Entry {
    start: u32,
    len: u32,
    pub kind: Kind,
}

impl Listing {
    fn with_capacity(entries: usize) -> Listing {
        Listing {
            names: Vec::with_capacity(entries * 16),
            entries: Vec::with_capacity(entries),
        }
    }

    fn push(&mut self, name: &[u8], kind: Kind) {
        let start = self.names.len() as u32;
        self.names.extend_from_slice(name);
        self.names.push(0);
        self.entries.push(Entry {
            start,
            len: name.len() as u32,
            kind,
        });
    }

    pub fn entries(&self) -> &[Entry] {
        &self.entries
    }

    /// The entry's name as bytes, without the NUL.
    pub fn name(&self, entry: &Entry) -> &[u8] {
        &self.names[entry.start as usize..(entry.start + entry.len) as usize]
    }

    /// The entry's name as the platform calls take it.
    pub fn name_arg(&self, entry: &Entry) -> &NameArg {
        name_arg(&self.names[entry.start as usize..=(entry.start + entry.len) as usize])
    }

    /// Sort in the order of the paths below this folder: a folder sorts as its name followed
    /// by `/`, so concatenating each entry's files in this order gives the byte order of the
    /// full paths (`a-b` before `a/x`, since `-` < `/`) without sorting them all at the end.
    pub fn sort_as_paths(&mut self) {
        let names = &self.names;
        let name = |entry: &Entry| &names[entry.start as usize..(entry.start + entry.len) as usize];
        self.entries.sort_unstable_by(|a, b| {
            let (a_name, b_name) = (name(a), name(b));
            let common = a_name.len().min(b_name.len());
            a_name[..common].cmp(&b_name[..common]).then_with(|| {
                // One name is a prefix of the other: compare the byte after it, where a
                // folder's name goes on with `/` and a file's ends (two names differ, and
                // none holds a `/`, so this decides).
                let next = |name: &[u8], entry: &Entry| {
                    name.get(common)
                        .copied()
                        .or((entry.kind == Kind::Dir).then_some(b'/'))
                };
                next(a_name, a).cmp(&next(b_name, b))
            })
        });
    }
}

/// `rel` (bytes of a `/`-separated path) as a `Path`, for ignore-rule matching.
#[cfg(unix)]
pub(crate) fn rel_path(rel: &[u8]) -> &Path {
    use std::os::unix::ffi::OsStrExt;
    Path::new(std::ffi::OsStr::from_bytes(rel))
}

/// Names are UTF-8 here (the listing refuses others), so the conversion cannot fail.
#[cfg(not(unix))]
pub(crate) fn rel_path(rel: &[u8]) -> &Path {
    Path::new(std::str::from_utf8(rel).unwrap_or_default())
}

#[cfg(unix)]
pub(crate) use unix::{
    is_symlink_refusal, mark_used_path, name_arg, open_no_follow, Directory, NameArg,
};

#[cfg(not(unix))]
pub(crate) use portable::{
    is_symlink_refusal, mark_used_path, name_arg, open_no_follow, Directory, NameArg,
};

#[cfg(unix)]
mod unix {
    use std::cell::RefCell;
    use std::ffi::CStr;
    use std::fs::File;
    use std::io;
    use std::os::fd::{AsFd, OwnedFd};
    use std::os::unix::ffi::OsStrExt;
    use std::path::{Path, PathBuf};

    use rustix::fs::{AtFlags, FileType, Mode, OFlags};

    use super::{Kind, Listing};
    use crate::walk::FileStat;

    pub(crate) type NameArg = CStr;

    /// `bytes` ends with the listing's NUL and holds no other (names cannot contain one).
    pub(crate) fn name_arg(bytes: &[u8]) -> &CStr {
        CStr::from_bytes_with_nul(bytes).unwrap_or_default()
    }

    pub(crate) struct Directory {
        fd: OwnedFd,
        path: PathBuf,
    }

    fn kind_of(file_type: FileType) -> Option<Kind> {
        Some(match file_type {
            FileType::Directory => Kind::Dir,
            FileType::RegularFile => Kind::File,
            FileType::Symlink => Kind::Symlink,
            FileType::Unknown => return None,
            _ => Kind::Other,
        })
    }

    impl Directory {
        /// Open the folder at `path`; a symlink to a folder is followed only when `follow`.
        /// A failure gives the path back, for the error to name.
        pub fn open(path: PathBuf, follow: bool) -> Result<Directory, (PathBuf, io::Error)> {
            let mut flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC;
            if !follow {
                flags |= OFlags::NOFOLLOW;
            }
            match rustix::fs::open(&path, flags, Mode::empty()) {
                Ok(fd) => Ok(Directory { fd, path }),
                Err(err) => Err((path, err.into())),
            }
        }

        pub fn path(&self) -> &Path {
            &self.path
        }

        pub fn child_path(&self, name: &CStr) -> PathBuf {
            self.path.join(std::ffi::OsStr::from_bytes(name.to_bytes()))
        }

        /// Every entry but `.` and `..`. An entry whose type the listing does not carry (some
        /// file systems leave `d_type` unset) is stat'ed for it.
        pub fn list(&self) -> io::Result<Listing> {
            let mut listing = Listing::with_capacity(16);
            let mut unknown = Vec::new();
            read_entries(&self.fd, |name, file_type| {
                let bytes = name.to_bytes();
                if bytes == b"." || bytes == b".." {
                    return;
                }
                if let Some(kind) = kind_of(file_type) {
                    listing.push(bytes, kind);
                } else {
                    unknown.push(listing.entries.len());
                    listing.push(bytes, Kind::Other);
                }
            })?;
            for index in unknown {
                let entry = listing.entries[index];
                let stat = rustix::fs::statat(
                    &self.fd,
                    listing.name_arg(&entry),
                    AtFlags::SYMLINK_NOFOLLOW,
                );
                listing.entries[index].kind = match stat {
                    Ok(stat) => {
                        kind_of(FileType::from_raw_mode(stat.st_mode)).unwrap_or(Kind::Other)
                    }
                    // Gone since the listing: nothing to report.
                    Err(_) => Kind::Other,
                };
            }
            Ok(listing)
        }

        /// The stat of entry `name`, following a symlink when `follow`; `None` when it is not
        /// a regular file (any more).
        pub fn stat_file(&self, name: &CStr, follow: bool) -> io::Result<Option<FileStat>> {
            stat_file(&self.fd, name, follow)
        }

        /// Open entry `name` for reading (a symlink is followed).
        pub fn open_file(&self, name: &CStr) -> io::Result<File> {
            let fd = rustix::fs::openat(
                &self.fd,
                name,
                OFlags::RDONLY | OFlags::CLOEXEC | OFlags::NOCTTY,
                Mode::empty(),
            )?;
            Ok(File::from(fd))
        }

        /// Open entry `name` for reading, refusing a symlink (`ELOOP`).
        pub fn open_file_no_follow(&self, name: &CStr) -> io::Result<File> {
            let fd = rustix::fs::openat(
                &self.fd,
                name,
                OFlags::RDONLY | OFlags::CLOEXEC | OFlags::NOCTTY | OFlags::NOFOLLOW,
                Mode::empty(),
            )?;
            Ok(File::from(fd))
        }

        /// Set entry `name`'s mtime to now (see `mark_used_at`).
        pub fn mark_used(&self, name: &CStr) -> bool {
            mark_used_at(&self.fd, name)
        }
    }

    /// Open `path` for reading, refusing a symlink as its last component (`ELOOP`).
    pub(crate) fn open_no_follow(path: &Path) -> io::Result<File> {
        let fd = rustix::fs::open(
            path,
            OFlags::RDONLY | OFlags::CLOEXEC | OFlags::NOCTTY | OFlags::NOFOLLOW,
            Mode::empty(),
        )?;
        Ok(File::from(fd))
    }

    /// Whether an open failed because `open_no_follow` met a symlink.
    pub(crate) fn is_symlink_refusal(err: &io::Error) -> bool {
        err.raw_os_error() == Some(rustix::io::Errno::LOOP.raw_os_error())
    }

    /// `mark_used_at` of a path relative to the current folder (or absolute).
    pub(crate) fn mark_used_path(path: &Path) -> bool {
        mark_used_at(rustix::fs::CWD, path)
    }

    /// Set the mtime of `path` (relative to folder `dir`) to now: one `utimensat`, with the
    /// kernel's clock, which needs only write permission, where opening the file to set it
    /// costs three syscalls. False when that fails.
    fn mark_used_at<Fd: AsFd, P: rustix::path::Arg>(dir: Fd, path: P) -> bool {
        use rustix::fs::{utimensat, Timespec, Timestamps, UTIME_NOW, UTIME_OMIT};
        let times = Timestamps {
            last_access: Timespec {
                tv_sec: 0,
                tv_nsec: UTIME_OMIT,
            },
            last_modification: Timespec {
                tv_sec: 0,
                tv_nsec: UTIME_NOW,
            },
        };
        utimensat(dir, path, &times, AtFlags::empty()).is_ok()
    }

    /// Call `each` with every raw entry of the folder. Linux reads them straight from a reused
    /// `getdents64` buffer; other systems through rustix's allocating `Dir`.
    #[cfg(any(target_os = "linux", target_os = "android"))]
    fn read_entries(fd: &OwnedFd, mut each: impl FnMut(&CStr, FileType)) -> io::Result<()> {
        thread_local! {
            // 32 KiB: a few hundred entries per system call, reused by every folder this
            // thread lists.
            static DIRENT_BUFFER: RefCell<Vec<u8>> = RefCell::new(Vec::with_capacity(32 * 1024));
        }
        DIRENT_BUFFER.with(|buffer| {
            let mut buffer = buffer.borrow_mut();
            let mut entries = rustix::fs::RawDir::new(fd, buffer.spare_capacity_mut());
            while let Some(entry) = entries.next() {
                let entry = entry?;
                each(entry.file_name(), entry.file_type());
            }
            Ok(())
        })
    }

    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    fn read_entries(fd: &OwnedFd, mut each: impl FnMut(&CStr, FileType)) -> io::Result<()> {
        let mut dir = rustix::fs::Dir::read_from(fd)?;
        while let Some(entry) = dir.read() {
            let entry = entry?;
            each(entry.file_name(), entry.file_type());
        }
        Ok(())
    }

    /// `statx` where the kernel has it, with the fields and device encoding std uses, so a stat
    /// from the walk equals `FileStat::from_metadata` of the same file (the snapshot compares
    /// the two after a command ran).
    #[cfg(any(target_os = "linux", target_os = "android"))]
    fn stat_file(fd: &OwnedFd, name: &CStr, follow: bool) -> io::Result<Option<FileStat>> {
        use rustix::fs::StatxFlags;
        let flags = if follow {
            AtFlags::empty()
        } else {
            AtFlags::SYMLINK_NOFOLLOW
        };
        match rustix::fs::statx(fd, name, flags, StatxFlags::BASIC_STATS) {
            Ok(stat) => {
                if FileType::from_raw_mode(u32::from(stat.stx_mode)) != FileType::RegularFile {
                    return Ok(None);
                }
                Ok(Some(FileStat::from_parts(
                    rustix::fs::makedev(stat.stx_dev_major, stat.stx_dev_minor),
                    stat.stx_ino,
                    stat.stx_size,
                    (stat.stx_mtime.tv_sec, i64::from(stat.stx_mtime.tv_nsec)),
                    (stat.stx_ctime.tv_sec, i64::from(stat.stx_ctime.tv_nsec)),
                    u32::from(stat.stx_mode),
                )))
            }
            // Kernels before 4.11 and some sandboxes: the classic call, as std falls back too.
            Err(rustix::io::Errno::NOSYS | rustix::io::Errno::PERM) => {
                stat_file_classic(fd, name, flags)
            }
            Err(err) => Err(err.into()),
        }
    }

    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    fn stat_file(fd: &OwnedFd, name: &CStr, follow: bool) -> io::Result<Option<FileStat>> {
        let flags = if follow {
            AtFlags::empty()
        } else {
            AtFlags::SYMLINK_NOFOLLOW
        };
        stat_file_classic(fd, name, flags)
    }

    // The field types of `struct stat` differ between systems; each cast is to what std's
    // `MetadataExt` returns for the same field.
    #[allow(clippy::unnecessary_cast, clippy::useless_conversion)]
    fn stat_file_classic(
        fd: &OwnedFd,
        name: &CStr,
        flags: AtFlags,
    ) -> io::Result<Option<FileStat>> {
        let stat = rustix::fs::statat(fd, name, flags)?;
        if FileType::from_raw_mode(stat.st_mode as _) != FileType::RegularFile {
            return Ok(None);
        }
        Ok(Some(FileStat::from_parts(
            stat.st_dev as u64,
            stat.st_ino as u64,
            stat.st_size as u64,
            (stat.st_mtime as i64, stat.st_mtime_nsec as i64),
            (stat.st_ctime as i64, stat.st_ctime_nsec as i64),
            stat.st_mode as u32,
        )))
    }
}

#[cfg(not(unix))]
mod portable {
    use std::fs::{self, File};
    use std::io;
    use std::path::{Path, PathBuf};

    use super::{Kind, Listing};
    use crate::walk::FileStat;

    pub(crate) type NameArg = str;

    /// `bytes` is a UTF-8 name followed by the listing's NUL.
    pub(crate) fn name_arg(bytes: &[u8]) -> &str {
        std::str::from_utf8(&bytes[..bytes.len() - 1]).unwrap_or_default()
    }

    pub(crate) struct Directory {
        path: PathBuf,
    }

    impl Directory {
        pub fn open(path: PathBuf, _follow: bool) -> Result<Directory, (PathBuf, io::Error)> {
            match fs::metadata(&path) {
                Ok(meta) if meta.is_dir() => Ok(Directory { path }),
                Ok(_) => Err((path, io::Error::from(io::ErrorKind::NotADirectory))),
                Err(err) => Err((path, err)),
            }
        }

        pub fn path(&self) -> &Path {
            &self.path
        }

        pub fn child_path(&self, name: &str) -> PathBuf {
            self.path.join(name)
        }

        pub fn list(&self) -> io::Result<Listing> {
            let mut listing = Listing::with_capacity(16);
            for entry in fs::read_dir(&self.path)? {
                let entry = entry?;
                let name = entry.file_name();
                let Some(name) = name.to_str() else {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        "file name is not valid Unicode; once needs UTF-8 paths",
                    ));
                };
                let file_type = entry.file_type()?;
                let kind = if file_type.is_dir() {
                    Kind::Dir
                } else if file_type.is_file() {
                    Kind::File
                } else if file_type.is_symlink() {
                    Kind::Symlink
                } else {
                    Kind::Other
                };
                listing.push(name.as_bytes(), kind);
            }
            Ok(listing)
        }

        pub fn stat_file(&self, name: &str, follow: bool) -> io::Result<Option<FileStat>> {
            let path = self.path.join(name);
            let meta = if follow {
                fs::metadata(path)?
            } else {
                fs::symlink_metadata(path)?
            };
            Ok(meta.is_file().then(|| FileStat::from_metadata(&meta)))
        }

        pub fn open_file(&self, name: &str) -> io::Result<File> {
            File::open(self.path.join(name))
        }

        pub fn open_file_no_follow(&self, name: &str) -> io::Result<File> {
            open_no_follow(&self.path.join(name))
        }

        pub fn mark_used(&self, name: &str) -> bool {
            mark_used_path(&self.path.join(name))
        }
    }

    /// Without `O_NOFOLLOW`: a symlink is refused by a look first, which a race can defeat.
    pub(crate) fn open_no_follow(path: &Path) -> io::Result<File> {
        if fs::symlink_metadata(path)?.file_type().is_symlink() {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, SYMLINK_REFUSED));
        }
        File::open(path)
    }

    const SYMLINK_REFUSED: &str = "a symlink where a file was expected";

    pub(crate) fn is_symlink_refusal(err: &io::Error) -> bool {
        err.kind() == io::ErrorKind::InvalidInput && err.to_string() == SYMLINK_REFUSED
    }

    /// Set the mtime of `path` to now; false when that fails.
    pub(crate) fn mark_used_path(path: &Path) -> bool {
        fs::OpenOptions::new()
            .write(true)
            .open(path)
            .and_then(|file| file.set_modified(std::time::SystemTime::now()))
            .is_ok()
    }
}
