//! Scanner reports as the scanners write them, read into one [`Report`], and the report
//! shaped into a bounded `build.scanned` event ([`Report::into_event`]).
//!
//! Trivy: `trivy image --format json` (SchemaVersion 2) — `Results[].Vulnerabilities[]` with
//! `VulnerabilityID`, `PkgName`, `InstalledVersion`, `FixedVersion`, `Severity`, `PrimaryURL`;
//! `Trivy.Version`, and the database when the report carries it (`Trivy.VulnerabilityDB`).
//! Grype: `grype -o json` — `matches[]` with `vulnerability{id, severity, fix{versions,state},
//! dataSource, urls}` and `artifact{name, version}`; `descriptor{version, db}`.

use serde::Deserialize;
use slipway_catalog::scan::Severity;
use slipway_mesh::v1::{BuildScanned, Finding, SeverityCount};

/// Which format a report is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Trivy,
    Grype,
}

/// A report, whatever scanner wrote it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Report {
    pub scanner_version: String,
    pub db_version: String,
    /// Worst first, then by id and package.
    pub findings: Vec<Finding>,
}

/// Why a report could not be read.
#[derive(Debug, thiserror::Error)]
#[error("malformed {format} report: {message}")]
pub struct Malformed {
    format: &'static str,
    message: String,
}

/// Reads `json` in `format`.
pub fn parse(format: Format, json: &[u8]) -> Result<Report, Malformed> {
    let mut report = match format {
        Format::Trivy => serde_json::from_slice::<trivy::Report>(json)
            .map_err(|e| Malformed { format: "trivy", message: e.to_string() })
            .and_then(trivy::read)?,
        Format::Grype => serde_json::from_slice::<grype::Report>(json)
            .map_err(|e| Malformed { format: "grype", message: e.to_string() })
            .map(grype::read)?,
    };
    report.findings.sort_by(|a, b| {
        let key = |f: &Finding| (Severity::parse(&f.severity), f.fixed_version.is_empty());
        key(a).cmp(&key(b)).then_with(|| a.id.cmp(&b.id)).then_with(|| a.package.cmp(&b.package))
    });
    // The same vulnerability of the same package reported twice (two layers, two targets)
    // is one finding.
    report
        .findings
        .dedup_by(|a, b| a.id == b.id && a.package == b.package && a.installed_version == b.installed_version);
    Ok(report)
}

/// Longest id, package, version or link kept on an event.
const MAX_FIELD: usize = 256;
/// Findings an event carries at most; `finding_count` and the counts stay exact.
pub const MAX_FINDINGS: usize = 500;
/// Bytes of findings an event carries at most (well inside the event bound).
const MAX_FINDINGS_BYTES: usize = 160 * 1024;

impl Report {
    /// Exact counts per severity (worst first, empty ones left out).
    pub fn counts(&self) -> Vec<SeverityCount> {
        Severity::ALL
            .iter()
            .filter_map(|severity| {
                let of: Vec<&Finding> =
                    self.findings.iter().filter(|f| Severity::parse(&f.severity) == *severity).collect();
                let fixable = of.iter().filter(|f| !f.fixed_version.is_empty()).count();
                (!of.is_empty()).then(|| SeverityCount {
                    severity: severity.as_str().to_owned(),
                    total: u32::try_from(of.len()).unwrap_or(u32::MAX),
                    fixable: u32::try_from(fixable).unwrap_or(u32::MAX),
                })
            })
            .collect()
    }

    /// The `build.scanned` body: exact counts, the worst findings that fit the bound.
    pub fn into_event(self, mut event: BuildScanned) -> BuildScanned {
        event.counts = self.counts();
        event.finding_count = u32::try_from(self.findings.len()).unwrap_or(u32::MAX);
        event.scanner_version = slipway_mesh::bounds::capped(&self.scanner_version, MAX_FIELD);
        event.db_version = slipway_mesh::bounds::capped(&self.db_version, MAX_FIELD);
        let mut budget = MAX_FINDINGS_BYTES;
        for mut finding in self.findings.into_iter().take(MAX_FINDINGS) {
            for field in [
                &mut finding.id,
                &mut finding.package,
                &mut finding.installed_version,
                &mut finding.fixed_version,
                &mut finding.link,
            ] {
                *field = slipway_mesh::bounds::capped(field, MAX_FIELD);
            }
            // Field bytes plus the JSON names and quotes around them.
            let size = finding.id.len()
                + finding.package.len()
                + finding.installed_version.len()
                + finding.fixed_version.len()
                + finding.severity.len()
                + finding.link.len()
                + 120;
            if size > budget {
                break;
            }
            budget -= size;
            event.findings.push(finding);
        }
        event
    }
}

mod trivy {
    use super::{Finding, Malformed};
    use serde::Deserialize;

    #[derive(Deserialize)]
    #[serde(rename_all = "PascalCase")]
    pub(super) struct Report {
        schema_version: Option<u32>,
        #[serde(default)]
        trivy: Option<Tool>,
        #[serde(default)]
        results: Option<Vec<Target>>,
    }

