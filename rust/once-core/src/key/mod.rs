//! The action key: BLAKE3 over a canonical, versioned encoding of everything a step depends on.

mod batch;

pub use batch::{batch_keys, request_key, spec_of, KeyRequest, Keyed};

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::hash::Digest;

/// Bumped whenever the encoding changes, so old entries can never be mistaken for new ones.
pub const KEY_FORMAT_VERSION: u32 = 3;

/// Leads every encoding, so a key can never collide with the hash of some other byte string
/// that happens to parse the same way.
const MAGIC: &[u8] = b"once-key";

/// One byte before each field: the fields are also in a fixed order, but a tag makes a dump of
/// the encoding readable and guards against two fields of the same shape being swapped.
#[derive(Clone, Copy)]
#[repr(u8)]
enum Tag {
    Label = 1,
    Cmd = 2,
    Cwd = 3,
    Platform = 4,
    Env = 5,
    Tools = 6,
    Inputs = 7,
    Deps = 8,
    Outputs = 9,
    EnvMode = 10,
}

/// Writes the canonical encoding of a spec's parts into a buffer.
struct Encoder<'b>(&'b mut Vec<u8>);

impl Encoder<'_> {
    fn tag(&mut self, tag: Tag) {
        self.0.push(tag as u8);
    }
    fn count(&mut self, n: usize) {
        self.0.extend_from_slice(&(n as u64).to_le_bytes());
    }
    fn str(&mut self, s: &str) {
        self.count(s.len());
        self.0.extend_from_slice(s.as_bytes());
    }
    fn pairs(&mut self, tag: Tag, pairs: &[(String, String)]) {
        self.tag(tag);
        self.count(pairs.len());
        for (first, second) in pairs {
            self.str(first);
            self.str(second);
        }
    }
    fn strings(&mut self, tag: Tag, strings: &[String]) {
        self.tag(tag);
        self.count(strings.len());
        for string in strings {
            self.str(string);
        }
    }
    /// The head: magic, version, then label, cmd, cwd, platform, environment mode, env and
    /// tools.
    fn head(&mut self, head: &KeyHead<'_>) {
        self.0.extend_from_slice(MAGIC);
        self.0.extend_from_slice(&KEY_FORMAT_VERSION.to_le_bytes());
        self.tag(Tag::Label);
        self.str(head.label);
        self.tag(Tag::Cmd);
        self.str(head.cmd);
        self.tag(Tag::Cwd);
        self.str(head.cwd);
        self.tag(Tag::Platform);
        self.str(head.platform);
        self.tag(Tag::EnvMode);
        self.str(head.env_mode);
        self.pairs(Tag::Env, head.env);
        self.pairs(Tag::Tools, head.tools);
    }
    fn inputs<'a>(
        &mut self,
        count: usize,
        inputs: impl Iterator<Item = (&'a str, &'a Digest, bool)>,
    ) {
        self.tag(Tag::Inputs);
        self.count(count);
        for (path, digest, executable) in inputs {
            self.str(path);
            self.0.extend_from_slice(&digest.0);
            self.0.push(u8::from(executable));
        }
    }
}

/// What a step gives its dependents' keys when its outputs are not compared (it declares none,
/// or is not cached): its own key, so that anything that changed it changes theirs.
#[must_use]
pub fn key_result(key: &Digest) -> String {
    format!("key {}", key.to_hex())
}

/// What a cached step that declares outputs gives its dependents' keys: the digest of what it
/// produced (`ActionEntry::result`), so that a change that leaves its outputs byte for byte
/// the same reruns it and none of its dependents (early cutoff).
#[must_use]
pub fn outputs_result(outputs: &Digest) -> String {
    format!("outputs {}", outputs.to_hex())
}

/// What enters a key besides inputs, deps and outputs, borrowed; env and tools sorted.
pub struct KeyHead<'a> {
    pub label: &'a str,
    pub cmd: &'a str,
    pub cwd: &'a str,
    pub platform: &'a str,
    /// "strict" (the command sees only declared and passed variables) or "loose".
    pub env_mode: &'a str,
    pub env: &'a [(String, String)],
    pub tools: &'a [(String, String)],
}

