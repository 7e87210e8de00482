//! The local store: atomic blobs and entries, complete hits only, faithful and safe restore.
#![cfg(unix)]

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};

use once_core::hash::Digest;
use once_core::store::{ActionEntry, Inline, OutputEntry, OutputKind, Store, INLINE_MAX};
use once_core::Error;

fn digest_of(bytes: &[u8]) -> Digest {
    Digest(*blake3::hash(bytes).as_bytes())
}

fn write(path: &Path, bytes: &[u8]) {
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(path, bytes).unwrap();
}

fn chmod(path: &Path, mode: u32) {
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
}

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| (*s).to_owned()).collect()
}

/// Everything below `root` (not following symlinks) as comparable text: kind, mode, content.
fn tree(root: &Path) -> BTreeMap<String, String> {
    fn visit(root: &Path, dir: &Path, out: &mut BTreeMap<String, String>) {
        for entry in fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            let rel = path
                .strip_prefix(root)
                .unwrap()
                .to_str()
                .unwrap()
                .to_owned();
            let meta = fs::symlink_metadata(&path).unwrap();
            let mode = meta.permissions().mode() & 0o777;
            if meta.file_type().is_symlink() {
                let target = fs::read_link(&path).unwrap();
                out.insert(rel, format!("link {}", target.display()));
            } else if meta.is_dir() {
                out.insert(rel, "dir".to_owned());
                visit(root, &path, out);
            } else {
                let bytes = fs::read(&path).unwrap();
                out.insert(rel, format!("file {mode:o} {}", digest_of(&bytes)));
            }
        }
    }
    let mut out = BTreeMap::new();
    if root.exists() {
        visit(root, root, &mut out);
    }
    out
}

/// A workspace with package `app` whose build made `dist/` (nested, empty folder, symlinks,
/// an executable) and `bin/tool`, plus a source file that is not an output.
struct Fixture {
    _dirs: [tempfile::TempDir; 2],
    ws: PathBuf,
    store: Store,
}

impl Fixture {
    fn new() -> Fixture {
        let ws_dir = tempfile::tempdir().unwrap();
        let store_dir = tempfile::tempdir().unwrap();
        // One level down, so tests can watch the folder around the workspace too.
        let ws = ws_dir.path().join("ws");
        let app = ws.join("app");
        write(&app.join("src/main.c"), b"int main() {}");
        write(&app.join("dist/a.txt"), &alpha());
        write(&app.join("dist/sub/b.bin"), &[0u8, 1, 2, 255]);
        write(&app.join("dist/run.sh"), b"#!/bin/sh\necho hi\n");
        chmod(&app.join("dist/run.sh"), 0o755);
        fs::create_dir_all(app.join("dist/empty/deeper")).unwrap();
        symlink("a.txt", app.join("dist/link")).unwrap();
        symlink("sub", app.join("dist/dirlink")).unwrap();
        symlink("../src/main.c", app.join("dist/up")).unwrap();
        write(&app.join("bin/tool"), b"\x7fELF...");
        chmod(&app.join("bin/tool"), 0o755);
        let store = Store::open(store_dir.path()).unwrap();
        Fixture {
            _dirs: [ws_dir, store_dir],
            ws,
            store,
        }
    }

    /// `l` is never built; crafted entries use it.
    fn outputs() -> Vec<String> {
        strings(&["dist", "bin/tool", "l"])
    }

    fn save(&self) -> ActionEntry {
        self.save_as(&"ab".repeat(32), &Fixture::outputs())
    }

    fn save_as(&self, key: &str, outputs: &[String]) -> ActionEntry {
        self.store
            .save(key, &self.ws, "app", outputs, &log(), 0, 1234)
            .unwrap()
    }

    fn matches(&self, entry: &ActionEntry) -> bool {
        self.store
            .outputs_match(&self.ws, "app", &Fixture::outputs(), entry, None)
            .unwrap()
    }
}

