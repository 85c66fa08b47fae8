//! The dispatcher: one event in, one post per routed destination out, each exactly once in
//! effect.
//!
//! For every [`Target`] the event is routed to: claim the (event, destination) row
//! ([`store::claim`]; a row already `sent` ends here), render the message, let the provider
//! [`plan`](crate::providers::plan) its request, then attempt it up to `retry.attempts` times
//! (counting attempts of earlier deliveries too) with backoff, jitter, `Retry-After` and the
//! destination's rate limit. Success marks the row `sent` and emits `notification.sent`; the
//! last failure marks it `dead`, stores a dead letter and emits `notification.failed`.

use crate::config::RetryConfig;
use crate::destination::{Destination, Provider, Redactor};
use crate::error::{Error, Result};
use crate::providers::{self, Input, Plan, Request};
use crate::render::{self, Context, Message};
use crate::routing::{RouteConfig, Router, Target};
use crate::send::{self, Attempt, RateLimiter};
use crate::store::{self, Claim};
use slipway_mesh::v1::event::Payload;
use slipway_mesh::v1::{NotificationFailed, NotificationSent};
use slipway_mesh::{Envelope, EventKind};
use slipway_runtime::consumer::{Delivery, Outcome};
use sqlx::PgPool;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// The durable consumer's name.
pub const DURABLE: &str = "notifier";

/// Every subject except `slipway.notification.>`, so the notifier never notifies about its
/// own notifications (a loop).
pub fn filter_subjects() -> Vec<String> {
    let mut domains: Vec<&str> =
        EventKind::ALL.iter().map(|k| k.domain()).filter(|d| *d != EventKind::NotificationSent.domain()).collect();
    domains.dedup();
    domains.into_iter().map(|d| format!("slipway.{d}.>")).collect()
}

struct Remote {
    destination: Destination,
    limiter: RateLimiter,
}

/// The policy part of a [`Dispatcher`].
#[derive(Debug, Clone)]
pub struct Settings<'a> {
    /// The routes (for their templates; indexes match the router's).
    pub routes: &'a [RouteConfig],
    /// Retry policy.
    pub retry: RetryConfig,
    /// How long a claim protects a delivery in progress (the consumer's ack wait).
    pub lease: Duration,
    /// Scrubs every configured secret from errors before they are logged or published.
    pub redactor: Redactor,
}

/// How a delivery to one destination ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Delivered {
    /// Posted now.
    Sent,
    /// Already finished earlier (state of the row).
    AlreadyDone(String),
    /// The provider had nothing to send.
    Skipped,
    /// Failed for good; dead-lettered.
    Dead(String),
}

/// Everything needed to deliver events.
pub struct Dispatcher {
    pool: PgPool,
    source: String,
    router: Router,
    templates: Vec<Option<String>>,
    remotes: HashMap<String, Remote>,
    client: reqwest::Client,
    retry: RetryConfig,
    lease: Duration,
    redactor: Redactor,
    shutdown: CancellationToken,
    /// The app catalog in force, for the team of an event's app (`[catalog] enabled`).
    catalog: Option<slipway_runtime::catalog::Live>,
}

impl Dispatcher {
    /// Routes by the teams of the catalog `live` follows.
    pub fn with_catalog(mut self, live: slipway_runtime::catalog::Live) -> Self {
        self.catalog = Some(live);
        self
    }

    /// What routing looks at, with the app's team from the catalog in force.
    fn facts(&self, payload: &Payload) -> crate::routing::Facts {
        let mut facts = render::facts(payload);
        if let Some(live) = &self.catalog
            && !facts.app.is_empty()
        {
            let team = live.get().catalog.apps.get(&facts.app).and_then(|a| a.team.clone());
            facts.team = team.unwrap_or_default();
        }
        facts
    }

