//! The apps and pipelines in force: the promoter's own `[[apps]]` and `[pipeline]`, or the
//! app catalog revision ingest published (`[catalog] enabled = true`), followed live.
//!
//! With the catalog each app has its own pipeline: its stages with their policies, and the
//! approvers and teams of each stage as the app's owners make them. [`InForce`] is what one
//! decision runs under; it is taken once per delivery, so a decision, a write-back or a reply
//! never mixes two revisions. An app not in the revision in force gets no builds promoted
//! and no commands (its history stays in the database).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use slipway_catalog::model::TargetKind as CatalogKind;
use slipway_catalog::{Catalog, CompiledApp};
use slipway_mesh::names::{AppName, EnvName};
use slipway_runtime::catalog::{CatalogStore, Live};

use crate::config::{AppConfig, Config, GitopsTarget, PipelineConfig, StageConfig, TargetKind};

/// The apps with their pipelines, as one decision sees them.
#[derive(Debug, Clone, Default)]
pub struct InForce {
    pub apps: Vec<AppConfig>,
    pipelines: BTreeMap<String, Arc<PipelineConfig>>,
    /// App → the name of its pipeline in the catalog.
    pipeline_names: BTreeMap<String, String>,
    /// App → the team that owns it in the catalog.
    teams: BTreeMap<String, String>,
    /// True when the apps come from the catalog (an app in the database but not here is removed).
    pub from_catalog: bool,
    /// The pipeline of an app with none of its own (`[pipeline]`, or an empty one).
    default: Arc<PipelineConfig>,
    /// App name → its position in `apps`.
    index: HashMap<String, usize>,
}

impl InForce {
    /// App `name`, if it is in force.
    pub fn app(&self, name: &str) -> Option<&AppConfig> {
        self.index.get(name).and_then(|i| self.apps.get(*i))
    }

    /// Builds the name index once `apps` is complete.
    fn indexed(mut self) -> Self {
        self.index = self.apps.iter().enumerate().map(|(i, a)| (a.name.to_string(), i)).collect();
        self
    }

    /// The pipeline app `name` goes through.
    pub fn pipeline(&self, app: &str) -> Arc<PipelineConfig> {
        self.pipelines.get(app).cloned().unwrap_or_else(|| self.default.clone())
    }

    /// The catalog name of `app`'s pipeline ("" without a catalog).
    pub fn pipeline_name(&self, app: &str) -> &str {
        self.pipeline_names.get(app).map_or("", String::as_str)
    }

    /// The catalog team owning `app` ("" when none).
    pub fn team(&self, app: &str) -> &str {
        self.teams.get(app).map_or("", String::as_str)
    }

    /// Every stage name of every app's pipeline, in pipeline order, each once.
    pub fn stage_names(&self) -> Vec<String> {
        let mut names: Vec<String> = Vec::new();
        let pipelines = std::iter::once(&self.default).chain(self.pipelines.values());
        for stage in pipelines.flat_map(|p| p.stages.iter()) {
            if !names.iter().any(|n| n == stage.name.as_str()) {
                names.push(stage.name.to_string());
            }
        }
        names
    }
}

/// Where the apps in force come from.
#[derive(Clone)]
pub enum Apps {
    /// `[[apps]]` and `[pipeline]`, fixed at start.
    Config(Arc<InForce>),
    /// The catalog in force, converted once per revision when it is loaded (the compiled
    /// catalog is not kept), and the bucket to catch up from.
    Catalog { live: Live<InForce>, store: Box<CatalogStore> },
}

impl std::fmt::Debug for Apps {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Apps::Config(_) => "Apps::Config",
            Apps::Catalog { .. } => "Apps::Catalog",
        })
    }
}

impl Apps {
    /// The configuration's apps and pipeline.
    pub fn from_config(config: &Config) -> Self {
        let default = Arc::new(config.pipeline.clone());
        Apps::Config(Arc::new(InForce { apps: config.apps.clone(), default, ..InForce::default() }.indexed()))
    }

