//! The scan policy as a blocker in whole flows: dev warns, prod blocks naming the CVE, an
//! allow entry unblocks until it expires, a stale or missing report is re-scanned first, a
//! failed scan blocks or passes as `on_scan_error` says, and an admin override is audited.

use super::*;
use crate::domain::scan_policy::{ScanOutcome, ScanRecord};
use slipway_catalog::scan::{Allow, OnScanError, ScanPolicy, Severity, Warn};

const DIGEST: &str = "sha256:1111111111111111111111111111111111111111111111111111111111111111";

/// dev warns only; prod blocks CRITICAL (and fixable HIGH), reports at most 24 hours old.
fn scanned_pipeline() -> PipelineConfig {
    let mut p = pipeline();
    p.stages[0].scan = Some(ScanPolicy { warn: Warn::All(true), ..Default::default() });
    p.stages[2].scan = Some(ScanPolicy {
        block: vec![Severity::Critical],
        block_fixable: vec![Severity::High],
        max_age_hours: Some(24),
        ..Default::default()
    });
    p
}

/// debian-buster.json as build.scanned carries it (a fixable CRITICAL and a LOW), with its SBOM.
fn buster(at: DateTime<Utc>) -> ScanRecord {
    let report =
        v1::BuildScanned { sbom_digest: "sha256:5b0m".into(), ..crate::domain::scan_policy::tests::buster_report() };
    ScanRecord { at, outcome: ScanOutcome::Report(Box::new(report)) }
}

impl World {
    fn build_digest(&mut self, tag: &str) -> Vec<Effect> {
        let mut v = version(tag);
        v.image.digest = DIGEST.into();
        self.step(Event::Built { build_id: format!("b-{tag}"), version: v })
    }

    /// Like `land`, returning what the healthy report caused.
    fn land_effects(&mut self, stage: &str) -> Vec<Effect> {
        let id = self.desired(stage).expect("desired").id.clone();
        let (repository, branch, commit) = ("r".to_owned(), "main".to_owned(), format!("c-{id}"));
        let url = String::new();
        self.step(Event::Committed { promotion_id: id.clone(), repository, branch, commit, pull_request_url: url });
        self.step(Event::Healthy { promotion_id: id })
    }

    fn scanned(&mut self, record: ScanRecord) -> Vec<Effect> {
        self.state.scans.insert(DIGEST.into(), record);
        self.step(Event::Scanned { digest: DIGEST.into() })
    }

    /// v1 built and scanned, through dev and staging; prod approved twice.
    fn carry_to_prod_gate(&mut self) -> Vec<Effect> {
        self.state.scans.insert(DIGEST.into(), buster(self.now));
        self.build_digest("v1");
        self.land("dev");
        self.approve("bob", "staging");
        self.land("staging");
        self.approve("alice", "prod");
        self.approve("bob", "prod")
    }
}

fn actions(effects: &[Effect]) -> Vec<String> {
    audits(effects).into_iter().map(|(_, action)| action).collect()
}

fn scan_requests(effects: &[Effect]) -> Vec<v1::ScanRequested> {
    (emitted(effects).into_iter())
        .filter_map(|o| if let Outgoing::ScanRequested(r) = o { Some(r.clone()) } else { None })
        .collect()
}

#[test]
fn dev_promotes_with_a_warning_and_prod_is_blocked_naming_the_cve() {
    let mut w = World::with(scanned_pipeline());
    w.state.scans.insert(DIGEST.into(), buster(w.now));
    let effects = w.build_digest("v1");
    assert_eq!(requested(&effects), [("dev".to_owned(), "v1".to_owned())]);
    assert!(actions(&effects).contains(&"scan-warning".to_owned()), "{effects:?}");
    let warned = effects.iter().any(|e| {
        matches!(e, Effect::Timeline { step, detail, .. } if step == "scan-warnings" && detail.contains("CVE-2019-18224"))
    });
    assert!(warned, "{effects:?}");

    w.land("dev");
    w.approve("bob", "staging");
    w.land("staging");
    w.approve("alice", "prod");
    let effects = w.approve("bob", "prod");
    assert!(requested(&effects).is_empty(), "prod is blocked: {effects:?}");
    let waiting = &w.pending("prod").expect("pending").waiting_on;
    assert!(waiting.starts_with("scan: blocked by CVE-2019-18224 (CRITICAL libidn2-0"), "{waiting}");
    assert!(waiting.contains("scan.allow"), "{waiting}");
}

