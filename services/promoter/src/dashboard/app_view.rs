//! The app page's data (`GET /api/apps/{app}`): the app's own pipeline from the catalog in
//! force, each stage with what it runs, its health, verification and scan state, its blocker in
//! words, who may act in it, the version waiting there with the commits it brings over the
//! running one, and the stage's version history. Rows come from the [`store`]; this module
//! only puts them together.

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Utc};
use serde::Serialize;
use slipway_mesh::names::AppName;
use slipway_mesh::v1;

use crate::config::{Policy, StageConfig};
use crate::domain::scan_policy::{ScanOutcome, ScanRecord};
use crate::domain::{PromotionState, Version};
use crate::error::{Error, Result};
use crate::promoter::Promoter;
use crate::store::{self, dashboard::Deployed};

/// Versions of each stage's history shown.
const HISTORY_PER_STAGE: i64 = 50;
/// Commits listed between two versions at most.
const MAX_COMMITS: i64 = 200;
/// Builds listed.
const BUILDS: i64 = 10;

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AppView {
    pub app: String,
    pub team: String,
    pub pipeline: String,
    pub removed: bool,
    pub stages: Vec<StageView>,
    pub builds: Vec<BuildView>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StageView {
    pub stage: String,
    /// `auto` or `approval`.
    pub policy: String,
    pub approvals_required: u32,
    pub four_eyes: bool,
    /// Who may approve, reject, hold, roll back and promote here, in words.
    pub may_act: Vec<String>,
    /// The admin API's view of the stage (proto3 JSON).
    pub status: v1::StageStatus,
    pub running: Option<VersionView>,
    pub pending: Option<PendingView>,
    pub verification: String,
    pub scan: String,
    /// Why nothing moves here, in words; empty when nothing blocks.
    pub blocker: String,
    /// Between the running version and the waiting one.
    pub commits: Option<CommitsView>,
    pub history: Vec<HistoryEntry>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct VersionView {
    pub tag: String,
    pub commit: String,
    pub short_commit: String,
    pub repository: String,
    pub digest: String,
    pub url: String,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PendingView {
    pub promotion_id: String,
    pub version: VersionView,
    pub waiting_on: String,
    pub approved_by: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CommitsView {
    /// The walk reached the running version; false when the records end first (or the running
    /// version is not an ancestor of the waiting one, as after a rollback).
    pub complete: bool,
    pub commits: Vec<CommitView>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CommitView {
    pub sha: String,
    pub short_sha: String,
    pub message: String,
    pub author: String,
    pub at: Option<DateTime<Utc>>,
    pub url: String,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct HistoryEntry {
    pub promotion_id: String,
    pub version: VersionView,
    pub trigger: String,
    pub actor: String,
    pub reason: String,
    pub state: String,
    pub deployed_at: DateTime<Utc>,
    /// Until the next version was written, or until now for the one running.
    pub stayed_secs: i64,
    pub current: bool,
    pub rollback: bool,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BuildView {
    pub build_id: String,
    pub tag: String,
    pub short_commit: String,
    pub started_at: DateTime<Utc>,
}

fn short(sha: &str) -> String {
    sha.chars().take(7).collect()
}

fn commit_url(web: &str, repository: &str, sha: &str) -> String {
    if repository.is_empty() || sha.is_empty() { String::new() } else { format!("{web}/{repository}/commit/{sha}") }
}

fn version_view(web: &str, v: &Version) -> VersionView {
    VersionView {
        tag: v.image.tag.clone(),
        commit: v.source.commit_sha.clone(),
        short_commit: short(&v.source.commit_sha),
        repository: v.source.repository.clone(),
        digest: v.image.digest.clone(),
        url: commit_url(web, &v.source.repository, &v.source.commit_sha),
    }
}

/// `approvers`, `team t (members)`, `admins (…)`: who [`may_act`](crate::config::PipelineConfig::may_act).
fn may_act(teams: &BTreeMap<String, Vec<String>>, admins: &[String], stage: &StageConfig) -> Vec<String> {
    let mut who = stage.approvers.clone();
    for team in &stage.teams {
        let members = teams.get(team).map(|m| m.join(", ")).unwrap_or_default();
        who.push(format!("team {team} ({members})"));
    }
    if !admins.is_empty() {
        who.push(format!("admins ({})", admins.join(", ")));
    }
    who
}

fn verification_words(
    cfg: &StageConfig,
    running: Option<&str>,
    step: Option<&store::dashboard::VerificationStep>,
) -> String {
    if cfg.verification.is_empty() {
        return "no checks".into();
    }
    let Some(step) = step.filter(|s| Some(s.promotion_id.as_str()) == running) else {
        return format!("{} checks, not run at this version yet", cfg.verification.len());
    };
    match step.action.as_str() {
        "verify" => "checks running".into(),
        "verified" => "checks passed".into(),
        "verification-failed" => "checks failed".into(),
        _ => "checks inconclusive: a person decides".into(),
    }
}

fn scan_words(digest: &str, scans: &BTreeMap<String, ScanRecord>) -> String {
    if digest.is_empty() {
        return "no digest to scan".into();
    }
    match scans.get(digest).map(|s| &s.outcome) {
        None => "not scanned".into(),
        Some(ScanOutcome::Failed { reason, .. }) => format!("scan failed: {reason}"),
        Some(ScanOutcome::Report(report)) if report.counts.is_empty() => format!("{}: no findings", report.scanner),
        Some(ScanOutcome::Report(report)) => {
            let counts: Vec<String> = report.counts.iter().map(|c| format!("{} {}", c.total, c.severity)).collect();
            format!("{}: {}", report.scanner, counts.join(", "))
        }
    }
}

fn blocker(status: &v1::StageStatus, hold: Option<&crate::domain::Hold>) -> String {
    if let Some(hold) = hold {
        return format!("held by {}: {}", hold.actor, hold.reason);
    }
    if !status.waiting_on.is_empty() {
        return format!("waiting for {}", status.waiting_on);
    }
    if status.health() == v1::Health::Degraded {
        return "degraded".into();
    }
    String::new()
}

/// Each stage's history, newest first, with how long each version stayed.
fn history(
    web: &str,
    rows: Vec<Deployed>,
    running: &HashMap<String, String>,
    now: DateTime<Utc>,
) -> HashMap<String, Vec<HistoryEntry>> {
    let mut out: HashMap<String, Vec<HistoryEntry>> = HashMap::new();
    for row in rows {
        let entries = out.entry(row.stage.clone()).or_default();
        // Rows come newest first: the one before in the list replaced this one.
        let until = entries.last().map_or(now, |next: &HistoryEntry| next.deployed_at);
        let version = VersionView {
            tag: row.tag.clone(),
            short_commit: short(&row.commit),
            url: commit_url(web, &row.repository, &row.commit),
            commit: row.commit,
            repository: row.repository,
            digest: String::new(),
        };
        entries.push(HistoryEntry {
            current: running.get(&row.stage) == Some(&row.promotion_id),
            rollback: row.trigger == "rollback",
            stayed_secs: (until - row.committed_at).num_seconds().max(0),
            promotion_id: row.promotion_id,
            version,
            trigger: row.trigger,
            actor: row.actor,
            reason: row.reason,
            state: row.state,
            deployed_at: row.committed_at,
        });
    }
    out
}

/// The app page of `app`; `web` is the source host commits are linked under.
pub async fn app_view(promoter: &Promoter, app: &str, web: &str) -> Result<AppView> {
    let name = AppName::parse(app)?;
    let listed = promoter.list_apps(&v1::ListAppsRequest { app: app.to_owned(), ..Default::default() }).await?;
    let status = listed.apps.into_iter().next().ok_or_else(|| Error::NotFound(format!("app {app}")))?;
    let in_force = promoter.apps.get();
    let pipeline = in_force.pipeline(app);
    let state = {
        let mut conn = promoter.pool.acquire().await?;
        store::load(&mut conn, &name, &[]).await?
    };
    let pool = &promoter.pool;
    let verifications = store::dashboard::verifications(pool, app).await?;
    let running_ids: HashMap<String, String> = (state.stages.iter())
        .filter_map(|(stage, st)| st.desired_promotion.clone().map(|id| (stage.clone(), id)))
        .collect();
    let mut histories =
        history(web, store::dashboard::stage_history(pool, app, HISTORY_PER_STAGE).await?, &running_ids, Utc::now());
    let digests: Vec<String> = (state.stages.values().filter_map(|s| s.desired.as_ref()))
        .chain(state.promotions.values().map(|p| &p.version))
        .map(|v| v.image.digest.clone())
        .filter(|d| !d.is_empty())
        .collect();
    let scans = store::dashboard::scans(pool, &digests).await?;
    let mut stages = Vec::new();
    for (cfg, st_status) in pipeline.stages.iter().zip(status.stages) {
        let st = state.stages.get(cfg.name.as_str()).cloned().unwrap_or_default();
        let running = st.desired.as_ref().map(|v| version_view(web, v));
        let pending = (state.promotions.values()).find(|p| p.stage == cfg.name && p.state == PromotionState::Pending);
        let commits = match (pending, &st.desired) {
            (Some(p), Some(run)) if p.version.source.repository == run.source.repository => {
                let repo = &run.source.repository;
                let (rows, complete) = store::dashboard::commits_between(
                    pool,
                    repo,
                    &run.source.commit_sha,
                    &p.version.source.commit_sha,
                    MAX_COMMITS,
                )
                .await?;
                let commits = (rows.into_iter())
                    .map(|c| CommitView {
                        short_sha: short(&c.sha),
                        url: commit_url(web, repo, &c.sha),
                        sha: c.sha,
                        message: c.message,
                        author: c.author,
                        at: c.committed_at,
                    })
                    .collect();
                Some(CommitsView { complete, commits })
            }
            _ => None,
        };
        let scanned = pending.map(|p| &p.version).or(st.desired.as_ref()).map(|v| v.image.digest.as_str());
        let step = verifications.iter().find(|v| v.stage == cfg.name.as_str());
        stages.push(StageView {
            stage: cfg.name.to_string(),
            policy: policy_name(cfg.policy).into(),
            approvals_required: if cfg.policy == Policy::Approval { cfg.approvals } else { 0 },
            four_eyes: cfg.four_eyes,
            may_act: may_act(&pipeline.teams, &pipeline.admins, cfg),
            verification: verification_words(cfg, st.desired_promotion.as_deref(), step),
            scan: scan_words(scanned.unwrap_or_default(), &scans),
            blocker: blocker(&st_status, st.hold.as_ref()),
            status: st_status,
            running,
            pending: pending.map(|p| PendingView {
                promotion_id: p.id.clone(),
                version: version_view(web, &p.version),
                waiting_on: p.waiting_on.clone(),
                approved_by: p.approvals.clone(),
            }),
            commits,
            history: histories.remove(cfg.name.as_str()).unwrap_or_default(),
        });
    }
    let builds = (store::dashboard::recent_builds(pool, app, BUILDS).await?.into_iter())
        .map(|b| BuildView {
            build_id: b.build_id,
            tag: b.tag,
            short_commit: short(&b.commit),
            started_at: b.started_at,
        })
        .collect();
    Ok(AppView {
        app: app.to_owned(),
        team: in_force.team(app).to_owned(),
        pipeline: status.pipeline,
        removed: status.removed,
        stages,
        builds,
    })
}

fn policy_name(policy: Policy) -> &'static str {
    match policy {
        Policy::Auto => "auto",
        Policy::Approval => "approval",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Duration;

    fn deployed(id: &str, stage: &str, minutes_ago: i64, trigger: &str, now: DateTime<Utc>) -> Deployed {
        Deployed {
            promotion_id: id.into(),
            stage: stage.into(),
            tag: id.into(),
            commit: "0123456789abcdef".into(),
            repository: "acme/mono".into(),
            trigger: trigger.into(),
            actor: "slipway".into(),
            reason: String::new(),
            state: "healthy".into(),
            committed_at: now - Duration::minutes(minutes_ago),
        }
    }

    #[test]
    fn each_version_stayed_until_the_next_one_was_written() {
        let now = Utc::now();
        // Newest first per stage, as the store returns them.
        let rows = vec![
            deployed("p3", "prod", 10, "rollback", now),
            deployed("p2", "prod", 40, "manual", now),
            deployed("p1", "prod", 100, "auto", now),
            deployed("d1", "dev", 5, "auto", now),
        ];
        let running = HashMap::from([("prod".to_owned(), "p3".to_owned())]);
        let history = history("https://github.com", rows, &running, now);
        let prod: Vec<(&str, i64, bool, bool)> =
            (history["prod"].iter()).map(|h| (h.promotion_id.as_str(), h.stayed_secs, h.current, h.rollback)).collect();
        assert_eq!(prod, [("p3", 600, true, true), ("p2", 1800, false, false), ("p1", 3600, false, false)]);
        assert_eq!(history["dev"][0].stayed_secs, 300);
        assert!(!history["dev"][0].current, "dev runs nothing the state knows of");
        assert_eq!(history["prod"][0].version.url, "https://github.com/acme/mono/commit/0123456789abcdef");
        assert_eq!(history["prod"][0].version.short_commit, "0123456");
    }

    #[test]
    fn the_blocker_in_words() {
        let hold = crate::domain::Hold { actor: "olga".into(), reason: "incident 42".into(), at: Utc::now() };
        let waiting = v1::StageStatus { waiting_on: "approvals: 0/1".into(), ..Default::default() };
        assert_eq!(blocker(&waiting, Some(&hold)), "held by olga: incident 42", "a hold is named first");
        assert_eq!(blocker(&waiting, None), "waiting for approvals: 0/1");
        let degraded = v1::StageStatus { health: v1::Health::Degraded.into(), ..Default::default() };
        assert_eq!(blocker(&degraded, None), "degraded");
        assert_eq!(blocker(&v1::StageStatus::default(), None), "");
    }

    #[test]
    fn who_may_act_names_teams_with_their_members_and_the_admins() {
        let stage: StageConfig = serde_json::from_value(serde_json::json!({
            "name": "prod", "policy": "approval", "approvers": ["bob"], "teams": ["sre", "ghost"],
        }))
        .expect("stage");
        let teams = BTreeMap::from([("sre".to_owned(), vec!["alice".to_owned(), "carl".to_owned()])]);
        let who = may_act(&teams, &["olga".to_owned()], &stage);
        assert_eq!(who, ["bob", "team sre (alice, carl)", "team ghost ()", "admins (olga)"]);
    }
}
