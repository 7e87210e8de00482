//! Snapshots: selecting a rule's inputs by package and globs, and hashing them once with the
//! stat cache carrying digests across runs.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use once_core::hash::hash_bytes;
use once_core::snapshot::{FileSet, Snapshot};
use once_core::walk::{FileStat, WalkedFile};
use once_core::Error;

/// A snapshot of made-up paths, for selection only (nothing is read from disk).
fn listing(rels: &[&str]) -> Snapshot {
    let mut rels: Vec<&str> = rels.to_vec();
    rels.sort_unstable();
    Snapshot {
        root: "/nonexistent".into(),
        files: rels
            .iter()
            .map(|rel| WalkedFile {
                rel: (*rel).into(),
                stat: FileStat::default(),
            })
            .collect(),
        digests: vec![None; rels.len()],
        started_ns: 0,
        links: Vec::new(),
        primed: None,
        stat_cache_unsaved: None,
        tracked: None,
    }
}

fn monorepo() -> Snapshot {
    listing(&[
        "README.md",
        "once.toml",
        "apps/web/index.ts",
        "apps/web/once.toml",
        "apps/web/src/a.ts",
        "apps/web/src/a.test.ts",
        "apps/web/src/deep/b.ts",
        "apps/web/dist/out.js",
        "apps/web/dist/nested/map.js",
        "apps/web-legacy/x.ts",
        "apps/web.old",
        "apps/webby",
        "libs/core/Cargo.toml",
        "libs/core/src/lib.rs",
    ])
}

fn select(snapshot: &Snapshot, package: &str, include: &[&str], exclude: &[&str]) -> Vec<String> {
    let include: Vec<String> = include.iter().map(|s| (*s).to_owned()).collect();
    let exclude: Vec<String> = exclude.iter().map(|s| (*s).to_owned()).collect();
    let set = snapshot.select(package, &include, &exclude).unwrap();
    assert!(set.windows(2).all(|w| w[0] < w[1]), "indices sorted");
    set.iter()
        .map(|&i| snapshot.files[i as usize].rel.to_string())
        .collect()
}

/// The stat cache's path in the state folder of `root`, made as a run makes it (without the
/// folder the cache is not kept).
fn stat_cache_in(root: &Path) -> PathBuf {
    let state = root.join(".once");
    fs::create_dir_all(&state).unwrap();
    state.join("statcache")
}

#[test]
fn package_holds_only_files_below_its_folder() {
    let snap = monorepo();
    assert_eq!(
        select(&snap, "apps/web", &["**"], &[]),
        vec![
            "apps/web/dist/nested/map.js",
            "apps/web/dist/out.js",
            "apps/web/index.ts",
            "apps/web/once.toml",
            "apps/web/src/a.test.ts",
            "apps/web/src/a.ts",
            "apps/web/src/deep/b.ts",
        ]
    );
    // Spelling variants of the same package.
    for package in ["apps/web/", "./apps/web"] {
        assert_eq!(select(&snap, package, &["**"], &[]).len(), 7, "{package}");
    }
    assert_eq!(select(&snap, "apps/we", &["**"], &[]), Vec::<String>::new());
    assert_eq!(select(&snap, "missing", &["**"], &[]), Vec::<String>::new());
}

#[test]
fn star_stays_in_one_folder_and_double_star_crosses() {
    let snap = monorepo();
    assert_eq!(
        select(&snap, "apps/web", &["src/*.ts"], &[]),
        vec!["apps/web/src/a.test.ts", "apps/web/src/a.ts"]
    );
    assert_eq!(
        select(&snap, "apps/web", &["src/**/*.ts"], &["**/*.test.ts"]),
        vec!["apps/web/src/a.ts", "apps/web/src/deep/b.ts"]
    );
    assert_eq!(
        select(&snap, "apps/web", &["*.ts"], &[]),
        vec!["apps/web/index.ts"]
    );
    assert_eq!(
        select(&snap, "apps/web", &["**/*.ts"], &[]),
        vec![
            "apps/web/index.ts",
            "apps/web/src/a.test.ts",
            "apps/web/src/a.ts",
            "apps/web/src/deep/b.ts",
        ]
    );
    assert_eq!(
        select(&snap, "apps/web", &["src/{a,deep/b}.ts", "index.?s"], &[]),
        vec![
            "apps/web/index.ts",
            "apps/web/src/a.ts",
            "apps/web/src/deep/b.ts",
        ]
    );
}

