//! The promoter service's configuration: the shared sections, the pipeline (stages, policies,
//! people: [`pipeline`]), the apps with their GitOps targets and the write-back settings
//! (`[gitops]`). Loaded by [`slipway_runtime::config::load`] (defaults → TOML → `SLIPWAY_*` env).

pub mod pipeline;

pub use pipeline::{AppConfig, GitopsTarget, PipelineConfig, Policy, StageConfig, TargetKind};

use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use slipway_runtime::config::{AdminConfig, DatabaseConfig, NatsConfig, TelemetryConfig, Validate};
use slipway_runtime::service::ServiceConfig;

/// Everything the promoter service reads from its configuration.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// NATS connection and stream settings.
    pub nats: NatsConfig,
    /// PostgreSQL (schema `promoter` by default).
    pub database: DatabaseConfig,
    /// Admin HTTP listener (`/healthz`, `/readyz`, `/metrics`).
    pub admin: AdminConfig,
    /// Logs and traces.
    pub telemetry: TelemetryConfig,
    /// Stages, policies, admins and teams.
    pub pipeline: PipelineConfig,
    /// The apps this promoter deploys.
    pub apps: Vec<AppConfig>,
    /// How commits are written to the GitOps repositories.
    pub gitops: GitopsConfig,
}

/// `[gitops]`: the write-back's local state and commit identity.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GitopsConfig {
    /// Cached clones live here.
    pub work_dir: PathBuf,
    /// Milliseconds to gather updates for one commit.
    pub batch_window_ms: u64,
    pub author_name: String,
    pub author_email: String,
}

impl Default for GitopsConfig {
    fn default() -> Self {
        Self {
            work_dir: PathBuf::from("/var/lib/slipway/promoter"),
            batch_window_ms: 100,
            author_name: "Slipway".to_owned(),
            author_email: "slipway@localhost".to_owned(),
        }
    }
}

impl Config {
    /// The app called `name`, if configured.
    pub fn app(&self, name: &str) -> Option<&AppConfig> {
        self.apps.iter().find(|a| a.name.as_str() == name)
    }
}

impl Default for Config {
    fn default() -> Self {
        Self {
            nats: NatsConfig::default(),
            database: DatabaseConfig::with_schema("promoter"),
            admin: AdminConfig { listen: ([127, 0, 0, 1], 9103).into() },
            telemetry: TelemetryConfig::default(),
            pipeline: PipelineConfig::default(),
            apps: Vec::new(),
            gitops: GitopsConfig::default(),
        }
    }
}

impl Validate for Config {
    fn validate(&self) -> slipway_runtime::Result<()> {
        self.nats.validate()?;
        self.database.validate()?;
        self.admin.validate()?;
        self.telemetry.validate()?;
        self.pipeline.validate()?;
        pipeline::validate_apps(&self.apps)?;
        if self.gitops.work_dir.as_os_str().is_empty() {
            return Err(slipway_runtime::config::invalid("gitops.work_dir", "must not be empty"));
        }
        Ok(())
    }
}

impl ServiceConfig for Config {
    fn telemetry(&self) -> &TelemetryConfig {
        &self.telemetry
    }

    fn admin(&self) -> &AdminConfig {
        &self.admin
    }
}
