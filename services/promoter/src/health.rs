//! The health gate: after a push, watch what the stage runs and report `promotion.synced`,
//! `promotion.healthy` and `promotion.degraded`.
//!
//! `promotion.committed` arrives on the durable consumer [`DURABLE`]. For its app × stage the
//! [`config::HealthConfig`] names the object to watch — the stage's Argo CD `Application` or,
//! without Argo CD, the `Deployment` — and [`watch::observe`] list+watches it through `kube`.
//! With mode `committed` nothing is watched: the pushed commit is reported synced and healthy.
//! [`judge`] reads each version of the object; the first look showing our commit applied is
//! `synced`, then healthy or degraded. No healthy look within the watch window (counted from
//! the commit) is `degraded` ("no healthy report within …"). With `follow_after_healthy`
//! the watch goes on after healthy until the window ends, so a later crash loop still
//! degrades the stage (and the pipeline rolls back when its policy says so).
//!
//! The message stays in hand for the whole watch (the consumer loop reports progress), so a
//! replica that stops naks it and another resumes the watch, with the same deadline. Event ids
//! are derived from promotion id + verdict, so a repeated verdict is deduplicated by JetStream.
//! A newer commit to the same app × stage supersedes the watch: before publishing, the last
//! `promotion.committed` on the subject is looked up, and a stale watch ends without verdict.

pub mod config;
pub mod judge;
pub mod watch;

pub use config::{HealthConfig, HealthMode, Target, WatchPlan};

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::stream::Stream;
use futures::StreamExt;
use slipway_mesh::names::{AppName, EnvName};
use slipway_mesh::v1::{self, event::Payload};
use slipway_mesh::{Envelope, EventId, EventKind};
use slipway_runtime::consumer::{self, ConsumerSpec, Delivery, LoopOptions, Outcome};
use slipway_runtime::jetstream::Publisher;
use slipway_runtime::service::{self, Running};
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, instrument};

use crate::Config;
use judge::{Tracker, Verdict};
use watch::Look;

/// Durable consumer of `promotion.committed`, shared by the replicas.
pub const DURABLE: &str = "promoter-health";

/// A redelivered watch whose window has passed still gets this long to look once.
const GRACE: Duration = Duration::from_secs(5);

/// The kube client, when some stage's health is watched; built before the service starts
/// so a missing kubeconfig fails startup instead of every watch.
pub async fn client(config: &HealthConfig) -> anyhow::Result<Option<kube::Client>> {
    if !config.watches_anything() {
        return Ok(None);
    }
    Ok(Some(watch::client(config).await?))
}

/// Starts [`run`] as one of the service's tasks when some stage's health is reported by the
/// promoter; it stops (its watches nak'ed for another replica) with the service.
pub fn spawn(client: Option<kube::Client>, config: Arc<Config>, apps: crate::catalog::Apps, running: &Running) {
    if config.health.reports_anything() {
        let (stream, publisher) = (running.ctx.stream.clone(), running.ctx.publisher.clone());
        let span = tracing::info_span!("health");
        let watches = run(config, apps, client, stream, publisher, running.shutdown.child_token()).instrument(span);
        running.spawn("health watches", watches);
    }
}

/// Consumes `promotion.committed` on [`DURABLE`] and watches each promotion, until `shutdown`.
/// `client` is needed only when some stage is watched through Kubernetes.
pub async fn run(
    config: Arc<Config>,
    apps: crate::catalog::Apps,
    client: Option<kube::Client>,
    stream: Stream,
    publisher: Publisher,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let mut spec = ConsumerSpec::new(DURABLE, &[EventKind::PromotionCommitted.filter()], &config.nats);
    let watches = config.health.max_watches;
    spec.max_ack_pending = spec.max_ack_pending.max(i64::try_from(watches).unwrap_or(i64::MAX));
    let ensured = service::retry("ensure consumer", &shutdown, || consumer::ensure_consumer(&stream, &spec)).await;
    let consumer = match ensured {
        Ok(c) => c,
        Err(slipway_runtime::Error::ShuttingDown) => return Ok(()),
        Err(e) => return Err(e.into()),
    };
    let watcher = Arc::new(Watcher { config, apps, client, stream, publisher, shutdown: shutdown.clone() });
    consumer::run(consumer, LoopOptions::for_spec(&spec, watches), shutdown, move |d| watcher.clone().handle(d))
        .await?;
    Ok(())
}

