//! Selecting a rule's input files from the sorted paths of a package.
//!
//! Most input globs name whole folders (`src/**`, `tests/`, `**`) or single files. Those are
//! answered by binary search over the sorted paths, without looking at a file; only real
//! patterns (`**/*.rs`) are matched file by file, and then only over the files below their
//! literal leading folders (`src/` for `src/**/*.ts`). Matching every file of a 100,000-file
//! workspace against every rule's glob set was most of the cost of selecting inputs.
//!
//! The meaning is the README's: globs are relative to the package folder, `*` stays within one
//! folder and `**` crosses folders (as in `.gitignore`), and a pattern ending in `/` or a
//! literal naming a folder means everything below it. The tests hold it to matching every
//! path against a `globset` of the same globs.

use std::ops::Range;

use globset::{GlobBuilder, GlobMatcher};

use crate::{Error, Result};

/// The characters that make a pattern a glob rather than a literal path.
pub(crate) const GLOB_SYNTAX: [char; 7] = ['*', '?', '[', ']', '{', '}', '\\'];

enum Part {
    /// Every path starting with this prefix ("" for all; otherwise it ends in `/`).
    Below(String),
    /// Exactly this path.
    Exact(String),
    /// Paths starting with `base` (a literal folder prefix: "" or ending in `/`) that match.
    Pattern { base: String, matcher: GlobMatcher },
}

/// A pattern starting with this names files from the workspace root (`//tsconfig.base.json`)
/// rather than from the package folder.
pub const WORKSPACE_PREFIX: &str = "//";

/// One list of globs (a rule's `inputs`, or what is excluded from them), compiled.
#[derive(Default)]
pub struct Globs {
    parts: Vec<Part>,
    /// The `//` patterns, relative to the workspace root (without the prefix).
    workspace: Option<Box<Globs>>,
}

impl Globs {
    /// Compile package-relative patterns, and `//` ones relative to the workspace root; the
    /// first that is not a valid glob is the error.
    pub fn compile(patterns: &[String]) -> Result<Globs> {
        let (rooted, relative): (Vec<&String>, Vec<&String>) = patterns
            .iter()
            .partition(|pattern| pattern.starts_with(WORKSPACE_PREFIX));
        let mut globs = Globs::compile_relative(relative)?;
        if !rooted.is_empty() {
            let rooted: Vec<String> = rooted
                .iter()
                .map(|pattern| pattern[WORKSPACE_PREFIX.len()..].to_owned())
                .collect();
            globs.workspace = Some(Box::new(Globs::compile_relative(rooted.iter())?));
        }
        Ok(globs)
    }

    /// The `//` patterns, to select from the whole workspace, if there are any.
    #[must_use]
    pub fn workspace(&self) -> Option<&Globs> {
        self.workspace.as_deref()
    }

