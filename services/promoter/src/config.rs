//! The promoter service's configuration: the shared sections, the pipeline (stages, policies,
//! people: [`pipeline`]), the apps with their GitOps targets and the write-back settings
//! (`[gitops]`), and GitHub's API for stages in PR mode (`[github]`). Loaded by
//! [`slipway_runtime::config::load`] (defaults → TOML → `SLIPWAY_*` env).

pub use pipeline::{AppConfig, GitopsTarget, PipelineConfig, Policy, StageConfig, TargetKind};
pub use slipway_promoter_core::pipeline;

use std::net::SocketAddr;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use slipway_runtime::config::{
    AdminConfig, DatabaseConfig, NatsConfig, Secret, TelemetryConfig, Validate, resolve_secret,
};
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
    /// The admin gRPC API (`[admin_api]`); off unless `admin_api.listen` is set.
    pub admin_api: AdminApiConfig,
    /// The health gate: what is watched in Kubernetes for each app × stage (`[health]`).
    pub health: crate::health::HealthConfig,
    /// GitHub's API, for stages in PR mode (`[github]`).
    pub github: GithubConfig,
    /// `[catalog]`: apps and pipelines from the app catalog in NATS instead of `[[apps]]`
    /// and `[pipeline]` (whose `tick_secs` still applies).
    pub catalog: CatalogConfig,
}

/// `[catalog]`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CatalogConfig {
    /// Apps, pipelines, teams and admins come from the catalog revision in force (which
    /// ingest publishes), followed live.
    pub enabled: bool,
}

/// `[gitops]`: the write-back's local state and commit identity.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GitopsConfig {
    /// Cached clones live here.
    pub work_dir: PathBuf,
    /// Longest an update may be held back to share a commit with later ones; 0 (the default)
    /// is off. Either way the writer commits in groups: an idle writer commits at once, and
    /// what arrives while a push is in flight goes into the next commit together. A delay only
    /// buys fewer commits, at the cost of latency. `batch_window_ms` is the old name.
    #[serde(alias = "batch_window_ms")]
    pub max_batch_delay_ms: u64,
    pub author_name: String,
    pub author_email: String,
}

impl Default for GitopsConfig {
    fn default() -> Self {
        Self {
            work_dir: PathBuf::from("/var/lib/slipway/promoter"),
            max_batch_delay_ms: 0,
            author_name: "Slipway".to_owned(),
            author_email: "slipway@localhost".to_owned(),
        }
    }
}

/// `[github]`: where PR-mode stages open pull requests, and the token they do it with.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GithubConfig {
    /// The REST API root; an Enterprise server's is `https://<host>/api/v3`.
    pub api_url: String,
    /// A token allowed to push branches and open pull requests; or `token_file`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token: Option<Secret>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token_file: Option<PathBuf>,
}

impl GithubConfig {
    /// The web root commits are linked under: github.com for the public API, the Enterprise
    /// server's own host otherwise.
    pub fn web_url(&self) -> String {
        let api = self.api_url.trim_end_matches('/');
        if api == "https://api.github.com" {
            return "https://github.com".to_owned();
        }
        api.strip_suffix("/api/v3").unwrap_or(api).to_owned()
    }
}

impl Default for GithubConfig {
    fn default() -> Self {
        Self { api_url: "https://api.github.com".to_owned(), token: None, token_file: None }
    }
}

impl GithubConfig {
    /// The token, read from `token_file` when given that way.
    pub fn token(&self) -> slipway_runtime::Result<Option<Secret>> {
        resolve_secret(self.token.as_ref(), self.token_file.as_deref(), "github.token")
    }

    /// Only checked when some stage is in PR mode: then the apps must name their GitHub
    /// repository and a token must be configured.
    fn validate(&self, config: &Config) -> slipway_runtime::Result<()> {
        use slipway_runtime::config::invalid;
        if !(self.api_url.starts_with("https://") || self.api_url.starts_with("http://")) {
            return Err(invalid("github.api_url", "must be an http(s) URL"));
        }
        if !config.pipeline.stages.iter().any(|s| s.pull_request) {
            return Ok(());
        }
        if self.token.is_none() && self.token_file.is_none() {
            return Err(invalid("github.token", "a stage has pull_request = true, which needs a token"));
        }
        if self.token.is_some() && self.token_file.is_some() {
            return Err(invalid("github.token", "set either github.token or github.token_file, not both"));
        }
        if let Some(i) = config.apps.iter().position(|a| a.gitops.github_repository.is_none()) {
            let key = format!("apps[{i}].gitops.github_repository");
            return Err(invalid(&key, "a stage has pull_request = true, which needs the GitHub repository"));
        }
        Ok(())
    }
}

