//! The store's size tally (`usage` in the cache folder).
#![no_main]

use std::time::SystemTime;

use libfuzzer_sys::fuzz_target;
use once_core::usage_ledger;

fuzz_target!(|data: &[u8]| {
    let _ = usage_ledger::parse(&String::from_utf8_lossy(data), SystemTime::now());
});
