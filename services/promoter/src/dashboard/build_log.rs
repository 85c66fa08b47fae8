//! `GET /api/builds/{id}/log`: a build's log as server-sent events, read from the store
//! `slipctl logs` reads — the JetStream KV bucket the builder writes chunks of lines to while
//! the build runs ([`slipway_mesh::build_log`]). What is there comes first, then each chunk as
//! the builder writes it: `lines` events (`{"lines": [...]}`), and one `end` event (the
//! builder's [`End`] record) once the build is over, after which the response ends. `missing`
//! means there is no bucket yet (no builder ever ran); the page asks again later.

use std::convert::Infallible;

use async_nats::jetstream::{self, kv};
use axum::http::StatusCode;
use axum::response::sse::Event as SseEvent;
use futures::{Stream, StreamExt as _};
use slipway_mesh::build_log::{self, BUCKET, End};
use tokio_util::sync::CancellationToken;

use super::ApiError;

/// Longest build id accepted (the builder's are far shorter).
const MAX_BUILD_ID: usize = 256;

fn unavailable(e: &dyn std::fmt::Display) -> ApiError {
    tracing::warn!(error = %e, "dashboard: reading a build log failed");
    ApiError(StatusCode::SERVICE_UNAVAILABLE, format!("the build log store is unavailable: {e}"))
}

/// One KV entry as an SSE event: a chunk of lines, or the end record (and true: stop).
fn event_of(entry: &kv::Entry) -> Option<(SseEvent, bool)> {
    if entry.operation != kv::Operation::Put {
        return None;
    }
    if build_log::is_end_key(&entry.key) {
        let end: End = serde_json::from_slice(&entry.value).ok()?;
        let data = serde_json::to_string(&end).ok()?;
        return Some((SseEvent::default().event("end").data(data), true));
    }
    let text = String::from_utf8_lossy(&entry.value);
    let lines: Vec<&str> = text.lines().collect();
    let data = serde_json::json!({ "lines": lines }).to_string();
    Some((SseEvent::default().event("lines").data(data), false))
}

/// The log of `build_id`, followed until its end record, the page leaving, or `shutdown`.
pub(super) async fn follow(
    js: &jetstream::Context,
    build_id: &str,
    shutdown: CancellationToken,
) -> Result<impl Stream<Item = Result<SseEvent, Infallible>> + use<>, ApiError> {
    if build_id.is_empty() || build_id.len() > MAX_BUILD_ID {
        return Err(ApiError(StatusCode::BAD_REQUEST, "not a build id".into()));
    }
    let store = match js.get_key_value(BUCKET).await {
        Ok(store) => Some(store),
        // As `slipctl logs` tells a missing bucket from a failure.
        Err(e) if e.to_string().contains("not found") => None,
        Err(e) => return Err(unavailable(&e)),
    };
    let Some(store) = store else {
        let missing = SseEvent::default().event("missing").data("{}");
        return Ok(futures::stream::iter(vec![Ok(missing)]).left_stream());
    };
    let watch = store.watch_with_history(build_log::filter(build_id)).await.map_err(|e| unavailable(&e))?;
    let body = watch
        .take_until(shutdown.cancelled_owned())
        // A failed read ends the response; the page opens it again.
        .take_while(|entry| futures::future::ready(entry.is_ok()))
        .filter_map(|entry| futures::future::ready(entry.ok().as_ref().and_then(event_of)))
        // The end record is sent, then the response ends (a `None` after it stops the stream
        // without waiting for a next entry that never comes).
        .flat_map(|(event, end)| futures::stream::iter([Some(event)].into_iter().chain(end.then_some(None))))
        .take_while(|event| futures::future::ready(event.is_some()))
        .filter_map(|event| futures::future::ready(event.map(Ok)));
    Ok(body.right_stream())
}
