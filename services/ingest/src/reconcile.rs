//! The redelivery reconciler: GitHub never retries a failed webhook delivery by itself, so
//! when configured (API token and hook) ingest lists the hook's recent deliveries through
//! GitHub's REST API and asks for a redelivery of every one that failed and that ingest never
//! accepted. One replica at a time does this (a PostgreSQL advisory lock per cycle).
//!
//! API: `GET {api}/{hook}/deliveries?per_page=100` (pages through `Link: rel="next"`) and
//! `POST {api}/{hook}/deliveries/{id}/attempts`, where `hook` is `repos/<owner>/<repo>/hooks/<id>`
//! or `orgs/<org>/hooks/<id>`.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use slipway_runtime::config::Secret;
use sqlx::PgPool;
use std::collections::{BTreeMap, HashSet};
use std::path::PathBuf;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

use crate::error::{Error, Result};

/// A request to GitHub that did not get an answer (connection, TLS, a body that is not JSON).
fn api(e: reqwest::Error) -> Error {
    Error::GitHub(e.to_string())
}

/// GitHub keeps deliveries redeliverable for 3 days; stay inside that with a margin.
pub const REDELIVERY_WINDOW: Duration = Duration::from_secs(71 * 3600);
/// Arbitrary key of the advisory lock that makes one replica the reconciler.
const LOCK_KEY: i64 = 0x5117_0a7e_de11_7e12;

/// `[github.reconcile]`: off unless `hook` is set.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ReconcileConfig {
    /// `repos/<owner>/<repo>/hooks/<id>` or `orgs/<org>/hooks/<id>`; empty disables it.
    pub hook: String,
    /// GitHub API base URL (GitHub Enterprise has its own).
    pub api_url: String,
    /// API token with `admin:repo_hook` (or `admin:org_hook`).
    pub token: Option<Secret>,
    /// A file holding the token.
    pub token_file: Option<PathBuf>,
    /// Seconds between cycles.
    pub interval_secs: u64,
    /// Redeliveries asked for per cycle at most.
    pub max_per_cycle: usize,
}

impl Default for ReconcileConfig {
    fn default() -> Self {
        Self {
            hook: String::new(),
            api_url: "https://api.github.com".into(),
            token: None,
            token_file: None,
            interval_secs: 300,
            max_per_cycle: 50,
        }
    }
}

impl ReconcileConfig {
    /// Checks the hook path's shape; returns `Ok(None)` when the reconciler is off.
    pub fn validated(&self) -> slipway_runtime::Result<Option<Secret>> {
        if self.hook.is_empty() {
            return Ok(None);
        }
        let parts: Vec<&str> = self.hook.split('/').collect();
        let plain = |s: &str| {
            !s.is_empty() && !s.starts_with('.') && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
        };
        let shape_ok = match parts.as_slice() {
            ["repos", owner, repo, "hooks", id] => plain(owner) && plain(repo) && id.parse::<u64>().is_ok(),
            ["orgs", org, "hooks", id] => plain(org) && id.parse::<u64>().is_ok(),
            _ => false,
        };
        if !shape_ok {
            return Err(slipway_runtime::config::invalid(
                "github.reconcile.hook",
                "must be repos/<owner>/<repo>/hooks/<id> or orgs/<org>/hooks/<id>",
            ));
        }
        if !(self.api_url.starts_with("https://") || self.api_url.starts_with("http://")) {
            return Err(slipway_runtime::config::invalid("github.reconcile.api_url", "must be an http(s) URL"));
        }
        let token = slipway_runtime::config::resolve_secret(
            self.token.as_ref(),
            self.token_file.as_deref(),
            "github.reconcile.token",
        )?;
        token.map(Some).ok_or_else(|| {
            slipway_runtime::config::invalid("github.reconcile.token", "required when github.reconcile.hook is set")
        })
    }
}