/// `[admin_api]`: the admin gRPC API that slipctl and dashboards call, with bearer tokens
/// configured by their SHA-256 (never the tokens themselves) and optional mTLS.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdminApiConfig {
    /// Where the gRPC server listens (e.g. `127.0.0.1:9443`); no server when unset.
    pub listen: Option<SocketAddr>,
    /// `[[admin_api.tokens]]`: who may call, and with which role.
    pub tokens: Vec<ApiToken>,
    /// `[admin_api.tls]`: serve TLS, and require client certificates when a CA is given.
    pub tls: Option<ApiTls>,
}

/// One bearer token: `{ name, role, sha256 }`. `name` is the actor recorded in the audit log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiToken {
    pub name: String,
    pub role: Role,
    /// Lowercase hex SHA-256 of the token (`printf %s "$TOKEN" | sha256sum`).
    pub sha256: String,
}

/// What a token may do; each role includes the ones before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// List apps and runs, watch events.
    Viewer,
    /// Also approve and reject.
    Approver,
    /// Also promote, roll back, hold and release.
    Operator,
    /// Also promote inside a freeze window.
    Admin,
}

/// PEM files of the admin API's TLS.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiTls {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
    /// When set, clients must present a certificate signed by this CA (mTLS).
    pub client_ca_file: Option<PathBuf>,
}

impl AdminApiConfig {
    fn validate(&self) -> slipway_runtime::Result<()> {
        use slipway_runtime::config::invalid;
        if self.listen.is_some() && self.tokens.is_empty() {
            return Err(invalid("admin_api.tokens", "no token is configured, so nobody could call the API"));
        }
        let mut seen = std::collections::HashSet::new();
        for (i, token) in self.tokens.iter().enumerate() {
            if token.name.trim().is_empty() {
                return Err(invalid(&format!("admin_api.tokens[{i}].name"), "must not be empty"));
            }
            if token.sha256.len() != 64 || !token.sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(invalid(&format!("admin_api.tokens[{i}].sha256"), "must be 64 hex digits"));
            }
            if !seen.insert(token.sha256.to_ascii_lowercase()) {
                return Err(invalid(&format!("admin_api.tokens[{i}].sha256"), "the same hash is listed twice"));
            }
        }
        Ok(())
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
            admin_api: AdminApiConfig::default(),
            health: crate::health::HealthConfig::default(),
            github: GithubConfig::default(),
            catalog: CatalogConfig::default(),
        }
    }
}

