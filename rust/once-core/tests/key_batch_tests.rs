//! Keying a plan in one batch: each key is the one its full spec gives, a dependency's result
//! (its key, or with early cutoff the digest of its outputs) reaches its dependents, a
//! dependent of a step with no known result waits, and a batch out of dependency order is
//! refused.

use std::collections::BTreeMap;
use std::fs;

use once_core::key::{batch_keys, key_result, request_key, spec_of, KeyRequest};
use once_core::snapshot::{FileSet, Snapshot};
use once_core::Digest;
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
    cut_request(inputs, label, deps, false)
}

fn cut_request<'a>(
    inputs: &'a FileSet,
    label: &str,
    deps: &[&str],
    cutoff: bool,
) -> KeyRequest<'a> {
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
        deps: deps.iter().map(|dep| (*dep).to_owned()).collect(),
        outputs: vec!["out/".to_owned()],
        cutoff,
    }
}

/// Keys where every step with cutoff produced `produced` (None: nothing cached).
fn keyed(
    snapshot: &Snapshot,
    requests: &[KeyRequest<'_>],
    produced: Option<&str>,
) -> Vec<Option<Digest>> {
    batch_keys(snapshot, requests, |_, _| produced.map(str::to_owned))
        .unwrap()
        .keys
}

fn keys_of(files: &[(&str, &str)]) -> Vec<String> {
    let (_dir, mut snapshot) = workspace(files);
    let (lib, app) = (select(&mut snapshot, "lib"), select(&mut snapshot, "app"));
    let requests = [
        request(&lib, "//lib:build", &[]),
        request(&app, "//app:build", &["//lib:build"]),
    ];
    let keys = keyed(&snapshot, &requests, None);
    keys.iter().map(|key| key.unwrap().to_hex()).collect()
}

#[test]
fn each_key_is_the_key_of_its_spec() {
    let (_dir, mut snapshot) = workspace(&[("lib/a.txt", "a"), ("app/b.txt", "b")]);
    let (lib, app) = (select(&mut snapshot, "lib"), select(&mut snapshot, "app"));
    let requests = [
        request(&lib, "//lib:build", &[]),
        request(&app, "//app:build", &["//lib:build"]),
    ];
    let keys: Vec<Digest> = keyed(&snapshot, &requests, None)
        .into_iter()
        .map(Option::unwrap)
        .collect();
    let lib_spec = spec_of(&snapshot, &requests[0], vec![], BTreeMap::default()).unwrap();
    assert_eq!(lib_spec.key(), keys[0]);
    assert_eq!(lib_spec.inputs[0].path, "lib/a.txt");
    let deps = vec![("//lib:build".to_owned(), key_result(&keys[0]))];
    assert_eq!(
        spec_of(&snapshot, &requests[1], deps.clone(), BTreeMap::default())
            .unwrap()
            .key(),
        keys[1]
    );
    assert_eq!(
        request_key(&snapshot, &requests[1], &deps).unwrap(),
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
    let err = batch_keys(&snapshot, &requests, |_, _| None).unwrap_err();
    assert!(matches!(err, Error::KeyBatch { .. }), "{err}");
    assert!(err
        .to_string()
        .contains("//app:build depends on //lib:build"));
}

/// With cutoff, a dependent is keyed by what its dependency produced: an input change that
/// leaves the outputs the same leaves the dependent's key the same, other outputs change it,
/// and a dependency with nothing cached leaves its dependents (and theirs) unkeyed.
#[test]
fn with_cutoff_a_dependent_is_keyed_by_its_dependency_outputs() {
    let keys = |lib_text: &str, produced: Option<&str>| {
        let (_dir, mut snapshot) = workspace(&[("lib/a.txt", lib_text), ("app/b.txt", "b")]);
        let (lib, app) = (select(&mut snapshot, "lib"), select(&mut snapshot, "app"));
        let requests = [
            cut_request(&lib, "//lib:build", &[], true),
            cut_request(&app, "//app:build", &["//lib:build"], true),
            cut_request(&app, "//app:test", &["//app:build"], false),
        ];
        keyed(&snapshot, &requests, produced)
    };
    let before = keys("a", Some("outputs 11"));
    let comment = keys("a // comment", Some("outputs 11"));
    assert_ne!(before[0], comment[0]);
    assert_eq!(before[1], comment[1]);
    assert_eq!(before[2], comment[2]);
    let other = keys("a", Some("outputs 22"));
    assert_eq!(before[0], other[0]);
    assert_ne!(before[1], other[1]);
    assert_ne!(before[2], other[2]);
    let unknown = keys("a", None);
    assert_eq!(unknown[0], before[0]);
    assert_eq!(unknown[1..], [None, None]);
}
