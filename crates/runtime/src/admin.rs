//! The admin HTTP server every service runs next to its real work: probes and metrics.
//!
//! `GET /healthz` answers while the process can serve HTTP at all (Kubernetes liveness).
//! `GET /readyz` runs the service's [`ReadinessCheck`]s concurrently and answers 503 with the
//! failing check's message when a required one fails (readiness), or 200 with status
//! `degraded` when only optional ones fail. `GET /metrics` renders everything the
//! process recorded through the `metrics` facade in Prometheus text format. A service may add
//! its own routes (debug endpoints) with [`AdminServer::with_routes`].

mod checks;

use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::Result;

pub use checks::{NotReady, Readiness, ReadinessCheck, db_check, nats_check};

/// Content type of the Prometheus text exposition format.
pub const METRICS_CONTENT_TYPE: &str = "text/plain; version=0.0.4";

/// A check that does not answer within this time counts as failed, so one hung dependency
/// cannot hang the probe (Kubernetes would then time out without a reason).
const CHECK_TIMEOUT: Duration = Duration::from_secs(5);

/// How often histogram buckets are drained when nobody scrapes, to bound memory.
const UPKEEP_INTERVAL: Duration = Duration::from_secs(5);

/// Histogram buckets in seconds: from fast handlers (ms) to image builds (minutes).
const BUCKETS: &[f64] = &[0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0];

/// The process-wide Prometheus recorder behind the `metrics` macros.
///
/// Installed on first call; later calls return the same handle. Should another recorder
/// already be installed (by a library or test), this returns a detached handle that renders
/// nothing instead of panicking.
pub fn metrics_recorder() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let builder = PrometheusBuilder::new().set_buckets(BUCKETS).unwrap_or_else(|_| PrometheusBuilder::new());
            match builder.install_recorder() {
                Ok(handle) => handle,
                Err(e) => {
                    tracing::warn!(error = %e, "metrics recorder not installed");
                    PrometheusBuilder::new().build_recorder().handle()
                }
            }
        })
        .clone()
}

/// Builder and server for the admin endpoints.
pub struct AdminServer {
    checks: Vec<Box<dyn ReadinessCheck>>,
    metrics: PrometheusHandle,
    routes: Router,
}

impl Default for AdminServer {
    fn default() -> Self {
        Self::new()
    }
}

struct AdminState {
    checks: Vec<Box<dyn ReadinessCheck>>,
    metrics: PrometheusHandle,
}

impl AdminServer {
    /// A server with no readiness checks (always ready) over the global recorder.
    pub fn new() -> Self {
        Self { checks: Vec::new(), metrics: metrics_recorder(), routes: Router::new() }
    }

    /// Adds a readiness check; `/readyz` is ready only when all pass.
    pub fn with_check(mut self, check: Box<dyn ReadinessCheck>) -> Self {
        self.checks.push(check);
        self
    }

    /// Merges extra routes; they must not collide with the built-in ones.
    pub fn with_routes(mut self, routes: Router) -> Self {
        self.routes = self.routes.merge(routes);
        self
    }

    /// Renders `/metrics` from this handle instead of the global recorder's.
    pub fn with_metrics(mut self, handle: PrometheusHandle) -> Self {
        self.metrics = handle;
        self
    }

    /// The routes, for serving them some other way or calling them in-process.
    pub fn into_router(self) -> Router {
        let state = Arc::new(AdminState { checks: self.checks, metrics: self.metrics });
        Router::new()
            .route("/healthz", get(healthz))
            .route("/readyz", get(readyz))
            .route("/metrics", get(render_metrics))
            .with_state(state)
            .merge(self.routes)
    }

    /// Serves until `shutdown` is cancelled, then lets in-flight requests finish.
    pub async fn serve(self, listener: TcpListener, shutdown: CancellationToken) -> Result<()> {
        if let Ok(addr) = listener.local_addr() {
            tracing::info!(%addr, "admin server listening");
        }
        // Stops the upkeep task however serving ends.
        let upkeep_token = shutdown.child_token();
        let _stop_upkeep = upkeep_token.clone().drop_guard();
        tokio::spawn(upkeep(self.metrics.clone(), upkeep_token));
        axum::serve(listener, self.into_router()).with_graceful_shutdown(shutdown.cancelled_owned()).await?;
        Ok(())
    }
}

async fn upkeep(metrics: PrometheusHandle, stop: CancellationToken) {
    let mut interval = tokio::time::interval(UPKEEP_INTERVAL);
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            _ = interval.tick() => metrics.run_upkeep(),
        }
    }
}

async fn healthz() -> &'static str {
    "ok"
}

async fn readyz(State(state): State<Arc<AdminState>>) -> Response {
    let runs = state.checks.iter().map(|check| async move {
        let outcome = match tokio::time::timeout(CHECK_TIMEOUT, check.check()).await {
            Ok(outcome) => outcome,
            Err(_) => Err(NotReady(format!("no answer within {}s", CHECK_TIMEOUT.as_secs()))),
        };
        (check.name(), outcome)
    });
    let outcomes = futures::future::join_all(runs).await;
    let failing = |required: bool| {
        state.checks.iter().zip(&outcomes).any(|(check, (_, outcome))| check.required() == required && outcome.is_err())
    };
    let (ready, degraded) = (!failing(true), failing(false));
    let checks: BTreeMap<&str, String> = outcomes
        .into_iter()
        .map(|(name, outcome)| (name, outcome.err().map_or_else(|| "ok".to_owned(), |e| e.0)))
        .collect();
    if !ready || degraded {
        tracing::warn!(?checks, ready, "not fully ready");
    }
    let (status, label) = match (ready, degraded) {
        (false, _) => (StatusCode::SERVICE_UNAVAILABLE, "not-ready"),
        (true, true) => (StatusCode::OK, "degraded"),
        (true, false) => (StatusCode::OK, "ready"),
    };
    let body = serde_json::json!({ "status": label, "checks": checks });
    (status, axum::Json(body)).into_response()
}

async fn render_metrics(State(state): State<Arc<AdminState>>) -> Response {
    state.metrics.run_upkeep();
    let text = state.metrics.render();
    ([(header::CONTENT_TYPE, METRICS_CONTENT_TYPE)], text).into_response()
}
