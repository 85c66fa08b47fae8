//! What the admin API (and any other caller) does with a [`Promoter`]: the commands as plain
//! async functions, and the read views — apps × stages with their versions, runs with their
//! timelines — built as the admin proto's messages.

use futures::{StreamExt as _, TryStreamExt as _};
use slipway_mesh::names::{AppName, EnvName};
use slipway_mesh::v1;

use crate::config::Policy;
use crate::domain::{Command, CommandKind, PromotionState, RunState, Version};
use crate::error::{Error, Result};
use crate::promoter::{Promoter, Reply};
use crate::store;

fn env(stage: &str) -> Result<Option<EnvName>> {
    Ok((!stage.is_empty()).then(|| EnvName::parse(stage)).transpose()?)
}

fn command(kind: CommandKind, actor: &str, stage: &str, reason: &str) -> Result<Command> {
    if actor.is_empty() {
        return Err(Error::InvalidArgument("actor must not be empty".into()));
    }
    Ok(Command {
        kind,
        actor: actor.to_owned(),
        stage: env(stage)?,
        promotion_id: None,
        tag: None,
        version: None,
        reason: reason.to_owned(),
        override_freeze: false,
        override_scan: false,
        repository: String::new(),
        pull_request: 0,
    })
}

fn timestamp(at: chrono::DateTime<chrono::Utc>) -> pbjson_types::Timestamp {
    pbjson_types::Timestamp { seconds: at.timestamp(), nanos: i32::try_from(at.timestamp_subsec_nanos()).unwrap_or(0) }
}

/// Filters of the dashboard's app list that the admin API does not have.
#[derive(Debug, Clone, Default)]
pub struct AppFilter {
    /// Only apps whose name contains this (lowercase).
    pub search: String,
    /// Only these apps, when set (those waiting for the caller, say).
    pub only: Option<std::collections::HashSet<String>>,
}

impl AppFilter {
    fn keeps(&self, name: &str) -> bool {
        name.contains(&self.search) && self.only.as_ref().is_none_or(|only| only.contains(name))
    }
}

/// Apps of a status page read at once, each on a connection of its own.
const PAGE_READS_IN_FLIGHT: usize = 8;

impl Promoter {
    /// Promotes `tag` (or what the previous stage runs) of `app` into `stage`, as `actor`.
    /// Only admins' `override_freeze` and `override_scan` count.
    #[allow(clippy::too_many_arguments)]
    pub async fn promote(
        &self,
        actor: &str,
        app: &str,
        stage: &str,
        tag: &str,
        reason: &str,
        override_freeze: bool,
        override_scan: bool,
    ) -> Result<Reply> {
        let mut cmd = command(CommandKind::Promote, actor, stage, reason)?;
        cmd.tag = (!tag.is_empty()).then(|| tag.to_owned());
        cmd.override_freeze = override_freeze;
        cmd.override_scan = override_scan;
        self.command(Some(app), cmd).await
    }

    /// Approves the promotion `promotion_id` (or the one waiting in `stage`) of `app`.
    pub async fn approve(
        &self,
        actor: &str,
        app: &str,
        stage: &str,
        promotion_id: &str,
        comment: &str,
    ) -> Result<Reply> {
        let mut cmd = command(CommandKind::Approve, actor, stage, comment)?;
        cmd.promotion_id = (!promotion_id.is_empty()).then(|| promotion_id.to_owned());
        self.command(Some(app), cmd).await
    }

    /// Rejects the promotion `promotion_id` (or the one waiting in `stage`); its run fails.
    pub async fn reject(&self, actor: &str, app: &str, stage: &str, promotion_id: &str, reason: &str) -> Result<Reply> {
        let mut cmd = command(CommandKind::Reject, actor, stage, reason)?;
        cmd.promotion_id = (!promotion_id.is_empty()).then(|| promotion_id.to_owned());
        self.command(Some(app), cmd).await
    }

    /// Rolls `app` in `stage` back to `tag` (or its last healthy version) and holds the stage.
    pub async fn rollback(&self, actor: &str, app: &str, stage: &str, tag: &str, reason: &str) -> Result<Reply> {
        let mut cmd = command(CommandKind::Rollback, actor, stage, reason)?;
        cmd.tag = (!tag.is_empty()).then(|| tag.to_owned());
        self.command(Some(app), cmd).await
    }

