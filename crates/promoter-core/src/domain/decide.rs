//! [`decide`] and the transitions driven by builds, write-back results and health reports.
//!
//! Decisions work on a copy of the state ([`Ctx`]); whatever they touch is marked dirty and
//! saved by `SaveRun`/`SavePromotion`/`SaveStage` effects that come first, followed by the
//! timeline, audit and outbox effects in the order they were decided.

use std::collections::BTreeSet;

use chrono::{DateTime, Duration, Utc};
use serde_json::json;
use slipway_mesh::names::EnvName;
use slipway_mesh::v1;

use super::{
    AppState, Audit, Decision, Done, Effect, Event, Input, Made, Outgoing, Promotion, PromotionState, Reply, Run,
    RunState, SYSTEM, StageState, Trigger, Version, Waiting,
};
use crate::freeze;
use crate::pipeline::{PipelineConfig, Policy, StageConfig};

/// The effects of `input` on the app whose state is `state`.
pub fn decide(pipeline: &PipelineConfig, state: &AppState, input: Input) -> Decision {
    let mut ctx = Ctx::new(pipeline, state.clone(), input.at);
    match input.event {
        Event::Built { build_id, version } => ctx.built(build_id, version),
        Event::GatePassed { commit } => ctx.retry_waiting(|p| p.version.source.commit_sha == commit),
        Event::Tick => ctx.retry_waiting(|_| true),
        Event::Scanned { digest } => ctx.retry_waiting(|p| p.version.image.digest == digest),
        Event::Committed { promotion_id, repository, branch, commit, pull_request_url } => {
            ctx.committed(&promotion_id, repository, branch, commit, pull_request_url)
        }
        Event::WriteFailed { promotion_id, message } => ctx.write_failed(&promotion_id, &message),
        Event::Synced { promotion_id, revision } => ctx.synced(&promotion_id, &revision),
        Event::Healthy { promotion_id } => ctx.healthy(&promotion_id),
        Event::Degraded { promotion_id, status, message } => ctx.degraded(&promotion_id, &status, &message),
        Event::Command(command) => ctx.command(command),
        Event::Verified { promotion_id, verdict, message } => ctx.verified(&promotion_id, verdict, &message),
    }
    ctx.finish()
}

/// Why a pending promotion cannot start yet.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Blocker {
    Held(String),
    Frozen(String),
    Gates(Vec<String>),
    Soak(DateTime<Utc>),
    Approvals {
        granted: usize,
        required: u32,
    },
    /// The stage's scan policy: blocking findings, a failed scan, or a re-scan to wait for.
    Scan(super::scan_gate::ScanWait),
}

impl Blocker {
    fn kind(&self) -> Waiting {
        match self {
            Blocker::Held(_) => Waiting::Hold,
            Blocker::Frozen(_) => Waiting::Freeze,
            Blocker::Gates(_) => Waiting::Gates,
            Blocker::Soak(_) => Waiting::Soak,
            Blocker::Approvals { .. } => Waiting::Approvals,
            Blocker::Scan(_) => Waiting::Scan,
        }
    }

    fn label(&self) -> String {
        match self {
            Blocker::Held(reason) => format!("hold: {reason}"),
            Blocker::Frozen(window) => format!("freeze: {window}"),
            Blocker::Gates(missing) => format!("gates: {}", missing.join(", ")),
            Blocker::Soak(until) => format!("soak until {}", until.to_rfc3339()),
            Blocker::Approvals { granted, required } => format!("approvals: {granted}/{required}"),
            Blocker::Scan(wait) => wait.label.clone(),
        }
    }
}

/// A decision in progress.
pub(super) struct Ctx<'a> {
    pub(super) pipeline: &'a PipelineConfig,
    pub(super) state: AppState,
    pub(super) now: DateTime<Utc>,
    out: Vec<Effect>,
    dirty_runs: BTreeSet<String>,
    dirty_promotions: BTreeSet<String>,
    dirty_stages: BTreeSet<String>,
    /// The app's id counters when the decision started.
    made_before: Made,
    /// What a command's caller is told.
    pub(super) reply: Reply,
}

impl<'a> Ctx<'a> {
    fn new(pipeline: &'a PipelineConfig, state: AppState, now: DateTime<Utc>) -> Self {
        let (dirty_runs, dirty_promotions, dirty_stages) = Default::default();
        let made_before = state.made;
        let reply = Ok(Done::default());
        Ctx { pipeline, state, now, out: Vec::new(), dirty_runs, dirty_promotions, dirty_stages, made_before, reply }
    }

