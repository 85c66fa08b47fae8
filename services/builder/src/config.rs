//! The builder service's configuration: the shared sections, loaded by
//! [`slipway_runtime::config::load`] (defaults → TOML → `SLIPWAY_*` env).

use serde::{Deserialize, Serialize};
use slipway_runtime::config::{AdminConfig, DatabaseConfig, NatsConfig, TelemetryConfig, Validate};
use slipway_runtime::service::ServiceConfig;

/// Everything the builder service reads from its configuration.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// NATS connection and stream settings.
    pub nats: NatsConfig,
    /// PostgreSQL (schema `builder` by default).
    pub database: DatabaseConfig,
    /// Admin HTTP listener (`/healthz`, `/readyz`, `/metrics`).
    pub admin: AdminConfig,
    /// Logs and traces.
    pub telemetry: TelemetryConfig,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            nats: NatsConfig::default(),
            database: DatabaseConfig::with_schema("builder"),
            admin: AdminConfig { listen: ([127, 0, 0, 1], 9102).into() },
            telemetry: TelemetryConfig::default(),
        }
    }
}

impl Validate for Config {
    fn validate(&self) -> slipway_runtime::Result<()> {
        self.nats.validate()?;
        self.database.validate()?;
        self.admin.validate()?;
        self.telemetry.validate()
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