/// Why a watch ended before its verdict.
enum Stop {
    Shutdown,
    Publish(String),
}

struct Watcher {
    config: Arc<Config>,
    /// For each app's pipeline (its stages' watch windows).
    apps: crate::catalog::Apps,
    client: Option<kube::Client>,
    stream: Stream,
    publisher: Publisher,
    shutdown: CancellationToken,
}

impl Watcher {
    async fn handle(self: Arc<Self>, delivery: Delivery) -> Outcome {
        let Payload::PromotionCommitted(committed) = &delivery.payload else { return Outcome::Ack };
        let (app, stage) = match (AppName::parse(&committed.app), EnvName::parse(&committed.stage)) {
            (Ok(app), Ok(stage)) => (app, stage),
            _ => return Outcome::Reject(format!("bad app or stage in {}", delivery.envelope.id)),
        };
        let pipeline = self.apps.get().pipeline(app.as_str());
        let Some(plan) = self.config.health.plan(&pipeline, &app, &stage) else { return Outcome::Ack };
        if matches!(plan.target, Target::Deployment { .. } | Target::Rollout { .. }) && committed.image.is_none() {
            return Outcome::Reject("promotion.committed without image; the Deployment cannot be matched".into());
        }
        match self.watch(&delivery.envelope, committed, &plan).await {
            Ok(()) => Outcome::Ack,
            Err(Stop::Shutdown) => Outcome::Retry("shutting down; another replica resumes the watch".into()),
            Err(Stop::Publish(e)) => Outcome::Retry(e),
        }
    }

    #[instrument(skip_all, fields(promotion_id = %c.promotion_id, app = %c.app, stage = %c.stage))]
    async fn watch(&self, envelope: &Envelope, c: &v1::PromotionCommitted, plan: &WatchPlan) -> Result<(), Stop> {
        let client = match (&plan.target, &self.client) {
            (Target::Commit, _) => return self.report_commit(envelope, c).await,
            (_, Some(client)) => client.clone(),
            (_, None) => return Err(Stop::Publish("no Kubernetes client for a watched stage".into())),
        };
        let mut looks = watch::observe(client, &plan.target, c.gitops_commit.clone(), c.image.clone());
        let deadline = tokio::time::Instant::now() + remaining(envelope, plan.window);
        let mut tracker = Tracker::default();
        tracing::info!(target = ?plan.target, "watching");
        loop {
            let look = tokio::select! {
                () = self.shutdown.cancelled() => return Err(Stop::Shutdown),
                () = tokio::time::sleep_until(deadline) => break,
                next = looks.next() => next,
            };
            let verdicts = match look {
                Some(Ok(Look::Seen(seen))) => tracker.observe(&seen),
                Some(Ok(Look::Missing(what))) => tracker.missing(&what),
                Some(Err(e)) => {
                    tracing::warn!(error = %e, "watch failed; retrying");
                    continue;
                }
                None => break,
            };
            if !verdicts.is_empty() && !self.current(envelope, c).await {
                return Ok(());
            }
            for verdict in verdicts {
                self.publish(envelope, c, verdict).await?;
            }
            if tracker.degraded || (tracker.healthy && !self.config.health.follow_after_healthy) {
                return Ok(());
            }
        }
        if tracker.healthy || tracker.degraded || !self.current(envelope, c).await {
            return Ok(());
        }
        let mut message = format!("no healthy report within {}", human(plan.window));
        if !tracker.last.is_empty() {
            message = format!("{message} (last seen: {})", tracker.last);
        }
        self.publish(envelope, c, Verdict::Degraded { status: "Timeout".into(), message }).await
    }

    /// Mode `committed`: the push is the deployment, so synced and healthy at once.
    async fn report_commit(&self, envelope: &Envelope, c: &v1::PromotionCommitted) -> Result<(), Stop> {
        if !self.current(envelope, c).await {
            return Ok(());
        }
        self.publish(envelope, c, Verdict::Synced).await?;
        self.publish(envelope, c, Verdict::Healthy).await
    }

