//! `POST /webhooks/github`: verify, normalize, dedupe, make durable, answer.
//!
//! GitHub does not retry a failed delivery by itself, so the answer is 2xx only once the
//! delivery's events are durable: acked by JetStream, or fsync'd to the spool while NATS is
//! unreachable. A redelivery (same `X-GitHub-Delivery`) publishes nothing new. When an
//! event carries only part of the payload, the whole body is stored in the originals bucket
//! (or the spool) before the events, and counts toward "durable" too.
//!
//! Every body is read by [`read_body`] before a handler sees it: at most `max_body_bytes`
//! (413 beyond) within `body_timeout` (408 and the connection closed after), so a client
//! that trickles or stalls its body holds neither a connection nor memory for long.

use crate::apps::AppMatcher;
use crate::deliveries;
use crate::github::{self, Normalized};
use crate::originals::Originals;
use crate::plan::{self, Prepared, Shape};
use crate::signature;
use crate::spool::{Spool, SpooledEvent};
use axum::Router;
use axum::body::{Body, Bytes, HttpBody as _};
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header as headers};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use bytes::BytesMut;
use serde_json::json;
use slipway_runtime::config::Secret;
use slipway_runtime::jetstream::Publisher;
use sqlx::PgPool;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tracing::Instrument;

/// What the webhook handler needs.
pub struct Webhooks {
    /// Active webhook secrets.
    pub secrets: Vec<Secret>,
    /// The apps pushes are matched against: `[[apps]]`, or the catalog in force.
    pub apps: crate::catalog::Apps,
    /// Reloads the catalog on the pushes that change it (when apps come from a catalog).
    pub reloader: Option<Arc<crate::catalog::Reloader>>,
    /// The `ingest` schema (deliveries table).
    pub pool: PgPool,
    /// Writes accepted delivery ids in batches.
    pub recorder: deliveries::Recorder,
    /// Which delivery ids may have been accepted before (a "no" skips the table lookup).
    pub known: Arc<crate::known::Known>,
    /// Publishes with JetStream acks.
    pub publisher: Publisher,
    /// For the connection state.
    pub client: async_nats::Client,
    /// Where events go while NATS is unreachable.
    pub spool: Arc<Spool>,
    /// Whole bodies of deliveries whose events carry only part of them.
    pub originals: Originals,
    /// How much of a payload its events carry.
    pub shape: Shape,
    /// SHA-256 digests of the bearer tokens chat bots use on `/chatops`; empty disables it.
    pub chatops_tokens: Vec<[u8; 32]>,
}

/// How much of a request body is read, and for how long.
#[derive(Debug, Clone, Copy)]
pub struct BodyLimits {
    /// Largest body accepted (413 beyond it).
    pub max_bytes: usize,
    /// Time for the whole body to arrive (408 after it).
    pub timeout: Duration,
}

/// The webhook router, with the body limits of [`read_body`].
pub fn router(state: Arc<Webhooks>, limits: BodyLimits) -> Router {
    Router::new()
        .route("/webhooks/github", post(github_webhook))
        .route("/chatops", post(crate::chatbot::chatops))
        .layer(DefaultBodyLimit::max(limits.max_bytes))
        .layer(middleware::from_fn_with_state(limits, read_body))
        .with_state(state)
}

/// Buffers the body within `limits` before the handler runs. The deadline covers the whole
/// body, not each read: a client sending one byte just before every per-read timeout would
/// otherwise hold the connection for as long as it likes.
async fn read_body(State(limits): State<BodyLimits>, request: Request, next: Next) -> Response {
    let declared = request.headers().get(headers::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limits.max_bytes as u64) {
        return closing(too_large(limits.max_bytes));
    }
    let (parts, mut body) = request.into_parts();
    let deadline = tokio::time::Instant::now() + limits.timeout;
    let mut buffer = BytesMut::new();
    loop {
        let frame = std::future::poll_fn(|cx| Pin::new(&mut body).poll_frame(cx));
        let data = match tokio::time::timeout_at(deadline, frame).await {
            Ok(None) => break,
            Ok(Some(Ok(frame))) => frame.into_data().unwrap_or_default(),
            Ok(Some(Err(e))) => {
                return closing(reject(StatusCode::BAD_REQUEST, "body", format!("reading the body failed: {e}")));
            }
            Err(_) => {
                let message = format!("the body did not arrive within {} ms", limits.timeout.as_millis());
                return closing(reject(StatusCode::REQUEST_TIMEOUT, "body-timeout", message));
            }
        };
        if buffer.len() + data.len() > limits.max_bytes {
            return closing(too_large(limits.max_bytes));
        }
        buffer.extend_from_slice(&data);
    }
    next.run(Request::from_parts(parts, Body::from(buffer.freeze()))).await
}

fn too_large(max: usize) -> Response {
    reject(StatusCode::PAYLOAD_TOO_LARGE, "too-large", format!("the body is larger than {max} bytes"))
}

