use super::*;
use chrono::TimeZone as _;
use slipway_catalog::scan::{Allow, Warn};

const DIGEST: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 12, 4, 12, 0, 0).single().expect("time")
}

fn finding(id: &str, severity: &str, fixed: &str) -> v1::Finding {
    v1::Finding {
        id: id.into(),
        package: "libidn2-0".into(),
        installed_version: "2.0.5-1".into(),
        fixed_version: fixed.into(),
        severity: severity.into(),
        link: String::new(),
    }
}

/// debian-buster.json as the builder reports it: one fixable CRITICAL, one LOW without a fix.
pub(crate) fn buster_report() -> v1::BuildScanned {
    v1::BuildScanned {
        counts: vec![
            v1::SeverityCount { severity: "CRITICAL".into(), total: 1, fixable: 1 },
            v1::SeverityCount { severity: "LOW".into(), total: 1, fixable: 0 },
        ],
        findings: vec![finding("CVE-2019-18224", "CRITICAL", "2.0.5-1+deb10u1"), finding("CVE-2019-18276", "LOW", "")],
        finding_count: 2,
        ..Default::default()
    }
}

fn buster(hours_ago: i64) -> ScanRecord {
    ScanRecord { at: now() - Duration::hours(hours_ago), outcome: ScanOutcome::Report(Box::new(buster_report())) }
}

fn prod() -> ScanPolicy {
    ScanPolicy { block: vec![Severity::Critical], block_fixable: vec![Severity::High], ..Default::default() }
}

fn allow(id: &str, expires: &str) -> Allow {
    Allow { id: id.into(), reason: "not reachable".into(), expires: expires.into() }
}

#[test]
fn dev_passes_with_warnings_and_prod_blocks_naming_the_cve_and_the_way_out() {
    let dev = ScanPolicy { warn: Warn::All(true), ..Default::default() };
    let Verdict::Pass { warnings } = evaluate(&dev, DIGEST, Some(&buster(1)), now()) else { panic!("dev passes") };
    assert_eq!(warnings.len(), 2);
    assert!(warnings[0].starts_with("CVE-2019-18224 (CRITICAL libidn2-0 2.0.5-1, fixed in 2.0.5-1+deb10u1)"));
    let Verdict::Block { label, ids } = evaluate(&prod(), DIGEST, Some(&buster(1)), now()) else {
        panic!("prod blocks")
    };
    assert_eq!(ids, ["CVE-2019-18224"]);
    assert!(label.starts_with("scan: blocked by CVE-2019-18224 (CRITICAL"), "{label}");
    assert!(label.contains("scan.allow") && label.contains("id: CVE-2019-18224"), "{label}");
}

#[test]
fn an_allow_entry_counts_until_the_end_of_its_day_then_blocks_again_as_expired() {
    let mut policy = prod();
    policy.allow = vec![allow("CVE-2019-18224", "2026-12-04")];
    let Verdict::Pass { warnings } = evaluate(&policy, DIGEST, Some(&buster(1)), now()) else {
        panic!("allowed today")
    };
    assert!(
        warnings.iter().any(|w| w.contains("CVE-2019-18224 allowed until 2026-12-04 (not reachable)")),
        "{warnings:?}"
    );
    policy.allow = vec![allow("CVE-2019-18224", "2026-12-03")];
    let Verdict::Block { label, .. } = evaluate(&policy, DIGEST, Some(&buster(1)), now()) else { panic!("expired") };
    assert!(label.contains("the allow entry for CVE-2019-18224 expired on 2026-12-03"), "{label}");
}

#[test]
fn block_fixable_blocks_only_where_a_fix_exists() {
    let policy = ScanPolicy { block_fixable: vec![Severity::Critical, Severity::Low], ..Default::default() };
    let Verdict::Block { ids, .. } = evaluate(&policy, DIGEST, Some(&buster(1)), now()) else { panic!("blocks") };
    assert_eq!(ids, ["CVE-2019-18224"], "the LOW one has no fix");
    let lows = ScanPolicy { block_fixable: vec![Severity::Low], ..Default::default() };
    assert!(matches!(evaluate(&lows, DIGEST, Some(&buster(1)), now()), Verdict::Pass { .. }));
}

#[test]
fn missing_and_stale_reports_ask_for_a_rescan() {
    let mut policy = prod();
    let missing = evaluate(&policy, DIGEST, None, now());
    assert!(matches!(&missing, Verdict::Rescan { reason: "missing", label } if label.contains("sha256:0123456789ab")));
    policy.max_age_hours = Some(24);
    assert!(matches!(evaluate(&policy, DIGEST, Some(&buster(23)), now()), Verdict::Block { .. }));
    let stale = evaluate(&policy, DIGEST, Some(&buster(25)), now());
    assert!(
        matches!(&stale, Verdict::Rescan { reason: "stale", label } if label.contains("older than 24h")),
        "{stale:?}"
    );
}

#[test]
fn a_failed_scan_blocks_or_warns_as_on_scan_error_says() {
    let failed = ScanRecord {
        at: now(),
        outcome: ScanOutcome::Failed { reason: "timeout".into(), message: "trivy gave no result within 300s".into() },
    };
    let Verdict::Block { label, .. } = evaluate(&prod(), DIGEST, Some(&failed), now()) else { panic!("blocks") };
    assert!(label.contains("failed (timeout: trivy gave no result within 300s); on_scan_error: block"), "{label}");
    let lenient = ScanPolicy { on_scan_error: OnScanError::Allow, ..prod() };
    let Verdict::Pass { warnings } = evaluate(&lenient, DIGEST, Some(&failed), now()) else { panic!("passes") };
    assert!(warnings[0].contains("on_scan_error: allow"));
}

#[test]
fn findings_left_out_of_a_capped_event_still_block() {
    let mut record = buster(1);
    let ScanOutcome::Report(report) = &mut record.outcome else { unreachable!() };
    report.counts[0].total = 700;
    report.counts[0].fixable = 700;
    let mut policy = prod();
    policy.allow = vec![allow("CVE-2019-18224", "2030-01-01")];
    let Verdict::Block { label, ids } = evaluate(&policy, DIGEST, Some(&record), now()) else { panic!("blocks") };
    assert!(ids.is_empty() && label.contains("and 699 more"), "{label}");
}
