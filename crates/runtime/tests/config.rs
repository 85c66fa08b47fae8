//! Config loading: defaults → TOML → `SLIPWAY_*` env, key-naming errors, secrets.
//!
//! Every test runs in a `figment::Jail`, which serializes environment access across the test
//! threads and gives each test its own working directory.

// `Jail` closures must return `figment::Error`, which is large; that is not ours to change.
#![allow(clippy::result_large_err)]

use std::path::Path;

use figment::Jail;
use serde::{Deserialize, Serialize};
use slipway_runtime::config::{
    self, AdminConfig, DatabaseConfig, LogFormat, NatsConfig, Secret, TelemetryConfig, Validate,
};

/// Shaped like a service's config: the shared sections plus one field of its own.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct ServiceConfig {
    nats: NatsConfig,
    database: DatabaseConfig,
    admin: AdminConfig,
    telemetry: TelemetryConfig,
    workers: u32,
}

impl Default for ServiceConfig {
    fn default() -> Self {
        Self {
            nats: NatsConfig::default(),
            database: DatabaseConfig::with_schema("testsvc"),
            admin: AdminConfig::default(),
            telemetry: TelemetryConfig::default(),
            workers: 4,
        }
    }
}

impl Validate for ServiceConfig {
    fn validate(&self) -> slipway_runtime::Result<()> {
        self.nats.validate()?;
        self.database.validate()?;
        self.admin.validate()?;
        self.telemetry.validate()?;
        if self.workers == 0 {
            return Err(config::invalid("workers", "must be at least 1"));
        }
        Ok(())
    }
}

fn load(file: Option<&str>) -> Result<ServiceConfig, String> {
    config::load::<ServiceConfig>(file.map(Path::new)).map_err(|e| e.to_string())
}

/// Loading must fail; returns the message.
fn load_err(file: Option<&str>) -> Result<String, figment::Error> {
    match load(file) {
        Ok(cfg) => Err(format!("expected an error, loaded {cfg:?}").into()),
        Err(message) => Ok(message),
    }
}

fn assert_mentions(message: &str, needle: &str) {
    assert!(message.contains(needle), "error {message:?} should mention {needle:?}");
}

#[test]
fn defaults_when_nothing_is_set() {
    Jail::expect_with(|_jail| {
        let cfg = load(None)?;
        assert_eq!(cfg, ServiceConfig::default());
        assert_eq!(cfg.nats.url, "nats://127.0.0.1:4222");
        assert_eq!(cfg.nats.duplicate_window_secs, 86_400);
        assert_eq!(cfg.nats.max_deliver, 10);
        assert_eq!(cfg.admin.listen.to_string(), "127.0.0.1:9090");
        assert_eq!(cfg.telemetry.log_format, LogFormat::Json);
        assert_eq!(cfg.telemetry.filter, "info");
        assert_eq!(cfg.database.schema, "testsvc");
        assert!(cfg.database.url.is_none());
        Ok(())
    });
}

#[test]
fn toml_overrides_defaults() {
    Jail::expect_with(|jail| {
        jail.create_file(
            "slipway.toml",
            r#"
                workers = 8
                [nats]
                url = "tls://nats.example:4222"
                stream_replicas = 3
                [telemetry]
                log_format = "pretty"
                otlp_endpoint = "http://collector:4317"
            "#,
        )?;
        let cfg = load(Some("slipway.toml"))?;
        assert_eq!(cfg.workers, 8);
        assert_eq!(cfg.nats.url, "tls://nats.example:4222");
        assert_eq!(cfg.nats.stream_replicas, 3);
        assert_eq!(cfg.nats.ack_wait_secs, 30, "untouched keys keep their defaults");
        assert_eq!(cfg.telemetry.log_format, LogFormat::Pretty);
        assert_eq!(cfg.telemetry.otlp_endpoint.as_deref(), Some("http://collector:4317"));
        Ok(())
    });
}

#[test]
fn env_overrides_toml_and_slipway_config_names_the_file() {
    Jail::expect_with(|jail| {
        jail.create_file("from-env.toml", "workers = 8\n[nats]\nurl = \"nats://from-file:4222\"\n")?;
        jail.set_env("SLIPWAY_CONFIG", "from-env.toml");
        jail.set_env("SLIPWAY_NATS__URL", "nats://from-env:4222");
        jail.set_env("SLIPWAY_NATS__ACK_WAIT_SECS", "90");
        jail.set_env("SLIPWAY_ADMIN__LISTEN", "0.0.0.0:9191");
        let cfg = load(None)?;
        assert_eq!(cfg.nats.url, "nats://from-env:4222");
        assert_eq!(cfg.nats.ack_wait_secs, 90);
        assert_eq!(cfg.admin.listen.to_string(), "0.0.0.0:9191");
        assert_eq!(cfg.workers, 8, "the file named by SLIPWAY_CONFIG was read");
        Ok(())
    });
}

#[test]
fn a_named_file_that_does_not_exist_is_an_error() {
    Jail::expect_with(|_jail| {
        let message = load_err(Some("missing.toml"))?;
        assert_mentions(&message, "missing.toml");
        Ok(())
    });
}

