//! The promoter on the app catalog, against real NATS (KV), PostgreSQL and a git daemon:
//! two pipelines side by side (xapp goes to prod by itself after a staging soak, yapp needs
//! two approvals for prod), and owners per app (alice, of team-a, approves aapp's staging;
//! the same approval for yapp's staging is refused, naming who may).

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::running::Running;
use common::{remote_show, seed_repo};
use slipway_mesh::v1;
use slipway_promoter::Config;
use slipway_runtime::catalog::CatalogStore;
use slipway_runtime::config::{DatabaseConfig, NatsConfig, Secret};
use slipway_testkit::{GitDaemon, NatsServer};
use sqlx::{PgPool, Row};

const APPS: [&str; 3] = ["xapp", "yapp", "aapp"];

fn catalog(gitops: &str) -> slipway_catalog::Catalog {
    let app = |name: &str, pipeline: &str, extra: &str| {
        format!(
            "  - name: {name}\n    source: {{ repository: acme/mono, paths: [\"apps/{name}/**\"] }}\n    \
             image: registry.local/acme/{name}\n    \
             deploy: {{ repository: \"{gitops}\", path: \"apps/{{app}}/{{stage}}/kustomization.yaml\", kind: kustomize }}\n    \
             pipeline: {pipeline}\n{extra}"
        )
    };
    let yaml = format!(
        "admins: [root]\nteams:\n  team-a: {{ members: [alice] }}\n  team-y: {{ members: [yves] }}\n\
         pipelines:\n  fast:\n    stages:\n      - {{ name: dev, policy: auto }}\n      - {{ name: staging, policy: auto }}\n      \
         - {{ name: prod, policy: auto, soak_secs: 1 }}\n  strict:\n    stages:\n      - {{ name: dev, policy: auto }}\n      \
         - {{ name: staging, policy: approval, teams: [team-y] }}\n      \
         - {{ name: prod, policy: approval, approvals: 2, approvers: [carol, dave] }}\n\
         apps:\n{}{}{}",
        app("xapp", "fast", ""),
        app("yapp", "strict", ""),
        app("aapp", "strict", "    team: team-a\n    owners:\n      staging: { teams: [team-a], mode: replace }\n"),
    );
    let files = BTreeMap::from([("slipway.yaml".to_owned(), yaml)]);
    slipway_catalog::build(&files, "slipway.yaml", &|_| None).expect("valid catalog")
}

struct Harness {
    running: Running,
    pool: PgPool,
}

impl Harness {
    /// Publishes `catalog` as the revision in force, then starts the promoter on it.
    async fn start(
        nats: &NatsServer,
        db: String,
        catalog: &slipway_catalog::Catalog,
        work: &std::path::Path,
        source: &str,
    ) -> Harness {
        let js = async_nats::jetstream::new(async_nats::connect(nats.url()).await.expect("connect"));
        CatalogStore::open(&js, 1).await.expect("store").publish("test", "c1", catalog).await.expect("publish");
        let mut config = Config {
            nats: NatsConfig { url: nats.url(), ack_wait_secs: 5, ..NatsConfig::default() },
            database: DatabaseConfig { url: Some(Secret::new(db)), ..DatabaseConfig::with_schema("promoter") },
            ..Config::default()
        };
        config.pipeline.tick_secs = 1;
        config.gitops.work_dir = work.to_owned();
        config.catalog.enabled = true;
        let running = Running::start(&config, source).await;
        Harness { pool: running.pool.clone(), running }
    }

    async fn build(&self, app: &str, tag: &str) {
        let event = v1::BuildSucceeded {
            build_id: format!("build-{app}-{tag}"),
            app: app.into(),
            source: Some(v1::SourceRef {
                repository: "acme/mono".into(),
                commit_sha: format!("{:0>40}", tag.trim_start_matches('v')),
                r#ref: "refs/heads/main".into(),
                author: "dana".into(),
            }),
            image: Some(v1::ImageRef {
                repository: format!("registry.local/acme/{app}"),
                tag: tag.into(),
                digest: String::new(),
            }),
            tags: vec![tag.into()],
            duration_ms: 1,
            sbom_digest: String::new(),
        };
        self.running.publisher.publish(&event).await.expect("publish build");
    }

    async fn approve(&self, app: &str, stage: &str, actor: &str) {
        let command = v1::ChatopsCommand {
            command_id: uuid::Uuid::now_v7().to_string(),
            kind: v1::CommandKind::Approve.into(),
            app: app.into(),
            env: stage.into(),
            actor: actor.into(),
            channel: "slack".into(),
            ..Default::default()
        };
        self.running.publisher.publish(&command).await.expect("publish command");
    }

