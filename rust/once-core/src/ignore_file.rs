//! One ignore file (`.gitignore`, `.onceignore`, `.git/info/exclude`) and what it says about
//! the paths below its folder.
//!
//! Most ignore files only name things: `dist/`, `node_modules`, `/build`, `*.pyc`. Those are
//! answered by comparing bytes. The `ignore` crate's matcher builds a glob candidate (path,
//! basename, extension) for every path it is asked about and takes a regex cache from a
//! shared pool on every walk thread; on a 30,000-file workspace that was ~30% of the walk's
//! instructions. Any other line (wildcards inside a name, a slash inside the pattern, `!`,
//! escapes, character classes) sends the whole file to that matcher, which stays the
//! reference: the walk tests compare both with the `ignore` crate's own walker.

use std::path::Path;

use ignore::gitignore::{Gitignore, GitignoreBuilder};

use crate::directory::rel_path;

/// What an ignore file says about a path: nothing, ignore it, or keep it (a `!pattern`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Verdict {
    Ignore,
    Keep,
}

pub(crate) enum IgnoreFile {
    Plain(PlainRules),
    Globs(Gitignore),
}

impl IgnoreFile {
    /// The rules of the file at `path`, in the folder `folder` (`/`-separated, relative to the
    /// walk root); `None` when it has no rule or cannot be read. Lines that do not parse are
    /// skipped, as git does.
    pub(crate) fn load(folder: &[u8], path: &Path) -> Option<IgnoreFile> {
        let text = std::fs::read(path).ok()?;
        // Git skips a byte-order mark at the start of the file.
        let text = text.strip_prefix("\u{feff}".as_bytes()).unwrap_or(&text);
        let plain = std::str::from_utf8(text)
            .ok()
            .and_then(|text| PlainRules::parse(folder, text));
        let file = if let Some(rules) = plain {
            IgnoreFile::Plain(rules)
        } else {
            let mut builder = GitignoreBuilder::new(rel_path(folder));
            // Unreadable lines and lines that do not parse are skipped.
            let _ = builder.add(path);
            IgnoreFile::Globs(builder.build().ok()?)
        };
        (!file.is_empty()).then_some(file)
    }

    fn is_empty(&self) -> bool {
        match self {
            IgnoreFile::Plain(rules) => rules.patterns.is_empty(),
            IgnoreFile::Globs(globs) => globs.is_empty(),
        }
    }

    /// The verdict on `child` (relative to the walk root, below this file's folder), or `None`
    /// when no line of the file names it.
    pub(crate) fn verdict(&self, child: &[u8], is_dir: bool) -> Option<Verdict> {
        match self {
            IgnoreFile::Plain(rules) => rules.matches(child, is_dir).then_some(Verdict::Ignore),
            IgnoreFile::Globs(globs) => {
                let found = globs.matched(rel_path(child), is_dir);
                if found.is_ignore() {
                    Some(Verdict::Ignore)
                } else if found.is_whitelist() {
                    Some(Verdict::Keep)
                } else {
                    None
                }
            }
        }
    }
}

/// An ignore file whose every line is a plain pattern (see `Pattern`).
pub(crate) struct PlainRules {
    /// The folder of the file: an anchored name matches only directly in it.
    folder: Vec<u8>,
    patterns: Vec<Pattern>,
}

/// One line of a plain ignore file. `only_dirs` is a trailing `/`.
struct Pattern {
    kind: PatternKind,
    text: Vec<u8>,
    only_dirs: bool,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum PatternKind {
    /// `name`: an entry with exactly this name, at any depth.
    Name,
    /// `/name`: an entry with this name directly in the file's folder.
    Anchored,
    /// `*suffix`: an entry whose name ends with `suffix`, at any depth (`*` crosses no `/`).
    Suffix,
}

impl PlainRules {
    /// `None` unless every line is blank, a comment, or a plain pattern, read as git reads it:
    /// trailing whitespace trimmed, `#` starts a comment.
    fn parse(folder: &[u8], text: &str) -> Option<PlainRules> {
        let mut patterns = Vec::new();
        for line in text.lines() {
            if line.starts_with('#') {
                continue;
            }
            if line.ends_with("\\ ") {
                return None; // an escaped trailing space: the glob matcher keeps it
            }
            let line = line.trim_end();
            if !line.is_empty() {
                patterns.push(Pattern::parse(line)?);
            }
        }
        Some(PlainRules {
            folder: folder.to_vec(),
            patterns,
        })
    }