#[test]
fn a_folder_pattern_means_everything_below_it() {
    let snap = monorepo();
    let dist = vec!["apps/web/dist/nested/map.js", "apps/web/dist/out.js"];
    assert_eq!(select(&snap, "apps/web", &["dist"], &[]), dist);
    assert_eq!(select(&snap, "apps/web", &["dist/"], &[]), dist);
    assert_eq!(select(&snap, "apps/web", &["./dist"], &[]), dist);
    assert_eq!(
        select(&snap, "apps/web", &["**"], &["dist", "src/"]),
        vec!["apps/web/index.ts", "apps/web/once.toml"]
    );
    // A literal file name is that file, not a prefix of other names.
    assert_eq!(
        select(&snap, "apps/web", &["index.ts"], &[]),
        vec!["apps/web/index.ts"]
    );
    assert_eq!(select(&snap, "apps", &["web"], &[]).len(), 7);
    assert_eq!(select(&snap, "apps", &["web/"], &[]).len(), 7);
}

#[test]
fn root_package_sees_the_whole_workspace() {
    let snap = monorepo();
    assert_eq!(select(&snap, "", &["**"], &[]).len(), snap.files.len());
    assert_eq!(select(&snap, ".", &["**"], &[]).len(), snap.files.len());
    assert_eq!(
        select(&snap, "", &["*"], &[]),
        vec!["README.md", "once.toml"]
    );
    assert_eq!(
        select(&snap, "", &["apps/*/src/**"], &["**/*.test.ts"]),
        vec!["apps/web/src/a.ts", "apps/web/src/deep/b.ts"]
    );
    assert_eq!(
        select(&snap, "", &["libs/core"], &[]),
        vec!["libs/core/Cargo.toml", "libs/core/src/lib.rs"]
    );
    assert_eq!(select(&snap, "", &[], &[]), Vec::<String>::new());
}

#[cfg(unix)]
#[test]
fn selecting_a_file_below_a_folder_link_leaving_the_workspace_is_an_error() {
    let outside = tempfile::tempdir().unwrap();
    write(outside.path(), "lib/y.ts", "y");
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    write(root, "web/src/main.ts", "main");
    write(root, "api/main.ts", "main");
    std::os::unix::fs::symlink(outside.path().join("lib"), root.join("web/src/ext")).unwrap();
    let snap = Snapshot::scan(root, &[]).unwrap();
    assert_eq!(select(&snap, "api", &["**"], &[]), vec!["api/main.ts"]);
    assert_eq!(
        select(&snap, "web", &["src/*.ts"], &[]),
        vec!["web/src/main.ts"]
    );
    match snap.select("web", &["src/**".to_owned()], &[]) {
        Err(Error::Escape(message)) => {
            assert!(message.contains("web/src/ext ->"), "{message}");
            assert!(
                message.contains(
                    &outside
                        .path()
                        .join("lib")
                        .canonicalize()
                        .unwrap()
                        .display()
                        .to_string()
                ),
                "{message}"
            );
        }
        other => panic!("expected Error::Escape, got {other:?}"),
    }
}

#[test]
fn invalid_glob_is_an_error_naming_it() {
    let snap = monorepo();
    for (include, exclude) in [
        (vec!["src/[a".to_owned()], vec![]),
        (vec!["**".to_owned()], vec!["{x".to_owned()]),
    ] {
        match snap.select("apps/web", &include, &exclude) {
            Err(Error::Glob { pattern, .. }) => {
                assert!(pattern == include[0] || pattern == exclude[0], "{pattern}");
            }
            other => panic!("expected Error::Glob, got {other:?}"),
        }
    }
}