#[test]
fn the_approval_request_says_what_the_scan_blocks() {
    let mut w = World::with(scanned_pipeline());
    w.state.scans.insert(DIGEST.into(), buster(w.now));
    w.build_digest("v1");
    w.land("dev");
    w.approve("bob", "staging");
    let id = w.desired("staging").expect("staging").id.clone();
    let (repository, branch, commit) = ("r".to_owned(), "main".to_owned(), "c".to_owned());
    let url = String::new();
    w.step(Event::Committed { promotion_id: id.clone(), repository, branch, commit, pull_request_url: url });
    let effects = w.step(Event::Healthy { promotion_id: id });
    let asked = emitted(&effects).into_iter().find_map(|o| match o {
        Outgoing::ApprovalRequested(a) if a.stage == "prod" => Some(a.clone()),
        _ => None,
    });
    let asked = asked.expect("prod approval requested");
    assert!(asked.blocked_by.starts_with("scan: blocked by CVE-2019-18224"), "{}", asked.blocked_by);
}

#[test]
fn an_allow_entry_unblocks_until_it_expires() {
    let mut w = World::with(scanned_pipeline());
    w.carry_to_prod_gate();
    let allow =
        |expires: &str| Allow { id: "CVE-2019-18224".into(), reason: "not reachable".into(), expires: expires.into() };
    w.pipeline.stages[2].scan.as_mut().expect("policy").allow = vec![allow("2026-12-31")];
    let effects = w.step(Event::Tick);
    assert_eq!(requested(&effects), [("prod".to_owned(), "v1".to_owned())]);

    // v2, same findings: the entry has expired by now, so it counts again and says so.
    let mut w = World::with(scanned_pipeline());
    w.pipeline.stages[2].scan.as_mut().expect("policy").allow = vec![allow("2026-11-23")];
    let effects = w.carry_to_prod_gate();
    assert!(requested(&effects).is_empty());
    let waiting = &w.pending("prod").expect("pending").waiting_on;
    assert!(waiting.contains("the allow entry for CVE-2019-18224 expired on 2026-11-23"), "{waiting}");
}

#[test]
fn a_stale_report_is_rescanned_once_and_the_new_report_decides() {
    let mut w = World::with(scanned_pipeline());
    w.state.scans.insert(DIGEST.into(), buster(w.now));
    w.build_digest("v1");
    w.land("dev");
    w.approve("bob", "staging");
    w.land("staging");
    w.now += Duration::hours(30);
    let mut effects = w.approve("alice", "prod");
    effects.extend(w.approve("bob", "prod"));
    let asked = scan_requests(&effects);
    assert_eq!(asked.len(), 1, "{effects:?}");
    assert_eq!((asked[0].stage.as_str(), asked[0].reason.as_str()), ("prod", "stale"));
    assert_eq!(asked[0].image.as_ref().map(|i| i.digest.as_str()), Some(DIGEST));
    assert_eq!((asked[0].build_id.as_str(), asked[0].sbom_digest.as_str()), ("b-v1", "sha256:5b0m"));
    assert!(w.pending("prod").expect("pending").waiting_on.contains("re-scan requested"));
    assert!(scan_requests(&w.step(Event::Tick)).is_empty(), "asked once, not on every tick");

    // The fresh report has no findings: prod goes.
    let clean = ScanRecord { at: w.now, outcome: ScanOutcome::Report(Box::default()) };
    let effects = w.scanned(clean);
    assert_eq!(requested(&effects), [("prod".to_owned(), "v1".to_owned())]);
}

