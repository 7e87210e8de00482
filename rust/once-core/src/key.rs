//! The action key: BLAKE3 over a canonical, versioned encoding of everything a step depends on.

use serde::{Deserialize, Serialize};

use crate::hash::Digest;

/// Bumped whenever the encoding changes, so old entries can never be mistaken for new ones.
pub const KEY_FORMAT_VERSION: u32 = 1;

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
}

/// Every string is length-prefixed and every list count-prefixed (u64 little-endian), so the
/// encoding parses back unambiguously: no two different specs share one.
struct Encoder(Vec<u8>);

impl Encoder {
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
    /// (name, value) of each declared variable that is set; unset declared names are absent.
    pub env: Vec<(String, String)>,
    /// (probe command, its output).
    pub tools: Vec<(String, String)>,
    pub inputs: Vec<InputFile>,
    /// (label, key hex) of each rule this one depends on.
    pub deps: Vec<(String, String)>,
    pub outputs: Vec<String>,
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
        let mut out = Encoder(Vec::with_capacity(256 + self.inputs.len() * 96));
        out.0.extend_from_slice(MAGIC);
        out.0.extend_from_slice(&KEY_FORMAT_VERSION.to_le_bytes());
        out.tag(Tag::Label);
        out.str(&self.label);
        out.tag(Tag::Cmd);
        out.str(&self.cmd);
        out.tag(Tag::Cwd);
        out.str(&self.cwd);
        out.tag(Tag::Platform);
        out.str(&self.platform);
        out.tag(Tag::Env);
        out.count(self.env.len());
        for (name, value) in &self.env {
            out.str(name);
            out.str(value);
        }
        out.tag(Tag::Tools);
        out.count(self.tools.len());
        for (probe, output) in &self.tools {
            out.str(probe);
            out.str(output);
        }
        out.tag(Tag::Inputs);
        out.count(self.inputs.len());
        for input in &self.inputs {
            out.str(&input.path);
            out.0.extend_from_slice(&input.digest.0);
            out.0.push(u8::from(input.executable));
        }
        out.tag(Tag::Deps);
        out.count(self.deps.len());
        for (label, key) in &self.deps {
            out.str(label);
            out.str(key);
        }
        out.tag(Tag::Outputs);
        out.count(self.outputs.len());
        for output in &self.outputs {
            out.str(output);
        }
        out.0
    }
    #[must_use]
    pub fn key(&self) -> Digest {
        Digest(*blake3::hash(&self.encode()).as_bytes())
    }
}
