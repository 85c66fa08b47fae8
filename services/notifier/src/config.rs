//! The notifier service's configuration: the shared sections plus the callback listener, the
//! destinations (where messages go, with their secrets), the routing rules (which events go
//! where, with which template) and the retry policy. Loaded by
//! [`slipway_runtime::config::load`] (defaults → TOML → `SLIPWAY_*` env), then validated with
//! errors that name the key (`destinations[1].url: ...`) and never contain a secret.

use crate::destination::{Destination, DestinationConfig};
use crate::routing::{RouteConfig, Router};
use serde::{Deserialize, Serialize};
use slipway_runtime::config::{
    AdminConfig, DatabaseConfig, NatsConfig, Secret, TelemetryConfig, Validate, invalid, resolve_secret,
};
use slipway_runtime::service::ServiceConfig;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// Everything the notifier service reads from its configuration.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// NATS connection and stream settings.
    pub nats: NatsConfig,
    /// PostgreSQL (schema `notifier` by default).
    pub database: DatabaseConfig,
    /// Admin HTTP listener (`/healthz`, `/readyz`, `/metrics`, `/dlq`).
    pub admin: AdminConfig,
    /// Logs and traces.
    pub telemetry: TelemetryConfig,
    /// The public listener Slack posts interactivity callbacks to.
    pub http: HttpConfig,
    /// Slack interactivity (Approve / Reject buttons).
    pub slack: SlackConfig,
    /// Where messages can go.
    pub destinations: Vec<DestinationConfig>,
    /// Which events go to which destinations.
    pub routes: Vec<RouteConfig>,
    /// How often and how patiently a failed post is retried.
    pub retry: RetryConfig,
    /// Events handled at once by this replica.
    pub concurrency: usize,
    /// `[catalog]`: route by the teams of the app catalog in force (`routes[].teams`).
    pub catalog: CatalogConfig,
}

/// `[catalog]`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CatalogConfig {
    /// Follow the catalog revision ingest publishes, for the team of each event's app.
    pub enabled: bool,
}

/// The callback listener.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    /// Address for `POST /slack/interactions`.
    pub listen: SocketAddr,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self { listen: ([127, 0, 0, 1], 8084).into() }
    }
}

/// Slack app settings for interactive messages.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SlackConfig {
    /// The app's signing secret; callbacks are refused while none is set.
    pub signing_secret: Option<Secret>,
    /// A file holding the signing secret.
    pub signing_secret_file: Option<PathBuf>,
    /// Slack user id → the actor name approvals are checked against (a GitHub login);
    /// users not listed act under their Slack username.
    pub actors: BTreeMap<String, String>,
}

impl SlackConfig {
    /// The signing secret from the value or the file.
    pub fn signing_secret(&self) -> slipway_runtime::Result<Option<Secret>> {
        resolve_secret(self.signing_secret.as_ref(), self.signing_secret_file.as_deref(), "slack.signing_secret")
    }
}

/// Retries of one post: exponential backoff from `base_ms`, capped at `max_ms`, with full
/// jitter; a `Retry-After` from the remote wins when it is longer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetryConfig {
    /// Attempts in all (1 = no retry).
    pub attempts: u32,
    /// Delay before the second attempt.
    pub base_ms: u64,
    /// Largest delay between attempts (also caps `Retry-After`).
    pub max_ms: u64,
}

impl Default for RetryConfig {
    fn default() -> Self {
        Self { attempts: 5, base_ms: 500, max_ms: 60_000 }
    }
}

impl RetryConfig {
    /// The backoff before attempt `next` (2 = the first retry), before jitter: base·2^(next-2).
    pub fn backoff(&self, next: u32) -> Duration {
        let exp = next.saturating_sub(2).min(20);
        Duration::from_millis(self.base_ms.saturating_mul(1u64 << exp).min(self.max_ms))
    }
}

impl Default for Config {
    fn default() -> Self {
        Self {
            nats: NatsConfig::default(),
            database: DatabaseConfig::with_schema("notifier"),
            admin: AdminConfig { listen: ([127, 0, 0, 1], 9104).into() },
            telemetry: TelemetryConfig::default(),
            http: HttpConfig::default(),
            slack: SlackConfig::default(),
            destinations: Vec::new(),
            routes: Vec::new(),
            retry: RetryConfig::default(),
            concurrency: 16,
            catalog: CatalogConfig::default(),
        }
    }
}

impl Config {
    /// The destinations with their secrets read (from values or files).
    pub fn resolve_destinations(&self) -> slipway_runtime::Result<Vec<Destination>> {
        self.destinations
            .iter()
            .enumerate()
            .map(|(i, d)| Destination::resolve(d, &format!("destinations[{i}]")))
            .collect()
    }

    /// The compiled routing rules.
    pub fn router(&self) -> slipway_runtime::Result<Router> {
        let names: Vec<&str> = self.destinations.iter().map(|d| d.name.as_str()).collect();
        Router::new(&self.routes, &names)
    }
}

