//! From files to one catalog: merge the files, expand the generators, validate everything,
//! and resolve each app's stages (its pipeline's policies, its owners added or replacing the
//! pipeline's approvers, its deploy target per stage). All problems are collected, not just
//! the first, so one run of `slipctl catalog validate` shows everything to fix.

use crate::error::{Invalid, Problem};
use crate::generate;
use crate::load::{Loaded, Tree, load};
use crate::model::{App, Build, OwnersMode, Pipeline, Policy, Source, Stage, TargetKind, Team};
use globset::Glob;
use serde::{Deserialize, Serialize};
use slipway_mesh::names::{AppName, EnvName, ImageTag, RepoName};
use std::collections::{BTreeMap, BTreeSet};

/// The compiled catalog: what every service runs from.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Catalog {
    pub admins: Vec<String>,
    pub teams: BTreeMap<String, Team>,
    pub pipelines: BTreeMap<String, Pipeline>,
    pub apps: BTreeMap<String, CompiledApp>,
    /// The files it was read from, root first.
    pub files: Vec<String>,
    /// The generators' directory rules (to know which pushes may make or remove an app).
    pub generators: Vec<crate::model::DirectoryGenerator>,
    /// Generators not expanded because their source repository's tree was not given
    /// (offline validation), as `file: generators[i] (owner/name)`.
    pub unexpanded: Vec<String>,
}

/// An app with everything resolved.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CompiledApp {
    pub name: String,
    pub team: Option<String>,
    pub source: Source,
    /// The clone URL (`source.url`, or GitHub's for `source.repository`).
    pub clone_url: String,
    pub build: Build,
    pub image: String,
    pub pipeline: String,
    /// The pipeline's stages in order, with this app's approvers and deploy target.
    pub stages: Vec<AppStage>,
    /// Where it was declared: `slipway.yaml: apps[2]`, or the generator and directory.
    pub origin: String,
}

/// One stage of one app.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AppStage {
    /// The pipeline's stage, with `approvers` and `teams` as they apply to this app.
    #[serde(flatten)]
    pub stage: Stage,
    pub deploy: Target,
}

/// Where one app's version is written in one stage; templates filled in but `{image}`,
/// `{tag}` and `{digest}`, which the promoter fills per version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Target {
    pub repository: String,
    pub branch: String,
    pub path: String,
    pub kind: TargetKind,
    pub image: Option<String>,
    pub set_new_name: bool,
    pub key: Option<String>,
    pub digest_key: Option<String>,
    pub value: Option<String>,
    /// `owner/name` on GitHub, for a stage in PR mode.
    #[serde(default)]
    pub github_repository: Option<String>,
}

impl Catalog {
    /// True when `actor` may approve `app` in `stage`: named there, a member of a team named
    /// there (after the app's owners), or an admin.
    pub fn may_approve(&self, app: &str, stage: &str, actor: &str) -> bool {
        let Some(s) = self.apps.get(app).and_then(|a| a.stages.iter().find(|s| s.stage.name == stage)) else {
            return false;
        };
        let eq = |a: &String| a.eq_ignore_ascii_case(actor);
        let in_team = s.stage.teams.iter().filter_map(|t| self.teams.get(t)).any(|t| t.members.iter().any(eq));
        !actor.is_empty() && (s.stage.approvers.iter().any(eq) || in_team || self.admins.iter().any(eq))
    }

    /// Who may approve `app` in `stage`, for a refusal: logins, then `team:<name>` entries.
    pub fn approvers(&self, app: &str, stage: &str) -> Vec<String> {
        let Some(s) = self.apps.get(app).and_then(|a| a.stages.iter().find(|s| s.stage.name == stage)) else {
            return Vec::new();
        };
        let mut out = s.stage.approvers.clone();
        out.extend(s.stage.teams.iter().map(|t| format!("team:{t}")));
        out
    }
}