    /// A dispatcher writing to `pool` and publishing (via the outbox) as `source`.
    pub fn new(
        pool: PgPool,
        source: String,
        router: Router,
        settings: Settings<'_>,
        destinations: Vec<Destination>,
        shutdown: CancellationToken,
    ) -> Result<Self> {
        let Settings { routes, retry, lease, redactor } = settings;
        let remotes = destinations
            .into_iter()
            .map(|d| (d.name.clone(), Remote { limiter: RateLimiter::new(d.rate_limit_per_sec), destination: d }))
            .collect();
        let client = reqwest::Client::builder().user_agent("slipway-notifier").build()?;
        let templates = routes.iter().map(|r| r.template.clone()).collect();
        Ok(Self { pool, source, router, templates, remotes, client, retry, lease, redactor, shutdown, catalog: None })
    }

    /// The consumer handler: delivers to every routed destination; retries the message only
    /// when the database failed or another replica holds a claim.
    pub async fn handle(self: Arc<Self>, d: Delivery) -> Outcome {
        // Notifications about notifications would loop; single measurements are for the
        // dashboard (their check's verdict is summarized in `verification.completed`).
        if d.envelope.kind.domain() == EventKind::NotificationSent.domain()
            || d.envelope.kind == EventKind::VerificationMeasured
        {
            return Outcome::Ack;
        }
        let targets = self.router.route(&self.facts(&d.payload));
        let runs = targets.iter().map(|t| self.deliver(&d.envelope, &d.payload, &d.body, t));
        let results = futures::future::join_all(runs).await;
        Error::outcome_of(results.iter().filter_map(|r| r.as_ref().err()))
    }

    /// The routing target for `destination` (for a replay: with the template it has now).
    pub fn target_for(&self, payload: &Payload, destination: &str) -> Target {
        self.router
            .route(&self.facts(payload))
            .into_iter()
            .find(|t| t.destination == destination)
            .unwrap_or(Target { destination: destination.to_owned(), template: None })
    }

    fn message(&self, envelope: &Envelope, payload: &Payload, body: &[u8], target: &Target) -> Message {
        let mut message = render::default_message(payload);
        if let Some(template) = target.template.and_then(|i| self.templates.get(i)).and_then(Option::as_ref) {
            let cx = Context::new(envelope, payload, body, &message);
            match render::render(template, &cx) {
                Ok(text) => message.text = text,
                // A template that fails on one event still lets the default text through.
                Err(e) => {
                    tracing::warn!(destination = %target.destination, error = %e, "template failed; default text")
                }
            }
        }
        message
    }

    /// Delivers one event to one destination. `Err` means: try the event again later.
    #[tracing::instrument(name = "notify", skip_all, fields(destination = %target.destination, event.id = %envelope.id))]
    pub async fn deliver(
        &self,
        envelope: &Envelope,
        payload: &Payload,
        body: &[u8],
        target: &Target,
    ) -> Result<Delivered> {
        let Some(remote) = self.remotes.get(&target.destination) else {
            return Err(Error::UnknownDestination(target.destination.clone()));
        };
        let dest = &remote.destination;
        let event_id = envelope.id.as_str();
        let (done, last_error) = match store::claim(&self.pool, event_id, &dest.name, self.lease).await? {
            Claim::Done(state) => {
                metrics::counter!("slipway_notifier_duplicates_total", "provider" => dest.provider.as_str())
                    .increment(1);
                return Ok(Delivered::AlreadyDone(state));
            }
            Claim::Busy => return Err(Error::Busy),
            Claim::Mine { attempts, last_error } => (attempts, last_error),
        };
        let message = self.message(envelope, payload, body, target);
        let now = chrono::Utc::now().timestamp();
        let input = Input { destination: dest, envelope, payload, body, message: &message, now };
        let request = match self.plan(&input).await? {
            Plan::Skip(why) => {
                store::skip(&self.pool, event_id, &dest.name, why).await?;
                return Ok(Delivered::Skipped);
            }
            Plan::Send(r) => r,
        };
        let outcome = self.attempts(remote, &input, request, done, last_error).await?;
        self.finish(envelope, payload, body, dest, outcome).await
    }