#[test]
fn select_scales_to_many_packages() {
    // 1,000 packages of 100 files: every package's selection must be a binary search away.
    let rels: Vec<String> = (0..1000)
        .flat_map(|p| (0..100).map(move |f| format!("pkgs/p{p:04}/src/f{f:03}.rs")))
        .collect();
    let names: Vec<&str> = rels.iter().map(String::as_str).collect();
    let snap = listing(&names);
    let include = vec!["src/**/*.rs".to_owned()];
    let started = std::time::Instant::now();
    let mut total = 0;
    for p in 0..1000 {
        total += snap
            .select(&format!("pkgs/p{p:04}"), &include, &[])
            .unwrap()
            .len();
    }
    assert_eq!(total, 100_000);
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "1,000 selections took {:?}",
        started.elapsed()
    );
}

fn write(root: &Path, rel: &str, text: &str) {
    let path = root.join(rel);
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(&path, text).unwrap();
    // An hour in the past, so the racy rule (a timestamp too close to a snapshot start is not
    // trusted) cannot make the second run re-read a file the test did not touch.
    let past = SystemTime::now() - Duration::from_secs(3600);
    fs::File::options()
        .write(true)
        .open(&path)
        .unwrap()
        .set_modified(past)
        .unwrap();
}

/// ctime cannot be set back; let it fall safely behind the next snapshot start.
fn settle() {
    std::thread::sleep(Duration::from_millis(100));
}

fn all(snapshot: &Snapshot) -> FileSet {
    snapshot.select("", &["**".to_owned()], &[]).unwrap()
}

#[test]
fn stat_cache_spares_unchanged_files_across_runs() {
    let workspace = tempfile::tempdir().unwrap();
    let root = workspace.path();
    for pkg in 0..5 {
        for file in 0..10 {
            write(
                root,
                &format!("pkg{pkg}/f{file}.txt"),
                &format!("{pkg}-{file}"),
            );
        }
    }
    let cache = stat_cache_in(root);
    settle();

    let skip = vec![".once".to_owned()];
    let mut first = Snapshot::scan(root, &skip).unwrap();
    assert_eq!(first.files.len(), 50);
    let set = all(&first);
    assert_eq!(first.hash(&[&set], Some(&cache)).unwrap(), 50);
    // Nothing new to hash: a second call on the same snapshot reads nothing.
    assert_eq!(first.hash(&[&set], Some(&cache)).unwrap(), 0);
    let first_inputs: Vec<(String, _, bool)> = first
        .inputs(&set)
        .unwrap()
        .into_iter()
        .map(|(rel, digest, exe)| (rel.to_owned(), digest, exe))
        .collect();
    assert_eq!(first_inputs[0].0, "pkg0/f0.txt");
    assert_eq!(first_inputs[0].1, hash_bytes(b"0-0"));

    let written = fs::read(&cache).unwrap();
    let mut second = Snapshot::scan(root, &skip).unwrap();
    let set = all(&second);
    assert_eq!(second.hash(&[&set], Some(&cache)).unwrap(), 0);
    assert_eq!(
        fs::read(&cache).unwrap(),
        written,
        "a no-op run leaves the cache as it was"
    );
    let second_inputs: Vec<(String, _, bool)> = second
        .inputs(&set)
        .unwrap()
        .into_iter()
        .map(|(rel, digest, exe)| (rel.to_owned(), digest, exe))
        .collect();
    assert_eq!(second_inputs, first_inputs);

    // Same size, new content, fresh timestamp.
    fs::write(root.join("pkg3/f7.txt"), "3-X").unwrap();
    settle();
    let mut third = Snapshot::scan(root, &skip).unwrap();
    let set = all(&third);
    assert_eq!(third.hash(&[&set], Some(&cache)).unwrap(), 1);
    let changed = third
        .inputs(&set)
        .unwrap()
        .into_iter()
        .find(|(rel, _, _)| *rel == "pkg3/f7.txt")
        .unwrap();
    assert_eq!(changed.1, hash_bytes(b"3-X"));
}

