//! Every decoder of what the core reads from disk (entries, stat cache and output stats, the
//! stat cache's journal, the usage tally) takes any bytes without panicking: random ones, and
//! valid files mutated (bytes flipped, cut, repeated), re-sealed where a checksum or tag would
//! stop the mutation at the door. A seeded loop, so it runs in CI without nightly; `fuzz/`
//! runs the same decoders under libFuzzer.

use std::fs;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use once_core::evict::GcOptions;
use once_core::hash::Digest;
use once_core::statcache::{decode_journal, SortedStatCache, StatCache};
use once_core::store::{self, Store};
use once_core::usage_ledger;
use once_core::walk::FileStat;

/// xorshift64*: reproducible without a dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
    fn bytes(&mut self, len: usize) -> Vec<u8> {
        (0..len).map(|_| self.next() as u8).collect()
    }
    /// `valid` changed in one to four places.
    fn mutate(&mut self, valid: &[u8]) -> Vec<u8> {
        let mut out = valid.to_vec();
        for _ in 0..=self.below(4) {
            let at = self.below(out.len() + 1);
            match self.below(6) {
                0 if at < out.len() => out[at] ^= 1 << self.below(8),
                1 if at < out.len() => out[at] = self.next() as u8,
                2 => out.truncate(at),
                3 => {
                    let len = self.below(16) + 1;
                    let extra = self.bytes(len);
                    out.splice(at..at, extra);
                }
                4 => {
                    let end = (at + self.below(64)).min(out.len());
                    let copy = out[at..end].to_vec();
                    out.splice(at..at, copy);
                }
                _ if at < out.len() => {
                    // A number nudged to an extreme: lengths and counts that lie.
                    let end = (at + 8).min(out.len());
                    let extreme = [0u8, 0xff, 0x7f, 0x80][self.below(4)];
                    out[at..end].fill(extreme);
                }
                _ => {}
            }
        }
        out
    }
}

const ROUNDS: usize = 20_000;

fn stat(n: u64) -> FileStat {
    FileStat {
        dev: 1,
        ino: n,
        size: n * 10,
        mtime_ns: 1_000 + n as i64,
        ctime_ns: 2_000 + n as i64,
        mode: 0o100_644,
    }
}

#[test]
fn entries_decode_or_miss_never_panic() {
    let dirs = [tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap()];
    let ws = dirs[0].path();
    fs::create_dir_all(ws.join("p/dist/sub")).unwrap();
    fs::write(ws.join("p/dist/a.txt"), b"a").unwrap();
    fs::write(ws.join("p/dist/sub/b"), b"b").unwrap();
    std::os::unix::fs::symlink("a.txt", ws.join("p/dist/link")).unwrap();
    let store = Store::open(dirs[1].path()).unwrap();
    let key = "ab".repeat(32);
    let entry = store
        .save(&key, ws, "p", &["dist".to_owned()], b"log", 0, 1)
        .unwrap();
    let file = fs::read(dirs[1].path().join("ac/ab").join(format!("{key}.json"))).unwrap();
    assert_eq!(store::decode_entry(&key, &file), Some(entry));
    let json = store::entry_json(&key, &file).unwrap().to_vec();

    let mut rng = Rng(1);
    for _ in 0..ROUNDS {
        let len = rng.below(300);
        let _ = store::decode_entry(&key, &rng.bytes(len));
        let _ = store::decode_entry(&key, &rng.mutate(&file));
        // Past the tag: the JSON and the manifest checks get the mutations.
        let mutated = rng.mutate(&json);
        let _ = store::decode_entry(&key, &store::encode_entry(&key, &mutated));
    }
}

