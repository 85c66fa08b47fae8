//! The live web dashboard on the promoter's admin HTTP port: two static pages (`/` or
//! `/dashboard`, and an app's page `/dashboard/app/<app>`; plain HTML, CSS and JS embedded in
//! the binary) and the JSON they read.
//!
//! - `GET /api/status`: apps × stages with versions, health, holds and waiting approvals (the
//!   admin API's `ListAppsResponse`, in proto3 JSON), paged and filtered on the server
//!   (`page_size`, `page_token`, `app`, `team`, `stage`, `state`, a name search `q`, and
//!   `mine=true`: waiting for the bearer token's approval);
//! - `GET /api/approvals`: promotions waiting for approval and who may approve;
//! - `GET /api/delivery?days=N`: the DORA metrics of each app ([`delivery`]);
//! - `GET /api/trends?app=|team=&weeks=N` and `GET /api/charts/<metric>.svg?…`: those metrics
//!   per week for an app, a team or everything ([`trends`]), with their definitions, and as SVG
//!   charts ([`charts`]);
//! - `GET /api/apps/<app>`: the app page's data ([`app_view`]): its pipeline, each stage's
//!   state, blocker, who may act, history, and the commits a waiting version brings;
//! - `GET /api/builds/<id>/log`: a build's log, live, as server-sent events ([`build_log`]);
//!   `GET /api/apps/<app>/builds`: the app's builds of the last day, running ones too
//!   ([`builds`]);
//! - `GET /api/events?app=&stage=&domain=`: server-sent events, the last [`HISTORY`] events of
//!   the `SLIPWAY` stream (those of them the filters keep) then live ones, each a `v1::Event`
//!   in proto3 JSON with its stream sequence as the SSE id (a reconnecting browser resumes
//!   after `Last-Event-ID`), read with the admin API's [`watch`](crate::grpc::watch);
//! - `POST /api/commands/<approve|reject|promote|rollback|hold|release>` (and `/api/approve`):
//!   the admin API's request message in proto3 JSON with `Authorization: Bearer`, handed to the
//!   admin API's own handler ([`commands`]), so tokens, roles, name checks and refusals are
//!   exactly the gRPC ones (401, 403, 400, 409 ... instead of status codes).
//!
//! Reads need no token (except `mine`, which needs to know who): the admin port also serves
//! `/metrics` and is not meant to leave the cluster. The routes are built before the
//! [`Promoter`] exists (the admin port is served first), so they hold a [`Dashboard`] slot that
//! [`Dashboard::attach`] fills once it does; until then the API answers 503.

pub mod app_view;
mod build_log;
mod builds;
pub mod charts;
mod commands;
pub mod delivery;
pub mod queries;
pub mod trends;

use std::convert::Infallible;
use std::sync::{Arc, OnceLock};

use async_nats::jetstream::stream::Stream as JsStream;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use futures::{Stream, StreamExt as _};
use serde::Deserialize;
use slipway_mesh::v1;
use tokio_util::sync::CancellationToken;

use crate::grpc::watch::{self, Filter};
use crate::grpc::{AdminApi, TokenTable};
use crate::promoter::Promoter;

/// Events replayed to a new page before the live ones.
pub const HISTORY: u64 = 50;
/// Longest `days` window of `/api/delivery`.
const MAX_DAYS: u32 = 365;
/// Most approvals, or apps of `/api/delivery`, one request lists.
const MAX_LISTED: usize = 500;

const INDEX_HTML: &str = include_str!("dashboard/index.html");
const APP_JS: &str = include_str!("dashboard/app.js");
const STYLE_CSS: &str = include_str!("dashboard/style.css");
const APP_HTML: &str = include_str!("dashboard/app.html");
const APP_PAGE_JS: &str = include_str!("dashboard/app_page.js");

/// What the routes need once the service runs.
struct Live {
    promoter: Arc<Promoter>,
    api: AdminApi,
    stream: JsStream,
    tokens: TokenTable,
    shutdown: CancellationToken,
    /// Where commits are linked (`https://github.com`).
    source_web: String,
    /// JetStream, for the build log bucket.
    js: async_nats::jetstream::Context,
}

type Slot = Arc<OnceLock<Live>>;

/// The dashboard's routes and their late-bound state.
#[derive(Clone, Default)]
pub struct Dashboard {
    slot: Slot,
}

impl std::fmt::Debug for Dashboard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dashboard").field("attached", &self.slot.get().is_some()).finish()
    }
}

impl Dashboard {
    pub fn new() -> Self {
        Self::default()
    }

