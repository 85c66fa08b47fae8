//! The pipeline's state machine: what runs where, and what happens next.
//!
//! [`decide`] takes the configured [`PipelineConfig`], the [`AppState`] of one app (loaded by
//! the service's store inside the transaction that handles an event) and one
//! [`Input`], and returns the [`Effect`]s: rows to save, timeline and audit entries, events to
//! put into the outbox. It is pure and synchronous — no clock, no I/O — so every transition is
//! unit-tested in [`tests`](self) without a runtime. Ids of new promotions are derived from the
//! input's id, so deciding the same input twice gives the same effects.

mod commands;
mod decide;
mod health;
mod scan_gate;
pub mod scan_policy;
#[cfg(test)]
mod tests;
mod verification;

pub use commands::{REJECTED, Refusal, refusal};
pub use decide::decide;
pub use verification::{VERIFY_AFTER_HEALTHY, Verdict};

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use slipway_mesh::names::{AppName, EnvName};
use slipway_mesh::v1;

/// The actor the promoter records for its own decisions.
pub const SYSTEM: &str = "slipway";

/// One deployable version: the image and the commit it was built from.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Version {
    pub image: v1::ImageRef,
    pub source: v1::SourceRef,
}

impl Version {
    /// Same image: equal digests when both are known, else equal tags.
    pub fn same(&self, other: &Version) -> bool {
        let (a, b) = (&self.image, &other.image);
        if !a.digest.is_empty() && !b.digest.is_empty() {
            a.digest == b.digest
        } else {
            a.tag == b.tag && a.repository == b.repository
        }
    }
}

macro_rules! text_enum {
    ($(#[$doc:meta])* $name:ident { $($variant:ident => $text:literal),* $(,)? }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $name { $($variant,)* }

        impl $name {
            /// The database / audit spelling.
            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text,)* }
            }

            /// Reads the database spelling back.
            pub fn parse(s: &str) -> Option<Self> {
                match s { $($text => Some($name::$variant),)* _ => None }
            }
        }
    };
}

text_enum!(
    /// Where a promotion is.
    PromotionState {
        Pending => "pending",
        Requested => "requested",
        Committed => "committed",
        Synced => "synced",
        Healthy => "healthy",
        Verifying => "verifying",
        Degraded => "degraded",
        Failed => "failed",
        Rejected => "rejected",
        Superseded => "superseded",
        RolledBack => "rolled-back",
    }
);

impl PromotionState {
    /// Written (or being written) to the GitOps repository, not yet judged.
    pub fn in_flight(self) -> bool {
        matches!(self, Self::Requested | Self::Committed | Self::Synced)
    }
}

text_enum!(
    /// Why a promotion exists.
    Trigger {
        Auto => "auto",
        Manual => "manual",
        Rollback => "rollback",
    }
);

impl Trigger {
    pub fn to_proto(self) -> v1::PromotionTrigger {
        match self {
            Trigger::Auto => v1::PromotionTrigger::Auto,
            Trigger::Manual => v1::PromotionTrigger::Manual,
            Trigger::Rollback => v1::PromotionTrigger::Rollback,
        }
    }
}

text_enum!(
    /// Where a pipeline run is.
    RunState {
        Running => "running",
        Waiting => "waiting",
        Succeeded => "succeeded",
        Failed => "failed",
        RolledBack => "rolled-back",
        Superseded => "superseded",
    }
);

impl RunState {
    /// No more stages will be entered.
    pub fn is_final(self) -> bool {
        !matches!(self, Self::Running | Self::Waiting)
    }

    pub fn to_proto(self) -> v1::RunState {
        match self {
            RunState::Running => v1::RunState::Running,
            RunState::Waiting => v1::RunState::Waiting,
            RunState::Succeeded => v1::RunState::Succeeded,
            RunState::Failed => v1::RunState::Failed,
            RunState::RolledBack => v1::RunState::RolledBack,
            RunState::Superseded => v1::RunState::Superseded,
        }
    }
}

/// What a decision did: its effects, and what a command's caller is told.
#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    pub effects: Vec<Effect>,
    /// Done (with what it made) or refused; `Ok` with nothing for inputs that are not commands.
    pub reply: Reply,
}

/// The answer to a command.
pub type Reply = std::result::Result<Done, Refused>;

/// A command carried out.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Done {
    /// The promotion created, approved, rejected or rolled back to.
    pub promotion_id: Option<String>,
    pub granted: u32,
    pub required: u32,
    /// Where a rollback goes.
    pub to: Option<v1::ImageRef>,
}

