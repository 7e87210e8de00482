//! Restore, removal and save never lose a user's file: no write or delete through a symlinked
//! folder, an output folder emptied in place (it may be a mount point), and `once`'s own
//! temporary files never taken for outputs.
#![cfg(unix)]

mod common;

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::{symlink, MetadataExt};
use std::path::Path;

use common::Fixture;
use once_core::store::{ActionEntry, LinkMode, INLINE_MAX};
use once_core::Error;

fn write(path: &Path, bytes: &[u8]) {
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(path, bytes).unwrap();
}

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| (*s).to_owned()).collect()
}

/// Every file and link below `root`, not following links, with its bytes or target.
fn tree(root: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut found = BTreeMap::new();
    let mut pending = vec![root.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let rel = path.strip_prefix(root).unwrap().display().to_string();
            let meta = fs::symlink_metadata(&path).unwrap();
            if meta.file_type().is_symlink() {
                let target = fs::read_link(&path).unwrap();
                found.insert(rel, target.display().to_string().into_bytes());
            } else if meta.is_dir() {
                found.insert(rel, b"/".to_vec());
                pending.push(path);
            } else {
                found.insert(rel, fs::read(&path).unwrap());
            }
        }
    }
    found
}

/// `text` repeated past the size of an output its entry carries: a blob, which a hard-link
/// restore links to.
fn big(text: &[u8]) -> Vec<u8> {
    text.repeat(INLINE_MAX as usize / text.len() + 1)
}

impl Fixture {
    fn save_outputs(&self, outputs: &[String]) -> ActionEntry {
        self.store
            .save(&"ab".repeat(32), &self.ws, "app", outputs, b"", 0, 0)
            .unwrap()
    }

    /// A folder beside the package holding a file the user cares about.
    fn outside(&self) -> std::path::PathBuf {
        let outside = self.ws.join("outside");
        write(&outside.join("gen/precious.txt"), b"precious");
        outside
    }
}

fn assert_symlinked(err: &Error, output: &str, link: &str) {
    match err {
        Error::Symlinked {
            output: named,
            link: through,
            ..
        } => assert_eq!((named.as_str(), through.as_str()), (output, link), "{err}"),
        _ => panic!("not refused as symlinked: {err}"),
    }
}

#[test]
fn nothing_follows_a_symlinked_folder_above_an_output() {
    let fx = Fixture::new();
    let outputs = strings(&["build/gen/"]);
    write(&fx.ws.join("app/build/gen/out.txt"), b"made");
    let entry = fx.save_outputs(&outputs);
    // The folder above the output now leads out of the package.
    fs::remove_dir_all(fx.ws.join("app/build")).unwrap();
    let outside = fx.outside();
    symlink("../outside", fx.ws.join("app/build")).unwrap();
    let before = tree(&outside);

    let err = fx
        .store
        .restore_with(&fx.ws, "app", &outputs, &entry, LinkMode::Copy)
        .unwrap_err();
    assert_symlinked(&err, "app/build/gen", "app/build");
    assert!(err.to_string().contains("app/build -> ../outside"), "{err}");
    let err = fx
        .store
        .unshare_outputs(&fx.ws, "app", &outputs)
        .unwrap_err();
    assert_symlinked(&err, "app/build/gen", "app/build");
    let err = fx
        .store
        .outputs_match(&fx.ws, "app", &outputs, &entry, None)
        .unwrap_err();
    assert_symlinked(&err, "app/build/gen", "app/build");
    let err = fx
        .store
        .save(&"cd".repeat(32), &fx.ws, "app", &outputs, b"", 0, 0)
        .unwrap_err();
    assert_symlinked(&err, "app/build/gen", "app/build");
    assert!(fx.store.lookup(&"cd".repeat(32)).is_none());
    assert_eq!(
        tree(&outside),
        before,
        "something outside the package changed"
    );
}

#[test]
fn a_glob_output_below_a_symlinked_folder_is_refused() {
    let fx = Fixture::new();
    let outputs = strings(&["dist/**/*.js"]);
    write(&fx.ws.join("app/dist/sub/a.js"), b"a");
    let entry = fx.save_outputs(&outputs);
    // `dist/sub` is not among the outputs (only `*.js` files are): a restore would have
    // written `a.js` through it.
    fs::remove_dir_all(fx.ws.join("app/dist/sub")).unwrap();
    let outside = fx.outside();
    symlink("../../outside/gen", fx.ws.join("app/dist/sub")).unwrap();
    let before = tree(&outside);
    let err = fx
        .store
        .restore_with(&fx.ws, "app", &outputs, &entry, LinkMode::Copy)
        .unwrap_err();
    assert_symlinked(&err, "app/dist/sub/a.js", "app/dist/sub");
    assert_eq!(tree(&outside), before);
}

