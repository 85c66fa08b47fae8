//! [`Promoter`]: the edges around [`decide`]. Each consumed event is handled in one
//! PostgreSQL transaction — inbox claim, app lock, load, decide, apply (rows, timeline, audit,
//! outbox) — and then acked. The same struct serves people: [`Promoter::promote`],
//! [`approve`](Promoter::approve), [`reject`](Promoter::reject), [`rollback`](Promoter::rollback),
//! [`hold`](Promoter::hold) and [`release`](Promoter::release) are what chat commands and the
//! admin API call.

use std::sync::Arc;
use std::time::Instant;

use chrono::Utc;
use slipway_mesh::names::{AppName, EnvName};
use slipway_mesh::v1::{self, event::Payload};
use slipway_runtime::consumer::{Delivery, Outcome};
use slipway_runtime::db::inbox;
use slipway_runtime::telemetry;
use sqlx::{PgConnection, PgPool};
use tracing::{Instrument as _, instrument};

use crate::config::Config;
use crate::deployer::Deployer;
use crate::domain::{
    self, Command, CommandKind, Decision, Effect, Event, Input, PromotionState, Refusal, Verdict, Version, decide,
};
use crate::error::{Error, Result};
use crate::{store, timing};

/// Durable consumer of builds, test gates, chat commands and health reports.
pub const DURABLE: &str = "promoter";
/// Durable consumer of the promoter's own `promotion.requested`: the write-back.
pub const WRITER_DURABLE: &str = "promoter-writer";

/// What a command did, for the caller's reply: the decision's own answer.
pub use crate::domain::Done as Reply;

/// The pipeline service: state in PostgreSQL, versions written through a [`Deployer`].
pub struct Promoter {
    pub(crate) pool: PgPool,
    /// The apps and pipelines in force (`[[apps]]` and `[pipeline]`, or the catalog).
    pub(crate) apps: crate::catalog::Apps,
    source: String,
    deployer: Arc<dyn Deployer>,
    max_deliver: i64,
}

impl std::fmt::Debug for Promoter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Promoter").field("source", &self.source).finish_non_exhaustive()
    }
}

impl Promoter {
    /// `source` is the `ce-source` of the events it emits.
    pub fn new(pool: PgPool, config: Arc<Config>, source: impl Into<String>, deployer: Arc<dyn Deployer>) -> Self {
        let max_deliver = config.nats.max_deliver;
        let apps = crate::catalog::Apps::from_config(&config);
        Promoter { pool, apps, source: source.into(), deployer, max_deliver }
    }

    /// Takes apps and pipelines from `apps` (the catalog) instead of the configuration.
    pub fn with_apps(mut self, apps: crate::catalog::Apps) -> Self {
        self.apps = apps;
        self
    }

    /// Decides `event` about `app` inside `conn`'s transaction and applies the effects.
    async fn decide_in(
        &self,
        conn: &mut PgConnection,
        app: &AppName,
        id: &str,
        event: Event,
        extra: &[String],
    ) -> Result<Decision> {
        store::lock_app(conn, app).await?;
        let state = store::load(conn, app, extra).await?;
        let input = Input { id: id.to_owned(), at: Utc::now(), event };
        let decision = decide(&self.apps.get().pipeline(app.as_str()), &state, input);
        match self.resumed_run(conn, &decision.effects).await? {
            Some(span) => store::apply(conn, Some(app), &self.source, &decision.effects).instrument(span).await?,
            None => store::apply(conn, Some(app), &self.source, &decision.effects).await?,
        }
        for effect in &decision.effects {
            if let Effect::Audit(audit) = effect
                && audit.action == "scan-blocked"
            {
                let stage = audit.stage.as_ref().map(ToString::to_string).unwrap_or_default();
                metrics::counter!("slipway_promotions_blocked_by_scan_total", "app" => app.to_string(), "stage" => stage)
                    .increment(1);
            }
        }
        Ok(decision)
    }

    /// The span a decision's effects are applied in when it acts for a run but was not caused
    /// from within the run's trace: a tick, a person's command, a test gate. Its events must
    /// still belong to the run's one trace (the push's), so the span continues the run's
    /// stored trace and links to the span of the cause. `None` (the current span serves)
    /// when the decision emits nothing, touches no run or several, or is already in the trace.
    async fn resumed_run(&self, conn: &mut PgConnection, effects: &[Effect]) -> Result<Option<tracing::Span>> {
        if !effects.iter().any(|e| matches!(e, Effect::Emit(_))) {
            return Ok(None);
        }
        let mut runs: Vec<&str> = effects
            .iter()
            .filter_map(|e| match e {
                Effect::SaveRun(run) => Some(run.id.as_str()),
                Effect::SavePromotion(p) => p.run_id.as_deref(),
                _ => None,
            })
            .collect();
        runs.sort_unstable();
        runs.dedup();
        let [run] = runs.as_slice() else { return Ok(None) };
        let Some(traceparent) = store::run_traceparent(conn, run).await? else { return Ok(None) };
        let current = telemetry::current_traceparent();
        let run_trace = telemetry::trace_id_of(&traceparent);
        if current.as_deref().and_then(telemetry::trace_id_of) == run_trace {
            return Ok(None);
        }
        let span = tracing::info_span!("resume_run", run.id = %run);
        telemetry::set_parent(&span, telemetry::context_of(&traceparent));
        span.follows_from(tracing::Span::current());
        Ok(Some(span))
    }

