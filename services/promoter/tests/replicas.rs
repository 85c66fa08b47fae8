//! Two promoter replicas on one NATS and one database, as `deploy/` runs them: both tick
//! every second, both consume the shared durables (decisions, write-backs, health), each
//! with its own clone of the GitOps repository. Soak times end on the tickers of both at
//! once; every stage still gets each version exactly once: one `promotion.requested`, one
//! `promotion.committed`, one commit.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::running::Running;
use common::writer::{self, IMAGE};
use common::{git, git_dir, seed_repo, stage_files};
use serde_json::json;
use slipway_mesh::v1::event::Payload;
use slipway_promoter::health::HealthMode;
use slipway_testkit::{GitDaemon, NatsServer};

/// (kind, stage, tag) → how many such events the stream holds.
async fn promotion_events(js: &async_nats::jetstream::Context) -> BTreeMap<(String, String, String), usize> {
    let mut counts = BTreeMap::new();
    for payload in common::stream_payloads(js, "slipway.promotion.").await {
        let key = match payload {
            Payload::PromotionRequested(p) => ("requested", p.stage, p.image.map(|i| i.tag)),
            Payload::PromotionCommitted(p) => ("committed", p.stage, p.image.map(|i| i.tag)),
            _ => continue,
        };
        *counts.entry((key.0.to_owned(), key.1, key.2.unwrap_or_default())).or_default() += 1;
    }
    counts
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_promote_each_version_once_per_stage() {
    let nats = NatsServer::start().await.expect("nats");
    let daemon = GitDaemon::start().await.expect("git daemon");
    let db = slipway_testkit::shared_database().await.expect("database");
    let text = |_: &str| format!("images:\n  - name: {IMAGE}\n    newTag: v0\n");
    let gitops = seed_repo(&daemon, "acme/gitops", &stage_files(&["dev", "staging", "prod"], text));
    let stages = [
        json!({ "name": "dev", "policy": "auto" }),
        json!({ "name": "staging", "policy": "auto", "soak_secs": 2 }),
        json!({ "name": "prod", "policy": "auto", "soak_secs": 1 }),
    ];
    let (work_a, work_b) = (tempfile::tempdir().expect("work"), tempfile::tempdir().expect("work"));
    let mut config = writer::config(&nats.url(), &db, &gitops, work_a.path(), &stages);
    config.health.mode = HealthMode::Committed;
    let a = Running::start(&config, "/slipway/test/local").await;
    config.gitops.work_dir = work_b.path().to_owned();
    let b = Running::start(&config, "/slipway/test/other").await;

    for tag in ["v1", "v2", "v3"] {
        let event = writer::build(tag, &format!("{:0>40}", tag.trim_start_matches('v')));
        a.publisher.publish(&event).await.expect("publish build");
        writer::wait_promotion(&a.pool, "prod", tag, "healthy").await;
    }
    // Anything a slow replica might still do has had a tick to do it.
    tokio::time::sleep(Duration::from_secs(2)).await;

    let counts = promotion_events(&a.js).await;
    for tag in ["v1", "v2", "v3"] {
        for stage in ["dev", "staging", "prod"] {
            for kind in ["requested", "committed"] {
                let n = counts.get(&(kind.to_owned(), stage.to_owned(), tag.to_owned())).copied().unwrap_or(0);
                assert_eq!(n, 1, "promotion.{kind} of {tag} to {stage}: {counts:?}");
            }
        }
    }
    // One commit per (stage, version) on the branch, and none pushed twice.
    let log = git(&["--git-dir", &git_dir(&daemon, "acme/gitops"), "log", "--format=%s", "main"]);
    let commits = log.lines().filter(|l| !l.starts_with("seed")).count();
    assert!(commits <= 9, "at most one commit per stage and version (group commits may join them): {log}");
    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM promotions WHERE app = 'writer'")
        .fetch_one(&a.pool)
        .await
        .expect("rows");
    assert_eq!(rows, 9, "three versions × three stages");

    a.stop().await;
    b.stop().await;
}
