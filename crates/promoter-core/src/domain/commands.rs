//! Commands by people (chat or admin API): approve, reject, hold, release, roll back, promote;
//! verify is in [`super::verification`].
//!
//! Each command is checked against the stage's policy first. A command that may not be
//! carried out produces an audit row and an `approval.rejected` event whose reason and allowed
//! approvers/teams tell the notifier what to answer.

use serde_json::json;
use slipway_mesh::names::EnvName;
use slipway_mesh::v1;

use super::decide::Ctx;
use super::{Command, CommandKind, Done, Outgoing, Promotion, PromotionState, Refused, RunState, Trigger, Version};
use crate::pipeline::{PipelineConfig, Policy, StageConfig};

/// Refusal reasons, as the `reason` of `approval.rejected`.
/// Why the pipeline refused a command; its [`as_str`](Refusal::as_str) is the `reason` of
/// `approval.rejected` and `command.refused`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Refusal {
    NotAllowed,
    SelfApproval,
    AlreadyApproved,
    NoPending,
    Ambiguous,
    UnknownStage,
    StageRequired,
    UnknownVersion,
    NothingToPromote,
    NoHealthyVersion,
    NotHeld,
    UnknownApp,
    AppRequired,
    /// `/verify-stage` on a stage without verification checks.
    NoChecks,
    /// `/verify-stage` while the stage runs no healthy version to check.
    NothingToVerify,
}

impl Refusal {
    /// The reason as events and replies carry it.
    pub fn as_str(self) -> &'static str {
        match self {
            Refusal::NotAllowed => "not-allowed",
            Refusal::SelfApproval => "self-approval",
            Refusal::AlreadyApproved => "already-approved",
            Refusal::NoPending => "no-pending-promotion",
            Refusal::Ambiguous => "ambiguous",
            Refusal::UnknownStage => "unknown-stage",
            Refusal::StageRequired => "stage-required",
            Refusal::UnknownVersion => "unknown-version",
            Refusal::NothingToPromote => "nothing-to-promote",
            Refusal::NoHealthyVersion => "no-healthy-version",
            Refusal::NotHeld => "not-held",
            Refusal::UnknownApp => "unknown-app",
            Refusal::AppRequired => "app-required",
            Refusal::NoChecks => "no-checks",
            Refusal::NothingToVerify => "nothing-to-verify",
        }
    }
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The `reason` of the `approval.rejected` a rejection that counts announces (not a refusal).
pub const REJECTED: &str = "rejected";

/// The audit row and reply event of a command refused before any app state was looked at
/// (unknown app, no app named and none implied).
pub fn refusal(pipeline: &PipelineConfig, app: &str, command: &Command, why: Refusal) -> super::Decision {
    let stage = command.stage.as_ref().and_then(|s| pipeline.stage(s.as_str())).map(|(_, c)| c);
    let audit = super::Audit {
        actor: command.actor.clone(),
        action: format!("{}-refused", kind_name(command.kind)),
        stage: command.stage.clone(),
        reason: why.as_str().to_owned(),
        detail: json!({ "app": app, "promotion_id": command.promotion_id }),
    };
    let event = refused(command, app, command.stage.as_ref(), stage, command.promotion_id.as_deref(), why.as_str());
    let (allowed_approvers, allowed_teams) = stage.map(|c| (c.approvers.clone(), c.teams.clone())).unwrap_or_default();
    super::Decision {
        effects: vec![super::Effect::Audit(audit), super::Effect::Emit(event)],
        reply: Err(Refused { reason: why, allowed_approvers, allowed_teams }),
    }
}

