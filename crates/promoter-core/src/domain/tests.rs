//! Unit tests of every transition of [`decide`](super::decide): a small in-memory "store"
//! applies the save effects, so whole flows run without a runtime or a database.

use chrono::{DateTime, Duration, Utc};
use slipway_mesh::names::{AppName, EnvName};
use slipway_mesh::v1;

use super::*;
use crate::freeze::FreezeWindow;
use crate::pipeline::{PipelineConfig, Policy, StageConfig};

const AUTHOR: &str = "dana";

fn env(s: &str) -> EnvName {
    EnvName::parse(s).expect("env")
}

fn stage(name: &str, policy: Policy, approvals: u32, approvers: &[&str]) -> StageConfig {
    StageConfig {
        name: env(name),
        policy,
        approvals,
        approvers: approvers.iter().map(|a| (*a).to_owned()).collect(),
        teams: Vec::new(),
        four_eyes: false,
        soak_secs: 0,
        required_gates: Vec::new(),
        freeze: Vec::new(),
        auto_rollback: false,
        watch_window_secs: 600,
        pull_request: false,
        scan: None,
        verification: Vec::new(),
    }
}

/// dev (auto) → staging (1 approval: bob or team sre) → prod (2 approvals, four eyes, auto rollback).
fn pipeline() -> PipelineConfig {
    let mut staging = stage("staging", Policy::Approval, 1, &["bob"]);
    staging.teams = vec!["sre".into()];
    let mut prod = stage("prod", Policy::Approval, 2, &["alice", "bob", AUTHOR]);
    prod.four_eyes = true;
    prod.auto_rollback = true;
    PipelineConfig {
        stages: vec![stage("dev", Policy::Auto, 1, &[]), staging, prod],
        admins: vec!["root".into()],
        teams: [("sre".to_owned(), vec!["carol".to_owned()])].into(),
        tick_secs: 10,
    }
}

fn t0() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-11-24T10:00:00Z").expect("time").with_timezone(&Utc)
}

fn version(tag: &str) -> Version {
    Version {
        image: v1::ImageRef { repository: "registry.local/acme/writer".into(), tag: tag.into(), digest: String::new() },
        source: v1::SourceRef {
            repository: "acme/monorepo".into(),
            commit_sha: format!("{tag:0>40}"),
            r#ref: "refs/heads/main".into(),
            author: AUTHOR.into(),
        },
    }
}

/// The pipeline, one app's state, and a clock; `step` decides and applies.
struct World {
    pipeline: PipelineConfig,
    state: AppState,
    now: DateTime<Utc>,
    seq: u32,
    /// The reply of the last decision.
    reply: Reply,
}

impl World {
    fn new() -> Self {
        World::with(pipeline())
    }

    fn with(pipeline: PipelineConfig) -> Self {
        let state = AppState::new(AppName::parse("writer").expect("app"));
        World { pipeline, state, now: t0(), seq: 0, reply: Ok(Done::default()) }
    }

    fn step(&mut self, event: Event) -> Vec<Effect> {
        self.seq += 1;
        let input = Input { id: format!("ev{}", self.seq), at: self.now, event };
        let Decision { effects, reply } = decide(&self.pipeline, &self.state, input);
        self.reply = reply;
        for effect in &effects {
            match effect {
                Effect::SaveRun(run) => drop(self.state.runs.insert(run.id.clone(), run.clone())),
                Effect::SavePromotion(p) => drop(self.state.promotions.insert(p.id.clone(), p.clone())),
                Effect::SaveStage(name, st) => drop(self.state.stages.insert(name.to_string(), st.clone())),
                Effect::SaveMade(made) => self.state.made = *made,
                _ => {}
            }
        }
        effects
    }

    fn build(&mut self, tag: &str) -> Vec<Effect> {
        self.step(Event::Built { build_id: format!("b-{tag}"), version: version(tag) })
    }

    fn cmd(&mut self, kind: CommandKind, actor: &str, stage: Option<&str>, tag: Option<&str>) -> Vec<Effect> {
        let known = tag.map(version).filter(|v| self.state.runs.values().any(|r| r.version.same(v)));
        self.step(Event::Command(Command {
            kind,
            actor: actor.into(),
            stage: stage.map(env),
            promotion_id: None,
            tag: tag.map(Into::into),
            version: known,
            reason: String::new(),
            override_freeze: false,
            override_scan: false,
            repository: "acme/monorepo".into(),
            pull_request: 7,
        }))
    }