    /// Holds `app` in `stage` (every stage when empty).
    pub async fn hold(&self, actor: &str, app: &str, stage: &str, reason: &str) -> Result<Reply> {
        self.command(Some(app), command(CommandKind::Hold, actor, stage, reason)?).await
    }

    /// Runs the verification checks of `app` in `stage` again against the version it runs.
    pub async fn verify(&self, actor: &str, app: &str, stage: &str, reason: &str) -> Result<Reply> {
        if stage.is_empty() {
            return Err(Error::InvalidArgument("stage must not be empty".into()));
        }
        self.command(Some(app), command(CommandKind::Verify, actor, stage, reason)?).await
    }

    /// Releases the hold on `app` in `stage` (every stage when empty); waiting promotions go on.
    pub async fn release(&self, actor: &str, app: &str, stage: &str, reason: &str) -> Result<Reply> {
        self.command(Some(app), command(CommandKind::Release, actor, stage, reason)?).await
    }

    /// Apps (all, or the one named) × stages with what they run, holds and waiting approvals,
    /// filtered by team, stage and state, a page at a time (only the page's apps are read).
    pub async fn list_apps(&self, request: &v1::ListAppsRequest) -> Result<v1::ListAppsResponse> {
        self.list_apps_where(request, &AppFilter::default()).await
    }

    /// [`list_apps`](Self::list_apps) with the dashboard's further filters.
    pub async fn list_apps_where(
        &self,
        request: &v1::ListAppsRequest,
        more: &AppFilter,
    ) -> Result<v1::ListAppsResponse> {
        const MAX_PAGE: u32 = 500;
        if request.page_size > MAX_PAGE {
            return Err(Error::InvalidArgument(format!("page_size is at most {MAX_PAGE}")));
        }
        let offset: usize = match request.page_token.as_str() {
            "" => 0,
            token => token.parse().map_err(|_| Error::InvalidArgument(format!("page_token {token:?} is not one")))?,
        };
        if !["", "waiting", "removed"].contains(&request.state.as_str()) {
            return Err(Error::InvalidArgument(format!("state {:?} is not \"waiting\" or \"removed\"", request.state)));
        }
        let in_force = self.apps.get();
        let mut names: Vec<(String, bool)> = in_force.apps.iter().map(|a| (a.name.to_string(), false)).collect();
        if in_force.from_catalog {
            // Apps the catalog no longer has: their history stays, shown as removed.
            let known = store::known_apps(&self.pool).await?;
            names.extend(known.into_iter().filter(|n| in_force.app(n).is_none()).map(|n| (n, true)));
        }
        let waiting = if request.state == "waiting" {
            store::apps_pending(&self.pool, &request.stage).await?
        } else {
            std::collections::HashSet::new()
        };
        names.retain(|(name, removed)| {
            let pipeline = in_force.pipeline(name);
            (request.app.is_empty() || *name == request.app)
                && more.keeps(name)
                && (request.team.is_empty() || in_force.team(name) == request.team)
                && (request.stage.is_empty() || pipeline.stage(&request.stage).is_some() || *removed)
                && match request.state.as_str() {
                    "waiting" => waiting.contains(name),
                    "removed" => *removed,
                    _ => true,
                }
        });
        names.sort();
        if !request.app.is_empty() && names.is_empty() {
            return Err(Error::NotFound(format!("app {}", request.app)));
        }
        let total = names.len();
        let size = if request.page_size == 0 { total } else { request.page_size as usize };
        // The page's apps are read a few at a time, each on its own connection, in order.
        let mut page = Vec::new();
        for (name, removed) in names.iter().skip(offset).take(size) {
            page.extend(AppName::parse(name).ok().map(|name| (name, *removed)));
        }
        let in_force = &in_force;
        let apps: Vec<v1::AppStatus> = futures::stream::iter(page.into_iter().map(|(name, removed)| async move {
            let mut status = self.app_status(&name).await?;
            status.pipeline = in_force.pipeline_name(name.as_str()).to_owned();
            status.removed = removed;
            Ok::<_, Error>(status)
        }))
        .buffered(PAGE_READS_IN_FLIGHT)
        .try_collect()
        .await?;
        let next = offset.saturating_add(size);
        Ok(v1::ListAppsResponse {
            stages: in_force.stage_names(),
            apps,
            next_page_token: if next < total { next.to_string() } else { String::new() },
            total: u32::try_from(total).unwrap_or(u32::MAX),
        })
    }

