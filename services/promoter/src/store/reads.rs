//! What the admin API and the dashboard read, outside any decision: apps and runs for the
//! status and run listings, and promotions waiting for approval (the dashboard's own reads are
//! in [`super::dashboard`]). Every query the promoter runs lives in the store; its callers get
//! rows as types.

use std::collections::HashSet;

use chrono::{DateTime, Utc};
use sqlx::{PgPool, Row};

use super::run_from;
use crate::domain::{Run, Version};
use crate::error::Result;

/// Every app with a stage row: those the catalog no longer has are shown as removed.
pub async fn known_apps(pool: &PgPool) -> Result<Vec<String>> {
    Ok(sqlx::query_scalar("SELECT DISTINCT app FROM stage_versions ORDER BY app").fetch_all(pool).await?)
}

/// Apps with a pending promotion (in `stage`, or any when empty).
pub async fn apps_pending(pool: &PgPool, stage: &str) -> Result<HashSet<String>> {
    let sql = "SELECT DISTINCT app FROM promotions WHERE state = 'pending' AND ($1 = '' OR stage = $1)";
    let apps: Vec<String> = sqlx::query_scalar(sql).bind(stage).fetch_all(pool).await?;
    Ok(apps.into_iter().collect())
}

/// Ids of `app`'s runs (every app's when empty), newest first, `limit` from `offset`.
pub async fn run_ids(pool: &PgPool, app: &str, limit: i64, offset: i64) -> Result<Vec<String>> {
    let sql = "SELECT id FROM runs WHERE ($1 = '' OR app = $1) ORDER BY started_at DESC, id DESC LIMIT $2 OFFSET $3";
    Ok(sqlx::query_scalar(sql).bind(app).bind(limit).bind(offset).fetch_all(pool).await?)
}

/// A run as the listings show it.
#[derive(Debug, Clone)]
pub struct RunRow {
    pub app: String,
    pub run: Run,
    pub started_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// W3C trace id of the push that started it (empty when unknown).
    pub trace_id: String,
}

/// Run `id`, if there is one.
pub async fn run(pool: &PgPool, id: &str) -> Result<Option<RunRow>> {
    let row = sqlx::query(
        "SELECT app, id, build_id, source_repository, commit_sha, git_ref, author, image_repository, image_tag, \
         image_digest, state, stage, started_at, updated_at, trace_id FROM runs WHERE id = $1",
    )
    .bind(id)
    .fetch_optional(pool)
    .await?;
    let Some(row) = row else { return Ok(None) };
    Ok(Some(RunRow {
        app: row.try_get("app")?,
        run: run_from(&row)?,
        started_at: row.try_get("started_at")?,
        updated_at: row.try_get("updated_at")?,
        trace_id: row.try_get("trace_id")?,
    }))
}

/// One step of a run's timeline.
#[derive(Debug, Clone)]
pub struct TimelineRow {
    pub at: DateTime<Utc>,
    pub stage: Option<String>,
    pub step: String,
    pub actor: String,
    pub detail: String,
}

/// Run `id`'s timeline, oldest first.
pub async fn timeline(pool: &PgPool, id: &str) -> Result<Vec<TimelineRow>> {
    let rows = sqlx::query("SELECT at, stage, step, actor, detail FROM run_timeline WHERE run_id = $1 ORDER BY id")
        .bind(id)
        .fetch_all(pool)
        .await?;
    rows.iter()
        .map(|e| {
            Ok(TimelineRow {
                at: e.try_get("at")?,
                stage: e.try_get("stage")?,
                step: e.try_get("step")?,
                actor: e.try_get("actor")?,
                detail: e.try_get("detail")?,
            })
        })
        .collect()
}

/// A pending promotion with the approvals it has.
#[derive(Debug, Clone)]
pub struct PendingRow {
    pub id: String,
    pub app: String,
    pub stage: String,
    pub version: Version,
    pub waiting_on: String,
    pub created_at: DateTime<Utc>,
    pub approvals: Vec<String>,
}

/// Every pending promotion, oldest first.
pub async fn pending_promotions(pool: &PgPool) -> Result<Vec<PendingRow>> {
    let rows = sqlx::query(
        "SELECT p.id, p.app, p.stage, p.version, p.waiting_on, p.created_at, \
         COALESCE((SELECT array_agg(a.actor ORDER BY a.position) FROM approvals a WHERE a.promotion_id = p.id), \
         '{}') AS approvals FROM promotions p WHERE p.state = 'pending' ORDER BY p.created_at, p.id",
    )
    .fetch_all(pool)
    .await?;
    rows.iter()
        .map(|row| {
            Ok(PendingRow {
                id: row.try_get("id")?,
                app: row.try_get("app")?,
                stage: row.try_get("stage")?,
                version: serde_json::from_value(row.try_get("version")?)?,
                waiting_on: row.try_get("waiting_on")?,
                created_at: row.try_get("created_at")?,
                approvals: row.try_get("approvals")?,
            })
        })
        .collect()
}
