//! The slices of a pnpm-lock.yaml: for each importer (a package of the workspace), the digest of
//! the part of the lockfile it resolves: its own entry, the importers it links (`link:../b`),
//! and every `snapshots` (v9) and `packages` entry reachable through their dependencies.
//!
//! The file is read as a stream of YAML events, and each entry of `importers`, `packages` and
//! `snapshots` is reduced as soon as it is read to its digest and its dependencies: a lockfile of
//! 10,000 importers costs a few MB here, where a tree of Python objects of it cost 280 MB.
//!
//! The values are those `PyYAML`'s base loader gives (`yaml_values`); anything this cannot
//! follow (YAML that module does not read, a dependency the lockfile does not describe, a link
//! to a project it does not list) gives no slice, and the caller takes the whole file: never
//! less than the package could use.

use std::collections::{BTreeMap, HashMap};

use rayon::prelude::*;
use std::fs::File;
use std::io;
use std::path::Path;

use saphyr_parser::{Event, Input};
use serde::Serialize;

use crate::hash::{hash_bytes, Digest};
use crate::yaml_values::{Events, HashedChars, Key, Value};

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
/// A dependency that resolves to nothing the lockfile describes.
const MISSING: u32 = u32::MAX;

/// The slice digest of each importer, by its key as the lockfile writes it; `None` for an
/// importer whose slice cannot be told.
pub type Slices = Vec<(String, Option<Digest>)>;

/// The slice digest of each importer, by its key as the lockfile writes it (`.`,
/// `packages/a`); `None` for an importer whose slice cannot be told. `None` when the file itself
/// cannot be sliced: the caller then takes it whole.
#[must_use]
pub fn slice_digests(data: &[u8]) -> Option<Slices> {
    Some(slices(read(Events::new(data)?)?))
}

/// The digest of the file at `path` and its slice digests (as `slice_digests`'s), from one
/// read that never holds the whole file.
pub fn file_slice_digests(path: &Path) -> io::Result<(Digest, Option<Slices>)> {
    let mut chars = HashedChars::new(File::open(path)?);
    let lockfile = Events::from_chars(&mut chars).and_then(read);
    let (digest, utf8) = chars.finish()?;
    Ok((digest, lockfile.filter(|_| utf8).map(slices)))
}

/// Every importer's slice, one walk of the graph each, on every thread.
fn slices(lockfile: Lockfile) -> Slices {
    let graph = Graph::new(lockfile);
    let digests = (0..graph.importers.len())
        .into_par_iter()
        .map_init(
            || Walk::new(&graph),
            |walk, importer| walk.slice(&graph, importer as u32),
        )
        .collect::<Vec<_>>();
    graph.importers.into_iter().zip(digests).collect()
}

/// An entry of `importers`, `packages` or `snapshots`, as much of it as slicing needs.
struct Entry {
    /// Of the entry's name and canonical content.
    line: Digest,
    /// Its dependencies, as numbers of `Pairs`; `None` when the entry is not a mapping.
    deps: Option<Vec<u32>>,
}

/// The distinct (name, resolved version) pairs that entries depend on, each kept once and
/// numbered: 10,000 importers name the same few thousand, and two strings per dependency
/// cost more memory than all the rest.
#[derive(Default)]
struct Pairs(HashMap<(String, String), u32>);

impl Pairs {
    fn number(&mut self, name: String, version: String) -> u32 {
        let next = self.0.len() as u32;
        *self.0.entry((name, version)).or_insert(next)
    }

    /// The pairs, in the order of their numbers.
    fn in_order(self) -> Vec<(String, String)> {
        let mut pairs: Vec<_> = self.0.into_iter().collect();
        pairs.sort_unstable_by_key(|(_, number)| *number);
        pairs.into_iter().map(|(pair, _)| pair).collect()
    }
}

