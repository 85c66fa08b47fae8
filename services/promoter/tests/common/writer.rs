//! The app most promoter tests promote, `writer` (image [`IMAGE`], GitOps files
//! `envs/{stage}/kustomization.yaml`): its config from a list of stages, the events a builder
//! and a health watcher send about it, and a wait on the promotion a stage runs.

use std::path::Path;
use std::time::Duration;

use slipway_mesh::v1;
use slipway_promoter::Config;
use slipway_promoter::config::{ApiToken, AppConfig, PipelineConfig, Role, StageConfig};
use slipway_promoter::grpc::hash_token;
use slipway_runtime::config::{DatabaseConfig, NatsConfig, Secret};
use sqlx::{PgPool, Row};

pub const IMAGE: &str = "registry.local/acme/writer";

/// The promoter's config for `writer` in `stages` (each a `[[pipeline.stages]]` table as JSON),
/// with short ack waits and ticks for tests.
pub fn config(nats_url: &str, db: &str, gitops: &str, work: &Path, stages: &[serde_json::Value]) -> Config {
    let stage = |json: &serde_json::Value| -> StageConfig { serde_json::from_value(json.clone()).expect("stage") };
    let pipeline =
        PipelineConfig { stages: stages.iter().map(stage).collect(), tick_secs: 1, ..PipelineConfig::default() };
    let app: AppConfig = serde_json::from_value(serde_json::json!({
        "name": "writer",
        "gitops": { "repository": gitops, "path": "envs/{stage}/kustomization.yaml", "kind": "kustomize", "image": IMAGE },
    }))
    .expect("app");
    let mut config = Config {
        nats: NatsConfig { url: nats_url.to_owned(), ack_wait_secs: 5, ..NatsConfig::default() },
        database: DatabaseConfig { url: Some(Secret::new(db.to_owned())), ..DatabaseConfig::with_schema("promoter") },
        pipeline,
        apps: vec![app],
        ..Config::default()
    };
    config.gitops.work_dir = work.to_owned();
    config
}

/// `[[admin_api.tokens]]` for (token, name, role) triples.
pub fn tokens(list: &[(&str, &str, Role)]) -> Vec<ApiToken> {
    list.iter()
        .map(|(token, name, role)| ApiToken { name: (*name).into(), role: *role, sha256: hash_token(token) })
        .collect()
}

/// `build.succeeded` for `writer` at `tag`, built from commit `commit` (40 hex digits).
pub fn build(tag: &str, commit: &str) -> v1::BuildSucceeded {
    v1::BuildSucceeded {
        build_id: format!("build-{tag}"),
        app: "writer".into(),
        source: Some(v1::SourceRef {
            repository: "acme/monorepo".into(),
            commit_sha: commit.into(),
            r#ref: "refs/heads/main".into(),
            author: "dana".into(),
        }),
        image: Some(v1::ImageRef { repository: IMAGE.into(), tag: tag.into(), digest: String::new() }),
        tags: vec![tag.into()],
        duration_ms: 1,
        sbom_digest: String::new(),
    }
}

/// The health watcher's `promotion.healthy` for a promotion of `writer` in `stage`.
pub fn healthy(stage: &str, promotion_id: &str) -> v1::PromotionHealthy {
    v1::PromotionHealthy { promotion_id: promotion_id.into(), app: "writer".into(), stage: stage.into(), image: None }
}

/// Id of the promotion `stage` runs with `tag` in `state`, once there is one (60 s at most).
pub async fn wait_promotion(pool: &PgPool, stage: &str, tag: &str, state: &str) -> String {
    for _ in 0..1200 {
        let row = sqlx::query(
            "SELECT p.id FROM promotions p JOIN stage_versions s ON s.desired_promotion = p.id \
             WHERE s.app = 'writer' AND s.stage = $1 AND p.image_tag = $2 AND p.state = $3",
        )
        .bind(stage)
        .bind(tag)
        .bind(state)
        .fetch_optional(pool)
        .await
        .expect("query");
        if let Some(row) = row {
            return row.try_get("id").expect("id");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{stage} never ran {tag} as {state}");
}
