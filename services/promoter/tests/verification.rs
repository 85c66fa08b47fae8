//! Verification after deploy through the whole promoter: real NATS, PostgreSQL, git daemon and
//! a real Prometheus scraping a test exporter whose success rate the test sets. staging has a
//! Prometheus check (Argo Rollouts semantics: `count` 3, `failureLimit` 1): a good version
//! passes after three measurements and prod opens; a bad one fails after two failed
//! measurements and is rolled back, staging held; `slipctl verify` / `/verify-stage` runs the
//! checks again.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use common::running::Running;
use common::writer::{self, IMAGE};
use common::{seed_repo, stage_files};
use serde_json::json;
use slipway_mesh::v1::{self, event::Payload};
use slipway_promoter::health::HealthMode;
use slipway_runtime::jetstream::Publisher;
use slipway_testkit::{GitDaemon, NatsServer, Prometheus};

/// `http_requests_total{app="writer",code=...}`, growing by 20 requests every 100 ms, of
/// which `errors_percent` fail.
#[derive(Default)]
struct Exporter {
    ok: AtomicU64,
    failed: AtomicU64,
    errors_percent: AtomicU32,
}

impl Exporter {
    async fn start() -> (Arc<Exporter>, String) {
        let exporter = Arc::new(Exporter::default());
        let counters = exporter.clone();
        tokio::spawn(async move {
            loop {
                let bad = u64::from(counters.errors_percent.load(Ordering::SeqCst)) * 20 / 100;
                counters.failed.fetch_add(bad, Ordering::SeqCst);
                counters.ok.fetch_add(20 - bad, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        });
        let served = exporter.clone();
        let app = axum::Router::new().route(
            "/metrics",
            axum::routing::get(move || {
                let e = served.clone();
                async move {
                    format!(
                        "# TYPE http_requests_total counter\n\
                         http_requests_total{{app=\"writer\",code=\"200\"}} {}\n\
                         http_requests_total{{app=\"writer\",code=\"500\"}} {}\n",
                        e.ok.load(Ordering::SeqCst),
                        e.failed.load(Ordering::SeqCst)
                    )
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move { axum::serve(listener, app).await });
        (exporter, addr.to_string())
    }
}

fn config(
    nats: &NatsServer,
    db: &str,
    gitops: &str,
    work: &std::path::Path,
    prometheus: &str,
) -> slipway_promoter::Config {
    let success_rate = json!({ "prometheus": {
        "name": "success-rate",
        "address": prometheus,
        "query": "sum(rate(http_requests_total{app=\"{app}\",code=\"200\"}[5s])) / sum(rate(http_requests_total{app=\"{app}\"}[5s]))",
        "interval": "1s",
        "count": 3,
        "successCondition": "result[0] >= 0.95",
        "failureLimit": 1,
    }});
    let stages = [
        json!({ "name": "dev", "policy": "auto" }),
        json!({ "name": "staging", "policy": "auto", "approvers": ["bob"], "auto_rollback": true,
                "verification": [success_rate] }),
        json!({ "name": "prod", "policy": "auto" }),
    ];
    let mut config = writer::config(&nats.url(), db, gitops, work, &stages);
    config.health.mode = HealthMode::Committed;
    config
}

async fn build(publisher: &Publisher, tag: &str) {
    let event = writer::build(tag, &format!("{:0>40}", tag.trim_start_matches('v')));
    publisher.publish(&event).await.expect("publish build");
}

/// The `verification.*` events in the stream so far.
async fn verification_events(js: &async_nats::jetstream::Context) -> Vec<Payload> {
    common::stream_payloads(js, "slipway.verification.").await
}

fn completed(events: &[Payload], tag: &str) -> Vec<v1::VerificationCompleted> {
    (events.iter())
        .filter_map(|p| match p {
            Payload::VerificationCompleted(c) if c.image.as_ref().is_some_and(|i| i.tag == tag) => Some(c.clone()),
            _ => None,
        })
        .collect()
}

fn measured(events: &[Payload], promotion_id: &str) -> Vec<v1::VerificationMeasured> {
    (events.iter())
        .filter_map(|p| match p {
            Payload::VerificationMeasured(m) if m.promotion_id == promotion_id => Some(m.clone()),
            _ => None,
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_analysis_gates_the_next_stage_and_rolls_back_a_bad_version() {
    let nats = NatsServer::start().await.expect("nats");
    let daemon = GitDaemon::start().await.expect("git daemon");
    let db = slipway_testkit::shared_database().await.expect("database");
    let (exporter, target) = Exporter::start().await;
    let prometheus = Prometheus::start(std::slice::from_ref(&target)).await.expect("prometheus");
    let text = |_: &str| format!("images:\n  - name: {IMAGE}\n    newTag: v0\n");
    let gitops = seed_repo(&daemon, "acme/gitops", &stage_files(&["dev", "staging", "prod"], text));
    let work = tempfile::tempdir().expect("work dir");
    let config = config(&nats, &db, &gitops, work.path(), &prometheus.url());
    let service = Running::start(&config, "/slipway/test/local").await;
    let (pool, publisher) = (&service.pool, &service.publisher);

    // v1 is good (no errors): healthy in staging, then verified after `count` measurements,
    // and only then does prod get it.
    tokio::time::sleep(Duration::from_secs(6)).await; // two scrapes at least, for rate()
    build(publisher, "v1").await;
    writer::wait_promotion(pool, "staging", "v1", "verifying").await;
    writer::wait_promotion(pool, "prod", "v1", "healthy").await;
    writer::wait_promotion(pool, "staging", "v1", "healthy").await;
    let events = verification_events(&service.js).await;
    let passed = completed(&events, "v1");
    assert_eq!(passed.len(), 1, "{passed:?}");
    assert_eq!(passed[0].verdict, "successful");
    assert_eq!(passed[0].checks[0].message, "count (3) reached", "{:?}", passed[0]);
    // Every measurement is an event; an Error (a scrape not in yet) does not count toward `count`.
    let v1_measured = measured(&events, &passed[0].promotion_id);
    assert_eq!(v1_measured.len() as u32, passed[0].checks[0].measurements, "{v1_measured:?}");
    let counted: Vec<_> = v1_measured.iter().filter(|m| m.phase != "error").collect();
    assert_eq!(counted.len(), 3, "{v1_measured:?}");
    assert!(counted.iter().all(|m| m.phase == "successful"), "{v1_measured:?}");

    // v2 meets a 50% error rate: two failed measurements exceed failureLimit 1, and staging
    // goes back to v1 and is held; prod never sees v2.
    exporter.errors_percent.store(50, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_secs(6)).await;
    build(publisher, "v2").await;
    writer::wait_promotion(pool, "staging", "v2", "verifying").await;
    writer::wait_promotion(pool, "staging", "v1", "healthy").await;
    let events = verification_events(&service.js).await;
    let failed = completed(&events, "v2");
    assert_eq!(failed.len(), 1, "{failed:?}");
    assert_eq!(failed[0].verdict, "failed", "{:?}", failed[0]);
    assert_eq!(failed[0].checks[0].message, "failed (2) > failureLimit (1)", "{:?}", failed[0]);
    let v2_failed = measured(&events, &failed[0].promotion_id).into_iter().filter(|m| m.phase == "failed").count();
    assert_eq!(v2_failed, 2, "failureLimit + 1 failed measurements");
    let held: Option<String> =
        sqlx::query_scalar("SELECT reason FROM holds WHERE app = 'writer' AND stage = 'staging'")
            .fetch_optional(pool)
            .await
            .expect("hold");
    assert!(held.is_some_and(|r| r.contains("verification")), "staging is held after the rollback");
    let prod_tag: String = sqlx::query_scalar(
        "SELECT p.image_tag FROM promotions p JOIN stage_versions s ON s.desired_promotion = p.id \
         WHERE s.app = 'writer' AND s.stage = 'prod'",
    )
    .fetch_one(pool)
    .await
    .expect("prod");
    assert_eq!(prod_tag, "v1");

    // /verify-stage: the checks of what staging runs (v1, rolled back to) run again; with the
    // errors gone they pass.
    exporter.errors_percent.store(0, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_secs(6)).await;
    let command = v1::ChatopsCommand {
        command_id: "c-verify".into(),
        kind: v1::CommandKind::Verify.into(),
        app: "writer".into(),
        env: "staging".into(),
        actor: "bob".into(),
        channel: "github".into(),
        raw: "/verify-stage writer staging".into(),
        ..Default::default()
    };
    publisher.publish(&command).await.expect("publish command");
    let mut again = Vec::new();
    for _ in 0..600 {
        let events = verification_events(&service.js).await;
        again = completed(&events, "v1");
        if again.len() == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(again.len(), 2, "a second verdict for v1: {again:?}");
    assert_eq!((again[1].verdict.as_str(), again[1].requested_by.as_str()), ("successful", "bob"));

    service.stop().await;
}
