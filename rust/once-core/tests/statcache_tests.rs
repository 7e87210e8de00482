//! The stat cache: its file survives a round trip, damage reads as empty, and a digest is only
//! trusted when no write could have slipped past the recorded stat (the racy-timestamp rule).

use std::fs;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use once_core::hash::{hash_bytes, Digest};
use once_core::statcache::{SortedStatCache, StatCache};
use once_core::walk::FileStat;

const SEC: i64 = 1_000_000_000;

fn stat(ino: u64, size: u64, mtime_ns: i64, ctime_ns: i64) -> FileStat {
    FileStat {
        dev: 7,
        ino,
        size,
        mtime_ns,
        ctime_ns,
        mode: 0o100_644,
    }
}

fn save_one(path: &Path, start_ns: i64, rel: &str, stat: &FileStat, digest: &Digest) {
    StatCache::save(path, start_ns, std::iter::once((rel, stat, digest))).unwrap();
}

#[test]
fn round_trip_keeps_every_record() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nested/folder/statcache");
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    let start = 1_700_000_000 * SEC + 123;
    let files: Vec<(String, FileStat, Digest)> = (0..500u64)
        .map(|i| {
            let rel = format!("pkg{}/src/ünïcode-{i}.rs", i % 7);
            let t = start - 10 * SEC - i as i64 * 1_001;
            (
                rel.clone(),
                stat(i, i * 3, t, t + 5),
                hash_bytes(rel.as_bytes()),
            )
        })
        .collect();
    StatCache::save(
        &path,
        start,
        files
            .iter()
            .map(|(rel, stat, digest)| (rel.as_str(), stat, digest)),
    )
    .unwrap();
    let cache = StatCache::load(&path);
    assert_eq!(cache.len(), 500);
    assert_eq!(cache.snapshot_start_ns(), start);
    for (rel, stat, digest) in &files {
        assert_eq!(cache.lookup(rel, stat), Some(*digest), "{rel}");
    }
    assert_eq!(cache.lookup("not/recorded", &files[0].1), None);
    // The temp file was renamed away, nothing else is left in the folder.
    let names: Vec<_> = fs::read_dir(path.parent().unwrap()).unwrap().collect();
    assert_eq!(names.len(), 1);
}

#[test]
fn missing_truncated_or_corrupt_files_load_as_empty() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("statcache");
    assert!(StatCache::load(&path).is_empty());

    let old = 1_000 * SEC + 1;
    let s = stat(1, 2, old, old);
    save_one(&path, 2_000 * SEC, "a.txt", &s, &hash_bytes(b"a"));
    let good = fs::read(&path).unwrap();
    assert_eq!(StatCache::load(&path).len(), 1);

    for cut in [0, 1, 8, 20, good.len() / 2, good.len() - 1] {
        fs::write(&path, &good[..cut]).unwrap();
        assert!(StatCache::load(&path).is_empty(), "truncated to {cut}");
    }
    for flip in [0, 9, 30, good.len() - 40, good.len() - 1] {
        let mut bad = good.clone();
        bad[flip] ^= 0x40;
        fs::write(&path, &bad).unwrap();
        assert!(StatCache::load(&path).is_empty(), "byte {flip} flipped");
    }
    fs::write(&path, b"not a stat cache at all, just some text").unwrap();
    assert!(StatCache::load(&path).is_empty());
    fs::create_dir_all(dir.path().join("a-folder")).unwrap();
    assert!(StatCache::load(&dir.path().join("a-folder")).is_empty());
}

