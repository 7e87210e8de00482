//! An entry file (`ac/xx/KEY.json`): as read, and its JSON re-sealed so that the tag holds and
//! the bytes reach the JSON decoder and the manifest checks.
#![no_main]

use libfuzzer_sys::fuzz_target;
use once_core::store::{decode_entry, encode_entry};

const KEY: &str = "abababababababababababababababababababababababababababababababab";

fuzz_target!(|data: &[u8]| {
    let _ = decode_entry(KEY, data);
    let _ = decode_entry(KEY, &encode_entry(KEY, data));
});
