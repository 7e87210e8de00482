//! The workspace walk: which files it finds, which it leaves out, and in what order.

use std::fs;
use std::path::Path;

use once_core::walk::{walk_workspace, walk_workspace_below, walk_workspace_links, FileStat};
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
        .map(|file| file.rel.into_string())
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
fn symlinks_to_files_and_folders_are_followed_and_dangling_ones_skipped() {
    use std::os::unix::fs::symlink;
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    write(root, "real/target.txt", "twelve bytes");
    symlink("real/target.txt", root.join("link.txt")).unwrap();
    symlink("nowhere", root.join("dangling")).unwrap();
    symlink("real", root.join("dirlink")).unwrap();
    let files = walk_workspace(root, &[]).unwrap();
    let rels: Vec<&str> = files.iter().map(|f| &*f.rel).collect();
    assert_eq!(
        rels,
        vec!["dirlink/target.txt", "link.txt", "real/target.txt"]
    );
    assert_eq!(
        files[1].stat, files[2].stat,
        "a link reports its target's stat"
    );
    assert_eq!(files[0].stat, files[2].stat);
    assert_eq!(files[1].stat.size, 12);
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
    let run = files.iter().find(|f| &*f.rel == "run.sh").unwrap();
    assert_eq!(run.stat, FileStat::from_metadata(&meta));
    assert_eq!(run.stat.ino, meta.ino());
    assert_eq!(run.stat.size, 10);
    assert_eq!(
        run.stat.mtime_ns,
        meta.mtime() * 1_000_000_000 + meta.mtime_nsec()
    );
    assert!(run.stat.executable());
    let data = files.iter().find(|f| &*f.rel == "data.txt").unwrap();
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

/// What the walk found before it was written by hand: the `ignore` crate's walker with the
/// options `walk_workspace` used, files and symlinks to files, sorted. The oracle of
/// `same_files_as_the_ignore_crate_on_generated_trees`.
fn ignore_crate_walk(root: &Path, skip_dirs: &[&str]) -> Vec<String> {
    let skipped: Vec<std::path::PathBuf> = skip_dirs.iter().map(|dir| root.join(dir)).collect();
    let mut builder = ignore::WalkBuilder::new(root);
    builder
        .hidden(false)
        .require_git(false)
        .git_ignore(true)
        .git_exclude(true)
        .git_global(false)
        .parents(false)
        .ignore(false)
        .add_custom_ignore_filename(".onceignore")
        .filter_entry(move |entry| {
            entry.file_name() != ".git" && !skipped.iter().any(|dir| entry.path() == dir)
        });
    let mut found: Vec<String> = builder
        .build()
        .filter_map(Result::ok)
        .filter(|entry| fs::metadata(entry.path()).is_ok_and(|meta| meta.is_file()))
        .filter(|entry| entry.depth() > 0)
        .map(|entry| {
            entry
                .path()
                .strip_prefix(root)
                .unwrap()
                .to_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    found.sort();
    found
}

/// A small deterministic generator (no `rand` in the tree).
struct Lcg(u64);

impl Lcg {
    fn below(&mut self, n: usize) -> usize {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        ((self.0 >> 33) % n as u64) as usize
    }
    fn pick<'a>(&mut self, from: &[&'a str]) -> &'a str {
        from[self.below(from.len())]
    }
}