/// Reads, expands, validates and compiles the catalog whose root file is `root` in `tree`.
/// `sources` gives a source repository's file paths (for generators); `None` leaves that
/// generator unexpanded (listed in [`Catalog::unexpanded`]).
pub fn build(tree: &dyn Tree, root: &str, sources: &dyn Fn(&str) -> Option<Vec<String>>) -> Result<Catalog, Invalid> {
    let (files, mut problems) = load(tree, root);
    let mut cx = Cx { problems: Vec::new(), catalog: Catalog::default() };
    if let Some(first) = files.first() {
        cx.catalog.admins = first.file.admins.clone();
    }
    cx.catalog.files = files.iter().map(|f| f.path.clone()).collect();
    cx.catalog.generators = files.iter().flat_map(|f| f.file.generators.iter().map(|g| g.directory.clone())).collect();
    cx.merge_named(&files);
    for file in &files {
        for (name, team) in &file.file.teams {
            cx.team(file, name, team);
        }
    }
    for file in &files {
        for (name, pipeline) in &file.file.pipelines {
            cx.pipeline(file, name, pipeline);
        }
    }
    let apps = cx.declared_apps(&files, sources);
    for (file, key, origin, app) in &apps {
        cx.app(file, key, origin, app);
    }
    problems.append(&mut cx.problems);
    if problems.is_empty() {
        return Ok(cx.catalog);
    }
    problems.sort_by(|a, b| (&a.file, a.line).cmp(&(&b.file, b.line)));
    problems.dedup();
    Err(Invalid(problems))
}

struct Cx {
    problems: Vec<Problem>,
    catalog: Catalog,
}

impl Cx {
    /// Teams and pipelines defined in two files are an error naming both.
    fn merge_named(&mut self, files: &[Loaded]) {
        let mut seen: BTreeMap<(&str, &String), &str> = BTreeMap::new();
        for file in files {
            let names = file
                .file
                .teams
                .keys()
                .map(|n| ("teams", n))
                .chain(file.file.pipelines.keys().map(|n| ("pipelines", n)));
            for (kind, name) in names {
                match seen.get(&(kind, name)) {
                    Some(other) => {
                        let reason = format!("{} {name:?} is also defined in {other}", &kind[..kind.len() - 1]);
                        self.problems.push(file.problem(format!("{kind}.{name}"), reason));
                    }
                    None => {
                        seen.insert((kind, name), &file.path);
                    }
                }
            }
        }
    }

    fn team(&mut self, file: &Loaded, name: &str, team: &Team) {
        if !is_name(name) {
            self.problems.push(file.problem(format!("teams.{name}"), "a team name is [a-z0-9-], 1 to 63 characters"));
        }
        if team.members.iter().any(|m| m.trim().is_empty()) {
            self.problems.push(file.problem(format!("teams.{name}.members"), "a member must not be empty"));
        }
        self.catalog.teams.entry(name.to_owned()).or_insert_with(|| team.clone());
    }

    fn pipeline(&mut self, file: &Loaded, name: &str, pipeline: &Pipeline) {
        let key = |i: usize, field: &str| format!("pipelines.{name}.stages[{i}].{field}");
        if pipeline.stages.is_empty() {
            self.problems.push(file.problem(format!("pipelines.{name}.stages"), "a pipeline needs at least one stage"));
        }
        let mut names = BTreeSet::new();
        for (i, stage) in pipeline.stages.iter().enumerate() {
            if let Err(e) = EnvName::parse(&stage.name) {
                self.problems.push(file.problem(key(i, "name"), e.to_string()));
            } else if !names.insert(stage.name.as_str()) {
                self.problems.push(file.problem(key(i, "name"), format!("stage {} is listed twice", stage.name)));
            }
            if stage.policy == Policy::Approval && stage.approvals == 0 {
                self.problems.push(file.problem(key(i, "approvals"), "must be at least 1 under policy approval"));
            }
            let unknown: Vec<&String> = stage.teams.iter().filter(|t| !self.known_team(t)).collect();
            for team in unknown {
                self.problems.push(file.problem(key(i, "teams"), format!("team {team:?} is not defined in teams")));
            }
            if stage.pull_request && stage.auto_rollback {
                self.problems.push(file.problem(key(i, "auto_rollback"), "is not supported with pull_request: true"));
            }
            for (j, window) in stage.freeze.iter().enumerate() {
                if let Err(e) = window.validate() {
                    self.problems.push(file.problem(key(i, &format!("freeze[{j}]")), e));
                }
            }
            for (field, reason) in stage.scan.iter().flat_map(|scan| scan.problems()) {
                self.problems.push(file.problem(key(i, &format!("scan.{field}")), reason));
            }
            let mut names = std::collections::BTreeSet::new();
            for (j, check) in stage.verification.iter().enumerate() {
                for (field, reason) in check.problems() {
                    self.problems.push(file.problem(key(i, &format!("verification[{j}].{field}")), reason));
                }
                if !names.insert(check.name()) {
                    let field = key(i, &format!("verification[{j}].name"));
                    self.problems.push(file.problem(field, "two checks of this stage share this name"));
                }
            }
        }
        self.catalog.pipelines.entry(name.to_owned()).or_insert_with(|| pipeline.clone());
    }

