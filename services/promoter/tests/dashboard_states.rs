//! The app page's verification and scan state, from the promoter's own flow: `dev` has a
//! verification check (against a Prometheus that is not there), so a healthy version is
//! verified — the page says the checks run, then that they failed — and the image's scan
//! (`build.scanned`) shows with its counts by severity. Headless Chromium.

mod common;
mod dashboard_kit;
mod webdriver;

use common::writer::{self, IMAGE, wait_promotion};
use dashboard_kit::Service;
use serde_json::json;
use slipway_mesh::v1;
use webdriver::Browser;

const DIGEST: &str = "sha256:1111111111111111111111111111111111111111111111111111111111111111";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verification_and_scan_state_in_the_page() {
    webdriver::require_chromium();
    // Nothing listens on port 1: every measurement errors, and the verification with it.
    let check = json!({ "prometheus": {
        "name": "success-rate", "address": "http://127.0.0.1:1", "query": "vector(1)",
        "interval": "1s", "count": 1, "successCondition": "result[0] >= 0.95",
    }});
    let service = Service::start_custom(0, |config| {
        config.pipeline.stages[0].verification = vec![serde_json::from_value(check).expect("check")];
    })
    .await;
    let pool = &service.promoter.pool;
    let mut build = writer::build("v1", &"d".repeat(40));
    build.image = Some(v1::ImageRef { repository: IMAGE.into(), tag: "v1".into(), digest: DIGEST.into() });
    service.promoter.publisher.publish(&build).await.expect("build");
    let dev = wait_promotion(pool, "dev", "v1", "committed").await;

    let browser = Browser::start().await;
    browser.goto(&service.url("/dashboard/app/writer")).await;
    let dev_box = ".stage[data-stage='dev']";
    browser.wait_text(dev_box, &["verification: 1 checks, not run at this version yet", "scan: not scanned"]).await;

    let scanned = v1::BuildScanned {
        build_id: "build-v1".into(),
        app: "writer".into(),
        image: build.image.clone(),
        scanner: "trivy".into(),
        counts: vec![
            v1::SeverityCount { severity: "CRITICAL".into(), total: 1, fixable: 1 },
            v1::SeverityCount { severity: "HIGH".into(), total: 3, fixable: 0 },
        ],
        finding_count: 4,
        scanned_at: Some(pbjson_types::Timestamp { seconds: chrono::Utc::now().timestamp(), nanos: 0 }),
        ..Default::default()
    };
    service.promoter.publisher.publish(&scanned).await.expect("scanned");
    browser.wait_text(dev_box, &["scan: trivy: 1 CRITICAL, 3 HIGH"]).await;

    // Healthy: the domain asks for the checks (running), the verifier's error fails them.
    service.healthy("dev", &dev).await;
    let running = service.wait_stage("dev", |s| s["verification"] == "checks running").await;
    assert_eq!(running["running"]["digest"], DIGEST);
    browser.wait_text(dev_box, &["verification: checks failed"]).await;
    let api = service.get("/api/apps/writer").await;
    assert_eq!(api["stages"][0]["verification"], "checks failed");
    browser.quit().await;
    service.stop().await;
}