impl Validate for Config {
    fn validate(&self) -> slipway_runtime::Result<()> {
        self.nats.validate()?;
        self.database.validate()?;
        self.admin.validate()?;
        self.telemetry.validate()?;
        if let Some(s) = self.slack.signing_secret()?
            && s.expose().is_empty()
        {
            return Err(invalid("slack.signing_secret", "must not be empty"));
        }
        let destinations = self.resolve_destinations()?;
        for (i, d) in destinations.iter().enumerate() {
            if destinations[..i].iter().any(|o| o.name == d.name) {
                return Err(invalid(&format!("destinations[{i}].name"), format_args!("{:?} is used twice", d.name)));
            }
        }
        self.router()?;
        if self.retry.attempts == 0 {
            return Err(invalid("retry.attempts", "must be at least 1"));
        }
        if self.retry.base_ms == 0 {
            return Err(invalid("retry.base_ms", "must be greater than 0"));
        }
        if self.retry.max_ms < self.retry.base_ms {
            return Err(invalid("retry.max_ms", "must be at least retry.base_ms"));
        }
        if self.concurrency == 0 {
            return Err(invalid("concurrency", "must be at least 1"));
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
mod tests {
    use super::*;

    fn parse(toml: &str) -> slipway_runtime::Result<Config> {
        use figment::providers::{Format, Serialized, Toml};
        let c: Config = figment::Figment::from(Serialized::defaults(Config::default()))
            .merge(Toml::string(toml))
            .extract()
            .map_err(|e| slipway_runtime::Error::Config(e.to_string()))?;
        c.validate()?;
        Ok(c)
    }

    const SLACK: &str = "https://hooks.slack.com/services/T000/B000/XXXXSECRETXXXX";

    #[test]
    fn a_full_config_loads() {
        let c = parse(&format!(
            r#"
            [[destinations]]
            name = "team"
            provider = "slack"
            url = "{SLACK}"
            rate_limit_per_sec = 1.0
            [[destinations]]
            name = "gh"
            provider = "github"
            token = "ghp_x"
            repository = "acme/mono"
            [[routes]]
            events = ["build.*", "io.slipway.promotion.failed.v1"]
            apps = ["writer"]
            min_severity = "warning"
            destinations = ["team", "gh"]
            template = "{{{{ kind }}}} {{{{ app }}}}"
            [retry]
            attempts = 3
            "#
        ))
        .expect("valid");
        assert_eq!(c.destinations.len(), 2);
        assert_eq!(c.retry.attempts, 3);
    }

    #[test]
    fn errors_name_the_key_and_hide_the_secret() {
        let cases = [
            (
                format!("[[destinations]]\nname = \"a\"\nprovider = \"slack\"\nurl = \"ftp://{SLACK}\""),
                "destinations[0].url",
            ),
            ("[[destinations]]\nname = \"a\"\nprovider = \"slack\"".to_owned(), "destinations[0].url"),
            ("[[destinations]]\nname = \"a\"\nprovider = \"github\"".to_owned(), "destinations[0].token"),
            (
                "[[destinations]]\nname = \"a\"\nprovider = \"webhook\"\nurl = \"http://x\"".to_owned(),
                "destinations[0].signing_secret",
            ),
            (
                format!(
                    "[[destinations]]\nname = \"a\"\nprovider = \"slack\"\nurl = \"{SLACK}\"\nrate_limit_per_sec = -1.0"
                ),
                "destinations[0].rate_limit_per_sec",
            ),
            ("[[routes]]\ndestinations = [\"nope\"]".to_owned(), "routes[0].destinations"),
            (
                format!(
                    "[[destinations]]\nname = \"a\"\nprovider = \"slack\"\nurl = \"{SLACK}\"\n[[routes]]\nevents = [\"biuld.failed\"]\ndestinations = [\"a\"]"
                ),
                "routes[0].events[0]",
            ),
            (
                format!(
                    "[[destinations]]\nname = \"a\"\nprovider = \"slack\"\nurl = \"{SLACK}\"\n[[routes]]\ndestinations = [\"a\"]\ntemplate = \"{{{{ oops\""
                ),
                "routes[0].template",
            ),
            ("[retry]\nattempts = 0".to_owned(), "retry.attempts"),
        ];
        for (toml, key) in cases {
            let err = parse(&toml).expect_err(&toml).to_string();
            assert!(err.contains(key), "{err} does not name {key}");
            assert!(!err.contains("XXXXSECRETXXXX"), "secret leaked: {err}");
        }
    }

    #[test]
    fn unknown_keys_are_refused() {
        let err = parse("[[destinations]]\nname = \"a\"\nprovider = \"slack\"\nurll = \"x\"").expect_err("unknown");
        assert!(err.to_string().contains("urll"), "{err}");
        assert!(parse("[[destinations]]\nname = \"a\"\nprovider = \"pager\"\nurl = \"http://x\"").is_err());
    }

    #[test]
    fn backoff_doubles_and_caps() {
        let r = RetryConfig { attempts: 5, base_ms: 100, max_ms: 1000 };
        assert_eq!(r.backoff(2), Duration::from_millis(100));
        assert_eq!(r.backoff(3), Duration::from_millis(200));
        assert_eq!(r.backoff(6), Duration::from_millis(1000));
    }
}
