//! The promotion pipeline end to end against real NATS, PostgreSQL and a git daemon: a build
//! goes to dev by itself, waits for approvals in staging and prod (the author's does not count),
//! and a degraded prod is rolled back and held; a later build does not move the held stage.
//! Health reports are published by the test, as the kube health watcher would.

mod common;

use std::time::Duration;

use common::running::Running;
use common::writer::{self, IMAGE};
use common::{remote_tag, seed_repo, stage_files};

use slipway_mesh::v1;
use slipway_promoter::{Config, Promoter};
use slipway_runtime::jetstream::Publisher;
use slipway_testkit::{GitDaemon, NatsServer};
use sqlx::{PgPool, Row};

const AUTHOR: &str = "dana";

/// A GitOps repository with one kustomization per stage; returns its URL.
fn seed_gitops(daemon: &GitDaemon) -> String {
    let text = |stage: &str| {
        format!("# {stage}\nresources:\n  - deploy.yaml\nimages:\n  - name: {IMAGE}\n    newTag: v0 # seed\n")
    };
    seed_repo(daemon, "acme/gitops", &stage_files(&["dev", "staging", "prod"], text))
}

fn config(nats: &NatsServer, db: &str, gitops: &str, work: &std::path::Path) -> Config {
    let stages = [
        serde_json::json!({ "name": "dev", "policy": "auto" }),
        serde_json::json!({ "name": "staging", "policy": "approval", "approvers": ["bob"] }),
        serde_json::json!({
            "name": "prod", "policy": "approval", "approvals": 2, "approvers": ["alice", "bob", AUTHOR],
            "four_eyes": true, "auto_rollback": true,
        }),
    ];
    let mut config = writer::config(&nats.url(), db, gitops, work, &stages);
    config.pipeline.admins = vec!["root".into()];
    config
}

/// The trace id the build of `tag` comes with.
fn trace_of(tag: &str) -> String {
    format!("{:0>32}", tag.trim_start_matches('v'))
}

struct Harness {
    publisher: Publisher,
    pool: PgPool,
}

impl Harness {
    /// Publishes the build of `tag`, traced as if its push had trace id [`trace_of`]`(tag)`.
    async fn build(&self, tag: &str) {
        let event = writer::build(tag, &format!("{:0>40}", tag.trim_start_matches('v')));
        let (mut envelope, body) = slipway_mesh::prepare(self.publisher.source(), &event).expect("prepare");
        envelope.traceparent = Some(format!("00-{}-00f067aa0ba902b7-01", trace_of(tag)));
        self.publisher.publish_envelope(&envelope, body.into()).await.expect("publish build");
    }

    async fn chat(&self, kind: v1::CommandKind, actor: &str, env: &str) {
        let command = v1::ChatopsCommand {
            command_id: uuid::Uuid::now_v7().to_string(),
            kind: kind.into(),
            app: "writer".into(),
            env: env.into(),
            actor: actor.into(),
            repository: "acme/monorepo".into(),
            pull_request: 7,
            channel: "github".into(),
            ..Default::default()
        };
        self.publisher.publish(&command).await.expect("publish command");
    }

    /// (promotion id, state, tag, trigger, waiting_on) of what `stage` runs or waits for.
    async fn promotion(&self, stage: &str, pending: bool) -> Option<(String, String, String, String, String)> {
        let sql = if pending {
            "SELECT id, state, image_tag, trigger, waiting_on FROM promotions WHERE app = 'writer' AND stage = $1 \
             AND state = 'pending'"
        } else {
            "SELECT p.id, p.state, p.image_tag, p.trigger, p.waiting_on FROM promotions p JOIN stage_versions s \
             ON s.desired_promotion = p.id WHERE s.app = 'writer' AND s.stage = $1"
        };
        let row = sqlx::query(sql).bind(stage).fetch_optional(&self.pool).await.expect("query")?;
        let get = |c: &str| row.try_get::<String, _>(c).expect("column");
        Some((get("id"), get("state"), get("image_tag"), get("trigger"), get("waiting_on")))
    }