    fn approve(&mut self, actor: &str, stage: &str) -> Vec<Effect> {
        self.cmd(CommandKind::Approve, actor, Some(stage), None)
    }

    /// The promotion currently wanted in `stage`.
    fn desired(&self, stage: &str) -> Option<&Promotion> {
        let id = self.state.stages.get(stage)?.desired_promotion.as_ref()?;
        self.state.promotions.get(id)
    }

    fn pending(&self, stage: &str) -> Option<&Promotion> {
        self.state.promotions.values().find(|p| p.stage.as_str() == stage && p.state == PromotionState::Pending)
    }

    /// The write-back lands and the stage reports healthy.
    fn land(&mut self, stage: &str) -> String {
        let id = self.desired(stage).expect("desired").id.clone();
        let commit = format!("c-{id}");
        let (repository, branch) = ("git://gitops".to_owned(), "main".to_owned());
        self.step(Event::Committed {
            promotion_id: id.clone(),
            repository,
            branch,
            commit,
            pull_request_url: String::new(),
        });
        self.step(Event::Healthy { promotion_id: id.clone() });
        id
    }

    /// A build carried through all three stages to a healthy prod.
    fn carry_to_prod(&mut self, tag: &str) {
        self.build(tag);
        self.land("dev");
        self.approve("bob", "staging");
        self.land("staging");
        self.approve("alice", "prod");
        self.approve("bob", "prod");
        self.land("prod");
    }
}

fn emitted(effects: &[Effect]) -> Vec<&Outgoing> {
    effects.iter().filter_map(|e| if let Effect::Emit(o) = e { Some(o) } else { None }).collect()
}

fn requested(effects: &[Effect]) -> Vec<(String, String)> {
    (emitted(effects).into_iter())
        .filter_map(|o| {
            if let Outgoing::PromotionRequested(r) = o { Some((r.stage.clone(), r.image.clone()?.tag)) } else { None }
        })
        .collect()
}

fn rejections(effects: &[Effect]) -> Vec<v1::ApprovalRejected> {
    (emitted(effects).into_iter())
        .filter_map(|o| if let Outgoing::ApprovalRejected(r) = o { Some(r.clone()) } else { None })
        .collect()
}

/// `command.refused` of a hold, release, rollback or promote: never an `approval.rejected`.
fn refusals(effects: &[Effect]) -> Vec<v1::CommandRefused> {
    assert!(rejections(effects).is_empty(), "a refused command is not a rejected approval: {effects:?}");
    (emitted(effects).into_iter())
        .filter_map(|o| if let Outgoing::CommandRefused(r) = o { Some(r.clone()) } else { None })
        .collect()
}

fn audits(effects: &[Effect]) -> Vec<(String, String)> {
    (effects.iter())
        .filter_map(|e| if let Effect::Audit(a) = e { Some((a.actor.clone(), a.action.clone())) } else { None })
        .collect()
}

fn run_state(w: &World, tag: &str) -> RunState {
    w.state.runs.values().find(|r| r.version.image.tag == tag).expect("run").state
}

#[test]
fn a_build_starts_a_run_and_promotes_to_the_first_auto_stage() {
    let mut w = World::new();
    let effects = w.build("v1");
    assert_eq!(requested(&effects), [("dev".to_owned(), "v1".to_owned())]);
    assert_eq!(audits(&effects), [("slipway".into(), "run-started".into()), ("slipway".into(), "promote".into())]);
    assert!(matches!(effects[0], Effect::SaveRun(_)), "saves come first: {effects:?}");
    assert_eq!(w.desired("dev").expect("dev").state, PromotionState::Requested);
    assert_eq!(run_state(&w, "v1"), RunState::Running);
}

#[test]
fn deciding_the_same_input_twice_gives_the_same_effects() {
    let w = World::new();
    let input =
        Input { id: "e1".into(), at: t0(), event: Event::Built { build_id: "b".into(), version: version("v1") } };
    assert_eq!(decide(&w.pipeline, &w.state, input.clone()), decide(&w.pipeline, &w.state, input));
}