    /// False when a newer promotion was committed to the same app × stage since `c`.
    async fn current(&self, envelope: &Envelope, c: &v1::PromotionCommitted) -> bool {
        let last = match self.stream.direct_get_last_for_subject(envelope.subject.as_str()).await {
            Ok(m) => m,
            Err(e) => {
                tracing::debug!(error = %e, "cannot look up the latest commit; assuming current");
                return true;
            }
        };
        let latest = Envelope::from_headers(&last.headers)
            .and_then(|e| slipway_mesh::decode_payload(e.kind, &last.payload))
            .ok()
            .and_then(|p| match p {
                Payload::PromotionCommitted(latest) => Some(latest.promotion_id),
                _ => None,
            });
        let current = latest.as_ref().is_none_or(|id| *id == c.promotion_id);
        if !current {
            tracing::info!(newer = ?latest, "superseded by a newer commit; watch ends");
        }
        current
    }

    async fn publish(&self, envelope: &Envelope, c: &v1::PromotionCommitted, verdict: Verdict) -> Result<(), Stop> {
        let (app, stage, promotion_id) = (c.app.clone(), c.stage.clone(), c.promotion_id.clone());
        let (name, published) = match verdict {
            Verdict::Synced => {
                let revision = c.gitops_commit.clone();
                let event = v1::PromotionSynced { promotion_id, app, stage, revision };
                ("synced", self.publisher.publish_with_id(verdict_id(&c.promotion_id, "synced"), &event).await)
            }
            Verdict::Healthy => {
                let event = v1::PromotionHealthy { promotion_id, app, stage, image: c.image.clone() };
                let elapsed = (chrono::Utc::now() - envelope.time).to_std().unwrap_or_default();
                metrics::histogram!("slipway_promoter_commit_to_healthy_seconds", "stage" => c.stage.clone())
                    .record(elapsed.as_secs_f64());
                ("healthy", self.publisher.publish_with_id(verdict_id(&c.promotion_id, "healthy"), &event).await)
            }
            Verdict::Degraded { status, message } => {
                tracing::warn!(%status, %message, "degraded");
                let event = v1::PromotionDegraded { promotion_id, app, stage, health_status: status, message };
                ("degraded", self.publisher.publish_with_id(verdict_id(&c.promotion_id, "degraded"), &event).await)
            }
        };
        published.map_err(|e| Stop::Publish(format!("publishing promotion.{name}: {e}")))?;
        metrics::counter!("slipway_promoter_health_verdicts_total", "stage" => c.stage.clone(), "verdict" => name)
            .increment(1);
        tracing::info!(verdict = name, "reported");
        Ok(())
    }
}

/// Time left of the window that began at the commit event, but at least a short look.
fn remaining(envelope: &Envelope, window: Duration) -> Duration {
    let elapsed = (chrono::Utc::now() - envelope.time).to_std().unwrap_or_default();
    window.saturating_sub(elapsed).max(GRACE.min(window))
}

/// The id of `verdict` about `promotion_id`: the same on every replica and redelivery.
pub fn verdict_id(promotion_id: &str, verdict: &str) -> EventId {
    EventId::parse(&format!("{promotion_id}.{verdict}")).unwrap_or_else(|_| {
        // Too long or odd characters: a stable hash stands in for the promotion id.
        let hash = promotion_id
            .bytes()
            .fold(0xcbf2_9ce4_8422_2325_u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3));
        EventId::parse(&format!("health-{hash:016x}.{verdict}")).unwrap_or_default()
    })
}

/// `15m`, `90s` → `1m30s`.
fn human(d: Duration) -> String {
    let (m, s) = (d.as_secs() / 60, d.as_secs() % 60);
    match (m, s) {
        (0, s) => format!("{s}s"),
        (m, 0) => format!("{m}m"),
        (m, s) => format!("{m}m{s}s"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verdict_ids_are_stable_and_valid() {
        assert_eq!(verdict_id("r-0190.dev", "healthy").as_str(), "r-0190.dev.healthy");
        let long = "x".repeat(200);
        assert_eq!(verdict_id(&long, "degraded"), verdict_id(&long, "degraded"));
        assert!(verdict_id(&long, "degraded").as_str().starts_with("health-"));
        assert_ne!(verdict_id("a b", "synced"), verdict_id("a c", "synced"));
    }

    #[test]
    fn windows_read_as_people_write_them() {
        assert_eq!(human(Duration::from_secs(900)), "15m");
        assert_eq!(human(Duration::from_secs(90)), "1m30s");
        assert_eq!(human(Duration::from_secs(2)), "2s");
    }
}