    /// The handler of the [`DURABLE`] consumer.
    pub async fn handle(self: Arc<Self>, delivery: Delivery) -> Outcome {
        let started = Instant::now();
        if matches!(delivery.payload, Payload::BuildSucceeded(_)) {
            timing::record_since(timing::BUILD_DELIVERY, delivery.envelope.time);
        }
        let applied = self.apply_delivery(&delivery).await;
        if matches!(delivery.payload, Payload::BuildSucceeded(_)) {
            timing::record(timing::BUILD_TX, started.elapsed());
        }
        match applied {
            Ok(()) => Outcome::Ack,
            Err(e) => e.outcome(),
        }
    }

    #[instrument(skip_all, fields(event.id = %delivery.envelope.id, kind = %delivery.envelope.kind))]
    async fn apply_delivery(&self, delivery: &Delivery) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        if !inbox::claim(&mut tx, DURABLE, &delivery.envelope.id).await? {
            return Ok(());
        }
        let id = delivery.envelope.id.as_str();
        match &delivery.payload {
            Payload::BuildSucceeded(build) => self.on_build(&mut tx, id, build, &trace_of(delivery)).await?,
            Payload::SourceTestGate(gate) => {
                store::record_gate(&mut tx, gate).await?;
                if gate.conclusion == "success" {
                    for app in store::apps_waiting(&mut tx, Some(&gate.commit_sha), "").await? {
                        let event = Event::GatePassed { commit: gate.commit_sha.clone() };
                        self.decide_in(&mut tx, &app, id, event, &[]).await?;
                    }
                }
            }
            Payload::ChatopsCommand(command) => self.on_chat(&mut tx, id, command).await?,
            // Kept for the dashboard: what a waiting version brings over the running one.
            Payload::SourcePush(push) => store::dashboard::record_push(&mut tx, push).await?,
            Payload::PromotionHealthy(h) => {
                self.on_health(&mut tx, id, &h.app, Event::Healthy { promotion_id: h.promotion_id.clone() }).await?
            }
            Payload::PromotionDegraded(d) => {
                let event = Event::Degraded {
                    promotion_id: d.promotion_id.clone(),
                    status: d.health_status.clone(),
                    message: d.message.clone(),
                };
                self.on_health(&mut tx, id, &d.app, event).await?;
            }
            Payload::BuildScanned(scan) => {
                self.on_scan(&mut tx, id, &scan.app, crate::store::scans::Scan::Report(scan)).await?;
            }
            Payload::BuildScanFailed(failed) => {
                self.on_scan(&mut tx, id, &failed.app, crate::store::scans::Scan::Failed(failed)).await?;
            }
            Payload::VerificationCompleted(v) => {
                let event = Event::Verified {
                    promotion_id: v.promotion_id.clone(),
                    verdict: Verdict::parse(&v.verdict),
                    message: v.message.clone(),
                };
                self.on_health(&mut tx, id, &v.app, event).await?;
            }
            Payload::PromotionSynced(s) => {
                let event = Event::Synced { promotion_id: s.promotion_id.clone(), revision: s.revision.clone() };
                self.on_health(&mut tx, id, &s.app, event).await?;
            }
            _ => {}
        }
        tx.commit().await?;
        Ok(())
    }

    async fn on_build(
        &self,
        conn: &mut PgConnection,
        id: &str,
        build: &v1::BuildSucceeded,
        (trace_id, traceparent): &(String, String),
    ) -> Result<()> {
        let app = AppName::parse(&build.app)?;
        if self.apps.get().app(app.as_str()).is_none() {
            self.apps.catch_up().await;
        }
        if self.apps.get().app(app.as_str()).is_none() {
            tracing::debug!(app = %app, "not an app of this promoter");
            return Ok(());
        }
        if store::run_exists(conn, &app, &build.build_id).await? {
            return Ok(());
        }
        let image =
            build.image.clone().ok_or_else(|| Error::InvalidArgument("build.succeeded without image".into()))?;
        let version = Version { image, source: build.source.clone().unwrap_or_default() };
        let event = Event::Built { build_id: build.build_id.clone(), version };
        self.decide_in(conn, &app, id, event, &[]).await?;
        if !trace_id.is_empty() {
            store::set_run_trace(conn, &app, &build.build_id, trace_id, traceparent).await?;
        }
        Ok(())
    }

    /// A scan of an image: kept as its digest's newest (unless a newer one is there), then
    /// the app's promotions of that digest are looked at again.
    async fn on_scan(
        &self,
        conn: &mut PgConnection,
        id: &str,
        app: &str,
        scan: crate::store::scans::Scan<'_>,
    ) -> Result<()> {
        let app = AppName::parse(app)?;
        let Some(digest) = scan.digest().map(str::to_owned) else {
            tracing::warn!(app = %app, "scan event without an image digest; ignored");
            return Ok(());
        };
        if !crate::store::scans::record(conn, id, app.as_str(), &scan).await? {
            return Ok(());
        }
        if self.apps.get().app(app.as_str()).is_some() {
            self.decide_in(conn, &app, id, Event::Scanned { digest }, &[]).await?;
        }
        Ok(())
    }

    async fn on_health(&self, conn: &mut PgConnection, id: &str, app: &str, event: Event) -> Result<()> {
        let app = AppName::parse(app)?;
        let promotion = match &event {
            Event::Healthy { promotion_id }
            | Event::Degraded { promotion_id, .. }
            | Event::Synced { promotion_id, .. }
            | Event::Verified { promotion_id, .. } => promotion_id.clone(),
            _ => String::new(),
        };
        self.decide_in(conn, &app, id, event, &[promotion]).await?;
        Ok(())
    }

    /// A chat command: resolved to an app, decided, and answered through the events it emits.
    async fn on_chat(&self, conn: &mut PgConnection, id: &str, chat: &v1::ChatopsCommand) -> Result<()> {
        use v1::CommandKind as K;
        let kind = match chat.kind() {
            K::Approve | K::Lgtm => CommandKind::Approve,
            K::Reject => CommandKind::Reject,
            K::Hold => CommandKind::Hold,
            K::Unhold => CommandKind::Release,
            K::Rollback => CommandKind::Rollback,
            K::Promote => CommandKind::Promote,
            K::Verify => CommandKind::Verify,
            K::Retry | K::Unknown | K::Unspecified => return Ok(()),
        };
        let stage = (!chat.env.is_empty()).then(|| EnvName::parse(&chat.env)).transpose()?;
        let command = Command {
            kind,
            actor: chat.actor.clone(),
            stage,
            promotion_id: None,
            tag: (!chat.tag.is_empty()).then(|| chat.tag.clone()),
            version: None,
            reason: chat.reason.clone(),
            override_freeze: false,
            override_scan: false,
            repository: chat.repository.clone(),
            pull_request: chat.pull_request,
        };
        let app = (!chat.app.is_empty()).then_some(chat.app.as_str());
        // A chat command's answer goes out as its events (the notifier replies in the thread).
        self.command_in(conn, id, app, command).await.map(drop)
    }

    /// Resolves the app (named, or the one waiting for `command.repository`) and the tag, then
    /// decides. A command that cannot be resolved is refused (audit row + `approval.rejected`).
    async fn command_in(
        &self,
        conn: &mut PgConnection,
        id: &str,
        app: Option<&str>,
        mut command: Command,
    ) -> Result<Decision> {
        let app = match app {
            Some(name) => match AppName::parse(name).ok().filter(|a| self.apps.get().app(a.as_str()).is_some()) {
                Some(app) => app,
                None => return self.refuse_in(conn, name, &command, Refusal::UnknownApp).await,
            },
            None if matches!(command.kind, CommandKind::Approve | CommandKind::Reject) => {
                let waiting = store::apps_waiting(conn, None, &command.repository).await?;
                match waiting.as_slice() {
                    [one] => one.clone(),
                    [] => return self.refuse_in(conn, "", &command, Refusal::NoPending).await,
                    _ => return self.refuse_in(conn, "", &command, Refusal::Ambiguous).await,
                }
            }
            None => return self.refuse_in(conn, "", &command, Refusal::AppRequired).await,
        };
        if let Some(tag) = &command.tag {
            command.version = store::find_version(conn, &app, tag).await?;
        }
        self.decide_in(conn, &app, id, Event::Command(command), &[]).await
    }

    async fn refuse_in(&self, conn: &mut PgConnection, app: &str, command: &Command, why: Refusal) -> Result<Decision> {
        let decision = domain::refusal(&self.apps.get().pipeline(app), app, command, why);
        let app = AppName::parse(app).ok();
        store::apply(conn, app.as_ref(), &self.source, &decision.effects).await?;
        Ok(decision)
    }

    /// Runs a command from the admin API (or any caller) in its own transaction. The result is
    /// committed either way (a refusal is audited and announced); a refusal is then returned as
    /// [`Error::Refused`].
    pub async fn command(&self, app: Option<&str>, command: Command) -> Result<Reply> {
        let mut tx = self.pool.begin().await?;
        let id = uuid::Uuid::now_v7().to_string();
        let decision = self.command_in(&mut tx, &id, app, command).await?;
        tx.commit().await?;
        decision.reply.map_err(|refused| Error::Refused {
            reason: refused.reason,
            allowed_approvers: refused.allowed_approvers,
            allowed_teams: refused.allowed_teams,
        })
    }

    /// The handler of the [`WRITER_DURABLE`] consumer: writes a requested promotion, then
    /// records where it landed (or that it failed for good).
    pub async fn write_back(self: Arc<Self>, delivery: Delivery) -> Outcome {
        match self.write_requested(&delivery).await {
            Ok(()) => Outcome::Ack,
            Err(e) => e.outcome(),
        }
    }

    #[instrument(skip_all, fields(event.id = %delivery.envelope.id))]
    async fn write_requested(&self, delivery: &Delivery) -> Result<()> {
        let Payload::PromotionRequested(requested) = &delivery.payload else { return Ok(()) };
        timing::record_since(timing::REQUESTED_DELIVERY, delivery.envelope.time);
        let looking = Instant::now();
        let mut conn = self.pool.acquire().await?;
        let Some((app, promotion, current)) = store::promotion(&mut conn, &requested.promotion_id).await? else {
            return Ok(());
        };
        drop(conn);
        timing::record(timing::WRITER_LOOKUP, looking.elapsed());
        if promotion.state != PromotionState::Requested {
            return Ok(());
        }
        let in_force = self.apps.get();
        let written = match in_force.app(app.as_str()) {
            // A newer version was asked for meanwhile; writing this one would only undo it.
            _ if !current => Err(Error::Deploy { message: "superseded before it was written".into(), permanent: true }),
            None => Err(Error::Deploy { message: format!("app {app} is not configured"), permanent: true }),
            Some(config) => self.deployer.write(config, &promotion).await,
        };
        // Event (the promotion request) to pushed commit, as operators feel it.
        let since_requested = (chrono::Utc::now() - delivery.envelope.time).to_std().unwrap_or_default();
        let outcome = if written.is_ok() { "pushed" } else { "failed" };
        metrics::histogram!("slipway_promoter_request_to_push_seconds", "outcome" => outcome)
            .record(since_requested.as_secs_f64());
        let event = match written {
            Ok(w) => Event::Committed {
                promotion_id: promotion.id.clone(),
                repository: w.repository,
                branch: w.branch,
                commit: w.commit,
                pull_request_url: w.pull_request_url.unwrap_or_default(),
            },
            Err(Error::Deploy { message, permanent }) if permanent || delivery.attempt >= self.max_deliver => {
                Event::WriteFailed { promotion_id: promotion.id.clone(), message }
            }
            Err(e) => return Err(e),
        };
        let recording = Instant::now();
        let mut tx = self.pool.begin().await?;
        if inbox::claim(&mut tx, WRITER_DURABLE, &delivery.envelope.id).await? {
            self.decide_in(&mut tx, &app, delivery.envelope.id.as_str(), event, std::slice::from_ref(&promotion.id))
                .await?;
        }
        tx.commit().await?;
        timing::record(timing::COMMITTED_TX, recording.elapsed());
        Ok(())
    }

    /// Re-checks every waiting promotion (soak times, freeze windows); returns how many apps
    /// were looked at.
    pub async fn tick(&self) -> Result<usize> {
        let mut conn = self.pool.acquire().await?;
        let waiting = store::approvals_waiting(&mut conn).await?;
        metrics::gauge!("slipway_promoter_approvals_waiting").set(waiting as f64);
        let apps = store::apps_waiting(&mut conn, None, "").await?;
        drop(conn);
        for app in &apps {
            let mut tx = self.pool.begin().await?;
            let id = uuid::Uuid::now_v7().to_string();
            self.decide_in(&mut tx, app, &id, Event::Tick, &[]).await?;
            tx.commit().await?;
        }
        Ok(apps.len())
    }
}

/// The trace a delivery belongs to, as (trace id, traceparent): the one its producer's
/// `traceparent` names, else the consumer span's (which then began a trace of its own).
fn trace_of(delivery: &Delivery) -> (String, String) {
    let carried = delivery.envelope.traceparent.clone().or_else(telemetry::current_traceparent);
    carried.and_then(|tp| Some((telemetry::trace_id_of(&tp)?, tp))).unwrap_or_default()
}