    fn compile_relative<'a>(patterns: impl IntoIterator<Item = &'a String>) -> Result<Globs> {
        let mut parts = Vec::new();
        for pattern in patterns {
            let trimmed = pattern.trim_start_matches("./");
            if let Some(folder) = trimmed.strip_suffix('/') {
                let folder = folder.trim_end_matches('/');
                parts.push(if folder.is_empty() {
                    Part::Below(String::new())
                } else if folder.contains(GLOB_SYNTAX) {
                    pattern_part(pattern, &format!("{folder}/**"))?
                } else {
                    Part::Below(format!("{folder}/"))
                });
            } else if trimmed == "**" {
                parts.push(Part::Below(String::new()));
            } else if let Some(folder) = trimmed
                .strip_suffix("/**")
                .filter(|folder| !folder.is_empty() && !folder.contains(GLOB_SYNTAX))
            {
                parts.push(Part::Below(format!("{folder}/")));
            } else if trimmed.contains(GLOB_SYNTAX) {
                parts.push(pattern_part(pattern, trimmed)?);
            } else {
                // A literal: the file of that name, or, if it is a folder, every file below
                // it. Paths are files only, so at most one of the two can match.
                parts.push(Part::Exact(trimmed.to_owned()));
                parts.push(Part::Below(format!("{trimmed}/")));
            }
        }
        Ok(Globs {
            parts,
            workspace: None,
        })
    }

    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.parts.is_empty() && self.workspace.is_none()
    }

    /// Whether `path` (package-relative) matches any of the globs.
    #[must_use]
    pub fn is_match(&self, path: &str) -> bool {
        self.parts.iter().any(|part| match part {
            Part::Below(prefix) => path.starts_with(prefix.as_str()),
            Part::Exact(exact) => path == exact,
            Part::Pattern { base, matcher } => {
                path.starts_with(base.as_str()) && matcher.is_match(path)
            }
        })
    }

    /// Positions in `paths` (package-relative, sorted) of the paths matching `self` and not
    /// `excludes`, ascending.
    #[must_use]
    pub fn select(&self, paths: &[&str], excludes: &Globs) -> Vec<u32> {
        let mut chosen: Vec<u32> = Vec::new();
        for part in &self.parts {
            match part {
                Part::Below(prefix) => chosen.extend(as_u32(below(paths, prefix))),
                Part::Exact(exact) => chosen.extend(as_u32(exactly(paths, exact))),
                Part::Pattern { base, matcher } => {
                    let range = below(paths, base);
                    let offset = range.start;
                    chosen.extend(
                        paths[range]
                            .iter()
                            .enumerate()
                            .filter(|(_, path)| matcher.is_match(path))
                            .map(|(i, _)| (offset + i) as u32),
                    );
                }
            }
        }
        if self.parts.len() > 1 {
            chosen.sort_unstable();
            chosen.dedup();
        }
        if excludes.is_empty() || chosen.is_empty() {
            return chosen;
        }
        // A few chosen files (a rule naming its inputs) against many excludes (the outputs of
        // every rule of its package): one comparison per exclude and file costs less than a
        // binary search over the package's files per exclude. At 10,000 rules of 100 per
        // package those searches were 0.2 s of keying a cold run (benches/coldrun.py).
        if chosen.len() <= paths.len().ilog2() as usize {
            chosen.retain(|&index| !excludes.is_match(paths[index as usize]));
            return chosen;
        }
        // Folder and file excludes (outputs, nested packages: there may be a thousand for the
        // root package) become ranges to skip; only patterns are asked per file.
        let mut skipped: Vec<Range<usize>> = excludes
            .parts
            .iter()
            .filter_map(|part| match part {
                Part::Below(prefix) => Some(below(paths, prefix)),
                Part::Exact(exact) => Some(exactly(paths, exact)),
                Part::Pattern { .. } => None,
            })
            .filter(|range| !range.is_empty())
            .collect();
        skipped.sort_unstable_by_key(|range| range.start);
        let patterns: Vec<(&str, &GlobMatcher)> = excludes
            .parts
            .iter()
            .filter_map(|part| match part {
                Part::Pattern { base, matcher } => Some((base.as_str(), matcher)),
                _ => None,
            })
            .collect();
        let mut next_skip = skipped.iter().peekable();
        chosen.retain(|&index| {
            let index_usize = index as usize;
            while next_skip
                .peek()
                .is_some_and(|range| range.end <= index_usize)
            {
                next_skip.next();
            }
            if next_skip
                .peek()
                .is_some_and(|range| range.contains(&index_usize))
            {
                return false;
            }
            let path = paths[index_usize];
            !patterns
                .iter()
                .any(|(base, matcher)| path.starts_with(base) && matcher.is_match(path))
        });
        chosen
    }
}

/// The one way a glob is compiled, for inputs and outputs alike: `*` and `?` stay within a
/// folder (as in `.gitignore`); errors name the pattern as the user wrote it.
pub(crate) fn glob_matcher(original: &str, glob: &str) -> Result<GlobMatcher> {
    Ok(GlobBuilder::new(glob)
        .literal_separator(true)
        .build()
        .map_err(|err| Error::Glob {
            pattern: original.to_owned(),
            message: err.kind().to_string(),
        })?
        .compile_matcher())
}

fn pattern_part(original: &str, glob: &str) -> Result<Part> {
    let matcher = glob_matcher(original, glob)?;
    // The literal folders before the first glob character: only paths below them can match.
    let literal = &glob[..glob.find(GLOB_SYNTAX).unwrap_or(glob.len())];
    let base = literal[..literal.rfind('/').map_or(0, |slash| slash + 1)].to_owned();
    Ok(Part::Pattern { base, matcher })
}

/// The positions of the paths starting with `prefix` (they are together, the paths being
/// sorted byte-wise).
fn below(paths: &[&str], prefix: &str) -> Range<usize> {
    if prefix.is_empty() {
        return 0..paths.len();
    }
    let start = paths.partition_point(|path| *path < prefix);
    let len = paths[start..].partition_point(|path| path.starts_with(prefix));
    start..start + len
}

fn exactly(paths: &[&str], exact: &str) -> Range<usize> {
    let start = paths.partition_point(|path| *path < exact);
    let end = start + usize::from(paths.get(start) == Some(&exact));
    start..end
}