    #[derive(Deserialize)]
    #[serde(rename_all = "PascalCase")]
    struct Tool {
        #[serde(default)]
        version: String,
        #[serde(default, rename = "VulnerabilityDB")]
        vulnerability_db: Option<Db>,
    }

    #[derive(Deserialize)]
    #[serde(rename_all = "PascalCase")]
    struct Db {
        #[serde(default)]
        version: Option<u32>,
        #[serde(default)]
        updated_at: String,
    }

    #[derive(Deserialize)]
    #[serde(rename_all = "PascalCase")]
    struct Target {
        #[serde(default)]
        vulnerabilities: Option<Vec<Vulnerability>>,
    }

    #[derive(Deserialize)]
    #[serde(rename_all = "PascalCase")]
    struct Vulnerability {
        #[serde(rename = "VulnerabilityID")]
        vulnerability_id: String,
        pkg_name: String,
        #[serde(default)]
        installed_version: String,
        #[serde(default)]
        fixed_version: String,
        #[serde(default)]
        severity: String,
        #[serde(default, rename = "PrimaryURL")]
        primary_url: String,
    }

    pub(super) fn read(report: Report) -> Result<super::Report, Malformed> {
        match report.schema_version {
            Some(2) => {}
            other => {
                let message = format!("SchemaVersion {other:?}, only 2 is understood");
                return Err(Malformed { format: "trivy", message });
            }
        }
        let tool = report.trivy.unwrap_or(Tool { version: String::new(), vulnerability_db: None });
        let db_version = tool
            .vulnerability_db
            .map(|db| match db.version {
                Some(v) if db.updated_at.is_empty() => format!("v{v}"),
                Some(v) => format!("v{v} {}", db.updated_at),
                None => db.updated_at,
            })
            .unwrap_or_default();
        let findings = (report.results.unwrap_or_default().into_iter())
            .flat_map(|t| t.vulnerabilities.unwrap_or_default())
            .map(|v| Finding {
                id: v.vulnerability_id,
                package: v.pkg_name,
                installed_version: v.installed_version,
                fixed_version: v.fixed_version,
                severity: slipway_catalog::scan::Severity::parse(&v.severity).as_str().to_owned(),
                link: v.primary_url,
            })
            .collect();
        Ok(super::Report { scanner_version: tool.version, db_version, findings })
    }
}

mod grype {
    use super::{Deserialize, Finding};

    #[derive(Deserialize)]
    pub(super) struct Report {
        matches: Vec<Match>,
        #[serde(default)]
        descriptor: Option<Descriptor>,
    }

    #[derive(Deserialize)]
    struct Descriptor {
        #[serde(default)]
        version: String,
        #[serde(default)]
        db: Option<Db>,
    }

    /// Older grype writes `db.built` and `db.schemaVersion`; newer nests them in `db.status`.
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Db {
        #[serde(default)]
        built: Option<String>,
        #[serde(default)]
        schema_version: Option<serde_json::Value>,
        #[serde(default)]
        status: Option<Box<Db>>,
    }

    #[derive(Deserialize)]
    struct Match {
        vulnerability: Vulnerability,
        artifact: Artifact,
    }

    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Vulnerability {
        id: String,
        #[serde(default)]
        severity: String,
        #[serde(default)]
        data_source: String,
        #[serde(default)]
        urls: Vec<String>,
        #[serde(default)]
        fix: Option<Fix>,
    }

    #[derive(Deserialize)]
    struct Fix {
        #[serde(default)]
        versions: Vec<String>,
        #[serde(default)]
        state: String,
    }

    #[derive(Deserialize)]
    struct Artifact {
        name: String,
        #[serde(default)]
        version: String,
    }

    fn db_version(db: Db) -> String {
        if let Some(status) = db.status {
            return db_version(*status);
        }
        let schema = db.schema_version.map(|v| {
            let text = v.to_string();
            let text = text.trim_matches('"');
            text.strip_prefix('v').unwrap_or(text).to_owned()
        });
        match (schema, db.built) {
            (Some(s), Some(b)) => format!("v{s} {b}"),
            (Some(s), None) => format!("v{s}"),
            (None, Some(b)) => b,
            (None, None) => String::new(),
        }
    }

    pub(super) fn read(report: Report) -> super::Report {
        let (scanner_version, db) = match report.descriptor {
            Some(d) => (d.version, d.db.map(db_version).unwrap_or_default()),
            None => (String::new(), String::new()),
        };
        let findings = (report.matches.into_iter())
            .map(|m| {
                let v = m.vulnerability;
                let fixed = match v.fix {
                    Some(fix) if fix.state == "fixed" => fix.versions.join(", "),
                    _ => String::new(),
                };
                let link = if v.data_source.is_empty() {
                    v.urls.into_iter().next().unwrap_or_default()
                } else {
                    v.data_source
                };
                Finding {
                    id: v.id,
                    package: m.artifact.name,
                    installed_version: m.artifact.version,
                    fixed_version: fixed,
                    severity: slipway_catalog::scan::Severity::parse(&v.severity).as_str().to_owned(),
                    link,
                }
            })
            .collect();
        super::Report { scanner_version, db_version: db, findings }
    }
}

#[cfg(test)]
#[path = "report_tests.rs"]
mod tests;