/// One attempt as GitHub lists it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct HookDelivery {
    /// The attempt's id (what a redelivery is asked for).
    pub id: u64,
    /// The delivery's GUID, shared by its redeliveries (`X-GitHub-Delivery`).
    pub guid: String,
    /// When GitHub sent it.
    pub delivered_at: DateTime<Utc>,
    /// Our answer's status; 0 when there was none (timeout, refused).
    #[serde(default)]
    pub status_code: u16,
}

/// The attempts to redeliver: for each GUID with no 2xx attempt and not accepted by ingest,
/// its latest attempt, if still inside the redelivery window; oldest first, at most `max`.
pub fn to_redeliver(attempts: &[HookDelivery], accepted: &HashSet<String>, now: DateTime<Utc>, max: usize) -> Vec<u64> {
    let mut by_guid: BTreeMap<&str, Vec<&HookDelivery>> = BTreeMap::new();
    for a in attempts {
        by_guid.entry(a.guid.as_str()).or_default().push(a);
    }
    let window = chrono::Duration::from_std(REDELIVERY_WINDOW).unwrap_or_else(|_| chrono::Duration::hours(71));
    let mut wanted: Vec<&HookDelivery> = by_guid
        .into_iter()
        .filter(|(guid, tries)| !accepted.contains(*guid) && !tries.iter().any(|t| (200..300).contains(&t.status_code)))
        .filter_map(|(_, tries)| tries.into_iter().max_by_key(|t| (t.delivered_at, t.id)))
        .filter(|latest| now - latest.delivered_at < window)
        .collect();
    wanted.sort_by_key(|t| (t.delivered_at, t.id));
    wanted.into_iter().take(max).map(|t| t.id).collect()
}

/// The reconciler's client and state.
pub struct Reconciler {
    config: ReconcileConfig,
    token: Secret,
    http: reqwest::Client,
    pool: PgPool,
}

impl Reconciler {
    /// A reconciler for `config` (already validated) with `token`.
    pub fn new(config: ReconcileConfig, token: Secret, pool: PgPool) -> Self {
        let http = reqwest::Client::builder()
            .user_agent("slipway-ingest")
            .timeout(Duration::from_secs(30))
            .build()
            .unwrap_or_default();
        Self { config, token, http, pool }
    }

    fn url(&self, tail: &str) -> String {
        format!("{}/{}/{tail}", self.config.api_url.trim_end_matches('/'), self.config.hook)
    }

    fn get(&self, url: &str) -> reqwest::RequestBuilder {
        self.http
            .get(url)
            .bearer_auth(self.token.expose())
            .header("accept", "application/vnd.github+json")
            .header("x-github-api-version", "2022-11-28")
    }

    /// Lists attempts newest first until they are older than the window (or 10 pages).
    async fn list(&self, now: DateTime<Utc>) -> Result<Vec<HookDelivery>> {
        let mut url = Some(self.url("deliveries?per_page=100"));
        let mut all = Vec::new();
        for _ in 0..10 {
            let Some(page_url) = url.take() else { break };
            let resp = self.get(&page_url).send().await.map_err(api)?;
            if !resp.status().is_success() {
                return Err(Error::GitHub(format!("listing deliveries: HTTP {}", resp.status())));
            }
            url = next_link(resp.headers().get("link").and_then(|v| v.to_str().ok()));
            let page: Vec<HookDelivery> = resp.json().await.map_err(api)?;
            let old = page.iter().any(|d| now - d.delivered_at > chrono::Duration::hours(72));
            all.extend(page);
            if old {
                break;
            }
        }
        Ok(all)
    }

    /// One cycle; returns the attempt ids it asked GitHub to redeliver.
    pub async fn cycle(&self, now: DateTime<Utc>) -> Result<Vec<u64>> {
        let mut lock = self.pool.acquire().await?;
        let mine: bool =
            sqlx::query_scalar("SELECT pg_try_advisory_lock($1)").bind(LOCK_KEY).fetch_one(&mut *lock).await?;
        if !mine {
            return Ok(Vec::new());
        }
        let result = self.cycle_locked(now).await;
        let _ = sqlx::query("SELECT pg_advisory_unlock($1)").bind(LOCK_KEY).execute(&mut *lock).await;
        result
    }

