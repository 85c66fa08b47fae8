//! The directory generator: every directory of a source repository that matches a glob and
//! holds a marker file (a Dockerfile) becomes an app, its template's strings filled with the
//! directory's `{name}` and `{dir}`. A monorepo of 10,000 apps needs one entry, not 10,000.

use crate::model::{App, Generator};
use globset::{GlobBuilder, GlobMatcher};

fn matcher(glob: &str) -> Result<GlobMatcher, String> {
    GlobBuilder::new(glob).literal_separator(true).build().map(|g| g.compile_matcher()).map_err(|e| e.to_string())
}

/// The apps `generator` makes from `paths` (the source repository's files), with the
/// directory each came from, in directory order. Errors name what is wrong with the rule.
pub fn expand(generator: &Generator, paths: &[String]) -> Result<Vec<(String, App)>, String> {
    let rule = &generator.directory;
    let glob = matcher(&rule.glob).map_err(|e| format!("directory.glob: {e}"))?;
    let excluded = rule.exclude.iter().map(|g| matcher(g)).collect::<Result<Vec<_>, _>>();
    let excluded = excluded.map_err(|e| format!("directory.exclude: {e}"))?;
    let marker = format!("/{}", rule.requires.trim_start_matches('/'));
    let template = serde_json::to_value(&generator.template).map_err(|e| e.to_string())?;
    let mut dirs: Vec<&str> = paths
        .iter()
        .filter_map(|p| p.strip_suffix(marker.as_str()))
        .filter(|dir| glob.is_match(dir) && !excluded.iter().any(|x| x.is_match(dir)))
        .collect();
    dirs.sort_unstable();
    dirs.dedup();
    dirs.into_iter()
        .map(|dir| {
            let name = dir.rsplit('/').next().unwrap_or(dir);
            let filled = fill(template.clone(), name, dir);
            let app: App = serde_json::from_value(filled).map_err(|e| format!("template for {dir}: {e}"))?;
            Ok((dir.to_owned(), app))
        })
        .collect()
}

fn fill(value: serde_json::Value, name: &str, dir: &str) -> serde_json::Value {
    use serde_json::Value;
    match value {
        Value::String(s) => Value::String(s.replace("{name}", name).replace("{dir}", dir)),
        Value::Array(items) => Value::Array(items.into_iter().map(|v| fill(v, name, dir)).collect()),
        Value::Object(map) => {
            Value::Object(map.into_iter().map(|(k, v)| (k.replace("{name}", name), fill(v, name, dir))).collect())
        }
        other => other,
    }
}
