//! The pipeline's configuration: the stages in promotion order with their policies
//! (`[[pipeline.stages]]`), who is who (`pipeline.admins`, `[pipeline.teams]`), and the apps
//! with their GitOps targets (`[[apps]]`).

use std::collections::{BTreeMap, BTreeSet, HashSet};

use serde::{Deserialize, Serialize};
use slipway_mesh::names::{AppName, EnvName};

use crate::freeze::FreezeWindow;

/// A configuration value that does not hold: its key (`pipeline.stages[1].approvals`) and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{key}: {reason}")]
pub struct Invalid {
    pub key: String,
    pub reason: String,
}

fn invalid(key: &str, reason: impl std::fmt::Display) -> Invalid {
    Invalid { key: key.to_owned(), reason: reason.to_string() }
}

/// How a stage is entered: the catalog's own type.
pub use slipway_catalog::model::Policy;

/// One stage: `[[pipeline.stages]]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StageConfig {
    pub name: EnvName,
    pub policy: Policy,
    /// Distinct approvals needed under `policy = "approval"`.
    #[serde(default = "one")]
    pub approvals: u32,
    /// GitHub logins that may approve, reject, hold, roll back and promote in this stage.
    #[serde(default)]
    pub approvers: Vec<String>,
    /// Teams (keys of `[pipeline.teams]`) whose members may do the same.
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
    /// PR mode: open a pull request (through `[github]`) instead of pushing to the branch.
    #[serde(default)]
    pub pull_request: bool,
    /// The supply-chain gate: which findings of the image's newest scan keep it out.
    #[serde(default)]
    pub scan: Option<slipway_catalog::scan::ScanPolicy>,
    /// Checks run once the stage is healthy at a new version; the next stage opens only when
    /// all of them passed.
    #[serde(default)]
    pub verification: Vec<slipway_catalog::verify::Check>,
}

fn one() -> u32 {
    1
}

fn watch_window() -> u64 {
    15 * 60
}

/// Who may act, and the stages in order: `[pipeline]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PipelineConfig {
    /// Stages in promotion order.
    pub stages: Vec<StageConfig>,
    /// Logins that may do anything, including promoting inside a freeze window.
    pub admins: Vec<String>,
    /// Team name → member logins.
    pub teams: BTreeMap<String, Vec<String>>,
    /// Seconds between re-checks of waiting promotions (soak ends, freezes lift).
    pub tick_secs: u64,
}

impl Default for PipelineConfig {
    fn default() -> Self {
        Self { stages: Vec::new(), admins: Vec::new(), teams: BTreeMap::new(), tick_secs: 10 }
    }
}

impl PipelineConfig {
    /// The stage called `name` and its position.
    pub fn stage(&self, name: &str) -> Option<(usize, &StageConfig)> {
        self.stages.iter().enumerate().find(|(_, s)| s.name.as_str() == name)
    }

    /// True for configured admins.
    pub fn is_admin(&self, actor: &str) -> bool {
        self.admins.iter().any(|a| a.eq_ignore_ascii_case(actor))
    }

    /// True when `actor` is an approver of `stage`, a member of one of its teams, or an admin.
    pub fn may_act(&self, stage: &StageConfig, actor: &str) -> bool {
        let named = stage.approvers.iter().any(|a| a.eq_ignore_ascii_case(actor));
        let in_team = stage
            .teams
            .iter()
            .filter_map(|t| self.teams.get(t))
            .any(|members| members.iter().any(|m| m.eq_ignore_ascii_case(actor)));
        !actor.is_empty() && (named || in_team || self.is_admin(actor))
    }

    pub fn validate(&self) -> Result<(), Invalid> {
        let mut names = HashSet::new();
        for (i, stage) in self.stages.iter().enumerate() {
            let key = |field: &str| format!("pipeline.stages[{i}].{field}");
            if !names.insert(stage.name.as_str()) {
                return Err(invalid(&key("name"), format!("stage {} is listed twice", stage.name)));
            }
            if stage.policy == Policy::Approval && stage.approvals == 0 {
                return Err(invalid(&key("approvals"), "must be at least 1 under policy \"approval\""));
            }
            if stage.policy == Policy::Approval && stage.approvers.is_empty() && stage.teams.is_empty() {
                return Err(invalid(&key("approvers"), "an approval stage needs approvers or teams"));
            }
            if let Some(team) = stage.teams.iter().find(|t| !self.teams.contains_key(*t)) {
                return Err(invalid(&key("teams"), format!("team {team:?} is not in pipeline.teams")));
            }
            if stage.pull_request && stage.auto_rollback {
                // The health gate waits for the PR branch's commit, which only deploys once
                // merged: an open pull request would time out as degraded and roll back.
                return Err(invalid(&key("auto_rollback"), "is not supported with pull_request = true"));
            }
            for (j, window) in stage.freeze.iter().enumerate() {
                window.validate().map_err(|e| invalid(&key(&format!("freeze[{j}]")), e))?;
            }
            if let Some((field, reason)) = stage.scan.iter().flat_map(|s| s.problems()).next() {
                return Err(invalid(&key(&format!("scan.{field}")), reason));
            }
            let mut names = std::collections::BTreeSet::new();
            for (j, check) in stage.verification.iter().enumerate() {
                if let Some((field, reason)) = check.problems().into_iter().next() {
                    return Err(invalid(&key(&format!("verification[{j}].{field}")), reason));
                }
                if !names.insert(check.name()) {
                    return Err(invalid(&key(&format!("verification[{j}].name")), "two checks share this name"));
                }
            }
        }
        if self.tick_secs == 0 {
            return Err(invalid("pipeline.tick_secs", "must be at least 1"));
        }
        Ok(())
    }
}

