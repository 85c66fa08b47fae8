//! A stage's supply-chain gate as the catalog writes it (`scan:` of a stage): which findings
//! of an image's newest vulnerability scan keep it out of the stage, which are only warned
//! about, which are allowed (with a reason, until a date), how old a report may be, and what a
//! failed scan means. The promoter evaluates it; this crate only describes and validates it.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A scanner's severity, worst first (the order [`Severity::ALL`] lists them).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "UPPERCASE")]
pub enum Severity {
    Critical,
    High,
    Medium,
    Low,
    /// The scanner could not rate it (Trivy's and Grype's `UNKNOWN`, Grype's `Negligible`).
    Unknown,
}

impl Severity {
    /// Worst first.
    pub const ALL: [Severity; 5] = [Self::Critical, Self::High, Self::Medium, Self::Low, Self::Unknown];

    /// `CRITICAL`, `HIGH`, ...
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Critical => "CRITICAL",
            Self::High => "HIGH",
            Self::Medium => "MEDIUM",
            Self::Low => "LOW",
            Self::Unknown => "UNKNOWN",
        }
    }

    /// Reads a scanner's spelling, any case (`Critical`, `HIGH`, `Negligible`); anything else
    /// is [`Severity::Unknown`].
    pub fn parse(text: &str) -> Self {
        match text.trim().to_ascii_uppercase().as_str() {
            "CRITICAL" => Self::Critical,
            "HIGH" => Self::High,
            "MEDIUM" => Self::Medium,
            "LOW" => Self::Low,
            _ => Self::Unknown,
        }
    }
}

/// `warn: true` (every finding not blocking is a warning), `false`, or the severities to warn on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum Warn {
    All(bool),
    Only(Vec<Severity>),
}

impl Default for Warn {
    fn default() -> Self {
        Warn::All(true)
    }
}

impl Warn {
    /// Whether a finding of `severity` is reported as a warning.
    pub fn covers(&self, severity: Severity) -> bool {
        match self {
            Warn::All(all) => *all,
            Warn::Only(list) => list.contains(&severity),
        }
    }
}

/// An accepted finding: it does not block until `expires` (then it counts again).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Allow {
    /// The vulnerability id as the scanner reports it (`CVE-2019-18276`, `GHSA-...`).
    pub id: String,
    /// Why it is accepted, for the audit trail and the dashboard.
    pub reason: String,
    /// `YYYY-MM-DD`: the last day the entry counts (UTC).
    pub expires: String,
}

/// What a stage does when the newest scan of the image failed (no usable report).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum OnScanError {
    /// Wait: nothing is promoted on a report that does not exist.
    #[default]
    Block,
    /// Promote, with the failure recorded as a warning.
    Allow,
}

/// `scan:` of a stage.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct ScanPolicy {
    /// Findings of these severities block the promotion.
    pub block: Vec<Severity>,
    /// Findings of these severities block only where a fixed version exists.
    pub block_fixable: Vec<Severity>,
    /// Which findings that do not block are reported as warnings.
    pub warn: Warn,
    /// Findings accepted by id, with a reason and an expiry date.
    pub allow: Vec<Allow>,
    /// The newest report of the image may be at most this old; an older one (or none) makes
    /// the promoter have the same digest scanned again before it promotes.
    pub max_age_hours: Option<u32>,
    /// What a failed scan means for this stage.
    pub on_scan_error: OnScanError,
}

impl ScanPolicy {
    /// The problems of this policy, as `(field, reason)`.
    pub fn problems(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        for (i, allow) in self.allow.iter().enumerate() {
            if allow.id.trim().is_empty() {
                out.push((format!("allow[{i}].id"), "must not be empty".to_owned()));
            }
            if allow.reason.trim().is_empty() {
                out.push((format!("allow[{i}].reason"), "say why the finding is accepted".to_owned()));
            }
            if parse_date(&allow.expires).is_none() {
                out.push((format!("allow[{i}].expires"), format!("{:?} is not a date YYYY-MM-DD", allow.expires)));
            }
        }
        if self.max_age_hours == Some(0) {
            out.push(("max_age_hours".to_owned(), "must be at least 1".to_owned()));
        }
        out
    }
}

/// `YYYY-MM-DD`, strictly.
pub fn parse_date(text: &str) -> Option<chrono::NaiveDate> {
    if text.len() != 10 {
        return None;
    }
    chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d").ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_yaml_form_reads_as_the_issue_writes_it() {
        let yaml = "block: [CRITICAL]\nblock_fixable: [HIGH]\nwarn: true\n\
                    allow: [{ id: CVE-2019-18276, reason: not reachable, expires: 2027-01-31 }]\n\
                    max_age_hours: 24\non_scan_error: allow\n";
        let policy: ScanPolicy = serde_yaml::from_str(yaml).expect("policy");
        assert_eq!(policy.block, [Severity::Critical]);
        assert_eq!(policy.block_fixable, [Severity::High]);
        assert_eq!(policy.warn, Warn::All(true));
        assert_eq!(policy.max_age_hours, Some(24));
        assert_eq!(policy.on_scan_error, OnScanError::Allow);
        assert!(policy.problems().is_empty());
        let only: ScanPolicy = serde_yaml::from_str("warn: [HIGH, MEDIUM]").expect("warn list");
        assert!(only.warn.covers(Severity::High) && !only.warn.covers(Severity::Low));
        assert_eq!(only.on_scan_error, OnScanError::Block, "a failed scan blocks unless said otherwise");
        assert!(serde_yaml::from_str::<ScanPolicy>("block: [SEVERE]").is_err());
        assert!(serde_yaml::from_str::<ScanPolicy>("blok: [HIGH]").is_err());
    }

    #[test]
    fn bad_allow_entries_and_ages_are_problems() {
        let policy = ScanPolicy {
            allow: vec![Allow { id: " ".into(), reason: String::new(), expires: "2027-02-30".into() }],
            max_age_hours: Some(0),
            ..Default::default()
        };
        let fields: Vec<String> = policy.problems().into_iter().map(|(f, _)| f).collect();
        assert_eq!(fields, ["allow[0].id", "allow[0].reason", "allow[0].expires", "max_age_hours"]);
        assert_eq!(parse_date("2027-1-31"), None);
        assert!(parse_date("2027-01-31").is_some());
    }

    #[test]
    fn scanner_spellings_map_to_severities() {
        assert_eq!(Severity::parse("Critical"), Severity::Critical);
        assert_eq!(Severity::parse("negligible"), Severity::Unknown);
        assert!(Severity::Critical < Severity::High, "worst sorts first");
    }
}
