//! `[health]`: what the health gate watches for each app × stage, and how it reaches the
//! Kubernetes API. Names are templates in which `{app}` and `{stage}` are replaced, so one
//! line covers every app; `[health.stages.<stage>]` overrides the defaults for one stage.
//!
//! ```toml
//! [health]
//! mode = "argocd"      # or "deployment", "rollout" (an Argo Rollouts Rollout); "committed"
//!                      # (healthy once pushed); "external" (nothing watched)
//! argocd = { name = "{app}-{stage}", namespace = "argocd" }
//! [health.stages.dev]
//! mode = "deployment"
//! deployment = { name = "{app}", namespace = "dev" }
//! ```

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use slipway_mesh::names::{AppName, EnvName};
use slipway_runtime::config::invalid;

use crate::config::PipelineConfig;

/// Where a stage's health comes from.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HealthMode {
    /// Reported by someone else on `promotion.healthy/degraded`; nothing is watched.
    #[default]
    External,
    /// The stage's Argo CD `Application`: sync revision, then health.
    ArgoCd,
    /// The `Deployment` rollout in the target namespace (no Argo CD).
    Deployment,
    /// An Argo Rollouts `Rollout`: healthy when Healthy at the promoted image, degraded when
    /// Degraded or aborted; the canary step and weight are reported while it progresses.
    Rollout,
    /// Synced and healthy as soon as the commit is pushed: for GitOps repositories whose
    /// cluster Slipway cannot read, and for the quickstart, which runs no cluster.
    Committed,
}

/// `argocd = { name, namespace }`: the Application of an app × stage.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ArgoTarget {
    pub name: String,
    pub namespace: String,
}

impl Default for ArgoTarget {
    fn default() -> Self {
        Self { name: "{app}-{stage}".to_owned(), namespace: "argocd".to_owned() }
    }
}

/// `deployment = { name, namespace, container }`: the Deployment of an app × stage.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DeploymentTarget {
    pub name: String,
    pub namespace: String,
    /// The container whose image is compared; any container when unset.
    pub container: Option<String>,
}

impl Default for DeploymentTarget {
    fn default() -> Self {
        Self { name: "{app}".to_owned(), namespace: "{stage}".to_owned(), container: None }
    }
}

/// `rollout = { name, namespace }`: the Argo Rollouts `Rollout` of an app × stage.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RolloutTarget {
    pub name: String,
    pub namespace: String,
}

impl Default for RolloutTarget {
    fn default() -> Self {
        Self { name: "{app}".to_owned(), namespace: "{stage}".to_owned() }
    }
}

/// `[health.stages.<stage>]`: what differs for one stage.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StageHealth {
    pub mode: Option<HealthMode>,
    pub watch_window_secs: Option<u64>,
    pub argocd: Option<ArgoTarget>,
    pub deployment: Option<DeploymentTarget>,
    pub rollout: Option<RolloutTarget>,
}

/// `[health]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HealthConfig {
    /// The mode of stages not listed in `stages`.
    pub mode: HealthMode,
    /// The API server, e.g. `http://127.0.0.1:8001` (a `kubectl proxy`, or a test's fake).
    /// Unset: in-cluster service account, else the kubeconfig.
    pub kube_url: Option<String>,
    /// Seconds after the commit by which the stage must be healthy; unset takes the stage's
    /// `pipeline.stages[].watch_window_secs` (15 minutes by default).
    pub watch_window_secs: Option<u64>,
    /// After healthy, keep watching until the window ends and report a later degradation
    /// (which the pipeline answers with a rollback when the stage's policy says so).
    pub follow_after_healthy: bool,
    /// Promotions watched at once by one replica.
    pub max_watches: usize,
    pub argocd: ArgoTarget,
    pub deployment: DeploymentTarget,
    pub rollout: RolloutTarget,
    /// Per-stage overrides, keyed by stage name.
    pub stages: BTreeMap<String, StageHealth>,
}

impl Default for HealthConfig {
    fn default() -> Self {
        Self {
            mode: HealthMode::External,
            kube_url: None,
            watch_window_secs: None,
            follow_after_healthy: true,
            max_watches: 512,
            argocd: ArgoTarget::default(),
            deployment: DeploymentTarget::default(),
            rollout: RolloutTarget::default(),
            stages: BTreeMap::new(),
        }
    }
}

