//! The spool on ingest's admin port: `/readyz` says `degraded` while entries wait or dead
//! letters lie, with the counts; `GET /spool` lists them, `POST /spool/dead/{name}/replay`
//! queues a dead letter again (behind what is pending), `DELETE /spool/dead/{name}` drops it.
//! `slipctl spool` is the client.

use crate::spool::{Spool, SpoolError};
use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use futures::FutureExt as _;
use futures::future::BoxFuture;
use serde_json::json;
use slipway_runtime::admin::ReadinessCheck;
use std::sync::Arc;

/// `degraded` (never 503: accepting into the spool is the point) while the spool is not empty.
pub struct SpoolCheck(pub Arc<Spool>);

impl ReadinessCheck for SpoolCheck {
    fn name(&self) -> &'static str {
        "spool"
    }

    fn check(&self) -> BoxFuture<'_, slipway_runtime::admin::Readiness> {
        let (pending, dead) = (self.0.len(), self.0.dead_count());
        async move {
            if pending == 0 && dead == 0 {
                Ok(())
            } else {
                Err(slipway_runtime::admin::NotReady(format!(
                    "{pending} entries waiting for NATS, {dead} dead letters"
                )))
            }
        }
        .boxed()
    }

    fn required(&self) -> bool {
        false
    }
}

/// The admin routes.
pub fn routes(spool: Arc<Spool>) -> Router {
    Router::new()
        .route("/spool", get(list))
        .route("/spool/dead/{name}/replay", post(replay))
        .route("/spool/dead/{name}", delete(remove))
        .with_state(spool)
}

async fn list(State(spool): State<Arc<Spool>>) -> Response {
    let letters = blocking(spool.clone(), |s| s.dead_letters()).await;
    match letters {
        Ok(letters) => axum::Json(json!({ "pending": spool.len(), "dead_letters": letters })).into_response(),
        Err(e) => failed(e),
    }
}

async fn replay(State(spool): State<Arc<Spool>>, Path(name): Path<String>) -> Response {
    let queued = blocking(spool, move |s| s.replay_dead(&name)).await;
    match queued {
        Ok(path) => {
            let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            axum::Json(json!({ "status": "queued", "entry": name })).into_response()
        }
        Err(e) => failed(e),
    }
}

async fn remove(State(spool): State<Arc<Spool>>, Path(name): Path<String>) -> Response {
    match blocking(spool, move |s| s.remove_dead(&name)).await {
        Ok(()) => axum::Json(json!({ "status": "removed" })).into_response(),
        Err(e) => failed(e),
    }
}

async fn blocking<T: Send + 'static>(
    spool: Arc<Spool>,
    work: impl FnOnce(&Spool) -> Result<T, SpoolError> + Send + 'static,
) -> Result<T, SpoolError> {
    match tokio::task::spawn_blocking(move || work(&spool)).await {
        Ok(result) => result,
        Err(e) => Err(SpoolError::Io { path: "spool".into(), source: std::io::Error::other(e.to_string()) }),
    }
}

fn failed(e: SpoolError) -> Response {
    let status = match e {
        SpoolError::NoSuchDeadLetter(_) => StatusCode::NOT_FOUND,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    };
    (status, axum::Json(json!({ "error": e.to_string() }))).into_response()
}
