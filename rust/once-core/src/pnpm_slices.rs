//! The slices of a pnpm-lock.yaml: for each importer (a package of the workspace), the digest of
//! the part of the lockfile it resolves: its own entry, the importers it links (`link:../b`),
//! and every `snapshots` (v9) and `packages` entry reachable through their dependencies.
//!
//! The file is read as a stream of YAML events, and each entry of `importers`, `packages` and
//! `snapshots` is reduced as soon as it is read to its digest and its dependencies: a lockfile of
//! 10,000 importers costs a few MB here, where a tree of Python objects of it cost 280 MB.
//!
//! The values are those `PyYAML`'s base loader gives (every scalar a string, the last of equal
//! keys winning); anything this cannot follow (a YAML alias, a key that is not a scalar, a
//! dependency the lockfile does not describe, a link to a project it does not list) gives no
//! slice, and the caller takes the whole file: never less than the package could use.

use std::collections::{BTreeMap, HashMap};

use rayon::prelude::*;
use saphyr_parser::{Event, Parser, StrInput};
use serde::Serialize;

use crate::hash::{hash_bytes, Digest};

/// Dependency groups of an importer (devDependencies count: tests run with them).
const IMPORTER_GROUPS: [&str; 4] = [
    "dependencies",
    "devDependencies",
    "optionalDependencies",
    "peerDependencies",
];
/// What an installed package pulls in.
const INSTALLED_GROUPS: [&str; 3] = ["dependencies", "optionalDependencies", "peerDependencies"];
/// Top-level settings that change what every package installs.
const HEAD_KEYS: [&str; 4] = [
    "lockfileVersion",
    "settings",
    "overrides",
    "patchedDependencies",
];
/// Deeper nesting than any lockfile has: a document built to overflow the stack gives no slice.
const MAX_DEPTH: usize = 256;
/// A dependency that resolves to nothing the lockfile describes.
const MISSING: u32 = u32::MAX;

/// Why a lockfile gives no slices: the caller then takes it whole.
#[derive(Debug)]
pub struct Unsliceable;

/// A YAML value as `PyYAML`'s base loader builds it. Serialized as JSON with sorted keys, it is
/// the canonical form an entry's digest is taken of.
#[derive(Serialize)]
#[serde(untagged)]
enum Value {
    Text(String),
    List(Vec<Value>),
    Map(BTreeMap<String, Value>),
}

/// The slice digest of each importer, by its key as the lockfile writes it (`.`,
/// `packages/a`); `None` for an importer whose slice cannot be told. `Err` when the file itself
/// cannot be sliced.
pub fn slice_digests(data: &[u8]) -> Result<Vec<(String, Option<Digest>)>, Unsliceable> {
    let text = std::str::from_utf8(data).map_err(|_| Unsliceable)?;
    let lockfile = read(text.strip_prefix('\u{feff}').unwrap_or(text))?;
    let graph = Graph::new(lockfile);
    let digests = (0..graph.importers.len())
        .into_par_iter()
        .map_init(
            || Walk::new(&graph),
            |walk, importer| walk.slice(&graph, importer as u32),
        )
        .collect::<Vec<_>>();
    Ok(graph.importers.into_iter().zip(digests).collect())
}

/// An entry of `importers`, `packages` or `snapshots`, as much of it as slicing needs.
struct Entry {
    /// Of the entry's name and canonical content.
    line: Digest,
    /// (name, resolved version) of its dependencies; `None` when the entry is not a mapping.
    deps: Option<Vec<(String, String)>>,
}

/// What the stream of events leaves of a lockfile.
struct Lockfile {
    importers: HashMap<String, Entry>,
    packages: HashMap<String, Entry>,
    snapshots: HashMap<String, Entry>,
    /// The top-level values other than the three sections that slicing reads: the head, and the
    /// dependency groups of a lockfile without `importers` (one project, no workspace).
    top: BTreeMap<String, Value>,
}