    /// The routes to merge into the admin server.
    pub fn routes(&self) -> Router {
        Router::new()
            .route("/", get(page))
            .route("/dashboard", get(page))
            .route("/dashboard/app.js", get(|| asset("text/javascript; charset=utf-8", APP_JS)))
            .route("/dashboard/style.css", get(|| asset("text/css; charset=utf-8", STYLE_CSS)))
            .route("/api/status", get(status))
            .route("/api/approvals", get(approvals))
            .route("/api/delivery", get(delivery))
            .route("/api/events", get(events))
            .route("/api/approve", post(approve))
            .route("/dashboard/app/{name}", get(|| asset("text/html; charset=utf-8", APP_HTML)))
            .route("/dashboard/app_page.js", get(|| asset("text/javascript; charset=utf-8", APP_PAGE_JS)))
            .route("/api/apps/{name}", get(app))
            .route("/api/commands/{kind}", post(command))
            .route("/api/builds/{id}/log", get(build_log))
            .route("/api/apps/{name}/builds", get(app_builds))
            .route("/api/trends", get(trends))
            .route("/api/charts/{file}", get(chart))
            .with_state(self.slot.clone())
    }

    /// Serves the API from now on. `tokens` authenticate the buttons; `shutdown` ends the open
    /// event streams (the admin server waits for them); commits link under `source_web`. A
    /// second call changes nothing.
    pub fn attach(
        &self,
        promoter: Arc<Promoter>,
        ctx: &slipway_runtime::service::ServiceContext,
        tokens: TokenTable,
        shutdown: CancellationToken,
        source_web: String,
    ) {
        let stream = ctx.stream.clone();
        let js = async_nats::jetstream::new(ctx.client.clone());
        let api = AdminApi::new(promoter.clone(), stream.clone(), shutdown.clone());
        let _ = self.slot.set(Live { promoter, api, stream, tokens, shutdown, source_web, js });
    }
}

async fn page() -> Response {
    asset("text/html; charset=utf-8", INDEX_HTML).await
}

async fn asset(content_type: &'static str, body: &'static str) -> Response {
    ([(header::CONTENT_TYPE, content_type), (header::CACHE_CONTROL, "no-cache")], body).into_response()
}

/// An API error: the status code and a JSON `{"error": message}`.
#[derive(Debug)]
pub(crate) struct ApiError(StatusCode, String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, axum::Json(serde_json::json!({ "error": self.1 }))).into_response()
    }
}

impl From<tonic::Status> for ApiError {
    fn from(status: tonic::Status) -> Self {
        ApiError(http_status(status.code()), status.message().to_owned())
    }
}

impl From<crate::Error> for ApiError {
    fn from(error: crate::Error) -> Self {
        tonic::Status::from(error).into()
    }
}

