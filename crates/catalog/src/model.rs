//! The catalog's files as written: `slipway.yaml` at the root of the GitOps repository and
//! the files its `include` globs name. Every type here derives `JsonSchema`, so the schema
//! editors complete against (`slipway.schema.json`) is generated from these types.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

pub use crate::freeze::FreezeWindow;

/// One catalog file.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct CatalogFile {
    /// Globs of more catalog files, relative to the repository root (`teams/*/slipway.yaml`),
    /// so each team owns its file under the repository's own review rules. Root file only.
    pub include: Vec<String>,
    /// Logins that may do anything, including promoting inside a freeze window. Root file only.
    pub admins: Vec<String>,
    /// Teams by name: who is in them. Owners and notification routes name teams.
    pub teams: BTreeMap<String, Team>,
    /// Named stage lists with their policies; each app names one.
    pub pipelines: BTreeMap<String, Pipeline>,
    /// Apps declared one by one. One of the same name overrides a generated one.
    pub apps: Vec<App>,
    /// Rules that make apps from what is in a source repository.
    pub generators: Vec<Generator>,
}

/// A team.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct Team {
    /// GitHub logins.
    pub members: Vec<String>,
    /// What the team is, for people.
    pub description: String,
}

/// A pipeline: stages in promotion order.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Pipeline {
    /// In promotion order; the first is entered by every successful build.
    pub stages: Vec<Stage>,
}

/// How a stage is entered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Policy {
    /// As soon as the previous stage is healthy (after soak and gates).
    Auto,
    /// After `approvals` distinct allowed approvers said so.
    Approval,
}

/// One stage of a pipeline, with every policy a stage can have.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Stage {
    /// `dev`, `staging`, `prod`: `[a-z0-9-]`.
    pub name: String,
    pub policy: Policy,
    /// Distinct approvals needed under `policy: approval`.
    #[serde(default = "one")]
    pub approvals: u32,
    /// Logins that may approve, reject, hold, roll back and promote in this stage.
    #[serde(default)]
    pub approvers: Vec<String>,
    /// Teams whose members may do the same.
    #[serde(default)]
    pub teams: Vec<String>,
    /// The commit author's approval does not count.
    #[serde(default)]
    pub four_eyes: bool,
    /// Seconds the version must have been healthy in the previous stage.
    #[serde(default)]
    pub soak_secs: u64,
    /// Workflow runs / check suites that must have concluded `success` for the commit.
    #[serde(default)]
    pub required_gates: Vec<String>,
    /// No promotion starts inside these windows, unless an admin overrides.
    #[serde(default)]
    pub freeze: Vec<FreezeWindow>,
    /// Roll back automatically when the stage degrades within the watch window.
    #[serde(default)]
    pub auto_rollback: bool,
    /// Seconds after the commit during which a degraded report triggers a rollback.
    #[serde(default = "watch_window")]
    pub watch_window_secs: u64,
    /// Open a pull request instead of pushing to the branch.
    #[serde(default)]
    pub pull_request: bool,
    /// The supply-chain gate: which findings of the image's vulnerability scan keep it out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scan: Option<crate::scan::ScanPolicy>,
    /// Checks run once the stage is healthy at a new version (Prometheus analysis with Argo
    /// Rollouts' semantics, web requests, Kubernetes Jobs); the next stage opens only when all
    /// of them passed, and a failure counts as the stage degrading.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub verification: Vec<crate::verify::Check>,
}

fn one() -> u32 {
    1
}

fn watch_window() -> u64 {
    15 * 60
}

/// An app: what Slipway builds and deploys, once.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct App {
    /// `[a-z0-9-]`, unique in the catalog. In a generator's template, `{name}` by default.
    #[serde(default = "name_placeholder")]
    pub name: String,
    /// The team that owns it (a key of `teams`); its notifications route by it.
    #[serde(default)]
    pub team: Option<String>,
    /// Where its source is and which changes build it.
    pub source: Source,
    /// How its image is built.
    #[serde(default)]
    pub build: Build,
    /// Image repository with the registry host (`registry.example/acme/writer`).
    pub image: String,
    /// Where its version is written in the GitOps repository.
    pub deploy: Deploy,
    /// The pipeline it goes through (a key of `pipelines`).
    pub pipeline: String,
    /// Who may approve it, per stage, besides or instead of the pipeline's approvers.
    #[serde(default)]
    pub owners: BTreeMap<String, Owners>,
}

fn name_placeholder() -> String {
    "{name}".to_owned()
}