    /// GitHub deployments need what earlier events created; everything else is pure.
    async fn plan(&self, input: &Input<'_>) -> sqlx::Result<Plan> {
        let dest = input.destination;
        if dest.provider != Provider::Github {
            return Ok(providers::plan(input));
        }
        if let Payload::PromotionRequested(p) = input.payload {
            let (repo, sha) =
                p.source.as_ref().map(|s| (s.repository.as_str(), s.commit_sha.as_str())).unwrap_or_default();
            return Ok(providers::github::create_deployment(dest, repo, sha, &p.stage, &p.app, &p.promotion_id)
                .map_or(Plan::Skip("no repository or commit"), Plan::Send));
        }
        if let Some((promotion_id, state)) = providers::github::deployment_state(input.payload) {
            return Ok(match store::deployment(&self.pool, promotion_id, &dest.name).await? {
                Some((repo, id)) => Plan::Send(providers::github::deployment_status(input, &repo, id, state)),
                None => Plan::Skip("no deployment for this promotion"),
            });
        }
        Ok(providers::plan(input))
    }

    /// Attempts `request` until it is sent, fails for good, or attempts run out. Returns the
    /// attempts made in all and how the last one went.
    async fn attempts(
        &self,
        remote: &Remote,
        input: &Input<'_>,
        mut request: Request,
        done: u32,
        last_error: Option<String>,
    ) -> Result<(u32, Attempted)> {
        let dest = &remote.destination;
        let provider = dest.provider.as_str();
        let event_id = input.envelope.id.as_str();
        let mut attempt = done;
        let mut error = last_error.unwrap_or_else(|| "no attempt left".to_owned());
        while attempt < self.retry.attempts {
            attempt += 1;
            remote.limiter.acquire().await;
            if dest.provider == Provider::Webhook {
                // Each attempt is signed anew, so its timestamp is fresh.
                let now = chrono::Utc::now().timestamp();
                request = providers::webhook::request(&Input { now, ..*input });
            }
            let started = Instant::now();
            let result = send::execute(&self.client, dest, &request).await;
            metrics::histogram!("slipway_notifier_request_seconds", "provider" => provider)
                .record(started.elapsed().as_secs_f64());
            let (err, after) = match result {
                Attempt::Sent { body, .. } => return Ok((attempt, Attempted::Sent(body))),
                Attempt::Fail(e) => return Ok((attempt, Attempted::Failed(self.redactor.redact(&e)))),
                Attempt::Retry { error, after } => (self.redactor.redact(&error), after),
            };
            store::record_attempt(&self.pool, event_id, &dest.name, attempt, Some(&err)).await?;
            tracing::warn!(destination = %dest.name, provider, action = request.action, attempt, error = %err, "post failed");
            error = err;
            if attempt >= self.retry.attempts {
                break;
            }
            metrics::counter!("slipway_notifier_retried_total", "provider" => provider).increment(1);
            let wait = send::delay(&self.retry, attempt + 1, after, rand::random::<f64>());
            tokio::select! {
                () = self.shutdown.cancelled() => return Err(Error::ShuttingDown),
                () = tokio::time::sleep(wait) => {}
            }
        }
        Ok((attempt, Attempted::Failed(error)))
    }