    fn finish(mut self) -> Decision {
        let mut effects = Vec::with_capacity(self.out.len() + 4);
        for id in &self.dirty_runs {
            effects.extend(self.state.runs.remove(id).map(Effect::SaveRun));
        }
        for id in &self.dirty_promotions {
            effects.extend(self.state.promotions.remove(id).map(Effect::SavePromotion));
        }
        for name in &self.dirty_stages {
            let stage = self.state.stages.remove(name).unwrap_or_default();
            effects.extend(EnvName::parse(name).ok().map(|n| Effect::SaveStage(n, stage)));
        }
        if self.state.made != self.made_before {
            effects.push(Effect::SaveMade(self.state.made));
        }
        effects.append(&mut self.out);
        Decision { effects, reply: self.reply }
    }

    // ------------------------------------------------------------ small helpers

    pub(super) fn stage_config(&self, stage: &EnvName) -> Option<(usize, &'a StageConfig)> {
        self.pipeline.stage(stage.as_str())
    }

    pub(super) fn stage_mut(&mut self, stage: &EnvName) -> &mut StageState {
        self.dirty_stages.insert(stage.to_string());
        self.state.stages.entry(stage.to_string()).or_default()
    }

    pub(super) fn stage(&self, stage: &EnvName) -> StageState {
        self.state.stages.get(stage.as_str()).cloned().unwrap_or_default()
    }

    pub(super) fn promotion_mut(&mut self, id: &str) -> Option<&mut Promotion> {
        self.promotion_if(id, |_| true)
    }

    /// The promotion `id` for changing (marked dirty), if it exists and `when` holds.
    pub(super) fn promotion_if(&mut self, id: &str, when: impl Fn(&Promotion) -> bool) -> Option<&mut Promotion> {
        let p = self.state.promotions.get_mut(id).filter(|p| when(p))?;
        self.dirty_promotions.insert(id.to_owned());
        Some(p)
    }

    /// Sets a run's state (and stage), with a timeline entry; final runs stay as they are.
    pub(super) fn set_run(&mut self, run_id: Option<&str>, state: RunState, stage: Option<&EnvName>) {
        let Some(run) = run_id.and_then(|id| self.state.runs.get_mut(id)) else { return };
        if run.state.is_final() || (run.state == state && stage.is_none_or(|s| run.stage.as_ref() == Some(s))) {
            return;
        }
        run.state = state;
        if let Some(stage) = stage {
            run.stage = Some(stage.clone());
        }
        self.dirty_runs.insert(run.id.clone());
    }

    pub(super) fn timeline(&mut self, run_id: Option<&str>, stage: &EnvName, step: &str, actor: &str, detail: String) {
        if let Some(run_id) = run_id.filter(|id| self.state.runs.contains_key(*id)) {
            let (stage, step, actor) = (Some(stage.clone()), step.to_owned(), actor.to_owned());
            self.out.push(Effect::Timeline { run_id: run_id.to_owned(), stage, step, actor, detail });
        }
    }

    pub(super) fn audit(
        &mut self,
        actor: &str,
        action: &str,
        stage: Option<&EnvName>,
        reason: &str,
        detail: serde_json::Value,
    ) {
        let audit = Audit {
            actor: actor.to_owned(),
            action: action.to_owned(),
            stage: stage.cloned(),
            reason: reason.to_owned(),
            detail,
        };
        self.out.push(Effect::Audit(audit));
    }

    pub(super) fn emit(&mut self, event: Outgoing) {
        self.out.push(Effect::Emit(event));
    }

    pub(super) fn app(&self) -> String {
        self.state.app.to_string()
    }

    /// A new promotion's id, one a person can read and type: app, stage, the version's short
    /// commit (or its tag) and the app's count of promotions (`hello-prod-4b52662-7`).
    /// Deterministic: the count is part of the state the decision started from.
    pub(super) fn new_promotion_id(&mut self, stage: &EnvName, version: &Version) -> String {
        self.state.made.promotions += 1;
        format!("{}-{stage}-{}-{}", self.state.app, short_version(version), self.state.made.promotions)
    }

    /// A new run's id: app, short commit (or tag) and the app's count of runs (`hello-4b52662-3`).
    fn new_run_id(&mut self, version: &Version) -> String {
        self.state.made.runs += 1;
        format!("{}-{}-{}", self.state.app, short_version(version), self.state.made.runs)
    }

    // ------------------------------------------------------------ builds and gates