#[test]
fn same_files_as_the_ignore_crate_on_generated_trees() {
    // Names that sort around `/` (`-`, `.`, ` `), hidden ones, and ones the patterns name.
    const NAMES: &[&str] = &[
        "a",
        "a-b",
        "a.b",
        "a b",
        "ab",
        "b",
        "build",
        "dist",
        "gen",
        ".hidden",
        "x.log",
        "y.tmp",
        "keep.log",
        "src",
        "Z",
        "out",
        "node_modules",
        "lib.rs",
    ];
    const PATTERNS: &[&str] = &[
        "*.log",
        "!keep.log",
        "build/",
        "/dist",
        "gen",
        "*.tmp",
        "a*/",
        "**/out/**",
        "!**/out/keep.log",
        "src/*.rs",
        "/a/b",
        "\\!weird",
        "node_modules",
        "!b",
        "[ab].b",
        "# comment",
        "",
        "Z/",
        "*/lib.rs",
        "!*.log",
        "!gen",
        "!build/",
        "!src/*.rs",
        "*",
        "!*/",
        // More lines that only name things (the walk answers those itself, see ignore_file.rs).
        "*.b",
        "/a",
        "a.b/",
        ".hidden",
        "out  ",
        "/src/",
        "*b",
    ];
    for seed in 1..=60u64 {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let mut rng = Lcg(seed);
        let mut folders = vec![String::new()];
        for _ in 0..60 {
            let parent = folders[rng.below(folders.len())].clone();
            let name = rng.pick(NAMES);
            let rel = if parent.is_empty() {
                name.to_owned()
            } else {
                format!("{parent}/{name}")
            };
            if root.join(&rel).exists() {
                continue;
            }
            if rng.below(3) == 0 && rel.split('/').count() < 5 {
                fs::create_dir_all(root.join(&rel)).unwrap();
                folders.push(rel);
            } else {
                write(root, &rel, "x");
            }
        }
        for folder in folders.clone() {
            for (file, chance) in [(".gitignore", 3), (".onceignore", 3)] {
                if rng.below(chance) == 0 {
                    let lines: Vec<&str> = (0..=rng.below(4)).map(|_| rng.pick(PATTERNS)).collect();
                    write(
                        root,
                        &format!("{folder}/{file}"),
                        &(lines.join("\n") + "\n"),
                    );
                }
            }
        }
        // A repository at the root, and now and then a nested one, each with its exclude file.
        write(
            root,
            ".git/info/exclude",
            &format!("{}\n", rng.pick(PATTERNS)),
        );
        let nested = folders[rng.below(folders.len())].clone();
        if !nested.is_empty() && rng.below(2) == 0 {
            write(
                root,
                &format!("{nested}/.git/info/exclude"),
                &format!("{}\n{}\n", rng.pick(PATTERNS), rng.pick(PATTERNS)),
            );
        }
        let skip = [rng.pick(NAMES)];
        assert_eq!(
            walked(root, &skip),
            ignore_crate_walk(root, &skip),
            "seed {seed}"
        );
    }
}

#[test]
fn nearest_rule_decides_and_onceignore_overrides_gitignore() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    write(root, ".gitignore", "*.log\nbuild/\n");
    write(root, "pkg/.gitignore", "!keep.log\n");
    write(root, "pkg/keep.log", "re-included below");
    write(root, "pkg/drop.log", "still ignored");
    write(root, ".onceignore", "!wanted.log\nsecret.txt\n");
    write(root, "wanted.log", ".onceignore wins over .gitignore");
    write(root, "secret.txt", "ignored by .onceignore only");
    write(root, "pkg/build/x", "ignored folder: never entered");
    write(root, "pkg/build/.gitignore", "!x\n");
    assert_eq!(
        walked(root, &[]),
        vec![
            ".gitignore",
            ".onceignore",
            "pkg/.gitignore",
            "pkg/keep.log",
            "wanted.log"
        ]
    );
}

#[test]
fn exclude_file_of_a_nested_repository_applies_below_it_only() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    write(root, "vendor/lib/.git/info/exclude", "local.txt\n");
    write(
        root,
        "vendor/lib/local.txt",
        "excluded in the nested repository",
    );
    write(root, "vendor/lib/src/local.txt", "also below it");
    write(root, "vendor/local.txt", "outside it");
    assert_eq!(walked(root, &[]), vec!["vendor/local.txt"]);
}

#[test]
fn a_worktree_uses_the_exclude_file_of_its_main_repository() {
    let dir = tempfile::tempdir().unwrap();
    let main = dir.path().join("main");
    write(&main, ".git/info/exclude", "private.txt\n");
    write(&main, ".git/worktrees/wt/commondir", "../..\n");
    let worktree = dir.path().join("wt");
    write(
        &worktree,
        ".git",
        &format!("gitdir: {}\n", main.join(".git/worktrees/wt").display()),
    );
    write(&worktree, "private.txt", "excluded by the main repository");
    write(&worktree, "shared.txt", "kept");
    assert_eq!(walked(&worktree, &[]), vec!["shared.txt"]);
}