/// A command the pipeline refused: why, and who may act instead.
#[derive(Debug, Clone, PartialEq)]
pub struct Refused {
    pub reason: Refusal,
    pub allowed_approvers: Vec<String>,
    pub allowed_teams: Vec<String>,
}

/// What kind of thing keeps a pending promotion from starting.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Waiting {
    /// A hold on the stage.
    Hold,
    /// A freeze window.
    Freeze,
    /// Required test gates not passed yet.
    Gates,
    /// The previous stage's soak time.
    Soak,
    /// Approvals.
    Approvals,
    /// The stage's scan policy: blocking findings, a failed scan, or a re-scan.
    Scan,
}

impl Waiting {
    /// The stored form.
    pub fn as_str(self) -> &'static str {
        match self {
            Waiting::Hold => "hold",
            Waiting::Freeze => "freeze",
            Waiting::Gates => "gates",
            Waiting::Soak => "soak",
            Waiting::Approvals => "approvals",
            Waiting::Scan => "scan",
        }
    }

    /// The stored form back.
    pub fn parse(s: &str) -> Option<Self> {
        [Waiting::Hold, Waiting::Freeze, Waiting::Gates, Waiting::Soak, Waiting::Approvals, Waiting::Scan]
            .into_iter()
            .find(|w| w.as_str() == s)
    }
}

/// One version going into one stage.
#[derive(Debug, Clone, PartialEq)]
pub struct Promotion {
    pub id: String,
    /// The pipeline run it belongs to; none for rollbacks and manual promotions of old tags.
    pub run_id: Option<String>,
    pub stage: EnvName,
    pub version: Version,
    pub state: PromotionState,
    pub trigger: Trigger,
    pub actor: String,
    pub reason: String,
    /// Logins whose approvals counted, in order.
    pub approvals: Vec<String>,
    /// What a pending promotion waits for, in words (empty when it does not wait).
    pub waiting_on: String,
    /// What kind of thing it waits for (`None` when it does not wait).
    pub waiting_for: Option<Waiting>,
    /// An admin asked to promote inside a freeze window.
    pub override_freeze: bool,
    /// An admin asked to promote past the stage's scan policy.
    pub override_scan: bool,
    pub gitops_commit: String,
    pub committed_at: Option<DateTime<Utc>>,
}

impl Promotion {
    /// A new promotion, pending, with no approvals yet and nothing written.
    pub fn pending(
        id: String,
        run_id: Option<String>,
        stage: EnvName,
        version: Version,
        trigger: Trigger,
        actor: &str,
        reason: String,
    ) -> Self {
        Self {
            id,
            run_id,
            stage,
            version,
            state: PromotionState::Pending,
            trigger,
            actor: actor.to_owned(),
            reason,
            approvals: Vec::new(),
            waiting_on: String::new(),
            waiting_for: None,
            override_freeze: false,
            override_scan: false,
            gitops_commit: String::new(),
            committed_at: None,
        }
    }
}

/// One build of an app on its way through the stages.
#[derive(Debug, Clone, PartialEq)]
pub struct Run {
    pub id: String,
    pub build_id: String,
    pub version: Version,
    pub state: RunState,
    /// The stage it is in or heading for.
    pub stage: Option<EnvName>,
}

/// A hold on one app and stage: automatic promotion stops until it is released.
#[derive(Debug, Clone, PartialEq)]
pub struct Hold {
    pub actor: String,
    pub reason: String,
    pub at: DateTime<Utc>,
}

/// What one app runs in one stage.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StageState {
    /// The version last asked for (written or being written).
    pub desired: Option<Version>,
    pub desired_promotion: Option<String>,
    pub last_healthy: Option<Version>,
    /// The healthy version before `last_healthy` changed: the rollback target when the
    /// current version degrades after having been healthy once.
    pub previous_healthy: Option<Version>,
    pub healthy_since: Option<DateTime<Utc>>,
    pub hold: Option<Hold>,
}

/// The slice of the pipeline one decision needs: one app's stages, its open promotions and
/// runs (plus any the input names), and the test gates passed by their commits.
#[derive(Debug, Clone, PartialEq)]
pub struct AppState {
    pub app: AppName,
    /// By stage name; a stage without a row yet is absent (= default).
    pub stages: BTreeMap<String, StageState>,
    pub promotions: BTreeMap<String, Promotion>,
    pub runs: BTreeMap<String, Run>,
    /// Commit sha → names of gates that concluded `success`.
    pub gates: BTreeMap<String, BTreeSet<String>>,
    /// Image digest → its newest vulnerability scan (of the versions in this state).
    pub scans: BTreeMap<String, scan_policy::ScanRecord>,
    /// How many runs and promotions the app has had: the numbers in new ids.
    pub made: Made,
}

