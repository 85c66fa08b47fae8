//! Verification after deploy in whole flows: a verified stage opens the next one only after its
//! checks passed; a failure rolls back and holds like a degraded report; an inconclusive run
//! waits for `/verify-stage`; the command is refused with a reason where it cannot run.

use super::*;
use slipway_catalog::verify::Check;

/// The test pipeline with a smoke test on staging (and prod keeps its auto rollback).
fn verified_pipeline(auto_rollback: bool) -> PipelineConfig {
    let mut p = pipeline();
    let smoke: Check = serde_json::from_value(
        serde_json::json!({ "web": { "name": "smoke", "url": "http://staging.local/healthz" } }),
    )
    .expect("check");
    p.stages[1].verification = vec![smoke];
    p.stages[1].auto_rollback = auto_rollback;
    p
}

fn verification_requests(effects: &[Effect]) -> Vec<v1::VerificationRequested> {
    (emitted(effects).into_iter())
        .filter_map(|o| if let Outgoing::VerificationRequested(r) = o { Some(r.clone()) } else { None })
        .collect()
}

impl World {
    /// Carries `tag` to staging, healthy there: its checks are asked for.
    fn carry_to_staging(&mut self, tag: &str) -> (String, Vec<Effect>) {
        self.build(tag);
        self.land("dev");
        self.approve("bob", "staging");
        let id = self.desired("staging").expect("staging").id.clone();
        self.step(Event::Committed {
            promotion_id: id.clone(),
            repository: "git://gitops".into(),
            branch: "main".into(),
            commit: format!("c-{id}"),
            pull_request_url: String::new(),
        });
        let effects = self.step(Event::Healthy { promotion_id: id.clone() });
        (id, effects)
    }

    fn verified(&mut self, id: &str, verdict: Verdict) -> Vec<Effect> {
        self.step(Event::Verified {
            promotion_id: id.to_owned(),
            verdict,
            message: "smoke: expected 200, got 503".into(),
        })
    }
}

#[test]
fn the_next_stage_opens_only_after_the_checks_passed() {
    let mut w = World::with(verified_pipeline(false));
    let (id, effects) = w.carry_to_staging("v1");
    let asked = verification_requests(&effects);
    assert_eq!(asked.len(), 1, "{effects:?}");
    assert_eq!((asked[0].promotion_id.as_str(), asked[0].requested_by.as_str()), (id.as_str(), "healthy"));
    assert_eq!(w.state.promotions[&id].state, PromotionState::Verifying);
    assert!(w.pending("prod").is_none(), "prod waits for the checks");
    assert!(w.state.stages["staging"].last_healthy.is_none(), "not a good version yet");

    w.verified(&id, Verdict::Successful);
    assert_eq!(w.state.promotions[&id].state, PromotionState::Healthy);
    assert!(w.pending("prod").is_some(), "prod opens once verified");
    assert!(w.state.stages["staging"].last_healthy.as_ref().is_some_and(|v| v.same(&version("v1"))));
    // A late second verdict changes nothing.
    let late = w.verified(&id, Verdict::Failed);
    assert!(emitted(&late).is_empty(), "{late:?}");
}

#[test]
fn a_failed_verification_rolls_back_and_holds_as_degraded_does() {
    let mut w = World::with(verified_pipeline(true));
    let (v1_id, _) = w.carry_to_staging("v1");
    w.verified(&v1_id, Verdict::Successful);
    let (v2_id, _) = w.carry_to_staging("v2");
    // Long after the watch window: a verification failure still counts.
    w.now += chrono::Duration::hours(2);
    let effects = w.verified(&v2_id, Verdict::Failed);
    let rolled: Vec<_> = (emitted(&effects).into_iter())
        .filter_map(|o| if let Outgoing::PromotionRolledBack(r) = o { Some(r.clone()) } else { None })
        .collect();
    assert_eq!(rolled.len(), 1, "{effects:?}");
    assert!(rolled[0].automatic && rolled[0].reason.contains("verification failed"), "{:?}", rolled[0]);
    assert_eq!(rolled[0].to.as_ref().map(|i| i.tag.as_str()), Some("v1"));
    assert!(w.state.stages["staging"].hold.is_some(), "held so the next build does not undo it");
    assert_eq!(run_state(&w, "v2"), RunState::RolledBack);
    assert!(audits(&effects).contains(&(SYSTEM.to_owned(), "verification-failed".to_owned())));
}