#[cfg(unix)]
#[test]
fn non_utf8_names_are_refused_unless_ignored() {
    use std::ffi::OsStr;
    use std::os::unix::ffi::OsStrExt;
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    write(root, "ok.txt", "x");
    let bad = OsStr::from_bytes(b"caf\xe9.txt");
    write(root, "ignored/.keep", "");
    fs::write(root.join("ignored").join(bad), "x").unwrap();
    write(root, ".gitignore", "ignored/\n");
    assert_eq!(walked(root, &[]), vec![".gitignore", "ok.txt"]);

    fs::write(root.join(bad), "x").unwrap();
    match walk_workspace(root, &[]) {
        Err(Error::Io { path, source }) => {
            assert_eq!(path, root.join(bad));
            assert_eq!(source.kind(), std::io::ErrorKind::InvalidData);
            assert!(source.to_string().contains("UTF-8"), "{source}");
        }
        other => panic!("expected Error::Io naming the file, got {other:?}"),
    }
}

#[cfg(unix)]
#[test]
fn fifos_are_not_files_and_a_link_to_its_own_folder_is_cut() {
    use std::os::unix::fs::symlink;
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    write(root, "real/a.txt", "a");
    symlink("real", root.join("loop")).unwrap();
    symlink(".", root.join("real/self")).unwrap();
    let made = std::process::Command::new("mkfifo")
        .arg(root.join("pipe"))
        .status()
        .is_ok_and(|status| status.success());
    if made {
        symlink("pipe", root.join("pipe-link")).unwrap();
    }
    assert_eq!(walked(root, &[]), vec!["loop/a.txt", "real/a.txt"]);
}

#[cfg(unix)]
#[test]
fn every_stat_equals_what_std_reports() {
    use std::os::unix::fs::symlink;
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    for rel in ["a", "b/c", "b/d/e", ".f"] {
        write(root, rel, rel);
    }
    symlink("b/c", root.join("link")).unwrap();
    for file in walk_workspace(root, &[]).unwrap() {
        let meta = fs::metadata(root.join(&*file.rel)).unwrap();
        assert_eq!(file.stat, FileStat::from_metadata(&meta), "{}", file.rel);
    }
}

#[test]
fn a_deep_tree_is_walked_whole_and_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let mut expected = Vec::new();
    let mut folder = String::new();
    for depth in 0..150usize {
        for name in ["z", "a.txt"] {
            let rel = format!("{folder}{name}{depth}");
            write(root, &rel, "x");
            expected.push(rel);
        }
        folder = format!("{folder}d{depth}/");
    }
    expected.sort();
    assert_eq!(walked(root, &[]), expected);
}

/// Walking one folder finds what the whole walk finds below it, ignore files of the folders
/// above it included, and nothing below a folder the whole walk would not enter.
#[test]
fn a_walk_below_a_folder_finds_what_the_whole_walk_finds_there() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    write(root, ".gitignore", "*.log\nscratch/\n");
    write(root, "apps/.onceignore", "cache/\n");
    write(root, "apps/web/src/a.ts", "a");
    write(root, "apps/web/src/debug.log", "ignored by the root");
    write(root, "apps/web/cache/c.bin", "ignored by apps/");
    write(root, "apps/web/scratch/x", "ignored by the root");
    write(root, "apps/web/.gitignore", "/local\n");
    write(root, "apps/web/local", "ignored by its own folder");
    write(root, "apps/web-legacy/b.ts", "a sibling, not below");
    write(root, "apps/other.ts", "not below");
    write(root, "skipped/x.txt", "skipped");
    let skip = vec!["skipped".to_owned(), ".once".to_owned()];
    let whole: Vec<(String, FileStat)> = walk_workspace(root, &skip)
        .unwrap()
        .into_iter()
        .filter(|file| file.rel.starts_with("apps/web/"))
        .map(|file| (file.rel.into_string(), file.stat))
        .collect();
    for below in ["apps/web", "apps/web/", "./apps/web"] {
        let part: Vec<(String, FileStat)> = walk_workspace_below(root, below, &skip)
            .unwrap()
            .into_iter()
            .map(|file| (file.rel.into_string(), file.stat))
            .collect();
        assert_eq!(part, whole, "{below}");
    }
    let names: Vec<&str> = whole.iter().map(|(rel, _)| rel.as_str()).collect();
    assert_eq!(names, vec!["apps/web/.gitignore", "apps/web/src/a.ts"]);
    for nothing in [
        "apps/web/cache",
        "apps/web/scratch",
        "skipped",
        "apps/missing",
        "apps/other.ts",
    ] {
        assert!(
            walk_workspace_below(root, nothing, &skip)
                .unwrap()
                .is_empty(),
            "{nothing}"
        );
    }
    assert_eq!(
        walk_workspace_below(root, "", &skip).unwrap().len(),
        walk_workspace(root, &skip).unwrap().len()
    );
}