fn read(text: &str) -> Result<Lockfile, Unsliceable> {
    let mut events = Events(Parser::new_from_str(text));
    if !matches!(events.next()?, Event::StreamStart)
        || !matches!(events.next()?, Event::DocumentStart(_))
    {
        return Err(Unsliceable);
    }
    let Event::MappingStart(..) = events.next()? else {
        return Err(Unsliceable); // not a mapping: no lockfile pnpm writes
    };
    let mut importers = HashMap::new();
    let mut packages = HashMap::new();
    let mut snapshots = HashMap::new();
    let mut top = BTreeMap::new();
    loop {
        let key = match events.next()? {
            Event::MappingEnd => break,
            Event::Scalar(key, ..) => key,
            _ => return Err(Unsliceable),
        };
        match &*key {
            "importers" => {
                importers = events
                    .section("importer", &IMPORTER_GROUPS)?
                    .into_iter()
                    .collect();
            }
            "packages" => {
                packages = events
                    .section("package", &INSTALLED_GROUPS)?
                    .into_iter()
                    .collect();
            }
            "snapshots" => {
                snapshots = events
                    .section("snapshot", &INSTALLED_GROUPS)?
                    .into_iter()
                    .collect();
            }
            _ => {
                let first = events.next()?;
                let value = events.value(first, 0)?;
                if HEAD_KEYS.contains(&&*key) || IMPORTER_GROUPS.contains(&&*key) {
                    top.insert(key.into_owned(), value);
                }
            }
        }
    }
    // One document and no other (PyYAML's `load` refuses a second).
    if !matches!(events.next()?, Event::DocumentEnd) || !matches!(events.next()?, Event::StreamEnd)
    {
        return Err(Unsliceable);
    }
    if importers.is_empty() {
        // One project (no workspace): its dependencies sit at the top.
        let own = IMPORTER_GROUPS
            .iter()
            .filter_map(|group| top.remove_entry(*group))
            .collect();
        importers.insert(
            ".".to_owned(),
            entry("importer", ".", &Value::Map(own), &IMPORTER_GROUPS),
        );
    }
    Ok(Lockfile {
        importers,
        packages,
        snapshots,
        top,
    })
}

struct Events<'a>(Parser<'a, StrInput<'a>>);

impl<'a> Events<'a> {
    fn next(&mut self) -> Result<Event<'a>, Unsliceable> {
        match self.0.next_event() {
            // An alias shares a node PyYAML would copy in: rare enough in a lockfile to take the
            // file whole rather than keep anchored nodes.
            Some(Ok((Event::Alias(_), _)) | Err(_)) | None => Err(Unsliceable),
            Some(Ok((event, _))) => Ok(event),
        }
    }

    /// The entries of a top-level section, each reduced as soon as it is read; none when the
    /// section is not a mapping.
    fn section(
        &mut self,
        kind: &str,
        groups: &[&str],
    ) -> Result<Vec<(String, Entry)>, Unsliceable> {
        let first = self.next()?;
        if !matches!(first, Event::MappingStart(..)) {
            self.value(first, 0)?;
            return Ok(Vec::new());
        }
        let mut entries = Vec::new();
        loop {
            let key = match self.next()? {
                Event::MappingEnd => return Ok(entries),
                Event::Scalar(key, ..) => key.into_owned(),
                _ => return Err(Unsliceable),
            };
            let first = self.next()?;
            let value = self.value(first, 1)?;
            let reduced = entry(kind, &key, &value, groups);
            entries.push((key, reduced));
        }
    }

    fn value(&mut self, first: Event<'a>, depth: usize) -> Result<Value, Unsliceable> {
        if depth > MAX_DEPTH {
            return Err(Unsliceable);
        }
        match first {
            Event::Scalar(text, ..) => Ok(Value::Text(text.into_owned())),
            Event::SequenceStart(..) => {
                let mut items = Vec::new();
                loop {
                    match self.next()? {
                        Event::SequenceEnd => return Ok(Value::List(items)),
                        event => items.push(self.value(event, depth + 1)?),
                    }
                }
            }
            Event::MappingStart(..) => {
                let mut map = BTreeMap::new();
                loop {
                    let key = match self.next()? {
                        Event::MappingEnd => return Ok(Value::Map(map)),
                        Event::Scalar(key, ..) => key.into_owned(),
                        _ => return Err(Unsliceable), // PyYAML cannot key a dict by a list either
                    };
                    let event = self.next()?;
                    map.insert(key, self.value(event, depth + 1)?);
                }
            }
            _ => Err(Unsliceable),
        }
    }
}

fn entry(kind: &str, key: &str, value: &Value, groups: &[&str]) -> Entry {
    Entry {
        line: line(&format!("{kind} {key}"), Some(value)),
        deps: deps(value, groups),
    }
}

/// The digest of a line of a slice: a name and its content (`None`: absent).
fn line(name: &str, value: Option<&impl Serialize>) -> Digest {
    // Serializing plain strings, lists and maps to memory cannot fail.
    hash_bytes(&serde_json::to_vec(&(name, value)).unwrap_or_default())
}

/// (name, resolved version) of an entry's dependencies: an importer gives `{specifier,
/// version}`, a package (and lockfiles before v6) the version alone.
fn deps(value: &Value, groups: &[&str]) -> Option<Vec<(String, String)>> {
    let Value::Map(map) = value else {
        return None;
    };
    let mut found = Vec::new();
    for group in groups {
        let Some(Value::Map(named)) = map.get(*group) else {
            continue;
        };
        for (name, spec) in named {
            let version = match spec {
                Value::Map(spec) => spec.get("version"),
                other => Some(other),
            };
            if let Some(Value::Text(version)) = version {
                found.push((name.clone(), version.clone()));
            }
        }
    }
    Some(found)
}

