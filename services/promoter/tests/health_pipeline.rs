//! The pipeline with its health gate wired in: real NATS, PostgreSQL and git daemon, and the
//! fake Kubernetes API server standing in for Argo CD. A build goes to dev by itself; the dev
//! Application syncs the promoter's own commit and turns healthy, which the health watcher
//! inside the service reports; only then does staging wait for its approval. A later version
//! that degrades in dev is rolled back by the pipeline.

mod common;
mod health_fake;

use std::time::Duration;

use common::running::Running;
use common::writer::{self, IMAGE};
use common::{remote_head, seed_repo, stage_files};

use health_fake::{APPLICATION, FakeKube};
use serde_json::json;
use slipway_promoter::Config;
use slipway_promoter::health::{HealthMode, config::StageHealth};
use slipway_runtime::jetstream::Publisher;
use slipway_testkit::{GitDaemon, NatsServer};
use sqlx::{PgPool, Row};

fn seed_gitops(daemon: &GitDaemon) -> String {
    let text = |_: &str| format!("images:\n  - name: {IMAGE}\n    newTag: v0\n");
    seed_repo(daemon, "acme/gitops", &stage_files(&["dev", "staging"], text))
}

/// The commit at the tip of the GitOps branch: what Argo CD would sync.
fn gitops_head(daemon: &GitDaemon) -> String {
    remote_head(daemon, "acme/gitops", "main")
}

fn config(nats: &NatsServer, db: &str, gitops: &str, work: &std::path::Path, kube_url: &str) -> Config {
    let stages = [
        json!({ "name": "dev", "policy": "auto", "auto_rollback": true }),
        json!({ "name": "staging", "policy": "approval", "approvers": ["bob"] }),
    ];
    let mut config = writer::config(&nats.url(), db, gitops, work, &stages);
    config.health.kube_url = Some(kube_url.to_owned());
    config.health.stages.insert("dev".into(), StageHealth { mode: Some(HealthMode::ArgoCd), ..StageHealth::default() });
    config
}

async fn build(publisher: &Publisher, tag: &str) {
    let event = writer::build(tag, &format!("{:0>40}", tag.trim_start_matches('v')));
    publisher.publish(&event).await.expect("publish build");
}