/// What a refused `command` announces: an approval or rejection that does not count is
/// `approval.rejected`; any other command is `command.refused`, of its own kind.
fn refused(
    command: &Command,
    app: &str,
    stage: Option<&EnvName>,
    config: Option<&StageConfig>,
    promotion: Option<&str>,
    why: &str,
) -> Outgoing {
    let (approvers, teams) = config.map(|c| (c.approvers.clone(), c.teams.clone())).unwrap_or_default();
    let stage = stage.map(ToString::to_string).unwrap_or_default();
    let kind = match command.kind {
        CommandKind::Approve | CommandKind::Reject => {
            return Outgoing::ApprovalRejected(v1::ApprovalRejected {
                promotion_id: promotion.unwrap_or_default().to_owned(),
                app: app.to_owned(),
                stage,
                actor: command.actor.clone(),
                reason: why.to_owned(),
                allowed_approvers: approvers,
                allowed_teams: teams,
                repository: command.repository.clone(),
                pull_request: command.pull_request,
            });
        }
        CommandKind::Hold => v1::CommandKind::Hold,
        CommandKind::Release => v1::CommandKind::Unhold,
        CommandKind::Rollback => v1::CommandKind::Rollback,
        CommandKind::Promote => v1::CommandKind::Promote,
        CommandKind::Verify => v1::CommandKind::Verify,
    };
    Outgoing::CommandRefused(v1::CommandRefused {
        app: app.to_owned(),
        stage,
        command: kind.into(),
        actor: command.actor.clone(),
        reason: why.to_owned(),
        allowed_approvers: approvers,
        allowed_teams: teams,
        tag: command.tag.clone().unwrap_or_default(),
        repository: command.repository.clone(),
        pull_request: command.pull_request,
    })
}

fn kind_name(kind: CommandKind) -> &'static str {
    match kind {
        CommandKind::Approve => "approve",
        CommandKind::Reject => "reject",
        CommandKind::Hold => "hold",
        CommandKind::Release => "release",
        CommandKind::Rollback => "rollback",
        CommandKind::Promote => "promote",
        CommandKind::Verify => "verify",
    }
}

