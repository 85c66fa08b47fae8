//! The live web dashboard on the promoter's admin HTTP port: one static page (`/`,
//! `/dashboard`; plain HTML, CSS and JS embedded in the binary) and the JSON it reads.
//!
//! - `GET /api/status`: apps × stages with versions, health, holds and waiting approvals (the
//!   admin API's `ListAppsResponse`, in proto3 JSON);
//! - `GET /api/approvals`: promotions waiting for approval and who may approve;
//! - `GET /api/delivery?days=N`: the DORA metrics of each app ([`delivery`]);
//! - `GET /api/events`: server-sent events, the last [`HISTORY`] events of the `SLIPWAY`
//!   stream then live ones, each a `v1::Event` in proto3 JSON with its stream sequence as the
//!   SSE id (a reconnecting browser resumes after `Last-Event-ID`), read with the admin API's
//!   [`watch`](crate::grpc::watch);
//! - `POST /api/approve`: an `ApproveRequest` in proto3 JSON with `Authorization: Bearer`,
//!   handed to the admin API's own `Approve` handler, so tokens, roles, name checks and refusals
//!   are exactly the gRPC ones (401, 403, 400, 409 ... instead of status codes).
//!
//! Reads need no token: the admin port also serves `/metrics` and is not meant to leave the
//! cluster. The routes are built before the [`Promoter`] exists (the admin port is served
//! first), so they hold a [`Dashboard`] slot that [`Dashboard::attach`] fills once it does;
//! until then the API answers 503.

pub mod delivery;
pub mod queries;

use std::convert::Infallible;
use std::sync::{Arc, OnceLock};

use async_nats::jetstream::stream::Stream as JsStream;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use futures::{Stream, StreamExt as _};
use serde::Deserialize;
use slipway_mesh::v1::{self, admin_service_server::AdminService as _};
use tokio_util::sync::CancellationToken;
use tonic::metadata::MetadataMap;

use crate::grpc::watch::{self, Filter};
use crate::grpc::{AdminApi, TokenTable};
use crate::promoter::Promoter;

/// Events replayed to a new page before the live ones.
pub const HISTORY: u64 = 50;
/// Longest `days` window of `/api/delivery`.
const MAX_DAYS: u32 = 365;

const INDEX_HTML: &str = include_str!("dashboard/index.html");
const APP_JS: &str = include_str!("dashboard/app.js");
const STYLE_CSS: &str = include_str!("dashboard/style.css");

/// What the routes need once the service runs.
struct Live {
    promoter: Arc<Promoter>,
    api: AdminApi,
    stream: JsStream,
    tokens: TokenTable,
    shutdown: CancellationToken,
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
            .with_state(self.slot.clone())
    }

    /// Serves the API from now on. `tokens` authenticate approvals; `shutdown` ends the open
    /// event streams (the admin server waits for them). A second call changes nothing.
    pub fn attach(&self, promoter: Arc<Promoter>, stream: JsStream, tokens: TokenTable, shutdown: CancellationToken) {
        let api = AdminApi::new(promoter.clone(), stream.clone(), shutdown.clone());
        let _ = self.slot.set(Live { promoter, api, stream, tokens, shutdown });
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
struct ApiError(StatusCode, String);

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
/// filters.
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
}

async fn status(
    State(slot): State<Slot>,
    Query(p): Query<StatusParams>,
) -> Result<axum::Json<v1::ListAppsResponse>, ApiError> {
    let request = v1::ListAppsRequest {
        app: p.app,
        page_size: p.page_size,
        page_token: p.page_token,
        team: p.team,
        stage: p.stage,
        state: p.state,
    };
    Ok(axum::Json(live(&slot)?.promoter.list_apps(&request).await?))
}

async fn approvals(State(slot): State<Slot>) -> Result<Response, ApiError> {
    let pending = queries::pending_approvals(&live(&slot)?.promoter).await?;
    Ok(axum::Json(serde_json::json!({ "approvals": pending })).into_response())
}

#[derive(Debug, Deserialize)]
struct DeliveryParams {
    days: Option<u32>,
}

