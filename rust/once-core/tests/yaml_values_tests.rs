//! YAML read as `PyYAML`'s base loader reads it, or not at all.

use std::collections::BTreeMap;

use once_core::yaml_values::{load, Value};

fn text(value: &str) -> Value {
    Value::Text(value.to_owned())
}

fn map<const N: usize>(entries: [(&str, Value); N]) -> Value {
    Value::Map(
        entries
            .into_iter()
            .map(|(key, value)| (key.to_owned(), value))
            .collect::<BTreeMap<_, _>>(),
    )
}

#[test]
fn every_scalar_is_a_string_and_the_last_of_equal_keys_wins() {
    let doc = b"version: 8\nchecksum: 10c0/ab\nempty:\nflag: true\nquoted: '1.0'\n\
        list: [1, two]\ntagged: !!int 3\nversion: 9\n";
    assert_eq!(
        load(doc),
        Some(map([
            ("checksum", text("10c0/ab")),
            ("empty", text("")),
            ("flag", text("true")),
            ("list", Value::List(vec![text("1"), text("two")])),
            ("quoted", text("1.0")),
            ("tagged", text("3")),
            ("version", text("9")),
        ]))
    );
    assert_eq!(load(b"just text\n"), Some(text("just text")));
}

#[test]
fn what_is_not_one_document_of_plain_values_is_not_read() {
    for (why, doc) in [
        ("empty", &b""[..]),
        ("two documents", b"a: 1\n---\nb: 2\n"),
        ("an alias", b"a: &x {b: 1}\nc: *x\n"),
        ("a key that is a mapping", b"? {a: 1}\n: b\n"),
        ("not YAML", b"a: [1, 2\n"),
        ("not UTF-8", b"a: \xff\n"),
    ] {
        assert_eq!(load(doc), None, "{why}");
    }
    let deep = format!("{}1{}", "[".repeat(300), "]".repeat(300));
    assert_eq!(load(deep.as_bytes()), None, "nesting past any lockfile's");
}