/// The object watched for one promotion.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// Nothing to watch: the pushed commit counts as deployed.
    Commit,
    Application {
        namespace: String,
        name: String,
    },
    Deployment {
        namespace: String,
        name: String,
        container: Option<String>,
    },
    Rollout {
        namespace: String,
        name: String,
    },
}

/// What to watch for one app × stage, and for how long.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WatchPlan {
    pub target: Target,
    pub window: Duration,
}

fn fill(template: &str, app: &AppName, stage: &EnvName) -> String {
    template.replace("{app}", app.as_str()).replace("{stage}", stage.as_str())
}

impl HealthConfig {
    /// True when some stage is watched through Kubernetes.
    pub fn watches_anything(&self) -> bool {
        self.any_mode(|m| matches!(m, HealthMode::ArgoCd | HealthMode::Deployment | HealthMode::Rollout))
    }

    /// True when the promoter reports some stage's health itself (watched or committed).
    pub fn reports_anything(&self) -> bool {
        self.any_mode(|m| m != HealthMode::External)
    }

    fn any_mode(&self, pred: impl Fn(HealthMode) -> bool) -> bool {
        pred(self.mode) || self.stages.values().any(|s| s.mode.is_some_and(&pred))
    }

    /// The mode of `stage`.
    pub fn mode(&self, stage: &str) -> HealthMode {
        self.stages.get(stage).and_then(|s| s.mode).unwrap_or(self.mode)
    }

    /// What to watch for `app` in `stage`; `None` when its health is external.
    pub fn plan(&self, pipeline: &PipelineConfig, app: &AppName, stage: &EnvName) -> Option<WatchPlan> {
        let over = self.stages.get(stage.as_str()).cloned().unwrap_or_default();
        let target = match self.mode(stage.as_str()) {
            HealthMode::External => return None,
            HealthMode::Committed => Target::Commit,
            HealthMode::ArgoCd => {
                let t = over.argocd.unwrap_or_else(|| self.argocd.clone());
                Target::Application { namespace: fill(&t.namespace, app, stage), name: fill(&t.name, app, stage) }
            }
            HealthMode::Deployment => {
                let t = over.deployment.unwrap_or_else(|| self.deployment.clone());
                let container = t.container.map(|c| fill(&c, app, stage));
                Target::Deployment {
                    namespace: fill(&t.namespace, app, stage),
                    name: fill(&t.name, app, stage),
                    container,
                }
            }
            HealthMode::Rollout => {
                let t = over.rollout.unwrap_or_else(|| self.rollout.clone());
                Target::Rollout { namespace: fill(&t.namespace, app, stage), name: fill(&t.name, app, stage) }
            }
        };
        let from_pipeline = pipeline.stage(stage.as_str()).map(|(_, s)| s.watch_window_secs);
        let secs = over.watch_window_secs.or(self.watch_window_secs).or(from_pipeline).unwrap_or(15 * 60);
        Some(WatchPlan { target, window: Duration::from_secs(secs) })
    }

    pub(crate) fn validate(&self, pipeline: &PipelineConfig) -> slipway_runtime::Result<()> {
        if let Some(url) = &self.kube_url {
            let ok = url.parse::<http::Uri>().is_ok_and(|u| matches!(u.scheme_str(), Some("http" | "https")));
            if !ok {
                return Err(invalid("health.kube_url", "must be an http:// or https:// URL"));
            }
        }
        if self.max_watches == 0 {
            return Err(invalid("health.max_watches", "must be at least 1"));
        }
        check_window("health.watch_window_secs", self.watch_window_secs)?;
        check_argo("health.argocd", &self.argocd)?;
        check_deployment("health.deployment", &self.deployment)?;
        check_rollout("health.rollout", &self.rollout)?;
        for (stage, over) in &self.stages {
            let key = |field: &str| format!("health.stages.{stage}.{field}");
            if pipeline.stage(stage).is_none() {
                return Err(invalid(&format!("health.stages.{stage}"), "not a stage of pipeline.stages"));
            }
            check_window(&key("watch_window_secs"), over.watch_window_secs)?;
            over.argocd.as_ref().map(|t| check_argo(&key("argocd"), t)).transpose()?;
            over.deployment.as_ref().map(|t| check_deployment(&key("deployment"), t)).transpose()?;
            over.rollout.as_ref().map(|t| check_rollout(&key("rollout"), t)).transpose()?;
        }
        Ok(())
    }
}

fn check_window(key: &str, secs: Option<u64>) -> slipway_runtime::Result<()> {
    match secs {
        Some(0) => Err(invalid(key, "must be at least 1")),
        _ => Ok(()),
    }
}