    /// Waits until `stage` runs `tag` with the promotion in `state`; returns the promotion id.
    async fn wait_stage(&self, stage: &str, tag: &str, state: &str) -> String {
        for _ in 0..300 {
            if let Some((id, s, t, ..)) = self.promotion(stage, false).await
                && s == state
                && t == tag
            {
                return id;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("{stage} never ran {tag} as {state}: {:?}", self.promotion(stage, false).await);
    }

    async fn wait_pending(&self, stage: &str, tag: &str, waiting_on: &str) {
        for _ in 0..300 {
            if let Some((_, _, t, _, w)) = self.promotion(stage, true).await
                && t == tag
                && w.starts_with(waiting_on)
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("{stage} never waited with {tag} on {waiting_on}: {:?}", self.promotion(stage, true).await);
    }

    async fn healthy(&self, stage: &str, promotion_id: &str) {
        self.publisher.publish(&writer::healthy(stage, promotion_id)).await.expect("publish healthy");
    }

    async fn audit_count(&self, actor: &str, action: &str, reason: &str) -> i64 {
        sqlx::query("SELECT count(*) AS n FROM audit_log WHERE actor = $1 AND action = $2 AND reason LIKE $3")
            .bind(actor)
            .bind(action)
            .bind(format!("{reason}%"))
            .fetch_one(&self.pool)
            .await
            .expect("audit")
            .try_get("n")
            .expect("n")
    }

    async fn wait_audit(&self, actor: &str, action: &str, reason: &str) {
        for _ in 0..300 {
            if self.audit_count(actor, action, reason).await > 0 {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("no audit row {actor} {action} {reason}");
    }

    /// dev → staging (bob) → prod (alice, bob) for `tag`, up to the prod commit.
    async fn to_prod_commit(&self, daemon: &GitDaemon, tag: &str) -> String {
        self.build(tag).await;
        let dev = self.wait_stage("dev", tag, "committed").await;
        assert_eq!(remote_tag(daemon, "dev"), tag);
        self.healthy("dev", &dev).await;
        self.wait_pending("staging", tag, "approvals: 0/1").await;
        self.chat(v1::CommandKind::Approve, "bob", "staging").await;
        let staging = self.wait_stage("staging", tag, "committed").await;
        self.healthy("staging", &staging).await;
        self.wait_pending("prod", tag, "approvals: 0/2").await;
        self.chat(v1::CommandKind::Approve, "alice", "prod").await;
        self.wait_pending("prod", tag, "approvals: 1/2").await;
        self.chat(v1::CommandKind::Lgtm, "bob", "prod").await;
        self.wait_stage("prod", tag, "committed").await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn build_to_prod_with_approvals_then_degraded_prod_rolls_back_and_stays_held() {
    let nats = NatsServer::start().await.expect("nats");
    let daemon = GitDaemon::start().await.expect("git daemon");
    let db = slipway_testkit::shared_database().await.expect("database");
    let gitops = seed_gitops(&daemon);
    let work = tempfile::tempdir().expect("work dir");
    let config = config(&nats, &db, &gitops, work.path());
    let service = Running::start(&config, "/slipway/test/local").await;
    let pool = service.pool.clone();
    let h = Harness { publisher: service.publisher.clone(), pool: pool.clone() };

    // v1: dev by itself; staging waits for an allowed approver; prod for two, not the author.
    h.build("v1").await;
    let dev = h.wait_stage("dev", "v1", "committed").await;
    assert_eq!(remote_tag(&daemon, "dev"), "v1");
    h.healthy("dev", &dev).await;
    h.wait_pending("staging", "v1", "approvals: 0/1").await;
    h.chat(v1::CommandKind::Approve, "mallory", "staging").await;
    h.wait_audit("mallory", "approve-refused", "not-allowed").await;
    h.chat(v1::CommandKind::Approve, "bob", "staging").await;
    let staging = h.wait_stage("staging", "v1", "committed").await;
    assert_eq!(remote_tag(&daemon, "staging"), "v1");
    h.healthy("staging", &staging).await;
    h.wait_pending("prod", "v1", "approvals: 0/2").await;
    h.chat(v1::CommandKind::Approve, AUTHOR, "prod").await;
    h.wait_audit(AUTHOR, "approve-refused", "self-approval").await;
    h.chat(v1::CommandKind::Approve, "alice", "prod").await;
    h.wait_pending("prod", "v1", "approvals: 1/2").await;
    assert_eq!(remote_tag(&daemon, "prod"), "v0", "one approval is not enough");
    h.chat(v1::CommandKind::Approve, "bob", "prod").await;
    let prod = h.wait_stage("prod", "v1", "committed").await;
    assert_eq!(remote_tag(&daemon, "prod"), "v1");
    h.healthy("prod", &prod).await;
    h.wait_stage("prod", "v1", "healthy").await;

    // v2 degrades in prod: rolled back to v1 by a new commit, and prod is held.
    let prod_v2 = h.to_prod_commit(&daemon, "v2").await;
    assert_eq!(remote_tag(&daemon, "prod"), "v2");
    let degraded = v1::PromotionDegraded {
        promotion_id: prod_v2,
        app: "writer".into(),
        stage: "prod".into(),
        health_status: "Degraded".into(),
        message: "crash loop".into(),
    };
    h.publisher.publish(&degraded).await.expect("publish degraded");
    let rollback = h.wait_stage("prod", "v1", "committed").await;
    let count = rollback.rsplit('-').next().unwrap_or_default();
    assert!(rollback.starts_with("writer-prod-") && count.parse::<u64>().is_ok(), "a readable id: {rollback}");
    assert_eq!(remote_tag(&daemon, "prod"), "v1");
    h.wait_audit("slipway", "rollback", "automatic rollback").await;

    // v3 gets through dev and staging and both prod approvals, but prod stays on v1.
    h.build("v3").await;
    let dev = h.wait_stage("dev", "v3", "committed").await;
    h.healthy("dev", &dev).await;
    h.wait_pending("staging", "v3", "approvals").await;
    h.chat(v1::CommandKind::Approve, "bob", "staging").await;
    let staging = h.wait_stage("staging", "v3", "committed").await;
    h.healthy("staging", &staging).await;
    h.wait_pending("prod", "v3", "hold: rollback").await;
    h.chat(v1::CommandKind::Approve, "alice", "prod").await;
    h.chat(v1::CommandKind::Approve, "bob", "prod").await;
    h.wait_audit("bob", "approve", "").await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    h.wait_pending("prod", "v3", "hold: rollback").await;
    assert_eq!(remote_tag(&daemon, "prod"), "v1", "the held stage did not move");
    assert_eq!(h.promotion("prod", false).await.expect("prod").2, "v1");

    // Every step is in the audit log.
    for (actor, action, reason) in [
        ("slipway", "run-started", ""),
        ("slipway", "promote", "build succeeded"),
        ("slipway", "commit", ""),
        ("slipway", "healthy", ""),
        ("slipway", "wait", "approvals"),
        ("bob", "approve", ""),
        ("alice", "approve", ""),
        ("slipway", "promote", "approved by bob"),
        ("slipway", "promote", "approved by alice, bob"),
        ("slipway", "degraded", "Degraded: crash loop"),
        ("slipway", "rollback", "automatic rollback"),
        ("slipway", "hold", "rollback"),
        ("slipway", "wait", "hold"),
    ] {
        assert!(h.audit_count(actor, action, reason).await > 0, "audit log lacks {actor} {action} {reason}");
    }

    // The read side a gRPC layer serves.
    let reader = Promoter::new(
        pool.clone(),
        std::sync::Arc::new(config),
        "/test",
        std::sync::Arc::new(slipway_promoter::deployer::RecordingDeployer::new()),
    );
    let request = slipway_mesh::v1::ListAppsRequest { app: "writer".into(), ..Default::default() };
    let apps = reader.list_apps(&request).await.expect("list apps");
    let prod = apps.apps[0].stages.iter().find(|s| s.stage == "prod").expect("prod").clone();
    assert!(prod.held, "{prod:?}");
    assert_eq!(prod.desired.expect("desired").tag, "v1");
    let runs = reader.list_runs("writer", 10, "").await.expect("runs");
    assert_eq!(runs.runs.len(), 3);
    let v2 = runs.runs.iter().find(|r| r.image.as_ref().is_some_and(|i| i.tag == "v2")).expect("v2 run");
    assert_eq!(v2.state(), v1::RunState::RolledBack);
    assert_eq!(v2.trace_id, trace_of("v2"), "the run keeps the trace of its build's push");
    assert!(v2.timeline.iter().any(|t| t.step == "rolled-back"), "{:?}", v2.timeline);
    let err = reader.approve("mallory", "writer", "prod", "", "").await.expect_err("refused");
    assert!(
        matches!(err, slipway_promoter::Error::Refused { reason: slipway_promoter::domain::Refusal::NotAllowed, .. }),
        "{err}"
    );

    service.stop().await;
}