/// The rest of an unread body is not worth draining: the connection is closed after `response`.
fn closing(mut response: Response) -> Response {
    response.headers_mut().insert(headers::CONNECTION, HeaderValue::from_static("close"));
    response
}

pub(crate) fn reply(status: StatusCode, body: serde_json::Value) -> Response {
    (status, axum::Json(body)).into_response()
}

pub(crate) fn reject(status: StatusCode, reason: &'static str, message: String) -> Response {
    metrics::counter!("slipway_ingest_rejected_total", "reason" => reason).increment(1);
    reply(status, json!({ "error": message }))
}

pub(crate) fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

async fn github_webhook(State(state): State<Arc<Webhooks>>, headers: HeaderMap, body: Bytes) -> Response {
    let delivery = header(&headers, "x-github-delivery").unwrap_or_default().to_owned();
    let event = header(&headers, "x-github-event").unwrap_or_default().to_owned();
    let span = tracing::info_span!("github_delivery", delivery = %delivery, event = %event, bytes = body.len());
    async move {
        let started = Instant::now();
        let response = handle(&state, &headers, &delivery, &event, &body).await;
        metrics::histogram!("slipway_ingest_request_seconds").record(started.elapsed().as_secs_f64());
        tracing::info!(status = response.status().as_u16(), "delivery answered");
        response
    }
    .instrument(span)
    .await
}

async fn handle(state: &Webhooks, headers: &HeaderMap, delivery: &str, event: &str, body: &[u8]) -> Response {
    let secrets: Vec<&[u8]> = state.secrets.iter().map(|s| s.expose().as_bytes()).collect();
    let sig1 = headers.contains_key("x-hub-signature");
    if let Err(e) = signature::verify(&secrets, body, header(headers, "x-hub-signature-256"), sig1) {
        return reject(StatusCode::UNAUTHORIZED, "signature", e.to_string());
    }
    if event.is_empty() {
        return reject(StatusCode::BAD_REQUEST, "no-event", "missing X-GitHub-Event header".into());
    }
    if !plan::valid_delivery_id(delivery) {
        return reject(StatusCode::BAD_REQUEST, "delivery-id", "missing or invalid X-GitHub-Delivery header".into());
    }
    let normalized = match github::normalize(event, delivery, body) {
        Ok(n) => n,
        Err(e) => return reject(StatusCode::BAD_REQUEST, "malformed", e.to_string()),
    };
    if let Normalized::Ignored { reason, .. } = &normalized {
        metrics::counter!("slipway_ingest_ignored_total", "event" => event.to_owned()).increment(1);
        return reply(StatusCode::ACCEPTED, json!({ "status": "ignored", "reason": reason }));
    }
    let maybe_seen = state.known.may_contain(delivery);
    metrics::counter!("slipway_ingest_dedupe_lookups_total", "filter" => if maybe_seen { "maybe" } else { "new" })
        .increment(1);
    if maybe_seen && deliveries::seen_before(&state.pool, delivery).await {
        metrics::counter!("slipway_ingest_deduplicated_total").increment(1);
        return reply(StatusCode::OK, json!({ "status": "duplicate" }));
    }
    let matcher = catalog_first(state, &normalized).await;
    let planned = match plan::plan(normalized, delivery, &matcher, state.publisher.source(), &state.shape, body) {
        Ok(planned) => planned,
        Err(e) => return reject(StatusCode::BAD_REQUEST, "invalid", e.to_string()),
    };
    let original = planned.original.as_ref().map(|o| (o.key.as_str(), body));
    let events = planned.events;
    let stored = match make_durable(state, &events, original).await {
        Ok(stored) => stored,
        Err(e) => return e.response(),
    };
    state.known.insert(delivery);
    state.recorder.remember(delivery, event).await;
    if stored == Stored::AlreadyInStream {
        metrics::counter!("slipway_ingest_deduplicated_total").increment(1);
        return reply(StatusCode::OK, json!({ "status": "duplicate" }));
    }
    let spooled = stored == Stored::Spooled;
    metrics::counter!("slipway_ingest_accepted_total", "event" => event.to_owned()).increment(1);
    reply(StatusCode::ACCEPTED, json!({ "status": "accepted", "events": events.len(), "spooled": spooled }))
}

