//! The action key: BLAKE3 over a canonical, versioned encoding of everything a step depends on.
//! CONTRACT (helper fills the bodies; keep signatures):

use serde::{Deserialize, Serialize};

use crate::hash::Digest;

/// Bumped whenever the encoding changes, so old entries can never be mistaken for new ones.
pub const KEY_FORMAT_VERSION: u32 = 1;

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
    pub fn normalized(self) -> ActionSpec {
        todo!()
    }
    /// Canonical bytes: format version, then each field tagged and length-prefixed so that no
    /// two different specs can encode the same (e.g. cmd "ab"+cwd "c" vs cmd "a"+cwd "bc").
    #[must_use]
    pub fn encode(&self) -> Vec<u8> {
        todo!()
    }
    #[must_use]
    pub fn key(&self) -> Digest {
        todo!()
    }
}
