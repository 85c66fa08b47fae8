//! Admin routes for dead letters: `GET /dlq` lists them (newest first; `?all=true` includes
//! replayed ones), `POST /dlq/{id}/replay` delivers one again now and answers how it went.
//! They answer 503 until the service has booted (the admin port is up before the database).

use crate::dispatch::{Delivered, Dispatcher};
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::json;
use std::sync::{Arc, OnceLock};

/// The dispatcher, once booted.
pub type Slot = Arc<OnceLock<Arc<Dispatcher>>>;

/// The routes, over a slot filled after boot.
pub fn router(slot: Slot) -> Router {
    Router::new().route("/dlq", get(list)).route("/dlq/{id}/replay", post(replay)).with_state(slot)
}

#[derive(Debug, Deserialize)]
struct ListQuery {
    #[serde(default)]
    all: bool,
    #[serde(default)]
    limit: Option<i64>,
}

fn unavailable() -> Response {
    (StatusCode::SERVICE_UNAVAILABLE, axum::Json(json!({ "error": "starting" }))).into_response()
}

async fn list(State(slot): State<Slot>, Query(q): Query<ListQuery>) -> Response {
    let Some(d) = slot.get() else { return unavailable() };
    match crate::store::list_dead(d.pool(), q.all, q.limit.unwrap_or(100).clamp(1, 1000)).await {
        Ok(rows) => axum::Json(json!({ "dead_letters": rows })).into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, axum::Json(json!({ "error": e.to_string() }))).into_response(),
    }
}

async fn replay(State(slot): State<Slot>, Path(id): Path<i64>) -> Response {
    let Some(d) = slot.get() else { return unavailable() };
    let (status, body) = match d.replay(id).await {
        Ok(None) => (StatusCode::NOT_FOUND, json!({ "error": format!("no dead letter {id}") })),
        Ok(Some(Delivered::Sent)) => (StatusCode::OK, json!({ "status": "sent" })),
        Ok(Some(Delivered::Skipped)) => (StatusCode::OK, json!({ "status": "skipped" })),
        Ok(Some(Delivered::AlreadyDone(state))) => (StatusCode::OK, json!({ "status": state })),
        Ok(Some(Delivered::Dead(error))) => (StatusCode::BAD_GATEWAY, json!({ "status": "failed", "error": error })),
        Err(e) => (StatusCode::SERVICE_UNAVAILABLE, json!({ "error": e.to_string() })),
    };
    (status, axum::Json(body)).into_response()
}
