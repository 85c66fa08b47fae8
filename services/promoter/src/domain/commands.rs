//! Commands by people (chat or admin API): approve, reject, hold, release, roll back, promote.
//!
//! Each command is checked against the stage's policy first. A command that may not be
//! carried out produces an audit row and an `approval.rejected` event whose reason and allowed
//! approvers/teams tell the notifier what to answer.

use serde_json::json;
use slipway_mesh::names::EnvName;
use slipway_mesh::v1;

use super::decide::Ctx;
use super::{Command, CommandKind, Outgoing, Promotion, PromotionState, RunState, Trigger, Version};
use crate::config::{PipelineConfig, Policy};

/// Refusal reasons, as the `reason` of `approval.rejected`.
pub mod reason {
    pub const NOT_ALLOWED: &str = "not-allowed";
    pub const SELF_APPROVAL: &str = "self-approval";
    pub const ALREADY_APPROVED: &str = "already-approved";
    pub const NO_PENDING: &str = "no-pending-promotion";
    pub const AMBIGUOUS: &str = "ambiguous";
    pub const UNKNOWN_STAGE: &str = "unknown-stage";
    pub const STAGE_REQUIRED: &str = "stage-required";
    pub const UNKNOWN_VERSION: &str = "unknown-version";
    pub const NOTHING_TO_PROMOTE: &str = "nothing-to-promote";
    pub const NO_HEALTHY_VERSION: &str = "no-healthy-version";
    pub const NOT_HELD: &str = "not-held";
    pub const REJECTED: &str = "rejected";
}

/// The audit row and reply event of a command refused before any app state was looked at
/// (unknown app, no app named and none implied).
pub fn refusal(pipeline: &PipelineConfig, app: &str, command: &Command, why: &str) -> Vec<super::Effect> {
    let stage = command.stage.as_ref().and_then(|s| pipeline.stage(s.as_str())).map(|(_, c)| c);
    let audit = super::Audit {
        actor: command.actor.clone(),
        action: format!("{}-refused", kind_name(command.kind)),
        stage: command.stage.clone(),
        reason: why.to_owned(),
        detail: json!({ "app": app, "promotion_id": command.promotion_id }),
    };
    let event = v1::ApprovalRejected {
        promotion_id: command.promotion_id.clone().unwrap_or_default(),
        app: app.to_owned(),
        stage: command.stage.as_ref().map(ToString::to_string).unwrap_or_default(),
        actor: command.actor.clone(),
        reason: why.to_owned(),
        allowed_approvers: stage.map(|s| s.approvers.clone()).unwrap_or_default(),
        allowed_teams: stage.map(|s| s.teams.clone()).unwrap_or_default(),
        repository: command.repository.clone(),
        pull_request: command.pull_request,
    };
    vec![super::Effect::Audit(audit), super::Effect::Emit(Outgoing::ApprovalRejected(event))]
}

fn kind_name(kind: CommandKind) -> &'static str {
    match kind {
        CommandKind::Approve => "approve",
        CommandKind::Reject => "reject",
        CommandKind::Hold => "hold",
        CommandKind::Release => "release",
        CommandKind::Rollback => "rollback",
        CommandKind::Promote => "promote",
    }
}