#[test]
fn an_output_that_became_a_symlink_is_replaced_not_followed() {
    let fx = Fixture::new();
    let outputs = strings(&["dist/"]);
    write(&fx.ws.join("app/dist/gen/precious.txt"), b"restored");
    let entry = fx.save_outputs(&outputs);
    fs::remove_dir_all(fx.ws.join("app/dist")).unwrap();
    let outside = fx.outside();
    symlink("../outside", fx.ws.join("app/dist")).unwrap();
    let before = tree(&outside);
    fx.store
        .restore_with(&fx.ws, "app", &outputs, &entry, LinkMode::Copy)
        .unwrap();
    assert_eq!(tree(&outside), before);
    assert!(!fs::symlink_metadata(fx.ws.join("app/dist"))
        .unwrap()
        .file_type()
        .is_symlink());
    assert_eq!(
        fs::read(fx.ws.join("app/dist/gen/precious.txt")).unwrap(),
        b"restored"
    );
}

#[test]
fn a_symlink_among_outputs_pointing_out_of_the_package_is_kept_as_a_link() {
    let fx = Fixture::new();
    let outputs = strings(&["dist/"]);
    write(&fx.ws.join("lib/data.txt"), b"lib's own");
    write(&fx.ws.join("app/dist/a.txt"), b"a");
    symlink("../../lib/data.txt", fx.ws.join("app/dist/data")).unwrap();
    let entry = fx.save_outputs(&outputs);
    fs::remove_dir_all(fx.ws.join("app/dist")).unwrap();
    fx.store
        .restore_with(&fx.ws, "app", &outputs, &entry, LinkMode::Copy)
        .unwrap();
    assert_eq!(
        fs::read_link(fx.ws.join("app/dist/data")).unwrap(),
        Path::new("../../lib/data.txt")
    );
    assert_eq!(fs::read(fx.ws.join("lib/data.txt")).unwrap(), b"lib's own");
}

#[test]
fn a_restore_empties_an_output_folder_in_place() {
    let fx = Fixture::new();
    let outputs = strings(&["dist/"]);
    write(&fx.ws.join("app/dist/sub/a.txt"), b"a");
    let entry = fx.save_outputs(&outputs);
    write(&fx.ws.join("app/dist/stale.txt"), b"stale");
    // An open handle tells whether the folder itself survived: removed, it has no links left.
    // A mount point (a container volume) cannot be removed at all.
    let held = fs::File::open(fx.ws.join("app/dist")).unwrap();
    fx.store
        .restore_with(&fx.ws, "app", &outputs, &entry, LinkMode::Copy)
        .unwrap();
    assert!(
        held.metadata().unwrap().nlink() > 0,
        "the folder was removed"
    );
    assert!(!fx.ws.join("app/dist/stale.txt").exists());
    assert_eq!(fs::read(fx.ws.join("app/dist/sub/a.txt")).unwrap(), b"a");
    assert!(fx
        .store
        .outputs_match(&fx.ws, "app", &outputs, &entry, None)
        .unwrap());
}

#[test]
fn a_folder_the_entry_lacks_is_still_removed() {
    let fx = Fixture::new();
    let outputs = strings(&["dist/"]);
    let entry = fx.save_outputs(&outputs);
    write(&fx.ws.join("app/dist/stale.txt"), b"stale");
    fx.store
        .restore_with(&fx.ws, "app", &outputs, &entry, LinkMode::Copy)
        .unwrap();
    assert!(!fx.ws.join("app/dist").exists());
}