#[test]
fn priming_reads_the_stat_cache_once_and_hashes_nothing() {
    let workspace = tempfile::tempdir().unwrap();
    let root = workspace.path();
    for file in 0..10 {
        write(root, &format!("pkg/f{file}.txt"), &format!("{file}"));
    }
    let cache = stat_cache_in(root);
    settle();
    let skip = vec![".once".to_owned()];
    let mut first = Snapshot::scan(root, &skip).unwrap();
    let set = all(&first);
    assert_eq!(first.hash(&[&set], Some(&cache)).unwrap(), 10);
    let written = fs::read(&cache).unwrap();

    // An unchanged tree: primed, nothing is left to read, and the cache is not rewritten.
    let mut second = Snapshot::scan(root, &skip).unwrap();
    second.prime(&cache);
    assert!(second.digests.iter().all(Option::is_some));
    let set = all(&second);
    assert_eq!(second.hash(&[&set], Some(&cache)).unwrap(), 0);
    assert_eq!(fs::read(&cache).unwrap(), written);

    // One file changed: priming leaves it unknown, and hash reads it and it alone.
    fs::write(root.join("pkg/f3.txt"), "X").unwrap();
    settle();
    let mut third = Snapshot::scan(root, &skip).unwrap();
    third.prime(&cache);
    assert_eq!(third.digests.iter().filter(|d| d.is_none()).count(), 1);
    let set = all(&third);
    assert_eq!(third.hash(&[&set], Some(&cache)).unwrap(), 1);
    assert!(
        journal_of(&cache).is_file(),
        "the changed file's record is written"
    );
    let mut fourth = Snapshot::scan(root, &skip).unwrap();
    let set = all(&fourth);
    assert_eq!(fourth.hash(&[&set], Some(&cache)).unwrap(), 0);
}

#[test]
fn hashing_some_rules_keeps_the_cache_of_the_others() {
    let workspace = tempfile::tempdir().unwrap();
    let root = workspace.path();
    for pkg in ["a", "b"] {
        for file in 0..5 {
            write(root, &format!("{pkg}/f{file}"), pkg);
        }
    }
    let cache = stat_cache_in(workspace.path());
    settle();
    let skip = vec![".once".to_owned()];
    let glob = vec!["**".to_owned()];

    let mut run = Snapshot::scan(root, &skip).unwrap();
    let (a, b) = (
        run.select("a", &glob, &[]).unwrap(),
        run.select("b", &glob, &[]).unwrap(),
    );
    assert_eq!(run.hash(&[&a, &b], Some(&cache)).unwrap(), 10);

    let mut run = Snapshot::scan(root, &skip).unwrap();
    let a = run.select("a", &glob, &[]).unwrap();
    assert_eq!(run.hash(&[&a], Some(&cache)).unwrap(), 0);

    let mut run = Snapshot::scan(root, &skip).unwrap();
    let b = run.select("b", &glob, &[]).unwrap();
    assert_eq!(
        run.hash(&[&b], Some(&cache)).unwrap(),
        0,
        "b's records survived a run of a"
    );
}

#[test]
fn without_a_stat_cache_every_wanted_file_is_read_once() {
    let workspace = tempfile::tempdir().unwrap();
    let root = workspace.path();
    write(root, "x/1", "1");
    write(root, "x/2", "2");
    write(root, "y/3", "3");
    let mut snap = Snapshot::scan(root, &[]).unwrap();
    let glob = vec!["**".to_owned()];
    let x = snap.select("x", &glob, &[]).unwrap();
    let also_x = snap.select("", &["x/1".to_owned()], &[]).unwrap();
    assert_eq!(snap.hash(&[&x, &also_x], None).unwrap(), 2);
    let y = snap.select("y", &glob, &[]).unwrap();
    assert!(snap.inputs(&y).is_err(), "y was never hashed");
    assert_eq!(snap.hash(&[&x, &y], None).unwrap(), 1);
    assert_eq!(snap.inputs(&y).unwrap()[0].1, hash_bytes(b"3"));
}

#[cfg(unix)]
#[test]
fn inputs_carry_the_executable_bit() {
    use std::os::unix::fs::PermissionsExt;
    let workspace = tempfile::tempdir().unwrap();
    let root = workspace.path();
    write(root, "run.sh", "#!/bin/sh\n");
    write(root, "data", "d");
    fs::set_permissions(root.join("run.sh"), fs::Permissions::from_mode(0o755)).unwrap();
    let mut snap = Snapshot::scan(root, &[]).unwrap();
    let set = all(&snap);
    snap.hash(&[&set], None).unwrap();
    let inputs = snap.inputs(&set).unwrap();
    assert_eq!(inputs[0].0, "data");
    assert!(!inputs[0].2);
    assert_eq!(inputs[1].0, "run.sh");
    assert!(inputs[1].2);
}

