//! A rule's declared outputs parsed once, and the checks every manifest must pass.

use std::collections::{HashMap, HashSet};
use std::fs;
use std::path::{Path, PathBuf};

use globset::GlobMatcher;

use super::outputs::lstat_if_exists;
use super::{OutputEntry, OutputKind};
use crate::error::Error;
use crate::select::{glob_matcher, GLOB_SYNTAX};
use crate::Result;

/// One declared output, relative to the package folder, `.` and empty components dropped.
pub(super) enum Pattern {
    /// A file or a folder (everything below it).
    Literal(String),
    /// `base` is the literal leading folder, the only one walked.
    Glob { base: String, matcher: GlobMatcher },
}

impl Pattern {
    /// Whether the package-relative `rel` is among what this pattern can collect.
    pub(super) fn covers(&self, rel: &str) -> bool {
        match self {
            Pattern::Literal(lit) => {
                rel == lit || (rel.starts_with(lit.as_str()) && rel[lit.len()..].starts_with('/'))
            }
            Pattern::Glob { base, matcher } => {
                let below_base = base.is_empty()
                    || (rel.starts_with(base.as_str()) && rel[base.len()..].starts_with('/'));
                // `rel` itself, or a matched folder above it that counts whole.
                below_base
                    && rel
                        .match_indices('/')
                        .map(|(at, _)| &rel[..at])
                        .chain([rel])
                        .filter(|prefix| prefix.len() > base.len())
                        .any(|prefix| matcher.is_match(prefix))
            }
        }
    }
}

/// A package folder and its declared outputs, checked and parsed once per call.
pub(super) struct Declared {
    /// Workspace-relative, `/`-separated, "" for the root.
    pub(super) package: String,
    pub(super) patterns: Vec<Pattern>,
}

impl Declared {
    pub(super) fn parse(package: &str, outputs: &[String]) -> Result<Declared> {
        let package = normalize(package).ok_or_else(|| Error::Escape(package.to_owned()))?;
        let mut patterns = Vec::with_capacity(outputs.len());
        for raw in outputs {
            let rel = normalize(raw).ok_or_else(|| Error::Escape(raw.clone()))?;
            if rel.is_empty() {
                // Restoring it would first delete the whole package.
                return Err(Error::Glob {
                    pattern: raw.clone(),
                    message: "an output cannot be the package folder itself".to_owned(),
                });
            }
            let Some(first_glob) = rel.split('/').position(|part| part.contains(GLOB_SYNTAX))
            else {
                patterns.push(Pattern::Literal(rel));
                continue;
            };
            let base = rel
                .split('/')
                .take(first_glob)
                .collect::<Vec<_>>()
                .join("/");
            patterns.push(Pattern::Glob {
                base,
                matcher: glob_matcher(raw, &rel)?,
            });
        }
        Ok(Declared { package, patterns })
    }

    pub(super) fn workspace_path(&self, rel: &str) -> String {
        if self.package.is_empty() {
            rel.to_owned()
        } else {
            format!("{}/{rel}", self.package)
        }
    }

    /// Refuse a manifest that would write outside the declared outputs of this package, or
    /// outside the workspace through a symlink (Turborepo and Nx tar restores, 2025).
    pub(super) fn validate(&self, manifest: &[OutputEntry]) -> Result<()> {
        check_manifest(manifest)?;
        for output in manifest {
            let path = output.path.as_str();
            if !self
                .package_relative(path)
                .is_some_and(|rel| self.covered(rel))
            {
                return Err(Error::Escape(format!(
                    "{path} (not among the declared outputs of {:?})",
                    self.package
                )));
            }
        }
        Ok(())
    }

    /// Refuse when a declared output, or a manifest path, is reached through a symlink below
    /// the package folder (`build -> ../outside` under the output `build/gen/`): deleting or
    /// writing there would follow it. Folders the declared outputs cover are not looked at: a
    /// restore deletes them first (a link itself, never what it points to), and the walks
    /// below them never follow links. One `lstat` per folder above the outputs.
    pub(super) fn check_parents(&self, workspace: &Path, manifest: &[OutputEntry]) -> Result<()> {
        let package_dir = workspace.join(&self.package);
        // A glob's base is walked (and written below) itself; a literal output may be a link.
        let roots = self.patterns.iter().map(|pattern| match pattern {
            Pattern::Literal(rel) => (rel.as_str(), false),
            Pattern::Glob { base, .. } => (base.as_str(), true),
        });
        let paths = manifest
            .iter()
            .filter_map(|output| self.package_relative(&output.path))
            .map(|rel| (rel, false));
        // What each folder was found to be: a restore writes many files into few folders.
        let mut seen: HashMap<&str, Folder> = HashMap::new();
        for (rel, with_itself) in roots.chain(paths) {
            let folders = rel
                .match_indices('/')
                .map(|(at, _)| &rel[..at])
                .chain(with_itself.then_some(rel))
                .filter(|folder| !folder.is_empty());
            for folder in folders {
                let found = if let Some(&found) = seen.get(folder) {
                    found
                } else {
                    let found = self.folder(&package_dir, folder, rel)?;
                    seen.insert(folder, found);
                    found
                };
                if found != Folder::Real {
                    break;
                }
            }
        }
        Ok(())
    }

