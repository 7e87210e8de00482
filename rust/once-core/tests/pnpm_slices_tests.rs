//! The slices of pnpm-lock.yaml files written here by hand: what reaches an importer's digest,
//! what does not, and which files or importers give no slice (then the caller takes the whole
//! file).

use std::collections::HashMap;
use std::fmt::Write as _;

use once_core::hash::hash_bytes;
use once_core::pnpm_slices::{file_slice_digests, slice_digests};
use once_core::Digest;

fn digests(text: &str) -> HashMap<String, Option<Digest>> {
    slice_digests(text.as_bytes())
        .expect("sliceable")
        .into_iter()
        .collect()
}

fn slice(text: &str, importer: &str) -> Digest {
    digests(text)[importer].expect("a slice")
}

/// v9: `a` uses left-pad, and shared-util (with a peer) which pulls in tiny; `b` uses tiny
/// alone; `c` links `a`.
fn v9(left_pad: &str, tiny: &str, settings: &str) -> String {
    format!(
        "lockfileVersion: '9.0'

settings:
  autoInstallPeers: {settings}

importers:

  .: {{}}

  packages/a:
    dependencies:
      left-pad:
        specifier: ^1.3.0
        version: 1.3.0
      shared-util:
        specifier: ^2.0.0
        version: 2.0.0(react@18.2.0)

  packages/b:
    devDependencies:
      tiny:
        specifier: ^1
        version: 1.0.0

  packages/c:
    dependencies:
      a:
        specifier: workspace:*
        version: link:../a

packages:

  left-pad@1.3.0:
    resolution: {{integrity: sha512-{left_pad}}}

  react@18.2.0:
    resolution: {{integrity: sha512-react}}

  shared-util@2.0.0:
    resolution: {{integrity: sha512-shared}}

  tiny@1.0.0:
    resolution: {{integrity: sha512-{tiny}}}

snapshots:

  left-pad@1.3.0: {{}}

  react@18.2.0: {{}}

  shared-util@2.0.0(react@18.2.0):
    dependencies:
      react: 18.2.0
      tiny: 1.0.0

  tiny@1.0.0: {{}}
"
    )
}

#[test]
fn a_change_reaches_the_importers_that_resolve_it_and_no_other() {
    let before = digests(&v9("left", "tiny", "true"));
    assert_eq!(before.len(), 4);
    assert!(before.values().all(Option::is_some));

    let left_pad = digests(&v9("left2", "tiny", "true"));
    assert_ne!(left_pad["packages/a"], before["packages/a"]);
    assert_ne!(left_pad["packages/c"], before["packages/c"], "c links a");
    assert_eq!(left_pad["packages/b"], before["packages/b"]);
    assert_eq!(left_pad["."], before["."]);

    let tiny = digests(&v9("left", "tiny2", "true"));
    assert_ne!(
        tiny["packages/a"], before["packages/a"],
        "through shared-util"
    );
    assert_ne!(
        tiny["packages/b"], before["packages/b"],
        "devDependencies count"
    );
    assert_eq!(tiny["."], before["."]);

    let settings = digests(&v9("left", "tiny", "false"));
    for (importer, digest) in &settings {
        assert_ne!(
            *digest, before[importer],
            "the head is in every slice: {importer}"
        );
    }
}

#[test]
fn a_slice_is_of_content_not_of_layout() {
    let block = v9("left", "tiny", "true");
    // Flow style, quoted scalars, entries in another order, comments: the same values.
    let flow = block
        .replace("        version: 1.3.0\n", "        version: '1.3.0'  # pinned\n")
        .replace(
            "  react@18.2.0: {}\n\n  shared-util@2.0.0(react@18.2.0):\n    dependencies:\n      react: 18.2.0\n      tiny: 1.0.0\n",
            "  shared-util@2.0.0(react@18.2.0): {dependencies: {tiny: 1.0.0, react: \"18.2.0\"}}\n\n  react@18.2.0: {}\n",
        );
    assert_ne!(flow, block);
    assert_eq!(digests(&flow), digests(&block));
}

#[test]
fn lockfiles_v6_and_v5_name_packages_by_path() {
    let v6 = |tiny: &str| {
        format!(
            "lockfileVersion: '6.0'
importers:
  packages/a:
    dependencies:
      shared-util:
        specifier: ^2.0.0
        version: 2.0.0(react@18.2.0)
  packages/b:
    dependencies:
      react:
        specifier: ^18
        version: 18.2.0
packages:
  /react@18.2.0:
    resolution: {{integrity: sha512-react}}
  /shared-util@2.0.0(react@18.2.0):
    resolution: {{integrity: sha512-shared}}
    dependencies:
      react: 18.2.0
      tiny: 1.0.0
  /tiny@1.0.0:
    resolution: {{integrity: sha512-{tiny}}}
"
        )
    };
    assert_ne!(slice(&v6("x"), "packages/a"), slice(&v6("y"), "packages/a"));
    assert_eq!(slice(&v6("x"), "packages/b"), slice(&v6("y"), "packages/b"));

    let v5 = |tiny: &str| {
        format!(
            "lockfileVersion: 5.4
importers:
  packages/a:
    specifiers:
      shared-util: ^2.0.0
    dependencies:
      shared-util: 2.0.0_react@18.2.0
  packages/b:
    dependencies:
      react: 18.2.0
packages:
  /react/18.2.0:
    resolution: {{integrity: sha512-react}}
  /shared-util/2.0.0_react@18.2.0:
    resolution: {{integrity: sha512-shared}}
    dependencies:
      react: 18.2.0
      tiny: 1.0.0
  /tiny/1.0.0:
    resolution: {{integrity: sha512-{tiny}}}
"
        )
    };
    assert_ne!(slice(&v5("x"), "packages/a"), slice(&v5("y"), "packages/a"));
    assert_eq!(slice(&v5("x"), "packages/b"), slice(&v5("y"), "packages/b"));
}