async fn delivery(State(slot): State<Slot>, Query(params): Query<DeliveryParams>) -> Result<Response, ApiError> {
    let promoter = &live(&slot)?.promoter;
    let days = params.days.unwrap_or(30);
    if !(1..=MAX_DAYS).contains(&days) {
        return Err(ApiError(StatusCode::BAD_REQUEST, format!("days must be 1 to {MAX_DAYS}")));
    }
    let now = chrono::Utc::now();
    let since = now - chrono::Duration::days(i64::from(days));
    let mut apps = Vec::new();
    let in_force = promoter.apps.get();
    for app in &in_force.apps {
        // Delivery is measured into each app's own last stage.
        let pipeline = in_force.pipeline(app.name.as_str());
        let Some(last) = pipeline.stages.last() else { continue };
        let (app, stage) = (app.name.as_str(), last.name.as_str());
        let history = queries::delivery_history(&promoter.pool, app, stage, since).await?;
        apps.push(delivery::compute(app, stage, &history, now, days));
    }
    Ok(axum::Json(serde_json::json!({ "window_days": days, "apps": apps })).into_response())
}

/// Recent events, then live ones, until the page goes away or the service stops.
async fn events(
    State(slot): State<Slot>,
    headers: HeaderMap,
) -> Result<Sse<impl Stream<Item = Result<SseEvent, Infallible>>>, ApiError> {
    let live = live(&slot)?;
    let resume = headers.get("last-event-id").and_then(|v| v.to_str().ok()).and_then(|v| v.trim().parse::<u64>().ok());
    let start = match resume {
        Some(seen) => seen.saturating_add(1),
        None => {
            let info = live.stream.get_info().await.map_err(|e| {
                tracing::warn!(error = %e, "dashboard: reading the stream's state failed");
                ApiError(StatusCode::SERVICE_UNAVAILABLE, "the event stream is unavailable; try again".into())
            })?;
            info.state.last_sequence.saturating_sub(HISTORY - 1).max(1)
        }
    };
    let request = v1::WatchRequest { start: Some(v1::watch_request::Start::FromSequence(start)), ..Default::default() };
    let filter = Filter::from_request(&request)?;
    let events = watch::open::<v1::Event>(&live.stream, filter, live.shutdown.clone()).await?;
    // An interrupted stream ends the response; the browser reconnects from its last id.
    let sse = events.take_while(|e| futures::future::ready(e.is_ok())).filter_map(|e| async move {
        let event = e.ok()?;
        let data = serde_json::to_string(&event).ok()?;
        Some(Ok(SseEvent::default().id(event.sequence.to_string()).data(data)))
    });
    Ok(Sse::new(sse).keep_alive(KeepAlive::default()))
}

/// Approves through the admin API's `Approve`, as the bearer token's name.
async fn approve(State(slot): State<Slot>, headers: HeaderMap, body: Bytes) -> Result<Response, ApiError> {
    let live = live(&slot)?;
    let mut auth = HeaderMap::new();
    if let Some(value) = headers.get(header::AUTHORIZATION) {
        auth.insert(header::AUTHORIZATION, value.clone());
    }
    let mut request = tonic::Request::new(());
    *request.metadata_mut() = MetadataMap::from_headers(auth);
    let caller = live.tokens.authenticate(&request)?;
    let body: v1::ApproveRequest = serde_json::from_slice(&body)
        .map_err(|e| ApiError(StatusCode::BAD_REQUEST, format!("the body is not an ApproveRequest: {e}")))?;
    let (metadata, extensions, ()) = request.into_parts();
    let mut request = tonic::Request::from_parts(metadata, extensions, body);
    request.extensions_mut().insert(caller);
    let response = live.api.approve(request).await?.into_inner();
    Ok(axum::Json(response).into_response())
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
    fn the_page_links_its_assets() {
        assert!(INDEX_HTML.contains("/dashboard/app.js") && INDEX_HTML.contains("/dashboard/style.css"));
        assert!(APP_JS.contains("/api/events") && APP_JS.contains("/api/approve"));
    }
}