#[test]
fn unknown_keys_are_errors_naming_the_key() {
    Jail::expect_with(|jail| {
        jail.create_file("typo.toml", "[nats]\nurll = \"nats://x:4222\"\n")?;
        assert_mentions(&load_err(Some("typo.toml"))?, "nats.urll");

        jail.create_file("ok.toml", "")?;
        jail.set_env("SLIPWAY_DATABASE__SCHEME", "x");
        let message = load_err(Some("ok.toml"))?;
        assert_mentions(&message, "database.scheme");
        assert_mentions(&message, "SLIPWAY_DATABASE__SCHEME");
        Ok(())
    });
}

#[test]
fn invalid_values_are_errors_naming_the_key() {
    Jail::expect_with(|jail| {
        jail.create_file("type.toml", "[nats]\nconnect_timeout_ms = \"soon\"\n")?;
        assert_mentions(&load_err(Some("type.toml"))?, "nats.connect_timeout_ms");

        jail.create_file("url.toml", "[nats]\nurl = \"http://nats:4222\"\n")?;
        assert_mentions(&load_err(Some("url.toml"))?, "nats.url");

        jail.create_file("fmt.toml", "[telemetry]\nlog_format = \"xml\"\n")?;
        assert_mentions(&load_err(Some("fmt.toml"))?, "telemetry.log_format");

        jail.set_env("SLIPWAY_DATABASE__SCHEMA", "Bad-Name");
        assert_mentions(&load_err(None)?, "database.schema");
        Ok(())
    });
}

#[test]
fn database_url_comes_from_a_file() {
    Jail::expect_with(|jail| {
        jail.create_file("db-url", "postgres://app:hunter2@db/slipway\n")?;
        jail.set_env("SLIPWAY_DATABASE__URL_FILE", "db-url");
        let cfg = load(None)?;
        let url = cfg.database.url().map_err(|e| e.to_string())?;
        assert_eq!(url.expose(), "postgres://app:hunter2@db/slipway");
        Ok(())
    });
}

#[test]
fn database_url_errors_name_the_key_but_not_the_secret() {
    Jail::expect_with(|jail| {
        let cfg = load(None)?;
        let missing = cfg.database.url().err().map(|e| e.to_string());
        assert_mentions(&missing.unwrap_or_default(), "database.url");

        jail.set_env("SLIPWAY_DATABASE__URL_FILE", "no-such-file");
        let cfg = load(None)?;
        let unreadable = cfg.database.url().err().map(|e| e.to_string());
        let unreadable = unreadable.unwrap_or_default();
        assert_mentions(&unreadable, "database.url_file");
        assert_mentions(&unreadable, "no-such-file");

        jail.set_env("SLIPWAY_DATABASE__URL", "postgres://app:hunter2@db/slipway");
        let both = load_err(None)?;
        assert_mentions(&both, "database.url");
        assert!(!both.contains("hunter2"), "{both}");
        Ok(())
    });
}

#[test]
fn debug_and_serialize_never_show_the_secret() {
    Jail::expect_with(|jail| {
        jail.set_env("SLIPWAY_DATABASE__URL", "postgres://app:hunter2@db/slipway");
        let cfg = load(None)?;
        let url = cfg.database.url().map_err(|e| e.to_string())?;
        assert_eq!(url.expose(), "postgres://app:hunter2@db/slipway");
        for shown in [
            format!("{cfg:?}"),
            format!("{cfg:#?}"),
            format!("{url}"),
            serde_json::to_string(&cfg).map_err(|e| e.to_string())?,
        ] {
            assert!(!shown.contains("hunter2"), "secret leaked: {shown}");
            assert!(shown.contains("<redacted>"), "{shown}");
        }
        Ok(())
    });
}

#[test]
fn a_numeric_secret_from_env_stays_text() {
    Jail::expect_with(|jail| {
        jail.set_env("SLIPWAY_DATABASE__URL", "12345");
        let cfg = load(None)?;
        let url = cfg.database.url().map_err(|e| e.to_string())?;
        assert_eq!(url.expose(), "12345");
        Ok(())
    });
}

#[test]
fn resolve_secret_trims_the_newline_and_rejects_both() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("token");
    std::fs::write(&path, "s3cr3t\r\n")?;

    let from_file = config::resolve_secret(None, Some(&path), "notifier.slack_token")?;
    assert_eq!(from_file.as_ref().map(Secret::expose), Some("s3cr3t"));

    let inline = Secret::new("inline");
    let from_value = config::resolve_secret(Some(&inline), None, "notifier.slack_token")?;
    assert_eq!(from_value, Some(inline.clone()));

    assert_eq!(config::resolve_secret(None, None, "k")?, None);

    let both = config::resolve_secret(Some(&inline), Some(&path), "notifier.slack_token");
    let message = both.err().map(|e| e.to_string()).unwrap_or_default();
    assert_mentions(&message, "notifier.slack_token");
    assert!(!message.contains("s3cr3t") && !message.contains("inline"));
    Ok(())
}
