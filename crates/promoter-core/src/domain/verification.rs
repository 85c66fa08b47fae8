//! Verification after deploy: a stage with `verification` checks opens the next stage only
//! once its checks passed at the new version. The checks run outside the domain (the
//! promoter's verifier, on `verification.requested`); their verdict comes back as
//! [`Event::Verified`](super::Event::Verified). A failed or erroring verification fails the
//! version in that stage as a degraded health report does (rolled back and held with
//! `auto_rollback`); an inconclusive one leaves the run waiting for a person.

use serde_json::json;
use slipway_mesh::v1;

use super::commands::Refusal;
use super::decide::Ctx;
use super::{Command, Done, Outgoing, Promotion, PromotionState, RunState, SYSTEM};

/// `requested_by` of the verification a stage's health starts.
pub const VERIFY_AFTER_HEALTHY: &str = "healthy";

/// How a verification ended: the worst verdict of its checks (Argo Rollouts' analysis phases).
pub use slipway_catalog::verify::Verdict;

impl Ctx<'_> {
    /// Asks for `p`'s stage checks to run against its version.
    pub(super) fn verify(&mut self, p: &Promotion, requested_by: &str) {
        let Some(promotion) = self.promotion_if(&p.id, |_| true) else { return };
        promotion.state = PromotionState::Verifying;
        let request_id = format!("{}-{}", p.id, self.now.timestamp_millis());
        self.emit(Outgoing::VerificationRequested(v1::VerificationRequested {
            request_id: request_id.clone(),
            promotion_id: p.id.clone(),
            app: self.app(),
            stage: p.stage.to_string(),
            image: Some(p.version.image.clone()),
            requested_by: requested_by.to_owned(),
        }));
        self.timeline(p.run_id.as_deref(), &p.stage, "verifying", requested_by, request_id.clone());
        let detail = json!({ "promotion_id": p.id, "request_id": request_id, "tag": p.version.image.tag });
        self.audit(requested_by, "verify", Some(&p.stage), "verification requested", detail);
    }

    /// The checks of `id` ended with `verdict`.
    pub(super) fn verified(&mut self, id: &str, verdict: Verdict, message: &str) {
        let Some(p) = self.promotion_if(id, |p| p.state == PromotionState::Verifying) else { return };
        let p = p.clone();
        let current = self.stage(&p.stage).desired_promotion.as_deref() == Some(id);
        let detail = json!({ "promotion_id": id, "verdict": verdict.as_str(), "tag": p.version.image.tag });
        match verdict {
            Verdict::Successful => self.became_good(id, current, "verified"),
            Verdict::Failed | Verdict::Error => {
                self.audit(SYSTEM, "verification-failed", Some(&p.stage), message, detail);
                self.degraded(id, &format!("verification {}", verdict.as_str()), message);
            }
            Verdict::Inconclusive => {
                // As Argo Rollouts pauses on an inconclusive analysis: a person decides
                // (`/verify-stage` again, `/rollback`, or `/promote` the next stage).
                self.set_run(p.run_id.as_deref(), RunState::Waiting, None);
                self.timeline(p.run_id.as_deref(), &p.stage, "inconclusive", SYSTEM, message.to_owned());
                self.audit(SYSTEM, "verification-inconclusive", Some(&p.stage), message, detail);
            }
        }
    }

    /// `/verify-stage`: runs the stage's checks again against what it runs now.
    pub(super) fn verify_command(&mut self, cmd: &Command) {
        let Some(stage) = cmd.stage.clone() else {
            return self.refuse(cmd, None, None, Refusal::StageRequired);
        };
        if !self.allowed(cmd, &stage, None) {
            return;
        }
        let has_checks = self.stage_config(&stage).is_some_and(|(_, cfg)| !cfg.verification.is_empty());
        if !has_checks {
            return self.refuse(cmd, Some(&stage), None, Refusal::NoChecks);
        }
        let running = (self.stage(&stage).desired_promotion)
            .and_then(|id| self.state.promotions.get(&id).cloned())
            .filter(|p| matches!(p.state, PromotionState::Healthy | PromotionState::Verifying));
        let Some(p) = running else {
            return self.refuse(cmd, Some(&stage), None, Refusal::NothingToVerify);
        };
        self.verify(&p, &cmd.actor);
        self.reply = Ok(Done { promotion_id: Some(p.id.clone()), ..Done::default() });
    }
}