#[test]
fn a_file_deleted_after_the_scan_is_an_error_naming_it() {
    let workspace = tempfile::tempdir().unwrap();
    let root = workspace.path();
    write(root, "gone.txt", "soon");
    let mut snap = Snapshot::scan(root, &[]).unwrap();
    fs::remove_file(root.join("gone.txt")).unwrap();
    let set = all(&snap);
    match snap.hash(&[&set], None) {
        Err(Error::Io { path, .. }) => assert_eq!(path, root.join("gone.txt")),
        other => panic!("expected Error::Io, got {other:?}"),
    }
}

#[test]
fn index_from_elsewhere_is_an_error() {
    let mut snap = monorepo();
    let bogus: FileSet = vec![10_000];
    assert!(snap.hash(&[&bogus], None).is_err());
    assert!(snap.inputs(&bogus).is_err());
}

type Change<'a> = Box<dyn Fn() + 'a>;

#[test]
fn tree_digest_moves_with_paths_contents_and_modes_only() {
    let workspace = tempfile::tempdir().unwrap();
    let root = workspace.path();
    for file in 0..5 {
        write(root, &format!("pkg/f{file}.txt"), &format!("{file}"));
    }
    let cache = stat_cache_in(root);
    settle();
    let skip = vec![".once".to_owned()];
    let scan = || {
        let mut snapshot = Snapshot::scan(root, &skip).unwrap();
        snapshot.prime(&cache);
        snapshot
    };
    let mut first = scan();
    let unknown = first.tree_digest();
    let set = all(&first);
    first.hash(&[&set], Some(&cache)).unwrap();
    let known = first.tree_digest();
    assert_ne!(unknown, known, "a digest learned changes the tree");
    assert_eq!(scan().tree_digest(), known, "an unchanged tree, primed");

    // A new stat with the same content: the same tree.
    fs::write(root.join("pkg/f1.txt"), "1").unwrap();
    settle();
    let mut touched = scan();
    assert_ne!(touched.tree_digest(), known, "unknown until hashed again");
    let set = all(&touched);
    touched.hash(&[&set], Some(&cache)).unwrap();
    assert_eq!(touched.tree_digest(), known);

    let changes: [(Change, &str); 4] = [
        (
            Box::new(|| fs::write(root.join("pkg/f2.txt"), "changed").unwrap()),
            "content",
        ),
        (Box::new(|| write(root, "pkg/new.txt", "x")), "a new file"),
        (
            Box::new(|| fs::rename(root.join("pkg/f0.txt"), root.join("pkg/g0.txt")).unwrap()),
            "a rename",
        ),
        (
            Box::new(|| set_executable(&root.join("pkg/f3.txt"))),
            "the executable bit",
        ),
    ];
    for (change, what) in changes {
        let before = {
            let mut snapshot = scan();
            let set = all(&snapshot);
            snapshot.hash(&[&set], Some(&cache)).unwrap();
            snapshot.tree_digest()
        };
        change();
        settle();
        let mut after = scan();
        let set = all(&after);
        after.hash(&[&set], Some(&cache)).unwrap();
        assert_ne!(after.tree_digest(), before, "{what}");
    }
}

#[cfg(unix)]
fn set_executable(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(path, fs::Permissions::from_mode(0o755)).unwrap();
}

#[cfg(not(unix))]
fn set_executable(_: &Path) {}

