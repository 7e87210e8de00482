//! Keying a plan in one batch: each key is the one its full spec gives, a dependency's key
//! reaches its dependents, and a batch out of dependency order is refused.

use std::fs;

use once_core::key::{batch_keys, spec_of, KeyRequest};
use once_core::snapshot::{FileSet, Snapshot};
use once_core::Error;

fn workspace(files: &[(&str, &str)]) -> (tempfile::TempDir, Snapshot) {
    let dir = tempfile::tempdir().unwrap();
    for (rel, text) in files {
        let path = dir.path().join(rel);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, text).unwrap();
    }
    let snapshot = Snapshot::scan(dir.path(), &[]).unwrap();
    (dir, snapshot)
}

fn select(snapshot: &mut Snapshot, package: &str) -> FileSet {
    let set = snapshot.select(package, &["**".to_owned()], &[]).unwrap();
    snapshot.hash(&[&set], None).unwrap();
    set
}

fn request<'a>(inputs: &'a FileSet, label: &str, deps: &[&str]) -> KeyRequest<'a> {
    KeyRequest {
        inputs,
        label: label.to_owned(),
        cmd: format!("make {label}"),
        cwd: String::new(),
        platform: "linux-x86_64".to_owned(),
        env_mode: "strict".to_owned(),
        env: vec![
            ("B".to_owned(), "2".to_owned()),
            ("A".to_owned(), "1".to_owned()),
        ],
        tools: vec![],
        lockfiles: vec![],
        deps: deps.iter().map(|dep| (*dep).to_owned()).collect(),
        outputs: vec!["out/".to_owned()],
    }
}

fn keys_of(files: &[(&str, &str)]) -> Vec<String> {
    let (_dir, mut snapshot) = workspace(files);
    let (lib, app) = (select(&mut snapshot, "lib"), select(&mut snapshot, "app"));
    let requests = [
        request(&lib, "//lib:build", &[]),
        request(&app, "//app:build", &["//lib:build"]),
    ];
    let keys = batch_keys(&snapshot, &requests).unwrap();
    keys.iter().map(once_core::Digest::to_hex).collect()
}

#[test]
fn each_key_is_the_key_of_its_spec() {
    let (_dir, mut snapshot) = workspace(&[("lib/a.txt", "a"), ("app/b.txt", "b")]);
    let (lib, app) = (select(&mut snapshot, "lib"), select(&mut snapshot, "app"));
    let requests = [
        request(&lib, "//lib:build", &[]),
        request(&app, "//app:build", &["//lib:build"]),
    ];
    let keys = batch_keys(&snapshot, &requests).unwrap();
    let lib_spec = spec_of(&snapshot, &requests[0], vec![]).unwrap();
    assert_eq!(lib_spec.key(), keys[0]);
    assert_eq!(lib_spec.inputs[0].path, "lib/a.txt");
    let deps = vec![("//lib:build".to_owned(), keys[0].to_hex())];
    assert_eq!(
        spec_of(&snapshot, &requests[1], deps).unwrap().key(),
        keys[1]
    );
}

#[test]
fn a_dependency_change_reaches_its_dependents_and_nothing_else() {
    let before = keys_of(&[("lib/a.txt", "a"), ("app/b.txt", "b")]);
    let lib_edit = keys_of(&[("lib/a.txt", "A"), ("app/b.txt", "b")]);
    let app_edit = keys_of(&[("lib/a.txt", "a"), ("app/b.txt", "B")]);
    assert_ne!(before[0], lib_edit[0]);
    assert_ne!(before[1], lib_edit[1]);
    assert_eq!(before[0], app_edit[0]);
    assert_ne!(before[1], app_edit[1]);
    assert_eq!(before, keys_of(&[("lib/a.txt", "a"), ("app/b.txt", "b")]));
}

#[test]
fn a_batch_out_of_dependency_order_is_refused() {
    let (_dir, mut snapshot) = workspace(&[("lib/a.txt", "a")]);
    let lib = select(&mut snapshot, "lib");
    let requests = [
        request(&lib, "//app:build", &["//lib:build"]),
        request(&lib, "//lib:build", &[]),
    ];
    let err = batch_keys(&snapshot, &requests).unwrap_err();
    assert!(matches!(err, Error::KeyBatch { .. }), "{err}");
    assert!(err
        .to_string()
        .contains("//app:build depends on //lib:build"));
}
