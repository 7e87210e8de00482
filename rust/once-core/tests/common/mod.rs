//! What several store test files share: a temporary workspace beside a temporary store.

use std::path::PathBuf;

use once_core::store::Store;

/// A workspace folder and an open store, both removed when it drops; each test file adds the
/// helpers it needs in its own `impl Fixture`.
pub struct Fixture {
    _dirs: [tempfile::TempDir; 2],
    pub ws: PathBuf,
    pub store: Store,
}

impl Fixture {
    pub fn new() -> Fixture {
        let ws_dir = tempfile::tempdir().unwrap();
        let store_dir = tempfile::tempdir().unwrap();
        let store = Store::open(store_dir.path()).unwrap();
        Fixture {
            ws: ws_dir.path().to_path_buf(),
            _dirs: [ws_dir, store_dir],
            store,
        }
    }
}