#[test]
fn a_commit_in_pr_mode_announces_its_pull_request() {
    let mut w = World::new();
    w.build("v1");
    let id = w.desired("dev").expect("dev").id.clone();
    let url = "https://github.example/o/r/pull/7".to_owned();
    let effects = w.step(Event::Committed {
        promotion_id: id,
        repository: "r".into(),
        branch: "slipway/web-dev-0123456789ab".into(),
        commit: "abc".into(),
        pull_request_url: url.clone(),
    });
    let committed = emitted(&effects).into_iter().find_map(|o| match o {
        Outgoing::PromotionCommitted(c) => Some(c.clone()),
        _ => None,
    });
    let committed = committed.expect("committed");
    assert_eq!((committed.pull_request_url, committed.gitops_branch.as_str()), (url, "slipway/web-dev-0123456789ab"));
}

#[test]
fn commit_emits_committed_and_healthy_asks_the_next_stage_for_approval() {
    let mut w = World::new();
    w.build("v1");
    let id = w.desired("dev").expect("dev").id.clone();
    let commit = Event::Committed {
        promotion_id: id.clone(),
        repository: "r".into(),
        branch: "main".into(),
        commit: "abc".into(),
        pull_request_url: String::new(),
    };
    let effects = w.step(commit.clone());
    assert!(emitted(&effects).iter().any(|o| matches!(o, Outgoing::PromotionCommitted(c) if c.gitops_commit == "abc")));
    assert!(w.step(commit).is_empty(), "a second commit report changes nothing");
    let effects = w.step(Event::Healthy { promotion_id: id });
    let asked = emitted(&effects).into_iter().find_map(|o| match o {
        Outgoing::ApprovalRequested(a) => Some(a.clone()),
        _ => None,
    });
    let asked = asked.expect("approval requested");
    assert_eq!(
        (asked.stage.as_str(), asked.required, asked.allowed_approvers.as_slice()),
        ("staging", 1, &["bob".to_owned()][..])
    );
    assert_eq!(asked.allowed_teams, ["sre"]);
    assert!(requested(&effects).is_empty(), "staging waits");
    assert_eq!(w.pending("staging").expect("pending").waiting_on, "approvals: 0/1");
    assert_eq!(run_state(&w, "v1"), RunState::Waiting);
    assert_eq!(w.state.stages["dev"].last_healthy.as_ref().map(|v| v.image.tag.as_str()), Some("v1"));
}

#[test]
fn an_allowed_approver_or_team_member_promotes_staging() {
    for approver in ["bob", "carol", "root"] {
        let mut w = World::new();
        w.build("v1");
        w.land("dev");
        let effects = w.approve(approver, "staging");
        assert!(
            emitted(&effects)
                .iter()
                .any(|o| matches!(o, Outgoing::ApprovalGranted(g) if g.granted == 1 && g.required == 1))
        );
        assert_eq!(requested(&effects), [("staging".to_owned(), "v1".to_owned())], "{approver}");
    }
}

#[test]
fn an_unauthorized_approval_is_rejected_with_who_may_approve() {
    let mut w = World::new();
    w.build("v1");
    w.land("dev");
    let effects = w.approve("mallory", "staging");
    let rejected = rejections(&effects);
    assert_eq!(rejected.len(), 1);
    assert_eq!((rejected[0].reason.as_str(), rejected[0].actor.as_str()), ("not-allowed", "mallory"));
    assert_eq!(
        (rejected[0].allowed_approvers.clone(), rejected[0].allowed_teams.clone()),
        (vec!["bob".into()], vec!["sre".into()])
    );
    assert_eq!((rejected[0].repository.as_str(), rejected[0].pull_request), ("acme/monorepo", 7));
    assert!(requested(&effects).is_empty());
    assert_eq!(audits(&effects), [("mallory".into(), "approve-refused".into())]);
}

