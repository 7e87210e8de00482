//! The pure Rust core of `once`: everything whose cost grows with the number or size of files.
//!
//! No pyo3 here: this crate is tested and benchmarked with cargo alone, and `once-py` only
//! converts types, maps errors and releases the GIL around calls into it.

mod directory;
pub mod error;
pub mod evict;
pub mod hash;
mod ignore_file;
pub mod key;
mod mapped;
mod mapped_hash;
pub mod outputstats;
pub mod pnpm_slices;
pub mod select;
pub mod snapshot;
pub mod spawn;
pub mod statcache;
pub mod store;
pub mod tracked;
pub mod usage_ledger;
pub mod walk;
pub mod yaml_values;

pub use error::{Error, Result};
pub use hash::Digest;