#[test]
fn save_skips_and_removes_temporary_files_a_kill_left_among_outputs() {
    let fx = Fixture::new();
    let outputs = strings(&["dist/", "*.out"]);
    write(&fx.ws.join("app/dist/a.txt"), b"a");
    write(&fx.ws.join("app/dist/sub/.tmp-4242-7"), b"half a copy");
    write(&fx.ws.join("app/.tmp-4242-8"), b"half a copy");
    // Names that only look alike are the user's.
    write(&fx.ws.join("app/dist/.tmp-notes"), b"mine");
    let entry = fx.save_outputs(&outputs);
    let paths: Vec<&str> = entry.outputs.iter().map(|o| o.path.as_str()).collect();
    assert_eq!(
        paths,
        [
            "app/dist",
            "app/dist/.tmp-notes",
            "app/dist/a.txt",
            "app/dist/sub"
        ]
    );
    assert!(!fx.ws.join("app/dist/sub/.tmp-4242-7").exists());
    // Outside the declared outputs nothing is touched.
    assert!(fx.ws.join("app/.tmp-4242-8").exists());
}

#[test]
fn unshare_makes_its_copies_outside_the_outputs() {
    let fx = Fixture::new();
    let outputs = strings(&["dist/"]);
    let files = 500;
    for i in 0..files {
        write(
            &fx.ws.join(format!("app/dist/f{i}.txt")),
            &big(format!("{i}").as_bytes()),
        );
    }
    let entry = fx.save_outputs(&outputs);
    fx.store
        .restore_with(&fx.ws, "app", &outputs, &entry, LinkMode::Hardlink)
        .unwrap();
    // Watched while it works: a copy made among the outputs is what a kill would leave there.
    let dist = fx.ws.join("app/dist");
    let done = std::sync::atomic::AtomicBool::new(false);
    let seen = std::thread::scope(|scope| {
        let watcher = scope.spawn(|| {
            let mut seen = Vec::new();
            while !done.load(std::sync::atomic::Ordering::Relaxed) {
                seen.extend(
                    fs::read_dir(&dist)
                        .unwrap()
                        .filter_map(|entry| entry.ok()?.file_name().into_string().ok())
                        .filter(|name| name.starts_with(".tmp-")),
                );
            }
            seen
        });
        let unshared = fx.store.unshare_outputs(&fx.ws, "app", &outputs);
        done.store(true, std::sync::atomic::Ordering::Relaxed);
        assert_eq!(unshared.unwrap(), files);
        watcher.join().unwrap()
    });
    assert!(
        seen.is_empty(),
        "temporary files among the outputs: {seen:?}"
    );
    assert_eq!(fs::metadata(dist.join("f7.txt")).unwrap().nlink(), 1);
    assert!(fx
        .store
        .outputs_match(&fx.ws, "app", &outputs, &entry, None)
        .unwrap());
}

/// `source` mounted again at `target` until dropped.
struct BindMount(std::path::PathBuf);

impl BindMount {
    /// `None` where mounting is refused (not root, or no mount namespace of one's own).
    fn new(source: &Path, target: &Path) -> Option<BindMount> {
        fs::create_dir_all(target).unwrap();
        let done = std::process::Command::new("mount")
            .arg("--bind")
            .arg(source)
            .arg(target)
            .output()
            .ok()?;
        done.status
            .success()
            .then(|| BindMount(target.to_path_buf()))
    }
}

impl Drop for BindMount {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg(&self.0).status();
    }
}

#[test]
fn unshare_through_another_mount_of_the_store_file_system_copies_in_place() {
    let fx = Fixture::new();
    let outputs = strings(&["dist/"]);
    write(&fx.ws.join("app/dist/a.txt"), &big(b"alpha"));
    let entry = fx.save_outputs(&outputs);
    fx.store
        .restore_with(&fx.ws, "app", &outputs, &entry, LinkMode::Hardlink)
        .unwrap();
    // The workspace seen through a bind mount: the store's device, but no rename from the
    // store's folder can cross into it (EXDEV).
    let Some(mount) = BindMount::new(&fx.ws.join("app"), &fx.ws.join("bound/app")) else {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "cannot bind-mount in CI"
        );
        eprintln!("skipped: mounting was refused");
        return;
    };
    let bound = fx.ws.join("bound");
    assert_eq!(
        fx.store.unshare_outputs(&bound, "app", &outputs).unwrap(),
        1
    );
    let copy = bound.join("app/dist/a.txt");
    assert_eq!(fs::metadata(&copy).unwrap().nlink(), 1);
    assert_eq!(fs::read(&copy).unwrap(), big(b"alpha"));
    assert!(fx
        .store
        .outputs_match(&bound, "app", &outputs, &entry, None)
        .unwrap());
    drop(mount);
    assert_eq!(fs::read_dir(fx.ws.join("app/dist")).unwrap().count(), 1);
}
