//! The config sections every service shares: `nats`, `database`, `admin`, `telemetry`.
//!
//! Each is a field of a service's config struct under exactly that name, so their
//! [`Validate`] impls name keys as `nats.url`, `database.schema`, and so on.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::{Secret, Validate, invalid, resolve_secret};
use crate::{Error, Result};

/// How to reach NATS and how the JetStream stream and consumers are shaped.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NatsConfig {
    /// Server URL(s), comma separated; `nats://` or `tls://`.
    pub url: String,
    /// Connection name shown by the server (`nats server report connections`).
    pub name: Option<String>,
    /// A `.creds` file (JWT + NKey seed) for decentralised auth.
    pub credentials_file: Option<PathBuf>,
    /// How long the first connection attempt may take.
    pub connect_timeout_ms: u64,
    /// Replicas of the `SLIPWAY` stream (3 in a clustered production setup).
    pub stream_replicas: usize,
    /// The stream's deduplication window. The design wants at least 24 h so that an event
    /// republished after a long outage (outbox relay, ingest spool) is still deduplicated; the
    /// default is exactly that, and validation only rejects zero so tests can shorten it.
    pub duplicate_window_secs: u64,
    /// Deliveries before a message is given up on (`-1` means no limit).
    pub max_deliver: i64,
    /// How long a consumer may hold a message before it is redelivered.
    pub ack_wait_secs: u64,
}

impl Default for NatsConfig {
    fn default() -> Self {
        Self {
            url: "nats://127.0.0.1:4222".to_owned(),
            name: None,
            credentials_file: None,
            connect_timeout_ms: 5000,
            stream_replicas: 1,
            duplicate_window_secs: 24 * 60 * 60,
            max_deliver: 10,
            ack_wait_secs: 30,
        }
    }
}

impl Validate for NatsConfig {
    fn validate(&self) -> Result<()> {
        for url in self.url.split(',').map(str::trim) {
            if !(url.starts_with("nats://") || url.starts_with("tls://")) || url.len() <= 7 {
                return Err(invalid("nats.url", format_args!("{url:?} must start with nats:// or tls://")));
            }
        }
        positive("nats.connect_timeout_ms", self.connect_timeout_ms)?;
        // JetStream allows 1 to 5 replicas.
        if !(1..=5).contains(&self.stream_replicas) {
            return Err(invalid("nats.stream_replicas", "must be between 1 and 5"));
        }
        positive("nats.duplicate_window_secs", self.duplicate_window_secs)?;
        if self.max_deliver == 0 || self.max_deliver < -1 {
            return Err(invalid("nats.max_deliver", "must be -1 (unlimited) or >= 1"));
        }
        positive("nats.ack_wait_secs", self.ack_wait_secs)
    }
}

/// How to reach PostgreSQL. The URL usually carries a password, hence [`Secret`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DatabaseConfig {
    /// `postgres://user:password@host/db`; mutually exclusive with `url_file`.
    pub url: Option<Secret>,
    /// A file holding the URL (a mounted Kubernetes secret).
    pub url_file: Option<PathBuf>,
    /// The service's own schema (its migrations live there); each service sets its default.
    pub schema: String,
    /// Pool size.
    pub max_connections: u32,
    /// How long acquiring a connection may take.
    pub connect_timeout_ms: u64,
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        Self { url: None, url_file: None, schema: String::new(), max_connections: 10, connect_timeout_ms: 5000 }
    }
}

impl DatabaseConfig {
    /// Defaults with the given schema, for a service's `Default` impl.
    pub fn with_schema(schema: impl Into<String>) -> Self {
        Self { schema: schema.into(), ..Self::default() }
    }

    /// The connection URL from `database.url` or the file named by `database.url_file`.
    pub fn url(&self) -> Result<Secret> {
        resolve_secret(self.url.as_ref(), self.url_file.as_deref(), "database.url")?
            .ok_or_else(|| Error::Config("database.url (or database.url_file) is required".to_owned()))
    }
}

impl Validate for DatabaseConfig {
    fn validate(&self) -> Result<()> {
        if self.url.is_some() && self.url_file.is_some() {
            return Err(invalid("database.url", "set either database.url or database.url_file, not both"));
        }
        if !is_identifier(&self.schema) {
            return Err(invalid("database.schema", format_args!("{:?} must match [a-z_][a-z0-9_]*", self.schema)));
        }
        if self.max_connections == 0 {
            return Err(invalid("database.max_connections", "must be at least 1"));
        }
        positive("database.connect_timeout_ms", self.connect_timeout_ms)
    }
}

/// The admin HTTP server (`/healthz`, `/readyz`, `/metrics`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AdminConfig {
    /// Address to listen on; loopback by default so nothing is exposed by accident.
    pub listen: SocketAddr,
}

impl Default for AdminConfig {
    fn default() -> Self {
        Self { listen: SocketAddr::from((Ipv4Addr::LOCALHOST, 9090)) }
    }
}

impl Validate for AdminConfig {
    fn validate(&self) -> Result<()> {
        Ok(())
    }
}

/// Log output format.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// One JSON object per line, for log shippers.
    #[default]
    Json,
    /// Multi-line human-readable output, for a terminal.
    Pretty,
}

/// Logging and trace export.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TelemetryConfig {
    /// Log line format.
    pub log_format: LogFormat,
    /// `tracing` filter directives (`info,slipway_promoter=debug`); `RUST_LOG` overrides it.
    pub filter: String,
    /// OTLP/gRPC collector endpoint (`http://otel-collector:4317`); no export when unset.
    pub otlp_endpoint: Option<String>,
    /// `service.name` of exported spans; the service's own name when unset.
    pub service_name: Option<String>,
}

impl Default for TelemetryConfig {
    fn default() -> Self {
        Self { log_format: LogFormat::Json, filter: "info".to_owned(), otlp_endpoint: None, service_name: None }
    }
}

impl Validate for TelemetryConfig {
    fn validate(&self) -> Result<()> {
        if let Err(e) = tracing_subscriber::EnvFilter::try_new(&self.filter) {
            return Err(invalid("telemetry.filter", e));
        }
        if let Some(endpoint) = &self.otlp_endpoint
            && !(endpoint.starts_with("http://") || endpoint.starts_with("https://"))
        {
            return Err(invalid(
                "telemetry.otlp_endpoint",
                format_args!("{endpoint:?} must start with http:// or https://"),
            ));
        }
        if self.service_name.as_deref().is_some_and(str::is_empty) {
            return Err(invalid("telemetry.service_name", "must not be empty"));
        }
        Ok(())
    }
}

fn positive(key: &str, value: u64) -> Result<()> {
    if value == 0 {
        return Err(invalid(key, "must be greater than 0"));
    }
    Ok(())
}

/// `[a-z_][a-z0-9_]*`: safe to splice into SQL as a schema name without quoting.
fn is_identifier(s: &str) -> bool {
    let mut chars = s.chars();
    chars.next().is_some_and(|c| c.is_ascii_lowercase() || c == '_')
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}
