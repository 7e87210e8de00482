//! The workspace walk: which files it finds, which it leaves out, and in what order.

use std::fs;
use std::path::Path;

use once_core::walk::{walk_workspace, FileStat};
use once_core::Error;

fn write(root: &Path, rel: &str, text: &str) {
    let path = root.join(rel);
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(path, text).unwrap();
}

fn walked(root: &Path, skip_dirs: &[&str]) -> Vec<String> {
    let skip: Vec<String> = skip_dirs.iter().map(|s| (*s).to_owned()).collect();
    walk_workspace(root, &skip)
        .unwrap()
        .into_iter()
        .map(|file| file.rel)
        .collect()
}

#[test]
fn gitignore_is_honoured_without_a_git_repository() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    write(root, ".gitignore", "*.log\nbuild/\n");
    write(root, "src/main.rs", "fn main() {}");
    write(root, "debug.log", "noise");
    write(root, "build/out.bin", "binary");
    assert_eq!(walked(root, &[]), vec![".gitignore", "src/main.rs"]);
}

#[test]
fn onceignore_is_honoured() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    write(root, ".onceignore", "data/\n");
    write(root, "data/big.csv", "1,2,3");
    write(root, "keep.txt", "keep");
    assert_eq!(walked(root, &[]), vec![".onceignore", "keep.txt"]);
}

#[test]
fn nested_gitignore_applies_below_its_folder_only() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    write(root, "pkg/.gitignore", "generated.rs\n/local-only\n");
    write(root, "pkg/generated.rs", "x");
    write(root, "pkg/sub/generated.rs", "x");
    write(root, "pkg/local-only", "x");
    write(root, "pkg/sub/local-only", "x");
    write(root, "generated.rs", "top level is not covered");
    assert_eq!(
        walked(root, &[]),
        vec!["generated.rs", "pkg/.gitignore", "pkg/sub/local-only"]
    );
}

#[test]
fn hidden_files_are_included_and_git_is_skipped() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    write(root, ".env.example", "A=1");
    write(root, ".config/tool.toml", "x = 1");
    write(root, ".git/HEAD", "ref: refs/heads/main");
    write(root, ".git/info/exclude", "secret.txt\n");
    write(root, "secret.txt", "excluded by .git/info/exclude");
    write(root, "sub/.git", "gitdir: ../.git/modules/sub");
    write(root, "sub/lib.rs", "");
    assert_eq!(
        walked(root, &[]),
        vec![".config/tool.toml", ".env.example", "sub/lib.rs"]
    );
}

#[test]
fn skip_dirs_are_not_entered() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    write(root, ".once/cache/blob", "x");
    write(root, "out/deep/artifact", "x");
    write(root, "src/out/kept.rs", "same name, other place");
    write(root, "src/a.rs", "");
    assert_eq!(
        walked(root, &[".once", "./out/"]),
        vec!["src/a.rs", "src/out/kept.rs"]
    );
}

#[test]
fn output_is_sorted_bytewise_with_slash_separators() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    for rel in ["b", "a/z", "a-b", "a/b/c", "A", "a.b", "aa"] {
        write(root, rel, rel);
    }
    let rels = walked(root, &[]);
    let mut sorted = rels.clone();
    sorted.sort();
    assert_eq!(rels, sorted);
    assert_eq!(rels, vec!["A", "a-b", "a.b", "a/b/c", "a/z", "aa", "b"]);
}

#[test]
fn many_files_are_all_found() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    for pkg in 0..20 {
        for file in 0..50 {
            write(root, &format!("pkg{pkg:02}/src/f{file:02}.txt"), "x");
        }
    }
    let rels = walked(root, &[]);
    assert_eq!(rels.len(), 1000);
    assert_eq!(rels[0], "pkg00/src/f00.txt");
    assert_eq!(rels[999], "pkg19/src/f49.txt");
}

#[cfg(unix)]
#[test]
fn symlinks_to_files_are_followed_and_others_skipped() {
    use std::os::unix::fs::symlink;
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    write(root, "real/target.txt", "twelve bytes");
    symlink("real/target.txt", root.join("link.txt")).unwrap();
    symlink("nowhere", root.join("dangling")).unwrap();
    symlink("real", root.join("dirlink")).unwrap();
    let files = walk_workspace(root, &[]).unwrap();
    let rels: Vec<&str> = files.iter().map(|f| f.rel.as_str()).collect();
    assert_eq!(rels, vec!["link.txt", "real/target.txt"]);
    assert_eq!(
        files[0].stat, files[1].stat,
        "a link reports its target's stat"
    );
    assert_eq!(files[0].stat.size, 12);
}

#[cfg(unix)]
#[test]
fn stat_carries_inode_size_times_and_mode() {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    write(root, "run.sh", "#!/bin/sh\n");
    write(root, "data.txt", "data");
    fs::set_permissions(root.join("run.sh"), fs::Permissions::from_mode(0o755)).unwrap();
    let files = walk_workspace(root, &[]).unwrap();
    let meta = fs::metadata(root.join("run.sh")).unwrap();
    let run = files.iter().find(|f| f.rel == "run.sh").unwrap();
    assert_eq!(run.stat, FileStat::from_metadata(&meta));
    assert_eq!(run.stat.ino, meta.ino());
    assert_eq!(run.stat.size, 10);
    assert_eq!(
        run.stat.mtime_ns,
        meta.mtime() * 1_000_000_000 + meta.mtime_nsec()
    );
    assert!(run.stat.executable());
    let data = files.iter().find(|f| f.rel == "data.txt").unwrap();
    assert!(!data.stat.executable());
}

#[cfg(unix)]
#[test]
fn unreadable_folder_is_an_error_naming_it() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    write(root, "locked/inside.txt", "x");
    let locked = root.join("locked");
    fs::set_permissions(&locked, fs::Permissions::from_mode(0o000)).unwrap();
    // Root can read anything; the check only means something for other users.
    let readable_anyway = fs::read_dir(&locked).is_ok();
    let result = walk_workspace(root, &[]);
    fs::set_permissions(&locked, fs::Permissions::from_mode(0o755)).unwrap();
    if readable_anyway {
        return;
    }
    match result {
        Err(Error::Io { path, .. }) => assert_eq!(path, locked),
        other => panic!("expected Error::Io naming the folder, got {other:?}"),
    }
}

#[test]
fn missing_root_is_an_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("gone");
    match walk_workspace(&missing, &[]) {
        Err(Error::Io { path, .. }) => assert_eq!(path, missing),
        other => panic!("expected Error::Io, got {other:?}"),
    }
}
