//! The action key: stable, sensitive to every field, unambiguous at field boundaries.

use once_core::hash::Digest;
use once_core::key::{key_of, ActionSpec, InputFile, KeyHead, KEY_FORMAT_VERSION};

fn digest_of(bytes: &[u8]) -> Digest {
    Digest(*blake3::hash(bytes).as_bytes())
}

fn spec() -> ActionSpec {
    ActionSpec {
        label: "//libs/core:build".to_owned(),
        cmd: "cargo build --release".to_owned(),
        cwd: "libs/core".to_owned(),
        platform: "linux-x86_64".to_owned(),
        env_mode: "strict".to_owned(),
        env: vec![("RUSTFLAGS".to_owned(), "-Dwarnings".to_owned())],
        tools: vec![("rustc --version".to_owned(), "rustc 1.95.0".to_owned())],
        inputs: vec![
            InputFile {
                path: "libs/core/Cargo.toml".to_owned(),
                digest: digest_of(b"[package]"),
                executable: false,
            },
            InputFile {
                path: "libs/core/build.sh".to_owned(),
                digest: digest_of(b"#!/bin/sh"),
                executable: true,
            },
        ],
        deps: vec![(
            "//libs/gen:gen".to_owned(),
            format!("key {}", "ab".repeat(32)),
        )],
        outputs: vec!["target/release".to_owned(), "dist/*.whl".to_owned()],
        dep_outputs: std::collections::BTreeMap::default(),
    }
}

#[test]
fn golden_key_is_stable() {
    // Pinned on purpose: if this changes, every cache entry ever written is silently invalid
    // (or worse, an old one matches a new meaning). Bump KEY_FORMAT_VERSION, then re-pin.
    assert_eq!(KEY_FORMAT_VERSION, 3);
    assert_eq!(
        spec().key().to_hex(),
        "6069863317768ef6027508595a3c96824114e3ddc0296aa2c3f6fa26c02950e5"
    );
}

#[test]
fn key_is_blake3_of_encoding_with_magic_and_version() {
    let spec = spec();
    let encoded = spec.encode();
    assert!(encoded.starts_with(b"once-key"));
    assert_eq!(encoded[8..12], KEY_FORMAT_VERSION.to_le_bytes());
    assert_eq!(spec.key(), digest_of(&encoded));
    assert_eq!(spec.key(), spec.clone().key());
}

#[test]
fn every_field_changes_the_key() {
    type Change = fn(&mut ActionSpec);
    let changes: [(&str, Change); 15] = [
        ("label", |s| s.label.push('x')),
        ("cmd", |s| s.cmd.push(' ')),
        ("cwd", |s| s.cwd = "libs".to_owned()),
        ("platform", |s| s.platform = "linux-aarch64".to_owned()),
        ("env mode", |s| s.env_mode = "loose".to_owned()),
        ("env value", |s| s.env[0].1.push('x')),
        ("env name", |s| s.env[0].0 = "CFLAGS".to_owned()),
        ("env unset", |s| s.env.clear()),
        ("tool output", |s| s.tools[0].1 = "rustc 1.96.0".to_owned()),
        ("input path", |s| s.inputs[0].path.push('x')),
        ("input digest", |s| {
            s.inputs[0].digest = digest_of(b"[workspace]");
        }),
        ("executable bit", |s| s.inputs[0].executable = true),
        ("dep key", |s| s.deps[0].1 = "cd".repeat(32)),
        ("outputs", |s| s.outputs.truncate(1)),
        ("outputs order", |s| s.outputs.reverse()),
    ];
    let base = spec().key();
    let mut seen = vec![base];
    for (name, change) in changes {
        let mut other = spec();
        change(&mut other);
        let key = other.key();
        assert_ne!(key, base, "changing the {name} left the key unchanged");
        assert!(!seen.contains(&key), "changing the {name} collided");
        seen.push(key);
    }
}