#[cfg(unix)]
#[test]
fn a_folder_link_inside_the_workspace_is_walked_under_its_path_with_ignore_files() {
    use std::os::unix::fs::symlink;
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    write(root, ".gitignore", "src/shared/gen/\n");
    write(root, "shared/x.ts", "x");
    write(root, "shared/.gitignore", "*.log\n");
    write(root, "shared/debug.log", "noise");
    write(root, "shared/gen/out.ts", "generated");
    write(root, "src/main.ts", "main");
    symlink("../shared", root.join("src/shared")).unwrap();
    assert_eq!(
        walked(root, &[]),
        vec![
            ".gitignore",
            "shared/.gitignore",
            "shared/gen/out.ts",
            "shared/x.ts",
            "src/main.ts",
            "src/shared/.gitignore",
            "src/shared/x.ts",
        ]
    );
    let (_, links) = walk_workspace_links(root, &[]).unwrap();
    assert_eq!(links.len(), 1);
    assert_eq!(links[0].link, "src/shared");
    assert_eq!(links[0].target, root.join("shared").canonicalize().unwrap());
    assert_eq!(links[0].target_rel.as_deref(), Some("shared"));
    let below: Vec<String> = walk_workspace_below(root, "src/shared", &[])
        .unwrap()
        .into_iter()
        .map(|file| file.rel.into_string())
        .collect();
    assert_eq!(below, vec!["src/shared/.gitignore", "src/shared/x.ts"]);
}

#[cfg(unix)]
#[test]
fn link_cycles_are_cut_and_each_path_walked_once() {
    use std::os::unix::fs::symlink;
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    write(root, "a/f.txt", "a");
    write(root, "x/f.txt", "x");
    write(root, "z/f.txt", "z");
    symlink("..", root.join("a/loop")).unwrap();
    symlink("../z", root.join("x/to-z")).unwrap();
    symlink("../x", root.join("z/to-x")).unwrap();
    assert_eq!(
        walked(root, &[]),
        vec![
            "a/f.txt",
            "x/f.txt",
            "x/to-z/f.txt",
            "z/f.txt",
            "z/to-x/f.txt",
        ]
    );
}

#[cfg(unix)]
#[test]
fn a_link_into_git_or_a_skipped_folder_is_not_followed() {
    use std::os::unix::fs::symlink;
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    write(root, ".git/HEAD", "ref");
    write(root, ".once/state", "s");
    write(root, "src/a.txt", "a");
    symlink("../.git", root.join("src/git")).unwrap();
    symlink("../.once", root.join("src/state")).unwrap();
    assert_eq!(walked(root, &[".once"]), vec!["src/a.txt"]);
}

#[cfg(unix)]
#[test]
fn a_folder_link_leaving_the_workspace_is_walked_and_reported_outside() {
    use std::os::unix::fs::symlink;
    let outside = tempfile::tempdir().unwrap();
    write(outside.path(), "lib/y.ts", "y");
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    write(root, "src/main.ts", "main");
    symlink(outside.path().join("lib"), root.join("src/ext")).unwrap();
    let (files, links) = walk_workspace_links(root, &[]).unwrap();
    let rels: Vec<&str> = files.iter().map(|f| &*f.rel).collect();
    assert_eq!(rels, vec!["src/ext/y.ts", "src/main.ts"]);
    assert_eq!(links.len(), 1);
    assert_eq!(links[0].link, "src/ext");
    assert_eq!(links[0].target_rel, None);
}
