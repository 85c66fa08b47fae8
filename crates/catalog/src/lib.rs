//! Slipway's app catalog: every app defined once, in YAML in git, with its source, build,
//! image, deploy target, pipeline and owners; named pipelines with every stage policy; teams;
//! and generators that make apps from a source repository's directories.
//!
//! Files flow in through a [`Tree`] (a git tree, a directory): [`load`] reads `slipway.yaml`
//! and what its `include` globs match, [`generate`] expands generators against the source
//! repositories' trees, [`compile::build`] validates everything and resolves each app's
//! stages into a [`Catalog`]. Problems carry `file:line: key: reason` ([`Problem`]).
//! The crate is pure (no runtime, network, git or database), so `slipctl catalog validate`,
//! a GitOps repository's own CI and the services run the same code. [`schema`] is the JSON
//! Schema of the file format, generated from [`model`]'s types.

pub mod compile;
pub mod error;
pub mod freeze;
pub mod generate;
pub mod keypath;
pub mod load;
pub mod locate;
pub mod model;
pub mod scan;
pub mod verify;

pub use compile::{AppStage, Catalog, CompiledApp, Target, build};
pub use error::{Invalid, Problem};
pub use load::{DirTree, Tree};

/// The catalog's root file in the GitOps repository, by default.
pub const ROOT_FILE: &str = "slipway.yaml";

/// The JSON Schema of a catalog file, for editors (`# yaml-language-server: $schema=...`).
pub fn schema() -> serde_json::Value {
    serde_json::to_value(schemars::schema_for!(model::CatalogFile)).unwrap_or_default()
}

/// The schema as committed next to this crate (`slipway.schema.json`), pretty-printed.
pub fn schema_text() -> String {
    let mut text = serde_json::to_string_pretty(&schema()).unwrap_or_default();
    text.push('\n');
    text
}