/// The lockfile as a graph of nodes (importers, then snapshots, then packages), each with the
/// lines it adds to a slice and the nodes its dependencies resolve to.
struct Graph {
    importers: Vec<String>,
    nodes: Vec<Node>,
    /// Digests of every line, in the order of their names: a slice is hashed in that order, so
    /// that its digest depends on what it holds, not on the order it was reached in.
    lines: Vec<Digest>,
    head: u32,
}

struct Node {
    /// A snapshot adds its own line and its package's (`name@1.0.0` of `name@1.0.0(peer@2)`).
    lines: [u32; 2],
    /// `None`: an importer that is not a mapping, which gives no slice.
    deps: Option<Vec<u32>>,
}

impl Graph {
    fn new(lockfile: Lockfile) -> Graph {
        let Lockfile {
            importers,
            packages,
            snapshots,
            top,
        } = lockfile;
        let importers: Vec<(String, Entry)> = importers.into_iter().collect();
        let mut lines = Lines::default();
        let head_value: BTreeMap<&str, Option<&Value>> =
            HEAD_KEYS.iter().map(|key| (*key, top.get(*key))).collect();
        let head = lines.add("head".to_owned(), line("head", Some(&head_value)));

        let snapshot_keys: Vec<&String> = snapshots.keys().collect();
        let package_keys: Vec<&String> = packages.keys().collect();
        let snapshot_base = importers.len() as u32;
        let package_base = snapshot_base + snapshot_keys.len() as u32;
        let importer_index = numbered(importers.iter().map(|(key, _)| key), 0);
        let snapshot_index = numbered(snapshot_keys.iter().copied(), snapshot_base);
        let package_index = numbered(package_keys.iter().copied(), package_base);
        let resolve = |name: &str, version: &str| -> u32 {
            candidates(name, version)
                .iter()
                .find_map(|key| {
                    snapshot_index
                        .get(key.as_str())
                        .or_else(|| package_index.get(key.as_str()))
                })
                .copied()
                .unwrap_or(MISSING)
        };

        let mut nodes = Vec::with_capacity(package_base as usize + package_keys.len());
        for (key, entry) in &importers {
            let own = lines.add(format!("importer {key}"), entry.line);
            let deps = entry.deps.as_ref().map(|deps| {
                deps.iter()
                    .map(|(name, version)| match version.strip_prefix("link:") {
                        Some(path) => {
                            let folder = normpath(&join(key, path));
                            importer_index
                                .get(folder.as_str())
                                .copied()
                                .unwrap_or(MISSING)
                        }
                        None => resolve(name, version),
                    })
                    .collect()
            });
            nodes.push(Node {
                lines: [own, own],
                deps,
            });
        }
        let installed = |entry: &Entry| -> Vec<u32> {
            entry
                .deps
                .iter()
                .flatten()
                .filter(|(_, version)| !version.starts_with("link:"))
                .map(|(name, version)| resolve(name, version))
                .collect()
        };
        let package_lines: Vec<u32> = package_keys
            .iter()
            .map(|key| lines.add(format!("package {key}"), packages[*key].line))
            .collect();
        let mut absent: HashMap<&str, u32> = HashMap::new();
        for key in &snapshot_keys {
            let entry = &snapshots[*key];
            let own = lines.add(format!("snapshot {key}"), entry.line);
            let bare = key.split('(').next().unwrap_or(key);
            let package = match package_index.get(bare) {
                Some(index) => package_lines[(index - package_base) as usize],
                None => *absent.entry(bare).or_insert_with(|| {
                    let name = format!("package {bare}");
                    let digest = line(&name, None::<&Value>);
                    lines.add(name, digest)
                }),
            };
            nodes.push(Node {
                lines: [own, package],
                deps: Some(installed(entry)),
            });
        }
        for (key, own) in package_keys.iter().zip(&package_lines) {
            nodes.push(Node {
                lines: [*own, *own],
                deps: Some(installed(&packages[*key])),
            });
        }

        let (rank, lines) = lines.in_name_order();
        for node in &mut nodes {
            node.lines = node.lines.map(|line| rank[line as usize]);
        }
        Graph {
            importers: importers.into_iter().map(|(key, _)| key).collect(),
            nodes,
            lines,
            head: rank[head as usize],
        }
    }
}

/// The keys a resolved dependency may have in `snapshots` (v9) or `packages`, in the order they
/// are looked for: `name@version` (v9), `/name@version` (v6), `/name/version` (v5), or the
/// version itself for an alias (`string-width@4.2.3`) or a path. A snapshot comes before a
/// package of the same key.
fn candidates(name: &str, version: &str) -> [String; 4] {
    [
        format!("{name}@{version}"),
        format!("/{name}@{version}"),
        format!("/{name}/{version}"),
        version.to_owned(),
    ]
}

