//! The stat cache's journal (`.once/statcache.journal`): as read against the base checksum it
//! names, and with its last block's checksum made to hold so that its records are parsed.
#![no_main]

use libfuzzer_sys::fuzz_target;
use once_core::statcache::decode_journal;

/// magic (8) + version (4) + base checksum (32).
const HEADER: usize = 44;

fuzz_target!(|data: &[u8]| {
    let base = data.get(12..HEADER).unwrap_or(&[0; 32]);
    let _ = decode_journal(data, base);
    if data.len() >= HEADER + 32 {
        let (header, block) = data.split_at(HEADER);
        let body = &block[..block.len() - 32];
        let resealed = [header, body, blake3::hash(body).as_bytes()].concat();
        let _ = decode_journal(&resealed, base);
    }
});
