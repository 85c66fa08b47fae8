//! Where a promotion's time goes: one histogram, [`STEP_SECONDS`], labelled by step, recorded
//! along the path build completion → decision → outbox → `promotion.requested` → writer queue
//! → git fetch/plan/commit/push → `promotion.committed`. The promotion benchmark scrapes it
//! from `/metrics` (sum / count per step) to print its breakdown.

use std::time::Duration;

use chrono::{DateTime, Utc};

/// The histogram's name; its label `step` is one of the constants below.
pub const STEP_SECONDS: &str = "slipway_promoter_step_seconds";

/// NATS: `build.succeeded`'s `ce-time` until the promoter's handler starts on it.
pub const BUILD_DELIVERY: &str = "build_delivery";
/// DB: the transaction that decides a build (inbox, lock, load, decide, write, outbox).
pub const BUILD_TX: &str = "build_tx";
/// DB commit + outbox relay + NATS: `promotion.requested`'s `ce-time` (set inside the
/// deciding transaction) until the write-back handler starts on it.
pub const REQUESTED_DELIVERY: &str = "requested_delivery";
/// DB: reading the requested promotion before writing it.
pub const WRITER_LOOKUP: &str = "writer_lookup";
/// Waiting in the GitOps writer's queue for the commit in flight (and any batch delay).
pub const GITOPS_QUEUE: &str = "gitops_queue";
/// git: fetching the remote branch (only when the cached clone is not known to be current).
pub const GIT_FETCH: &str = "git_fetch";
/// git: finding landed promotion ids and editing the files into a new tree.
pub const GIT_PLAN: &str = "git_plan";
/// git: writing the commit object.
pub const GIT_COMMIT: &str = "git_commit";
/// git: pushing the commit (accepted or rejected).
pub const GIT_PUSH: &str = "git_push";
/// Part of [`GIT_PUSH`] to a `git://` remote: connecting until the refs are advertised. It
/// runs beside [`GIT_PLAN`] and [`GIT_COMMIT`], so only what outlasts them is push time.
pub const GIT_PUSH_CONNECT: &str = "git_push_connect";
/// Part of [`GIT_PUSH`] to a `git://` remote: building the pack of the new objects.
pub const GIT_PUSH_PACK: &str = "git_push_pack";
/// Part of [`GIT_PUSH`] to a `git://` remote: sending commands and pack until the remote
/// reports the branch updated (its unpacking, checks and ref update).
pub const GIT_PUSH_REPORT: &str = "git_push_report";
/// DB: the transaction that records the commit and enqueues `promotion.committed`.
pub const COMMITTED_TX: &str = "committed_tx";

/// Records `elapsed` for `step`.
pub fn record(step: &'static str, elapsed: Duration) {
    metrics::histogram!(STEP_SECONDS, "step" => step).record(elapsed.as_secs_f64());
}

/// Records the time from an event's `ce-time` until now (zero if the clocks disagree).
pub fn record_since(step: &'static str, time: DateTime<Utc>) {
    record(step, (Utc::now() - time).to_std().unwrap_or_default());
}