/// A cache of a large workspace is mapped rather than read (past 256 KiB): the same records
/// come back, and damage anywhere in it still reads as empty.
#[test]
fn a_large_cache_reads_alike_and_damage_still_reads_as_empty() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("statcache");
    let start = 1_700_000_000 * SEC;
    let files: Vec<(String, FileStat, Digest)> = (0..6_000u64)
        .map(|i| {
            let rel = format!("packages/pkg{:04}/src/module-{i:05}.rs", i / 10);
            let t = start - 60 * SEC - i as i64 * 1_001;
            (rel.clone(), stat(i, i, t, t), hash_bytes(rel.as_bytes()))
        })
        .collect();
    let records = || {
        files
            .iter()
            .map(|(rel, stat, digest)| (rel.as_str(), stat, digest))
    };
    StatCache::save(&path, start, records()).unwrap();
    let good = fs::read(&path).unwrap();
    assert!(
        good.len() > 512 << 10,
        "{} bytes: not large enough to be mapped",
        good.len()
    );

    let sorted = SortedStatCache::load(&path);
    assert_eq!(sorted.len(), files.len());
    let mut cursor = sorted.cursor();
    for (rel, stat, digest) in &files {
        assert_eq!(cursor.lookup(rel, stat), Some(*digest), "{rel}");
    }
    for flip in [40, good.len() / 2, good.len() - 33] {
        let mut bad = good.clone();
        bad[flip] ^= 0x01;
        fs::write(&path, &bad).unwrap();
        assert!(
            SortedStatCache::load(&path).is_empty(),
            "byte {flip} flipped"
        );
    }
    fs::write(&path, &good[..good.len() - 1]).unwrap();
    assert!(SortedStatCache::load(&path).is_empty());
}

#[test]
fn changed_inode_size_mtime_or_ctime_is_a_miss() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("statcache");
    let old = 1_000 * SEC + 17;
    let recorded = stat(42, 100, old, old + 3);
    let digest = hash_bytes(b"content");
    save_one(&path, 2_000 * SEC, "f", &recorded, &digest);
    let cache = StatCache::load(&path);
    assert_eq!(cache.lookup("f", &recorded), Some(digest));
    for changed in [
        FileStat {
            ino: 43,
            ..recorded
        },
        FileStat { dev: 8, ..recorded },
        FileStat {
            size: 101,
            ..recorded
        },
        FileStat {
            mtime_ns: old + 1,
            ..recorded
        },
        // `mv` of a file restored by `tar`: same mtime and size, new ctime.
        FileStat {
            ctime_ns: old + 4,
            ..recorded
        },
    ] {
        assert_eq!(cache.lookup("f", &changed), None, "{changed:?}");
    }
    // The mode is not part of the content: chmod alone keeps the digest valid (the ctime
    // change it causes is what makes a real chmod a miss).
    let chmodded = FileStat {
        mode: 0o100_755,
        ..recorded
    };
    assert_eq!(cache.lookup("f", &chmodded), Some(digest));
}

#[test]
fn times_not_older_than_the_snapshot_start_are_not_trusted() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("statcache");
    let start = 5_000 * SEC + 500_000_000;
    let digest = hash_bytes(b"x");
    let cases = [
        // (mtime, ctime, trusted)
        (start - 10 * SEC + 1, start - 10 * SEC + 1, true),
        (start - SEC + 1, start - SEC + 1, true),
        (start, start - 10 * SEC + 1, false),
        (start + SEC, start - 10 * SEC + 1, false),
        (start - 10 * SEC + 1, start, false),
        // Within a coarse clock tick of the start: a later write could carry this stamp.
        (start - 1_000_000, start - 10 * SEC + 1, false),
        (start - 10 * SEC + 1, start - 1, false),
        // A whole-second stamp can hide up to 2 s of writes (1 s and FAT's 2 s file systems).
        (5_000 * SEC, start - 10 * SEC + 1, false),
        (4_998 * SEC, start - 10 * SEC + 1, true),
    ];
    for (mtime, ctime, trusted) in cases {
        let s = stat(1, 1, mtime, ctime);
        save_one(&path, start, "f", &s, &digest);
        let found = StatCache::load(&path).lookup("f", &s);
        assert_eq!(found.is_some(), trusted, "mtime {mtime} ctime {ctime}");
    }
}

/// A file system that keeps whole seconds, simulated by truncating the real stat.
fn coarse_stat(path: &Path) -> FileStat {
    let real = FileStat::from_metadata(&fs::metadata(path).unwrap());
    FileStat {
        mtime_ns: real.mtime_ns - real.mtime_ns.rem_euclid(SEC),
        ctime_ns: real.ctime_ns - real.ctime_ns.rem_euclid(SEC),
        ..real
    }
}