#[test]
fn malformed_manifests_are_misses_even_with_a_tag_that_holds() {
    let key = "cd".repeat(32);
    let digest = Digest(*blake3::hash(b"x").as_bytes()).to_hex();
    let file = |path: &str| {
        format!(r#"{{"path":"{path}","kind":"file","digest":"{digest}","executable":false}}"#)
    };
    let entry = |outputs: &[String]| {
        format!(
            r#"{{"key":"{key}","outputs":[{}],"log":"{digest}","exit_code":0,"duration_ms":1,"created_unix":1}}"#,
            outputs.join(",")
        )
    };
    let sound = entry(&[file("p/dist/a"), file("p/dist/b")]);
    assert!(store::decode_entry(&key, &store::encode_entry(&key, sound.as_bytes())).is_some());
    let malformed = [
        entry(&[file("p/dist/a"), file("p/dist/a")]),
        entry(&[file("/etc/passwd")]),
        entry(&[file("p/../../outside")]),
        entry(&[file("p/dist/a"), file("p/dist/a/b")]),
        entry(&[r#"{"path":"p/l","kind":"symlink","target":"/etc"}"#.to_owned()]),
        entry(&[r#"{"path":"p/x","kind":"fifo"}"#.to_owned()]),
        entry(&[r#"{"path":"p/x","kind":"file","digest":"zz","executable":false}"#.to_owned()]),
        sound.replace(&key, &"ef".repeat(32)),
    ];
    for json in malformed {
        let sealed = store::encode_entry(&key, json.as_bytes());
        assert_eq!(store::decode_entry(&key, &sealed), None, "{json}");
    }
    // An entry from before the tag (plain JSON) is a miss too.
    assert_eq!(store::decode_entry(&key, sound.as_bytes()), None);
}

#[test]
fn stat_caches_and_journals_decode_or_read_empty_never_panic() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("statcache");
    let stats: Vec<FileStat> = (0..5).map(stat).collect();
    let digests: Vec<Digest> = (0..5u8).map(|n| Digest([n; 32])).collect();
    let names = ["a", "b/c", "b/d", "e", "f"];
    let records = || {
        names
            .iter()
            .zip(&stats)
            .zip(&digests)
            .map(|((name, stat), digest)| (*name, stat, digest))
    };
    StatCache::save(&path, 5_000, records()).unwrap();
    let room = SortedStatCache::load(&path).journal_room().unwrap();
    StatCache::append(&path, room, 6_000, records().take(2)).unwrap();
    let file = fs::read(&path).unwrap();
    let journal = fs::read(dir.path().join("statcache.journal")).unwrap();
    let base = &file[file.len() - 32..];
    assert_eq!(StatCache::from_bytes(file.clone()).len(), 5);
    assert_eq!(decode_journal(&journal, base), Some(2));

    let mut rng = Rng(2);
    for _ in 0..ROUNDS {
        let len = rng.below(400);
        for bytes in [
            rng.bytes(len),
            rng.mutate(&file),
            resealed(&rng.mutate(&file)),
        ] {
            let _ = StatCache::from_bytes(bytes.clone());
            let sorted = SortedStatCache::from_bytes(bytes);
            let mut cursor = sorted.cursor();
            for (name, stat) in names.iter().zip(&stats) {
                let _ = cursor.lookup(name, stat);
            }
        }
        let _ = decode_journal(&rng.bytes(len), base);
        let _ = decode_journal(&rng.mutate(&journal), base);
        let _ = decode_journal(&resealed_journal(&rng.mutate(&journal)), base);
    }
}

/// A stat cache file whose trailing checksum is made to hold again.
fn resealed(file: &[u8]) -> Vec<u8> {
    let body = &file[..file.len().saturating_sub(32)];
    [body, blake3::hash(body).as_bytes()].concat()
}

/// A journal of one block whose checksum is made to hold again (header: 8 + 4 + 32 bytes).
fn resealed_journal(journal: &[u8]) -> Vec<u8> {
    if journal.len() < 44 + 32 {
        return journal.to_vec();
    }
    let (header, block) = journal.split_at(44);
    let body = &block[..block.len() - 32];
    [header, body, blake3::hash(body).as_bytes()].concat()
}

#[test]
fn usage_tallies_parse_or_recount_never_panic() {
    let now = SystemTime::now();
    let secs = now.duration_since(UNIX_EPOCH).unwrap().as_secs();
    let valid = format!("counted 1000 {secs}\n+10\n+20\n");
    assert_eq!(usage_ledger::parse(&valid, now), Some(1030));
    assert_eq!(
        usage_ledger::parse(&valid, now + Duration::from_secs(7200)),
        None
    );
    for text in [
        format!("counted 1 {}\n", u64::MAX),
        format!("counted {} {secs}\n+1\n", u64::MAX),
        "counted 1 -5\n".to_owned(),
        "+5\ncounted 1 1\n".to_owned(),
    ] {
        assert_eq!(usage_ledger::parse(&text, now), None, "{text}");
    }
    let mut rng = Rng(3);
    for _ in 0..ROUNDS {
        let len = rng.below(80);
        let bytes = [rng.bytes(len), rng.mutate(valid.as_bytes())];
        for bytes in bytes {
            let _ = usage_ledger::parse(&String::from_utf8_lossy(&bytes), now);
        }
    }
}

#[test]
fn a_collection_reading_a_tally_from_beyond_time_counts_instead_of_panicking() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    fs::write(
        dir.path().join("usage"),
        format!("counted 1 {}\n", u64::MAX),
    )
    .unwrap();
    let protected = std::collections::HashSet::new();
    let report = store
        .gc(&GcOptions {
            max_bytes: 1 << 30,
            protected: &protected,
            wait: true,
            sweep: false,
            count_later: false,
        })
        .unwrap();
    assert_eq!(report.bytes_after, 0);
}
