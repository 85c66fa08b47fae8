//! The supply-chain gate of a stage: the newest scan of the image's digest ([`ScanRecord`],
//! from `build.scanned` / `build.scan-failed`) judged by the stage's catalog policy
//! ([`ScanPolicy`]) into a [`Verdict`]. Pure: the time comes in, nothing is looked up.
//!
//! - `block` severities block; `block_fixable` ones block only where a fixed version exists.
//! - An `allow` entry takes its id out until the end of its `expires` day (UTC); an expired
//!   entry counts again and is named as expired in the verdict.
//! - Counts are exact even where the event carried only the worst findings: findings the event
//!   left out cannot be matched against `allow`, so they keep blocking (never a silent pass).
//! - No report, or one older than `max_age_hours`: [`Verdict::Rescan`], in every stage with a
//!   policy (a warn-only one too: its warnings need the report, and a build's report and the
//!   build itself may be decided in either order).
//! - A failed scan blocks or passes with a warning as `on_scan_error` says.

use chrono::{DateTime, Duration, Utc};
use slipway_catalog::scan::{OnScanError, ScanPolicy, Severity, parse_date};
use slipway_mesh::v1;

/// The newest scan of one image digest.
#[derive(Debug, Clone, PartialEq)]
pub struct ScanRecord {
    /// When the scanner ran (the event's `scanned_at` / `failed_at`).
    pub at: DateTime<Utc>,
    pub outcome: ScanOutcome,
}

/// A report, or why there is none.
#[derive(Debug, Clone, PartialEq)]
pub enum ScanOutcome {
    Report(Box<v1::BuildScanned>),
    Failed { reason: String, message: String },
}

/// What the gate says about promoting now.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    /// Nothing blocks; `warnings` lists what the policy reports anyway (may be empty).
    Pass { warnings: Vec<String> },
    /// These findings (or the failed scan) block; `label` says which and how to allow them.
    Block { label: String, ids: Vec<String> },
    /// A fresh report is needed first: `"missing"` or `"stale"`.
    Rescan { reason: &'static str, label: String },
}

/// How many blocking findings a label names before "and N more".
const NAMED: usize = 5;

/// The verdict of `policy` on `scan` of `digest` at `now`.
pub fn evaluate(policy: &ScanPolicy, digest: &str, scan: Option<&ScanRecord>, now: DateTime<Utc>) -> Verdict {
    let short = short_digest(digest);
    let Some(scan) = scan else {
        let label = format!("scan: no report of {short} yet; scan requested");
        return Verdict::Rescan { reason: "missing", label };
    };
    if let Some(hours) = policy.max_age_hours {
        let age = now - scan.at;
        if age > Duration::hours(i64::from(hours)) {
            let label = format!(
                "scan: the report of {short} is from {} (older than {hours}h); re-scan requested",
                scan.at.format("%Y-%m-%d %H:%M UTC")
            );
            return Verdict::Rescan { reason: "stale", label };
        }
    }
    match &scan.outcome {
        ScanOutcome::Failed { reason, message } => {
            let what = format!("the scan of {short} failed ({reason}: {})", first_line(message));
            match policy.on_scan_error {
                OnScanError::Block => {
                    Verdict::Block { label: format!("scan: {what}; on_scan_error: block"), ids: Vec::new() }
                }
                OnScanError::Allow => Verdict::Pass { warnings: vec![format!("{what}; on_scan_error: allow")] },
            }
        }
        ScanOutcome::Report(report) => judge(policy, report, now),
    }
}

fn judge(policy: &ScanPolicy, report: &v1::BuildScanned, now: DateTime<Utc>) -> Verdict {
    let today = now.date_naive();
    let allowed =
        |id: &str| policy.allow.iter().any(|a| a.id == id && parse_date(&a.expires).is_some_and(|d| d >= today));
    let expired: Vec<&slipway_catalog::scan::Allow> = (policy.allow.iter())
        .filter(|a| !allowed(&a.id) && parse_date(&a.expires).is_some_and(|d| d < today))
        .collect();
    let blocks = |f: &v1::Finding| {
        let severity = Severity::parse(&f.severity);
        policy.block.contains(&severity) || (policy.block_fixable.contains(&severity) && !f.fixed_version.is_empty())
    };
    let listed: Vec<&v1::Finding> = report.findings.iter().filter(|f| blocks(f) && !allowed(&f.id)).collect();
    // Blocking findings the event had no room for: exact counts minus what the list holds.
    let unlisted: u32 = Severity::ALL
        .iter()
        .map(|severity| {
            let count = report.counts.iter().find(|c| Severity::parse(&c.severity) == *severity);
            let in_scope = |fixable_only: bool| match count {
                Some(c) if fixable_only => c.fixable,
                Some(c) => c.total,
                None => 0,
            };
            let total = if policy.block.contains(severity) {
                in_scope(false)
            } else if policy.block_fixable.contains(severity) {
                in_scope(true)
            } else {
                0
            };
            let seen =
                report.findings.iter().filter(|f| Severity::parse(&f.severity) == *severity && blocks(f)).count();
            total.saturating_sub(u32::try_from(seen).unwrap_or(u32::MAX))
        })
        .sum();
    if listed.is_empty() && unlisted == 0 {
        let mut warnings: Vec<String> = report
            .findings
            .iter()
            .filter(|f| policy.warn.covers(Severity::parse(&f.severity)) && !allowed(&f.id))
            .take(NAMED)
            .map(describe)
            .collect();
        let allowed_now: Vec<String> = (policy.allow.iter())
            .filter(|a| allowed(&a.id) && report.findings.iter().any(|f| f.id == a.id))
            .map(|a| format!("{} allowed until {} ({})", a.id, a.expires, a.reason))
            .collect();
        warnings.extend(allowed_now);
        return Verdict::Pass { warnings };
    }
    let mut named: Vec<String> = listed.iter().take(NAMED).map(|f| describe(f)).collect();
    let more = (listed.len().saturating_sub(NAMED)) as u32 + unlisted;
    if more > 0 {
        named.push(format!("and {more} more"));
    }
    let mut label = format!("scan: blocked by {}", named.join("; "));
    for entry in &expired {
        if listed.iter().any(|f| f.id == entry.id) {
            label.push_str(&format!("; the allow entry for {} expired on {}", entry.id, entry.expires));
        }
    }
    let example = listed.first().map_or("<id>", |f| f.id.as_str());
    label.push_str(&format!(
        "; to accept one, add it to the stage's scan.allow in the catalog: \
         {{ id: {example}, reason: \"...\", expires: YYYY-MM-DD }}"
    ));
    Verdict::Block { label, ids: listed.iter().map(|f| f.id.clone()).collect() }
}

/// `CVE-2019-18224 (CRITICAL libidn2-0 2.0.5-1, fixed in 2.0.5-1+deb10u1)`.
fn describe(f: &v1::Finding) -> String {
    let fix =
        if f.fixed_version.is_empty() { "no fix yet".to_owned() } else { format!("fixed in {}", f.fixed_version) };
    format!("{} ({} {} {}, {fix})", f.id, f.severity, f.package, f.installed_version)
}

fn short_digest(digest: &str) -> String {
    let end = digest.char_indices().nth(19).map_or(digest.len(), |(i, _)| i);
    digest[..end].to_owned()
}

fn first_line(text: &str) -> String {
    slipway_mesh::bounds::capped(text.lines().find(|l| !l.trim().is_empty()).unwrap_or(""), 200)
}

#[cfg(test)]
#[path = "scan_policy_tests.rs"]
pub(crate) mod tests;