/// The log of `Fixture::save`: longer than a log its entry carries, so a blob.
fn log() -> Vec<u8> {
    b"building...\n".repeat(INLINE_MAX as usize / 10)
}

/// `dist/a.txt`: larger than an output its entry carries, so a blob.
fn alpha() -> Vec<u8> {
    b"alpha".repeat(INLINE_MAX as usize)
}

fn manifest_paths(entry: &ActionEntry) -> Vec<&str> {
    entry.outputs.iter().map(|o| o.path.as_str()).collect()
}

#[test]
fn save_then_lookup_roundtrips() {
    let fx = Fixture::new();
    let entry = fx.save();
    assert_eq!(fx.store.lookup(&entry.key), Some(entry.clone()));
    assert_eq!(fx.store.read_blob(&entry.log).unwrap(), log());
    assert_eq!((entry.exit_code, entry.duration_ms), (0, 1234));
    assert_eq!(
        manifest_paths(&entry),
        [
            "app/bin/tool",
            "app/dist",
            "app/dist/a.txt",
            "app/dist/dirlink",
            "app/dist/empty",
            "app/dist/empty/deeper",
            "app/dist/link",
            "app/dist/run.sh",
            "app/dist/sub",
            "app/dist/sub/b.bin",
            "app/dist/up",
        ]
    );
    let find = |path: &str| &entry.outputs.iter().find(|o| o.path == path).unwrap().kind;
    assert_eq!(
        find("app/dist/run.sh"),
        &OutputKind::File {
            digest: digest_of(b"#!/bin/sh\necho hi\n"),
            executable: true
        }
    );
    assert_eq!(
        find("app/dist/a.txt"),
        &OutputKind::File {
            digest: digest_of(&alpha()),
            executable: false
        }
    );
    assert_eq!(
        find("app/dist/dirlink"),
        &OutputKind::Symlink {
            target: "sub".to_owned()
        }
    );
    assert_eq!(find("app/dist/empty/deeper"), &OutputKind::Dir);
    // Blobs are read-only, named by their content, and in the documented layout.
    let hex = digest_of(&alpha()).to_hex();
    let blob = fx.store.root().join("cas").join(&hex[..2]).join(&hex);
    assert_eq!(fs::read(&blob).unwrap(), alpha());
    assert_eq!(
        fs::metadata(&blob).unwrap().permissions().mode() & 0o777,
        0o444
    );
    let entry_file = fx.store.root().join("ac").join(&entry.key[..2]);
    assert!(entry_file.join(format!("{}.json", entry.key)).is_file());
    // No temporary file is left behind.
    assert!(all_files(fx.store.root())
        .iter()
        .all(|p| !p.contains(".tmp-")));
}

fn all_files(root: &Path) -> Vec<String> {
    tree(root).into_keys().collect()
}

#[test]
fn lookup_is_none_when_anything_is_missing_or_corrupt() {
    let fx = Fixture::new();
    let entry = fx.save();
    assert!(fx.store.lookup(&"cd".repeat(32)).is_none());
    assert!(fx.store.lookup("../../etc/passwd").is_none());

    let hex = digest_of(&alpha()).to_hex();
    let blob = fx.store.root().join("cas").join(&hex[..2]).join(&hex);
    fs::remove_file(&blob).unwrap();
    assert!(!fx.store.contains(&digest_of(&alpha())));
    assert!(fx.store.lookup(&entry.key).is_none());
    // And restore refuses before deleting anything.
    let before = tree(&fx.ws);
    assert!(fx
        .store
        .restore(&fx.ws, "app", &Fixture::outputs(), &entry)
        .is_err());
    assert_eq!(tree(&fx.ws), before);

    fx.store.put_bytes(&alpha()).unwrap();
    assert!(fx.store.lookup(&entry.key).is_some());

    let hex = entry.log.to_hex();
    fs::remove_file(fx.store.root().join("cas").join(&hex[..2]).join(&hex)).unwrap();
    assert!(fx.store.lookup(&entry.key).is_none());
    fx.store.put_bytes(&log()).unwrap();
    assert!(fx.store.lookup(&entry.key).is_some());

    let path = fx
        .store
        .root()
        .join("ac")
        .join(&entry.key[..2])
        .join(format!("{}.json", entry.key));
    fs::write(&path, b"{\"key\": ").unwrap();
    assert!(fx.store.lookup(&entry.key).is_none());
}

