//! Small output files, and a small log, carried inside their entry rather than as blobs of
//! their own.
//!
//! A save of a small output as a blob creates two files (the blob and the entry); carried in
//! the entry it creates one. File creation is the dearest part of a small save: on ext4 every
//! creation after recent deletions scans the recently freed inodes, and the commit threads of a
//! cold run of 1,000 one-output steps spent 1.45 s of CPU there (perf, benches/RESULTS.md).
//!
//! In the entry's JSON they are a map from digest to the bytes in base64:
//!
//! ```text
//! "inline":{"<64 hex digits>":"<base64>",...}
//! ```
//!
//! The bytes are hashed as they are decoded, and an entry any of whose inline bytes do not hash
//! to the digest they are filed under does not decode at all: every reader (a lookup, a
//! restore, `cache verify`, an entry from a remote cache, whose envelope may be unsigned) sees
//! it as unsound, a miss, and never restores a wrong byte. The outputs still name their digests
//! (`OutputKind::File`), so early cutoff and `once why` read an entry the same either way.

use std::collections::BTreeMap;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::hash::{hash_bytes, Digest};

/// The most bytes of small outputs one entry carries, and so the largest output that travels in
/// an entry; a step's further outputs are blobs. Its log travels in the entry when it fits in
/// what the outputs left. Every lookup of an entry decodes and hashes its
/// inline bytes, where a blob costs it one `stat`: a no-op of 1,000 cached steps took
/// 1.14-1.34x as long with 4 KiB carried in each entry (about 1.1-1.5 ms per 1,000 steps per
/// KiB, benches/RESULTS.md), so the bound is 1 KiB: the stamps, reports and small files of the
/// cold runs this is for, at a no-op cost lost in the noise.
pub const INLINE_MAX: u64 = 1024;
/// What a carried file costs of `INLINE_MAX` besides its bytes: the 64 hex digits of the
/// digest it is filed under. A step of many tiny outputs carries 16 at most, not thousands.
pub(crate) const INLINE_DIGEST_COST: u64 = 64;

/// The bytes of an entry's inline outputs, by digest; each digest is that of its bytes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Inline(BTreeMap<Digest, Vec<u8>>);

impl Inline {
    /// The bytes whose digest is `digest`, if the entry carries them.
    #[must_use]
    pub fn get(&self, digest: &Digest) -> Option<&[u8]> {
        self.0.get(digest).map(Vec::as_slice)
    }

    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Whether `size` more bytes fit in what the carried ones leave of `INLINE_MAX`, each
    /// counting its size and its digest's.
    pub(crate) fn has_room_for(&self, size: u64) -> bool {
        let used: u64 = self
            .0
            .values()
            .map(|bytes| bytes.len() as u64 + INLINE_DIGEST_COST)
            .sum();
        used + size + INLINE_DIGEST_COST <= INLINE_MAX
    }

    /// Carry `bytes`, whose digest (the caller hashed them) is `digest`.
    pub(crate) fn insert(&mut self, digest: Digest, bytes: Vec<u8>) {
        self.0.insert(digest, bytes);
    }
}

impl Serialize for Inline {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_map(
            self.0
                .iter()
                .map(|(digest, bytes)| (digest, STANDARD.encode(bytes))),
        )
    }
}

impl<'de> Deserialize<'de> for Inline {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Inline, D::Error> {
        let encoded = BTreeMap::<Digest, String>::deserialize(deserializer)?;
        let mut inline = BTreeMap::new();
        for (digest, text) in encoded {
            let bytes = STANDARD
                .decode(text)
                .map_err(|err| D::Error::custom(format!("inline bytes of {digest}: {err}")))?;
            if hash_bytes(&bytes) != digest {
                return Err(D::Error::custom(format!(
                    "inline bytes do not match their digest {digest}"
                )));
            }
            inline.insert(digest, bytes);
        }
        Ok(Inline(inline))
    }
}