#[test]
fn prod_needs_two_distinct_approvers_and_the_authors_approval_does_not_count() {
    let mut w = World::new();
    w.build("v1");
    w.land("dev");
    w.approve("bob", "staging");
    w.land("staging");
    let effects = w.approve(AUTHOR, "prod");
    assert_eq!(rejections(&effects)[0].reason, "self-approval");
    let effects = w.approve("alice", "prod");
    assert!(requested(&effects).is_empty(), "one of two");
    assert_eq!(w.pending("prod").expect("pending").waiting_on, "approvals: 1/2");
    assert_eq!(rejections(&w.approve("alice", "prod"))[0].reason, "already-approved");
    let effects = w.approve("bob", "prod");
    assert_eq!(requested(&effects), [("prod".to_owned(), "v1".to_owned())]);
    assert_eq!(w.desired("prod").expect("prod").approvals, ["alice", "bob"]);
    w.land("prod");
    assert_eq!(run_state(&w, "v1"), RunState::Succeeded);
}

#[test]
fn approving_without_anything_pending_or_ambiguously_is_refused() {
    let mut w = World::new();
    assert_eq!(rejections(&w.approve("bob", "staging"))[0].reason, "no-pending-promotion");
    assert_eq!(rejections(&w.cmd(CommandKind::Approve, "bob", Some("qa"), None))[0].reason, "unknown-stage");
    w.build("v1");
    w.land("dev");
    // No stage named: the one promotion waiting for approval is meant.
    let effects = w.cmd(CommandKind::Approve, "bob", None, None);
    assert_eq!(requested(&effects), [("staging".to_owned(), "v1".to_owned())]);
}

#[test]
fn a_degraded_stage_within_the_window_rolls_back_and_holds() {
    let mut w = World::new();
    w.carry_to_prod("v1");
    w.build("v2");
    w.land("dev");
    w.approve("bob", "staging");
    w.land("staging");
    w.approve("alice", "prod");
    w.approve("bob", "prod");
    let id = w.desired("prod").expect("prod").id.clone();
    let commit = Event::Committed {
        promotion_id: id.clone(),
        repository: "r".into(),
        branch: "main".into(),
        commit: "c".into(),
        pull_request_url: String::new(),
    };
    w.step(commit);
    w.now += Duration::minutes(5);
    let effects =
        w.step(Event::Degraded { promotion_id: id.clone(), status: "Degraded".into(), message: "crash loop".into() });
    assert_eq!(requested(&effects), [("prod".to_owned(), "v1".to_owned())], "back to the last healthy version");
    let rolled = emitted(&effects).into_iter().find_map(|o| match o {
        Outgoing::PromotionRolledBack(r) => Some(r.clone()),
        _ => None,
    });
    let rolled = rolled.expect("rolled back");
    assert!(rolled.automatic);
    assert_eq!((rolled.from.expect("from").tag, rolled.to.expect("to").tag), ("v2".to_owned(), "v1".to_owned()));
    assert!(emitted(&effects).iter().any(|o| matches!(o, Outgoing::HoldPlaced(h) if h.stage == "prod")));
    let actions: Vec<String> = audits(&effects).into_iter().map(|(_, a)| a).collect();
    assert_eq!(actions, ["degraded", "promote", "rollback", "hold"]);
    assert!(w.state.stages["prod"].hold.is_some());
    assert_eq!(w.state.promotions[&id].state, PromotionState::RolledBack);
    assert_eq!(run_state(&w, "v2"), RunState::RolledBack);
    let rollback = w.desired("prod").expect("rollback").clone();
    assert_eq!((rollback.trigger, rollback.version.image.tag.as_str()), (Trigger::Rollback, "v1"));
}

#[test]
fn a_later_build_does_not_undo_a_rollback() {
    let mut w = World::new();
    w.carry_to_prod("v1");
    w.carry_to_prod("v2");
    let effects = w.cmd(CommandKind::Rollback, "bob", Some("prod"), None);
    assert_eq!(requested(&effects), [("prod".to_owned(), "v1".to_owned())]);
    w.land("prod");
    // v3 goes through dev and staging, and gets both prod approvals: prod stays on v1.
    w.build("v3");
    w.land("dev");
    w.approve("bob", "staging");
    w.land("staging");
    w.approve("alice", "prod");
    let effects = w.approve("bob", "prod");
    assert!(requested(&effects).is_empty(), "{effects:?}");
    assert_eq!(w.desired("prod").expect("prod").version.image.tag, "v1");
    assert!(w.pending("prod").expect("pending").waiting_on.starts_with("hold: rollback"));
    // Releasing the hold lets the approved v3 go.
    let effects = w.cmd(CommandKind::Release, "bob", Some("prod"), None);
    assert!(emitted(&effects).iter().any(|o| matches!(o, Outgoing::HoldReleased(_))));
    assert_eq!(requested(&effects), [("prod".to_owned(), "v3".to_owned())]);
}