#[test]
fn a_missing_report_is_requested_and_a_fresh_bad_one_blocks() {
    let mut w = World::with(scanned_pipeline());
    let effects = w.build_digest("v1");
    assert!(requested(&effects).is_empty(), "even a warn-only stage waits for the report");
    assert_eq!(scan_requests(&effects)[0].reason, "missing");
    let now = w.now;
    let mut clean = buster(now);
    clean.outcome = ScanOutcome::Report(Box::default());
    let effects = w.scanned(clean);
    assert_eq!(requested(&effects), [("dev".to_owned(), "v1".to_owned())]);
    w.state.scans.clear();
    w.land("dev");
    w.approve("bob", "staging");
    let effects = w.land_effects("staging");
    assert_eq!(scan_requests(&effects)[0].reason, "missing", "asked as soon as prod waits");
    let mut effects = w.approve("alice", "prod");
    effects.extend(w.approve("bob", "prod"));
    assert!(scan_requests(&effects).is_empty(), "and only once");
    assert!(w.pending("prod").expect("pending").waiting_on.starts_with("scan: no report of sha256:1111"));
    let now = w.now;
    let effects = w.scanned(buster(now));
    assert!(requested(&effects).is_empty());
    assert!(w.pending("prod").expect("pending").waiting_on.starts_with("scan: blocked by CVE-2019-18224"));
}

#[test]
fn a_failed_scan_blocks_or_passes_as_on_scan_error_says() {
    let failed = |at| ScanRecord {
        at,
        outcome: ScanOutcome::Failed { reason: "exit-status".into(), message: "trivy exited with 1: no DB".into() },
    };
    let mut w = World::with(scanned_pipeline());
    w.carry_to_prod_gate();
    let now = w.now;
    let effects = w.scanned(failed(now));
    assert!(requested(&effects).is_empty());
    let waiting = &w.pending("prod").expect("pending").waiting_on;
    assert!(waiting.contains("failed (exit-status: trivy exited with 1: no DB); on_scan_error: block"), "{waiting}");

    w.pipeline.stages[2].scan.as_mut().expect("policy").on_scan_error = OnScanError::Allow;
    let effects = w.step(Event::Tick);
    assert_eq!(requested(&effects), [("prod".to_owned(), "v1".to_owned())]);
    assert!(actions(&effects).contains(&"scan-warning".to_owned()));
}

#[test]
fn an_admin_override_is_audited_with_who_and_why_and_others_cannot() {
    let mut w = World::with(scanned_pipeline());
    // One approval in prod: the admin's own promote is it, the scan policy is what it overrides.
    w.pipeline.stages[2].approvals = 1;
    w.carry_to_prod_gate();
    let mut command = Command {
        kind: CommandKind::Promote,
        actor: "alice".into(),
        stage: Some(env("prod")),
        promotion_id: None,
        tag: Some("v1".into()),
        version: w.state.runs.values().next().map(|r| r.version.clone()),
        reason: "fix ships tomorrow".into(),
        override_freeze: false,
        override_scan: true,
        repository: String::new(),
        pull_request: 0,
    };
    let effects = w.step(Event::Command(command.clone()));
    assert!(requested(&effects).is_empty(), "alice is no admin");
    assert!(actions(&effects).contains(&"scan-override-ignored".to_owned()));

    command.actor = "root".into();
    let effects = w.step(Event::Command(command));
    assert_eq!(requested(&effects), [("prod".to_owned(), "v1".to_owned())]);
    let overridden = effects.iter().find_map(|e| match e {
        Effect::Audit(a) if a.action == "scan-override" => Some(a.clone()),
        _ => None,
    });
    let overridden = overridden.expect("override audited");
    assert_eq!((overridden.actor.as_str(), overridden.reason.as_str()), ("root", "fix ships tomorrow"));
    assert!(overridden.detail["overrode"].as_str().is_some_and(|l| l.contains("CVE-2019-18224")));
}