    /// Follows the catalog in force until the service stops, converted for the promoter.
    pub async fn follow(running: &slipway_runtime::service::Running, config: &Config) -> slipway_runtime::Result<Self> {
        let tick_secs = config.pipeline.tick_secs;
        let (store, live) = slipway_runtime::catalog::follow_as(running, move |c| convert(&c, tick_secs)).await?;
        Ok(Apps::Catalog { live, store: Box::new(store) })
    }

    /// Loads a newer revision from the bucket now, if there is one: for an event about an app
    /// this watcher has not seen yet (it may lag the ingest that published it by a moment).
    pub async fn catch_up(&self) {
        if let Apps::Catalog { live, store, .. } = self
            && let Err(e) = live.refresh(store).await
        {
            tracing::warn!(error = %e, "catalog not refreshed; deciding under the revision held");
        }
    }

    /// What is in force now.
    pub fn get(&self) -> Arc<InForce> {
        match self {
            Apps::Config(in_force) => in_force.clone(),
            Apps::Catalog { live, .. } => live.get().catalog.clone(),
        }
    }
}

/// The catalog as the promoter's apps and per-app pipelines. An app whose name or stage names
/// the promoter refuses is left out with an error in the log.
pub fn convert(catalog: &Catalog, tick_secs: u64) -> InForce {
    let teams: BTreeMap<String, Vec<String>> =
        catalog.teams.iter().map(|(name, team)| (name.clone(), team.members.clone())).collect();
    let mut in_force = InForce { from_catalog: true, ..InForce::default() };
    // Apps with the same pipeline and owners share one: 10,000 apps on a few pipelines hold a
    // few, not 10,000 copies of the stages, admins and teams.
    let mut shared: HashMap<String, Arc<PipelineConfig>> = HashMap::new();
    for app in catalog.apps.values() {
        match app_of(app) {
            Ok((config, stages)) => {
                let key = serde_json::to_string(&stages).unwrap_or_else(|_| app.name.clone());
                let pipeline = shared
                    .entry(key)
                    .or_insert_with(|| {
                        Arc::new(PipelineConfig {
                            stages,
                            admins: catalog.admins.clone(),
                            teams: teams.clone(),
                            tick_secs,
                        })
                    })
                    .clone();
                in_force.pipelines.insert(app.name.clone(), pipeline);
                in_force.pipeline_names.insert(app.name.clone(), app.pipeline.clone());
                if let Some(team) = &app.team {
                    in_force.teams.insert(app.name.clone(), team.clone());
                }
                in_force.apps.push(config);
            }
            Err(e) => {
                tracing::error!(app = %app.name, error = %e, "catalog app left out of the promoter");
                metrics::counter!("slipway_promoter_catalog_apps_left_out_total").increment(1);
            }
        }
    }
    in_force.indexed()
}

fn app_of(app: &CompiledApp) -> Result<(AppConfig, Vec<StageConfig>), String> {
    let name = AppName::parse(&app.name).map_err(|e| e.to_string())?;
    let mut stages = Vec::new();
    let mut targets = BTreeMap::new();
    for s in &app.stages {
        let stage = &s.stage;
        let kind = match s.deploy.kind {
            CatalogKind::Kustomize => TargetKind::Kustomize,
            CatalogKind::Helm => TargetKind::Helm,
            CatalogKind::Yaml => TargetKind::Yaml,
        };
        targets.insert(
            stage.name.clone(),
            GitopsTarget {
                repository: s.deploy.repository.clone(),
                branch: s.deploy.branch.clone(),
                path: s.deploy.path.clone(),
                kind,
                image: s.deploy.image.clone(),
                set_new_name: s.deploy.set_new_name,
                tag_key: s.deploy.key.clone().unwrap_or_else(|| "image.tag".into()),
                digest_key: s.deploy.digest_key.clone(),
                github_repository: s.deploy.github_repository.clone(),
                value: s.deploy.value.clone(),
            },
        );
        stages.push(StageConfig {
            name: EnvName::parse(&stage.name).map_err(|e| e.to_string())?,
            policy: stage.policy,
            approvals: stage.approvals,
            approvers: stage.approvers.clone(),
            teams: stage.teams.clone(),
            four_eyes: stage.four_eyes,
            soak_secs: stage.soak_secs,
            required_gates: stage.required_gates.clone(),
            freeze: stage.freeze.clone(),
            auto_rollback: stage.auto_rollback,
            watch_window_secs: stage.watch_window_secs,
            pull_request: stage.pull_request,
            scan: stage.scan.clone(),
            verification: stage.verification.clone(),
        });
    }
    let first = targets.values().next().cloned().ok_or_else(|| "no stages".to_owned())?;
    let config = AppConfig {
        name,
        gitops: first,
        source_repositories: std::iter::once(app.source.repository.clone()).collect(),
        stage_targets: targets,
    };
    Ok((config, stages))
}