/// The key `ActionSpec::normalized().key()` gives, computed from borrowed parts without
/// building the spec: `inputs` (path, digest, executable) in path order, `deps` sorted by label.
/// Keying a run's 1,500 actions copied 150,000 paths into specs only to hash them.
pub fn key_of<'a>(
    head: &KeyHead<'_>,
    input_count: usize,
    inputs: impl Iterator<Item = (&'a str, &'a Digest, bool)>,
    deps: &[(String, String)],
    outputs: &[String],
) -> Digest {
    // Encoded whole, then hashed in one call: fed field by field, BLAKE3 compresses one 64-byte
    // block at a time, while a whole buffer goes through its SIMD path many chunks at once
    // (keying 150,000 inputs took 28 ms, most of it in single-block compression).
    thread_local! {
        static BUFFER: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
    }
    BUFFER.with_borrow_mut(|buffer| {
        buffer.clear();
        let mut out = Encoder(buffer);
        out.head(head);
        out.inputs(input_count, inputs);
        out.pairs(Tag::Deps, deps);
        out.strings(Tag::Outputs, outputs);
        Digest(*blake3::hash(buffer).as_bytes())
    })
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct InputFile {
    pub path: String,
    /// Serialized as 64 hex digits.
    pub digest: Digest,
    pub executable: bool,
}

/// Everything that enters a key. `encode` sorts nothing: callers pass env, tools, inputs and
/// deps sorted (the constructor `ActionSpec::normalized` sorts them).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActionSpec {
    pub label: String,
    pub cmd: String,
    /// Working directory relative to the workspace root, `/`-separated ("" for the root).
    pub cwd: String,
    /// e.g. "linux-x86_64".
    pub platform: String,
    /// "strict" (the command sees only declared and passed variables) or "loose"; empty in a
    /// spec kept before the mode entered the key.
    #[serde(default)]
    pub env_mode: String,
    /// (name, value) of each declared variable that is set; unset declared names are absent.
    pub env: Vec<(String, String)>,
    /// (probe command, its output).
    pub tools: Vec<(String, String)>,
    pub inputs: Vec<InputFile>,
    /// (label, result) of each rule this one depends on: `outputs HEX` (the digest of the
    /// outputs it produced) or `key HEX` (its key), see `key_result` and `outputs_result`.
    pub deps: Vec<(String, String)>,
    pub outputs: Vec<String>,
    /// For `once why`: the outputs of each dependency whose result is `outputs HEX`, as
    /// (path, digest) pairs by label. Not encoded: the result in `deps` is their digest.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub dep_outputs: BTreeMap<String, Vec<(String, String)>>,
}

impl ActionSpec {
    /// Sort env, tools, inputs (by path), deps (by label); keep outputs in declared order.
    #[must_use]
    pub fn normalized(mut self) -> ActionSpec {
        self.env.sort();
        self.tools.sort();
        // Ties on path (which a caller should never produce) still sort deterministically.
        self.inputs.sort_by(|a, b| {
            (&a.path, &a.digest, a.executable).cmp(&(&b.path, &b.digest, b.executable))
        });
        self.deps.sort();
        self
    }
    /// Canonical bytes: format version, then each field tagged and length-prefixed so that no
    /// two different specs can encode the same (e.g. cmd "ab"+cwd "c" vs cmd "a"+cwd "bc").
    #[must_use]
    pub fn encode(&self) -> Vec<u8> {
        let mut buffer = Vec::with_capacity(256 + self.inputs.len() * 96);
        let mut out = Encoder(&mut buffer);
        out.head(&self.head());
        out.inputs(
            self.inputs.len(),
            self.inputs
                .iter()
                .map(|input| (input.path.as_str(), &input.digest, input.executable)),
        );
        out.pairs(Tag::Deps, &self.deps);
        out.strings(Tag::Outputs, &self.outputs);
        buffer
    }
    fn head(&self) -> KeyHead<'_> {
        KeyHead {
            label: &self.label,
            cmd: &self.cmd,
            cwd: &self.cwd,
            platform: &self.platform,
            env_mode: &self.env_mode,
            env: &self.env,
            tools: &self.tools,
        }
    }
    #[must_use]
    pub fn key(&self) -> Digest {
        Digest(*blake3::hash(&self.encode()).as_bytes())
    }
}