#[test]
fn restore_after_deleting_outputs_is_identical() {
    let fx = Fixture::new();
    let before = tree(&fx.ws);
    let entry = fx.save();
    fs::remove_dir_all(fx.ws.join("app/dist")).unwrap();
    fs::remove_file(fx.ws.join("app/bin/tool")).unwrap();
    assert!(!fx.matches(&entry));
    fx.store
        .restore(&fx.ws, "app", &Fixture::outputs(), &entry)
        .unwrap();
    assert_eq!(tree(&fx.ws), before);
    assert!(fx.matches(&entry));
    // Restored files are writable copies, not the read-only blobs.
    fs::write(fx.ws.join("app/dist/a.txt"), b"changed").unwrap();
    assert_eq!(fx.store.read_blob(&digest_of(&alpha())).unwrap(), alpha());
}

#[test]
fn restore_removes_stale_files_and_fixes_changed_ones() {
    let fx = Fixture::new();
    let before = tree(&fx.ws);
    let entry = fx.save();
    write(&fx.ws.join("app/dist/stale.txt"), b"left over");
    write(&fx.ws.join("app/dist/empty/deeper/x"), b"left over");
    fs::write(fx.ws.join("app/dist/a.txt"), b"edited").unwrap();
    chmod(&fx.ws.join("app/bin/tool"), 0o644);
    fs::remove_file(fx.ws.join("app/dist/link")).unwrap();
    symlink("sub/b.bin", fx.ws.join("app/dist/link")).unwrap();
    fx.store
        .restore(&fx.ws, "app", &Fixture::outputs(), &entry)
        .unwrap();
    assert_eq!(tree(&fx.ws), before);
}

#[test]
fn outputs_match_detects_every_change() {
    type Change = fn(&Path);
    let fx = Fixture::new();
    let entry = fx.save();
    assert!(fx.matches(&entry));
    let restore = || {
        fx.store
            .restore(&fx.ws, "app", &Fixture::outputs(), &entry)
            .unwrap();
        assert!(fx.matches(&entry));
    };
    let changes: [(&str, Change); 8] = [
        ("same-size edit", |ws| {
            fs::write(ws.join("app/dist/a.txt"), b"ALPHA").unwrap();
        }),
        ("resize", |ws| {
            fs::write(ws.join("app/dist/a.txt"), b"alphabet").unwrap();
        }),
        ("added file", |ws| write(&ws.join("app/dist/sub/new"), b"")),
        ("removed file", |ws| {
            fs::remove_file(ws.join("app/dist/sub/b.bin")).unwrap();
        }),
        ("removed empty folder", |ws| {
            fs::remove_dir(ws.join("app/dist/empty/deeper")).unwrap();
        }),
        ("executable bit", |ws| {
            chmod(&ws.join("app/dist/a.txt"), 0o744);
        }),
        ("symlink target", |ws| {
            fs::remove_file(ws.join("app/dist/link")).unwrap();
            symlink("run.sh", ws.join("app/dist/link")).unwrap();
        }),
        ("file output removed", |ws| {
            fs::remove_file(ws.join("app/bin/tool")).unwrap();
        }),
    ];
    for (name, change) in changes {
        change(&fx.ws);
        assert!(!fx.matches(&entry), "outputs_match missed: {name}");
        restore();
    }
    // Outside the declared outputs nothing counts.
    write(&fx.ws.join("app/src/new.c"), b"");
    write(&fx.ws.join("app/bin/other"), b"");
    assert!(fx.matches(&entry));
}