impl Validate for Config {
    fn validate(&self) -> slipway_runtime::Result<()> {
        self.nats.validate()?;
        self.database.validate()?;
        self.admin.validate()?;
        self.telemetry.validate()?;
        let config_error = |e: pipeline::Invalid| slipway_runtime::Error::Config(e.to_string());
        self.pipeline.validate().map_err(config_error)?;
        pipeline::validate_apps(&self.apps).map_err(config_error)?;
        if self.catalog.enabled && (!self.apps.is_empty() || !self.pipeline.stages.is_empty()) {
            return Err(slipway_runtime::config::invalid(
                "catalog.enabled",
                "apps and pipelines come from the catalog: remove [[apps]] and [[pipeline.stages]]",
            ));
        }
        self.admin_api.validate()?;
        self.health.validate(&self.pipeline)?;
        self.github.validate(self)?;
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

#[cfg(test)]
mod pipeline_tests {
    use slipway_mesh::names::EnvName;

    fn parse(toml: &str) -> Result<crate::Config, String> {
        use figment::providers::{Format, Toml};
        let config: crate::Config =
            figment::Figment::from(figment::providers::Serialized::defaults(crate::Config::default()))
                .merge(Toml::string(toml))
                .extract()
                .map_err(|e| e.to_string())?;
        slipway_runtime::config::Validate::validate(&config).map_err(|e| e.to_string())?;
        Ok(config)
    }

    const GOOD: &str = r#"
        [pipeline]
        admins = ["root"]
        teams = { sre = ["carol"] }
        [[pipeline.stages]]
        name = "dev"
        policy = "auto"
        [[pipeline.stages]]
        name = "prod"
        policy = "approval"
        approvals = 2
        approvers = ["alice"]
        teams = ["sre"]
        four_eyes = true
        soak_secs = 600
        required_gates = ["ci"]
        auto_rollback = true
        [[pipeline.stages.freeze]]
        days = ["fri"]
        start = "16:00"
        end = "23:59"
        time_zone = "Europe/Berlin"
        [[apps]]
        name = "writer"
        gitops = { repository = "git://h/gitops", path = "envs/{stage}/values.yaml", kind = "helm" }
    "#;

    #[test]
    fn a_full_pipeline_parses_and_people_resolve() {
        let config = parse(GOOD).expect("valid");
        let (index, prod) = config.pipeline.stage("prod").expect("prod");
        assert_eq!((index, prod.approvals, prod.watch_window_secs), (1, 2, 900));
        assert!(config.pipeline.may_act(prod, "carol") && config.pipeline.may_act(prod, "ROOT"));
        assert!(!config.pipeline.may_act(prod, "mallory"));
        let app = config.app("writer").expect("app");
        assert_eq!(app.gitops.tag_key, "image.tag");
        let stage = EnvName::parse("prod").expect("env");
        assert_eq!(app.gitops.path_for(&app.name, &stage), "envs/prod/values.yaml");
    }

    #[test]
    fn pr_mode_needs_a_token_and_the_github_repository() {
        let pr = GOOD.replace("auto_rollback = true", "auto_rollback = true\n        pull_request = true");
        assert!(parse(&pr).unwrap_err().contains("pipeline.stages[1].auto_rollback"));
        let pr = pr.replace("auto_rollback = true", "auto_rollback = false");
        assert!(parse(&pr).unwrap_err().contains("github.token"));
        let pr = format!("[github]\ntoken = \"t\"\n{pr}");
        assert!(parse(&pr).unwrap_err().contains("apps[0].gitops.github_repository"));
        let named = pr.replace("kind = \"helm\"", "kind = \"helm\", github_repository = \"acme/gitops\"");
        let config = parse(&named).expect("valid");
        assert!(config.pipeline.stage("prod").expect("prod").1.pull_request);
        assert_eq!(config.github.api_url, "https://api.github.com");
        assert_eq!(config.github.web_url(), "https://github.com");
        let enterprise =
            super::GithubConfig { api_url: "https://git.example/api/v3/".into(), ..super::GithubConfig::default() };
        assert_eq!(enterprise.web_url(), "https://git.example");
        assert_eq!(config.github.token().expect("token").expect("set").expose(), "t");
        let bad = named.replace("acme/gitops", "acme");
        assert!(parse(&bad).unwrap_err().contains("apps[0].gitops.github_repository"));
    }

    #[test]
    fn errors_name_the_key() {
        let typo = GOOD.replace("four_eyes", "four_eye");
        assert!(parse(&typo).unwrap_err().contains("four_eye"));
        let bad_team = GOOD.replace("teams = [\"sre\"]", "teams = [\"ops\"]");
        assert!(parse(&bad_team).unwrap_err().contains("pipeline.stages[1].teams"));
        let bad_zone = GOOD.replace("Europe/Berlin", "Mars/Olympus");
        assert!(parse(&bad_zone).unwrap_err().contains("pipeline.stages[1].freeze[0]: time_zone"));
        let no_approvers = GOOD.replace("approvers = [\"alice\"]\n        teams = [\"sre\"]", "");
        assert!(parse(&no_approvers).unwrap_err().contains("pipeline.stages[1].approvers"));
        let escape = GOOD.replace("envs/{stage}", "../{stage}");
        assert!(parse(&escape).unwrap_err().contains("apps[0].gitops.path"));
    }
}