#[test]
fn a_hold_on_the_first_stage_keeps_new_builds_out() {
    let mut w = World::new();
    let effects = w.cmd(CommandKind::Hold, "root", Some("dev"), None);
    assert_eq!(audits(&effects), [("root".into(), "hold".into())]);
    let effects = w.build("v1");
    assert!(requested(&effects).is_empty());
    assert_eq!(w.pending("dev").expect("pending").waiting_on, "hold: held by root");
    assert!(refusals(&w.cmd(CommandKind::Hold, "mallory", Some("dev"), None))[0].reason == "not-allowed");
    assert_eq!(refusals(&w.cmd(CommandKind::Release, "bob", Some("staging"), None))[0].reason, "not-held");
}

#[test]
fn degraded_outside_the_window_or_without_auto_rollback_fails_the_run() {
    let mut w = World::new();
    w.carry_to_prod("v1");
    w.build("v2");
    let id = w.land("dev");
    let effects = w.step(Event::Degraded { promotion_id: id, status: "Degraded".into(), message: String::new() });
    assert!(requested(&effects).is_empty(), "dev has no auto rollback");
    assert_eq!(run_state(&w, "v2"), RunState::Failed);

    let mut w = World::new();
    w.carry_to_prod("v1");
    w.carry_to_prod("v2");
    w.now += Duration::hours(1);
    let id = w.desired("prod").expect("prod").id.clone();
    let effects = w.step(Event::Degraded { promotion_id: id, status: "Degraded".into(), message: String::new() });
    assert!(requested(&effects).is_empty(), "outside the watch window");
}

#[test]
fn without_an_earlier_healthy_version_there_is_nothing_to_roll_back_to() {
    let mut w = World::new();
    w.build("v1");
    w.land("dev");
    w.approve("bob", "staging");
    w.land("staging");
    w.approve("alice", "prod");
    w.approve("bob", "prod");
    let id = w.desired("prod").expect("prod").id.clone();
    let effects = w.step(Event::Degraded { promotion_id: id, status: "Degraded".into(), message: String::new() });
    assert!(audits(&effects).iter().any(|(_, a)| a == "rollback-impossible"));
    assert!(requested(&effects).is_empty());
    assert_eq!(refusals(&w.cmd(CommandKind::Rollback, "bob", Some("prod"), None))[0].reason, "no-healthy-version");
}

#[test]
fn rollback_to_a_named_tag_and_refusals() {
    let mut w = World::new();
    w.carry_to_prod("v1");
    w.carry_to_prod("v2");
    w.carry_to_prod("v3");
    let effects = w.cmd(CommandKind::Rollback, "alice", Some("prod"), Some("v1"));
    assert_eq!(requested(&effects), [("prod".to_owned(), "v1".to_owned())]);
    assert_eq!(refusals(&w.cmd(CommandKind::Rollback, "alice", Some("prod"), Some("v9")))[0].reason, "unknown-version");
    assert_eq!(refusals(&w.cmd(CommandKind::Rollback, "alice", None, None))[0].reason, "stage-required");
    let refused = refusals(&w.cmd(CommandKind::Rollback, "mallory", Some("prod"), None));
    assert_eq!((refused[0].reason.as_str(), refused[0].command()), ("not-allowed", v1::CommandKind::Rollback));
    assert_eq!(
        (refused[0].app.as_str(), refused[0].stage.as_str(), refused[0].actor.as_str()),
        ("writer", "prod", "mallory")
    );
}

#[test]
fn reject_fails_the_run() {
    let mut w = World::new();
    w.build("v1");
    w.land("dev");
    let effects = w.cmd(CommandKind::Reject, "carol", Some("staging"), None);
    assert_eq!(rejections(&effects)[0].reason, "rejected");
    assert_eq!(run_state(&w, "v1"), RunState::Failed);
    assert!(w.pending("staging").is_none());
}