#[test]
fn without_auto_rollback_a_failed_verification_fails_the_run() {
    let mut w = World::with(verified_pipeline(false));
    let (id, _) = w.carry_to_staging("v1");
    w.verified(&id, Verdict::Error);
    assert_eq!(w.state.promotions[&id].state, PromotionState::Degraded);
    assert_eq!(run_state(&w, "v1"), RunState::Failed);
    assert!(w.pending("prod").is_none());
}

#[test]
fn an_inconclusive_verification_waits_for_verify_stage() {
    let mut w = World::with(verified_pipeline(false));
    let (id, _) = w.carry_to_staging("v1");
    w.verified(&id, Verdict::Inconclusive);
    assert_eq!(run_state(&w, "v1"), RunState::Waiting);
    assert!(w.pending("prod").is_none());

    // mallory may not; bob (a staging approver) may, and the checks run again.
    w.cmd(CommandKind::Verify, "mallory", Some("staging"), None);
    assert_eq!(w.reply.clone().expect_err("not allowed").reason, Refusal::NotAllowed);
    let effects = w.cmd(CommandKind::Verify, "bob", Some("staging"), None);
    let asked = verification_requests(&effects);
    assert_eq!(asked.len(), 1, "{effects:?}");
    assert_eq!(asked[0].requested_by, "bob");
    assert_eq!(w.reply, Ok(Done { promotion_id: Some(id.clone()), ..Done::default() }));
    w.verified(&id, Verdict::Successful);
    assert!(w.pending("prod").is_some(), "verified on the second try: prod opens");

    // Checked again after the run moved on: passing does not open prod a second time.
    let opened = w.state.promotions.values().filter(|p| p.stage.as_str() == "prod").count();
    w.cmd(CommandKind::Verify, "bob", Some("staging"), None);
    w.verified(&id, Verdict::Successful);
    assert_eq!(w.state.promotions.values().filter(|p| p.stage.as_str() == "prod").count(), opened);
}

#[test]
fn verify_stage_is_refused_where_it_cannot_run() {
    let mut w = World::with(verified_pipeline(false));
    w.cmd(CommandKind::Verify, "bob", None, None);
    assert_eq!(w.reply.clone().expect_err("no stage").reason, Refusal::StageRequired);
    let effects = w.cmd(CommandKind::Verify, "bob", Some("staging"), None);
    assert_eq!(w.reply.clone().expect_err("nothing runs").reason, Refusal::NothingToVerify);
    let refused = refusals(&effects);
    assert_eq!(refused.len(), 1);
    assert_eq!((refused[0].command(), refused[0].reason.as_str()), (v1::CommandKind::Verify, "nothing-to-verify"));
    w.cmd(CommandKind::Verify, "root", Some("dev"), None);
    assert_eq!(w.reply.clone().expect_err("dev has no checks").reason, Refusal::NoChecks);
}

#[test]
fn a_rollback_is_not_verified_again() {
    let mut w = World::with(verified_pipeline(false));
    let (v1_id, _) = w.carry_to_staging("v1");
    w.verified(&v1_id, Verdict::Successful);
    let (v2_id, _) = w.carry_to_staging("v2");
    w.verified(&v2_id, Verdict::Successful);
    w.cmd(CommandKind::Rollback, "bob", Some("staging"), None);
    let back = w.desired("staging").expect("rollback").id.clone();
    w.step(Event::Committed {
        promotion_id: back.clone(),
        repository: "git://gitops".into(),
        branch: "main".into(),
        commit: "c-back".into(),
        pull_request_url: String::new(),
    });
    let effects = w.step(Event::Healthy { promotion_id: back.clone() });
    assert!(verification_requests(&effects).is_empty(), "a rollback goes to a version verified before");
    assert_eq!(w.state.promotions[&back].state, PromotionState::Healthy);
}
