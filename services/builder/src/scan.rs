//! The supply-chain step after a push: an SBOM of the image ([`sbom`], Syft → CycloneDX,
//! stored in the registry next to the image) and a vulnerability report from the configured
//! scanner ([`command`] runs it, [`report`] reads Trivy's or Grype's JSON), turned into
//! `build.scanned` or `build.scan-failed`. The same scan runs again on a `scan.requested`
//! (the promoter's re-scan before a stage whose policy wants a fresh report).

pub mod command;
pub mod report;
pub mod sbom;

use crate::registry::RegistryClient;
use serde::{Deserialize, Serialize};
use slipway_mesh::v1::{BuildScanFailed, BuildScanned, ImageRef};
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// Which scanner reports vulnerabilities.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ScannerKind {
    /// `trivy image --format json <image>` (or client/server mode through `args`).
    Trivy,
    /// `grype -o json registry:<image>`.
    Grype,
    /// No vulnerability scan; a requested re-scan fails with `no-scanner`.
    #[default]
    None,
}

impl ScannerKind {
    fn as_str(self) -> &'static str {
        match self {
            ScannerKind::Trivy => "trivy",
            ScannerKind::Grype => "grype",
            ScannerKind::None => "none",
        }
    }
}

/// The `[scan]` section.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ScanConfig {
    /// `trivy`, `grype` or `none`.
    pub scanner: ScannerKind,
    /// The scanner program; `trivy` / `grype` on the PATH when unset.
    pub command: Option<PathBuf>,
    /// Arguments before the image reference; unset: `image --format json --quiet` (Trivy),
    /// `-o json` (Grype). Trivy's client/server mode: add `--server http://trivy:4954`.
    pub args: Option<Vec<String>>,
    /// Seconds a scan may take before it fails with `timeout`.
    pub timeout_secs: u64,
    /// Make and store a CycloneDX SBOM of every pushed image.
    pub sbom: bool,
    /// The Syft program.
    pub syft: PathBuf,
    /// Seconds Syft may take.
    pub sbom_timeout_secs: u64,
}

impl Default for ScanConfig {
    fn default() -> Self {
        Self {
            scanner: ScannerKind::None,
            command: None,
            args: None,
            timeout_secs: 600,
            sbom: true,
            syft: PathBuf::from("syft"),
            sbom_timeout_secs: 600,
        }
    }
}

impl ScanConfig {
    pub(crate) fn validate(&self) -> slipway_runtime::Result<()> {
        use slipway_runtime::config::invalid;
        if self.timeout_secs == 0 {
            return Err(invalid("scan.timeout_secs", "must be at least 1"));
        }
        if self.sbom_timeout_secs == 0 {
            return Err(invalid("scan.sbom_timeout_secs", "must be at least 1"));
        }
        if self.command.as_ref().is_some_and(|c| c.as_os_str().is_empty()) {
            return Err(invalid("scan.command", "must not be empty"));
        }
        Ok(())
    }
}

/// What a scan produced.
#[derive(Debug, Clone, PartialEq)]
pub enum ScanEvent {
    Scanned(BuildScanned),
    Failed(BuildScanFailed),
}

/// One line for the build log.
pub fn summary(scan: &ScanEvent) -> String {
    match scan {
        ScanEvent::Scanned(s) => {
            let counts: Vec<String> = s.counts.iter().map(|c| format!("{} {}", c.severity, c.total)).collect();
            let counts = if counts.is_empty() { "no findings".to_owned() } else { counts.join(", ") };
            format!("scanned by {} {}: {counts}", s.scanner, s.scanner_version)
        }
        ScanEvent::Failed(f) => format!("scan failed ({}): {}", f.reason, f.message),
    }
}

/// Runs SBOMs and scans with one configuration.
#[derive(Clone)]
pub struct Scanner {
    config: ScanConfig,
    registry: RegistryClient,
    tls: bool,
}

/// What a scan is of: the build, app and pushed image, and its SBOM.
#[derive(Debug, Clone, Default)]
pub struct Target {
    pub build_id: String,
    pub app: String,
    pub image: ImageRef,
    pub sbom_digest: String,
    pub request_id: String,
}

impl Scanner {
    pub fn new(config: ScanConfig, registry: RegistryClient, tls: bool) -> Self {
        Self { config, registry, tls }
    }

    /// Whether images are scanned after their build.
    pub fn scans(&self) -> bool {
        self.config.scanner != ScannerKind::None
    }