/// A name template must be non-empty and use no placeholder but `{app}` and `{stage}`.
fn check_template(key: &str, template: &str) -> slipway_runtime::Result<()> {
    let rest = template.replace("{app}", "a").replace("{stage}", "s");
    if template.is_empty() || rest.contains(['{', '}']) {
        return Err(invalid(key, "must be a non-empty name; {app} and {stage} are replaced"));
    }
    Ok(())
}

fn check_argo(key: &str, t: &ArgoTarget) -> slipway_runtime::Result<()> {
    check_template(&format!("{key}.name"), &t.name)?;
    check_template(&format!("{key}.namespace"), &t.namespace)
}

fn check_deployment(key: &str, t: &DeploymentTarget) -> slipway_runtime::Result<()> {
    check_template(&format!("{key}.name"), &t.name)?;
    check_template(&format!("{key}.namespace"), &t.namespace)?;
    t.container.as_ref().map(|c| check_template(&format!("{key}.container"), c)).transpose()?;
    Ok(())
}

fn check_rollout(key: &str, t: &RolloutTarget) -> slipway_runtime::Result<()> {
    check_template(&format!("{key}.name"), &t.name)?;
    check_template(&format!("{key}.namespace"), &t.namespace)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pipeline() -> PipelineConfig {
        let stage = |name: &str, window: u64| {
            serde_json::from_value(serde_json::json!({ "name": name, "policy": "auto", "watch_window_secs": window }))
                .expect("stage")
        };
        PipelineConfig { stages: vec![stage("dev", 60), stage("prod", 600)], ..PipelineConfig::default() }
    }

    fn names() -> (AppName, EnvName, EnvName) {
        (
            AppName::parse("web").expect("app"),
            EnvName::parse("dev").expect("dev"),
            EnvName::parse("prod").expect("prod"),
        )
    }

    #[test]
    fn templates_and_overrides_resolve_per_app_and_stage() {
        let mut config = HealthConfig { mode: HealthMode::ArgoCd, ..HealthConfig::default() };
        let over = StageHealth {
            mode: Some(HealthMode::Deployment),
            watch_window_secs: Some(5),
            deployment: Some(DeploymentTarget { namespace: "team-{app}".into(), ..DeploymentTarget::default() }),
            ..StageHealth::default()
        };
        config.stages.insert("dev".into(), over);
        let (app, dev, prod) = names();
        let plan = config.plan(&pipeline(), &app, &prod).expect("prod");
        let argo = Target::Application { namespace: "argocd".into(), name: "web-prod".into() };
        assert_eq!(plan, WatchPlan { target: argo, window: Duration::from_secs(600) });
        let plan = config.plan(&pipeline(), &app, &dev).expect("dev");
        let deployment = Target::Deployment { namespace: "team-web".into(), name: "web".into(), container: None };
        assert_eq!(plan, WatchPlan { target: deployment, window: Duration::from_secs(5) });
        assert!(config.watches_anything());
        assert!(HealthConfig::default().plan(&pipeline(), &app, &dev).is_none());
        assert!(!HealthConfig::default().watches_anything());
        assert!(!HealthConfig::default().reports_anything());
    }

    #[test]
    fn committed_mode_needs_no_cluster() {
        let config: HealthConfig = serde_json::from_value(serde_json::json!({ "mode": "committed" })).expect("mode");
        let (app, dev, _) = names();
        assert_eq!(config.plan(&pipeline(), &app, &dev).map(|p| p.target), Some(Target::Commit));
        assert!(config.reports_anything());
        assert!(!config.watches_anything());
    }

    #[test]
    fn errors_name_the_key() {
        let bad_url = HealthConfig { kube_url: Some("127.0.0.1:1".into()), ..HealthConfig::default() };
        assert!(bad_url.validate(&pipeline()).unwrap_err().to_string().contains("health.kube_url"));
        let mut unknown = HealthConfig::default();
        unknown.stages.insert("qa".into(), StageHealth::default());
        assert!(unknown.validate(&pipeline()).unwrap_err().to_string().contains("health.stages.qa"));
        let mut placeholder = HealthConfig::default();
        placeholder.argocd.name = "{application}".into();
        assert!(placeholder.validate(&pipeline()).unwrap_err().to_string().contains("health.argocd.name"));
        let ok = HealthConfig { kube_url: Some("http://127.0.0.1:8001".into()), ..HealthConfig::default() };
        ok.validate(&pipeline()).expect("valid");
    }
}