/// What the stream of events leaves of a lockfile.
struct Lockfile {
    importers: HashMap<String, Entry>,
    packages: HashMap<String, Entry>,
    snapshots: HashMap<String, Entry>,
    pairs: Pairs,
    /// The top-level values other than the three sections that slicing reads: the head, and the
    /// dependency groups of a lockfile without `importers` (one project, no workspace).
    top: BTreeMap<String, Value>,
}

fn read<T: Input>(mut events: Events<'_, T>) -> Option<Lockfile> {
    let Event::MappingStart(..) = events.next()? else {
        return None; // not a mapping: no lockfile pnpm writes
    };
    let mut importers = HashMap::new();
    let mut packages = HashMap::new();
    let mut snapshots = HashMap::new();
    let mut pairs = Pairs::default();
    let mut top = BTreeMap::new();
    while let Key::Next(key) = events.key()? {
        match key.as_str() {
            "importers" => {
                importers = section(&mut events, "importer", &IMPORTER_GROUPS, &mut pairs)?;
            }
            "packages" => {
                packages = section(&mut events, "package", &INSTALLED_GROUPS, &mut pairs)?;
            }
            "snapshots" => {
                snapshots = section(&mut events, "snapshot", &INSTALLED_GROUPS, &mut pairs)?;
            }
            _ => {
                let first = events.next()?;
                let value = events.value(first, 1)?;
                if HEAD_KEYS.contains(&key.as_str()) || IMPORTER_GROUPS.contains(&key.as_str()) {
                    top.insert(key, value);
                }
            }
        }
    }
    events.end()?;
    if importers.is_empty() {
        // One project (no workspace): its dependencies sit at the top.
        let own = IMPORTER_GROUPS
            .iter()
            .filter_map(|group| top.remove_entry(*group))
            .collect();
        let own = entry(
            "importer",
            ".",
            Value::Map(own),
            &IMPORTER_GROUPS,
            &mut pairs,
        );
        importers.insert(".".to_owned(), own);
    }
    Some(Lockfile {
        importers,
        packages,
        snapshots,
        pairs,
        top,
    })
}

/// The entries of a top-level section, each reduced as soon as it is read; none when the section
/// is not a mapping.
fn section<T: Input>(
    events: &mut Events<'_, T>,
    kind: &str,
    groups: &[&str],
    pairs: &mut Pairs,
) -> Option<HashMap<String, Entry>> {
    let mut entries = HashMap::new();
    let first = events.next()?;
    if !matches!(first, Event::MappingStart(..)) {
        events.value(first, 1)?;
        return Some(entries);
    }
    while let Key::Next(key) = events.key()? {
        let first = events.next()?;
        let value = events.value(first, 2)?;
        let reduced = entry(kind, &key, value, groups, pairs);
        entries.insert(key, reduced);
    }
    Some(entries)
}

fn entry(kind: &str, key: &str, value: Value, groups: &[&str], pairs: &mut Pairs) -> Entry {
    Entry {
        line: line(&format!("{kind} {key}"), Some(&value)),
        deps: deps(value, groups, pairs),
    }
}

/// The digest of a line of a slice: a name and its content (`None`: absent).
fn line(name: &str, value: Option<&impl Serialize>) -> Digest {
    // Serializing plain strings, lists and maps to memory cannot fail.
    hash_bytes(&serde_json::to_vec(&(name, value)).unwrap_or_default())
}