/// An app's source.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Source {
    /// `owner/name` on GitHub.
    pub repository: String,
    /// Clone URL for the builder; `https://github.com/<repository>.git` when unset.
    #[serde(default)]
    pub url: Option<String>,
    /// Path globs relative to the repository root (`apps/writer/**`); a push touching one builds.
    pub paths: Vec<String>,
    /// Branch globs whose pushes build (`main`, `release/*`); empty means every branch.
    #[serde(default)]
    pub branches: Vec<String>,
}

/// How an app's image is built.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct Build {
    /// Build context relative to the repository root.
    pub context: String,
    /// Dockerfile relative to the repository root; `<context>/Dockerfile` when unset.
    pub dockerfile: Option<String>,
    /// `--build-arg` values.
    pub args: BTreeMap<String, String>,
    /// Tags that move to each build of the default branch (`latest`, `edge`).
    pub moving_tags: Vec<String>,
}

impl Default for Build {
    fn default() -> Self {
        Self { context: ".".into(), dockerfile: None, args: BTreeMap::new(), moving_tags: Vec::new() }
    }
}

/// What kind of file holds the version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum TargetKind {
    /// An `images:` entry of a kustomization file.
    Kustomize,
    /// A key path (`image.tag`) in a Helm values file.
    Helm,
    /// Any YAML key path with a value template: raw manifests, Argo CD Application parameters.
    Yaml,
}

/// Where an app's version is written. `{app}` and `{stage}` are replaced in `path`,
/// `repository`, `branch` and `key`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Deploy {
    /// Clone and push URL of the GitOps repository.
    pub repository: String,
    #[serde(default = "main_branch")]
    pub branch: String,
    /// File path (`apps/{app}/{stage}/kustomization.yaml`).
    pub path: String,
    pub kind: TargetKind,
    /// kustomize: the `images[].name` to edit (the image's repository when unset).
    #[serde(default)]
    pub image: Option<String>,
    /// kustomize: also write `newName`.
    #[serde(default)]
    pub set_new_name: bool,
    /// helm: key path of the tag (`image.tag` when unset). yaml: the key path to write.
    #[serde(default)]
    pub key: Option<String>,
    /// helm: key path of the digest, if the chart takes one.
    #[serde(default)]
    pub digest_key: Option<String>,
    /// yaml: the value written, from `{image}`, `{tag}` and `{digest}` (`{image}:{tag}` when unset).
    #[serde(default)]
    pub value: Option<String>,
    /// `owner/name` of the GitOps repository on GitHub, where stages with `pull_request: true`
    /// open pull requests; taken from `repository` when that is a github.com URL.
    #[serde(default)]
    pub github_repository: Option<String>,
    /// Per stage: another repository, branch or path.
    #[serde(default)]
    pub stages: BTreeMap<String, DeployOverride>,
}

fn main_branch() -> String {
    "main".to_owned()
}

/// A stage's own deploy target; unset fields come from the app's.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct DeployOverride {
    pub repository: Option<String>,
    pub branch: Option<String>,
    pub path: Option<String>,
    pub key: Option<String>,
    pub github_repository: Option<String>,
}

/// Whether an app's owners add to the pipeline's approvers or replace them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum OwnersMode {
    /// The pipeline stage's approvers and teams, and these.
    #[default]
    Add,
    /// Only these.
    Replace,
}

/// Who may approve an app in one stage.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct Owners {
    /// Logins.
    pub approvers: Vec<String>,
    /// Teams (keys of `teams`).
    pub teams: Vec<String>,
    /// `add` (default) to the pipeline stage's approvers and teams, or `replace` them.
    pub mode: OwnersMode,
}

/// Makes apps from a source repository's tree.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Generator {
    /// Every directory matching a glob that holds a marker file becomes an app.
    pub directory: DirectoryGenerator,
    /// The app each directory becomes; `{name}` (the directory's last component) and `{dir}`
    /// (its path) are replaced in every string.
    pub template: App,
}

/// The directory generator.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DirectoryGenerator {
    /// `owner/name` of the source repository whose tree is read.
    pub repository: String,
    /// Directory glob relative to its root (`apps/*`).
    pub glob: String,
    /// The file that makes a matching directory an app.
    #[serde(default = "dockerfile")]
    pub requires: String,
    /// Directory globs left out.
    #[serde(default)]
    pub exclude: Vec<String>,
}

fn dockerfile() -> String {
    "Dockerfile".to_owned()
}
