//! Configuration loading: defaults → TOML file → `SLIPWAY_*` environment, then validation.
//!
//! Each service has one serde struct (with `#[serde(deny_unknown_fields)]`) that nests the
//! shared sections defined here as `nats`, `database`, `admin` and `telemetry`. [`load`] merges
//! the struct's `Default` with an optional TOML file and with environment variables
//! (`SLIPWAY_NATS__URL` sets `nats.url`), then runs [`Validate::validate`]. Every error names
//! the key it is about, so an operator can fix the right line. Secrets are [`Secret`]s, which
//! never print, and can come from a `*_file` key (Kubernetes secret volumes).

mod secret;
mod sections;

use std::fmt::Display;
use std::path::{Path, PathBuf};

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::{Error, Result};

pub use secret::{Secret, resolve_secret};
pub use sections::{AdminConfig, DatabaseConfig, LogFormat, NatsConfig, TelemetryConfig};

/// Prefix of the environment variables that override configuration keys.
pub const ENV_PREFIX: &str = "SLIPWAY_";
/// Environment variable naming the TOML file when no path is passed to [`load`].
pub const CONFIG_FILE_ENV: &str = "SLIPWAY_CONFIG";
/// Separator for nested keys in environment variable names (`SLIPWAY_NATS__URL`).
const ENV_SPLIT: &str = "__";

/// A configuration (or a section of one) that can check itself after loading.
///
/// Errors should be built with [`invalid`] so that they name the offending key.
pub trait Validate {
    /// Checks values that serde cannot: ranges, formats, combinations.
    fn validate(&self) -> Result<()>;
}

/// Builds the error for an invalid value, naming its key (`nats.url: must start with ...`).
pub fn invalid(key: &str, why: impl Display) -> Error {
    Error::Config(format!("{key}: {why}"))
}

/// Loads a service configuration.
///
/// Layers, later ones winning: `T::default()`, the TOML `file` (or the file named by
/// `SLIPWAY_CONFIG` when `file` is `None`), then `SLIPWAY_*` environment variables with `__`
/// separating nesting levels. A named file that does not exist is an error rather than being
/// skipped: a typo in a path must not silently run the service on defaults.
pub fn load<T>(file: Option<&Path>) -> Result<T>
where
    T: DeserializeOwned + Serialize + Default + Validate,
{
    let mut figment = Figment::from(Serialized::defaults(T::default()));
    if let Some(path) = config_file(file) {
        if !path.is_file() {
            return Err(Error::Config(format!("config file {} does not exist", path.display())));
        }
        // `file_exact`, because `Toml::file` searches parent directories for relative paths.
        figment = figment.merge(Toml::file_exact(&path));
    }
    let env = Env::prefixed(ENV_PREFIX).ignore(&["config"]).split(ENV_SPLIT);
    let config: T = figment.merge(env).extract().map_err(from_figment)?;
    config.validate()?;
    Ok(config)
}

/// The TOML file to read: the explicit argument, else `SLIPWAY_CONFIG` when set and non-empty.
fn config_file(file: Option<&Path>) -> Option<PathBuf> {
    match file {
        Some(path) => Some(path.to_owned()),
        None => std::env::var_os(CONFIG_FILE_ENV).filter(|v| !v.is_empty()).map(PathBuf::from),
    }
}

/// Turns figment's (possibly chained) error into one message per problem, each starting with
/// the dotted key path and ending with where the value came from.
fn from_figment(error: figment::Error) -> Error {
    let messages: Vec<String> = error.into_iter().map(|e| describe(&e)).collect();
    Error::Config(messages.join("; "))
}

fn describe(error: &figment::Error) -> String {
    use figment::error::{Kind, OneOf};

    let mut path = error.path.clone();
    let kind = match &error.kind {
        Kind::UnknownField(field, expected) => {
            // Depending on the provider the path ends at the enclosing table or at the field;
            // the field itself is the key the operator has to find.
            if path.last() != Some(field) {
                path.push(field.clone());
            }
            format!("unknown key, expected {}", OneOf(expected))
        }
        // figment's own text wraps the alternatives in a second pair of backticks.
        Kind::UnknownVariant(found, expected) => {
            format!("unknown value `{found}`, expected {}", OneOf(expected))
        }
        other => other.to_string(),
    };
    let key = if path.is_empty() { "<root>".to_owned() } else { path.join(".") };
    format!("{key}: {kind}{}", origin(error, &path))
}

/// Where the bad value came from: the file, or the exact environment variable to look at.
fn origin(error: &figment::Error, path: &[String]) -> String {
    let Some(md) = &error.metadata else {
        return String::new();
    };
    match &md.source {
        Some(source) => format!(" (in {} {source})", md.name),
        None if md.name.contains("environment variable") && !path.is_empty() => {
            let var = path.join(ENV_SPLIT).to_ascii_uppercase();
            format!(" (in environment variable {ENV_PREFIX}{var})")
        }
        None => format!(" (in {})", md.name),
    }
}
