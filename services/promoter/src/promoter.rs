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
use sqlx::{PgConnection, PgPool};
use tracing::instrument;

use crate::config::Config;
use crate::deployer::Deployer;
use crate::domain::{
    self, Command, CommandKind, Effect, Event, Input, Outgoing, PromotionState, Version, decide, reason,
};
use crate::error::{Error, Result};
use crate::{store, timing};

/// Durable consumer of builds, test gates, chat commands and health reports.
pub const DURABLE: &str = "promoter";
/// Durable consumer of the promoter's own `promotion.requested`: the write-back.
pub const WRITER_DURABLE: &str = "promoter-writer";

/// What a command did, for the caller's reply.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Reply {
    /// The promotion created, approved or rejected.
    pub promotion_id: Option<String>,
    pub granted: u32,
    pub required: u32,
    /// Where a rollback goes.
    pub to: Option<v1::ImageRef>,
}

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
    ) -> Result<Vec<Effect>> {
        store::lock_app(conn, app).await?;
        let state = store::load(conn, app, extra).await?;
        let input = Input { id: id.to_owned(), at: Utc::now(), event };
        let effects = decide(&self.apps.get().pipeline(app.as_str()), &state, input);
        store::apply(conn, Some(app), &self.source, &effects).await?;
        Ok(effects)
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
            Payload::BuildSucceeded(build) => self.on_build(&mut tx, id, build).await?,
            Payload::SourceTestGate(gate) => {
                store::record_gate(&mut tx, gate).await?;
                if gate.conclusion == "success" {
                    for app in store::apps_waiting(&mut tx, Some(&gate.commit_sha), "").await? {
                        let event = Event::GatePassed { commit: gate.commit_sha.clone() };
                        self.decide_in(&mut tx, &app, id, event, &[]).await?;
                    }
                }
            }
            Payload::ChatopsCommand(command) => drop(self.on_chat(&mut tx, id, command).await?),
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
            Payload::PromotionSynced(s) => {
                let event = Event::Synced { promotion_id: s.promotion_id.clone(), revision: s.revision.clone() };
                self.on_health(&mut tx, id, &s.app, event).await?;
            }
            _ => {}
        }
        tx.commit().await?;
        Ok(())
    }

    async fn on_build(&self, conn: &mut PgConnection, id: &str, build: &v1::BuildSucceeded) -> Result<()> {
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
        Ok(())
    }

    async fn on_health(&self, conn: &mut PgConnection, id: &str, app: &str, event: Event) -> Result<()> {
        let app = AppName::parse(app)?;
        let promotion = match &event {
            Event::Healthy { promotion_id }
            | Event::Degraded { promotion_id, .. }
            | Event::Synced { promotion_id, .. } => promotion_id.clone(),
            _ => String::new(),
        };
        self.decide_in(conn, &app, id, event, &[promotion]).await?;
        Ok(())
    }

    /// A chat command: resolved to an app, decided, and answered through the events it emits.
    async fn on_chat(&self, conn: &mut PgConnection, id: &str, chat: &v1::ChatopsCommand) -> Result<Vec<Effect>> {
        use v1::CommandKind as K;
        let kind = match chat.kind() {
            K::Approve | K::Lgtm => CommandKind::Approve,
            K::Reject => CommandKind::Reject,
            K::Hold => CommandKind::Hold,
            K::Unhold => CommandKind::Release,
            K::Rollback => CommandKind::Rollback,
            K::Promote => CommandKind::Promote,
            K::Retry | K::Unknown | K::Unspecified => return Ok(Vec::new()),
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
            repository: chat.repository.clone(),
            pull_request: chat.pull_request,
        };
        let app = (!chat.app.is_empty()).then_some(chat.app.as_str());
        self.command_in(conn, id, app, command).await
    }

    /// Resolves the app (named, or the one waiting for `command.repository`) and the tag, then
    /// decides. A command that cannot be resolved is refused (audit row + `approval.rejected`).
    async fn command_in(
        &self,
        conn: &mut PgConnection,
        id: &str,
        app: Option<&str>,
        mut command: Command,
    ) -> Result<Vec<Effect>> {
        let app = match app {
            Some(name) => match AppName::parse(name).ok().filter(|a| self.apps.get().app(a.as_str()).is_some()) {
                Some(app) => app,
                None => return self.refuse_in(conn, name, &command, "unknown-app").await,
            },
            None if matches!(command.kind, CommandKind::Approve | CommandKind::Reject) => {
                let waiting = store::apps_waiting(conn, None, &command.repository).await?;
                match waiting.as_slice() {
                    [one] => one.clone(),
                    [] => return self.refuse_in(conn, "", &command, reason::NO_PENDING).await,
                    _ => return self.refuse_in(conn, "", &command, reason::AMBIGUOUS).await,
                }
            }
            None => return self.refuse_in(conn, "", &command, "app-required").await,
        };
        if let Some(tag) = &command.tag {
            command.version = store::find_version(conn, &app, tag).await?;
        }
        self.decide_in(conn, &app, id, Event::Command(command), &[]).await
    }

    async fn refuse_in(&self, conn: &mut PgConnection, app: &str, command: &Command, why: &str) -> Result<Vec<Effect>> {
        let effects = domain::refusal(&self.apps.get().pipeline(app), app, command, why);
        let app = AppName::parse(app).ok();
        store::apply(conn, app.as_ref(), &self.source, &effects).await?;
        Ok(effects)
    }

    /// Runs a command from the admin API (or any caller) in its own transaction. The result is
    /// committed either way (a refusal is audited and announced); a refusal is then returned as
    /// [`Error::Refused`].
    pub async fn command(&self, app: Option<&str>, command: Command) -> Result<Reply> {
        let mut tx = self.pool.begin().await?;
        let id = uuid::Uuid::now_v7().to_string();
        let actor = command.actor.clone();
        let kind = command.kind;
        let effects = self.command_in(&mut tx, &id, app, command).await?;
        tx.commit().await?;
        reply(kind, &actor, &effects)
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
        let waiting: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM promotions WHERE state = 'pending' AND waiting_on LIKE 'approvals:%'",
        )
        .fetch_one(&mut *conn)
        .await?;
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

/// The reply to `actor`'s command of `kind`, from the effects it had.
fn reply(kind: CommandKind, actor: &str, effects: &[Effect]) -> Result<Reply> {
    let mut reply = Reply::default();
    for effect in effects {
        match effect {
            Effect::Emit(Outgoing::ApprovalRejected(r)) if r.actor == actor && r.reason != reason::REJECTED => {
                return Err(Error::Refused {
                    reason: r.reason.clone(),
                    allowed_approvers: r.allowed_approvers.clone(),
                    allowed_teams: r.allowed_teams.clone(),
                });
            }
            Effect::Emit(Outgoing::ApprovalRejected(r)) => reply.promotion_id = Some(r.promotion_id.clone()),
            Effect::Emit(Outgoing::ApprovalGranted(g)) => {
                reply.promotion_id = Some(g.promotion_id.clone());
                (reply.granted, reply.required) = (g.granted, g.required);
            }
            Effect::Emit(Outgoing::PromotionRolledBack(r)) => {
                reply.promotion_id = Some(r.promotion_id.clone());
                reply.to = r.to.clone();
            }
            Effect::SavePromotion(p)
                if kind == CommandKind::Promote && p.actor == actor && reply.promotion_id.is_none() =>
            {
                reply.promotion_id = Some(p.id.clone());
                reply.granted = u32::try_from(p.approvals.len()).unwrap_or(u32::MAX);
            }
            _ => {}
        }
    }
    Ok(reply)
}
