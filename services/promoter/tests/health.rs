//! The health gate against real NATS and a fake Kubernetes API server: the test publishes
//! `promotion.committed`, changes the Argo CD Application or the Deployment on the fake, and
//! reads the `promotion.synced/healthy/degraded` the watcher publishes.

mod health_fake;

use std::sync::Arc;
use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use health_fake::{APPLICATION, DEPLOYMENT, FakeKube};
use serde_json::{Value, json};
use slipway_mesh::v1::{self, event::Payload};
use slipway_mesh::{Envelope, EventKind};
use slipway_promoter::Config;
use slipway_promoter::config::PipelineConfig;
use slipway_promoter::health::{self, HealthConfig, HealthMode, config::StageHealth};
use slipway_runtime::config::NatsConfig;
use slipway_runtime::jetstream::Publisher;
use slipway_testkit::NatsServer;
use tokio_util::sync::CancellationToken;

const IMAGE: &str = "registry.local/acme/web";

struct Env {
    _nats: NatsServer,
    fake: FakeKube,
    publisher: Publisher,
    stream: async_nats::jetstream::stream::Stream,
    events: async_nats::Subscriber,
    shutdown: CancellationToken,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

/// NATS, the fake API server, and the watcher with `health` (its `kube_url` set to the fake).
async fn start(mut health: HealthConfig) -> Env {
    let nats = NatsServer::start().await.expect("nats");
    let fake = FakeKube::start().await;
    health.kube_url = Some(fake.url.clone());
    let stage = |name: &str| serde_json::from_value(json!({ "name": name, "policy": "auto" })).expect("stage");
    let config = Config {
        nats: NatsConfig { url: nats.url(), ack_wait_secs: 5, ..NatsConfig::default() },
        pipeline: PipelineConfig { stages: vec![stage("dev"), stage("prod")], ..PipelineConfig::default() },
        health,
        ..Config::default()
    };
    slipway_runtime::config::Validate::validate(&config).expect("valid config");
    let client = async_nats::connect(nats.url()).await.expect("connect");
    let js = async_nats::jetstream::new(client.clone());
    let stream = slipway_runtime::jetstream::ensure_stream(&js, &config.nats).await.expect("stream");
    let events = client.subscribe("slipway.promotion.>").await.expect("subscribe");
    let kube = health::client(&config.health).await.expect("kube client").expect("some stage is watched");
    let publisher = Publisher::new(client, "/slipway/test/local");
    let shutdown = CancellationToken::new();
    let apps = slipway_promoter::catalog::Apps::from_config(&config);
    let run = health::run(Arc::new(config), apps, Some(kube), stream.clone(), publisher.clone(), shutdown.clone());
    Env { _nats: nats, fake, publisher, stream, events, shutdown, task: tokio::spawn(run) }
}

fn argo(window_secs: Option<u64>) -> HealthConfig {
    HealthConfig { mode: HealthMode::ArgoCd, watch_window_secs: window_secs, ..HealthConfig::default() }
}

fn image(tag: &str) -> v1::ImageRef {
    v1::ImageRef { repository: IMAGE.into(), tag: tag.into(), digest: String::new() }
}

fn application(sync: &str, revision: &str, health: &str, message: &str) -> Value {
    json!({ "spec": { "project": "default" }, "status": {
        "sync": { "status": sync, "revision": revision },
        "health": { "status": health, "message": message },
    }})
}

fn deployment(tag: &str, generation: i64, status: Value) -> Value {
    json!({
        "metadata": { "generation": generation },
        "spec": {
            "replicas": 2,
            "selector": { "matchLabels": { "app": "web" } },
            "template": {
                "metadata": { "labels": { "app": "web" } },
                "spec": { "containers": [{ "name": "web", "image": format!("{IMAGE}:{tag}") }] },
            },
        },
        "status": status,
    })
}

impl Env {
    async fn committed(&self, promotion_id: &str, app: &str, stage: &str, commit: &str, tag: &str) {
        let event = v1::PromotionCommitted {
            promotion_id: promotion_id.into(),
            app: app.into(),
            stage: stage.into(),
            image: Some(image(tag)),
            gitops_repository: "git://gitops".into(),
            gitops_branch: "main".into(),
            gitops_commit: commit.into(),
            pull_request_url: String::new(),
        };
        self.publisher.publish(&event).await.expect("publish committed");
    }

