//! Reading the catalog's files from a [`Tree`]: the root file, then every file its `include`
//! globs match, each parsed on its own so a problem names its own file and line.

use crate::error::Problem;
use crate::model::CatalogFile;
use globset::GlobBuilder;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Files of a repository at one revision (a git tree, a directory, a map in tests).
pub trait Tree {
    /// Every file's path relative to the root, `/`-separated.
    fn paths(&self) -> Vec<String>;
    /// A file's text; `None` when it is not there or not UTF-8.
    fn read(&self, path: &str) -> Option<String>;
}

impl Tree for BTreeMap<String, String> {
    fn paths(&self) -> Vec<String> {
        self.keys().cloned().collect()
    }

    fn read(&self, path: &str) -> Option<String> {
        self.get(path).cloned()
    }
}

/// A directory on disk (`slipctl catalog validate`, a local catalog).
#[derive(Debug, Clone)]
pub struct DirTree(pub PathBuf);

impl Tree for DirTree {
    fn paths(&self) -> Vec<String> {
        let mut out = Vec::new();
        let mut stack = vec![self.0.clone()];
        while let Some(dir) = stack.pop() {
            let Ok(entries) = std::fs::read_dir(&dir) else { continue };
            for entry in entries.flatten() {
                let path = entry.path();
                if entry.file_name() == ".git" {
                    continue;
                }
                match entry.file_type() {
                    Ok(t) if t.is_dir() => stack.push(path),
                    Ok(t) if t.is_file() => {
                        if let Ok(rel) = path.strip_prefix(&self.0) {
                            out.push(
                                rel.components().map(|c| c.as_os_str().to_string_lossy()).collect::<Vec<_>>().join("/"),
                            );
                        }
                    }
                    _ => {}
                }
            }
        }
        out.sort();
        out
    }

    fn read(&self, path: &str) -> Option<String> {
        std::fs::read_to_string(self.0.join(Path::new(path))).ok()
    }
}

/// One parsed file.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub path: String,
    pub text: String,
    pub file: CatalogFile,
}

impl Loaded {
    /// A problem at `key` of this file, with its line.
    pub fn problem(&self, key: impl Into<String>, reason: impl Into<String>) -> Problem {
        let key = key.into();
        let line = crate::locate::locate(&self.text, &key).unwrap_or(1);
        Problem { file: self.path.clone(), line, key, reason: reason.into() }
    }
}

/// Parses one file's text.
pub fn parse(path: &str, text: &str) -> Result<CatalogFile, Problem> {
    if text.trim().is_empty() {
        return Ok(CatalogFile::default());
    }
    serde_yaml::from_str(text).map_err(|e| {
        let line = e.location().map_or(1, |l| l.line());
        let mut message = e.to_string();
        if let Some(at) = message.rfind(" at line ") {
            message.truncate(at);
        }
        // serde_yaml puts the key path first (`apps[0]: unknown field ...`).
        let (key, reason) = match message.split_once(": ") {
            Some((key, reason)) if !key.contains(' ') => (key.to_owned(), reason.to_owned()),
            _ => (String::new(), message),
        };
        Problem { file: path.to_owned(), line, key, reason }
    })
}

/// The root file and its includes, in that order; problems for files that are missing or do
/// not parse. An included file may not include in turn, nor name admins.
pub fn load(tree: &dyn Tree, root: &str) -> (Vec<Loaded>, Vec<Problem>) {
    let mut problems = Vec::new();
    let Some(text) = tree.read(root) else {
        let reason = "no such file in the repository (or not UTF-8)".to_owned();
        return (Vec::new(), vec![Problem { file: root.to_owned(), line: 0, key: String::new(), reason }]);
    };
    let file = match parse(root, &text) {
        Ok(file) => file,
        Err(p) => return (Vec::new(), vec![p]),
    };
    let mut loaded = vec![Loaded { path: root.to_owned(), text, file }];
    let includes = loaded[0].file.include.clone();
    if includes.is_empty() {
        return (loaded, problems);
    }
    let paths = tree.paths();
    for (i, pattern) in includes.iter().enumerate() {
        let glob = match GlobBuilder::new(pattern).literal_separator(true).build() {
            Ok(g) => g.compile_matcher(),
            Err(e) => {
                problems.push(loaded[0].problem(format!("include[{i}]"), format!("invalid glob: {e}")));
                continue;
            }
        };
        for path in paths.iter().filter(|p| glob.is_match(p.as_str()) && p.as_str() != root) {
            if loaded.iter().any(|l| &l.path == path) {
                continue;
            }
            let Some(text) = tree.read(path) else { continue };
            match parse(path, &text) {
                Ok(file) => {
                    let included = Loaded { path: path.clone(), text, file };
                    if !included.file.include.is_empty() {
                        problems.push(included.problem("include", "only the root catalog file includes others"));
                    }
                    if !included.file.admins.is_empty() {
                        problems.push(included.problem("admins", "admins are named in the root catalog file only"));
                    }
                    loaded.push(included);
                }
                Err(p) => problems.push(p),
            }
        }
    }
    (loaded, problems)
}