/// Numbers from `base` on, by key.
fn numbered<'a>(keys: impl Iterator<Item = &'a String>, base: u32) -> HashMap<&'a str, u32> {
    keys.enumerate()
        .map(|(i, key)| (key.as_str(), base + i as u32))
        .collect()
}

/// The lines of a slice, numbered as they are added.
#[derive(Default)]
struct Lines {
    names: Vec<String>,
    digests: Vec<Digest>,
}

impl Lines {
    fn add(&mut self, name: String, digest: Digest) -> u32 {
        self.names.push(name);
        self.digests.push(digest);
        (self.digests.len() - 1) as u32
    }

    /// The rank of each line in the order of the names, and the digests in that order.
    fn in_name_order(self) -> (Vec<u32>, Vec<Digest>) {
        let mut order: Vec<u32> = (0..self.names.len() as u32).collect();
        order.sort_unstable_by(|a, b| self.names[*a as usize].cmp(&self.names[*b as usize]));
        let mut rank = vec![0; order.len()];
        for (position, line) in order.iter().enumerate() {
            rank[*line as usize] = position as u32;
        }
        let digests = order
            .iter()
            .map(|line| self.digests[*line as usize])
            .collect();
        (rank, digests)
    }
}

/// One thread's marks, reused from one importer's slice to the next: a node or line is marked
/// when it holds the number of the current walk.
struct Walk {
    round: u32,
    nodes: Vec<u32>,
    lines: Vec<u32>,
    taken: Vec<u32>,
    pending: Vec<u32>,
}

impl Walk {
    fn new(graph: &Graph) -> Walk {
        Walk {
            round: 0,
            nodes: vec![0; graph.nodes.len()],
            lines: vec![0; graph.lines.len()],
            taken: Vec::new(),
            pending: Vec::new(),
        }
    }

    fn slice(&mut self, graph: &Graph, importer: u32) -> Option<Digest> {
        self.round += 1;
        self.taken.clear();
        self.pending.clear();
        self.taken.push(graph.head);
        self.pending.push(importer);
        while let Some(node) = self.pending.pop() {
            if node == MISSING {
                return None;
            }
            let seen = &mut self.nodes[node as usize];
            if *seen == self.round {
                continue;
            }
            *seen = self.round;
            let node = &graph.nodes[node as usize];
            for line in node.lines {
                let seen = &mut self.lines[line as usize];
                if *seen != self.round {
                    *seen = self.round;
                    self.taken.push(line);
                }
            }
            self.pending.extend(node.deps.as_ref()?);
        }
        self.taken.sort_unstable();
        let mut hasher = blake3::Hasher::new();
        for line in &self.taken {
            hasher.update(&graph.lines[*line as usize].0);
        }
        Some(Digest(*hasher.finalize().as_bytes()))
    }
}

/// `posixpath.join`: `path` itself when absolute.
fn join(folder: &str, path: &str) -> String {
    if path.starts_with('/') || folder.is_empty() {
        path.to_owned()
    } else if folder.ends_with('/') {
        format!("{folder}{path}")
    } else {
        format!("{folder}/{path}")
    }
}

/// `posixpath.normpath`: `.` and empty parts dropped, `..` taken back where it can be, `.` for
/// nothing left; two leading slashes kept, as POSIX allows them a meaning.
fn normpath(path: &str) -> String {
    if path.is_empty() {
        return ".".to_owned();
    }
    let slashes = if path.starts_with("//") && !path.starts_with("///") {
        "//"
    } else if path.starts_with('/') {
        "/"
    } else {
        ""
    };
    let mut parts: Vec<&str> = Vec::new();
    for part in path.split('/') {
        if part.is_empty() || part == "." {
            continue;
        }
        if part != ".." || (slashes.is_empty() && parts.is_empty()) || parts.last() == Some(&"..") {
            parts.push(part);
        } else {
            parts.pop();
        }
    }
    let joined = format!("{slashes}{}", parts.join("/"));
    if joined.is_empty() {
        ".".to_owned()
    } else {
        joined
    }
}

#[cfg(test)]
mod tests {
    use super::{join, normpath};

    #[test]
    fn paths_normalize_as_posixpath_does() {
        for (path, normal) in [
            ("", "."),
            (".", "."),
            ("a/./b/", "a/b"),
            ("a/../..", ".."),
            ("../a/../../b", "../../b"),
            ("/..", "/"),
            ("//a//b", "//a/b"),
            ("///a", "/a"),
        ] {
            assert_eq!(normpath(path), normal, "{path}");
        }
        assert_eq!(join("packages/a", "../b"), "packages/a/../b");
        assert_eq!(join("packages/a", "/abs"), "/abs");
        assert_eq!(join("", "b"), "b");
        assert_eq!(join("a/", "b"), "a/b");
    }
}
