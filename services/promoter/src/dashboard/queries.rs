//! The dashboard's view of the promotions waiting for approval, with who may give it (from
//! the pipeline in force); the rows come from the [`store`].

use std::collections::{BTreeMap, HashSet};

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::config::{Policy, StageConfig};
use crate::error::Result;
use crate::promoter::Promoter;
use crate::store;

/// A promotion waiting in an approval stage, as `/api/approvals` lists it.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
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
    let rows = store::pending_promotions(&promoter.pool).await?;
    let in_force = promoter.apps.get();
    let mut pending = Vec::new();
    for row in rows {
        let pipeline = in_force.pipeline(&row.app);
        let Some((_, cfg)) = pipeline.stage(&row.stage).filter(|(_, s)| s.policy == Policy::Approval) else { continue };
        pending.push(PendingApproval {
            promotion_id: row.id,
            app: row.app,
            stage: row.stage,
            tag: row.version.image.tag,
            commit: row.version.source.commit_sha,
            author: row.version.source.author,
            waiting_on: row.waiting_on,
            since: row.created_at,
            required: cfg.approvals,
            granted: u32::try_from(row.approvals.len()).unwrap_or(u32::MAX),
            approved_by: row.approvals,
            approvers: cfg.approvers.clone(),
            teams: teams(&pipeline.teams, cfg),
            admins: pipeline.admins.clone(),
            four_eyes: cfg.four_eyes,
        });
    }
    Ok(pending)
}

/// Apps with a promotion waiting for `actor`'s approval: in an approval stage `actor` may act
/// in, not approved by them yet, and not their own commit under four-eyes (the domain's rules).
pub async fn waiting_for(promoter: &Promoter, actor: &str) -> Result<HashSet<String>> {
    let rows = store::pending_promotions(&promoter.pool).await?;
    let in_force = promoter.apps.get();
    let mut apps = HashSet::new();
    for row in rows {
        let pipeline = in_force.pipeline(&row.app);
        let Some((_, cfg)) = pipeline.stage(&row.stage).filter(|(_, s)| s.policy == Policy::Approval) else { continue };
        let own = cfg.four_eyes && row.version.source.author.eq_ignore_ascii_case(actor);
        let given = row.approvals.iter().any(|a| a.eq_ignore_ascii_case(actor));
        if pipeline.may_act(cfg, actor) && !own && !given {
            apps.insert(row.app);
        }
    }
    Ok(apps)
}

fn teams(all: &BTreeMap<String, Vec<String>>, stage: &StageConfig) -> BTreeMap<String, Vec<String>> {
    stage.teams.iter().map(|t| (t.clone(), all.get(t).cloned().unwrap_or_default())).collect()
}