#[test]
fn an_alias_resolves_to_the_package_it_names() {
    let lock = |integrity: &str| {
        format!(
            "lockfileVersion: '9.0'
importers:
  packages/a:
    dependencies:
      string-width-cjs:
        specifier: npm:string-width@^4.2.0
        version: string-width@4.2.3
  packages/b: {{}}
packages:
  string-width@4.2.3:
    resolution: {{integrity: {integrity}}}
snapshots:
  string-width@4.2.3: {{}}
"
        )
    };
    assert_ne!(
        slice(&lock("x"), "packages/a"),
        slice(&lock("y"), "packages/a")
    );
    assert_eq!(
        slice(&lock("x"), "packages/b"),
        slice(&lock("y"), "packages/b")
    );
}

#[test]
fn a_lockfile_without_importers_is_one_project() {
    let lock = |tiny: &str| {
        format!(
            "lockfileVersion: '9.0'
dependencies:
  tiny:
    specifier: ^1
    version: 1.0.0
packages:
  tiny@1.0.0:
    resolution: {{integrity: {tiny}}}
  other@1.0.0:
    resolution: {{integrity: other}}
snapshots:
  tiny@1.0.0: {{}}
  other@1.0.0: {{}}
"
        )
    };
    let before = digests(&lock("x"));
    assert_eq!(before.keys().collect::<Vec<_>>(), ["."]);
    assert_ne!(before["."], digests(&lock("y"))["."]);
    let other = lock("x").replace("integrity: other", "integrity: other2");
    assert_eq!(
        before["."],
        digests(&other)["."],
        "other is not a dependency"
    );
}

#[test]
fn an_importer_that_cannot_be_resolved_has_no_slice() {
    let lock = v9("left", "tiny", "true")
        .replace("version: link:../a", "version: link:../gone")
        .replace(
            "version: 1.0.0\n\n  packages/c",
            "version: 9.9.9\n\n  packages/c",
        );
    let found = digests(&lock);
    assert_eq!(
        found["packages/c"], None,
        "a link to a project the lockfile does not list"
    );
    assert_eq!(
        found["packages/b"], None,
        "a dependency the lockfile does not describe"
    );
    assert!(found["packages/a"].is_some());
}

#[test]
fn a_snapshot_and_its_peer_variant_are_both_followed() {
    // `a` reaches x@1.0.0(peer@1.0.0) directly and x@1.0.0 through dep: each snapshot's own
    // dependencies are in the slice, whichever is reached first.
    let lock = |deep: &str| {
        format!(
            "lockfileVersion: '9.0'
importers:
  packages/a:
    dependencies:
      dep:
        specifier: ^1
        version: 1.0.0
      x:
        specifier: ^1
        version: 1.0.0(peer@1.0.0)
packages:
  dep@1.0.0:
    resolution: {{integrity: dep}}
  deep@1.0.0:
    resolution: {{integrity: {deep}}}
  peer@1.0.0:
    resolution: {{integrity: peer}}
  x@1.0.0:
    resolution: {{integrity: x}}
snapshots:
  dep@1.0.0:
    dependencies:
      x: 1.0.0
  deep@1.0.0: {{}}
  peer@1.0.0: {{}}
  x@1.0.0:
    dependencies:
      deep: 1.0.0
  x@1.0.0(peer@1.0.0):
    dependencies:
      peer: 1.0.0
"
        )
    };
    assert_ne!(
        slice(&lock("d1"), "packages/a"),
        slice(&lock("d2"), "packages/a")
    );
}

#[test]
fn files_that_cannot_be_sliced() {
    let good = v9("left", "tiny", "true");
    for (why, text) in [
        ("not YAML", format!("{good}\n{{{{{{ not [ valid\n")),
        (
            "a YAML alias",
            good.replace("  .: {}", "  .: &empty {}\n  other: *empty"),
        ),
        ("two documents", format!("{good}---\nmore: 1\n")),
        ("not a mapping", "- a\n- b\n".to_owned()),
        ("empty", String::new()),
        (
            "a key that is a list",
            good.replace("  .: {}", "  [a, b]: {}"),
        ),
    ] {
        assert!(slice_digests(text.as_bytes()).is_none(), "{why}");
    }
    assert!(
        slice_digests(b"lockfileVersion: '9.0'\n\xff\n").is_none(),
        "not UTF-8"
    );
}

#[test]
fn a_file_read_a_buffer_at_a_time_slices_as_its_bytes_do() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("pnpm-lock.yaml");
    // Far past one read, with chars of 2, 3 and 4 bytes that reads cut in the middle.
    let mut text = v9("left", "tiny", "true");
    for i in 0..3000 {
        writeln!(text, "# é ∑ 😀 comment {i}").unwrap();
    }
    text = text.replace("sha512-react", "sha512-réact-∑-😀");
    std::fs::write(&path, &text).unwrap();
    let (digest, found) = file_slice_digests(&path).unwrap();
    assert_eq!(digest, hash_bytes(text.as_bytes()));
    let found: HashMap<_, _> = found.expect("sliceable").into_iter().collect();
    assert_eq!(found, digests(&text));

    // Not UTF-8 halfway: no slices, and the digest still of the whole file.
    let mut bytes = text.into_bytes();
    bytes.insert(70_000, 0xff);
    std::fs::write(&path, &bytes).unwrap();
    let (digest, found) = file_slice_digests(&path).unwrap();
    assert_eq!(digest, hash_bytes(&bytes));
    assert_eq!(found, None);

    assert!(file_slice_digests(&dir.path().join("missing.yaml")).is_err());
}