#[cfg(test)]
mod tests {
    use super::*;
    use slipway_catalog::DirTree;

    fn example() -> Catalog {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../crates/catalog/example");
        slipway_catalog::build(&DirTree(dir), "slipway.yaml", &|_| None).expect("valid")
    }

    #[test]
    fn each_app_gets_its_own_pipeline_and_owners() {
        let in_force = convert(&example(), 10);
        let names: Vec<&str> = in_force.apps.iter().map(|a| a.name.as_str()).collect();
        assert_eq!(names, ["ledger", "reader", "writer"]);
        let (ledger, writer) = (in_force.pipeline("ledger"), in_force.pipeline("writer"));
        let staging = |p: &PipelineConfig| p.stage("staging").expect("staging").1.clone();
        assert!(ledger.may_act(&staging(&ledger), "alice") && !writer.may_act(&staging(&writer), "alice"));
        assert!(writer.may_act(&staging(&writer), "quinn") && !ledger.may_act(&staging(&ledger), "quinn"));
        assert!(ledger.is_admin("root"));
        let prod = ledger.stage("prod").expect("prod").1;
        assert_eq!((prod.approvals, prod.four_eyes, prod.freeze.len()), (2, true, 1));
        assert_eq!(in_force.stage_names(), ["dev", "staging", "prod"]);
        let app = in_force.app("writer").expect("writer");
        let stage = EnvName::parse("prod").expect("stage");
        assert_eq!(app.target(&stage).path_for(&app.name, &stage), "apps/writer/prod/kustomization.yaml");
    }

    #[test]
    fn a_yaml_target_writes_its_rendered_value_at_its_key_path() {
        let in_force = convert(&example(), 10);
        let reader = in_force.app("reader").expect("reader");
        let prod = EnvName::parse("prod").expect("stage");
        let target = reader.target(&prod);
        assert_eq!(
            (target.kind, target.repository.as_str()),
            (TargetKind::Yaml, "git@github.com:acme/deploy-prod.git")
        );
        assert_eq!(target.github_repository.as_deref(), Some("acme/deploy-prod"));
        let image = slipway_mesh::v1::ImageRef {
            repository: "registry.example/acme/reader".into(),
            tag: "1.4.0".into(),
            digest: format!("sha256:{}", "ab".repeat(32)),
        };
        let version = crate::domain::Version { image, source: slipway_mesh::v1::SourceRef::default() };
        let mut promotion = crate::domain::Promotion::pending(
            "p-1".into(),
            None,
            prod.clone(),
            version,
            crate::domain::Trigger::Manual,
            "alice",
            String::new(),
        );
        let update = crate::deployer::update_for(reader, &promotion).expect("update");
        let text = "# the reader in prod\nspec:\n  source:\n    helm:\n      parameters:\n        - name: replicas\n          value: \"3\"\n        - name: image\n          value: old # set by Slipway\n";
        let written = crate::gitops::yaml::apply(text, &update.target, &update.change).expect("applied");
        let want = format!("registry.example/acme/reader@sha256:{}", "ab".repeat(32));
        assert_eq!(written, text.replace("value: old", &format!("value: {want}")));
        promotion.version.image.digest.clear();
        let refused = crate::deployer::update_for(reader, &promotion).expect_err("no digest");
        assert!(refused.to_string().contains("{digest}"), "{refused}");
    }
}