    fn known_team(&self, name: &str) -> bool {
        self.catalog.teams.contains_key(name)
    }

    /// Explicit apps, then generated ones not overridden by an explicit app of the same name:
    /// (file, key path of what declared it, origin, app).
    fn declared_apps<'f>(
        &mut self,
        files: &'f [Loaded],
        sources: &dyn Fn(&str) -> Option<Vec<String>>,
    ) -> Vec<(&'f Loaded, String, String, App)> {
        let mut out: Vec<(&Loaded, String, String, App)> = Vec::new();
        let mut explicit: BTreeMap<String, String> = BTreeMap::new();
        for file in files {
            for (i, app) in file.file.apps.iter().enumerate() {
                let key = format!("apps[{i}]");
                if let Some(first) = explicit.get(&app.name) {
                    self.problems.push(
                        file.problem(format!("{key}.name"), format!("app {} is also declared at {first}", app.name)),
                    );
                    continue;
                }
                explicit.insert(app.name.clone(), format!("{}: {key}", file.path));
                out.push((file, key.clone(), format!("{}: {key}", file.path), app.clone()));
            }
        }
        for file in files {
            for (i, generator) in file.file.generators.iter().enumerate() {
                let key = format!("generators[{i}]");
                let repo = &generator.directory.repository;
                let Some(paths) = sources(repo) else {
                    self.catalog.unexpanded.push(format!("{}: {key} ({repo})", file.path));
                    continue;
                };
                match generate::expand(generator, &paths) {
                    Ok(apps) => {
                        for (dir, app) in apps {
                            if explicit.contains_key(&app.name) || out.iter().any(|(_, _, _, a)| a.name == app.name) {
                                continue;
                            }
                            let origin = format!("{}: {key} ({repo}: {dir})", file.path);
                            out.push((file, format!("{key}.template"), origin, app));
                        }
                    }
                    Err(e) => self.problems.push(file.problem(key, e)),
                }
            }
        }
        out
    }

    fn app(&mut self, file: &Loaded, key: &str, origin: &str, app: &App) {
        let before = self.problems.len();
        let bad = |this: &mut Self, field: &str, reason: String| {
            let reason =
                if key.contains("template") { format!("{reason} (app {} from {origin})", app.name) } else { reason };
            this.problems.push(file.problem(format!("{key}.{field}"), reason));
        };
        if let Err(e) = AppName::parse(&app.name) {
            bad(self, "name", e.to_string());
        }
        if let Some(team) = app.team.as_deref().filter(|t| !self.known_team(t)) {
            bad(self, "team", format!("team {team:?} is not defined in teams"));
        }
        if let Err(e) = RepoName::parse(&app.source.repository) {
            bad(self, "source.repository", e.to_string());
        }
        if app.source.paths.is_empty() {
            bad(self, "source.paths", "an app needs at least one path glob".into());
        }
        for (field, glob) in app
            .source
            .paths
            .iter()
            .map(|g| ("source.paths", g))
            .chain(app.source.branches.iter().map(|g| ("source.branches", g)))
        {
            if let Err(e) = Glob::new(glob) {
                bad(self, field, format!("invalid glob {glob:?}: {e}"));
            }
        }
        if !is_relative(&app.build.context) || app.build.dockerfile.as_deref().is_some_and(|d| !is_relative(d)) {
            bad(self, "build", "context and dockerfile are relative paths inside the repository, without '..'".into());
        }
        let arg_name = |n: &str| {
            n.bytes().next().is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
                && n.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
        };
        if let Some(name) = app.build.args.keys().find(|n| !arg_name(n)) {
            bad(self, "build.args", format!("{name:?} is not a build argument name ([A-Za-z_][A-Za-z0-9_]*)"));
        }
        for tag in &app.build.moving_tags {
            if let Err(e) = ImageTag::parse(tag) {
                bad(self, "build.moving_tags", e.to_string());
            }
        }
        if !app.image.contains('/') || app.image.chars().any(char::is_whitespace) {
            bad(self, "image", format!("{:?} is not an image repository with its registry host", app.image));
        }
        let Some(pipeline) = self.catalog.pipelines.get(&app.pipeline).cloned() else {
            let known: Vec<&String> = self.catalog.pipelines.keys().collect();
            bad(self, "pipeline", format!("pipeline {:?} is not defined (pipelines: {known:?})", app.pipeline));
            return;
        };
        let stage_names: Vec<&str> = pipeline.stages.iter().map(|s| s.name.as_str()).collect();
        for stage in app.owners.keys().chain(app.deploy.stages.keys()) {
            if !stage_names.contains(&stage.as_str()) {
                let field = if app.owners.contains_key(stage) { "owners" } else { "deploy.stages" };
                bad(
                    self,
                    &format!("{field}.{stage}"),
                    format!("stage {stage:?} is not in pipeline {:?} ({stage_names:?})", app.pipeline),
                );
            }
        }
        for (stage, owners) in &app.owners {
            let unknown: Vec<&String> = owners.teams.iter().filter(|t| !self.known_team(t)).collect();
            for team in unknown {
                bad(self, &format!("owners.{stage}.teams"), format!("team {team:?} is not defined in teams"));
            }
        }
        check_deploy(app, &mut |field, reason| bad(self, field, reason));
        let mut stages = Vec::new();
        for stage in &pipeline.stages {
            let mut resolved = stage.clone();
            if let Some(owners) = app.owners.get(&stage.name) {
                if owners.mode == OwnersMode::Replace {
                    resolved.approvers.clear();
                    resolved.teams.clear();
                }
                extend_unique(&mut resolved.approvers, &owners.approvers);
                extend_unique(&mut resolved.teams, &owners.teams);
            }
            if resolved.policy == Policy::Approval && resolved.approvers.is_empty() && resolved.teams.is_empty() {
                bad(
                    self,
                    "owners",
                    format!(
                        "stage {} needs approval, and neither pipeline {} nor the app names who may approve",
                        stage.name, app.pipeline
                    ),
                );
            }
            let deploy = target(app, &stage.name);
            match &deploy.github_repository {
                Some(name) if !is_repo_name(name) => {
                    bad(self, "deploy.github_repository", format!("{name:?} is not \"owner/name\""));
                }
                None if resolved.pull_request => bad(
                    self,
                    "deploy.github_repository",
                    format!(
                        "stage {} opens pull requests (pull_request: true) and {:?} is not on github.com: \
                         name the repository on GitHub (owner/name)",
                        stage.name, deploy.repository
                    ),
                ),
                _ => {}
            }
            stages.push(AppStage { deploy, stage: resolved });
        }
        if self.problems.len() > before {
            return;
        }
        let clone_url =
            app.source.url.clone().unwrap_or_else(|| format!("https://github.com/{}.git", app.source.repository));
        let compiled = CompiledApp {
            name: app.name.clone(),
            team: app.team.clone(),
            source: app.source.clone(),
            clone_url,
            build: app.build.clone(),
            image: app.image.clone(),
            pipeline: app.pipeline.clone(),
            stages,
            origin: origin.to_owned(),
        };
        self.catalog.apps.insert(app.name.clone(), compiled);
    }
}

