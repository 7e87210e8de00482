//! A stat cache file (`.once/statcache`, and `.once/outputs` in the same format): as read, and
//! with its trailing checksum made to hold so that the records are parsed; looked up in order
//! as a walk does.
#![no_main]

use libfuzzer_sys::fuzz_target;
use once_core::statcache::{SortedStatCache, StatCache};
use once_core::walk::FileStat;

fuzz_target!(|data: &[u8]| {
    let body = &data[..data.len().saturating_sub(32)];
    let resealed = [body, blake3::hash(body).as_bytes()].concat();
    for bytes in [data.to_vec(), resealed] {
        let cache = StatCache::from_bytes(bytes.clone());
        let stat = FileStat {
            dev: 0,
            ino: 0,
            size: 0,
            mtime_ns: 0,
            ctime_ns: 0,
            mode: 0,
        };
        for (rel, _, _) in cache.records() {
            let _ = cache.lookup(rel, &stat);
        }
        let sorted = SortedStatCache::from_bytes(bytes);
        let mut cursor = sorted.cursor();
        for rel in ["", "a", "b/c", "z"] {
            let _ = cursor.lookup(rel, &stat);
        }
    }
});