fn wall_clock_ns() -> i64 {
    i64::try_from(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_nanos(),
    )
    .unwrap()
}

/// The race git calls "racily clean": on a file system with 1 s timestamps, a run records a
/// file's digest, and within the same second the file is rewritten with the same size. Its
/// stat is unchanged, so only the racy rule stops the next run from trusting the old digest.
#[test]
fn rewrite_within_the_timestamp_granularity_is_hashed_again() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("input.txt");
    let cache_path = dir.path().join("statcache");

    // The scenario must fall within one second: begun just after a second boundary, and
    // begun again if a loaded machine stalled the test across the next one.
    let mut attempts = 0;
    let (snapshot_start, first_stat, first_digest, second_stat) = loop {
        let into_second = wall_clock_ns().rem_euclid(SEC);
        std::thread::sleep(Duration::from_nanos((SEC - into_second) as u64 + 5_000_000));

        let snapshot_start = wall_clock_ns();
        fs::write(&file, "version 1").unwrap();
        let first_stat = coarse_stat(&file);
        let first_digest = hash_bytes(&fs::read(&file).unwrap());
        save_one(
            &cache_path,
            snapshot_start,
            "input.txt",
            &first_stat,
            &first_digest,
        );

        fs::write(&file, "version 2").unwrap();
        let second_stat = coarse_stat(&file);
        attempts += 1;
        if second_stat == first_stat || attempts == 5 {
            break (snapshot_start, first_stat, first_digest, second_stat);
        }
    };
    assert_eq!(
        second_stat, first_stat,
        "setup: the rewrite must be invisible at 1 s granularity (the test stalled 5 times)"
    );
    assert!(
        first_stat.mtime_ns < snapshot_start,
        "setup: the truncated mtime lies before the snapshot start, as on a real coarse file system"
    );

    let cache = StatCache::load(&cache_path);
    assert_eq!(cache.lookup("input.txt", &second_stat), None);
    // So the caller hashes again and sees the new content.
    let rehashed = hash_bytes(&fs::read(&file).unwrap());
    assert_ne!(rehashed, first_digest);
    assert_eq!(rehashed, hash_bytes(b"version 2"));

    // The next run starts seconds later: the same stat is now old enough to be trusted.
    let later_start = snapshot_start + 3 * SEC;
    save_one(
        &cache_path,
        later_start,
        "input.txt",
        &second_stat,
        &rehashed,
    );
    let cache = StatCache::load(&cache_path);
    assert_eq!(cache.lookup("input.txt", &second_stat), Some(rehashed));
}

#[test]
fn concurrent_saves_leave_one_whole_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("statcache");
    let old = 1_000 * SEC + 1;
    std::thread::scope(|scope| {
        for writer in 0..8u64 {
            let path = &path;
            scope.spawn(move || {
                for round in 0..20u64 {
                    let rels: Vec<String> =
                        (0..50).map(|i| format!("w{writer}/r{round}/{i}")).collect();
                    let s = stat(writer, round, old, old);
                    let d = hash_bytes(&writer.to_le_bytes());
                    StatCache::save(path, 2_000 * SEC, rels.iter().map(|r| (r.as_str(), &s, &d)))
                        .unwrap();
                }
            });
        }
    });
    assert_eq!(StatCache::load(&path).len(), 50);
    assert_eq!(
        fs::read_dir(dir.path()).unwrap().count(),
        1,
        "no temp files left"
    );
}

/// A cache file as the format describes it, records in the order given, with a valid checksum:
/// files no `save` would write.
fn craft(version: u32, start_ns: i64, records: &[(&str, FileStat, Digest)]) -> Vec<u8> {
    let mut out = b"ONCESTAT".to_vec();
    out.extend_from_slice(&version.to_le_bytes());
    out.extend_from_slice(&start_ns.to_le_bytes());
    out.extend_from_slice(&(records.len() as u64).to_le_bytes());
    for (rel, stat, digest) in records {
        out.extend_from_slice(&(rel.len() as u32).to_le_bytes());
        out.extend_from_slice(rel.as_bytes());
        for field in [stat.dev, stat.ino, stat.size] {
            out.extend_from_slice(&field.to_le_bytes());
        }
        for field in [stat.mtime_ns, stat.ctime_ns] {
            out.extend_from_slice(&field.to_le_bytes());
        }
        out.extend_from_slice(&digest.0);
    }
    let checksum = *blake3::hash(&out).as_bytes();
    out.extend_from_slice(&checksum);
    out
}