fn crafted(fx: &Fixture, outputs: Vec<OutputEntry>) -> ActionEntry {
    ActionEntry {
        key: "ef".repeat(32),
        outputs,
        log: fx.store.put_bytes(b"").unwrap(),
        exit_code: 0,
        duration_ms: 0,
        created_unix: 0,
        inline: Inline::default(),
    }
}

fn file_entry(fx: &Fixture, path: &str) -> OutputEntry {
    OutputEntry {
        path: path.to_owned(),
        kind: OutputKind::File {
            digest: fx.store.put_bytes(b"pwned").unwrap(),
            executable: false,
        },
    }
}

fn link_entry(path: &str, target: &str) -> OutputEntry {
    OutputEntry {
        path: path.to_owned(),
        kind: OutputKind::Symlink {
            target: target.to_owned(),
        },
    }
}

#[test]
fn crafted_entries_that_escape_are_refused_untouched() {
    let fx = Fixture::new();
    let before = tree(fx.ws.parent().unwrap());
    let cases: Vec<(&str, Vec<OutputEntry>)> = vec![
        ("dot-dot path", vec![file_entry(&fx, "app/dist/../../evil")]),
        ("leading dot-dot", vec![file_entry(&fx, "../evil")]),
        ("absolute path", vec![file_entry(&fx, "/tmp/evil")]),
        ("empty component", vec![file_entry(&fx, "app/dist//evil")]),
        (
            "not a declared output",
            vec![file_entry(&fx, "app/src/main.c")],
        ),
        ("other package", vec![file_entry(&fx, "lib/dist/x")]),
        ("link out", vec![link_entry("app/l", "../../outside")]),
        (
            "link out of a folder",
            vec![link_entry("app/dist/l", "../../../outside")],
        ),
        (
            "link far out",
            vec![link_entry("app/dist/l", "../../../../../etc")],
        ),
        (
            "absolute link",
            vec![link_entry("app/dist/l", "/etc/passwd")],
        ),
        (
            "dot-dot after a name",
            vec![link_entry("app/dist/l", "sub/../../..")],
        ),
        (
            "write through a link",
            vec![
                link_entry("app/dist/l", "../src"),
                file_entry(&fx, "app/dist/l/main.c"),
            ],
        ),
    ];
    for (name, outputs) in cases {
        // A good entry first, so "nothing written" also means "nothing removed".
        let mut outputs = outputs;
        outputs.insert(0, file_entry(&fx, "app/dist/a.txt"));
        let entry = crafted(&fx, outputs);
        let err = fx
            .store
            .restore(&fx.ws, "app", &Fixture::outputs(), &entry)
            .unwrap_err();
        assert!(matches!(err, Error::Escape(_)), "{name}: {err}");
        assert_eq!(
            tree(fx.ws.parent().unwrap()),
            before,
            "{name} touched the disk"
        );
    }
    // Links that stay inside are fine.
    let entry = crafted(
        &fx,
        vec![
            link_entry("app/dist/ok", "../../app/src/main.c"),
            link_entry("app/dist/dot", "./a.txt"),
        ],
    );
    fx.store
        .restore(&fx.ws, "app", &Fixture::outputs(), &entry)
        .unwrap();
    assert_eq!(
        fs::read(fx.ws.join("app/dist/ok")).unwrap(),
        b"int main() {}"
    );
}

#[test]
fn save_refuses_outputs_restore_would_refuse() {
    let fx = Fixture::new();
    symlink("/etc/hostname", fx.ws.join("app/dist/abs")).unwrap();
    let err = fx
        .store
        .save(
            &"ab".repeat(32),
            &fx.ws,
            "app",
            &Fixture::outputs(),
            b"",
            0,
            0,
        )
        .unwrap_err();
    assert!(matches!(err, Error::Escape(_)), "{err}");
    assert!(fx.store.lookup(&"ab".repeat(32)).is_none());
    // Refused before any blob was stored.
    assert!(!fx.store.contains(&digest_of(&alpha())));
}

