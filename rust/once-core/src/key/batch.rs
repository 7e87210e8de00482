//! Keying a whole plan in one call: the steps come in dependency order, each naming its
//! dependencies by label, and what a dependency gives its dependents' keys (its result: see
//! `key_result`) is taken from earlier in the same batch. Steps whose dependencies are all
//! keyed are keyed in parallel, one level of the graph at a time.

use std::collections::{BTreeMap, HashMap};

use rayon::prelude::*;

use super::{key_of, key_result, ActionSpec, InputFile, KeyHead};
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
    /// Labels of the steps it depends on, each earlier in the batch.
    pub deps: Vec<String>,
    pub outputs: Vec<String>,
    /// Whether its dependents are keyed by what it produced (its cached outputs) rather than
    /// by its key: true for a cached step that declares outputs (early cutoff).
    pub cutoff: bool,
}

/// The key and the result of every request, in order. The key is None for a step that cannot
/// be keyed yet, because a dependency's result is unknown until that dependency runs (and then
/// for its dependents); the result is None then too, or when `result_of` knows none.
///
/// A step's result is what its dependents' keys hold of it: `result_of(index, key)` for a
/// request with `cutoff` (the digest of the outputs cached under that key, None when nothing
/// is cached under it), else `key_result(key)`.
///
/// Only the keys: what went into one (`spec_of`) is wanted only when a key changed, and
/// building it for every step cost more than the key.
pub fn batch_keys<F>(
    snapshot: &Snapshot,
    requests: &[KeyRequest<'_>],
    result_of: F,
) -> Result<Keyed>
where
    F: Fn(usize, &Digest) -> Option<String> + Sync,
{
    let mut keys: Vec<Option<Digest>> = vec![None; requests.len()];
    let mut results: Vec<Option<String>> = vec![None; requests.len()];
    for level in levels(requests)? {
        let keyed = level
            .par_iter()
            .map(|(index, deps)| {
                let request = &requests[*index];
                let Some(mut deps) = deps
                    .iter()
                    .map(|&dep| Some((requests[dep].label.clone(), results[dep].clone()?)))
                    .collect::<Option<Vec<(String, String)>>>()
                else {
                    return Ok((*index, None, None));
                };
                deps.sort();
                let key = request_key(snapshot, request, &deps)?;
                let result = if request.cutoff {
                    result_of(*index, &key)
                } else {
                    Some(key_result(&key))
                };
                Ok((*index, Some(key), result))
            })
            .collect::<Result<Vec<_>>>()?;
        for (index, key, result) in keyed {
            keys[index] = key;
            results[index] = result;
        }
    }
    Ok(Keyed { keys, results })
}

/// What `batch_keys` gives: per request, its key and its result, when known.
#[derive(Debug)]
pub struct Keyed {
    pub keys: Vec<Option<Digest>>,
    pub results: Vec<Option<String>>,
}

/// The key of one request given its dependencies' (label, result), sorted by label: what
/// `batch_keys` gives it, for a step keyed after its dependencies ran.
pub fn request_key(
    snapshot: &Snapshot,
    request: &KeyRequest<'_>,
    deps: &[(String, String)],
) -> Result<Digest> {
    let (mut env, mut tools) = (request.env.clone(), request.tools.clone());
    env.sort();
    tools.sort();
    let files = snapshot.inputs(request.inputs)?;
    let head = KeyHead {
        label: &request.label,
        cmd: &request.cmd,
        cwd: &request.cwd,
        platform: &request.platform,
        env_mode: &request.env_mode,
        env: &env,
        tools: &tools,
    };
    Ok(key_of(
        &head,
        files.len(),
        files
            .iter()
            .map(|(path, digest, executable)| (*path, digest, *executable)),
        deps,
        &request.outputs,
    ))
}

/// Everything that went into the key of `request`, given its dependencies' (label, result):
/// kept for `once why`; its `key()` is the one `batch_keys` gives.
/// `dep_outputs`: the outputs of the dependencies keyed by them, for `once why`.
pub fn spec_of(
    snapshot: &Snapshot,
    request: &KeyRequest<'_>,
    deps: Vec<(String, String)>,
    dep_outputs: BTreeMap<String, Vec<(String, String)>>,
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
        inputs,
        deps,
        outputs: request.outputs.clone(),
        dep_outputs,
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
