//! Secret values (database URLs with passwords, tokens) that never reach a log line.
//!
//! A [`Secret`] prints and serializes as `<redacted>`. It is read from a config value or from a
//! file named by a sibling `*_file` key ([`resolve_secret`]), which is how Kubernetes mounts
//! secrets. Secret defaults must stay unset: defaults reach figment through `Serialize`, which
//! only ever writes the placeholder, and deserializing the placeholder is refused so such a
//! mistake fails loudly instead of connecting with the password `<redacted>`.

use std::fmt;
use std::path::Path;

use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize, Serializer};

use super::invalid;
use crate::Result;

const REDACTED: &str = "<redacted>";

/// A string that must not be logged. Use [`Secret::expose`] only where the value is consumed.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The secret value itself, for handing to the client that needs it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl From<String> for Secret {
    fn from(value: String) -> Self {
        Self(value)
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

impl Serialize for Secret {
    fn serialize<S: Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        serializer.serialize_str(REDACTED)
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> std::result::Result<Self, D::Error> {
        deserializer.deserialize_any(SecretVisitor)
    }
}

/// Accepts any scalar: figment parses environment values, so a numeric password arrives as a
/// number rather than a string.
struct SecretVisitor;

impl SecretVisitor {
    fn accept<E: de::Error>(value: String) -> std::result::Result<Secret, E> {
        if value == REDACTED {
            // Only a serialized default can produce this; see the module doc.
            return Err(E::custom("got the redaction placeholder; secret defaults must be left unset"));
        }
        Ok(Secret(value))
    }
}

impl Visitor<'_> for SecretVisitor {
    type Value = Secret;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a secret string")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> std::result::Result<Secret, E> {
        Self::accept(v.to_owned())
    }

    fn visit_string<E: de::Error>(self, v: String) -> std::result::Result<Secret, E> {
        Self::accept(v)
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> std::result::Result<Secret, E> {
        Self::accept(v.to_string())
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> std::result::Result<Secret, E> {
        Self::accept(v.to_string())
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> std::result::Result<Secret, E> {
        Self::accept(v.to_string())
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> std::result::Result<Secret, E> {
        Self::accept(v.to_string())
    }
}

/// Resolves a secret given either inline (`key`) or as a file (`key_file`).
///
/// Returns `None` when neither is set. The file's trailing newline (which editors and
/// `kubectl create secret --from-file` leave behind) is removed. Errors name the key and the
/// path, never the content.
pub fn resolve_secret(value: Option<&Secret>, file: Option<&Path>, key: &str) -> Result<Option<Secret>> {
    match (value, file) {
        (Some(_), Some(_)) => Err(invalid(key, format_args!("set either {key} or {key}_file, not both"))),
        (Some(value), None) => Ok(Some(value.clone())),
        (None, Some(path)) => read_secret_file(path, key).map(Some),
        (None, None) => Ok(None),
    }
}

fn read_secret_file(path: &Path, key: &str) -> Result<Secret> {
    let file_key = format!("{key}_file");
    let content = std::fs::read_to_string(path)
        .map_err(|e| invalid(&file_key, format_args!("cannot read {}: {e}", path.display())))?;
    let value = content.trim_end_matches(['\n', '\r']);
    if value.is_empty() {
        return Err(invalid(&file_key, format_args!("{} is empty", path.display())));
    }
    Ok(Secret(value.to_owned()))
}
