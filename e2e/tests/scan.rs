//! The supply-chain gate across the four service binaries with the quickstart's configs and a
//! catalog whose stages carry scan policies (dev: warnings only; prod: CRITICAL blocks,
//! reports at most a day old): the real buildah build gets a Syft SBOM in the registry and a
//! scan by the stand-in scanner (it prints Trivy's debian-buster report: one CRITICAL), dev
//! and staging promote, prod is blocked naming the CVE even once approved; when the report is
//! older than a day (aged in the promoter's table, as a day passing would), the promoter asks
//! for a re-scan, the real builder scans the same digest again (the stand-in now prints a
//! report without CRITICAL findings) and the new report lets prod go.

use std::path::Path;
use std::time::Duration;

use slipway_e2e::admin::{Client, client, connect};
use slipway_e2e::demo::{APP, WEBHOOK_SECRET, git};
use slipway_e2e::webhook::{self, Push};
use slipway_e2e::{Database, Demo, Overrides, binaries, inspect};
use slipway_proto::v1;

const TIMEOUT: Duration = Duration::from_secs(180);

fn fixture(name: &str) -> String {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../services/builder/tests/fixtures/trivy");
    dir.join(name).display().to_string()
}

/// The one stand-in: prints the Trivy report named in `<dir>/report`.
fn scanner(dir: &Path) -> String {
    let path = dir.join("trivy-standin");
    let script = format!("#!/bin/sh\ncat \"$(cat {}/report)\"\n", dir.display());
    std::fs::write(&path, script).expect("write stand-in");
    let status = std::process::Command::new("chmod").arg("+x").arg(&path).status().expect("chmod");
    assert!(status.success());
    path.display().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prod_waits_for_a_fresh_clean_scan_of_the_same_digest() {
    let demo = Demo::start(Database::Shared).await;
    demo.write_configs("");
    // The quickstart's catalog with scan policies in its stages, before the services start.
    let work = tempfile::tempdir().expect("tmp");
    let dir = work.path();
    git(dir, &["clone", "-q", &demo.git.repo_path("demo/gitops").display().to_string(), "."]);
    let catalog = std::fs::read_to_string(dir.join("slipway.yaml")).expect("catalog");
    let catalog =
        catalog.replace("{ name: dev, policy: auto }", "{ name: dev, policy: auto, scan: { warn: true } }").replace(
            "{ name: prod, policy: approval, approvers: [demo] }",
            "{ name: prod, policy: approval, approvers: [demo], scan: { block: [CRITICAL], max_age_hours: 24 } }",
        );
    assert!(catalog.contains("max_age_hours"), "the quickstart's catalog changed shape: {catalog}");
    std::fs::write(dir.join("slipway.yaml"), catalog).expect("write catalog");
    git(dir, &["add", "-A"]);
    git(dir, &["-c", "user.name=t", "-c", "user.email=t@e.invalid", "commit", "-q", "-m", "catalog: scan policies"]);
    git(dir, &["push", "-q", "origin", "HEAD:refs/heads/main"]);

    let standin = tempfile::tempdir().expect("stand-in");
    std::fs::write(standin.path().join("report"), fixture("debian-buster.json")).expect("report");
    let command = scanner(standin.path());
    let builder = [("SLIPWAY_SCAN__SCANNER", "trivy"), ("SLIPWAY_SCAN__COMMAND", command.as_str())];
    let services = demo.start_services(binaries!(), Overrides { all: &[], builder: &builder }).await;

    let added = ["apps/hello/Dockerfile", "apps/hello/hello.txt"];
    let push = Push::new(&demo.app_url, &"0".repeat(40), &demo.app_sha, "feat(hello): the demo app", &added, &[]);
    let status = webhook::send(&webhook::client(), &demo.webhook_url, WEBHOOK_SECRET, &push).await;
    assert!(matches!(status, Ok(200..=299)), "ingest refused the webhook: {status:?}\n{}", services.tails(30));
    let sha = demo.app_sha.clone();
    services.wait_until("the dev commit", TIMEOUT, || async { demo.overlay_tag("dev") == sha }).await;

    // The build's events: the SBOM on build.succeeded, served by the registry; the scan.
    let mut log = inspect::EventLog::connect(&demo.nats.url()).await;
    let built = log.wait_for("build.succeeded", &sha, TIMEOUT).await.expect("build.succeeded");
    let digest = built.body["image"]["digest"].as_str().expect("digest").to_owned();
    let sbom = built.body["sbomDigest"].as_str().expect("SBOM digest on build.succeeded").to_owned();
    let tags = inspect::registry_tags(&demo.registry.url(), "demo/hello").await;
    assert!(tags.contains(&format!("{}.sbom", digest.replace(':', "-"))), "{tags:?}");
    let scanned = log.events.iter().find(|e| e.kind() == "build.scanned").expect("build.scanned").body.clone();
    assert_eq!(
        (scanned["sbomDigest"].as_str(), scanned["image"]["digest"].as_str()),
        (Some(sbom.as_str()), Some(digest.as_str()))
    );

    // Staging (no policy) by approval; prod approved too, but blocked naming the CVE.
    let channel = connect(&demo.admin_api).await;
    let mut api = client(&channel);
    let approve = |stage: &str| v1::ApproveRequest { app: APP.into(), stage: stage.into(), ..Default::default() };
    wait_stage(&mut api, "staging", |s| s.approvals_required > 0).await;
    api.approve(approve("staging")).await.expect("approve staging");
    services.wait_until("the staging commit", TIMEOUT, || async { demo.overlay_tag("staging") == sha }).await;
    wait_stage(&mut api, "prod", |s| s.approvals_required > 0).await;
    api.approve(approve("prod")).await.expect("approve prod");
    let prod = wait_stage(&mut api, "prod", |s| s.waiting_on.starts_with("scan: blocked by")).await;
    assert!(prod.waiting_on.contains("CVE-2019-18224 (CRITICAL libidn2-0"), "{prod:?}");
    assert_eq!(demo.overlay_tag("prod"), "v0");

    // A day later (the report aged in the promoter's table): a re-scan of the same digest, by the
    // real builder; its report has no CRITICAL finding, so prod goes.
    std::fs::write(standin.path().join("report"), fixture("alpine-310.json")).expect("report");
    let pool = sqlx::PgPool::connect(&demo.db_url).await.expect("database");
    let aged = sqlx::query("UPDATE promoter.scans SET scanned_at = scanned_at - interval '2 days' WHERE digest = $1")
        .bind(&digest)
        .execute(&pool)
        .await
        .expect("age the report")
        .rows_affected();
    assert_eq!(aged, 1);
    services.wait_until("the prod commit", TIMEOUT, || async { demo.overlay_tag("prod") == sha }).await;
    log.refresh().await.expect("events");
    // (dev may have asked too, had it decided the build before its report arrived.)
    let requested: Vec<_> =
        log.events.iter().filter(|e| e.kind() == "scan.requested" && e.body["stage"] == "prod").collect();
    assert_eq!(requested.len(), 1, "{requested:#?}");
    assert_eq!(requested[0].body["reason"], "stale");
    let request_id = requested[0].body["requestId"].as_str().expect("request id");
    let rescanned = log.events.iter().find(|e| e.kind() == "build.scanned" && e.body["requestId"] == request_id);
    let rescanned = rescanned.expect("the builder answered the re-scan");
    assert_eq!(rescanned.body["image"]["digest"], digest.as_str());
    assert_eq!(rescanned.body["counts"], serde_json::json!([{ "severity": "MEDIUM", "total": 4, "fixable": 4 }]));
    services.stop().await;
}

async fn wait_stage(api: &mut Client, stage: &str, done: impl Fn(&v1::StageStatus) -> bool) -> v1::StageStatus {
    let deadline = tokio::time::Instant::now() + TIMEOUT;
    loop {
        let apps = api.list_apps(v1::ListAppsRequest { app: APP.into(), ..Default::default() }).await;
        let found =
            apps.ok().and_then(|a| a.into_inner().apps.into_iter().flat_map(|a| a.stages).find(|s| s.stage == stage));
        if let Some(s) = found.filter(|s| done(s)) {
            return s;
        }
        assert!(tokio::time::Instant::now() < deadline, "{stage} never got there");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