    async fn app_status(&self, app: &AppName) -> Result<v1::AppStatus> {
        let mut conn = self.pool.acquire().await?;
        let state = store::load(&mut conn, app, &[]).await?;
        let mut stages = Vec::new();
        let pipeline = self.apps.get().pipeline(app.as_str());
        for cfg in &pipeline.stages {
            let st = state.stages.get(cfg.name.as_str()).cloned().unwrap_or_default();
            let desired = st.desired_promotion.as_ref().and_then(|id| state.promotions.get(id));
            let health = match desired.map(|p| p.state) {
                None => v1::Health::Unknown,
                Some(PromotionState::Healthy) => v1::Health::Healthy,
                Some(PromotionState::Degraded | PromotionState::RolledBack) => v1::Health::Degraded,
                Some(_) => v1::Health::Progressing,
            };
            let pending =
                (state.promotions.values()).find(|p| p.stage == cfg.name && p.state == PromotionState::Pending);
            let waiting = pending.filter(|_| cfg.policy == Policy::Approval);
            stages.push(v1::StageStatus {
                stage: cfg.name.to_string(),
                desired: st.desired.map(|v| v.image),
                last_healthy: st.last_healthy.map(|v| v.image),
                health: health.into(),
                held: st.hold.is_some(),
                hold_reason: st.hold.map(|h| h.reason).unwrap_or_default(),
                approvals_required: waiting.map_or(0, |_| cfg.approvals),
                approvals_granted: waiting.map_or(0, |p| u32::try_from(p.approvals.len()).unwrap_or(u32::MAX)),
                allowed_approvers: if waiting.is_some() { cfg.approvers.clone() } else { Vec::new() },
                waiting_on: pending.map(|p| p.waiting_on.clone()).unwrap_or_default(),
            });
        }
        Ok(v1::AppStatus { app: app.to_string(), stages, ..Default::default() })
    }

    /// Runs of `app` (all apps when empty), newest first; `page_token` is the opaque cursor a
    /// previous page returned.
    pub async fn list_runs(&self, app: &str, limit: u32, page_token: &str) -> Result<v1::ListRunsResponse> {
        let limit = i64::from(limit.clamp(1, 200));
        let offset: i64 = if page_token.is_empty() {
            0
        } else {
            // A negative offset would reach PostgreSQL and come back as an internal error.
            let offset = page_token.parse::<u32>().ok().map(i64::from);
            let shown: String = page_token.chars().take(40).collect();
            offset
                .ok_or_else(|| Error::InvalidArgument(format!("page_token {shown:?} is not one this API returned")))?
        };
        let ids = store::run_ids(&self.pool, app, limit + 1, offset).await?;
        let mut runs = Vec::new();
        for id in ids.iter().take(usize::try_from(limit).unwrap_or(200)) {
            runs.extend(self.get_run(id).await?);
        }
        let more = ids.len() > runs.len();
        let next_page_token = if more { (offset + limit).to_string() } else { String::new() };
        Ok(v1::ListRunsResponse { runs, next_page_token })
    }

    /// One run with its timeline.
    pub async fn get_run(&self, run_id: &str) -> Result<Option<v1::PipelineRun>> {
        let Some(store::RunRow { app, run, started_at, updated_at, trace_id }) = store::run(&self.pool, run_id).await?
        else {
            return Ok(None);
        };
        let timeline = (store::timeline(&self.pool, run_id).await?.into_iter())
            .map(|e| v1::TimelineEntry {
                time: Some(timestamp(e.at)),
                stage: e.stage.unwrap_or_default(),
                step: e.step,
                actor: e.actor,
                detail: e.detail,
            })
            .collect();
        let Version { image, source } = run.version;
        Ok(Some(v1::PipelineRun {
            run_id: run.id,
            app,
            source: Some(source),
            image: Some(image),
            state: RunState::to_proto(run.state).into(),
            current_stage: run.stage.map(|s| s.to_string()).unwrap_or_default(),
            timeline,
            started_at: Some(timestamp(started_at)),
            updated_at: Some(timestamp(updated_at)),
            trace_id,
        }))
    }
}