    fn built(&mut self, build_id: String, version: Version) {
        let Some(first) = self.pipeline.stages.first() else {
            self.audit(SYSTEM, "run-ignored", None, "no stages are configured", json!({ "build_id": build_id }));
            return;
        };
        let id = &self.new_run_id(&version);
        let run = Run { id: id.to_owned(), build_id, version: version.clone(), state: RunState::Running, stage: None };
        self.state.runs.insert(run.id.clone(), run);
        self.dirty_runs.insert(id.to_owned());
        let detail = format!("build {} of {}", version.image.tag, version.source.commit_sha);
        self.timeline(Some(id), &first.name, "run-started", SYSTEM, detail);
        let detail = json!({ "run_id": id, "tag": version.image.tag, "commit": version.source.commit_sha });
        self.audit(SYSTEM, "run-started", None, "build succeeded", detail);
        let reason = "build succeeded".to_owned();
        let promotion = self.open(Some(id.to_owned()), &first.name, version, Trigger::Auto, SYSTEM, reason);
        self.try_start(&promotion);
    }

    /// Re-checks every pending promotion `which` selects.
    pub(super) fn retry_waiting(&mut self, which: impl Fn(&Promotion) -> bool) {
        let ids: Vec<String> = (self.state.promotions.values())
            .filter(|p| p.state == PromotionState::Pending && which(p))
            .map(|p| p.id.clone())
            .collect();
        for id in ids {
            self.try_start(&id);
        }
    }

    // ------------------------------------------------------------ opening and starting