/// An app's counts of runs and promotions so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Made {
    pub runs: u64,
    pub promotions: u64,
}

impl AppState {
    /// An app nothing has happened to yet.
    pub fn new(app: AppName) -> Self {
        AppState {
            app,
            stages: BTreeMap::new(),
            promotions: BTreeMap::new(),
            runs: BTreeMap::new(),
            gates: BTreeMap::new(),
            scans: BTreeMap::new(),
            made: Made::default(),
        }
    }
}

/// What a chat command or an admin call asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CommandKind {
    Approve,
    Reject,
    Hold,
    Release,
    Rollback,
    Promote,
    /// Run the stage's verification checks again.
    Verify,
}

/// A command by a person, already resolved to one app.
#[derive(Debug, Clone, PartialEq)]
pub struct Command {
    pub kind: CommandKind,
    pub actor: String,
    /// None: the stage is implied (the one promotion waiting) or all stages (hold/release).
    pub stage: Option<EnvName>,
    /// Approve/reject exactly this promotion.
    pub promotion_id: Option<String>,
    /// The tag the command named, if any.
    pub tag: Option<String>,
    /// That tag resolved to a known version (by the store); None if unknown.
    pub version: Option<Version>,
    pub reason: String,
    pub override_freeze: bool,
    /// Promote past the stage's scan policy (admins only; audited with the reason).
    pub override_scan: bool,
    /// Where a reply goes (pull-request commands).
    pub repository: String,
    pub pull_request: u64,
}

/// Something that happened to one app.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// `build.succeeded`: a new run starts.
    Built {
        build_id: String,
        version: Version,
    },
    /// `source.test-gate` concluded `success` for a commit (already recorded in the state).
    GatePassed {
        commit: String,
    },
    /// The write-back landed.
    Committed {
        promotion_id: String,
        repository: String,
        branch: String,
        commit: String,
        /// PR mode: the pull request proposing `commit`; empty after a direct push.
        pull_request_url: String,
    },
    /// The write-back failed for good.
    WriteFailed {
        promotion_id: String,
        message: String,
    },
    Synced {
        promotion_id: String,
        revision: String,
    },
    Healthy {
        promotion_id: String,
    },
    Degraded {
        promotion_id: String,
        status: String,
        message: String,
    },
    Command(Command),
    /// `verification.completed`: the stage's checks of this promotion ended.
    Verified {
        promotion_id: String,
        verdict: Verdict,
        message: String,
    },
    /// A new scan of `digest` was recorded (already in the state).
    Scanned {
        digest: String,
    },
    /// Time passed: soak times end, freeze windows close.
    Tick,
}

/// One decision input: the event, its id (for derived ids) and the time it is decided at.
#[derive(Debug, Clone, PartialEq)]
pub struct Input {
    pub id: String,
    pub at: DateTime<Utc>,
    pub event: Event,
}

/// A row of the append-only audit log.
#[derive(Debug, Clone, PartialEq)]
pub struct Audit {
    pub actor: String,
    pub action: String,
    pub stage: Option<EnvName>,
    pub reason: String,
    pub detail: serde_json::Value,
}

/// An event to put into the outbox.
#[derive(Debug, Clone, PartialEq)]
pub enum Outgoing {
    PromotionRequested(v1::PromotionRequested),
    PromotionCommitted(v1::PromotionCommitted),
    PromotionFailed(v1::PromotionFailed),
    PromotionRolledBack(v1::PromotionRolledBack),
    ApprovalRequested(v1::ApprovalRequested),
    ApprovalGranted(v1::ApprovalGranted),
    ApprovalRejected(v1::ApprovalRejected),
    CommandRefused(v1::CommandRefused),
    HoldPlaced(v1::HoldPlaced),
    HoldReleased(v1::HoldReleased),
    ScanRequested(v1::ScanRequested),
    VerificationRequested(v1::VerificationRequested),
}

/// What a decision asks the edges to do, in order.
// Effects live for one decision; boxing the large variants would buy nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq)]
pub enum Effect {
    /// Insert or update the run.
    SaveRun(Run),
    /// Insert or update the promotion and its approvals.
    SavePromotion(Promotion),
    /// Insert or update what runs in the stage, and its hold.
    SaveStage(EnvName, StageState),
    /// Append to a run's timeline.
    Timeline {
        run_id: String,
        stage: Option<EnvName>,
        step: String,
        actor: String,
        detail: String,
    },
    Audit(Audit),
    Emit(Outgoing),
    /// Save the app's id counters.
    SaveMade(Made),
}