impl Ctx<'_> {
    pub(super) fn command(&mut self, input: &str, cmd: Command) {
        if let Some(stage) = cmd.stage.as_ref().filter(|s| self.stage_config(s).is_none()) {
            let stage = stage.clone();
            return self.refuse(&cmd, Some(&stage), None, reason::UNKNOWN_STAGE);
        }
        match cmd.kind {
            CommandKind::Approve => self.approve(&cmd),
            CommandKind::Reject => self.reject(&cmd),
            CommandKind::Hold => self.hold_command(&cmd),
            CommandKind::Release => self.release_command(&cmd),
            CommandKind::Rollback => self.rollback_command(input, &cmd),
            CommandKind::Promote => self.promote_command(input, &cmd),
        }
    }

    fn refuse(&mut self, cmd: &Command, stage: Option<&EnvName>, promotion: Option<&str>, why: &str) {
        let cfg = stage.and_then(|s| self.stage_config(s)).map(|(_, c)| c);
        let detail = json!({ "promotion_id": promotion, "command": kind_name(cmd.kind), "tag": cmd.tag });
        self.audit(&cmd.actor, &format!("{}-refused", kind_name(cmd.kind)), stage, why, detail);
        self.emit(Outgoing::ApprovalRejected(v1::ApprovalRejected {
            promotion_id: promotion.unwrap_or_default().to_owned(),
            app: self.app(),
            stage: stage.map(ToString::to_string).unwrap_or_default(),
            actor: cmd.actor.clone(),
            reason: why.to_owned(),
            allowed_approvers: cfg.map(|c| c.approvers.clone()).unwrap_or_default(),
            allowed_teams: cfg.map(|c| c.teams.clone()).unwrap_or_default(),
            repository: cmd.repository.clone(),
            pull_request: cmd.pull_request,
        }));
    }

    /// The pending promotion a command addresses: by id, else the one waiting in its stage
    /// (or the only one waiting for approvals when no stage is named).
    fn addressed(&mut self, cmd: &Command) -> Option<Promotion> {
        let pending = |p: &&Promotion| p.state == PromotionState::Pending;
        let found: Vec<Promotion> = match (&cmd.promotion_id, &cmd.stage) {
            (Some(id), _) => self.state.promotions.get(id).filter(pending).cloned().into_iter().collect(),
            (None, Some(stage)) => {
                self.state.promotions.values().filter(pending).filter(|p| &p.stage == stage).cloned().collect()
            }
            (None, None) => (self.state.promotions.values().filter(pending))
                .filter(|p| self.stage_config(&p.stage).is_some_and(|(_, c)| c.policy == Policy::Approval))
                .cloned()
                .collect(),
        };
        match found.as_slice() {
            [one] => Some(one.clone()),
            [] => {
                let id = cmd.promotion_id.clone();
                self.refuse(cmd, cmd.stage.as_ref(), id.as_deref(), reason::NO_PENDING);
                None
            }
            _ => {
                self.refuse(cmd, cmd.stage.as_ref(), None, reason::AMBIGUOUS);
                None
            }
        }
    }

    fn allowed(&mut self, cmd: &Command, stage: &EnvName, promotion: Option<&str>) -> bool {
        let ok = self.stage_config(stage).is_some_and(|(_, cfg)| self.pipeline.may_act(cfg, &cmd.actor));
        if !ok {
            self.refuse(cmd, Some(stage), promotion, reason::NOT_ALLOWED);
        }
        ok
    }

    /// Whose approval does not count under four-eyes: the commit author.
    fn is_self_approval(&self, stage: &EnvName, actor: &str, version: &Version) -> bool {
        let four_eyes = self.stage_config(stage).is_some_and(|(_, c)| c.four_eyes);
        four_eyes && !version.source.author.is_empty() && version.source.author.eq_ignore_ascii_case(actor)
    }

    fn approve(&mut self, cmd: &Command) {
        let Some(p) = self.addressed(cmd) else { return };
        if !self.allowed(cmd, &p.stage, Some(&p.id)) {
            return;
        }
        if self.is_self_approval(&p.stage, &cmd.actor, &p.version) {
            return self.refuse(cmd, Some(&p.stage), Some(&p.id), reason::SELF_APPROVAL);
        }
        if p.approvals.iter().any(|a| a.eq_ignore_ascii_case(&cmd.actor)) {
            return self.refuse(cmd, Some(&p.stage), Some(&p.id), reason::ALREADY_APPROVED);
        }
        let required = self.stage_config(&p.stage).map_or(0, |(_, c)| c.approvals);
        let Some(promotion) = self.promotion_mut(&p.id) else { return };
        promotion.approvals.push(cmd.actor.clone());
        let granted = u32::try_from(promotion.approvals.len()).unwrap_or(u32::MAX);
        self.emit(Outgoing::ApprovalGranted(v1::ApprovalGranted {
            promotion_id: p.id.clone(),
            app: self.app(),
            stage: p.stage.to_string(),
            actor: cmd.actor.clone(),
            granted,
            required,
        }));
        let detail = format!("{granted}/{required}");
        self.timeline(p.run_id.as_deref(), &p.stage, "approved", &cmd.actor, detail.clone());
        let audit =
            json!({ "promotion_id": p.id, "granted": granted, "required": required, "tag": p.version.image.tag });
        self.audit(&cmd.actor, "approve", Some(&p.stage), &cmd.reason, audit);
        if let Some(promotion) = self.promotion_mut(&p.id) {
            promotion.reason = format!("approved by {}", promotion.approvals.join(", "));
        }
        self.try_start(&p.id);
    }

    fn reject(&mut self, cmd: &Command) {
        let Some(p) = self.addressed(cmd) else { return };
        if !self.allowed(cmd, &p.stage, Some(&p.id)) {
            return;
        }
        if let Some(promotion) = self.promotion_mut(&p.id) {
            promotion.state = PromotionState::Rejected;
        }
        self.set_run(p.run_id.as_deref(), RunState::Failed, None);
        self.timeline(p.run_id.as_deref(), &p.stage, "rejected", &cmd.actor, cmd.reason.clone());
        self.refuse(cmd, Some(&p.stage), Some(&p.id), reason::REJECTED);
    }

    /// The stages a hold/release addresses: the named one, else all.
    fn stages_of(&self, cmd: &Command) -> Vec<EnvName> {
        match &cmd.stage {
            Some(stage) => vec![stage.clone()],
            None => self.pipeline.stages.iter().map(|s| s.name.clone()).collect(),
        }
    }

    fn hold_command(&mut self, cmd: &Command) {
        let stages = self.stages_of(cmd);
        if !stages.iter().all(|s| self.allowed(cmd, s, None)) {
            return;
        }
        let why = if cmd.reason.is_empty() { format!("held by {}", cmd.actor) } else { cmd.reason.clone() };
        for stage in stages {
            self.place_hold(&stage, &cmd.actor, &why);
        }
    }

    fn release_command(&mut self, cmd: &Command) {
        let stages = self.stages_of(cmd);
        if !stages.iter().all(|s| self.allowed(cmd, s, None)) {
            return;
        }
        let held: Vec<EnvName> = stages.into_iter().filter(|s| self.stage(s).hold.is_some()).collect();
        if held.is_empty() {
            return self.refuse(cmd, cmd.stage.as_ref(), None, reason::NOT_HELD);
        }
        for stage in held {
            self.stage_mut(&stage).hold = None;
            self.emit(Outgoing::HoldReleased(v1::HoldReleased {
                app: self.app(),
                stage: stage.to_string(),
                actor: cmd.actor.clone(),
                reason: cmd.reason.clone(),
            }));
            self.audit(&cmd.actor, "release", Some(&stage), &cmd.reason, json!({}));
            let waiting: Vec<String> = (self.state.promotions.values())
                .filter(|p| p.state == PromotionState::Pending && p.stage == stage)
                .map(|p| p.id.clone())
                .collect();
            for id in waiting {
                self.try_start(&id);
            }
        }
    }

    fn rollback_command(&mut self, input: &str, cmd: &Command) {
        let Some(stage) = cmd.stage.clone() else {
            return self.refuse(cmd, None, None, reason::STAGE_REQUIRED);
        };
        if !self.allowed(cmd, &stage, None) {
            return;
        }
        let current = self.stage(&stage).desired.unwrap_or_default();
        let to = match (&cmd.tag, &cmd.version) {
            (Some(_), Some(version)) => Some(version.clone()),
            (Some(_), None) => return self.refuse(cmd, Some(&stage), None, reason::UNKNOWN_VERSION),
            (None, _) => self.rollback_target(&stage, &current),
        };
        let Some(to) = to else {
            return self.refuse(cmd, Some(&stage), None, reason::NO_HEALTHY_VERSION);
        };
        let why = if cmd.reason.is_empty() { format!("rollback by {}", cmd.actor) } else { cmd.reason.clone() };
        self.rollback(input, &stage, to, &cmd.actor, &why, false);
    }

    fn promote_command(&mut self, input: &str, cmd: &Command) {
        let Some(stage) = cmd.stage.clone() else {
            return self.refuse(cmd, None, None, reason::STAGE_REQUIRED);
        };
        if !self.allowed(cmd, &stage, None) {
            return;
        }
        let Some((index, cfg)) = self.stage_config(&stage) else { return };
        let version = match (&cmd.tag, &cmd.version) {
            (Some(_), Some(version)) => version.clone(),
            (Some(_), None) => return self.refuse(cmd, Some(&stage), None, reason::UNKNOWN_VERSION),
            (None, _) => {
                let previous = index.checked_sub(1).and_then(|i| self.stage(&self.pipeline.stages[i].name).desired);
                let Some(version) = previous else {
                    return self.refuse(cmd, Some(&stage), None, reason::NOTHING_TO_PROMOTE);
                };
                version
            }
        };
        let run =
            (self.state.runs.values()).find(|r| r.version.same(&version) && !r.state.is_final()).map(|r| r.id.clone());
        let why = if cmd.reason.is_empty() { format!("promoted by {}", cmd.actor) } else { cmd.reason.clone() };
        let id = self.open(input, run, &stage, version.clone(), Trigger::Manual, &cmd.actor, why);
        let counts = cfg.policy == Policy::Approval && !self.is_self_approval(&stage, &cmd.actor, &version);
        let admin = self.pipeline.is_admin(&cmd.actor);
        if let Some(p) = self.promotion_mut(&id) {
            p.override_freeze = cmd.override_freeze && admin;
            if counts {
                p.approvals.push(cmd.actor.clone());
            }
        }
        if cmd.override_freeze && !admin {
            let detail = json!({ "promotion_id": id });
            self.audit(
                &cmd.actor,
                "freeze-override-ignored",
                Some(&stage),
                "only admins may override a freeze",
                detail,
            );
        }
        self.try_start(&id);
    }
}
