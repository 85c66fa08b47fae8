//! `GET /api/apps/{app}/builds`: the app's builds of the last day as the builders announced
//! them (`build.started`, `build.succeeded`, `build.failed`), read from the `SLIPWAY` stream
//! with a consumer filtered on the app's build subjects — so a build that runs (and has no
//! run in the promoter yet), or failed, is found however busy the stream is; the page then
//! follows its log.

use std::collections::BTreeMap;

use async_nats::jetstream::consumer::{DeliverPolicy, pull::OrderedConfig};
use async_nats::jetstream::stream::Stream as JsStream;
use axum::http::StatusCode;
use chrono::{DateTime, Duration, Utc};
use futures::StreamExt as _;
use serde::Serialize;
use slipway_mesh::names::AppName;
use slipway_mesh::v1::event::Payload;
use slipway_mesh::{Envelope, decode_payload};

use super::ApiError;

/// How far back builds are listed.
const SINCE: Duration = Duration::hours(24);
/// Build events read at most (the newest builds win).
const MAX_EVENTS: usize = 2000;
/// How long the read may take before what was read is answered.
const READ_FOR: std::time::Duration = std::time::Duration::from_secs(3);

/// A build as its events tell it.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AnnouncedBuild {
    pub build_id: String,
    pub commit: String,
    /// `running`, `succeeded` or `failed`.
    pub state: String,
    /// The failure reason (`build-error`, `timeout` ...), empty otherwise.
    pub reason: String,
    pub started_at: DateTime<Utc>,
}

fn unavailable(e: &dyn std::fmt::Display) -> ApiError {
    tracing::warn!(error = %e, "dashboard: reading the app's build events failed");
    ApiError(StatusCode::SERVICE_UNAVAILABLE, "the event stream is unavailable; try again".into())
}

/// Folds one build event of `app` into `builds` (keyed by build id).
fn fold(builds: &mut BTreeMap<String, AnnouncedBuild>, app: &str, at: DateTime<Utc>, payload: Payload) {
    let (id, commit, state, reason) = match payload {
        Payload::BuildStarted(b) if b.app == app => (b.build_id, b.commit_sha, "running", String::new()),
        Payload::BuildSucceeded(b) if b.app == app => {
            (b.build_id, b.source.map(|s| s.commit_sha).unwrap_or_default(), "succeeded", String::new())
        }
        Payload::BuildFailed(b) if b.app == app => (b.build_id, b.commit_sha, "failed", b.reason),
        _ => return,
    };
    let build = builds.entry(id.clone()).or_insert_with(|| AnnouncedBuild {
        build_id: id,
        commit: commit.clone(),
        state: String::new(),
        reason: String::new(),
        started_at: at,
    });
    // A retried build starts again: `running` follows a failure of an earlier attempt.
    build.state = state.to_owned();
    build.reason = reason;
    if build.commit.is_empty() {
        build.commit = commit;
    }
}

/// The builds of `app` announced in the last day, newest first.
pub(super) async fn announced(stream: &JsStream, app: &str) -> Result<Vec<AnnouncedBuild>, ApiError> {
    let app = AppName::parse(app).map_err(|e| ApiError(StatusCode::BAD_REQUEST, e.to_string()))?;
    let since = Utc::now() - SINCE;
    let nanos = i128::from(since.timestamp_nanos_opt().unwrap_or_default());
    let start_time = async_nats::datetime::from_nanos(nanos).map_err(|e| unavailable(&e))?;
    let config = OrderedConfig {
        // Build events are keyed by app alone (no stage token). One filter in `filter_subject`:
        // a server before 2.10 ignores `filter_subjects` and would send every event.
        filter_subject: format!("slipway.build.*.{app}"),
        deliver_policy: DeliverPolicy::ByStartTime { start_time },
        ..OrderedConfig::default()
    };
    let mut consumer = stream.create_consumer(config).await.map_err(|e| unavailable(&e))?;
    let pending = consumer.info().await.map_err(|e| unavailable(&e))?.num_pending;
    let wanted = usize::try_from(pending).unwrap_or(usize::MAX).min(MAX_EVENTS);
    let mut builds = BTreeMap::new();
    if wanted > 0 {
        let messages = consumer.messages().await.map_err(|e| unavailable(&e))?;
        let mut messages = std::pin::pin!(messages.take(wanted).take_until(tokio::time::sleep(READ_FOR)));
        while let Some(message) = messages.next().await {
            let message = message.map_err(|e| unavailable(&e))?;
            let Some(envelope) = message.headers.as_ref().and_then(|h| Envelope::from_headers(h).ok()) else {
                continue;
            };
            if let Ok(payload) = decode_payload(envelope.kind, &message.payload) {
                fold(&mut builds, app.as_str(), envelope.time, payload);
            }
        }
    }
    let mut builds: Vec<AnnouncedBuild> = builds.into_values().collect();
    builds.sort_by_key(|b| std::cmp::Reverse(b.started_at));
    Ok(builds)
}

#[cfg(test)]
mod tests {
    use super::*;
    use slipway_mesh::v1;

    fn started(id: &str, app: &str) -> Payload {
        let started =
            v1::BuildStarted { build_id: id.into(), app: app.into(), commit_sha: "c1".into(), ..Default::default() };
        Payload::BuildStarted(started)
    }

    #[test]
    fn a_build_runs_until_its_outcome_arrives() {
        let at = Utc::now();
        let mut builds = BTreeMap::new();
        fold(&mut builds, "writer", at, started("b1", "writer"));
        fold(&mut builds, "writer", at, started("b2", "writer"));
        fold(&mut builds, "writer", at, started("x1", "other"));
        assert!(!builds.contains_key("x1"), "another app's build");
        assert_eq!(builds["b1"].state, "running");
        let failed = v1::BuildFailed {
            build_id: "b1".into(),
            app: "writer".into(),
            reason: "build-error".into(),
            ..Default::default()
        };
        fold(&mut builds, "writer", at + Duration::seconds(5), Payload::BuildFailed(failed));
        assert_eq!((builds["b1"].state.as_str(), builds["b1"].reason.as_str()), ("failed", "build-error"));
        assert_eq!(builds["b1"].started_at, at, "started when first announced");
        assert_eq!(builds["b2"].state, "running");
        let succeeded = v1::BuildSucceeded { build_id: "b2".into(), app: "writer".into(), ..Default::default() };
        fold(&mut builds, "writer", at, Payload::BuildSucceeded(succeeded));
        assert_eq!(builds["b2"].state, "succeeded");
        assert_eq!(builds["b2"].commit, "c1", "the commit of the start is kept");
    }
}