/// The tree digest hashes files in runs, side by side: a change in any run moves it, as does a
/// file gone from the first (which shifts where every later run starts), and the same tree
/// gives the same digest again.
#[test]
fn tree_digest_moves_with_a_change_in_any_run_of_files() {
    let workspace = tempfile::tempdir().unwrap();
    let root = workspace.path();
    for file in 0..2_100 {
        write(
            root,
            &format!("pkg/d{}/f{file:04}.txt", file / 100),
            &format!("{file}"),
        );
    }
    let skip = vec![".once".to_owned()];
    let digest = || {
        let mut snapshot = Snapshot::scan(root, &skip).unwrap();
        let set = all(&snapshot);
        snapshot.hash(&[&set], None).unwrap();
        snapshot.tree_digest()
    };
    let before = digest();
    assert_eq!(digest(), before, "the same tree");
    fs::write(root.join("pkg/d20/f2099.txt"), "changed").unwrap();
    let changed_last = digest();
    assert_ne!(changed_last, before, "a change in the last run");
    fs::write(root.join("pkg/d20/f2099.txt"), "2099").unwrap();
    assert_eq!(digest(), before, "changed back");
    fs::remove_file(root.join("pkg/d0/f0000.txt")).unwrap();
    assert_ne!(digest(), before, "a file gone from the first run");
}

fn journal_of(cache: &Path) -> std::path::PathBuf {
    cache.with_file_name("statcache.journal")
}

/// A run that hashes a few files appends their records to the stat cache's journal instead of
/// rewriting every record; once the journal would hold more than an eighth as many records as
/// the cache, or cannot be trusted, the cache is rewritten whole and the journal removed.
#[test]
fn a_few_new_digests_go_to_the_journal_until_it_outgrows_an_eighth() {
    let workspace = tempfile::tempdir().unwrap();
    let root = workspace.path();
    for file in 0..80 {
        write(root, &format!("pkg/f{file:02}.txt"), &format!("{file}"));
    }
    let cache = stat_cache_in(root);
    let journal = journal_of(&cache);
    let skip = vec![".once".to_owned()];
    let hash = || {
        let mut snapshot = Snapshot::scan(root, &skip).unwrap();
        snapshot.prime(&cache);
        let set = all(&snapshot);
        snapshot.hash(&[&set], Some(&cache)).unwrap()
    };
    let edit = |files: std::ops::Range<usize>, text: &str| {
        for file in files {
            write(
                root,
                &format!("pkg/f{file:02}.txt"),
                &format!("{text} {file}"),
            );
        }
        settle(); // past the racy window: the records written next are trusted
    };
    settle();
    assert_eq!(hash(), 80);
    let whole = fs::read(&cache).unwrap();
    assert!(!journal.exists());

    edit(0..1, "one");
    assert_eq!(hash(), 1);
    assert_eq!(
        fs::read(&cache).unwrap(),
        whole,
        "not rewritten for one record"
    );
    assert!(journal.is_file());
    assert_eq!(hash(), 0, "the journal's record is trusted");
    edit(1..10, "nine more");
    assert_eq!(hash(), 9);
    assert_eq!(
        fs::read(&cache).unwrap(),
        whole,
        "10 records: an eighth of 80"
    );
    assert_eq!(hash(), 0);

    edit(10..11, "one past an eighth");
    assert_eq!(hash(), 1);
    assert_ne!(fs::read(&cache).unwrap(), whole, "rewritten whole");
    assert!(!journal.exists(), "and the journal removed");
    assert_eq!(hash(), 0);

    // A damaged journal is not read: its file is hashed again, and the cache rewritten whole.
    edit(20..21, "damaged");
    assert_eq!(hash(), 1);
    let mut bytes = fs::read(&journal).unwrap();
    let last = bytes.len() - 40;
    bytes[last] ^= 0x01;
    fs::write(&journal, &bytes).unwrap();
    assert_eq!(hash(), 1);
    assert!(!journal.exists());
    assert_eq!(hash(), 0);

    // A journal of an earlier cache file (rewritten since) is not extended.
    edit(30..31, "stale");
    assert_eq!(hash(), 1);
    let stale = fs::read(&journal).unwrap();
    edit(31..42, "many");
    assert_eq!(hash(), 11);
    assert!(!journal.exists());
    fs::write(&journal, &stale).unwrap();
    edit(50..51, "after");
    assert_eq!(hash(), 1);
    assert!(
        !journal.exists(),
        "rewritten whole, not appended to a stale journal"
    );
    assert_eq!(hash(), 0);
}