/// How the image is written into the GitOps repository.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TargetKind {
    /// An `images:` entry of a kustomization file.
    Kustomize,
    /// A key path (`image.tag`) in a Helm values file.
    Helm,
    /// Any YAML key path (`tag_key`) set to `value`: raw manifests, Argo CD Application
    /// parameters (`spec.source.helm.parameters[name=image.tag].value`).
    Yaml,
}

/// `[apps.gitops]`: where an app's image lives in the GitOps repository.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GitopsTarget {
    /// Clone and push URL.
    pub repository: String,
    #[serde(default = "main_branch")]
    pub branch: String,
    /// File path; `{app}` and `{stage}` are replaced (`envs/{stage}/kustomization.yaml`).
    pub path: String,
    pub kind: TargetKind,
    /// kustomize: the `images[].name` to edit (defaults to the built image's repository).
    #[serde(default)]
    pub image: Option<String>,
    /// kustomize: also write `newName` with the built image's repository.
    #[serde(default)]
    pub set_new_name: bool,
    /// helm: key path of the tag. yaml: the key path written; list entries are chosen by a
    /// field, `containers[name=web].image`.
    #[serde(default = "tag_key")]
    pub tag_key: String,
    /// helm: key path of the digest, if the chart takes one.
    #[serde(default)]
    pub digest_key: Option<String>,
    /// `owner/name` of the repository on GitHub, where PR-mode stages open pull requests.
    #[serde(default)]
    pub github_repository: Option<String>,
    /// yaml: the value written, from `{image}`, `{tag}` and `{digest}` (`{image}:{tag}` when
    /// unset).
    #[serde(default)]
    pub value: Option<String>,
}

fn main_branch() -> String {
    "main".to_owned()
}

fn tag_key() -> String {
    "image.tag".to_owned()
}

impl GitopsTarget {
    /// The file path for one stage.
    pub fn path_for(&self, app: &AppName, stage: &EnvName) -> String {
        self.path.replace("{app}", app.as_str()).replace("{stage}", stage.as_str())
    }
}

/// One app: `[[apps]]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AppConfig {
    pub name: AppName,
    pub gitops: GitopsTarget,
    /// Source repositories (`owner/name`) whose pull-request commands may address this app
    /// without naming it; empty accepts any.
    #[serde(default)]
    pub source_repositories: BTreeSet<String>,
    /// Per stage, a target of its own (apps from the catalog, whose stages may deploy to
    /// other repositories); `gitops` for the others.
    #[serde(skip)]
    pub stage_targets: BTreeMap<String, GitopsTarget>,
}

impl AppConfig {
    /// Where this app's version is written in `stage`.
    pub fn target(&self, stage: &EnvName) -> &GitopsTarget {
        self.stage_targets.get(stage.as_str()).unwrap_or(&self.gitops)
    }
}

pub fn validate_apps(apps: &[AppConfig]) -> Result<(), Invalid> {
    let mut names = HashSet::new();
    for (i, app) in apps.iter().enumerate() {
        let key = |field: &str| format!("apps[{i}].{field}");
        if !names.insert(app.name.as_str()) {
            return Err(invalid(&key("name"), format!("app {} is listed twice", app.name)));
        }
        if app.gitops.repository.is_empty() {
            return Err(invalid(&key("gitops.repository"), "must not be empty"));
        }
        if app.gitops.path.is_empty() || app.gitops.path.starts_with('/') || app.gitops.path.contains("..") {
            return Err(invalid(&key("gitops.path"), "must be a relative path without '..'"));
        }
        if app.gitops.branch.is_empty() {
            return Err(invalid(&key("gitops.branch"), "must not be empty"));
        }
        if let Some(name) = &app.gitops.github_repository
            && !is_owner_name(name)
        {
            return Err(invalid(&key("gitops.github_repository"), format!("{name:?} is not \"owner/name\"")));
        }
        if let Err(e) = slipway_catalog::keypath::parse(&app.gitops.tag_key) {
            return Err(invalid(&key("gitops.tag_key"), e));
        }
        if let Some(value) = &app.gitops.value
            && (app.gitops.kind != TargetKind::Yaml
                || !["{image}", "{tag}", "{digest}"].iter().any(|p| value.contains(p)))
        {
            let why = "is for kind = \"yaml\" and takes {image}, {tag} or {digest}";
            return Err(invalid(&key("gitops.value"), why));
        }
    }
    Ok(())
}

/// `owner/name` with GitHub's characters.
fn is_owner_name(name: &str) -> bool {
    let part =
        |p: &str| !p.is_empty() && p.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    name.split_once('/').is_some_and(|(owner, repo)| part(owner) && part(repo))
}