    async fn finish(
        &self,
        envelope: &Envelope,
        payload: &Payload,
        body: &[u8],
        dest: &Destination,
        (attempts, result): (u32, Attempted),
    ) -> Result<Delivered> {
        let provider = dest.provider.as_str();
        let (app, _) = render::app_stage(payload);
        let event_id = envelope.id.to_string();
        match result {
            Attempted::Sent(response) => {
                self.remember_deployment(payload, dest, &response).await;
                let sent = NotificationSent {
                    event_id,
                    destination: dest.name.clone(),
                    provider: provider.into(),
                    app,
                    attempts,
                };
                store::finish_sent(&self.pool, &self.source, &sent).await?;
                metrics::counter!("slipway_notifier_sent_total", "provider" => provider).increment(1);
                tracing::info!(destination = %dest.name, provider, attempts, "notification sent");
                Ok(Delivered::Sent)
            }
            Attempted::Failed(error) => {
                let error = self.redactor.redact(&error);
                let failed = NotificationFailed {
                    event_id,
                    destination: dest.name.clone(),
                    provider: provider.into(),
                    app,
                    attempts,
                    error: failure_text(&error),
                };
                store::finish_dead(&self.pool, &self.source, &failed, envelope, body).await?;
                metrics::counter!("slipway_notifier_failed_total", "provider" => provider).increment(1);
                tracing::error!(destination = %dest.name, provider, attempts, error = %error, "notification failed; dead-lettered");
                Ok(Delivered::Dead(error))
            }
        }
    }

    async fn remember_deployment(&self, payload: &Payload, dest: &Destination, response: &str) {
        let Payload::PromotionRequested(p) = payload else { return };
        if dest.provider != Provider::Github {
            return;
        }
        let id = serde_json::from_str::<serde_json::Value>(response).ok().and_then(|v| v["id"].as_i64());
        let repo = p.source.as_ref().map(|s| s.repository.as_str()).filter(|r| !r.is_empty());
        let repo = repo.or(dest.repository.as_deref()).unwrap_or_default();
        if let Some(id) = id
            && let Err(e) = store::save_deployment(&self.pool, &p.promotion_id, &dest.name, repo, id).await
        {
            tracing::warn!(error = %e, "deployment id not saved; its statuses will be skipped");
        }
    }

    /// Replays dead letter `id`: reopens its delivery and delivers it again now.
    pub async fn replay(&self, id: i64) -> Result<Option<Delivered>> {
        let Some((destination, envelope, body)) = store::dead_event(&self.pool, id).await? else {
            return Ok(None);
        };
        let payload = slipway_mesh::decode_payload(envelope.kind, &body)?;
        store::reopen(&self.pool, id, &envelope.id, &destination).await?;
        let target = self.target_for(&payload, &destination);
        self.deliver(&envelope, &payload, &body, &target).await.map(Some)
    }

    /// The database pool (for the dead-letter listing).
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }
}

/// Bytes of a receiver's error a `notification.failed` carries: an error may quote a whole
/// response body (an HTML error page), and the event must stay bounded.
pub const MAX_ERROR_BYTES: usize = 4 * 1024;

/// `error` cut to [`MAX_ERROR_BYTES`].
pub fn failure_text(error: &str) -> String {
    slipway_mesh::bounds::capped(error, MAX_ERROR_BYTES)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_filter_leaves_out_notifications() {
        let f = filter_subjects();
        assert!(f.contains(&"slipway.build.>".to_owned()) && f.contains(&"slipway.chatops.>".to_owned()), "{f:?}");
        assert!(!f.iter().any(|s| s.starts_with("slipway.notification")), "{f:?}");
        let mut unique = f.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), f.len(), "overlapping filters are refused by the server");
    }

    #[test]
    fn the_largest_receiver_error_is_a_bounded_event() {
        // A receiver answering a 10 MB error page, quoted whole in the error.
        let page = format!("HTTP 502: {}", "<p>bad gateway</p>".repeat(600_000));
        let failed = NotificationFailed { error: failure_text(&page), ..Default::default() };
        assert!(failed.error.len() <= MAX_ERROR_BYTES && failed.error.starts_with("HTTP 502"));
        assert!(slipway_mesh::prepare("/test", &failed).is_ok(), "within the event bound");
    }
}

/// How the last attempt at a request went.
#[derive(Debug)]
enum Attempted {
    /// Sent; the response body.
    Sent(String),
    /// Failed for good or out of attempts; the (redacted) error.
    Failed(String),
}