    /// Creates a pending promotion into `stage`, supersedes older pending ones there and asks
    /// for approvals where the policy wants them; the caller then tries to start it.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn open(
        &mut self,
        run_id: Option<String>,
        stage: &EnvName,
        version: Version,
        trigger: Trigger,
        actor: &str,
        reason: String,
    ) -> String {
        let id = self.new_promotion_id(stage, &version);
        self.supersede_pending(stage, &id);
        let promotion =
            Promotion::pending(id.clone(), run_id.clone(), stage.clone(), version.clone(), trigger, actor, reason);
        self.state.promotions.insert(id.clone(), promotion);
        self.dirty_promotions.insert(id.clone());
        self.set_run(run_id.as_deref(), RunState::Running, Some(stage));
        if let Some((_, cfg)) = self.stage_config(stage).filter(|(_, c)| c.policy == Policy::Approval) {
            self.emit(Outgoing::ApprovalRequested(v1::ApprovalRequested {
                promotion_id: id.clone(),
                app: self.app(),
                stage: stage.to_string(),
                image: Some(version.image.clone()),
                required: cfg.approvals,
                granted: 0,
                allowed_approvers: cfg.approvers.clone(),
                allowed_teams: cfg.teams.clone(),
                blocked_by: self.scan_block_label(stage, &version),
            }));
            self.timeline(run_id.as_deref(), stage, "approval-requested", SYSTEM, format!("{} needed", cfg.approvals));
        }
        id
    }

    fn supersede_pending(&mut self, stage: &EnvName, by: &str) {
        let older: Vec<String> = (self.state.promotions.values())
            .filter(|p| p.state == PromotionState::Pending && &p.stage == stage && p.id != by)
            .map(|p| p.id.clone())
            .collect();
        for id in older {
            let Some(p) = self.promotion_mut(&id) else { continue };
            p.state = PromotionState::Superseded;
            let run = p.run_id.clone();
            self.set_run(run.as_deref(), RunState::Superseded, None);
            self.timeline(run.as_deref(), stage, "superseded", SYSTEM, format!("by {by}"));
            self.audit(
                SYSTEM,
                "supersede",
                Some(stage),
                "a newer version is waiting",
                json!({ "promotion_id": id, "by": by }),
            );
        }
    }

    /// What keeps `p` from starting now, if anything.
    pub(super) fn blocker(&self, p: &Promotion) -> Option<Blocker> {
        let (index, cfg) = self.stage_config(&p.stage)?;
        let admin = p.trigger == Trigger::Manual && self.pipeline.is_admin(&p.actor);
        if let Some(hold) = self.stage(&p.stage).hold.filter(|_| !admin) {
            return Some(Blocker::Held(hold.reason));
        }
        if let Some(window) = freeze::active(&cfg.freeze, self.now).filter(|_| !(admin && p.override_freeze)) {
            return Some(Blocker::Frozen(window.label()));
        }
        if p.trigger == Trigger::Auto {
            let passed = self.state.gates.get(&p.version.source.commit_sha);
            let missing: Vec<String> =
                (cfg.required_gates.iter()).filter(|g| !passed.is_some_and(|set| set.contains(*g))).cloned().collect();
            if !missing.is_empty() {
                return Some(Blocker::Gates(missing));
            }
            if let Some(until) = self.soak_until(index, cfg, &p.version).filter(|until| *until > self.now) {
                return Some(Blocker::Soak(until));
            }
        }
        if let Some(wait) = self.scan_wait(p, cfg) {
            return Some(Blocker::Scan(wait));
        }
        let granted = p.approvals.len();
        (cfg.policy == Policy::Approval && granted < cfg.approvals as usize)
            .then_some(Blocker::Approvals { granted, required: cfg.approvals })
    }

    /// When the version has soaked long enough in the previous stage; far future if it is not
    /// (or no longer) healthy there.
    fn soak_until(&self, index: usize, cfg: &StageConfig, version: &Version) -> Option<DateTime<Utc>> {
        if index == 0 || cfg.soak_secs == 0 {
            return None;
        }
        let previous = self.stage(&self.pipeline.stages[index - 1].name);
        let soak = Duration::seconds(i64::try_from(cfg.soak_secs).unwrap_or(i64::MAX / 2_000));
        match (previous.last_healthy, previous.healthy_since) {
            (Some(healthy), Some(since)) if healthy.same(version) => Some(since + soak),
            _ => Some(DateTime::<Utc>::MAX_UTC),
        }
    }

    /// Starts `id` if nothing blocks it; else records (once) what it waits for.
    pub(super) fn try_start(&mut self, id: &str) {
        let Some(p) = self.state.promotions.get(id).filter(|p| p.state == PromotionState::Pending).cloned() else {
            return;
        };
        match self.blocker(&p) {
            None => self.start_write(id),
            Some(blocker) if blocker.label() != p.waiting_on => {
                let label = blocker.label();
                if let Some(p) = self.promotion_mut(id) {
                    p.waiting_on = label.clone();
                    p.waiting_for = Some(blocker.kind());
                }
                self.set_run(p.run_id.as_deref(), RunState::Waiting, Some(&p.stage));
                if let Blocker::Scan(wait) = &blocker {
                    self.scan_waits(&p, wait);
                }
                self.timeline(p.run_id.as_deref(), &p.stage, "waiting", SYSTEM, label.clone());
                self.audit(
                    SYSTEM,
                    "wait",
                    Some(&p.stage),
                    &label,
                    json!({ "promotion_id": id, "tag": p.version.image.tag }),
                );
            }
            Some(_) => {}
        }
    }

    /// The promotion becomes what the stage should run; the write-back takes it from here.
    pub(super) fn start_write(&mut self, id: &str) {
        let Some(p) = self.promotion_mut(id) else { return };
        p.state = PromotionState::Requested;
        p.waiting_on.clear();
        p.waiting_for = None;
        let p = p.clone();
        let stage = self.stage_mut(&p.stage);
        stage.desired = Some(p.version.clone());
        stage.desired_promotion = Some(p.id.clone());
        self.set_run(p.run_id.as_deref(), RunState::Running, Some(&p.stage));
        self.emit(Outgoing::PromotionRequested(v1::PromotionRequested {
            promotion_id: p.id.clone(),
            app: self.app(),
            stage: p.stage.to_string(),
            image: Some(p.version.image.clone()),
            source: Some(p.version.source.clone()),
            trigger: p.trigger.to_proto().into(),
            actor: p.actor.clone(),
        }));
        let tag = &p.version.image.tag;
        self.timeline(
            p.run_id.as_deref(),
            &p.stage,
            "promotion-requested",
            &p.actor,
            format!("{tag} ({})", p.trigger.as_str()),
        );
        let detail = json!({
            "promotion_id": p.id, "tag": tag, "digest": p.version.image.digest,
            "commit": p.version.source.commit_sha, "trigger": p.trigger.as_str(), "approvals": p.approvals,
        });
        self.audit(&p.actor, "promote", Some(&p.stage), &p.reason, detail);
        let frozen = self.stage_config(&p.stage).and_then(|(_, cfg)| freeze::active(&cfg.freeze, self.now));
        if let Some(window) = frozen.filter(|_| p.override_freeze) {
            let detail = json!({ "promotion_id": p.id, "window": window.label() });
            self.audit(&p.actor, "freeze-override", Some(&p.stage), &p.reason, detail);
        }
        self.scan_passed(&p);
    }
}

/// A version as an id part: its commit's first seven hex digits, else its tag made of
/// `[a-z0-9.]` (other characters become `-`, at most 20), else `v`.
fn short_version(version: &Version) -> String {
    let sha = &version.source.commit_sha;
    if sha.len() >= 7 && sha.bytes().all(|b| b.is_ascii_hexdigit()) {
        return sha[..7].to_ascii_lowercase();
    }
    let tag: String = (version.image.tag.chars().take(20))
        .map(|c| if c.is_ascii_alphanumeric() || c == '.' { c.to_ascii_lowercase() } else { '-' })
        .collect();
    let tag = tag.trim_matches('-');
    if tag.is_empty() { "v".to_owned() } else { tag.to_owned() }
}