fn as_u32(range: Range<usize>) -> impl Iterator<Item = u32> {
    range.map(|i| i as u32)
}

#[cfg(test)]
mod tests {
    use super::*;
    use globset::{GlobSet, GlobSetBuilder};

    /// The plain meaning: every path matched against the whole glob set, as selection did
    /// before ranges.
    fn oracle_set(patterns: &[&str]) -> GlobSet {
        let mut set = GlobSetBuilder::new();
        for pattern in patterns {
            let trimmed = pattern.trim_start_matches("./");
            let globs = if let Some(folder) = trimmed.strip_suffix('/') {
                let folder = folder.trim_end_matches('/');
                vec![if folder.is_empty() {
                    "**".to_owned()
                } else {
                    format!("{folder}/**")
                }]
            } else if trimmed.contains(GLOB_SYNTAX) {
                vec![trimmed.to_owned()]
            } else {
                vec![trimmed.to_owned(), format!("{trimmed}/**")]
            };
            for glob in globs {
                set.add(
                    GlobBuilder::new(&glob)
                        .literal_separator(true)
                        .build()
                        .unwrap(),
                );
            }
        }
        set.build().unwrap()
    }

    fn owned(patterns: &[&str]) -> Vec<String> {
        patterns.iter().map(|p| (*p).to_owned()).collect()
    }

    const PATHS: &[&str] = &[
        ".hidden",
        "README.md",
        "dist",
        "dist-extra/a.js",
        "dist/a.js",
        "dist/sub/b.js",
        "docs/x.md",
        "nested/pkg/a.rs",
        "nested/pkg/src/b.rs",
        "nested/pkgs.txt",
        "once.toml",
        "src/a.rs",
        "src/a.ts",
        "src/deep/b.rs",
        "src/deep/c.ts",
        "src/deep/deeper/d.rs",
        "srcs/e.rs",
        "tests/t.rs",
        "x[1].txt",
    ];

    #[test]
    fn agrees_with_matching_every_path_against_the_glob_set() {
        let cases: &[(&[&str], &[&str])] = &[
            (&["**"], &[]),
            (&["**"], &["dist/", "once.toml"]),
            (&["**"], &["dist", "nested/pkg"]),
            (&["src/**", "tests/**"], &[]),
            (&["src/**", "tests/"], &["src/deep/"]),
            (&["src/**/*.rs"], &[]),
            (&["src/*.rs", "**/*.ts"], &["src/deep/c.ts"]),
            (&["src"], &[]),
            (&["src/"], &["**/*.ts"]),
            (&["./src/**"], &["./src/deep"]),
            (&["*.md", "docs"], &[]),
            (&["{src,tests}/**"], &["**/deep/**"]),
            (&["s?c/*"], &[]),
            (&["src/deep/**/"], &[]),
            (&["x\\[1\\].txt"], &[]),
            (&["dist/**"], &[]),
            (&["nested/pkg/**", "nested/pkgs.txt"], &["nested/pkg/src"]),
            (&["/"], &["src/a.rs", "README.md"]),
            // Few files chosen, many excludes: each file is asked, not each exclude.
            (
                &["src/a.rs", "README.md", "dist/a.js", "docs/x.md"],
                &[
                    "src/a.rs",
                    "dist",
                    "docs/*.md",
                    "nested/",
                    "tests/**",
                    "x",
                    "y/",
                    "z",
                ],
            ),
            (&["src/a.ts"], &["src/"]),
            (&["src/a.ts"], &["srcs/", "src/a.t", "src/a.ts/"]),
            (&[], &[]),
        ];
        for (include, exclude) in cases {
            let globs = Globs::compile(&owned(include)).unwrap();
            let excludes = Globs::compile(&owned(exclude)).unwrap();
            let (inc, exc) = (oracle_set(include), oracle_set(exclude));
            let expected: Vec<u32> = PATHS
                .iter()
                .enumerate()
                .filter(|(_, path)| inc.is_match(path) && !exc.is_match(path))
                .map(|(i, _)| i as u32)
                .collect();
            assert_eq!(
                globs.select(PATHS, &excludes),
                expected,
                "include {include:?} exclude {exclude:?}"
            );
            for path in PATHS {
                assert_eq!(
                    globs.is_match(path),
                    inc.is_match(path),
                    "{include:?} {path}"
                );
            }
        }
    }

    #[test]
    fn a_bad_glob_names_its_pattern() {
        let err = Globs::compile(&owned(&["src/**", "src/[a"])).err().unwrap();
        assert!(err.to_string().contains("src/[a"), "{err}");
    }
}
