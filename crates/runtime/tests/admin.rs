//! The admin server over real HTTP on port 0: probes follow the checks, `/metrics` shows what
//! was recorded, extra routes are served, and cancelling the token stops the server.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::{Context as _, Result};
use futures::FutureExt as _;
use futures::future::BoxFuture;
use reqwest::StatusCode;
use serde_json::{Value, json};
use slipway_runtime::admin::{self, AdminServer, ReadinessCheck};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// Ready while the flag is set.
struct Toggle(Arc<AtomicBool>);

impl ReadinessCheck for Toggle {
    fn name(&self) -> &'static str {
        "toggle"
    }

    fn check(&self) -> BoxFuture<'_, slipway_runtime::admin::Readiness> {
        let ready = self.0.load(Ordering::SeqCst);
        async move {
            if ready { Ok(()) } else { Err(slipway_runtime::admin::NotReady("switched off by the test".to_owned())) }
        }
        .boxed()
    }
}

/// An optional dependency: its failure degrades the service instead of making it unready.
struct Optional(Arc<AtomicBool>);

impl ReadinessCheck for Optional {
    fn name(&self) -> &'static str {
        "optional"
    }

    fn check(&self) -> BoxFuture<'_, slipway_runtime::admin::Readiness> {
        let ready = self.0.load(Ordering::SeqCst);
        async move { if ready { Ok(()) } else { Err(slipway_runtime::admin::NotReady("spooling".to_owned())) } }.boxed()
    }

    fn required(&self) -> bool {
        false
    }
}

struct Running {
    base: String,
    shutdown: CancellationToken,
    serving: JoinHandle<slipway_runtime::Result<()>>,
}

async fn start(server: AdminServer) -> Result<Running> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}", listener.local_addr()?);
    let shutdown = CancellationToken::new();
    let serving = tokio::spawn(server.serve(listener, shutdown.clone()));
    Ok(Running { base, shutdown, serving })
}

impl Running {
    async fn get(&self, path: &str) -> Result<reqwest::Response> {
        Ok(reqwest::get(format!("{}{path}", self.base)).await?)
    }

    async fn stop(self) -> Result<()> {
        self.shutdown.cancel();
        let served = tokio::time::timeout(Duration::from_secs(5), self.serving)
            .await
            .context("server did not stop after cancellation")?;
        served??;
        Ok(())
    }
}

#[tokio::test]
async fn readyz_follows_the_checks_and_healthz_stays_ok() -> Result<()> {
    let ready = Arc::new(AtomicBool::new(true));
    let server = AdminServer::new().with_check(Box::new(Toggle(ready.clone())));
    let running = start(server).await?;

    let health = running.get("/healthz").await?;
    assert_eq!(health.status(), StatusCode::OK);
    assert_eq!(health.text().await?, "ok");

    let up = running.get("/readyz").await?;
    assert_eq!(up.status(), StatusCode::OK);
    let body: Value = up.json().await?;
    assert_eq!(body, json!({"status": "ready", "checks": {"toggle": "ok"}}));

    ready.store(false, Ordering::SeqCst);
    let down = running.get("/readyz").await?;
    assert_eq!(down.status(), StatusCode::SERVICE_UNAVAILABLE);
    let body: Value = down.json().await?;
    assert_eq!(body["status"], "not-ready");
    assert_eq!(body["checks"]["toggle"], "switched off by the test");

    let still_alive = running.get("/healthz").await?;
    assert_eq!(still_alive.status(), StatusCode::OK);
    running.stop().await
}

#[tokio::test]
async fn an_optional_check_failing_degrades_but_stays_ready() -> Result<()> {
    let (required, optional) = (Arc::new(AtomicBool::new(true)), Arc::new(AtomicBool::new(false)));
    let server =
        AdminServer::new().with_check(Box::new(Toggle(required.clone()))).with_check(Box::new(Optional(optional)));
    let running = start(server).await?;
    let degraded = running.get("/readyz").await?;
    assert_eq!(degraded.status(), StatusCode::OK);
    let body: Value = degraded.json().await?;
    assert_eq!(body, json!({"status": "degraded", "checks": {"toggle": "ok", "optional": "spooling"}}));
    required.store(false, Ordering::SeqCst);
    let down = running.get("/readyz").await?;
    assert_eq!(down.status(), StatusCode::SERVICE_UNAVAILABLE);
    running.stop().await
}

#[tokio::test]
async fn metrics_renders_recorded_counters() -> Result<()> {
    let running = start(AdminServer::new()).await?;
    metrics::counter!("slipway_admin_test_events_total", "kind" => "test").increment(3);

    let response = running.get("/metrics").await?;
    assert_eq!(response.status(), StatusCode::OK);
    let content_type =
        response.headers().get(reqwest::header::CONTENT_TYPE).context("content type")?.to_str()?.to_owned();
    assert_eq!(content_type, admin::METRICS_CONTENT_TYPE);
    let text = response.text().await?;
    assert!(text.contains(r#"slipway_admin_test_events_total{kind="test"} 3"#), "{text}");
    running.stop().await
}

#[tokio::test]
async fn extra_routes_are_served_and_no_checks_means_ready() -> Result<()> {
    let extra = axum::Router::new().route("/debug/hello", axum::routing::get(|| async { "hi" }));
    let running = start(AdminServer::new().with_routes(extra)).await?;

    let hello = running.get("/debug/hello").await?;
    assert_eq!(hello.text().await?, "hi");
    let ready = running.get("/readyz").await?;
    assert_eq!(ready.status(), StatusCode::OK);
    assert_eq!(ready.json::<Value>().await?["checks"], json!({}));
    running.stop().await
}

#[test]
fn metrics_recorder_can_be_asked_for_twice() {
    let first = admin::metrics_recorder();
    let second = admin::metrics_recorder();
    metrics::counter!("slipway_admin_test_twice_total").increment(1);
    assert!(first.render().contains("slipway_admin_test_twice_total 1"));
    assert!(second.render().contains("slipway_admin_test_twice_total 1"));
}
