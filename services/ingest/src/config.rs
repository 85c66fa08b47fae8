//! The ingest service's configuration: the shared sections plus the webhook listener,
//! GitHub secrets, the spool directory and the monorepo's apps. Loaded by
//! [`slipway_runtime::config::load`] (defaults → TOML → `SLIPWAY_*` env).

use crate::apps::AppRule;
use serde::{Deserialize, Serialize};
use slipway_runtime::config::{
    AdminConfig, DatabaseConfig, NatsConfig, Secret, TelemetryConfig, Validate, invalid, resolve_secret,
};
use slipway_runtime::service::ServiceConfig;
use std::net::SocketAddr;
use std::path::PathBuf;

/// Everything the ingest service reads from its configuration.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// NATS connection and stream settings.
    pub nats: NatsConfig,
    /// PostgreSQL (schema `ingest` by default).
    pub database: DatabaseConfig,
    /// Admin HTTP listener (`/healthz`, `/readyz`, `/metrics`).
    pub admin: AdminConfig,
    /// Logs and traces.
    pub telemetry: TelemetryConfig,
    /// The public listener GitHub posts to.
    pub http: HttpConfig,
    /// Webhook verification.
    pub github: GithubConfig,
    /// Where accepted events wait while NATS is unreachable.
    pub spool: SpoolConfig,
    /// The chat bot endpoint `POST /chatops`.
    pub chatops: ChatopsConfig,
    /// How much of a push its event carries (the rest stays in the kept original).
    pub events: crate::cut::EventCaps,
    /// Where the app catalog lives (`[catalog]`); when set, `apps` stays empty.
    pub catalog: crate::catalog::CatalogConfig,
    /// The monorepo's apps and their paths, for a setup without a catalog.
    pub apps: Vec<AppRule>,
}

/// The webhook listener.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    /// Address for `POST /webhooks/github`.
    pub listen: SocketAddr,
    /// How long a whole request body may take to arrive (408 and the connection closed after),
    /// so a client trickling or stalling its body cannot hold a connection and buffer forever.
    pub body_timeout_ms: u64,
    /// How long a request's headers may take to arrive (the connection is closed after), so a
    /// client trickling its headers (slowloris) cannot hold a connection either.
    pub header_timeout_ms: u64,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self { listen: ([127, 0, 0, 1], 8080).into(), body_timeout_ms: 30_000, header_timeout_ms: 10_000 }
    }
}

/// GitHub webhook settings.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GithubConfig {
    /// Active webhook secrets; several during a rotation.
    pub webhook_secrets: Vec<Secret>,
    /// A file with one more secret (a mounted Kubernetes secret).
    pub webhook_secret_file: Option<PathBuf>,
    /// Largest body accepted (GitHub caps payloads at 25 MB).
    pub max_body_bytes: usize,
    /// How long accepted delivery ids are remembered; GitHub allows redelivery for 3 days.
    pub delivery_retention_hours: u64,
    /// Asking GitHub to redeliver failed deliveries (off unless `hook` is set).
    pub reconcile: crate::reconcile::ReconcileConfig,
    /// Which push bodies are kept whole in the originals bucket: `cut` (those whose event
    /// could not carry everything) or `all`.
    pub keep_originals: crate::originals::Keep,
}

impl Default for GithubConfig {
    fn default() -> Self {
        Self {
            webhook_secrets: Vec::new(),
            webhook_secret_file: None,
            max_body_bytes: 25 * 1024 * 1024,
            delivery_retention_hours: 96,
            reconcile: crate::reconcile::ReconcileConfig::default(),
            keep_originals: crate::originals::Keep::default(),
        }
    }
}

impl GithubConfig {
    /// Every active secret, from the list and the file.
    pub fn secrets(&self) -> slipway_runtime::Result<Vec<Secret>> {
        let mut all: Vec<Secret> = self.webhook_secrets.clone();
        if let Some(s) = resolve_secret(None, self.webhook_secret_file.as_deref(), "github.webhook_secret")? {
            all.push(s);
        }
        Ok(all)
    }
}

/// Chat bots' access to `POST /chatops`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ChatopsConfig {
    /// Bearer tokens of the bots; none disables the endpoint.
    pub tokens: Vec<Secret>,
}

/// The on-disk spool.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SpoolConfig {
    /// Directory of spool files; must survive restarts (a volume in Kubernetes).
    pub dir: PathBuf,
}

impl Default for SpoolConfig {
    fn default() -> Self {
        Self { dir: PathBuf::from("/var/lib/slipway/ingest/spool") }
    }
}

impl Default for Config {
    fn default() -> Self {
        Self {
            nats: NatsConfig::default(),
            database: DatabaseConfig::with_schema("ingest"),
            admin: AdminConfig { listen: ([127, 0, 0, 1], 9101).into() },
            telemetry: TelemetryConfig::default(),
            http: HttpConfig::default(),
            github: GithubConfig::default(),
            spool: SpoolConfig::default(),
            chatops: ChatopsConfig::default(),
            events: crate::cut::EventCaps::default(),
            catalog: crate::catalog::CatalogConfig::default(),
            apps: Vec::new(),
        }
    }
}

impl Validate for Config {
    fn validate(&self) -> slipway_runtime::Result<()> {
        self.nats.validate()?;
        self.database.validate()?;
        self.admin.validate()?;
        self.telemetry.validate()?;
        let secrets = self.github.secrets()?;
        if secrets.is_empty() {
            return Err(invalid(
                "github.webhook_secrets",
                "at least one secret is required (or github.webhook_secret_file)",
            ));
        }
        // A blank secret is one anybody can sign with.
        if secrets.iter().any(|s| s.expose().trim().is_empty()) {
            return Err(invalid("github.webhook_secrets", "a secret must not be empty or blank"));
        }
        if self.github.delivery_retention_hours < 72 {
            return Err(invalid(
                "github.delivery_retention_hours",
                "must be at least 72 (GitHub redelivers for 3 days)",
            ));
        }
        if self.http.body_timeout_ms == 0 {
            return Err(invalid("http.body_timeout_ms", "must be greater than 0"));
        }
        if self.http.header_timeout_ms == 0 {
            return Err(invalid("http.header_timeout_ms", "must be greater than 0"));
        }
        if self.github.max_body_bytes == 0 {
            return Err(invalid("github.max_body_bytes", "must be greater than 0"));
        }
        self.events.validate().map_err(|e| invalid("events", e))?;
        crate::apps::AppMatcher::new(&self.apps).map_err(|e| invalid("apps", e))?;
        if self.catalog.enabled() && !self.apps.is_empty() {
            return Err(invalid("apps", "apps are defined in the catalog when [catalog] is set; remove [[apps]]"));
        }
        if self.catalog.repository.is_some() && self.catalog.file.is_some() {
            return Err(invalid("catalog.file", "set catalog.repository or catalog.file, not both"));
        }
        if self.catalog.repository.is_some() && self.catalog.github_repository.is_none() {
            return Err(invalid("catalog.github_repository", "is needed to recognize the catalog's pushes"));
        }
        self.github.reconcile.validated()?;
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