#[test]
fn workspace_inputs_are_selected_from_the_root() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    for rel in [
        "pnpm-lock.yaml",
        "tsconfig.base.json",
        "config/a.json",
        "config/b.txt",
        "libs/a/src/x.ts",
        "libs/a/dist/x.js",
        "libs/b/y.ts",
    ] {
        write(root, rel, "x");
    }
    let snapshot = Snapshot::scan(root, &[]).unwrap();
    let include = [
        "src/**".to_owned(),
        "//tsconfig.base.json".to_owned(),
        "//config/*.json".to_owned(),
    ];
    let set = snapshot
        .select("libs/a", &include, &["dist/".to_owned()])
        .unwrap();
    assert_eq!(
        snapshot.paths(&set).unwrap(),
        ["config/a.json", "libs/a/src/x.ts", "tsconfig.base.json"]
    );
    let many = snapshot
        .select_many(&[
            ("libs/a".to_owned(), include.to_vec(), vec![]),
            ("libs/b".to_owned(), include.to_vec(), vec![]),
        ])
        .unwrap();
    assert_eq!(
        snapshot.paths(&many[1]).unwrap(),
        ["config/a.json", "tsconfig.base.json"]
    );
}

/// After a command ran: the inputs it gained (a new file its globs match), lost and saw
/// edited, and none of the files its globs do not match or that are ignored.
#[test]
fn changed_since_scan_finds_inputs_added_removed_and_edited() {
    let workspace = tempfile::tempdir().unwrap();
    let root = workspace.path();
    let skip = vec![".once".to_owned()];
    write(root, ".gitignore", "tmp/\n");
    for rel in [
        "pkg/src/a.txt",
        "pkg/src/b.txt",
        "pkg/src/c.txt",
        "pkg/README",
    ] {
        write(root, rel, "before");
    }
    let globs = (vec!["src/**".to_owned()], vec!["src/out/".to_owned()]);
    let snapshot = Snapshot::scan(root, &skip).unwrap();
    let set = snapshot.select("pkg", &globs.0, &globs.1).unwrap();
    let changed = |snapshot: &Snapshot| {
        snapshot
            .changed_since_scan(&set, "pkg", &globs.0, &globs.1, &skip)
            .unwrap()
    };
    assert!(changed(&snapshot).is_empty());
    write(root, "pkg/README", "not an input");
    write(root, "pkg/src/out/made.txt", "excluded");
    write(root, "pkg/src/tmp/scratch.txt", "ignored");
    write(root, "other/src/x.txt", "another package");
    assert!(changed(&snapshot).is_empty());
    write(root, "pkg/src/0-new.txt", "added");
    fs::remove_file(root.join("pkg/src/b.txt")).unwrap();
    write(root, "pkg/src/c.txt", "edited, longer");
    write(root, "pkg/src/d.txt", "added");
    assert_eq!(
        changed(&snapshot),
        vec![
            "pkg/src/0-new.txt",
            "pkg/src/b.txt",
            "pkg/src/c.txt",
            "pkg/src/d.txt"
        ]
    );
}

/// A `//` input outside the package is not walked again after the command: its stat is
/// checked, so an edit counts and an unchanged one never makes the step look changed.
#[test]
fn changed_since_scan_checks_workspace_inputs_by_their_stat() {
    let workspace = tempfile::tempdir().unwrap();
    let root = workspace.path();
    write(root, "tsconfig.base.json", "{}");
    write(root, "pkg/src/a.ts", "a");
    let snapshot = Snapshot::scan(root, &[]).unwrap();
    let include = vec!["src/**".to_owned(), "//tsconfig.base.json".to_owned()];
    let set = snapshot.select("pkg", &include, &[]).unwrap();
    let changed = |snapshot: &Snapshot| {
        snapshot
            .changed_since_scan(&set, "pkg", &include, &[], &[])
            .unwrap()
    };
    assert_eq!(changed(&snapshot), Vec::<String>::new());
    fs::write(root.join("tsconfig.base.json"), "{\"strict\": true}").unwrap();
    assert_eq!(changed(&snapshot), ["tsconfig.base.json"]);
}