    /// (promotion id, state) of `app` in `stage`: the one it runs, or the one waiting.
    async fn state(&self, app: &str, stage: &str) -> Option<(String, String)> {
        let row = sqlx::query(
            "SELECT id, state FROM promotions WHERE app = $1 AND stage = $2 ORDER BY created_at DESC, id DESC LIMIT 1",
        )
        .bind(app)
        .bind(stage)
        .fetch_optional(&self.pool)
        .await
        .expect("query")?;
        Some((row.get("id"), row.get("state")))
    }

    async fn wait(&self, app: &str, stage: &str, state: &str) -> String {
        for _ in 0..400 {
            if let Some((id, s)) = self.state(app, stage).await
                && s == state
            {
                return id;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("{app} in {stage} never {state}: {:?}", self.state(app, stage).await);
    }

    /// Commits the promotion and reports it healthy, as Argo CD would.
    async fn healthy(&self, app: &str, stage: &str) {
        let id = self.wait(app, stage, "committed").await;
        let event = v1::PromotionHealthy { promotion_id: id, app: app.into(), stage: stage.into(), image: None };
        self.running.publisher.publish(&event).await.expect("publish healthy");
        self.wait(app, stage, "healthy").await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_app_pipelines_and_owners_from_the_catalog() {
    let nats = NatsServer::start().await.expect("nats");
    let daemon = GitDaemon::start().await.expect("git daemon");
    let db = slipway_testkit::shared_database().await.expect("database");
    let seed = |stage: &str| format!("images:\n  - name: registry.local/acme/x\n    newTag: v0 # {stage}\n");
    let files: Vec<(String, String)> = APPS
        .iter()
        .flat_map(|app| {
            ["dev", "staging", "prod"].map(|stage| (format!("apps/{app}/{stage}/kustomization.yaml"), seed(stage)))
        })
        .collect();
    let gitops = seed_repo(&daemon, "acme/gitops", &files);
    let work = tempfile::tempdir().expect("work");
    let h = Harness::start(&nats, db, &catalog(&gitops), work.path(), "/slipway/test/catalog").await;

    // xapp: dev, staging, then prod by itself once staging soaked.
    h.build("xapp", "v1").await;
    h.healthy("xapp", "dev").await;
    h.healthy("xapp", "staging").await;
    h.wait("xapp", "prod", "committed").await;
    let prod = remote_show(&daemon, "acme/gitops", "main", "apps/xapp/prod/kustomization.yaml");
    assert!(prod.contains("newTag: v1"), "{prod}");

    // yapp and aapp: staging waits for its owners.
    h.build("yapp", "v2").await;
    h.build("aapp", "v3").await;
    h.healthy("yapp", "dev").await;
    h.healthy("aapp", "dev").await;
    h.wait("yapp", "staging", "pending").await;
    h.wait("aapp", "staging", "pending").await;
    h.approve("aapp", "staging", "alice").await;
    h.approve("yapp", "staging", "alice").await;
    h.healthy("aapp", "staging").await;
    let mut refusal = None;
    for _ in 0..200 {
        let messages = slipway_testkit::stream_messages(&h.running.js, "SLIPWAY").await.expect("stream");
        refusal = messages.iter().find_map(|m| {
            let body: serde_json::Value = serde_json::from_slice(&m.payload).ok()?;
            (m.subject.as_str() == "slipway.approval.rejected.yapp.staging" && body["actor"] == "alice").then_some(body)
        });
        if refusal.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let refusal = refusal.expect("alice's approval of yapp's staging is refused");
    assert_eq!(refusal["reason"], "not-allowed", "{refusal}");
    assert_eq!(refusal["allowedTeams"], serde_json::json!(["team-y"]), "names who may approve: {refusal}");
    assert_eq!(h.state("yapp", "staging").await.map(|s| s.1).as_deref(), Some("pending"));

    // yapp's prod needs two approvals: one is not enough.
    h.approve("yapp", "staging", "yves").await;
    h.healthy("yapp", "staging").await;
    h.wait("yapp", "prod", "pending").await;
    h.approve("yapp", "prod", "carol").await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(h.state("yapp", "prod").await.map(|s| s.1).as_deref(), Some("pending"), "one of two approvals");
    h.approve("yapp", "prod", "dave").await;
    h.wait("yapp", "prod", "committed").await;

    // A revision without xapp: it shows as removed, keeps its history, and is not promoted.
    let mut without = catalog(&gitops);
    without.apps.remove("xapp");
    let store = CatalogStore::open(&h.running.js, 1).await.expect("store");
    store.publish("test", "c2", &without).await.expect("publish");
    let url = format!("http://{}/api/status", h.running.admin);
    let mut status = serde_json::Value::Null;
    for _ in 0..200 {
        status = reqwest::get(&url).await.expect("status").json().await.expect("json");
        let removed =
            status["apps"].as_array().into_iter().flatten().any(|a| a["app"] == "xapp" && a["removed"] == true);
        if removed {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let apps = status["apps"].as_array().expect("apps");
    let xapp = apps.iter().find(|a| a["app"] == "xapp").expect("xapp still listed");
    assert_eq!(xapp["removed"], true, "{status}");
    let yapp = apps.iter().find(|a| a["app"] == "yapp").expect("yapp");
    assert_eq!((yapp["pipeline"].as_str(), yapp.get("removed")), (Some("strict"), None), "{status}");
    h.build("xapp", "v9").await;
    h.build("yapp", "v10").await;
    h.wait("yapp", "dev", "committed").await;
    let dev = remote_show(&daemon, "acme/gitops", "main", "apps/xapp/dev/kustomization.yaml");
    assert!(dev.contains("newTag: v1"), "a removed app is not promoted: {dev}");

    // Server-side pages and filters.
    let page = |query: &str| {
        let url = format!("http://{}/api/status?{query}", h.running.admin);
        async move {
            let resp = reqwest::get(&url).await.expect("status");
            let code = resp.status().as_u16();
            let body: serde_json::Value = resp.json().await.unwrap_or_default();
            let names: Vec<String> = body["apps"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|a| a["app"].as_str().map(String::from))
                .collect();
            (code, names, body)
        }
    };
    let (_, first, body) = page("page_size=1").await;
    assert_eq!(
        (first, body["total"].clone(), body["nextPageToken"].clone()),
        (vec!["aapp".to_owned()], 3.into(), "1".into())
    );
    let (_, second, body) = page("page_size=2&page_token=1").await;
    assert_eq!(second, ["xapp", "yapp"], "{body}");
    assert!(body.get("nextPageToken").is_none(), "the last page: {body}");
    assert_eq!(page("state=removed").await.1, ["xapp"]);
    assert_eq!(page("team=team-a").await.1, ["aapp"]);
    assert_eq!(page("state=waiting&stage=prod").await.1, ["aapp"], "aapp's prod waits for carol and dave");
    assert_eq!(page("state=bogus").await.0, 400);
    assert_eq!(page("page_size=501").await.0, 400);
    h.running.stop().await;
}

/// An Argo CD Application as a team keeps it: a `kind: yaml` target sets one Helm parameter,
/// chosen by its name, and nothing else.
const APPLICATION: &str = "\
apiVersion: argoproj.io/v1alpha1
kind: Application
metadata:
  name: rapp # kept by hand
spec:
  source:
    chart: rapp
    helm:
      parameters:
        - name: replicas
          value: \"2\"
        - name: image
          value: registry.local/acme/rapp:v0
";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_yaml_target_sets_an_argo_cd_application_parameter() {
    let nats = NatsServer::start().await.expect("nats");
    let daemon = GitDaemon::start().await.expect("git daemon");
    let db = slipway_testkit::shared_database().await.expect("database");
    let files: Vec<(String, String)> =
        ["dev", "prod"].iter().map(|s| (format!("argocd/{s}/rapp.yaml"), APPLICATION.to_owned())).collect();
    let gitops = seed_repo(&daemon, "acme/argo", &files);
    let yaml = format!(
        "pipelines:\n  fast:\n    stages:\n      - {{ name: dev, policy: auto }}\n      - {{ name: prod, policy: auto }}\n\
         apps:\n  - name: rapp\n    source: {{ repository: acme/mono, paths: [\"apps/rapp/**\"] }}\n    \
         image: registry.local/acme/rapp\n    \
         deploy: {{ repository: \"{gitops}\", path: \"argocd/{{stage}}/{{app}}.yaml\", kind: yaml, \
         key: \"spec.source.helm.parameters[name=image].value\", value: \"{{image}}:{{tag}}\" }}\n    pipeline: fast\n"
    );
    let catalog =
        slipway_catalog::build(&BTreeMap::from([("slipway.yaml".to_owned(), yaml)]), "slipway.yaml", &|_| None)
            .expect("valid catalog");
    let work = tempfile::tempdir().expect("work");
    let h = Harness::start(&nats, db, &catalog, work.path(), "/slipway/test/catalog-yaml").await;
    h.build("rapp", "v7").await;
    h.healthy("rapp", "dev").await;
    let dev = remote_show(&daemon, "acme/argo", "main", "argocd/dev/rapp.yaml");
    assert_eq!(dev, APPLICATION.replace("rapp:v0", "rapp:v7"), "only the parameter's value changed");
    h.wait("rapp", "prod", "committed").await;
    let prod = remote_show(&daemon, "acme/argo", "main", "argocd/prod/rapp.yaml");
    assert_eq!(prod, APPLICATION.replace("rapp:v0", "rapp:v7"));
    h.running.stop().await;
}
