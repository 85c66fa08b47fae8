//! `health.mode = "rollout"` through the whole promoter: real NATS, PostgreSQL and git daemon,
//! and the test kit's Kubernetes API server holding an Argo Rollouts `Rollout` that the test
//! moves as the Rollouts controller would. A version goes through the canary steps (the stage
//! stays unjudged) to Healthy, and staging opens; the next one goes Degraded and is rolled back.

mod common;
mod health_fake;

use std::time::Duration;

use common::running::Running;
use common::writer::{self, IMAGE};
use common::{seed_repo, stage_files};
use health_fake::{FakeKube, ROLLOUT};
use serde_json::{Value, json};
use slipway_promoter::health::{HealthMode, config::StageHealth};
use slipway_testkit::{GitDaemon, NatsServer};
use sqlx::{PgPool, Row};

/// The `writer` Rollout in namespace `dev` running `tag`, with three canary steps, as the
/// controller reports it.
fn rollout(tag: &str, generation: u64, status: Value) -> Value {
    json!({
        "metadata": { "generation": generation },
        "spec": {
            "template": { "spec": { "containers": [{ "name": "writer", "image": format!("{IMAGE}:{tag}") }] } },
            "strategy": { "canary": { "steps": [{ "setWeight": 20 }, { "pause": {} }, { "setWeight": 60 }] } },
        },
        "status": status,
    })
}

async fn stage_state(pool: &PgPool, stage: &str) -> Option<(String, String)> {
    let sql = "SELECT p.state, p.image_tag FROM promotions p JOIN stage_versions s ON s.desired_promotion = p.id \
               WHERE s.app = 'writer' AND s.stage = $1";
    let row = sqlx::query(sql).bind(stage).fetch_optional(pool).await.expect("query")?;
    Some((row.get("state"), row.get("image_tag")))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rollout_is_healthy_after_its_canary_steps_and_degraded_is_rolled_back() {
    let nats = NatsServer::start().await.expect("nats");
    let daemon = GitDaemon::start().await.expect("git daemon");
    let db = slipway_testkit::shared_database().await.expect("database");
    let fake = FakeKube::start().await;
    let text = |_: &str| format!("images:\n  - name: {IMAGE}\n    newTag: v0\n");
    let gitops = seed_repo(&daemon, "acme/gitops", &stage_files(&["dev", "staging"], text));
    let work = tempfile::tempdir().expect("work dir");
    let stages = [
        json!({ "name": "dev", "policy": "auto", "auto_rollback": true }),
        json!({ "name": "staging", "policy": "approval", "approvers": ["bob"] }),
    ];
    let mut config = writer::config(&nats.url(), &db, &gitops, work.path(), &stages);
    config.health.kube_url = Some(fake.url.clone());
    config
        .health
        .stages
        .insert("dev".into(), StageHealth { mode: Some(HealthMode::Rollout), ..StageHealth::default() });
    let service = Running::start(&config, "/slipway/test/local").await;
    let (pool, publisher) = (&service.pool, &service.publisher);
    let healthy_at = |tag: &str, generation| {
        rollout(
            tag,
            generation,
            json!({ "phase": "Healthy", "observedGeneration": generation.to_string(), "stableRS": "abc", "currentPodHash": "abc" }),
        )
    };
    fake.apply(ROLLOUT, "dev", "writer", healthy_at("v0", 1));

    // v1: the canary at step 1 of 3, 20% of the traffic, is not healthy yet; then it is.
    publisher.publish(&writer::build("v1", &format!("{:0>40}", "1"))).await.expect("build");
    writer::wait_promotion(pool, "dev", "v1", "committed").await;
    let canary = json!({ "phase": "Paused", "observedGeneration": "2", "currentStepIndex": 1, "stableRS": "abc",
                         "currentPodHash": "def", "canary": { "weights": { "canary": { "weight": 20 } } } });
    fake.apply(ROLLOUT, "dev", "writer", rollout("v1", 2, canary));
    tokio::time::sleep(Duration::from_millis(800)).await;
    let (state, _) = stage_state(pool, "dev").await.expect("dev");
    assert!(state == "committed" || state == "synced", "a canary at step 1/3 is not healthy: {state}");
    let opened: i64 = sqlx::query_scalar("SELECT count(*) FROM promotions WHERE app = 'writer' AND stage = 'staging'")
        .fetch_one(pool)
        .await
        .expect("query");
    assert_eq!(opened, 0, "staging waits for dev");
    let stepped = json!({ "phase": "Progressing", "observedGeneration": "2", "currentStepIndex": 2, "stableRS": "abc",
                          "currentPodHash": "def", "canary": { "weights": { "canary": { "weight": 60 } } } });
    fake.apply(ROLLOUT, "dev", "writer", rollout("v1", 2, stepped));
    let done = json!({ "phase": "Healthy", "observedGeneration": "2", "currentStepIndex": 3, "stableRS": "def",
                       "currentPodHash": "def" });
    fake.apply(ROLLOUT, "dev", "writer", rollout("v1", 2, done));
    writer::wait_promotion(pool, "dev", "v1", "healthy").await;
    let mut waiting = None;
    for _ in 0..100 {
        waiting = sqlx::query_scalar::<_, String>(
            "SELECT image_tag FROM promotions WHERE app = 'writer' AND stage = 'staging' AND state = 'pending'",
        )
        .fetch_optional(pool)
        .await
        .expect("query");
        if waiting.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(waiting.as_deref(), Some("v1"), "staging waits for its approval with v1");

    // v2 goes Degraded (its progress deadline passed): dev goes back to v1 and is held.
    publisher.publish(&writer::build("v2", &format!("{:0>40}", "2"))).await.expect("build");
    writer::wait_promotion(pool, "dev", "v2", "committed").await;
    let degraded = json!({ "phase": "Degraded", "observedGeneration": "3", "stableRS": "def", "currentPodHash": "123",
                           "message": "ProgressDeadlineExceeded: ReplicaSet writer-123 has timed out progressing." });
    fake.apply(ROLLOUT, "dev", "writer", rollout("v2", 3, degraded));
    writer::wait_promotion(pool, "dev", "v1", "committed").await;
    let held: Option<String> = sqlx::query_scalar("SELECT reason FROM holds WHERE app = 'writer' AND stage = 'dev'")
        .fetch_optional(pool)
        .await
        .expect("hold");
    assert!(held.is_some_and(|r| r.contains("ProgressDeadlineExceeded")), "held with the Rollout's reason");

    service.stop().await;
}