    /// What the package-relative `folder` on the way to `rel` is; a symlink is refused.
    fn folder(&self, package_dir: &Path, folder: &str, rel: &str) -> Result<Folder> {
        if self.covered(folder) {
            return Ok(Folder::Covered);
        }
        let abs = package_dir.join(folder);
        match lstat_if_exists(&abs)? {
            Some(meta) if meta.file_type().is_symlink() => Err(Error::Symlinked {
                output: self.workspace_path(rel),
                link: self.workspace_path(folder),
                target: fs::read_link(&abs)
                    .map_or_else(|_| "?".to_owned(), |to| to.display().to_string()),
            }),
            Some(_) => Ok(Folder::Real),
            None => Ok(Folder::Absent),
        }
    }

    /// `path` (workspace-relative) relative to the package folder, if it lies below it.
    fn package_relative<'a>(&self, path: &'a str) -> Option<&'a str> {
        if self.package.is_empty() {
            Some(path)
        } else {
            path.strip_prefix(self.package.as_str())
                .and_then(|rest| rest.strip_prefix('/'))
        }
    }

    /// Whether the package-relative `rel` is among what the declared outputs collect.
    fn covered(&self, rel: &str) -> bool {
        self.patterns.iter().any(|pattern| pattern.covers(rel))
    }
}

/// A folder on the way to an output, as `check_parents` finds it.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Folder {
    /// Not among the outputs, and not a symlink: what lies below it is checked too.
    Real,
    /// Among the declared outputs: deleted whole before anything is restored below it.
    Covered,
    /// Not there: nothing below it is either.
    Absent,
}

/// What any manifest must satisfy, whatever rule it is for: relative normalized paths, each
/// once, no symlink target leaving the workspace, nothing below a symlink or a file. An entry
/// that fails it is never read from the store (a miss), and `once cache verify` drops it.
pub fn check_manifest(manifest: &[OutputEntry]) -> Result<()> {
    let mut paths = HashSet::with_capacity(manifest.len());
    let mut links = HashSet::new();
    let mut files = HashSet::new();
    for output in manifest {
        let path = output.path.as_str();
        if normalize(path).as_deref() != Some(path) || path.is_empty() {
            return Err(Error::Escape(path.to_owned()));
        }
        if !paths.insert(path) {
            return Err(Error::Corrupt {
                path: PathBuf::from(path),
                message: "listed twice in the manifest".to_owned(),
            });
        }
        match &output.kind {
            OutputKind::Symlink { target } => {
                check_link(path, target)?;
                links.insert(path);
            }
            OutputKind::File { .. } => {
                files.insert(path);
            }
            OutputKind::Dir => {}
        }
    }
    for output in manifest {
        let path = output.path.as_str();
        for (at, _) in path.match_indices('/') {
            let parent = &path[..at];
            // Writing below a restored symlink would write wherever it points.
            if links.contains(parent) {
                return Err(Error::Escape(format!(
                    "{path} (below the symlink {parent})"
                )));
            }
            if files.contains(parent) {
                return Err(Error::Corrupt {
                    path: PathBuf::from(path),
                    message: format!("below {parent}, which the manifest lists as a file"),
                });
            }
        }
    }
    Ok(())
}

/// `/`-separated, relative, `.` and empty components dropped; `None` if absolute, containing
/// `..` or a NUL.
pub(super) fn normalize(path: &str) -> Option<String> {
    if path.starts_with('/') || path.contains('\0') || Path::new(path).is_absolute() {
        return None;
    }
    let mut parts = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => return None,
            part => parts.push(part),
        }
    }
    Some(parts.join("/"))
}

/// A symlink target must be relative and, resolved against the link's folder, stay inside the
/// workspace. `..` is allowed only before the first name: after one (`sub/../..`) the name may
/// itself be a symlink, and the lexical answer would not be the file system's.
fn check_link(path: &str, target: &str) -> Result<()> {
    let refuse = || Error::Escape(format!("{path} -> {target}"));
    if target.is_empty()
        || target.starts_with('/')
        || target.contains('\0')
        || Path::new(target).is_absolute()
    {
        return Err(refuse());
    }
    let depth = path.matches('/').count();
    let mut ups = 0;
    let mut named = false;
    for part in target.split('/') {
        match part {
            "" | "." => {}
            ".." if named => return Err(refuse()),
            ".." => {
                ups += 1;
                if ups > depth {
                    return Err(refuse());
                }
            }
            _ => named = true,
        }
    }
    Ok(())
}
