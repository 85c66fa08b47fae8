//! The hooks of the supply-chain gate in [`decide`](super::decide): what the stage's scan
//! policy says about a pending promotion ([`Ctx::scan_wait`], a blocker like the others), the
//! re-scan request and audit rows when it starts to wait ([`Ctx::scan_waits`]), the warnings
//! and the admin override recorded when it starts ([`Ctx::scan_passed`]), and the blocking
//! findings an approval request names ([`Ctx::scan_block_label`]). The judgement itself is
//! [`scan_policy`](super::scan_policy).

use serde_json::json;
use slipway_mesh::names::EnvName;
use slipway_mesh::v1;

use super::decide::Ctx;
use super::scan_policy::{self, Verdict};
use super::{Outgoing, Promotion, SYSTEM, Trigger, Version};
use crate::pipeline::StageConfig;

/// What a promotion waits for under the scan policy.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct ScanWait {
    /// The blocker's label: the blocking findings and how to allow them, or the re-scan.
    pub(super) label: String,
    /// `Some("missing" | "stale")` when a fresh report was (or is to be) requested.
    pub(super) rescan: Option<&'static str>,
    /// The blocking finding ids.
    pub(super) ids: Vec<String>,
}

impl Ctx<'_> {
    fn verdict(&self, cfg: &StageConfig, version: &Version) -> Option<Verdict> {
        let policy = cfg.scan.as_ref()?;
        let digest = &version.image.digest;
        if digest.is_empty() {
            let label = format!("scan: {} has no image digest to scan", version.image.tag);
            return Some(Verdict::Block { label, ids: Vec::new() });
        }
        Some(scan_policy::evaluate(policy, digest, self.state.scans.get(digest), self.now))
    }

    fn overridden(&self, p: &Promotion) -> bool {
        p.override_scan && p.trigger == Trigger::Manual && self.pipeline.is_admin(&p.actor)
    }

    /// What keeps `p` out of its stage under the scan policy, if anything.
    pub(super) fn scan_wait(&self, p: &Promotion, cfg: &StageConfig) -> Option<ScanWait> {
        if self.overridden(p) {
            return None;
        }
        match self.verdict(cfg, &p.version)? {
            Verdict::Pass { .. } => None,
            Verdict::Block { label, ids } => Some(ScanWait { label, rescan: None, ids }),
            Verdict::Rescan { reason, label } => Some(ScanWait { label, rescan: Some(reason), ids: Vec::new() }),
        }
    }

    /// `p` starts waiting on `wait` (once per new label): ask for a re-scan, or record the block.
    pub(super) fn scan_waits(&mut self, p: &Promotion, wait: &ScanWait) {
        let detail = json!({ "promotion_id": p.id, "digest": p.version.image.digest, "findings": wait.ids });
        let Some(reason) = wait.rescan else {
            self.audit(SYSTEM, "scan-blocked", Some(&p.stage), &wait.label, detail);
            return;
        };
        let sbom_digest = match self.state.scans.get(&p.version.image.digest).map(|s| &s.outcome) {
            Some(scan_policy::ScanOutcome::Report(r)) => r.sbom_digest.clone(),
            _ => String::new(),
        };
        let build_id = (p.run_id.as_ref().and_then(|id| self.state.runs.get(id)))
            .map(|run| run.build_id.clone())
            .unwrap_or_default();
        self.emit(Outgoing::ScanRequested(v1::ScanRequested {
            request_id: format!("scan-{}-{}", p.id, self.now.timestamp()),
            app: self.app(),
            stage: p.stage.to_string(),
            image: Some(p.version.image.clone()),
            build_id,
            sbom_digest,
            reason: reason.to_owned(),
        }));
        self.audit(SYSTEM, "scan-requested", Some(&p.stage), &wait.label, detail);
    }

    /// `p` starts: an admin's override of a blocking policy is audited (who, why); warnings
    /// the policy reports go to the run's timeline and the audit log.
    pub(super) fn scan_passed(&mut self, p: &Promotion) {
        let Some((_, cfg)) = self.stage_config(&p.stage) else { return };
        let Some(verdict) = self.verdict(cfg, &p.version) else { return };
        let digest = p.version.image.digest.clone();
        match verdict {
            Verdict::Pass { warnings } if !warnings.is_empty() => {
                let text = format!("scan warnings: {}", warnings.join("; "));
                self.timeline(p.run_id.as_deref(), &p.stage, "scan-warnings", SYSTEM, text.clone());
                let detail = json!({ "promotion_id": p.id, "digest": digest, "warnings": warnings });
                self.audit(SYSTEM, "scan-warning", Some(&p.stage), &text, detail);
            }
            Verdict::Pass { .. } => {}
            Verdict::Block { label, .. } | Verdict::Rescan { label, .. } if self.overridden(p) => {
                let detail = json!({ "promotion_id": p.id, "digest": digest, "overrode": label });
                self.audit(&p.actor, "scan-override", Some(&p.stage), &p.reason, detail);
                self.timeline(p.run_id.as_deref(), &p.stage, "scan-override", &p.actor, label);
            }
            Verdict::Block { .. } | Verdict::Rescan { .. } => {}
        }
    }

    /// The scan policy's block on `version` in `stage`, for an approval request ("" if none).
    pub(super) fn scan_block_label(&self, stage: &EnvName, version: &Version) -> String {
        let Some((_, cfg)) = self.stage_config(stage) else { return String::new() };
        match self.verdict(cfg, version) {
            Some(Verdict::Block { label, .. } | Verdict::Rescan { label, .. }) => label,
            _ => String::new(),
        }
    }
}