/// The HTTP status of a gRPC code, as the gRPC-HTTP mapping has it.
fn http_status(code: tonic::Code) -> StatusCode {
    use tonic::Code as C;
    match code {
        C::Ok => StatusCode::OK,
        C::InvalidArgument | C::OutOfRange => StatusCode::BAD_REQUEST,
        C::Unauthenticated => StatusCode::UNAUTHORIZED,
        C::PermissionDenied => StatusCode::FORBIDDEN,
        C::NotFound => StatusCode::NOT_FOUND,
        C::AlreadyExists | C::Aborted | C::FailedPrecondition => StatusCode::CONFLICT,
        C::ResourceExhausted => StatusCode::TOO_MANY_REQUESTS,
        C::Unimplemented => StatusCode::NOT_IMPLEMENTED,
        C::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        C::DeadlineExceeded => StatusCode::GATEWAY_TIMEOUT,
        C::Cancelled | C::Unknown | C::Internal | C::DataLoss => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

fn live(slot: &Slot) -> Result<&Live, ApiError> {
    slot.get().ok_or_else(|| ApiError(StatusCode::SERVICE_UNAVAILABLE, "the promoter is still starting".into()))
}

/// `/api/status?page_size=&page_token=&app=&team=&stage=&state=`: the admin API's paging and
/// filters; `q` keeps apps whose name contains it, `mine=true` those waiting for the approval
/// of the bearer token's name.
#[derive(Debug, Default, Deserialize)]
struct StatusParams {
    #[serde(default)]
    page_size: u32,
    #[serde(default)]
    page_token: String,
    #[serde(default)]
    app: String,
    #[serde(default)]
    team: String,
    #[serde(default)]
    stage: String,
    #[serde(default)]
    state: String,
    #[serde(default)]
    q: String,
    #[serde(default)]
    mine: bool,
}

async fn status(
    State(slot): State<Slot>,
    Query(p): Query<StatusParams>,
    headers: HeaderMap,
) -> Result<axum::Json<v1::ListAppsResponse>, ApiError> {
    let live = live(&slot)?;
    let only = if p.mine {
        let caller = commands::authenticate(&live.tokens, &headers)?;
        Some(queries::waiting_for(&live.promoter, &caller.name).await?)
    } else {
        None
    };
    let more = crate::api::AppFilter { search: p.q.trim().to_lowercase(), only };
    let request = v1::ListAppsRequest {
        app: p.app,
        page_size: p.page_size,
        page_token: p.page_token,
        team: p.team,
        stage: p.stage,
        state: p.state,
    };
    Ok(axum::Json(live.promoter.list_apps_where(&request, &more).await?))
}

/// `/api/approvals?limit=N`: the oldest `limit` (100 by default) and how many wait in all; at
/// thousands of apps the rest are found with the matrix's `waiting` filter.
#[derive(Debug, Deserialize)]
struct ApprovalParams {
    limit: Option<usize>,
}

async fn approvals(State(slot): State<Slot>, Query(params): Query<ApprovalParams>) -> Result<Response, ApiError> {
    let limit = params.limit.unwrap_or(100);
    if !(1..=MAX_LISTED).contains(&limit) {
        return Err(ApiError(StatusCode::BAD_REQUEST, format!("limit must be 1 to {MAX_LISTED}")));
    }
    let mut pending = queries::pending_approvals(&live(&slot)?.promoter).await?;
    let total = pending.len();
    pending.truncate(limit);
    Ok(axum::Json(serde_json::json!({ "approvals": pending, "total": total })).into_response())
}

/// `/api/delivery?days=N&apps=a,b`: every app's metrics, or those of the apps listed (the page
/// asks for the apps of the matrix page it shows).
#[derive(Debug, Deserialize)]
struct DeliveryParams {
    days: Option<u32>,
    #[serde(default)]
    apps: String,
}

async fn delivery(State(slot): State<Slot>, Query(params): Query<DeliveryParams>) -> Result<Response, ApiError> {
    let promoter = &live(&slot)?.promoter;
    let days = params.days.unwrap_or(30);
    if !(1..=MAX_DAYS).contains(&days) {
        return Err(ApiError(StatusCode::BAD_REQUEST, format!("days must be 1 to {MAX_DAYS}")));
    }
    let now = chrono::Utc::now();
    let since = now - chrono::Duration::days(i64::from(days));
    let in_force = promoter.apps.get();
    // Delivery is measured into each app's own last stage; every app's history in one read.
    let listed: std::collections::HashSet<&str> = params.apps.split(',').filter(|a| !a.is_empty()).collect();
    if listed.len() > MAX_LISTED {
        return Err(ApiError(StatusCode::BAD_REQUEST, format!("at most {MAX_LISTED} apps")));
    }
    let stages: Vec<(String, String)> = (in_force.apps.iter())
        .filter(|app| listed.is_empty() || listed.contains(app.name.as_str()))
        .filter_map(|app| {
            let last = in_force.pipeline(app.name.as_str()).stages.last().map(|s| s.name.to_string())?;
            Some((app.name.to_string(), last))
        })
        .collect();
    let mut histories = crate::store::dashboard::delivery_histories(&promoter.pool, &stages, since).await?;
    let apps: Vec<delivery::Metrics> = (stages.into_iter())
        .map(|key| {
            let history = histories.remove(&key).unwrap_or_default();
            delivery::compute(&key.0, &key.1, &history, now, days)
        })
        .collect();
    Ok(axum::Json(serde_json::json!({ "windowDays": days, "apps": apps })).into_response())
}

/// `/api/events?app=&stage=&domain=`: only events about that app, stage, or of that domain
/// (`build`, `promotion`, `approval` ...), as the admin API's `Watch` filters them.
#[derive(Debug, Default, Deserialize)]
struct EventParams {
    #[serde(default)]
    app: String,
    #[serde(default)]
    stage: String,
    #[serde(default)]
    domain: String,
}

/// Recent events, then live ones, until the page goes away or the service stops. Between the
/// two comes one `live` event (`{"lastHistorySequence": N}`): everything before it was already
/// in the stream when the page connected, everything after it happened since.
async fn events(
    State(slot): State<Slot>,
    Query(params): Query<EventParams>,
    headers: HeaderMap,
) -> Result<Sse<impl Stream<Item = Result<SseEvent, Infallible>>>, ApiError> {
    let live = live(&slot)?;
    let resume = headers.get("last-event-id").and_then(|v| v.to_str().ok()).and_then(|v| v.trim().parse::<u64>().ok());
    let info = live.stream.get_info().await.map_err(|e| {
        tracing::warn!(error = %e, "dashboard: reading the stream's state failed");
        ApiError(StatusCode::SERVICE_UNAVAILABLE, "the event stream is unavailable; try again".into())
    })?;
    let last = info.state.last_sequence;
    let start = match resume {
        Some(seen) => seen.saturating_add(1),
        None => last.saturating_sub(HISTORY - 1).max(1),
    };
    let subjects = match params.domain.as_str() {
        "" => Vec::new(),
        domain if domain.bytes().all(|b| b.is_ascii_lowercase() || b == b'-') => vec![format!("slipway.{domain}.>")],
        domain => return Err(ApiError(StatusCode::BAD_REQUEST, format!("domain {domain:?} is not one"))),
    };
    let request = v1::WatchRequest {
        start: Some(v1::watch_request::Start::FromSequence(start)),
        subjects,
        app: params.app,
        stage: params.stage,
    };
    let filter = Filter::from_request(&request)?;
    let shown_last = history_end(&live.stream, &request, last).await;
    let events = watch::open::<v1::Event>(&live.stream, filter, live.shutdown.clone()).await?;
    let marker = move || SseEvent::default().event("live").data(format!("{{\"lastHistorySequence\":{last}}}"));
    // No history to replay: live from the start.
    let mut marked = start > shown_last;
    let head = futures::stream::iter(marked.then(|| Ok(marker())));
    // An interrupted stream ends the response; the browser reconnects from its last id.
    let body = events
        .take_while(|e| futures::future::ready(e.is_ok()))
        .filter_map(|e| async move {
            let event = e.ok()?;
            let data = serde_json::to_string(&event).ok()?;
            Some((event.sequence, SseEvent::default().id(event.sequence.to_string()).data(data)))
        })
        .flat_map(move |(sequence, event)| {
            let mut out = vec![Ok(event)];
            if !marked && sequence >= shown_last {
                marked = true;
                out.push(Ok(marker()));
            }
            futures::stream::iter(out)
        });
    Ok(Sse::new(head.chain(body)).keep_alive(KeepAlive::default()))
}

/// The NATS subjects the events a filtered `/api/events` keeps are published on (subjects are
/// `slipway.<domain>.<event>.<app>[.<env>]`); none when nothing is filtered.
fn kept_subjects(request: &v1::WatchRequest) -> Vec<String> {
    let domain = request.subjects.first().and_then(|s| s.strip_prefix("slipway.")).and_then(|s| s.strip_suffix(".>"));
    let domain = domain.unwrap_or("*");
    match (request.app.as_str(), request.stage.as_str()) {
        ("", "") if domain == "*" => Vec::new(),
        ("", "") => vec![format!("slipway.{domain}.>")],
        ("", stage) => vec![format!("slipway.{domain}.*.*.{stage}"), format!("slipway.{domain}.*.*.{stage}.>")],
        (app, "") => vec![format!("slipway.{domain}.*.{app}"), format!("slipway.{domain}.*.{app}.>")],
        (app, stage) => {
            vec![format!("slipway.{domain}.*.{app}.{stage}"), format!("slipway.{domain}.*.{app}.{stage}.>")]
        }
    }
}

/// The sequence of the last event a filtered stream replays (at most `last`, the stream's):
/// the `live` marker goes after it, so a filter that keeps none of the newest events does not
/// hold the marker back until the next event it keeps.
async fn history_end(stream: &JsStream, request: &v1::WatchRequest, last: u64) -> u64 {
    let subjects = kept_subjects(request);
    if subjects.is_empty() {
        return last;
    }
    let mut end = 0;
    for subject in subjects {
        // Not found is the common answer: nothing on that subject yet.
        if let Ok(message) = stream.get_last_raw_message_by_subject(&subject).await {
            end = end.max(message.sequence);
        }
    }
    // Newer than the stream's last at connect time: what came before it is not known here, so
    // the marker waits for `last` as without a filter.
    if end > last { last } else { end }
}

/// Approves through the admin API's `Approve`, as the bearer token's name (the page's first
/// button; `/api/commands/approve` is the same).
async fn approve(State(slot): State<Slot>, headers: HeaderMap, body: Bytes) -> Result<Response, ApiError> {
    let live = live(&slot)?;
    commands::run(&live.api, &live.tokens, "approve", &headers, &body).await
}

/// One of the page's buttons: see [`commands`].
async fn command(
    State(slot): State<Slot>,
    Path(kind): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let live = live(&slot)?;
    commands::run(&live.api, &live.tokens, &kind, &headers, &body).await
}

/// The weekly delivery metrics of an app, a team or everything, with their definitions.
async fn trends(State(slot): State<Slot>, Query(scope): Query<trends::Scope>) -> Result<Response, ApiError> {
    let live = live(&slot)?;
    Ok(axum::Json(trends::trends(&live.promoter, &scope).await?).into_response())
}

/// `/api/charts/<metric>.svg?app=|team=&weeks=`: one metric's trend, drawn by [`charts`].
async fn chart(
    State(slot): State<Slot>,
    Path(file): Path<String>,
    Query(scope): Query<trends::Scope>,
) -> Result<Response, ApiError> {
    let live = live(&slot)?;
    let metric = file.strip_suffix(".svg").filter(|m| charts::known(m));
    let metric = metric.ok_or_else(|| ApiError(StatusCode::NOT_FOUND, format!("no chart {file:?}")))?;
    let trends = trends::trends(&live.promoter, &scope).await?;
    let svg = charts::svg(metric, &trends.scope, &trends.weeks).map_err(|e| {
        tracing::error!(error = %e, "dashboard: a chart could not be drawn");
        ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())
    })?;
    Ok(([(header::CONTENT_TYPE, "image/svg+xml"), (header::CACHE_CONTROL, "no-cache")], svg).into_response())
}

/// The app's builds the builders announced in the last day: see [`builds`].
async fn app_builds(State(slot): State<Slot>, Path(name): Path<String>) -> Result<Response, ApiError> {
    let live = live(&slot)?;
    let builds = builds::announced(&live.stream, &name).await?;
    Ok(axum::Json(serde_json::json!({ "builds": builds })).into_response())
}

/// A build's log, live: see [`build_log`].
async fn build_log(
    State(slot): State<Slot>,
    Path(id): Path<String>,
) -> Result<Sse<impl Stream<Item = Result<SseEvent, Infallible>>>, ApiError> {
    let live = live(&slot)?;
    let events = build_log::follow(&live.js, &id, live.shutdown.clone()).await?;
    Ok(Sse::new(events).keep_alive(KeepAlive::default()))
}

/// The app page's data: see [`app_view`].
async fn app(State(slot): State<Slot>, Path(name): Path<String>) -> Result<Response, ApiError> {
    let live = live(&slot)?;
    let view = app_view::app_view(&live.promoter, &name, &live.source_web).await?;
    Ok(axum::Json(view).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_codes_map_to_http() {
        assert_eq!(http_status(tonic::Code::Unauthenticated), StatusCode::UNAUTHORIZED);
        assert_eq!(http_status(tonic::Code::PermissionDenied), StatusCode::FORBIDDEN);
        assert_eq!(http_status(tonic::Code::InvalidArgument), StatusCode::BAD_REQUEST);
        assert_eq!(http_status(tonic::Code::FailedPrecondition), StatusCode::CONFLICT);
        assert_eq!(http_status(tonic::Code::Unavailable), StatusCode::SERVICE_UNAVAILABLE);
    }

    #[test]
    fn filtered_events_are_found_on_their_subjects() {
        let request = |domain: &str, app: &str, stage: &str| v1::WatchRequest {
            subjects: if domain.is_empty() { vec![] } else { vec![format!("slipway.{domain}.>")] },
            app: app.into(),
            stage: stage.into(),
            start: None,
        };
        assert!(kept_subjects(&request("", "", "")).is_empty());
        assert_eq!(kept_subjects(&request("build", "", "")), ["slipway.build.>"]);
        assert_eq!(kept_subjects(&request("", "writer", "")), ["slipway.*.*.writer", "slipway.*.*.writer.>"]);
        assert_eq!(
            kept_subjects(&request("approval", "writer", "prod")),
            ["slipway.approval.*.writer.prod", "slipway.approval.*.writer.prod.>"]
        );
        assert_eq!(kept_subjects(&request("", "", "prod")), ["slipway.*.*.*.prod", "slipway.*.*.*.prod.>"]);
    }

    #[test]
    fn the_page_links_its_assets() {
        assert!(INDEX_HTML.contains("/dashboard/app.js") && INDEX_HTML.contains("/dashboard/style.css"));
        assert!(APP_JS.contains("/api/events") && APP_JS.contains("/api/approve"));
    }
}