/// Waits until `stage` runs `tag` in `state` (the promotion `stage_versions` points at).
async fn wait_stage(pool: &PgPool, stage: &str, tag: &str, state: &str) {
    let sql = "SELECT p.state, p.image_tag FROM promotions p JOIN stage_versions s ON s.desired_promotion = p.id \
               WHERE s.app = 'writer' AND s.stage = $1";
    let mut last = None;
    for _ in 0..300 {
        if let Some(row) = sqlx::query(sql).bind(stage).fetch_optional(pool).await.expect("query") {
            let seen: (String, String) = (row.get("state"), row.get("image_tag"));
            if seen.0 == state && seen.1 == tag {
                return;
            }
            last = Some(seen);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{stage} never ran {tag} as {state}: {last:?}");
}

async fn pending(pool: &PgPool, stage: &str) -> Option<(String, String)> {
    let sql = "SELECT image_tag, waiting_on FROM promotions WHERE app = 'writer' AND stage = $1 AND state = 'pending'";
    let row = sqlx::query(sql).bind(stage).fetch_optional(pool).await.expect("query")?;
    Some((row.get("image_tag"), row.get("waiting_on")))
}

/// What `stage` waits on (tag, reason), once it waits; fails after 5 s.
async fn wait_pending(pool: &PgPool, stage: &str) -> (String, String) {
    for _ in 0..100 {
        if let Some(waiting) = pending(pool, stage).await {
            return waiting;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{stage} does not wait for anything after 5 s");
}

fn application(revision: &str, health: &str) -> serde_json::Value {
    json!({ "status": { "sync": { "status": "Synced", "revision": revision }, "health": { "status": health } } })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dev_health_comes_from_argo_cd_and_gates_staging() {
    let nats = NatsServer::start().await.expect("nats");
    let daemon = GitDaemon::start().await.expect("git daemon");
    let db = slipway_testkit::shared_database().await.expect("database");
    let fake = FakeKube::start().await;
    let gitops = seed_gitops(&daemon);
    let work = tempfile::tempdir().expect("work dir");
    let config = config(&nats, &db, &gitops, work.path(), &fake.url);
    let service = Running::start(&config, "/slipway/test/local").await;
    let (admin, pool, publisher) = (format!("http://{}", service.admin), &service.pool, &service.publisher);
    fake.apply(APPLICATION, "argocd", "writer-dev", application("seed", "Healthy"));

    // v1 lands in dev; until Argo CD has synced that commit and reports it healthy, staging waits.
    build(publisher, "v1").await;
    wait_stage(pool, "dev", "v1", "committed").await;
    let v1_commit = gitops_head(&daemon);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(pending(pool, "staging").await, None, "the old revision's health does not count");
    fake.apply(APPLICATION, "argocd", "writer-dev", application(&v1_commit, "Progressing"));
    wait_stage(pool, "dev", "v1", "synced").await;
    fake.apply(APPLICATION, "argocd", "writer-dev", application(&v1_commit, "Healthy"));
    wait_stage(pool, "dev", "v1", "healthy").await;
    let (tag, waiting_on) = wait_pending(pool, "staging").await;
    assert_eq!(tag, "v1");
    assert!(waiting_on.starts_with("approvals: 0/1"), "{waiting_on}");

    // v2 syncs and degrades in dev: the pipeline writes v1 back, and Argo CD's sync of that
    // rollback commit turning healthy is reported too.
    build(publisher, "v2").await;
    wait_stage(pool, "dev", "v2", "committed").await;
    let v2_commit = gitops_head(&daemon);
    fake.apply(APPLICATION, "argocd", "writer-dev", application(&v2_commit, "Degraded"));
    wait_stage(pool, "dev", "v1", "committed").await;
    let rollback_commit = gitops_head(&daemon);
    assert_ne!(rollback_commit, v2_commit);
    fake.apply(APPLICATION, "argocd", "writer-dev", application(&rollback_commit, "Healthy"));
    wait_stage(pool, "dev", "v1", "healthy").await;

    // What happened shows in the promoter's metrics.
    let metrics = reqwest::get(format!("{admin}/metrics")).await.expect("GET").text().await.expect("text");
    for name in [
        "slipway_promoter_request_to_push_seconds_count{outcome=\"pushed\"}",
        "slipway_promoter_gitops_commits_total",
        "slipway_promoter_commit_to_healthy_seconds",
        "slipway_promoter_approvals_waiting",
    ] {
        assert!(metrics.contains(name), "{name} missing from /metrics:\n{metrics}");
    }

    service.stop().await;
}

/// Mode `committed` (no cluster to read, as in the quickstart): the pushed dev commit is
/// reported synced and healthy by the promoter itself, so staging then waits for its approval.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn committed_mode_counts_the_pushed_commit_as_healthy() {
    let nats = NatsServer::start().await.expect("nats");
    let daemon = GitDaemon::start().await.expect("git daemon");
    let db = slipway_testkit::shared_database().await.expect("database");
    let gitops = seed_gitops(&daemon);
    let work = tempfile::tempdir().expect("work dir");
    let mut config = config(&nats, &db, &gitops, work.path(), "http://127.0.0.1:9");
    config.health.kube_url = None;
    config.health.stages.clear();
    config.health.mode = HealthMode::Committed;
    let service = Running::start(&config, "/slipway/test/local").await;
    let (pool, publisher) = (&service.pool, &service.publisher);

    build(publisher, "v1").await;
    wait_stage(pool, "dev", "v1", "healthy").await;
    let (tag, waiting_on) = wait_pending(pool, "staging").await;
    assert_eq!(tag, "v1");
    assert!(waiting_on.starts_with("approvals: 0/1"), "{waiting_on}");
    // Nothing reports staging healthy before its approval: only dev was committed.
    assert_eq!(pending(pool, "dev").await, None);

    service.stop().await;
}