/// The (name, resolved version) pairs of an entry's dependencies: an importer gives
/// `{specifier, version}`, a package (and lockfiles before v6) the version alone.
fn deps(value: Value, groups: &[&str], pairs: &mut Pairs) -> Option<Vec<u32>> {
    let Value::Map(mut map) = value else {
        return None;
    };
    let mut found = Vec::new();
    for group in groups {
        let Some(Value::Map(named)) = map.remove(*group) else {
            continue;
        };
        for (name, spec) in named {
            let version = match spec {
                Value::Map(mut spec) => spec.remove("version"),
                other => Some(other),
            };
            if let Some(Value::Text(version)) = version {
                found.push(pairs.number(name, version));
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
    /// Digests of every line, in their own order (`Lines::in_digest_order`).
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
            pairs,
            top,
        } = lockfile;
        let importers: Vec<(String, Entry)> = importers.into_iter().collect();
        let mut lines = Lines::default();
        let head_value: BTreeMap<&str, Option<&Value>> =
            HEAD_KEYS.iter().map(|key| (*key, top.get(*key))).collect();
        let head = lines.add(line("head", Some(&head_value)));

        let snapshot_keys: Vec<&String> = snapshots.keys().collect();
        let package_keys: Vec<&String> = packages.keys().collect();
        let snapshot_base = importers.len() as u32;
        let package_base = snapshot_base + snapshot_keys.len() as u32;
        let importer_index = numbered(importers.iter().map(|(key, _)| key), 0);
        let snapshot_index = numbered(snapshot_keys.iter().copied(), snapshot_base);
        let package_index = numbered(package_keys.iter().copied(), package_base);
        let pairs = pairs.in_order();
        // A link (`link:../b`) resolves from its importer's folder, below.
        let resolved = resolve(&pairs, &snapshot_index, &package_index);
        let link = |pair: u32| pairs[pair as usize].1.strip_prefix("link:");

        let mut nodes = Vec::with_capacity(package_base as usize + package_keys.len());
        for (key, entry) in &importers {
            let own = lines.add(entry.line);
            let deps = entry.deps.as_ref().map(|deps| {
                deps.iter()
                    .map(|pair| match link(*pair) {
                        Some(path) => {
                            let folder = normpath(&join(key, path));
                            importer_index
                                .get(folder.as_str())
                                .copied()
                                .unwrap_or(MISSING)
                        }
                        None => resolved[*pair as usize],
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
                .filter(|pair| link(**pair).is_none())
                .map(|pair| resolved[*pair as usize])
                .collect()
        };
        let package_lines: Vec<u32> = package_keys
            .iter()
            .map(|key| lines.add(packages[*key].line))
            .collect();
        let mut absent: HashMap<&str, u32> = HashMap::new();
        for key in &snapshot_keys {
            let entry = &snapshots[*key];
            let own = lines.add(entry.line);
            let bare = key.split('(').next().unwrap_or(key);
            let package = match package_index.get(bare) {
                Some(index) => package_lines[(index - package_base) as usize],
                None => *absent
                    .entry(bare)
                    .or_insert_with(|| lines.add(line(&format!("package {bare}"), None::<&Value>))),
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

        let (rank, lines) = lines.in_digest_order();
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

/// What each pair resolves to, once for all the entries that name it: a node, or `MISSING`.
fn resolve(
    pairs: &[(String, String)],
    snapshots: &HashMap<&str, u32>,
    packages: &HashMap<&str, u32>,
) -> Vec<u32> {
    pairs
        .iter()
        .map(|(name, version)| {
            candidates(name, version)
                .iter()
                .find_map(|key| {
                    snapshots
                        .get(key.as_str())
                        .or_else(|| packages.get(key.as_str()))
                })
                .copied()
                .unwrap_or(MISSING)
        })
        .collect()
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
struct Lines(Vec<Digest>);

impl Lines {
    fn add(&mut self, digest: Digest) -> u32 {
        self.0.push(digest);
        (self.0.len() - 1) as u32
    }

    /// The rank of each line in the order of the digests, and the digests in that order. A
    /// line's digest is of its name and content, so a slice hashed in that order has a digest
    /// of what it holds, not of the order it was reached in.
    fn in_digest_order(self) -> (Vec<u32>, Vec<Digest>) {
        let mut order: Vec<u32> = (0..self.0.len() as u32).collect();
        order.sort_unstable_by_key(|line| self.0[*line as usize]);
        let mut rank = vec![0; order.len()];
        for (position, line) in order.iter().enumerate() {
            rank[*line as usize] = position as u32;
        }
        let digests = order.iter().map(|line| self.0[*line as usize]).collect();
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
