//! Keying a whole plan in one call: the steps come in dependency order, each naming its
//! dependencies by label, and a dependency's key is taken from earlier in the same batch.
//! Steps whose dependencies are all keyed are keyed in parallel, one level of the graph at a
//! time.

use std::collections::HashMap;

use rayon::prelude::*;

use super::{key_of, ActionSpec, InputFile, KeyHead};
use crate::error::Error;
use crate::hash::Digest;
use crate::snapshot::{FileSet, Snapshot};
use crate::Result;

/// One step to key: what its key holds, its input files as selected from the snapshot, and
/// its dependencies by label.
#[derive(Clone, Debug)]
pub struct KeyRequest<'a> {
    pub inputs: &'a FileSet,
    pub label: String,
    pub cmd: String,
    /// Working folder relative to the workspace root, `/`-separated ("" for the root).
    pub cwd: String,
    pub platform: String,
    /// "strict" or "loose": what of the environment the command sees.
    pub env_mode: String,
    /// Declared variables and their values, as (name, value).
    pub env: Vec<(String, String)>,
    /// Tool probes and their outputs, as (probe, output).
    pub tools: Vec<(String, String)>,
    /// The lockfiles governing its package, as (path, digest of the slice it resolves).
    pub lockfiles: Vec<(String, String)>,
    /// Labels of the steps it depends on, each earlier in the batch.
    pub deps: Vec<String>,
    pub outputs: Vec<String>,
}

/// The key of every request, in order. Only the keys: what went into one (`spec_of`) is
/// wanted only when a key changed, and building it for every step cost more than the key.
pub fn batch_keys(snapshot: &Snapshot, requests: &[KeyRequest<'_>]) -> Result<Vec<Digest>> {
    let mut keys: Vec<Option<Digest>> = vec![None; requests.len()];
    for level in levels(requests)? {
        let keyed = level
            .par_iter()
            .map(|(index, deps)| {
                let request = &requests[*index];
                let mut deps: Vec<(String, String)> = deps
                    .iter()
                    .map(|&dep| {
                        let key = keys[dep].map(|key| key.to_hex()).unwrap_or_default();
                        (requests[dep].label.clone(), key)
                    })
                    .collect();
                deps.sort();
                let (mut env, mut tools) = (request.env.clone(), request.tools.clone());
                let mut lockfiles = request.lockfiles.clone();
                env.sort();
                tools.sort();
                lockfiles.sort();
                let files = snapshot.inputs(request.inputs)?;
                let head = KeyHead {
                    label: &request.label,
                    cmd: &request.cmd,
                    cwd: &request.cwd,
                    platform: &request.platform,
                    env_mode: &request.env_mode,
                    env: &env,
                    tools: &tools,
                    lockfiles: &lockfiles,
                };
                let key = key_of(
                    &head,
                    files.len(),
                    files
                        .iter()
                        .map(|(path, digest, executable)| (*path, digest, *executable)),
                    &deps,
                    &request.outputs,
                );
                Ok((*index, key))
            })
            .collect::<Result<Vec<_>>>()?;
        for (index, key) in keyed {
            keys[index] = Some(key);
        }
    }
    // Every request is in exactly one level, so every key is set.
    Ok(keys.into_iter().flatten().collect())
}

/// Everything that went into the key of `request`, given its dependencies' (label, key):
/// kept for `once why`; its `key()` is the one `batch_keys` gives.
pub fn spec_of(
    snapshot: &Snapshot,
    request: &KeyRequest<'_>,
    deps: Vec<(String, String)>,
) -> Result<ActionSpec> {
    let inputs = snapshot
        .inputs(request.inputs)?
        .into_iter()
        .map(|(path, digest, executable)| InputFile {
            path: path.to_owned(),
            digest,
            executable,
        })
        .collect();
    Ok(ActionSpec {
        label: request.label.clone(),
        cmd: request.cmd.clone(),
        cwd: request.cwd.clone(),
        platform: request.platform.clone(),
        env_mode: request.env_mode.clone(),
        env: request.env.clone(),
        tools: request.tools.clone(),
        lockfiles: request.lockfiles.clone(),
        inputs,
        deps,
        outputs: request.outputs.clone(),
    }
    .normalized())
}

/// Requests of one depth in the dependency graph: (position, positions of its dependencies).
type Level = Vec<(usize, Vec<usize>)>;

/// The requests grouped by depth in the dependency graph: every dependency of a request is in
/// an earlier group.
fn levels(requests: &[KeyRequest<'_>]) -> Result<Vec<Level>> {
    let mut position: HashMap<&str, usize> = HashMap::with_capacity(requests.len());
    let mut depth: Vec<usize> = Vec::with_capacity(requests.len());
    let mut levels: Vec<Level> = Vec::new();
    for (index, request) in requests.iter().enumerate() {
        let deps = request
            .deps
            .iter()
            .map(|dep| {
                position
                    .get(dep.as_str())
                    .copied()
                    .ok_or_else(|| Error::KeyBatch {
                        label: request.label.clone(),
                        dep: dep.clone(),
                    })
            })
            .collect::<Result<Vec<usize>>>()?;
        let level = deps.iter().map(|&dep| depth[dep] + 1).max().unwrap_or(0);
        depth.push(level);
        if levels.len() <= level {
            levels.resize_with(level + 1, Vec::new);
        }
        levels[level].push((index, deps));
        position.insert(request.label.as_str(), index);
    }
    Ok(levels)
}
