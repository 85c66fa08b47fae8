//! Transitions driven by the write-back and the health reports: committed, failed, synced,
//! healthy (the run moves on), degraded (automatic rollback and hold when the policy says so).

use chrono::Duration;
use serde_json::json;
use slipway_mesh::names::EnvName;
use slipway_mesh::v1;

use super::decide::Ctx;
use super::{Done, Hold, Outgoing, Promotion, PromotionState, RunState, SYSTEM, Trigger, Version};

impl Ctx<'_> {
    pub(super) fn committed(
        &mut self,
        id: &str,
        repository: String,
        branch: String,
        commit: String,
        pull_request_url: String,
    ) {
        let now = self.now;
        let Some(p) = self.promotion_if(id, |p| p.state == PromotionState::Requested) else { return };
        p.state = PromotionState::Committed;
        p.gitops_commit = commit.clone();
        p.committed_at = Some(now);
        let p = p.clone();
        self.emit(Outgoing::PromotionCommitted(v1::PromotionCommitted {
            promotion_id: p.id.clone(),
            app: self.app(),
            stage: p.stage.to_string(),
            image: Some(p.version.image.clone()),
            gitops_repository: repository.clone(),
            gitops_branch: branch.clone(),
            gitops_commit: commit.clone(),
            pull_request_url: pull_request_url.clone(),
        }));
        self.timeline(p.run_id.as_deref(), &p.stage, "committed", SYSTEM, commit.clone());
        let mut detail = json!({ "promotion_id": p.id, "repository": repository, "branch": branch, "commit": commit });
        if !pull_request_url.is_empty() {
            detail["pull_request_url"] = json!(pull_request_url);
        }
        self.audit(SYSTEM, "commit", Some(&p.stage), "written to the GitOps repository", detail);
    }

    pub(super) fn write_failed(&mut self, id: &str, message: &str) {
        let Some(p) = self.promotion_if(id, |p| p.state == PromotionState::Requested) else { return };
        p.state = PromotionState::Failed;
        let p = p.clone();
        self.set_run(p.run_id.as_deref(), RunState::Failed, None);
        self.emit(Outgoing::PromotionFailed(v1::PromotionFailed {
            promotion_id: p.id.clone(),
            app: self.app(),
            stage: p.stage.to_string(),
            reason: "write-failed".to_owned(),
            message: message.to_owned(),
        }));
        self.timeline(p.run_id.as_deref(), &p.stage, "failed", SYSTEM, message.to_owned());
        self.audit(SYSTEM, "write-failed", Some(&p.stage), message, json!({ "promotion_id": p.id }));
    }

    pub(super) fn synced(&mut self, id: &str, revision: &str) {
        let Some(p) = self.promotion_if(id, |p| p.state == PromotionState::Committed) else { return };
        p.state = PromotionState::Synced;
        let p = p.clone();
        self.timeline(p.run_id.as_deref(), &p.stage, "synced", SYSTEM, revision.to_owned());
    }

    pub(super) fn healthy(&mut self, id: &str) {
        let Some(p) = self.promotion_if(id, |p| p.state.in_flight()) else { return };
        let p = p.clone();
        let current = self.stage(&p.stage).desired_promotion.as_deref() == Some(id);
        let verified = self.stage_config(&p.stage).is_some_and(|(_, cfg)| !cfg.verification.is_empty());
        if current && verified && p.trigger != Trigger::Rollback {
            // Healthy pods are not yet a good version: the stage's checks judge it first.
            self.timeline(p.run_id.as_deref(), &p.stage, "healthy", SYSTEM, p.version.image.tag.clone());
            return self.verify(&p, super::VERIFY_AFTER_HEALTHY);
        }
        self.became_good(id, current, "healthy");
    }

    /// `id` is healthy (and verified, where its stage verifies): the stage's last good
    /// version, and its run moves on. `step` is the timeline's word for it.
    pub(super) fn became_good(&mut self, id: &str, current: bool, step: &str) {
        let Some(p) = self.promotion_if(id, |_| true) else { return };
        p.state = PromotionState::Healthy;
        let p = p.clone();
        let now = self.now;
        self.timeline(p.run_id.as_deref(), &p.stage, step, SYSTEM, p.version.image.tag.clone());
        let detail = json!({ "promotion_id": id, "tag": p.version.image.tag, "current": current });
        let why = if step == "healthy" { "health check passed" } else { "verification passed" };
        self.audit(SYSTEM, step, Some(&p.stage), why, detail);
        if !current {
            self.set_run(p.run_id.as_deref(), RunState::Superseded, None);
            return;
        }
        let stage = self.stage_mut(&p.stage);
        if let Some(last) = stage.last_healthy.take() {
            stage.previous_healthy = if last.same(&p.version) { stage.previous_healthy.take() } else { Some(last) };
        }
        stage.last_healthy = Some(p.version.clone());
        stage.healthy_since = Some(now);
        if p.trigger != Trigger::Rollback {
            self.advance(&p);
        }
    }

    /// The run of `p` moves on to the next stage, or is done after the last.
    pub(super) fn advance(&mut self, p: &Promotion) {
        let Some(run) = p.run_id.as_deref().and_then(|id| self.state.runs.get(id)).cloned() else { return };
        // A run already past this stage (its checks were run again) does not enter the next twice.
        if run.state.is_final() || run.stage.as_ref().is_some_and(|s| *s != p.stage) {
            return;
        }
        let Some((index, _)) = self.stage_config(&p.stage) else { return };
        match self.pipeline.stages.get(index + 1) {
            None => {
                self.set_run(Some(&run.id), RunState::Succeeded, None);
                self.timeline(Some(&run.id), &p.stage, "succeeded", SYSTEM, "every stage is healthy".into());
            }
            Some(next) => {
                let reason = format!("healthy in {}", p.stage);
                let id = self.open(Some(run.id.clone()), &next.name, p.version.clone(), Trigger::Auto, SYSTEM, reason);
                self.try_start(&id);
            }
        }
    }

    pub(super) fn degraded(&mut self, id: &str, status: &str, message: &str) {
        let now = self.now;
        let judged = |p: &Promotion| {
            p.state.in_flight() || matches!(p.state, PromotionState::Healthy | PromotionState::Verifying)
        };
        let Some(p) = self.promotion_if(id, judged) else {
            return;
        };
        let failed_checks = p.state == PromotionState::Verifying;
        p.state = PromotionState::Degraded;
        let p = p.clone();
        let why = if message.is_empty() { status.to_owned() } else { format!("{status}: {message}") };
        self.timeline(p.run_id.as_deref(), &p.stage, "degraded", SYSTEM, why.clone());
        self.audit(SYSTEM, "degraded", Some(&p.stage), &why, json!({ "promotion_id": id, "tag": p.version.image.tag }));
        let current = self.stage(&p.stage).desired_promotion.as_deref() == Some(id);
        let Some((_, cfg)) = self.stage_config(&p.stage) else { return };
        let window = Duration::seconds(i64::try_from(cfg.watch_window_secs).unwrap_or(i64::MAX / 2_000));
        // A verification runs after the stage became healthy, possibly past the watch window;
        // its failure rolls back all the same.
        let in_window = failed_checks || p.committed_at.is_none_or(|at| now <= at + window);
        if !(current && cfg.auto_rollback && in_window) {
            self.set_run(p.run_id.as_deref(), RunState::Failed, None);
            return;
        }
        match self.rollback_target(&p.stage, &p.version) {
            Some(to) => {
                let reason = format!("automatic rollback: {why}");
                self.rollback(&p.stage, to, SYSTEM, &reason, true);
            }
            None => {
                self.set_run(p.run_id.as_deref(), RunState::Failed, None);
                let detail = json!({ "promotion_id": id });
                self.audit(SYSTEM, "rollback-impossible", Some(&p.stage), "no earlier healthy version", detail);
            }
        }
    }

    /// The version to roll `stage` back to from `current`: the last healthy one that differs.
    pub(super) fn rollback_target(&self, stage: &EnvName, current: &Version) -> Option<Version> {
        let st = self.stage(stage);
        [st.last_healthy, st.previous_healthy].into_iter().flatten().find(|v| !v.same(current))
    }

    /// Writes `to` into `stage` as a new promotion, marks what ran there rolled back, and holds
    /// the stage so automatic promotion does not undo it.
    pub(super) fn rollback(
        &mut self,
        stage: &EnvName,
        to: Version,
        actor: &str,
        reason: &str,
        automatic: bool,
    ) -> String {
        let from = self.stage(stage).desired_promotion.and_then(|id| self.state.promotions.get(&id).cloned());
        if let Some(from) = &from {
            if let Some(p) = self.promotion_if(&from.id, |p| p.state != PromotionState::Failed) {
                p.state = PromotionState::RolledBack;
            }
            self.set_run(from.run_id.as_deref(), RunState::RolledBack, None);
            self.timeline(from.run_id.as_deref(), stage, "rolled-back", actor, reason.to_owned());
        }
        let id = self.new_promotion_id(stage, &to);
        let promotion = Promotion::pending(
            id.clone(),
            None,
            stage.clone(),
            to.clone(),
            Trigger::Rollback,
            actor,
            reason.to_owned(),
        );
        self.state.promotions.insert(id.clone(), promotion);
        self.start_write(&id);
        self.emit(Outgoing::PromotionRolledBack(v1::PromotionRolledBack {
            promotion_id: id.clone(),
            app: self.app(),
            stage: stage.to_string(),
            from: from.map(|p| p.version.image),
            to: Some(to.image.clone()),
            reason: reason.to_owned(),
            actor: actor.to_owned(),
            automatic,
        }));
        let detail = json!({ "promotion_id": id, "to": to.image.tag, "automatic": automatic });
        self.audit(actor, "rollback", Some(stage), reason, detail);
        self.reply = Ok(Done { promotion_id: Some(id.clone()), to: Some(to.image.clone()), ..Done::default() });
        self.place_hold(stage, actor, &format!("rollback: {reason}"));
        id
    }

    pub(super) fn place_hold(&mut self, stage: &EnvName, actor: &str, reason: &str) {
        let now = self.now;
        let hold = Hold { actor: actor.to_owned(), reason: reason.to_owned(), at: now };
        self.stage_mut(stage).hold = Some(hold);
        self.emit(Outgoing::HoldPlaced(v1::HoldPlaced {
            app: self.app(),
            stage: stage.to_string(),
            actor: actor.to_owned(),
            reason: reason.to_owned(),
        }));
        self.audit(actor, "hold", Some(stage), reason, json!({}));
        self.retry_waiting(|p| &p.stage == stage);
    }
}