fn check_deploy(app: &App, bad: &mut dyn FnMut(&str, String)) {
    let d = &app.deploy;
    if d.repository.trim().is_empty() {
        bad("deploy.repository", "must not be empty".into());
    }
    let paths = std::iter::once(("deploy.path", &d.path))
        .chain(d.stages.iter().filter_map(|(s, o)| o.path.as_ref().map(|p| (s.as_str(), p))));
    for (field, path) in paths {
        if !is_relative(path) || path == "." {
            bad(
                if field == "deploy.path" { field } else { "deploy.stages" },
                format!("{path:?} must be a relative file path without '..'"),
            );
        }
    }
    match d.kind {
        TargetKind::Kustomize if d.key.is_some() || d.value.is_some() || d.digest_key.is_some() => {
            bad("deploy.kind", "kustomize takes image and set_new_name, not key, value or digest_key".into())
        }
        TargetKind::Helm if d.value.is_some() || d.image.is_some() => {
            bad("deploy.kind", "helm takes key and digest_key, not value or image".into())
        }
        TargetKind::Yaml if d.key.is_none() => bad("deploy.key", "kind yaml needs the key path to write".into()),
        TargetKind::Yaml if d.image.is_some() || d.digest_key.is_some() => {
            bad("deploy.kind", "yaml takes key and value, not image or digest_key".into())
        }
        _ => {}
    }
    let keys = [("deploy.key", &d.key), ("deploy.digest_key", &d.digest_key)]
        .into_iter()
        .filter_map(|(field, key)| key.as_ref().map(|k| (field, k)))
        .chain(d.stages.values().filter_map(|o| o.key.as_ref().map(|k| ("deploy.stages", k))));
    for (field, key) in keys {
        if let Err(e) = crate::keypath::parse(key) {
            bad(field, e);
        }
    }
    if let Some(value) = &d.value
        && !["{image}", "{tag}", "{digest}"].iter().any(|p| value.contains(p))
    {
        bad(
            "deploy.value",
            format!("{value:?} uses none of {{image}}, {{tag}}, {{digest}}: every version would write the same"),
        );
    }
}

