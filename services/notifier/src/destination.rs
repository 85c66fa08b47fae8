//! Destinations: a name, a provider, and the secrets to reach it (webhook URLs and tokens,
//! given inline or as `*_file` paths). A resolved [`Destination`] holds the secrets as
//! [`Secret`]s, which never print; [`Destination::redact`] scrubs them out of any text (a
//! remote's error body, a client error) before it reaches a log line or an event.

use serde::{Deserialize, Serialize};
use slipway_runtime::config::{Secret, invalid, resolve_secret};
use std::path::PathBuf;
use std::time::Duration;

/// The kinds of remote the notifier can post to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Provider {
    /// Slack incoming webhook (Block Kit).
    Slack,
    /// Microsoft Teams incoming webhook (MessageCard).
    Teams,
    /// Discord webhook (`content` + embeds).
    Discord,
    /// Any HTTP endpoint: the event as JSON, signed (see [`crate::providers::webhook`]).
    Webhook,
    /// GitHub's REST API: commit statuses, deployment statuses, PR comments.
    Github,
}

impl Provider {
    /// The lowercase name used in config, metrics and events.
    pub fn as_str(self) -> &'static str {
        match self {
            Provider::Slack => "slack",
            Provider::Teams => "teams",
            Provider::Discord => "discord",
            Provider::Webhook => "webhook",
            Provider::Github => "github",
        }
    }
}

/// One `[[destinations]]` entry as written.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DestinationConfig {
    /// Unique name routes refer to: `[a-z0-9_-]{1,63}`.
    pub name: String,
    /// Which kind of remote.
    pub provider: Provider,
    /// Webhook URL (Slack, Teams, Discord, webhook) or API base (GitHub, default
    /// `https://api.github.com`). A secret: incoming-webhook URLs carry their token.
    #[serde(default)]
    pub url: Option<Secret>,
    /// A file holding `url`.
    #[serde(default)]
    pub url_file: Option<PathBuf>,
    /// API token (GitHub; sent as a bearer token).
    #[serde(default)]
    pub token: Option<Secret>,
    /// A file holding `token`.
    #[serde(default)]
    pub token_file: Option<PathBuf>,
    /// Key of the generic webhook's HMAC signature.
    #[serde(default)]
    pub signing_secret: Option<Secret>,
    /// A file holding `signing_secret`.
    #[serde(default)]
    pub signing_secret_file: Option<PathBuf>,
    /// GitHub: the repository for events that do not name one (`owner/name`).
    #[serde(default)]
    pub repository: Option<String>,
    /// Posts per second at most (0 = no limit).
    #[serde(default)]
    pub rate_limit_per_sec: f64,
    /// Timeout of one post.
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
}

fn default_timeout_ms() -> u64 {
    10_000
}

/// A destination with its secrets read.
#[derive(Debug, Clone)]
pub struct Destination {
    /// Name.
    pub name: String,
    /// Provider.
    pub provider: Provider,
    /// URL (webhook) or API base (GitHub), without a trailing `/`.
    pub url: Secret,
    /// Bearer token (GitHub).
    pub token: Option<Secret>,
    /// HMAC key (webhook).
    pub signing_secret: Option<Secret>,
    /// Fallback repository (GitHub).
    pub repository: Option<String>,
    /// Posts per second (0 = unlimited).
    pub rate_limit_per_sec: f64,
    /// Timeout of one post.
    pub timeout: Duration,
}

const GITHUB_API: &str = "https://api.github.com";

impl Destination {
    /// Reads the secrets of `cfg` and checks it; `key` is its config path (`destinations[0]`).
    pub fn resolve(cfg: &DestinationConfig, key: &str) -> slipway_runtime::Result<Self> {
        let k = |field: &str| format!("{key}.{field}");
        let valid_name = !cfg.name.is_empty()
            && cfg.name.len() <= 63
            && cfg.name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
        if !valid_name {
            return Err(invalid(&k("name"), format_args!("{:?} must be 1 to 63 of [a-z0-9_-]", cfg.name)));
        }
        let url = resolve_secret(cfg.url.as_ref(), cfg.url_file.as_deref(), &k("url"))?;
        let token = resolve_secret(cfg.token.as_ref(), cfg.token_file.as_deref(), &k("token"))?;
        let signing_secret =
            resolve_secret(cfg.signing_secret.as_ref(), cfg.signing_secret_file.as_deref(), &k("signing_secret"))?;
        let url = match (cfg.provider, url) {
            (_, Some(url)) => url,
            (Provider::Github, None) => Secret::new(GITHUB_API),
            (_, None) => return Err(invalid(&k("url"), "is required (or url_file)")),
        };
        // The URL is a secret: say what is wrong with it, never what it is.
        let scheme_ok = url.expose().starts_with("https://") || url.expose().starts_with("http://");
        if !scheme_ok || url.expose().chars().any(char::is_whitespace) {
            return Err(invalid(&k("url"), "must be an http:// or https:// URL without spaces"));
        }
        if cfg.provider == Provider::Github && token.is_none() {
            return Err(invalid(&k("token"), "is required for provider github (or token_file)"));
        }
        if cfg.provider == Provider::Webhook && signing_secret.as_ref().is_none_or(|s| s.expose().is_empty()) {
            return Err(invalid(&k("signing_secret"), "is required for provider webhook (or signing_secret_file)"));
        }
        if let Some(repo) = &cfg.repository {
            slipway_mesh::names::RepoName::parse(repo).map_err(|e| invalid(&k("repository"), e))?;
        }
        if !cfg.rate_limit_per_sec.is_finite() || cfg.rate_limit_per_sec < 0.0 {
            return Err(invalid(&k("rate_limit_per_sec"), "must be 0 (no limit) or a positive number"));
        }
        if cfg.timeout_ms == 0 {
            return Err(invalid(&k("timeout_ms"), "must be greater than 0"));
        }
        Ok(Self {
            name: cfg.name.clone(),
            provider: cfg.provider,
            url: Secret::new(url.expose().trim_end_matches('/')),
            token,
            signing_secret,
            repository: cfg.repository.clone(),
            rate_limit_per_sec: cfg.rate_limit_per_sec,
            timeout: Duration::from_millis(cfg.timeout_ms),
        })
    }

