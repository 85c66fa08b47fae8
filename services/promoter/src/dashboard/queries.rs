//! The dashboard's reads of the promoter's tables: the promotions waiting for approval, with
//! who may give it (from the pipeline configuration), and one stage's delivery
//! [`History`](super::delivery::History) (promotions, runs and the audit log's health entries).

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::{PgPool, Row};

use super::delivery::{Deployment, History, Report};
use crate::config::{Policy, StageConfig};
use crate::domain::Version;
use crate::error::Result;
use crate::promoter::Promoter;

/// A promotion waiting in an approval stage, as `/api/approvals` lists it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PendingApproval {
    pub promotion_id: String,
    pub app: String,
    pub stage: String,
    pub tag: String,
    pub commit: String,
    pub author: String,
    /// What it waits on now (`approvals: 0/1`, or a hold, a gate, a freeze).
    pub waiting_on: String,
    pub since: DateTime<Utc>,
    pub required: u32,
    pub granted: u32,
    pub approved_by: Vec<String>,
    /// The stage's approvers, its teams with their members, and the admins: who may approve.
    pub approvers: Vec<String>,
    pub teams: BTreeMap<String, Vec<String>>,
    pub admins: Vec<String>,
    /// The commit's author may not approve it.
    pub four_eyes: bool,
}

/// Promotions waiting in an approval stage, oldest first.
pub async fn pending_approvals(promoter: &Promoter) -> Result<Vec<PendingApproval>> {
    let rows = sqlx::query(
        "SELECT p.id, p.app, p.stage, p.version, p.waiting_on, p.created_at, \
         COALESCE((SELECT array_agg(a.actor ORDER BY a.position) FROM approvals a WHERE a.promotion_id = p.id), \
         '{}') AS approvals FROM promotions p WHERE p.state = 'pending' ORDER BY p.created_at, p.id",
    )
    .fetch_all(&promoter.pool)
    .await?;
    let in_force = promoter.apps.get();
    let mut pending = Vec::new();
    for row in rows {
        let stage: String = row.try_get("stage")?;
        let app: String = row.try_get("app")?;
        let pipeline = in_force.pipeline(&app);
        let Some((_, cfg)) = pipeline.stage(&stage).filter(|(_, s)| s.policy == Policy::Approval) else { continue };
        let version: Version = serde_json::from_value(row.try_get("version")?)?;
        let approved_by: Vec<String> = row.try_get("approvals")?;
        pending.push(PendingApproval {
            promotion_id: row.try_get("id")?,
            app,
            stage,
            tag: version.image.tag,
            commit: version.source.commit_sha,
            author: version.source.author,
            waiting_on: row.try_get("waiting_on")?,
            since: row.try_get("created_at")?,
            required: cfg.approvals,
            granted: u32::try_from(approved_by.len()).unwrap_or(u32::MAX),
            approved_by,
            approvers: cfg.approvers.clone(),
            teams: teams(&pipeline.teams, cfg),
            admins: pipeline.admins.clone(),
            four_eyes: cfg.four_eyes,
        });
    }
    Ok(pending)
}

fn teams(all: &BTreeMap<String, Vec<String>>, stage: &StageConfig) -> BTreeMap<String, Vec<String>> {
    stage.teams.iter().map(|t| (t.clone(), all.get(t).cloned().unwrap_or_default())).collect()
}

/// Promotions written into `app`'s `stage` since `since`, and the health reports about it.
pub async fn delivery_history(pool: &PgPool, app: &str, stage: &str, since: DateTime<Utc>) -> Result<History> {
    let rows = sqlx::query(
        "SELECT p.id, p.trigger, p.committed_at, r.started_at FROM promotions p LEFT JOIN runs r ON r.id = p.run_id \
         WHERE p.app = $1 AND p.stage = $2 AND p.committed_at >= $3",
    )
    .bind(app)
    .bind(stage)
    .bind(since)
    .fetch_all(pool)
    .await?;
    let deployments = rows
        .iter()
        .map(|row| {
            Ok(Deployment {
                promotion_id: row.try_get("id")?,
                rollback: row.try_get::<String, _>("trigger")? == "rollback",
                started: row.try_get("started_at")?,
                deployed: row.try_get("committed_at")?,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    let rows = sqlx::query(
        "SELECT at, action, COALESCE(detail->>'promotion_id', '') AS promotion_id FROM audit_log \
         WHERE app = $1 AND stage = $2 AND action IN ('healthy', 'degraded') AND at >= $3 ORDER BY id",
    )
    .bind(app)
    .bind(stage)
    .bind(since)
    .fetch_all(pool)
    .await?;
    let reports = rows
        .iter()
        .map(|row| {
            Ok(Report {
                promotion_id: row.try_get("promotion_id")?,
                at: row.try_get("at")?,
                healthy: row.try_get::<String, _>("action")? == "healthy",
            })
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(History { deployments, reports })
}
