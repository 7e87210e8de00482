//! `once._core`: thin pyo3 bindings over `once-core`.
//!
//! Each function converts its Python arguments into owned Rust values, then makes one call into
//! the core with the GIL released (`py.detach`), then converts the result back. No Python object
//! is touched off the calling thread, so the module is safe without the GIL (`gil_used = false`).

// pyo3 extracts Python arguments into owned values; borrowing them instead is not an option.
#![allow(clippy::needless_pass_by_value)]

mod commands;
mod errors;
mod globs;
mod hashing;
mod pnpm_slices;
mod remote;
mod snapshot;
mod store;
mod yaml_values;

use pyo3::prelude::*;

// The walk, selection and keying make hundreds of thousands of small allocations on every
// thread of the pool; glibc's malloc spent a third of the walk's user time on them (perf).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[pymodule(gil_used = false)]
mod _core {
    #[pymodule_export]
    use crate::commands::{CommandEnv, CommandOutput, Commands};
    #[pymodule_export]
    use crate::errors::{GlobError, SymlinkedOutputError, UnsafePathError};
    #[pymodule_export]
    use crate::globs::Globs;
    #[pymodule_export]
    use crate::hashing::{files_hashed, hash_bytes, hash_files, write_b3sum};
    #[pymodule_export]
    use crate::pnpm_slices::{pnpm_file_slice_digests, pnpm_slice_digests};
    #[pymodule_export]
    use crate::remote::Remote;
    #[pymodule_export]
    use crate::snapshot::{
        action_key, action_keys, action_spec, settled, FileSet, KeyRequest, PendingScan, Snapshot,
    };
    #[pymodule_export]
    use crate::store::{Entry, OutputStats, SettleState, SettledHit, Store};
    #[pymodule_export]
    use crate::yaml_values::load_yaml;

    #[pymodule_export]
    // Python expects this dunder name for a module version.
    #[allow(non_upper_case_globals)]
    const __version__: &str = env!("CARGO_PKG_VERSION");

    #[pymodule_export]
    const KEY_FORMAT_VERSION: u32 = once_core::key::KEY_FORMAT_VERSION;
}