    /// Makes and stores the SBOM of `image@digest`; its artifact digest, or `None` when SBOMs
    /// are off or failed (logged and counted; the build still succeeds).
    pub async fn sbom(&self, image: &str, digest: &str) -> Option<String> {
        if !self.config.sbom {
            return None;
        }
        let started = Instant::now();
        let timeout = Duration::from_secs(self.config.sbom_timeout_secs);
        let stored = match sbom::generate(&self.config.syft, image, digest, self.tls, timeout).await {
            Ok(doc) => sbom::push(&self.registry, image, digest, doc).await,
            Err(e) => Err(e),
        };
        let outcome = if stored.is_ok() { "stored" } else { "failed" };
        metrics::counter!("slipway_sboms_total", "outcome" => outcome).increment(1);
        metrics::histogram!("slipway_sbom_duration_seconds").record(started.elapsed().as_secs_f64());
        match stored {
            Ok(sbom_digest) => Some(sbom_digest),
            Err(e) => {
                tracing::warn!(error = %e, image, digest, "no SBOM stored");
                None
            }
        }
    }

    /// Scans `target` with the configured scanner.
    pub async fn scan(&self, target: Target) -> ScanEvent {
        let scanner = self.config.scanner;
        let started = Instant::now();
        let result = self.run(&target).await;
        let took = started.elapsed();
        metrics::histogram!("slipway_scan_duration_seconds", "scanner" => scanner.as_str()).record(took.as_secs_f64());
        let now = chrono::Utc::now();
        let at = Some(pbjson_types::Timestamp {
            seconds: now.timestamp(),
            nanos: i32::try_from(now.timestamp_subsec_nanos()).unwrap_or(0),
        });
        match result {
            Ok(report) => {
                metrics::counter!("slipway_scans_total", "scanner" => scanner.as_str(), "outcome" => "scanned", "reason" => "")
                    .increment(1);
                for count in report.counts() {
                    metrics::counter!("slipway_scan_findings_total", "severity" => count.severity.clone())
                        .increment(u64::from(count.total));
                }
                let event = BuildScanned {
                    build_id: target.build_id,
                    app: target.app,
                    image: Some(target.image),
                    sbom_digest: target.sbom_digest,
                    scanner: scanner.as_str().to_owned(),
                    scanned_at: at,
                    duration_ms: u64::try_from(took.as_millis()).unwrap_or(u64::MAX),
                    request_id: target.request_id,
                    ..Default::default()
                };
                ScanEvent::Scanned(report.into_event(event))
            }
            Err((reason, message)) => {
                metrics::counter!("slipway_scans_total", "scanner" => scanner.as_str(), "outcome" => "failed", "reason" => reason)
                    .increment(1);
                tracing::warn!(reason, message, "scan failed");
                ScanEvent::Failed(BuildScanFailed {
                    build_id: target.build_id,
                    app: target.app,
                    image: Some(target.image),
                    sbom_digest: target.sbom_digest,
                    scanner: scanner.as_str().to_owned(),
                    reason: reason.to_owned(),
                    message: slipway_mesh::bounds::capped(&message, 4 * 1024),
                    failed_at: at,
                    request_id: target.request_id,
                })
            }
        }
    }

    async fn run(&self, target: &Target) -> Result<report::Report, (&'static str, String)> {
        let reference = format!("{}@{}", target.image.repository, target.image.digest);
        if !crate::registry::is_digest(&target.image.digest) {
            return Err(("invalid-request", format!("{reference:?} does not name an image by digest")));
        }
        let insecure = if self.tls { "false" } else { "true" };
        let (program, mut args, format, target_arg, envs) = match self.config.scanner {
            ScannerKind::None => return Err(("no-scanner", "no scanner is configured ([scan] scanner)".to_owned())),
            ScannerKind::Trivy => (
                "trivy",
                vec!["image", "--format", "json", "--quiet"],
                report::Format::Trivy,
                reference,
                [("TRIVY_INSECURE", insecure), ("TRIVY_NO_PROGRESS", "true")],
            ),
            ScannerKind::Grype => (
                "grype",
                vec!["-o", "json"],
                report::Format::Grype,
                format!("registry:{reference}"),
                [("GRYPE_REGISTRY_INSECURE_USE_HTTP", insecure), ("GRYPE_CHECK_FOR_APP_UPDATE", "false")],
            ),
        };
        let program = self.config.command.clone().unwrap_or_else(|| PathBuf::from(program));
        let mut args: Vec<String> = match &self.config.args {
            Some(configured) => configured.clone(),
            None => args.drain(..).map(str::to_owned).collect(),
        };
        args.push(target_arg);
        let timeout = Duration::from_secs(self.config.timeout_secs);
        let out = command::run(&program, &args, &envs, timeout).await.map_err(|e| (e.reason(), e.to_string()))?;
        report::parse(format, &out).map_err(|e| ("malformed-report", e.to_string()))
    }
}
