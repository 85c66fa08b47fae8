//! The dashboard on the app catalog: each app's page draws its own pipeline (the catalog's
//! per-app pipelines, with the owners the catalog gives a stage), and the team filters of the
//! matrix and of the delivery trends take the catalog's teams. Headless Chromium for the stage
//! graphs, plain HTTP for the rest.

mod common;
mod webdriver;

use std::collections::BTreeMap;
use std::time::Duration;

use common::running::Running;
use serde_json::{Value, json};
use slipway_promoter::Config;
use slipway_runtime::catalog::CatalogStore;
use slipway_runtime::config::{DatabaseConfig, NatsConfig, Secret};
use slipway_testkit::NatsServer;
use webdriver::Browser;

fn catalog() -> slipway_catalog::Catalog {
    let app = |name: &str, pipeline: &str, team: &str, extra: &str| {
        format!(
            "  - name: {name}\n    source: {{ repository: acme/mono, paths: [\"apps/{name}/**\"] }}\n    \
             image: registry.local/acme/{name}\n    \
             deploy: {{ repository: \"git://gitops.invalid/acme/gitops\", path: \"apps/{{app}}/{{stage}}/k.yaml\", kind: kustomize }}\n    \
             pipeline: {pipeline}\n    team: {team}\n{extra}"
        )
    };
    let yaml = format!(
        "admins: [root]\nteams:\n  team-a: {{ members: [alice] }}\n  team-b: {{ members: [bea] }}\n\
         pipelines:\n  fast:\n    stages:\n      - {{ name: dev, policy: auto }}\n      - {{ name: prod, policy: auto }}\n  \
         strict:\n    stages:\n      - {{ name: dev, policy: auto }}\n      \
         - {{ name: staging, policy: approval, approvers: [carol] }}\n      \
         - {{ name: prod, policy: approval, approvals: 2, approvers: [carol, dave] }}\n\
         apps:\n{}{}{}",
        app("xapp", "fast", "team-a", ""),
        app("aapp", "strict", "team-a", "    owners:\n      staging: { teams: [team-a], mode: replace }\n"),
        app("bapp", "strict", "team-b", ""),
    );
    let files = BTreeMap::from([("slipway.yaml".to_owned(), yaml)]);
    slipway_catalog::build(&files, "slipway.yaml", &|_| None).expect("valid catalog")
}

async fn get(http: &reqwest::Client, url: String) -> Value {
    let answer = http.get(&url).send().await.expect("GET");
    assert_eq!(answer.status(), 200, "GET {url}");
    answer.json().await.expect("JSON")
}

/// A promotion of `app` written into prod a day ago.
async fn deployed(pool: &sqlx::PgPool, app: &str) {
    let version = json!({ "image": { "repository": "r", "tag": "v1", "digest": "" },
                          "source": { "repository": "acme/mono", "commitSha": "a".repeat(40), "ref": "", "author": "" } });
    sqlx::query("INSERT INTO apps (name) VALUES ($1) ON CONFLICT DO NOTHING")
        .bind(app)
        .execute(pool)
        .await
        .expect("app");
    sqlx::query(
        "INSERT INTO promotions (id, app, stage, version, image_tag, image_digest, source_commit, state, trigger, \
         actor, committed_at) VALUES ($1 || '-prod-1', $1, 'prod', $2, 'v1', '', $3, 'healthy', 'auto', 'slipway', \
         now() - interval '1 day')",
    )
    .bind(app)
    .bind(version)
    .bind("a".repeat(40))
    .execute(pool)
    .await
    .expect("promotion");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_follow_the_catalog_pipelines_and_teams() {
    webdriver::require_chromium();
    let nats = NatsServer::start().await.expect("nats");
    let db = slipway_testkit::shared_database().await.expect("database");
    let js = async_nats::jetstream::new(async_nats::connect(nats.url()).await.expect("connect"));
    CatalogStore::open(&js, 1).await.expect("store").publish("test", "c1", &catalog()).await.expect("publish");
    let work = tempfile::tempdir().expect("work");
    let mut config = Config {
        nats: NatsConfig { url: nats.url(), ack_wait_secs: 5, ..NatsConfig::default() },
        database: DatabaseConfig { url: Some(Secret::new(db)), ..DatabaseConfig::with_schema("promoter") },
        ..Config::default()
    };
    config.gitops.work_dir = work.path().to_owned();
    config.catalog.enabled = true;
    let running = Running::start(&config, "/slipway/test/dashboard").await;
    let http = reqwest::Client::builder().timeout(Duration::from_secs(10)).build().expect("http");
    let url = |path: &str| format!("http://{}{path}", running.admin);
    let mut ready = false;
    for _ in 0..300 {
        if let Ok(answer) = http.get(url("/api/status")).send().await
            && answer.status() == 200
        {
            ready = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(ready, "the dashboard API never answered");

    // Each app's own pipeline, with the owners its catalog entry gives a stage.
    let aapp = get(&http, url("/api/apps/aapp")).await;
    let stages: Vec<&str> =
        aapp["stages"].as_array().expect("stages").iter().filter_map(|s| s["stage"].as_str()).collect();
    assert_eq!(stages, ["dev", "staging", "prod"]);
    assert_eq!((aapp["pipeline"].as_str(), aapp["team"].as_str()), (Some("strict"), Some("team-a")));
    assert_eq!(aapp["stages"][1]["mayAct"], json!(["team team-a (alice)", "admins (root)"]), "owners replace");
    assert_eq!(aapp["stages"][2]["approvalsRequired"], 2);
    let xapp = get(&http, url("/api/apps/xapp")).await;
    assert_eq!(xapp["stages"].as_array().map(Vec::len), Some(2));
    let missing = http.get(url("/api/apps/nope")).send().await.expect("GET");
    assert_eq!(missing.status(), 404);

    // The team filters take the catalog's teams.
    let team_a = get(&http, url("/api/status?team=team-a")).await;
    let names: Vec<&str> = team_a["apps"].as_array().expect("apps").iter().filter_map(|a| a["app"].as_str()).collect();
    assert_eq!(names, ["aapp", "xapp"]);
    for app in ["aapp", "xapp", "bapp"] {
        deployed(&running.pool, app).await;
    }
    let trends = get(&http, url("/api/trends?team=team-a&weeks=2")).await;
    assert_eq!((trends["scope"].as_str(), trends["apps"].as_u64()), (Some("team team-a"), Some(2)));
    let deployments: u64 =
        trends["weeks"].as_array().expect("weeks").iter().filter_map(|w| w["deployments"].as_u64()).sum();
    assert_eq!(deployments, 2, "bapp is team-b's");
    let everything = get(&http, url("/api/trends?weeks=2")).await;
    let all: u64 =
        everything["weeks"].as_array().expect("weeks").iter().filter_map(|w| w["deployments"].as_u64()).sum();
    assert_eq!(all, 3);

    // The stage graphs in Chromium: three boxes for aapp, two for xapp.
    let browser = Browser::start().await;
    for (app, expected) in [("aapp", 3), ("xapp", 2)] {
        browser.goto(&url(&format!("/dashboard/app/{app}"))).await;
        browser.wait_text("#graph", &["DEV", "PROD"]).await;
        let boxes = browser.script("return document.querySelectorAll('#graph .stage').length;", json!([])).await;
        assert_eq!(boxes, json!(expected), "{app}");
    }
    browser.wait_text("#pipeline-name", &["fast", "team team-a"]).await;
    browser.quit().await;
    running.stop().await;
}