#[test]
fn a_file_of_the_unsorted_version_1_loads_as_empty() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("statcache");
    let old = 1_000 * SEC + 1;
    let records = [
        ("b", stat(2, 1, old, old), hash_bytes(b"b")),
        ("a", stat(1, 1, old, old), hash_bytes(b"a")),
    ];
    fs::write(&path, craft(1, 2_000 * SEC, &records)).unwrap();
    assert!(StatCache::load(&path).is_empty());
    assert!(SortedStatCache::load(&path).is_empty());
    assert_eq!(
        SortedStatCache::load(&path)
            .cursor()
            .lookup("a", &records[1].1),
        None
    );

    // The same records in the current version and in order are read.
    let (a, b) = (records[1], records[0]);
    fs::write(&path, craft(2, 2_000 * SEC, &[a, b])).unwrap();
    assert_eq!(StatCache::load(&path).len(), 2);
    assert_eq!(
        SortedStatCache::load(&path).cursor().lookup("a", &a.1),
        Some(a.2)
    );
}

#[test]
fn records_out_of_order_are_never_misread() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("statcache");
    let old = 1_000 * SEC + 1;
    let records = [
        ("a", stat(1, 1, old, old), hash_bytes(b"a")),
        ("c", stat(3, 1, old, old), hash_bytes(b"c")),
        ("b", stat(2, 1, old, old), hash_bytes(b"b")),
        ("d", stat(4, 1, old, old), hash_bytes(b"d")),
    ];
    fs::write(&path, craft(2, 2_000 * SEC, &records)).unwrap();
    assert!(StatCache::load(&path).is_empty(), "a damaged file is empty");
    // A join stops at the first record out of order: what comes before it is still found,
    // nothing after it is (a miss costs a re-hash; a misread would cost a wrong build).
    let file = SortedStatCache::load(&path);
    let mut cursor = file.cursor();
    assert_eq!(cursor.lookup("a", &records[0].1), Some(records[0].2));
    assert_eq!(cursor.lookup("b", &records[2].1), None);
    assert_eq!(cursor.lookup("d", &records[3].1), None);
}

#[test]
fn save_sorts_and_keeps_the_last_record_of_a_path() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("statcache");
    let old = 1_000 * SEC + 1;
    let (first, second) = (stat(1, 1, old, old), stat(9, 9, old, old));
    let digests = [hash_bytes(b"1"), hash_bytes(b"2"), hash_bytes(b"3")];
    StatCache::save(
        &path,
        2_000 * SEC,
        [
            ("z/y", &first, &digests[0]),
            ("a", &first, &digests[1]),
            ("z/y", &second, &digests[2]),
            ("a-b", &first, &digests[0]),
            ("a/b", &first, &digests[0]),
        ]
        .into_iter(),
    )
    .unwrap();
    let file = SortedStatCache::load(&path);
    assert_eq!(file.len(), 4);
    let mut cursor = file.cursor();
    assert_eq!(cursor.lookup("a", &first), Some(digests[1]));
    assert_eq!(cursor.lookup("a-b", &first), Some(digests[0]));
    assert_eq!(cursor.lookup("a/b", &first), Some(digests[0]));
    assert_eq!(
        cursor.lookup("z/y", &first),
        None,
        "the earlier record was replaced"
    );
    assert_eq!(
        StatCache::load(&path).lookup("z/y", &second),
        Some(digests[2])
    );
}