    async fn cycle_locked(&self, now: DateTime<Utc>) -> Result<Vec<u64>> {
        let attempts = self.list(now).await?;
        let guids: Vec<String> = attempts.iter().map(|a| a.guid.clone()).collect();
        let accepted: HashSet<String> =
            sqlx::query_scalar::<_, String>("SELECT delivery_id FROM github_deliveries WHERE delivery_id = ANY($1)")
                .bind(&guids)
                .fetch_all(&self.pool)
                .await?
                .into_iter()
                .collect();
        let ids = to_redeliver(&attempts, &accepted, now, self.config.max_per_cycle);
        for id in &ids {
            let resp = self
                .http
                .post(self.url(&format!("deliveries/{id}/attempts")))
                .bearer_auth(self.token.expose())
                .header("accept", "application/vnd.github+json")
                .header("x-github-api-version", "2022-11-28")
                .send()
                .await
                .map_err(api)?;
            if !resp.status().is_success() {
                return Err(Error::GitHub(format!("redelivery of {id}: HTTP {}", resp.status())));
            }
            metrics::counter!("slipway_ingest_redeliveries_requested_total").increment(1);
        }
        Ok(ids)
    }

    /// Runs a cycle every `interval_secs` until `shutdown`.
    pub async fn run(self, shutdown: CancellationToken) {
        let mut every = tokio::time::interval(Duration::from_secs(self.config.interval_secs.max(10)));
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                _ = every.tick() => match self.cycle(Utc::now()).await {
                    Ok(ids) if !ids.is_empty() => tracing::info!(count = ids.len(), "asked GitHub to redeliver failed deliveries"),
                    Ok(_) => {}
                    Err(e) => tracing::warn!(error = %e, "redelivery reconciler cycle failed"),
                },
            }
        }
    }
}

/// The `rel="next"` URL of a GitHub `Link` header.
fn next_link(link: Option<&str>) -> Option<String> {
    link?.split(',').find_map(|part| {
        let (url, rel) = part.split_once(';')?;
        rel.contains("rel=\"next\"").then(|| url.trim().trim_start_matches('<').trim_end_matches('>').to_owned())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attempt(id: u64, guid: &str, hours_ago: i64, status: u16) -> HookDelivery {
        HookDelivery {
            id,
            guid: guid.into(),
            delivered_at: Utc::now() - chrono::Duration::hours(hours_ago),
            status_code: status,
        }
    }

    #[test]
    fn only_failed_unaccepted_recent_deliveries_are_redelivered() {
        let attempts = vec![
            attempt(1, "a", 5, 502),
            attempt(2, "a", 4, 0),
            attempt(3, "b", 3, 500),
            attempt(4, "b", 2, 200),
            attempt(5, "c", 2, 504),
            attempt(6, "d", 80, 500),
            attempt(7, "e", 1, 401),
        ];
        let accepted: HashSet<String> = ["c".to_owned()].into();
        assert_eq!(to_redeliver(&attempts, &accepted, Utc::now(), 10), vec![2, 7]);
        assert_eq!(to_redeliver(&attempts, &accepted, Utc::now(), 1), vec![2]);
    }

    #[test]
    fn link_header() {
        let h = r#"<https://api.github.com/x?cursor=v1_2>; rel="next", <https://api.github.com/x>; rel="first""#;
        assert_eq!(next_link(Some(h)).as_deref(), Some("https://api.github.com/x?cursor=v1_2"));
        assert_eq!(next_link(Some(r#"<https://a>; rel="prev""#)), None);
        assert_eq!(next_link(None), None);
    }

    #[test]
    fn hook_paths_are_checked() {
        let mut c = ReconcileConfig { hook: "repos/acme/mono/hooks/12".into(), ..Default::default() };
        assert!(c.validated().is_err(), "token missing");
        c.token = Some(Secret::new("t"));
        assert!(c.validated().expect("valid").is_some());
        c.hook = "repos/acme/../hooks/12".into();
        assert!(c.validated().is_err());
        c.hook = "orgs/acme/hooks/x".into();
        assert!(c.validated().is_err());
    }
}
