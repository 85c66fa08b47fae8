//! Validated names. Each one can be put into a NATS subject token or a file path without
//! escaping: the grammars leave no room for `.`, `*`, `>`, `/`, whitespace or `..` where those
//! would matter.

use crate::{Error, Result};
use std::fmt;

fn invalid(kind: &'static str, value: &str, reason: &'static str) -> Error {
    let value: String = value.chars().take(80).collect();
    Error::InvalidName { kind, value, reason }
}

/// A DNS label: 1–63 of `[a-z0-9-]`, starting and ending alphanumeric.
fn check_label(kind: &'static str, s: &str) -> Result<()> {
    if s.is_empty() || s.len() > 63 {
        return Err(invalid(kind, s, "must be 1 to 63 characters"));
    }
    if !s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-') {
        return Err(invalid(kind, s, "only a-z, 0-9 and '-' are allowed"));
    }
    if s.starts_with('-') || s.ends_with('-') {
        return Err(invalid(kind, s, "must start and end with a letter or digit"));
    }
    Ok(())
}

macro_rules! name_type {
    ($(#[$doc:meta])* $name:ident, $kind:literal, $check:expr) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            /// What this name is called in error messages.
            pub const KIND: &'static str = $kind;

            /// Parses and validates.
            pub fn parse(s: &str) -> Result<Self> {
                let check: fn(&str) -> Result<()> = $check;
                check(s)?;
                Ok(Self(s.to_owned()))
            }

            /// The validated text.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl TryFrom<String> for $name {
            type Error = Error;
            fn try_from(s: String) -> Result<Self> {
                Self::parse(&s)
            }
        }

        impl std::str::FromStr for $name {
            type Err = Error;
            fn from_str(s: &str) -> Result<Self> {
                Self::parse(s)
            }
        }

        impl From<$name> for String {
            fn from(n: $name) -> String {
                n.0
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({:?})", stringify!($name), self.0)
            }
        }
    };
}

name_type!(
    /// An application of a (mono)repo, e.g. `writer`. A DNS label, so also a subject token.
    AppName,
    "app name",
    |s| check_label("app name", s)
);

name_type!(
    /// An environment / stage, e.g. `dev`, `staging`, `prod`. A DNS label.
    EnvName,
    "environment name",
    |s| check_label("environment name", s)
);

name_type!(
    /// A GitHub repository `owner/name`.
    RepoName,
    "repository",
    check_repo
);

name_type!(
    /// An OCI image tag: `[A-Za-z0-9_][A-Za-z0-9._-]{0,127}`.
    ImageTag,
    "image tag",
    check_tag
);

name_type!(
    /// A full git commit id: 40 (SHA-1) or 64 (SHA-256) lowercase hex digits.
    CommitSha,
    "commit sha",
    check_sha
);

fn check_repo(s: &str) -> Result<()> {
    const KIND: &str = "repository";
    let Some((owner, name)) = s.split_once('/') else {
        return Err(invalid(KIND, s, "must be owner/name"));
    };
    if owner.is_empty() || owner.len() > 39 {
        return Err(invalid(KIND, s, "owner must be 1 to 39 characters"));
    }
    if !owner.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') || owner.starts_with('-') {
        return Err(invalid(KIND, s, "owner allows letters, digits and inner '-'"));
    }
    if name.is_empty() || name.len() > 100 {
        return Err(invalid(KIND, s, "name must be 1 to 100 characters"));
    }
    if !name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-')) {
        return Err(invalid(KIND, s, "name allows letters, digits, '.', '_' and '-'"));
    }
    if name == "." || name.contains("..") {
        return Err(invalid(KIND, s, "name may not be '.' or contain '..'"));
    }
    Ok(())
}

fn check_tag(s: &str) -> Result<()> {
    const KIND: &str = "image tag";
    let bytes = s.as_bytes();
    let Some(&first) = bytes.first() else {
        return Err(invalid(KIND, s, "must not be empty"));
    };
    if bytes.len() > 128 {
        return Err(invalid(KIND, s, "must be at most 128 characters"));
    }
    if !(first.is_ascii_alphanumeric() || first == b'_') {
        return Err(invalid(KIND, s, "must start with a letter, digit or '_'"));
    }
    if !bytes.iter().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-')) {
        return Err(invalid(KIND, s, "only letters, digits, '.', '_' and '-' are allowed"));
    }
    Ok(())
}

fn check_sha(s: &str) -> Result<()> {
    if s.len() != 40 && s.len() != 64 {
        return Err(invalid("commit sha", s, "must be 40 or 64 hex digits"));
    }
    if !s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
        return Err(invalid("commit sha", s, "must be lowercase hex"));
    }
    Ok(())
}

impl RepoName {
    /// The subject token for this repository: lowercased, `/`, `.` and `_` turned into `-`.
    /// Two repositories can share a token; subscribers filter by it, payloads carry the
    /// exact name.
    pub fn token(&self) -> String {
        self.0
            .bytes()
            .map(|b| match b {
                b'/' | b'.' | b'_' => '-',
                b => char::from(b.to_ascii_lowercase()),
            })
            .collect()
    }
}

impl CommitSha {
    /// The first 12 digits, for messages and tags that must stay short.
    pub fn short(&self) -> &str {
        &self.0[..12]
    }
}

/// True when `s` is a valid NATS subject token of Slipway's grammar (`[a-z0-9-]+`).
pub fn is_token(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn labels() {
        assert!(AppName::parse("writer").is_ok());
        assert!(AppName::parse("a-1").is_ok());
        for bad in ["", "-a", "a-", "A", "a.b", "a*", "a>", "a b", "a/b", "..", &"a".repeat(64)] {
            assert!(AppName::parse(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn repos() {
        let r = RepoName::parse("Octo-Org/my_repo.rs").expect("valid");
        assert_eq!(r.token(), "octo-org-my-repo-rs");
        for bad in ["noslash", "/x", "x/", "a/b/c", "a/..", "-a/b", "a/b c", "a/b\n"] {
            assert!(RepoName::parse(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn tags_and_shas() {
        assert!(ImageTag::parse("v1.2.3").is_ok());
        assert!(ImageTag::parse("_x").is_ok());
        for bad in ["", ".x", "-x", "a/b", "a:b", "a\nb", &"a".repeat(129)] {
            assert!(ImageTag::parse(bad).is_err(), "{bad:?} accepted");
        }
        let sha = CommitSha::parse(&"ab".repeat(20)).expect("valid");
        assert_eq!(sha.short(), "abababababab");
        assert!(CommitSha::parse(&"AB".repeat(20)).is_err());
        assert!(CommitSha::parse("abc").is_err());
    }

    #[test]
    fn serde_validates() {
        let ok: AppName = serde_json::from_str("\"writer\"").expect("valid");
        assert_eq!(ok.as_str(), "writer");
        assert!(serde_json::from_str::<AppName>("\"../etc\"").is_err());
    }

    proptest! {
        #[test]
        fn accepted_names_are_safe_tokens(s in "\\PC{0,70}") {
            if let Ok(app) = AppName::parse(&s) {
                prop_assert!(is_token(app.as_str()));
            }
            if let Ok(tag) = ImageTag::parse(&s) {
                prop_assert!(!tag.as_str().contains(['/', '*', '>', ' ', '\n', ':']));
                prop_assert!(!tag.as_str().starts_with('.'));
            }
            if let Ok(repo) = RepoName::parse(&s) {
                prop_assert!(is_token(&repo.token()));
                prop_assert!(!repo.as_str().contains(".."));
            }
        }
    }
}