#[test]
fn bad_patterns_and_packages_are_refused() {
    let fx = Fixture::new();
    let save = |package: &str, outputs: &[&str]| {
        fx.store
            .save(
                &"ab".repeat(32),
                &fx.ws,
                package,
                &strings(outputs),
                b"",
                0,
                0,
            )
            .unwrap_err()
    };
    assert!(matches!(save("app", &["../src"]), Error::Escape(_)));
    assert!(matches!(save("app", &["/etc"]), Error::Escape(_)));
    assert!(matches!(save("../app", &["dist"]), Error::Escape(_)));
    assert!(matches!(save("app", &["."]), Error::Glob { .. }));
    assert!(matches!(save("app", &["dist/[a"]), Error::Glob { .. }));
    let err = fx
        .store
        .save("../x", &fx.ws, "app", &strings(&["dist"]), b"", 0, 0)
        .unwrap_err();
    assert!(matches!(err, Error::Io { .. }));
}

#[test]
fn concurrent_put_file_leaves_one_intact_blob() {
    let fx = Fixture::new();
    let big: Vec<u8> = (0..3 * 1024 * 1024 + 17)
        .map(|i| (i * 7 % 251) as u8)
        .collect();
    let path = fx.ws.join("big.bin");
    fs::write(&path, &big).unwrap();
    let digests: Vec<Digest> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..8)
            .map(|_| scope.spawn(|| fx.store.put_file(&path).unwrap()))
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let expected = digest_of(&big);
    assert!(digests.iter().all(|d| *d == expected));
    assert_eq!(fx.store.read_blob(&expected).unwrap(), big);
    let cas = all_files(&fx.store.root().join("cas"));
    assert_eq!(
        cas,
        [
            expected.to_hex()[..2].to_owned(),
            format!("{}/{expected}", &expected.to_hex()[..2])
        ]
    );
    // The same bytes through put_bytes name the same blob.
    assert_eq!(fx.store.put_bytes(&big).unwrap(), expected);
}

#[test]
fn glob_outputs_collect_only_matches() {
    let fx = Fixture::new();
    let out = fx.ws.join("app/out");
    write(&out.join("a.txt"), b"a");
    write(&out.join("b.txt"), b"b");
    write(&out.join("c.log"), b"c");
    write(&out.join("sub/d.txt"), b"d");
    write(&out.join("gen.txt/inner"), b"e");
    let outputs = strings(&["out/*.txt"]);
    let entry = fx.save_as(&"12".repeat(32), &outputs);
    assert_eq!(
        manifest_paths(&entry),
        [
            "app/out/a.txt",
            "app/out/b.txt",
            "app/out/gen.txt",
            "app/out/gen.txt/inner"
        ]
    );
    // Restore replaces matches and leaves everything else in the folder alone.
    fs::remove_file(out.join("a.txt")).unwrap();
    write(&out.join("z.txt"), b"stale");
    fx.store.restore(&fx.ws, "app", &outputs, &entry).unwrap();
    assert!(!out.join("z.txt").exists());
    assert_eq!(fs::read(out.join("a.txt")).unwrap(), b"a");
    assert_eq!(fs::read(out.join("c.log")).unwrap(), b"c");
    assert_eq!(fs::read(out.join("sub/d.txt")).unwrap(), b"d");
    assert!(fx
        .store
        .outputs_match(&fx.ws, "app", &outputs, &entry, None)
        .unwrap());

    // `**` crosses folders; a glob with no literal folder walks the package.
    let entry = fx.save_as(&"34".repeat(32), &strings(&["**/*.txt"]));
    let paths = manifest_paths(&entry);
    assert!(paths.contains(&"app/out/sub/d.txt"));
    assert!(paths.contains(&"app/dist/a.txt"));
    assert!(!paths.contains(&"app/out/c.log"));
}