#[test]
fn a_newer_version_supersedes_one_still_waiting() {
    let mut w = World::new();
    w.build("v1");
    w.land("dev");
    w.build("v2");
    w.land("dev");
    assert_eq!(w.pending("staging").expect("pending").version.image.tag, "v2");
    assert_eq!(run_state(&w, "v1"), RunState::Superseded);
    // A late health report of the older version changes nothing but its own row.
    let effects = w.approve("bob", "staging");
    assert_eq!(requested(&effects), [("staging".to_owned(), "v2".to_owned())]);
}

#[test]
fn manual_promotion_counts_the_promoters_approval() {
    let mut w = World::new();
    w.carry_to_prod("v1");
    w.build("v2");
    w.land("dev");
    // bob promotes v2 straight to prod: his approval counts, a second one is needed.
    let effects = w.cmd(CommandKind::Promote, "bob", Some("prod"), Some("v2"));
    assert!(requested(&effects).is_empty());
    let effects = w.approve("alice", "prod");
    assert_eq!(requested(&effects), [("prod".to_owned(), "v2".to_owned())]);
    assert_eq!(w.desired("prod").expect("prod").trigger, Trigger::Manual);
    // Without a tag, dev is promoted from what... nothing is before dev.
    assert_eq!(refusals(&w.cmd(CommandKind::Promote, "root", Some("dev"), None))[0].reason, "nothing-to-promote");
    assert_eq!(refusals(&w.cmd(CommandKind::Promote, "bob", Some("staging"), Some("zz")))[0].reason, "unknown-version");
    assert_eq!(refusals(&w.cmd(CommandKind::Promote, "mallory", Some("staging"), None))[0].reason, "not-allowed");
}

fn frozen_pipeline() -> PipelineConfig {
    let mut p = pipeline();
    p.stages[0].freeze = vec![FreezeWindow {
        days: Vec::new(),
        start: "09:00".into(),
        end: "11:00".into(),
        time_zone: "UTC".into(),
        name: "morning freeze".into(),
    }];
    p
}

#[test]
fn a_freeze_window_holds_promotions_until_it_ends_or_an_admin_overrides() {
    let mut w = World::with(frozen_pipeline());
    let effects = w.build("v1");
    assert!(requested(&effects).is_empty());
    assert_eq!(w.pending("dev").expect("pending").waiting_on, "freeze: morning freeze");
    assert!(w.step(Event::Tick).is_empty(), "nothing changes inside the window");
    w.now += Duration::hours(1);
    assert_eq!(requested(&w.step(Event::Tick)), [("dev".to_owned(), "v1".to_owned())]);

    let mut w = World::with(frozen_pipeline());
    w.build("v1");
    let mut command = Command {
        kind: CommandKind::Promote,
        actor: "root".into(),
        stage: Some(env("dev")),
        promotion_id: None,
        tag: Some("v1".into()),
        version: Some(version("v1")),
        reason: "hotfix".into(),
        override_freeze: true,
        override_scan: false,
        repository: String::new(),
        pull_request: 0,
    };
    let effects = w.step(Event::Command(command.clone()));
    assert_eq!(requested(&effects), [("dev".to_owned(), "v1".to_owned())]);
    assert!(audits(&effects).contains(&("root".into(), "freeze-override".into())));
    command.actor = "bob".into();
    w.pipeline.stages[0].approvers = vec!["bob".into()];
    let effects = w.step(Event::Command(command));
    assert!(requested(&effects).is_empty(), "only admins override");
    assert!(audits(&effects).contains(&("bob".into(), "freeze-override-ignored".into())));
}

#[test]
fn required_gates_and_soak_time_hold_auto_promotion() {
    let mut p = pipeline();
    p.stages[1].policy = Policy::Auto;
    p.stages[1].required_gates = vec!["ci".into()];
    p.stages[1].soak_secs = 600;
    let mut w = World::with(p);
    w.build("v1");
    w.land("dev");
    assert_eq!(w.pending("staging").expect("pending").waiting_on, "gates: ci");
    let commit = version("v1").source.commit_sha;
    w.state.gates.entry(commit.clone()).or_default().insert("ci".into());
    let effects = w.step(Event::GatePassed { commit });
    assert!(requested(&effects).is_empty());
    assert!(w.pending("staging").expect("pending").waiting_on.starts_with("soak until"));
    w.now += Duration::minutes(11);
    assert_eq!(requested(&w.step(Event::Tick)), [("staging".to_owned(), "v1".to_owned())]);
}

