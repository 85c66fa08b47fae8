//! The supply-chain gate in the promoter, against real NATS (stream, catalog KV) and
//! PostgreSQL and a git daemon, with the scan policy in the app catalog's stages: dev passes
//! with a warning, prod is blocked naming the CVE (in `/api/status` too), an allow entry with a
//! future expiry unblocks and an expired one blocks again; a report older than
//! `max_age_hours` makes the promoter ask for a re-scan (`scan.requested`) and the new report
//! decides; a failed scan blocks as `on_scan_error: block` says.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::running::Running;
use common::{remote_show, seed_repo};
use serde_json::Value;
use slipway_mesh::v1;
use slipway_promoter::Config;
use slipway_runtime::catalog::CatalogStore;
use slipway_runtime::config::{DatabaseConfig, NatsConfig, Secret};
use slipway_testkit::{GitDaemon, NatsServer};
use sqlx::{PgPool, Row};

const APP: &str = "sapp";

/// dev: warnings only; prod: CRITICAL blocks, fixable HIGH blocks, reports at most 24 h old.
fn catalog(gitops: &str, allow: &str) -> slipway_catalog::Catalog {
    let yaml = format!(
        "admins: [root]\npipelines:\n  guarded:\n    stages:\n      \
         - {{ name: dev, policy: auto, scan: {{ warn: true }} }}\n      \
         - name: prod\n        policy: auto\n        \
         scan: {{ block: [CRITICAL], block_fixable: [HIGH], max_age_hours: 24, allow: [{allow}] }}\n\
         apps:\n  - name: {APP}\n    source: {{ repository: acme/mono, paths: [\"apps/{APP}/**\"] }}\n    \
         image: registry.local/acme/{APP}\n    \
         deploy: {{ repository: \"{gitops}\", path: \"apps/{{app}}/{{stage}}/kustomization.yaml\", kind: kustomize }}\n    \
         pipeline: guarded\n"
    );
    let files = BTreeMap::from([("slipway.yaml".to_owned(), yaml)]);
    slipway_catalog::build(&files, "slipway.yaml", &|_| None).expect("valid catalog")
}

fn digest(n: u8) -> String {
    format!("sha256:{}", format!("{n:x}").repeat(64).chars().take(64).collect::<String>())
}

fn image(tag: &str, n: u8) -> v1::ImageRef {
    v1::ImageRef { repository: format!("registry.local/acme/{APP}"), tag: tag.into(), digest: digest(n) }
}

fn timestamp(at: chrono::DateTime<chrono::Utc>) -> Option<pbjson_types::Timestamp> {
    Some(pbjson_types::Timestamp { seconds: at.timestamp(), nanos: 0 })
}

/// debian-buster.json as the builder reports it: a fixable CRITICAL and a LOW.
fn buster(tag: &str, n: u8, hours_ago: i64) -> v1::BuildScanned {
    let finding = |id: &str, severity: &str, fixed: &str| v1::Finding {
        id: id.into(),
        package: "libidn2-0".into(),
        installed_version: "2.0.5-1".into(),
        fixed_version: fixed.into(),
        severity: severity.into(),
        link: format!("https://avd.aquasec.com/nvd/{}", id.to_lowercase()),
    };
    v1::BuildScanned {
        build_id: format!("build-{tag}"),
        app: APP.into(),
        image: Some(image(tag, n)),
        scanner: "trivy".into(),
        scanner_version: "dev".into(),
        counts: vec![
            v1::SeverityCount { severity: "CRITICAL".into(), total: 1, fixable: 1 },
            v1::SeverityCount { severity: "LOW".into(), total: 1, fixable: 0 },
        ],
        findings: vec![finding("CVE-2019-18224", "CRITICAL", "2.0.5-1+deb10u1"), finding("CVE-2019-18276", "LOW", "")],
        finding_count: 2,
        scanned_at: timestamp(chrono::Utc::now() - chrono::Duration::hours(hours_ago)),
        ..Default::default()
    }
}

struct Harness {
    running: Running,
    pool: PgPool,
    daemon: GitDaemon,
    gitops: String,
}

impl Harness {
    async fn publish<E: slipway_mesh::EventPayload>(&self, event: &E) {
        self.running.publisher.publish(event).await.expect("publish");
    }

    async fn build(&self, tag: &str, n: u8) {
        self.publish(&v1::BuildSucceeded {
            build_id: format!("build-{tag}"),
            app: APP.into(),
            source: Some(v1::SourceRef {
                repository: "acme/mono".into(),
                commit_sha: format!("{n:0>40}"),
                r#ref: "refs/heads/main".into(),
                author: "dana".into(),
            }),
            image: Some(image(tag, n)),
            tags: vec![tag.into()],
            ..Default::default()
        })
        .await;
    }