#[test]
fn missing_declared_outputs_are_simply_absent() {
    let fx = Fixture::new();
    let outputs = strings(&["bin/tool", "never/made", "gone/*.o", "bin/tool/below"]);
    let entry = fx.save_as(&"56".repeat(32), &outputs);
    assert_eq!(manifest_paths(&entry), ["app/bin/tool"]);
    fs::remove_file(fx.ws.join("app/bin/tool")).unwrap();
    fx.store.restore(&fx.ws, "app", &outputs, &entry).unwrap();
    assert!(fx
        .store
        .outputs_match(&fx.ws, "app", &outputs, &entry, None)
        .unwrap());
    assert!(!fx.ws.join("app/never").exists());
}

#[test]
fn root_package_and_store_inside_the_workspace() {
    let ws_dir = tempfile::tempdir().unwrap();
    let ws = ws_dir.path();
    write(&ws.join("gen/x.txt"), b"x");
    write(&ws.join(".git/HEAD"), b"ref: refs/heads/main");
    let store = Store::open(&ws.join(".once/cache")).unwrap();
    store.put_bytes(b"already cached").unwrap();
    let outputs = strings(&["**"]);
    let entry = store
        .save(&"78".repeat(32), ws, "", &outputs, b"", 0, 0)
        .unwrap();
    // The store's own folder and .git are never outputs.
    assert_eq!(manifest_paths(&entry), [".once", "gen", "gen/x.txt"]);
    store.restore(ws, "", &outputs, &entry).unwrap();
    assert!(store.contains(&digest_of(b"already cached")));
    assert!(store.lookup(&entry.key).is_some());
    assert_eq!(fs::read(ws.join("gen/x.txt")).unwrap(), b"x");
    assert!(ws.join(".git/HEAD").exists());
}

#[test]
fn leftovers_of_a_killed_writer_are_invisible() {
    let fx = Fixture::new();
    let key = "ab".repeat(32);
    let digest = digest_of(&alpha());
    // What `kill -9` mid-write leaves: temporary names only, never the final ones.
    let hex = digest.to_hex();
    write(
        &fx.store.root().join("cas").join(&hex[..2]).join(".tmp-1-0"),
        b"alp",
    );
    write(&fx.store.root().join("cas").join(".tmp-1-1"), b"alp");
    write(&fx.store.root().join("ac/ab/.tmp-1-2"), b"{\"key\":");
    assert!(!fx.store.contains(&digest));
    assert!(fx.store.lookup(&key).is_none());
    let entry = fx.save();
    assert_eq!(fx.store.lookup(&key), Some(entry));
    assert_eq!(fx.store.read_blob(&digest).unwrap(), alpha());
}

/// Deferred saves, many at once from several threads: once `finish_saves` returns, each entry
/// is in place, equal to what its save returned, with every blob it names; no temporary file
/// is left; and a clone of the store waits for the same saves.
#[test]
fn deferred_saves_are_all_in_place_after_finish_saves() {
    let fx = Fixture::new();
    let keys: Vec<String> = (0..200).map(|n| format!("{n:064x}")).collect();
    let clone = fx.store.clone();
    let saved: Vec<ActionEntry> = std::thread::scope(|scope| {
        let halves: Vec<_> = keys
            .chunks(100)
            .map(|chunk| {
                let fx = &fx;
                scope.spawn(move || {
                    chunk
                        .iter()
                        .map(|key| {
                            fx.store
                                .save_deferred(
                                    key,
                                    &fx.ws,
                                    "app",
                                    &Fixture::outputs(),
                                    key.as_bytes(),
                                    0,
                                    1,
                                )
                                .unwrap()
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        halves
            .into_iter()
            .flat_map(|half| half.join().unwrap())
            .collect()
    });
    assert!(clone.finish_saves().is_empty());
    for entry in &saved {
        assert_eq!(fx.store.lookup(&entry.key).as_ref(), Some(entry));
        // Short enough to travel in the entry.
        assert_eq!(fx.store.read_log(entry).unwrap(), entry.key.as_bytes());
    }
    let temps: Vec<String> = tree(fx.store.root())
        .into_keys()
        .filter(|path| path.contains(".tmp-"))
        .collect();
    assert_eq!(temps, Vec::<String>::new());
}