fn target(app: &App, stage: &str) -> Target {
    let d = &app.deploy;
    let over = d.stages.get(stage).cloned().unwrap_or_default();
    let fill = |s: &str| s.replace("{app}", &app.name).replace("{stage}", stage);
    let key =
        over.key.or_else(|| d.key.clone()).or_else(|| (d.kind == TargetKind::Helm).then(|| "image.tag".to_owned()));
    Target {
        repository: fill(over.repository.as_deref().unwrap_or(&d.repository)),
        branch: fill(over.branch.as_deref().unwrap_or(&d.branch)),
        path: fill(over.path.as_deref().unwrap_or(&d.path)),
        kind: d.kind,
        image: d.image.clone(),
        set_new_name: d.set_new_name,
        key: key.map(|k| fill(&k)),
        digest_key: d.digest_key.clone(),
        github_repository: over
            .github_repository
            .or_else(|| d.github_repository.clone())
            .or_else(|| github_name(over.repository.as_deref().unwrap_or(&d.repository))),
        value: match d.kind {
            TargetKind::Yaml => Some(d.value.clone().unwrap_or_else(|| "{image}:{tag}".to_owned())),
            _ => d.value.clone(),
        },
    }
}

/// `owner/name` of a github.com clone URL (`https://github.com/o/n.git`, `git@github.com:o/n`).
fn github_name(url: &str) -> Option<String> {
    let rest = ["https://github.com/", "http://github.com/", "ssh://git@github.com/", "git@github.com:"]
        .iter()
        .find_map(|prefix| url.strip_prefix(prefix))?;
    let name = rest.trim_end_matches('/').trim_end_matches(".git");
    is_repo_name(name).then(|| name.to_owned())
}

fn is_repo_name(name: &str) -> bool {
    let part =
        |p: &str| !p.is_empty() && p.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    name.split_once('/').is_some_and(|(owner, repo)| part(owner) && part(repo) && repo != "." && repo != "..")
}

fn extend_unique(list: &mut Vec<String>, more: &[String]) {
    for item in more {
        if !list.contains(item) {
            list.push(item.clone());
        }
    }
}

fn is_name(name: &str) -> bool {
    (1..=63).contains(&name.len()) && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

fn is_relative(path: &str) -> bool {
    !path.is_empty() && !path.starts_with('/') && !path.split('/').any(|c| c == "..")
}