/// The matcher for this delivery: when the push changes the catalog (its own files, or a
/// generator's marker in a source repository), the catalog is reloaded first, so the push is
/// matched against what it made (an app added by this push builds on this push).
async fn catalog_first(state: &Webhooks, normalized: &Normalized) -> Arc<AppMatcher> {
    let (Some(reloader), Normalized::Push(push)) = (&state.reloader, normalized) else {
        return state.apps.current();
    };
    let reload = if reloader.is_catalog_push(&push.repository, &push.r#ref) && !push.deleted {
        Some((Some(push.after.clone()), None))
    } else if state.apps.catalog().is_some_and(|c| reloader.changes_generated_apps(&c, push)) {
        Some((None, Some((push.repository.clone(), push.after.clone()))))
    } else {
        None
    };
    let Some((commit, source)) = reload else { return state.apps.current() };
    match reloader.reload(commit, source).await {
        Ok(crate::catalog::Reloaded::Published(revision, catalog)) => {
            state.apps.install(&revision, &catalog);
            Arc::new(crate::catalog::matcher_of(&catalog, revision.sequence))
        }
        Ok(_) => state.apps.current(),
        Err(e) => {
            // The push is still accepted; the periodic recheck reloads once git answers.
            tracing::warn!(error = %e, "catalog reload failed; the revision in force stays");
            state.apps.current()
        }
    }
}

/// Where a delivery's events ended up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Stored {
    /// Acked by JetStream.
    Published,
    /// Acked by JetStream as duplicates: the same delivery was stored before.
    AlreadyInStream,
    /// fsync'd to the spool.
    Spooled,
}

/// Why a delivery's events are not durable.
#[derive(Debug)]
pub(crate) enum NotStored {
    /// Neither NATS nor the spool took them; a retry may work.
    Unavailable(String),
    /// NATS refused them for what they are (too large for the server); no retry helps
    /// until an operator changes the server.
    Refused(String),
}

impl NotStored {
    pub(crate) fn response(&self) -> Response {
        match self {
            NotStored::Unavailable(e) => {
                tracing::error!(error = %e, "delivery could not be stored");
                reject(StatusCode::SERVICE_UNAVAILABLE, "unavailable", "events could not be stored; retry".into())
            }
            NotStored::Refused(e) => {
                tracing::error!(error = %e, "delivery refused by NATS");
                reject(StatusCode::INTERNAL_SERVER_ERROR, "refused", format!("events refused by NATS: {e}"))
            }
        }
    }
}

/// How long a delivery's publish may take before it is spooled instead: well inside GitHub's
/// 10 s, which counts the delivery as failed (and never retries it by itself) after that.
const PUBLISH_DEADLINE: Duration = Duration::from_secs(2);

/// Stores the kept body (if any) and publishes every event (awaiting acks), or spools them
/// all when NATS is down, a publish fails, or older deliveries still wait in the spool (to
/// keep their order).
pub(crate) async fn make_durable(
    state: &Webhooks,
    events: &[Prepared],
    original: Option<(&str, &[u8])>,
) -> Result<Stored, NotStored> {
    let connected = state.client.connection_state() == async_nats::connection::State::Connected;
    if connected && state.spool.is_empty() {
        // NATS gone without the client noticing yet: its acks would come after GitHub gave up
        // (10 s), so past the deadline the delivery goes to the spool. Should the publish have
        // landed after all, the spool's replay is a duplicate the stream drops.
        let attempt = async {
            if let Some((key, body)) = original {
                state.originals.put(key, body).await?;
            }
            let batch: Vec<_> = events.iter().map(|e| (e.envelope.clone(), e.body.clone())).collect();
            state.publisher.publish_batch(&batch).await.map_err(|e| crate::error::Error::nats(&e))
        };
        let published = tokio::time::timeout(PUBLISH_DEADLINE, attempt).await.unwrap_or_else(|_| {
            Err(crate::error::Error::Nats {
                message: format!("no publish acks within {} s", PUBLISH_DEADLINE.as_secs()),
                permanent: false,
            })
        });
        match published {
            Ok(acks) if !acks.is_empty() && acks.iter().all(|a| a.duplicate) => return Ok(Stored::AlreadyInStream),
            Ok(_) => return Ok(Stored::Published),
            Err(err) if err.is_permanent() => return Err(NotStored::Refused(err.to_string())),
            Err(err) => tracing::warn!(error = %err, "publish failed; spooling the delivery"),
        }
    }
    // The spool is replayed from another task, later: the delivery's trace context goes with
    // each event, so the replayed publish continues this delivery's trace.
    let traceparent = slipway_runtime::telemetry::current_traceparent();
    let batch: Vec<SpooledEvent> = events
        .iter()
        .map(|e| {
            let mut envelope = e.envelope.clone();
            envelope.traceparent = envelope.traceparent.or_else(|| traceparent.clone());
            SpooledEvent::new(&envelope, &e.body)
        })
        .collect();
    let spool = state.spool.clone();
    let original = original.map(|(key, body)| (key.to_owned(), body.to_vec()));
    tokio::task::spawn_blocking(move || {
        spool.append(&batch, original.as_ref().map(|(k, b)| (k.as_str(), b.as_slice())))
    })
    .await
    .map_err(|e| NotStored::Unavailable(e.to_string()))?
    .map_err(|e| NotStored::Unavailable(e.to_string()))?;
    metrics::counter!("slipway_ingest_spooled_total").increment(1);
    Ok(Stored::Spooled)
}