    async fn set_allow(&self, allow: &str) {
        let store = CatalogStore::open(&self.running.js, 1).await.expect("store");
        store.publish("test", "c", &catalog(&self.gitops, allow)).await.expect("publish catalog");
    }

    /// (id, state, waiting_on) of the newest promotion of `tag` into `stage`.
    async fn promotion(&self, stage: &str, tag: &str) -> Option<(String, String, String)> {
        let row = sqlx::query(
            "SELECT id, state, waiting_on FROM promotions WHERE app = $1 AND stage = $2 AND image_tag = $3 \
             ORDER BY created_at DESC, id DESC LIMIT 1",
        )
        .bind(APP)
        .bind(stage)
        .bind(tag)
        .fetch_optional(&self.pool)
        .await
        .expect("query")?;
        Some((row.get("id"), row.get("state"), row.get("waiting_on")))
    }

    /// Waits until `tag`'s promotion into `stage` is in `state` and its waiting_on satisfies `says`.
    async fn wait(&self, stage: &str, tag: &str, state: &str, says: impl Fn(&str) -> bool) -> (String, String) {
        for _ in 0..400 {
            if let Some((id, s, waiting)) = self.promotion(stage, tag).await
                && s == state
                && says(&waiting)
            {
                return (id, waiting);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("{tag} in {stage} never {state} as expected: {:?}", self.promotion(stage, tag).await);
    }

    async fn healthy(&self, stage: &str, tag: &str) {
        let (id, _) = self.wait(stage, tag, "committed", |_| true).await;
        self.publish(&v1::PromotionHealthy { promotion_id: id, app: APP.into(), stage: stage.into(), image: None })
            .await;
        self.wait(stage, tag, "healthy", |_| true).await;
    }

    async fn audit_actions(&self) -> Vec<(String, String)> {
        sqlx::query("SELECT action, reason FROM audit_log WHERE app = $1 ORDER BY id")
            .bind(APP)
            .fetch_all(&self.pool)
            .await
            .expect("audit")
            .iter()
            .map(|r| (r.get("action"), r.get("reason")))
            .collect()
    }

    async fn scan_requests(&self) -> Vec<Value> {
        let messages = slipway_testkit::stream_messages(&self.running.js, "SLIPWAY").await.expect("stream");
        (messages.iter())
            .filter(|m| m.subject.as_str() == format!("slipway.scan.requested.{APP}.prod"))
            .map(|m| serde_json::from_slice(&m.payload).expect("json"))
            .collect()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prod_is_gated_by_the_scan_policy_of_the_catalog() {
    let nats = NatsServer::start().await.expect("nats");
    let daemon = GitDaemon::start().await.expect("git daemon");
    let db = slipway_testkit::shared_database().await.expect("database");
    let seed = |stage: &str| format!("images:\n  - name: registry.local/acme/{APP}\n    newTag: v0 # {stage}\n");
    let files: Vec<(String, String)> =
        ["dev", "prod"].iter().map(|stage| (format!("apps/{APP}/{stage}/kustomization.yaml"), seed(stage))).collect();
    let gitops = seed_repo(&daemon, "acme/gitops", &files);
    let js = async_nats::jetstream::new(async_nats::connect(nats.url()).await.expect("connect"));
    CatalogStore::open(&js, 1).await.expect("store").publish("test", "c1", &catalog(&gitops, "")).await.expect("c1");

    let work = tempfile::tempdir().expect("work");
    let mut config = Config {
        nats: NatsConfig { url: nats.url(), ack_wait_secs: 5, ..NatsConfig::default() },
        database: DatabaseConfig { url: Some(Secret::new(db)), ..DatabaseConfig::with_schema("promoter") },
        ..Config::default()
    };
    config.pipeline.tick_secs = 1;
    config.gitops.work_dir = work.path().to_owned();
    config.catalog.enabled = true;
    let running = Running::start(&config, "/slipway/test/scan").await;
    let h = Harness { pool: running.pool.clone(), running, daemon, gitops };

    // v1 with debian-buster's findings: dev promotes with a warning; prod is blocked naming the CVE.
    h.publish(&buster("v1", 1, 0)).await;
    h.build("v1", 1).await;
    h.healthy("dev", "v1").await;
    let warned = h.audit_actions().await.into_iter().find(|(action, _)| action == "scan-warning");
    let warned = warned.expect("dev's warning is audited");
    assert!(warned.1.contains("CVE-2019-18224 (CRITICAL libidn2-0 2.0.5-1, fixed in 2.0.5-1+deb10u1)"), "{warned:?}");
    let (_, waiting) = h.wait("prod", "v1", "pending", |w| w.starts_with("scan: blocked by")).await;
    assert!(waiting.contains("CVE-2019-18224") && waiting.contains("scan.allow"), "{waiting}");
    assert!(!waiting.contains("CVE-2019-18276"), "LOW does not block: {waiting}");
    let status: Value = reqwest::get(format!("http://{}/api/status", h.running.admin))
        .await
        .expect("status")
        .json()
        .await
        .expect("json");
    let app = status["apps"].as_array().and_then(|a| a.iter().find(|a| a["app"] == APP)).expect("app").clone();
    let prod = app["stages"].as_array().and_then(|s| s.iter().find(|s| s["stage"] == "prod")).expect("prod").clone();
    assert!(prod["waitingOn"].as_str().is_some_and(|w| w.contains("CVE-2019-18224")), "{prod}");

    // Allowed with a future expiry: prod goes.
    h.set_allow("{ id: CVE-2019-18224, reason: not reachable, expires: \"2099-12-31\" }").await;
    h.wait("prod", "v1", "committed", |_| true).await;
    let written = remote_show(&h.daemon, "acme/gitops", "main", &format!("apps/{APP}/prod/kustomization.yaml"));
    assert!(written.contains("newTag: v1"), "{written}");

    // v2, the same finding, the entry expired: blocked again, and the label says it expired.
    h.set_allow("{ id: CVE-2019-18224, reason: not reachable, expires: \"2020-01-31\" }").await;
    h.publish(&buster("v2", 2, 0)).await;
    h.build("v2", 2).await;
    h.healthy("dev", "v2").await;
    let (_, waiting) = h.wait("prod", "v2", "pending", |w| w.starts_with("scan: blocked by")).await;
    assert!(waiting.contains("the allow entry for CVE-2019-18224 expired on 2020-01-31"), "{waiting}");

    // v3, scanned clean 48 hours ago: prod asks for a re-scan of the digest and waits; the new
    // report (a CRITICAL published since) decides.
    let mut old = buster("v3", 3, 48);
    (old.counts, old.findings, old.finding_count) = (Vec::new(), Vec::new(), 0);
    h.publish(&old).await;
    h.build("v3", 3).await;
    h.healthy("dev", "v3").await;
    h.wait("prod", "v3", "pending", |w| w.contains("older than 24h") && w.contains("re-scan requested")).await;
    let mut request = Value::Null;
    for _ in 0..100 {
        if let Some(r) = h.scan_requests().await.into_iter().find(|r| r["image"]["tag"] == "v3") {
            request = r;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        (request["reason"].as_str(), request["image"]["digest"].as_str()),
        (Some("stale"), Some(digest(3).as_str()))
    );
    let mut fresh = buster("v3", 3, 0);
    fresh.request_id = request["requestId"].as_str().expect("request id").to_owned();
    h.publish(&fresh).await;
    let (_, waiting) = h.wait("prod", "v3", "pending", |w| w.starts_with("scan: blocked by")).await;
    assert!(waiting.contains("CVE-2019-18224"), "{waiting}");
    assert_eq!(h.scan_requests().await.iter().filter(|r| r["image"]["tag"] == "v3").count(), 1, "asked once");

    // v4: the scanner failed; on_scan_error is block (the default).
    h.publish(&v1::BuildScanFailed {
        build_id: "build-v4".into(),
        app: APP.into(),
        image: Some(image("v4", 4)),
        scanner: "trivy".into(),
        reason: "timeout".into(),
        message: "trivy gave no result within 300s".into(),
        failed_at: timestamp(chrono::Utc::now()),
        ..Default::default()
    })
    .await;
    h.build("v4", 4).await;
    // dev is warn-only and its on_scan_error is block too: a failed scan is never a silent pass.
    let (_, waiting) = h.wait("dev", "v4", "pending", |w| w.contains("failed (timeout")).await;
    assert!(waiting.ends_with("on_scan_error: block"), "{waiting}");

    let metrics = reqwest::get(format!("http://{}/metrics", h.running.admin)).await.expect("metrics");
    let metrics = metrics.text().await.expect("text");
    assert!(metrics.contains("slipway_promotions_blocked_by_scan_total"), "{metrics}");
    h.running.stop().await;
}