#[test]
fn write_failures_sync_and_stale_reports() {
    let mut w = World::new();
    w.build("v1");
    let id = w.desired("dev").expect("dev").id.clone();
    let effects = w.step(Event::WriteFailed { promotion_id: id.clone(), message: "file missing".into() });
    assert!(emitted(&effects).iter().any(|o| matches!(o, Outgoing::PromotionFailed(f) if f.reason == "write-failed")));
    assert_eq!(run_state(&w, "v1"), RunState::Failed);
    assert!(w.step(Event::Healthy { promotion_id: id }).is_empty(), "a failed promotion is not judged");
    assert!(w.step(Event::Healthy { promotion_id: "nope".into() }).is_empty());

    let mut w = World::new();
    w.build("v2");
    let id = w.desired("dev").expect("dev").id.clone();
    w.step(Event::Committed {
        promotion_id: id.clone(),
        repository: "r".into(),
        branch: "b".into(),
        commit: "c".into(),
        pull_request_url: String::new(),
    });
    let effects = w.step(Event::Synced { promotion_id: id.clone(), revision: "c".into() });
    assert!(
        matches!(&effects[..], [Effect::SavePromotion(p), Effect::Timeline { .. }] if p.state == PromotionState::Synced)
    );
}

#[test]
fn no_stages_means_no_runs() {
    let mut w = World::with(PipelineConfig::default());
    let effects = w.build("v1");
    assert_eq!(audits(&effects), [("slipway".into(), "run-ignored".into())]);
    assert!(w.state.runs.is_empty());
}

#[test]
fn ids_are_readable_and_count_per_app() {
    let mut w = World::new();
    let mut built = version("v1");
    built.source.commit_sha = format!("4b52662{}", "0".repeat(33));
    let effects = w.step(Event::Built { build_id: "b-1".into(), version: built.clone() });
    assert!(effects.contains(&Effect::SaveMade(Made { runs: 1, promotions: 1 })), "{effects:?}");
    assert_eq!(w.state.runs.keys().collect::<Vec<_>>(), ["writer-4b52662-1"]);
    assert_eq!(w.desired("dev").expect("dev").id, "writer-dev-4b52662-1");
    w.land("dev");
    let staging = w.pending("staging").expect("staging");
    assert_eq!(staging.id, "writer-staging-4b52662-2");
    assert_eq!((staging.waiting_for, staging.waiting_on.as_str()), (Some(Waiting::Approvals), "approvals: 0/1"));
    w.approve("bob", "staging");
    assert_eq!(w.desired("staging").expect("started").waiting_for, None, "cleared once it starts");
    // A tag without a commit names the version; the counts go on.
    w.build("1.4/rc");
    assert_eq!(w.state.made, Made { runs: 2, promotions: 3 });
    assert!(w.state.promotions.contains_key("writer-dev-1.4-rc-3"), "{:?}", w.state.promotions.keys());
    // Deciding the same input on the same state gives the same ids.
    let again = decide(&w.pipeline, &w.state, Input { id: "x".into(), at: w.now, event: Event::Tick });
    let again2 = decide(&w.pipeline, &w.state, Input { id: "y".into(), at: w.now, event: Event::Tick });
    assert_eq!(again, again2);
}

#[path = "scan_gate_tests.rs"]
mod scan_gate;

#[test]
fn a_decision_carries_its_reply() {
    let mut w = World::new();
    w.build("v1");
    w.land("dev");
    w.approve("bob", "staging");
    let staging = w.desired("staging").expect("staging").id.clone();
    assert_eq!(w.reply, Ok(Done { promotion_id: Some(staging), granted: 1, required: 1, to: None }));
    w.cmd(CommandKind::Rollback, "mallory", Some("prod"), None);
    let refused = w.reply.clone().expect_err("mallory may not roll back");
    assert_eq!((refused.reason, refused.reason.as_str()), (Refusal::NotAllowed, "not-allowed"));
    assert!(!refused.allowed_approvers.is_empty(), "names who may: {refused:?}");
    w.cmd(CommandKind::Hold, "bob", Some("staging"), None);
    assert_eq!(w.reply, Ok(Done::default()), "a hold makes nothing to point at");
}

#[path = "verification_tests.rs"]
mod verification;