impl Ctx<'_> {
    pub(super) fn command(&mut self, cmd: Command) {
        if let Some(stage) = cmd.stage.as_ref().filter(|s| self.stage_config(s).is_none()) {
            let stage = stage.clone();
            return self.refuse(&cmd, Some(&stage), None, Refusal::UnknownStage);
        }
        match cmd.kind {
            CommandKind::Approve => self.approve(&cmd),
            CommandKind::Reject => self.reject(&cmd),
            CommandKind::Hold => self.hold_command(&cmd),
            CommandKind::Release => self.release_command(&cmd),
            CommandKind::Rollback => self.rollback_command(&cmd),
            CommandKind::Promote => self.promote_command(&cmd),
            CommandKind::Verify => self.verify_command(&cmd),
        }
    }

    pub(super) fn refuse(&mut self, cmd: &Command, stage: Option<&EnvName>, promotion: Option<&str>, why: Refusal) {
        if self.reply.is_ok() {
            let cfg = stage.and_then(|s| self.stage_config(s)).map(|(_, c)| c);
            let (allowed_approvers, allowed_teams) =
                cfg.map(|c| (c.approvers.clone(), c.teams.clone())).unwrap_or_default();
            self.reply = Err(Refused { reason: why, allowed_approvers, allowed_teams });
        }
        self.announce(cmd, stage, promotion, why.as_str(), "refused");
    }

    /// The audit row (`<command>-<what>`) and the event of a command that did not go through.
    fn announce(&mut self, cmd: &Command, stage: Option<&EnvName>, promotion: Option<&str>, why: &str, what: &str) {
        let cfg = stage.and_then(|s| self.stage_config(s)).map(|(_, c)| c);
        let detail = json!({ "promotion_id": promotion, "command": kind_name(cmd.kind), "tag": cmd.tag });
        self.audit(&cmd.actor, &format!("{}-{what}", kind_name(cmd.kind)), stage, why, detail);
        let event = refused(cmd, &self.app(), stage, cfg, promotion, why);
        self.emit(event);
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
                self.refuse(cmd, cmd.stage.as_ref(), id.as_deref(), Refusal::NoPending);
                None
            }
            _ => {
                self.refuse(cmd, cmd.stage.as_ref(), None, Refusal::Ambiguous);
                None
            }
        }
    }

    pub(super) fn allowed(&mut self, cmd: &Command, stage: &EnvName, promotion: Option<&str>) -> bool {
        let ok = self.stage_config(stage).is_some_and(|(_, cfg)| self.pipeline.may_act(cfg, &cmd.actor));
        if !ok {
            self.refuse(cmd, Some(stage), promotion, Refusal::NotAllowed);
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
            return self.refuse(cmd, Some(&p.stage), Some(&p.id), Refusal::SelfApproval);
        }
        if p.approvals.iter().any(|a| a.eq_ignore_ascii_case(&cmd.actor)) {
            return self.refuse(cmd, Some(&p.stage), Some(&p.id), Refusal::AlreadyApproved);
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
        self.reply = Ok(Done { promotion_id: Some(p.id.clone()), granted, required, to: None });
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
        self.announce(cmd, Some(&p.stage), Some(&p.id), REJECTED, "refused");
        self.reply = Ok(Done { promotion_id: Some(p.id.clone()), ..Done::default() });
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
            return self.refuse(cmd, cmd.stage.as_ref(), None, Refusal::NotHeld);
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

    fn rollback_command(&mut self, cmd: &Command) {
        let Some(stage) = cmd.stage.clone() else {
            return self.refuse(cmd, None, None, Refusal::StageRequired);
        };
        if !self.allowed(cmd, &stage, None) {
            return;
        }
        let current = self.stage(&stage).desired.unwrap_or_default();
        let to = match (&cmd.tag, &cmd.version) {
            (Some(_), Some(version)) => Some(version.clone()),
            (Some(_), None) => return self.refuse(cmd, Some(&stage), None, Refusal::UnknownVersion),
            (None, _) => self.rollback_target(&stage, &current),
        };
        let Some(to) = to else {
            return self.refuse(cmd, Some(&stage), None, Refusal::NoHealthyVersion);
        };
        let why = if cmd.reason.is_empty() { format!("rollback by {}", cmd.actor) } else { cmd.reason.clone() };
        self.rollback(&stage, to, &cmd.actor, &why, false);
    }

    fn promote_command(&mut self, cmd: &Command) {
        let Some(stage) = cmd.stage.clone() else {
            return self.refuse(cmd, None, None, Refusal::StageRequired);
        };
        if !self.allowed(cmd, &stage, None) {
            return;
        }
        let Some((index, cfg)) = self.stage_config(&stage) else { return };
        let version = match (&cmd.tag, &cmd.version) {
            (Some(_), Some(version)) => version.clone(),
            (Some(_), None) => return self.refuse(cmd, Some(&stage), None, Refusal::UnknownVersion),
            (None, _) => {
                let previous = index.checked_sub(1).and_then(|i| self.stage(&self.pipeline.stages[i].name).desired);
                let Some(version) = previous else {
                    return self.refuse(cmd, Some(&stage), None, Refusal::NothingToPromote);
                };
                version
            }
        };
        let run =
            (self.state.runs.values()).find(|r| r.version.same(&version) && !r.state.is_final()).map(|r| r.id.clone());
        let why = if cmd.reason.is_empty() { format!("promoted by {}", cmd.actor) } else { cmd.reason.clone() };
        let id = self.open(run, &stage, version.clone(), Trigger::Manual, &cmd.actor, why);
        let counts = cfg.policy == Policy::Approval && !self.is_self_approval(&stage, &cmd.actor, &version);
        let admin = self.pipeline.is_admin(&cmd.actor);
        if let Some(p) = self.promotion_mut(&id) {
            p.override_freeze = cmd.override_freeze && admin;
            p.override_scan = cmd.override_scan && admin;
            if counts {
                p.approvals.push(cmd.actor.clone());
            }
        }
        let granted = u32::from(counts);
        self.reply = Ok(Done { promotion_id: Some(id.clone()), granted, ..Done::default() });
        if cmd.override_scan && !admin {
            let detail = json!({ "promotion_id": id });
            let why = "only admins may override a scan policy";
            self.audit(&cmd.actor, "scan-override-ignored", Some(&stage), why, detail);
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