    fn matches(&self, child: &[u8], is_dir: bool) -> bool {
        let (parent, name) = match child.iter().rposition(|&b| b == b'/') {
            Some(slash) => (&child[..slash], &child[slash + 1..]),
            None => (&[][..], child),
        };
        self.patterns.iter().any(|pattern| {
            (is_dir || !pattern.only_dirs)
                && match pattern.kind {
                    PatternKind::Name => name == pattern.text,
                    PatternKind::Anchored => name == pattern.text && parent == self.folder,
                    PatternKind::Suffix => name.ends_with(&pattern.text),
                }
        })
    }
}

impl Pattern {
    /// A trimmed, non-comment line as a plain pattern; `None` for anything else.
    fn parse(line: &str) -> Option<Pattern> {
        let (anchored, rest) = match line.strip_prefix('/') {
            Some(rest) => (true, rest),
            None => (false, line),
        };
        let (only_dirs, rest) = match rest.strip_suffix('/') {
            Some(rest) => (true, rest),
            None => (false, rest),
        };
        let (kind, text) = match rest.strip_prefix('*') {
            Some(suffix) if !anchored => (PatternKind::Suffix, suffix),
            Some(_) => return None,
            None if anchored => (PatternKind::Anchored, rest),
            None => (PatternKind::Name, rest),
        };
        // Letters, digits and the punctuation that means nothing to a glob: no `*?[]{}\!`,
        // no `/`, no spaces; ASCII only, so bytes and characters agree.
        let literal = |b: u8| b.is_ascii_alphanumeric() || b"._-+@~%=,".contains(&b);
        (!text.is_empty() && text.bytes().all(literal)).then(|| Pattern {
            kind,
            text: text.as_bytes().to_vec(),
            only_dirs,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plain(folder: &str, text: &str) -> Option<PlainRules> {
        PlainRules::parse(folder.as_bytes(), text)
    }

    #[test]
    fn only_naming_lines_are_plain() {
        for line in [
            "dist/",
            "/build",
            "*.pyc",
            "node_modules",
            ".DS_Store",
            "*~",
            "a.b-c_d+e",
        ] {
            assert!(plain("", line).is_some(), "{line}");
        }
        for line in [
            "!keep", "\\#x", "src/*.rs", "a/b", "a*b", "*.[oa]", "?x", "**/out", "/*.log", "{a,b}",
            "a b", "x\\ ", "/", "*", "é",
        ] {
            assert!(plain("", line).is_none(), "{line}");
        }
        assert_eq!(
            plain("", "# c\n\n  \ndist/  \r\n").unwrap().patterns.len(),
            1
        );
    }

    /// Byte comparison agrees with the `ignore` crate's matcher on every plain line, for
    /// files at the root and in a nested folder, on names that nearly match.
    #[test]
    fn plain_rules_agree_with_the_glob_matcher() {
        const LINES: &[&str] = &[
            "dist/", "dist", "/dist", "/dist/", "*.log", "*.log/", "*log", ".env", "*.tar.gz",
            "build", "/a.b", "x-y",
        ];
        const NAMES: &[&str] = &[
            "dist", "dist2", "adist", "a.log", ".log", "log", "a.log.x", ".env", "a.tar.gz",
            "tar.gz", "build", "a.b", "x-y", "Dist",
        ];
        for folder in ["", "pkg", "pkg/sub"] {
            for line in LINES {
                let rules = IgnoreFile::Plain(plain(folder, line).unwrap());
                let mut builder = GitignoreBuilder::new(rel_path(folder.as_bytes()));
                builder.add_line(None, line).unwrap();
                let globs = IgnoreFile::Globs(builder.build().unwrap());
                for parent in ["", "/x", "/x/y"] {
                    for name in NAMES {
                        let base = if folder.is_empty() {
                            parent.trim_start_matches('/').to_owned()
                        } else {
                            format!("{folder}{parent}")
                        };
                        let child = if base.is_empty() {
                            (*name).to_owned()
                        } else {
                            format!("{base}/{name}")
                        };
                        for is_dir in [false, true] {
                            assert_eq!(
                                rules.verdict(child.as_bytes(), is_dir),
                                globs.verdict(child.as_bytes(), is_dir),
                                "{line:?} in {folder:?} on {child:?} (dir: {is_dir})"
                            );
                        }
                    }
                }
            }
        }
    }
}