/// The join a run makes: the walk's files in order against the recorded ones, with files
/// added, removed and changed since, trusted exactly as `StatCache::lookup` trusts.
/// A cache of several megabytes is written in chunks and read back through a map whose pages
/// are given back as the checksum and the cursor pass them: every record still reads back,
/// in a second pass over the same map too, and the file ends with the BLAKE3 of the rest.
#[test]
fn a_cache_of_many_windows_reads_back_whole_in_every_pass() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("statcache");
    let start = 1_700_000_000 * SEC;
    let files: Vec<(String, FileStat, Digest)> = (0..80_000u64)
        .map(|i| {
            let rel = format!("packages/g{:02}/pkg{:05}/src/f{i:06}.ts", i % 20, i / 100);
            let t = start - 60 * SEC - i as i64;
            (rel.clone(), stat(i, i, t, t), hash_bytes(rel.as_bytes()))
        })
        .collect();
    StatCache::save(
        &path,
        start,
        files
            .iter()
            .map(|(rel, stat, digest)| (rel.as_str(), stat, digest)),
    )
    .unwrap();
    let bytes = fs::read(&path).unwrap();
    assert!(
        bytes.len() > 8 << 20,
        "{} bytes: a few windows",
        bytes.len()
    );
    let (body, sum) = bytes.split_at(bytes.len() - 32);
    assert_eq!(hash_bytes(body).0, sum);

    let mut sorted: Vec<&(String, FileStat, Digest)> = files.iter().collect();
    sorted.sort_by(|a, b| a.0.cmp(&b.0));
    let cache = SortedStatCache::load(&path);
    assert_eq!(cache.len(), files.len());
    for pass in 0..2 {
        let mut cursor = cache.cursor();
        for (rel, stat, digest) in &sorted {
            assert_eq!(
                cursor.lookup(rel, stat),
                Some(*digest),
                "pass {pass}: {rel}"
            );
        }
    }
    assert_eq!(StatCache::load(&path).len(), files.len());
}

#[test]
fn cursor_lookups_agree_with_the_map() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("statcache");
    let start = 5_000 * SEC + 500_000_000;
    let old = start - 10 * SEC + 7;
    let mut recorded: Vec<(String, FileStat, Digest)> = (0..300u64)
        .map(|i| {
            let rel = format!("p{}/f{i:03}", i % 4);
            // Every 7th too recent to be trusted.
            let t = if i % 7 == 0 { start - 1_000 } else { old };
            (rel.clone(), stat(i, i, t, t), hash_bytes(rel.as_bytes()))
        })
        .collect();
    recorded.sort_by(|a, b| a.0.cmp(&b.0));
    StatCache::save(
        &path,
        start,
        recorded
            .iter()
            .map(|(rel, stat, digest)| (rel.as_str(), stat, digest)),
    )
    .unwrap();
    // The walk now: every 5th recorded file gone, every 11th changed, new files among them.
    let mut walk: Vec<(String, FileStat)> = Vec::new();
    for (i, (rel, stat, _)) in recorded.iter().enumerate() {
        if i % 5 == 0 {
            continue;
        }
        let now = if i % 11 == 0 {
            FileStat { size: 1, ..*stat }
        } else {
            *stat
        };
        walk.push((rel.clone(), now));
        if i % 3 == 0 {
            walk.push((format!("{rel}-new"), now));
        }
    }
    walk.sort_by(|a, b| a.0.cmp(&b.0));
    let map = StatCache::load(&path);
    let file = SortedStatCache::load(&path);
    assert_eq!(file.snapshot_start_ns(), start);
    let mut cursor = file.cursor();
    let mut found = 0;
    for (rel, stat) in &walk {
        let joined = cursor.lookup(rel, stat);
        assert_eq!(joined, map.lookup(rel, stat), "{rel}");
        found += usize::from(joined.is_some());
    }
    assert!(found > 150, "the join finds the unchanged files ({found})");
}

#[test]
fn without_its_folder_the_cache_is_not_kept() {
    // The folder is the workspace's state folder, which only a run makes (with its
    // .gitignore); a command that only inspects must not make it by saving a cache.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(".once/statcache");
    let stat = stat(1, 1, 1, 1);
    let digest = hash_bytes(b"x");
    StatCache::save(&path, 10 * SEC, [("a", &stat, &digest)].into_iter()).unwrap();
    assert!(!dir.path().join(".once").exists());
}