#[test]
fn field_boundaries_are_unambiguous() {
    let mut left = spec();
    left.cmd = "ab".to_owned();
    left.cwd = "c".to_owned();
    let mut right = spec();
    right.cmd = "a".to_owned();
    right.cwd = "bc".to_owned();
    assert_ne!(left.key(), right.key());

    // An item moved from one list to its neighbour.
    let mut left = spec();
    left.env = vec![("A".to_owned(), "1".to_owned())];
    left.tools = vec![];
    let mut right = spec();
    right.env = vec![];
    right.tools = vec![("A".to_owned(), "1".to_owned())];
    assert_ne!(left.key(), right.key());

    // One output "a/b" vs two outputs whose bytes concatenate the same.
    let mut left = spec();
    left.outputs = vec!["ab".to_owned()];
    let mut right = spec();
    right.outputs = vec!["a".to_owned(), "b".to_owned()];
    assert_ne!(left.key(), right.key());

    // Name/value split inside one env pair.
    let mut left = spec();
    left.env = vec![("AB".to_owned(), String::new())];
    let mut right = spec();
    right.env = vec![("A".to_owned(), "B".to_owned())];
    assert_ne!(left.key(), right.key());
}

#[test]
fn normalized_sorts_so_order_does_not_matter() {
    let mut shuffled = spec();
    shuffled.env.insert(0, ("ZED".to_owned(), "1".to_owned()));
    shuffled
        .tools
        .insert(0, ("python --version".to_owned(), "3.12".to_owned()));
    shuffled.inputs.reverse();
    shuffled
        .deps
        .insert(0, ("//z:z".to_owned(), "ef".repeat(32)));
    let mut sorted = shuffled.clone();
    sorted.env.sort();
    sorted.tools.sort();
    sorted.inputs.sort_by(|a, b| a.path.cmp(&b.path));
    sorted.deps.sort();
    let normalized = shuffled.clone().normalized();
    assert_eq!(normalized, sorted);
    assert_eq!(
        normalized.outputs, shuffled.outputs,
        "outputs keep declared order"
    );
    assert_ne!(
        shuffled.key(),
        normalized.key(),
        "encode itself sorts nothing"
    );

    let mut again = shuffled;
    again.env.reverse();
    again.inputs.reverse();
    again.deps.reverse();
    again.tools.reverse();
    assert_eq!(again.normalized().key(), normalized.key());
}

#[test]
fn serde_json_roundtrip_with_hex_digests() {
    let spec = spec();
    let json = serde_json::to_string(&spec).unwrap();
    assert!(json.contains(&format!(
        "\"digest\":\"{}\"",
        digest_of(b"[package]").to_hex()
    )));
    let back: ActionSpec = serde_json::from_str(&json).unwrap();
    assert_eq!(back, spec);
    assert_eq!(back.key(), spec.key());
}

#[test]
fn encoding_layout_is_as_documented() {
    let spec = ActionSpec {
        label: "l".to_owned(),
        cmd: String::new(),
        cwd: String::new(),
        platform: "p".to_owned(),
        env_mode: "m".to_owned(),
        env: vec![],
        tools: vec![],
        inputs: vec![InputFile {
            path: "f".to_owned(),
            digest: Digest([7; 32]),
            executable: true,
        }],
        deps: vec![],
        outputs: vec!["o".to_owned()],
        dep_outputs: std::collections::BTreeMap::default(),
    };
    let len = |n: u64| n.to_le_bytes().to_vec();
    // One field per line: tag, then counts and lengths as u64 LE.
    #[rustfmt::skip]
    let expected: Vec<Vec<u8>> = vec![
        b"once-key".to_vec(),
        KEY_FORMAT_VERSION.to_le_bytes().to_vec(),
        vec![1], len(1), b"l".to_vec(),
        vec![2], len(0),
        vec![3], len(0),
        vec![4], len(1), b"p".to_vec(),
        vec![10], len(1), b"m".to_vec(),
        vec![5], len(0),
        vec![6], len(0),
        vec![7], len(1), len(1), b"f".to_vec(), vec![7; 32], vec![1],
        vec![8], len(0),
        vec![9], len(1), len(1), b"o".to_vec(),
    ];
    assert_eq!(spec.encode(), expected.concat());
}

#[test]
fn key_of_borrowed_parts_is_the_key_of_the_spec() {
    let spec = spec().normalized();
    let head = KeyHead {
        label: &spec.label,
        cmd: &spec.cmd,
        cwd: &spec.cwd,
        platform: &spec.platform,
        env_mode: &spec.env_mode,
        env: &spec.env,
        tools: &spec.tools,
    };
    let inputs = spec
        .inputs
        .iter()
        .map(|input| (input.path.as_str(), &input.digest, input.executable));
    assert_eq!(
        key_of(&head, spec.inputs.len(), inputs, &spec.deps, &spec.outputs),
        spec.key()
    );
}