    /// `text` with every secret of this destination replaced by `<redacted>`; also cut to
    /// 300 characters, since it may be a remote's error page.
    pub fn redact(&self, text: &str) -> String {
        scrub(text, &self.secret_fragments())
    }
}

fn scrub(text: &str, fragments: &[String]) -> String {
    let mut out = text.to_owned();
    for s in fragments {
        out = out.replace(s.as_str(), "<redacted>");
    }
    if out.chars().count() > 300 {
        out = out.chars().take(300).collect::<String>() + "…";
    }
    out
}

/// Scrubs the secrets of every destination (and any other secret) out of a text: a remote
/// may echo anything back, even another destination's token.
#[derive(Debug, Clone, Default)]
pub struct Redactor {
    fragments: Vec<String>,
}

impl Redactor {
    /// A redactor for all of `destinations` plus `others`.
    pub fn new(destinations: &[Destination], others: &[&Secret]) -> Self {
        let mut fragments: Vec<String> = destinations.iter().flat_map(Destination::secret_fragments).collect();
        fragments.extend(others.iter().map(|s| s.expose().to_owned()).filter(|s| s.len() >= 8));
        fragments.sort_by_key(|s| std::cmp::Reverse(s.len()));
        fragments.dedup();
        Self { fragments }
    }

    /// `text` with every known secret replaced by `<redacted>`, cut to 300 characters.
    pub fn redact(&self, text: &str) -> String {
        scrub(text, &self.fragments)
    }
}

impl Destination {
    /// Every text worth scrubbing, longest first: the secrets, and for the URL also its path
    /// and each long path segment or query value (a remote may echo just its path back).
    fn secret_fragments(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for s in [self.token.as_ref(), self.signing_secret.as_ref()].into_iter().flatten() {
            out.push(s.expose().to_owned());
        }
        let url = self.url.expose();
        // The API base of GitHub is public; nothing in it to hide.
        if url != GITHUB_API {
            out.push(url.to_owned());
            let after_scheme = url.split_once("://").map_or(url, |(_, rest)| rest);
            if let Some(slash) = after_scheme.find('/') {
                let path = &after_scheme[slash..];
                out.push(path.to_owned());
                out.extend(path.split(['/', '?', '&', '=', '#']).map(str::to_owned));
            }
        }
        // Short pieces (`api`, `services`) are not secret and would mangle every message.
        out.retain(|s| s.len() >= 8);
        out.sort_by_key(|s| std::cmp::Reverse(s.len()));
        out.dedup();
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redact_scrubs_every_secret() {
        let cfg = DestinationConfig {
            name: "d".into(),
            provider: Provider::Webhook,
            url: Some(Secret::new("https://example.test/hook/abcdefghij")),
            url_file: None,
            token: Some(Secret::new("tok-123456789")),
            token_file: None,
            signing_secret: Some(Secret::new("sign-987654321")),
            signing_secret_file: None,
            repository: None,
            rate_limit_per_sec: 0.0,
            timeout_ms: 1000,
        };
        let d = Destination::resolve(&cfg, "destinations[0]").expect("valid");
        let text = "POST https://example.test/hook/abcdefghij failed; token tok-123456789 key sign-987654321; \
                    no hook /hook/abcdefghij; id abcdefghij";
        let r = d.redact(text);
        assert!(!r.contains("abcdefghij") && !r.contains("tok-123456789") && !r.contains("sign-987654321"), "{r}");
        assert!(format!("{d:?}").contains("<redacted>"));
    }
}