#[test]
fn select_named_is_double_star_slash_name() {
    let snap = listing(&[
        "Cargo.lock",
        "once.toml",
        "apps/web/once.toml",
        "apps/web/src/once.toml.bak",
        "apps/web/xonce.toml",
        "libs/core/Cargo.lock",
        "libs/core/src/lib.rs",
    ]);
    let wanted = vec!["once.toml".to_owned(), "Cargo.lock".to_owned()];
    let found: Vec<&str> = snap
        .select_named(&wanted)
        .iter()
        .map(|&i| &*snap.files[i as usize].rel)
        .collect();
    let globs: Vec<&str> = ["**/once.toml", "**/Cargo.lock"].to_vec();
    assert_eq!(found, select(&snap, "", &globs, &[]));
    assert_eq!(
        found,
        vec![
            "Cargo.lock",
            "apps/web/once.toml",
            "libs/core/Cargo.lock",
            "once.toml"
        ]
    );
}

/// Inputs named one by one (no glob) are checked by their stat alone, and find the same
/// changes the walk finds: an edit, a removal, a named file the command created, a named
/// folder's files; never an ignored or excluded file, nor one that stayed as it was.
#[test]
fn changed_since_scan_of_named_inputs_finds_what_a_walk_finds() {
    let workspace = tempfile::tempdir().unwrap();
    let root = workspace.path();
    write(root, "pkg/.gitignore", "ignored.txt\n");
    for rel in ["pkg/a.txt", "pkg/b.txt", "pkg/conf/x.json", "shared.txt"] {
        write(root, rel, "before");
    }
    let include: Vec<String> = [
        "a.txt",
        "./b.txt",
        "made.txt",
        "conf",
        "ignored.txt",
        "//shared.txt",
    ]
    .map(str::to_owned)
    .to_vec();
    let exclude = vec!["b.txt".to_owned()];
    let snapshot = Snapshot::scan(root, &[]).unwrap();
    let set = snapshot.select("pkg", &include, &exclude).unwrap();
    let changed = || {
        snapshot
            .changed_since_scan(&set, "pkg", &include, &exclude, &[])
            .unwrap()
    };
    assert_eq!(changed(), Vec::<String>::new());
    write(root, "pkg/ignored.txt", "ignored: no input");
    write(root, "pkg/b.txt", "excluded: no input");
    write(root, "pkg/other.txt", "not named");
    assert_eq!(changed(), Vec::<String>::new());
    write(root, "pkg/a.txt", "edited, longer");
    write(root, "shared.txt", "edited, longer");
    assert_eq!(changed(), ["pkg/a.txt", "shared.txt"]);
    write(root, "pkg/made.txt", "created by the command");
    fs::remove_file(root.join("pkg/conf/x.json")).unwrap();
    assert_eq!(
        changed(),
        ["pkg/a.txt", "pkg/conf/x.json", "pkg/made.txt", "shared.txt"]
    );
}

/// Named inputs that all stay files, or stay absent: the stat alone decides.
#[test]
fn changed_since_scan_of_named_inputs_by_their_stat() {
    let workspace = tempfile::tempdir().unwrap();
    let root = workspace.path();
    for rel in ["pkg/a.txt", "pkg/b.txt", "shared.txt"] {
        write(root, rel, "before");
    }
    let include: Vec<String> = ["a.txt", "b.txt", "missing.txt", "//shared.txt"]
        .map(str::to_owned)
        .to_vec();
    let snapshot = Snapshot::scan(root, &[]).unwrap();
    let set = snapshot.select("pkg", &include, &[]).unwrap();
    let changed = || {
        snapshot
            .changed_since_scan(&set, "pkg", &include, &[], &[])
            .unwrap()
    };
    assert_eq!(changed(), Vec::<String>::new());
    write(root, "pkg/a.txt", "edited, longer");
    assert_eq!(changed(), ["pkg/a.txt"]);
    fs::remove_file(root.join("shared.txt")).unwrap();
    fs::remove_file(root.join("pkg/b.txt")).unwrap();
    fs::create_dir(root.join("pkg/b.txt")).unwrap();
    assert_eq!(changed(), ["pkg/a.txt", "pkg/b.txt", "shared.txt"]);
}