    /// The next health report (synced, healthy or degraded) within `secs`.
    async fn next_report(&mut self, secs: u64) -> Option<(Envelope, Payload)> {
        let until = tokio::time::Instant::now() + Duration::from_secs(secs);
        loop {
            let message = tokio::time::timeout_at(until, self.events.next()).await.ok()??;
            let envelope = Envelope::from_headers(message.headers.as_ref()?).expect("envelope");
            if envelope.kind == EventKind::PromotionCommitted {
                continue;
            }
            let payload = slipway_mesh::decode_payload(envelope.kind, &message.payload).expect("payload");
            return Some((envelope, payload));
        }
    }

    async fn expect_report(&mut self, kind: EventKind, promotion_id: &str) -> Payload {
        let (envelope, payload) = self.next_report(15).await.unwrap_or_else(|| panic!("no {kind} in time"));
        assert_eq!(envelope.kind, kind, "{payload:?}");
        let verdict = match kind {
            EventKind::PromotionSynced => "synced",
            EventKind::PromotionHealthy => "healthy",
            _ => "degraded",
        };
        assert_eq!(envelope.id.as_str(), format!("{promotion_id}.{verdict}"), "ids derive from promotion + verdict");
        payload
    }

    /// Waits until the fake has seen `n` watch requests; returns them.
    async fn watches(&self, n: usize) -> Vec<String> {
        for _ in 0..200 {
            let watches = self.fake.watch_requests();
            if watches.len() >= n {
                return watches;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("fewer than {n} watch requests: {:?}", self.fake.requests());
    }

    async fn stop(self) {
        self.shutdown.cancel();
        self.task.await.expect("join").expect("watcher");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_argo_application_syncing_our_commit_reports_synced_then_healthy() {
    let mut env = start(argo(None)).await;
    env.fake.apply(APPLICATION, "argocd", "web-dev", application("Synced", "0ld", "Healthy", ""));
    env.committed("p1.dev", "web", "dev", "c1", "v1").await;
    env.watches(1).await;
    assert!(env.next_report(1).await.is_none(), "the old revision's health says nothing about ours");
    env.fake.apply(APPLICATION, "argocd", "web-dev", application("Synced", "c1", "Progressing", ""));
    let synced = env.expect_report(EventKind::PromotionSynced, "p1.dev").await;
    assert!(matches!(synced, Payload::PromotionSynced(s) if s.revision == "c1" && s.app == "web" && s.stage == "dev"));
    env.fake.apply(APPLICATION, "argocd", "web-dev", application("Synced", "c1", "Healthy", ""));
    let healthy = env.expect_report(EventKind::PromotionHealthy, "p1.dev").await;
    assert!(matches!(healthy, Payload::PromotionHealthy(h) if h.image == Some(image("v1"))));

    // A redelivered commit watches again; its reports carry the same ids, stored once.
    env.committed("p1.dev", "web", "dev", "c1", "v1").await;
    env.watches(2).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let stored = env.stream.info_with_subjects("slipway.promotion.healthy.>").await.expect("info");
    let stored: std::collections::HashMap<String, usize> = stored.try_collect().await.expect("subjects");
    assert_eq!(stored.get("slipway.promotion.healthy.web.dev"), Some(&1), "{stored:?}");
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_degraded_application_and_one_degrading_after_healthy_report_degraded() {
    let mut env = start(argo(None)).await;
    env.committed("p2.prod", "web", "prod", "c2", "v2").await;
    env.watches(1).await;
    env.fake.apply(APPLICATION, "argocd", "web-prod", application("Synced", "c2", "Degraded", "crash loop"));
    env.expect_report(EventKind::PromotionSynced, "p2.prod").await;
    let degraded = env.expect_report(EventKind::PromotionDegraded, "p2.prod").await;
    let Payload::PromotionDegraded(d) = degraded else { panic!("{degraded:?}") };
    assert_eq!((d.health_status.as_str(), d.message.as_str()), ("Degraded", "crash loop"));

    // Healthy first, then the crash loop starts: still inside the window, so still reported.
    env.committed("p3.dev", "web", "dev", "c3", "v3").await;
    env.fake.apply(APPLICATION, "argocd", "web-dev", application("Synced", "c3", "Healthy", ""));
    env.expect_report(EventKind::PromotionSynced, "p3.dev").await;
    env.expect_report(EventKind::PromotionHealthy, "p3.dev").await;
    env.fake.apply(APPLICATION, "argocd", "web-dev", application("Synced", "c3", "Missing", ""));
    let missing = env.expect_report(EventKind::PromotionDegraded, "p3.dev").await;
    assert!(matches!(missing, Payload::PromotionDegraded(d) if d.health_status == "Missing"));
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_argo_the_deployment_rollout_of_the_promoted_image_decides() {
    let mut config = argo(None);
    config.stages.insert("dev".into(), StageHealth { mode: Some(HealthMode::Deployment), ..StageHealth::default() });
    let mut env = start(config).await;
    let done = |g: i64| json!({ "observedGeneration": g, "replicas": 2, "updatedReplicas": 2, "availableReplicas": 2 });
    env.fake.apply(DEPLOYMENT, "dev", "web", deployment("v0", 1, done(1)));
    env.committed("p4.dev", "web", "dev", "c4", "v4").await;
    env.watches(1).await;
    assert!(env.next_report(1).await.is_none(), "v0 running says nothing about v4");
    env.fake.apply(DEPLOYMENT, "dev", "web", deployment("v4", 2, done(1)));
    env.expect_report(EventKind::PromotionSynced, "p4.dev").await;
    let rolling = json!({ "observedGeneration": 2, "replicas": 3, "updatedReplicas": 1, "availableReplicas": 2 });
    env.fake.apply(DEPLOYMENT, "dev", "web", deployment("v4", 2, rolling));
    assert!(env.next_report(1).await.is_none(), "half rolled out is not healthy");
    env.fake.apply(DEPLOYMENT, "dev", "web", deployment("v4", 2, done(2)));
    env.expect_report(EventKind::PromotionHealthy, "p4.dev").await;

    // Another app whose rollout stalls.
    env.committed("p5.dev", "api", "dev", "c5", "v5").await;
    let stuck = json!({ "observedGeneration": 1, "conditions": [{
        "type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded",
        "message": "ReplicaSet \"api-5\" has timed out progressing.",
    }]});
    env.fake.apply(DEPLOYMENT, "dev", "api", deployment("v5", 1, stuck));
    env.expect_report(EventKind::PromotionSynced, "p5.dev").await;
    let degraded = env.expect_report(EventKind::PromotionDegraded, "p5.dev").await;
    assert!(matches!(degraded, Payload::PromotionDegraded(d) if d.health_status == "ProgressDeadlineExceeded"));
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_healthy_report_within_the_window_is_degraded_unless_superseded() {
    let mut env = start(argo(Some(2))).await;
    env.fake.apply(APPLICATION, "argocd", "web-dev", application("Synced", "c6", "Progressing", ""));
    env.committed("p6.dev", "web", "dev", "c6", "v6").await;
    env.expect_report(EventKind::PromotionSynced, "p6.dev").await;
    let started = std::time::Instant::now();
    let degraded = env.expect_report(EventKind::PromotionDegraded, "p6.dev").await;
    let Payload::PromotionDegraded(d) = degraded else { panic!("{degraded:?}") };
    assert_eq!(d.health_status, "Timeout");
    assert!(d.message.starts_with("no healthy report within 2s"), "{}", d.message);
    assert!(d.message.contains("health Progressing"), "{}", d.message);
    assert!(started.elapsed() < Duration::from_secs(4), "{:?}", started.elapsed());

    // p7 is replaced by p8 before either is healthy: p7 ends without a verdict.
    env.committed("p7.prod", "web", "prod", "c7", "v7").await;
    env.committed("p8.prod", "web", "prod", "c8", "v8").await;
    env.fake.apply(APPLICATION, "argocd", "web-prod", application("Synced", "c8", "Healthy", ""));
    env.expect_report(EventKind::PromotionSynced, "p8.prod").await;
    env.expect_report(EventKind::PromotionHealthy, "p8.prod").await;
    assert!(env.next_report(4).await.is_none(), "the superseded p7 reports nothing");
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_watch_resumes_from_its_resource_version() {
    let mut env = start(argo(None)).await;
    env.committed("p9.dev", "web", "dev", "c9", "v9").await;
    env.watches(1).await;
    let rv = env.fake.apply(APPLICATION, "argocd", "web-dev", application("Synced", "c9", "Progressing", ""));
    env.expect_report(EventKind::PromotionSynced, "p9.dev").await;
    env.fake.drop_watches();
    let watches = env.watches(2).await;
    assert!(watches[1].contains(&format!("resourceVersion={rv}")), "resumed where it was: {watches:?}");
    env.fake.apply(APPLICATION, "argocd", "web-dev", application("Synced", "c9", "Healthy", ""));
    env.expect_report(EventKind::PromotionHealthy, "p9.dev").await;
    let lists = env.fake.requests().iter().filter(|r| !r.contains("watch=")).count();
    assert_eq!(lists, 1, "no re-list: {:?}", env.fake.requests());
    env.stop().await;
}
