//! The Grafana dashboard in `deploy/grafana/slipway.json` against what the four services
//! really export: the quickstart's flow (a push → build → dev commit → notification, and one
//! webhook with a bad signature) runs, then every metric a panel queries must be on some
//! service's `/metrics`, so a renamed metric breaks this test, not an operator's dashboard.

use std::collections::BTreeSet;
use std::time::Duration;

use slipway_e2e::demo::WEBHOOK_SECRET;
use slipway_e2e::receiver::Receiver;
use slipway_e2e::webhook::{self, Push};
use slipway_e2e::{Database, Demo, Overrides, binaries};

const DEMO_TIMEOUT: Duration = Duration::from_secs(180);

/// The metric names a PromQL expression uses (`slipway_...`, with `_bucket` kept).
fn metric_names(expr: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut rest = expr;
    while let Some(at) = rest.find("slipway_") {
        let tail = &rest[at..];
        let end =
            tail.find(|c: char| !(c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')).unwrap_or(tail.len());
        names.insert(tail[..end].to_owned());
        rest = &tail[end..];
    }
    names
}

/// Every PromQL expression of the dashboard's panels (and its variables).
fn dashboard_exprs() -> Vec<String> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/grafana/slipway.json");
    let text = std::fs::read_to_string(&path).expect("the dashboard");
    let json: serde_json::Value = serde_json::from_str(&text).expect("the dashboard is JSON");
    let mut exprs = Vec::new();
    for panel in json["panels"].as_array().expect("panels") {
        for target in panel["targets"].as_array().into_iter().flatten() {
            exprs.push(target["expr"].as_str().expect("expr").to_owned());
        }
    }
    for variable in json["templating"]["list"].as_array().into_iter().flatten() {
        if let Some(query) = variable["query"]["query"].as_str() {
            exprs.push(query.to_owned());
        }
    }
    exprs
}

/// The series names on a `/metrics` page.
fn exported(text: &str) -> BTreeSet<String> {
    (text.lines())
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| l.split(['{', ' ']).next().unwrap_or_default().to_owned())
        .collect()
}

#[test]
fn the_dashboard_names_only_slipway_metrics_and_every_panel_queries_one() {
    let exprs = dashboard_exprs();
    assert!(exprs.len() >= 15, "{exprs:?}");
    assert!(exprs.iter().all(|e| !metric_names(e).is_empty()), "{exprs:?}");
    assert_eq!(
        metric_names(
            "histogram_quantile(0.99, sum by (le) (rate(slipway_handle_seconds_bucket[5m]))) / slipway_x_total"
        ),
        BTreeSet::from(["slipway_handle_seconds_bucket".to_owned(), "slipway_x_total".to_owned()])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_metric_of_the_grafana_dashboard_is_exported() {
    let receiver = Receiver::start("grafana-secret").await;
    let demo = Demo::start(Database::Shared).await;
    demo.write_configs(&receiver.notifier_config());
    let services = demo.start_services(binaries!(), Overrides::default()).await;
    let http = webhook::client();

    let added = ["apps/hello/Dockerfile", "apps/hello/hello.txt"];
    let push = Push::new(&demo.app_url, &"0".repeat(40), &demo.app_sha, "feat(hello): the demo app", &added, &[]);
    let refused = webhook::send(&http, &demo.webhook_url, "not-the-secret", &push).await;
    assert_eq!(refused, Ok(401), "a bad signature is refused");
    let status = webhook::send(&http, &demo.webhook_url, WEBHOOK_SECRET, &push).await;
    assert!(matches!(status, Ok(200..=299)), "{status:?}\n{}", services.tails(30));
    let sha = demo.app_sha.clone();
    services.wait_until("the dev commit", DEMO_TIMEOUT, || async { demo.overlay_tag("dev") == sha }).await;
    services.wait_until("a notification", DEMO_TIMEOUT, || async { !receiver.counts().is_empty() }).await;
    // The promoter's ticker sets the approvals gauge; a second of ticks is enough.
    tokio::time::sleep(Duration::from_secs(2)).await;

    let mut all = BTreeSet::new();
    for admin in [&services.ingest.admin, &services.builder.admin, &services.promoter.admin, &services.notifier.admin] {
        let page = http.get(format!("{admin}/metrics")).send().await.expect("GET /metrics");
        all.extend(exported(&page.text().await.expect("body")));
    }
    let wanted: BTreeSet<String> = dashboard_exprs().iter().flat_map(|e| metric_names(e)).collect();
    let missing: Vec<&String> = wanted.iter().filter(|m| !all.contains(*m)).collect();
    assert!(
        missing.is_empty(),
        "the dashboard queries metrics no service exports: {missing:?}\nexported: {:?}",
        all.iter().filter(|m| m.starts_with("slipway_")).collect::<Vec<_>>()
    );
    services.stop().await;
}
