//! One error type for the whole core; the bindings map it to Python exceptions in one place.

use std::io;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An I/O failure on a named path; the bindings keep its `OSError` subclass.
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// Writing a command's output failed (its reader went away, a full disk).
    #[error("cannot write the output: {0}")]
    Output(#[source] io::Error),
    /// A glob from a user's `once.toml` that does not parse.
    #[error("invalid glob '{pattern}': {message}")]
    Glob { pattern: String, message: String },
    /// A path (from a manifest or a user) that would leave the workspace.
    #[error("refusing path outside the workspace: {0}")]
    Escape(String),
    /// A batch of steps to key not in dependency order (a caller's mistake, never a user's).
    #[error("{label} depends on {dep}, which is not earlier in the batch")]
    KeyBatch { label: String, dep: String },
    /// A declared output reached through a symlink below its package folder: a restore or a
    /// removal there would follow the link, possibly out of the package.
    #[error(
        "output {output} is reached through the symlink {link} -> {target}; \
         once never writes or deletes through a symlink"
    )]
    Symlinked {
        output: String,
        link: String,
        target: String,
    },
    /// A cache file that cannot be decoded; callers treat it as absent.
    #[error("corrupt cache record {}: {message}", path.display())]
    Corrupt { path: PathBuf, message: String },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Attach the path to an `io::Error`, so every message names the file at fault.
pub trait IoContext<T> {
    fn at(self, path: &Path) -> Result<T>;
}

impl<T> IoContext<T> for io::Result<T> {
    fn at(self, path: &Path) -> Result<T> {
        self.map_err(|source| Error::Io {
            path: path.to_path_buf(),
            source,
        })
    }
}
