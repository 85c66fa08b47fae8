//! PR mode against the test kit's real `git daemon` and a local fake of GitHub's REST API that
//! records every request: the promotion lands on a new branch (the target branch stays as it
//! was), one pull request is opened, a retry opens no second one, and `promotion.committed`
//! carries the pull request's URL.

mod common;

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use axum::Json;
use axum::extract::{Path as UrlPath, Query, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::routing::get;
use common::{git, git_dir, seed_repo, stage_files};
use futures::StreamExt;
use serde_json::{Value, json};
use slipway_mesh::names::EnvName;
use slipway_mesh::v1::{self, event::Payload};
use slipway_mesh::{Envelope, EventKind};
use slipway_promoter::Config;
use slipway_promoter::config::{AppConfig, PipelineConfig, StageConfig};
use slipway_promoter::deployer::{Deployer, GitDeployer};
use slipway_promoter::domain::{Promotion, PromotionState, Trigger, Version};
use slipway_promoter::gitops::pr::{GitHub, PullRequests};
use slipway_promoter::gitops::{GitopsWriter, WriterConfig};
use slipway_runtime::config::{DatabaseConfig, NatsConfig, Secret};
use slipway_runtime::jetstream::Publisher;
use slipway_testkit::{GitDaemon, NatsServer};
use tokio_util::sync::CancellationToken;

const IMAGE: &str = "registry.local/acme/web";
const TOKEN: &str = "ghp_fake_token";

fn kustomization(stage: &str) -> String {
    format!("# {stage}\nimages:\n  - name: {IMAGE}\n    newTag: v0 # seed\n")
}

/// `acme/gitops` on the daemon: `main` with one kustomization per stage. Returns its URL.
fn seed(daemon: &GitDaemon) -> String {
    seed_repo(daemon, "acme/gitops", &stage_files(&["dev", "prod"], kustomization))
}

/// `git show <rev>:<path>` on the remote.
fn remote_show(daemon: &GitDaemon, rev: &str, path: &str) -> String {
    common::remote_show(daemon, "acme/gitops", rev, path)
}

fn remote_head(daemon: &GitDaemon, branch: &str) -> String {
    common::remote_head(daemon, "acme/gitops", branch)
}

fn app(gitops: &str) -> AppConfig {
    serde_json::from_value(json!({
        "name": "web",
        "gitops": {
            "repository": gitops, "path": "envs/{stage}/kustomization.yaml", "kind": "kustomize",
            "image": IMAGE, "github_repository": "acme/gitops",
        },
    }))
    .expect("app")
}

// ------------------------------------------------------------------ the fake GitHub API

/// One request the fake received.
#[derive(Debug, Clone)]
struct Seen {
    method: Method,
    path: String,
    query: HashMap<String, String>,
    headers: HeaderMap,
    body: Value,
}

#[derive(Debug, Default)]
struct Github {
    seen: Vec<Seen>,
    /// (head, html_url) of the open pull requests.
    open: Vec<(String, String)>,
}

type Shared = Arc<Mutex<Github>>;

struct FakeGithub {
    url: String,
    state: Shared,
}

impl FakeGithub {
    async fn start() -> Self {
        let state = Shared::default();
        let router =
            axum::Router::new().route("/repos/{owner}/{repo}/pulls", get(list).post(create)).with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        tokio::spawn(async move { axum::serve(listener, router).await.expect("fake github") });
        FakeGithub { url, state }
    }

    fn seen(&self) -> Vec<Seen> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner).seen.clone()
    }

    fn open(&self) -> Vec<(String, String)> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner).open.clone()
    }
}

async fn create(
    State(state): State<Shared>,
    UrlPath((owner, repo)): UrlPath<(String, String)>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> (StatusCode, Json<Value>) {
    let mut github = state.lock().unwrap_or_else(PoisonError::into_inner);
    let path = format!("/repos/{owner}/{repo}/pulls");
    let seen = Seen { method: Method::POST, path, query: HashMap::new(), headers, body: body.clone() };
    github.seen.push(seen);
    let head = body["head"].as_str().unwrap_or_default().to_owned();
    if github.open.iter().any(|(h, _)| *h == head) {
        let message = format!("A pull request already exists for {owner}:{head}.");
        let errors = json!([{ "resource": "PullRequest", "code": "custom", "message": message }]);
        return (StatusCode::UNPROCESSABLE_ENTITY, Json(json!({ "message": "Validation Failed", "errors": errors })));
    }
    let number = github.open.len() + 1;
    let html_url = format!("https://github.example/{owner}/{repo}/pull/{number}");
    github.open.push((head, html_url.clone()));
    (StatusCode::CREATED, Json(json!({ "number": number, "html_url": html_url, "state": "open" })))
}

async fn list(
    State(state): State<Shared>,
    UrlPath((owner, repo)): UrlPath<(String, String)>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Json<Value> {
    let mut github = state.lock().unwrap_or_else(PoisonError::into_inner);
    let path = format!("/repos/{owner}/{repo}/pulls");
    github.seen.push(Seen { method: Method::GET, path, query: query.clone(), headers, body: Value::Null });
    let wanted = query.get("head").cloned().unwrap_or_default();
    let found: Vec<Value> = github
        .open
        .iter()
        .enumerate()
        .filter(|(_, (head, _))| format!("{owner}:{head}") == wanted)
        .map(|(i, (_, url))| json!({ "number": i + 1, "html_url": url }))
        .collect();
    Json(Value::Array(found))
}

// ------------------------------------------------------------------ the deployer

fn deployer(work: &Path, api_url: &str, stages: &[&str]) -> GitDeployer {
    let writer = GitopsWriter::new(WriterConfig::new(work));
    let github = GitHub::new(api_url, Secret::new(TOKEN)).expect("client");
    let stages = stages.iter().map(|s| EnvName::parse(s).expect("env"));
    let pull_requests = PullRequests::new(&writer, github, stages);
    GitDeployer::new(writer).with_pull_requests(Some(pull_requests))
}

fn promotion(id: &str, stage: &str, tag: &str) -> Promotion {
    Promotion {
        id: id.into(),
        run_id: None,
        stage: EnvName::parse(stage).expect("env"),
        version: Version {
            image: v1::ImageRef { repository: IMAGE.into(), tag: tag.into(), digest: String::new() },
            source: v1::SourceRef {
                repository: "acme/web".into(),
                commit_sha: format!("{:0>40}", 1),
                r#ref: "refs/heads/main".into(),
                author: "dana".into(),
            },
        },
        state: PromotionState::Requested,
        trigger: Trigger::Auto,
        actor: "slipway".into(),
        reason: String::new(),
        approvals: Vec::new(),
        waiting_on: String::new(),
        waiting_for: None,
        override_freeze: false,
        override_scan: false,
        gitops_commit: String::new(),
        committed_at: None,
    }
}

#[tokio::test]
async fn a_pr_stage_pushes_a_new_branch_and_opens_one_pull_request() {
    let daemon = GitDaemon::start().await.expect("git daemon");
    let url = seed(&daemon);
    let main_before = remote_head(&daemon, "main");
    let fake = FakeGithub::start().await;
    let work = tempfile::tempdir().expect("work");
    let deployer = deployer(work.path(), &fake.url, &["prod"]);
    let app = app(&url);

    let written = deployer.write(&app, &promotion("p-1.prod", "prod", "v7")).await.expect("write");

    // The branch holds the edit and the trailer; main did not move.
    assert!(written.branch.starts_with("slipway/web-prod-"), "{written:?}");
    assert_eq!(remote_head(&daemon, &written.branch), written.commit);
    let edited = remote_show(&daemon, &written.branch, "envs/prod/kustomization.yaml");
    assert_eq!(edited, format!("# prod\nimages:\n  - name: {IMAGE}\n    newTag: v7 # seed\n"));
    let message = git(&["--git-dir", &git_dir(&daemon, "acme/gitops"), "log", "-1", "--format=%B", &written.commit]);
    assert!(message.contains("Slipway-Promotion-Id: p-1.prod"), "{message}");
    assert_eq!(remote_head(&daemon, "main"), main_before, "the target branch is unchanged");
    assert_eq!(remote_show(&daemon, "main", "envs/prod/kustomization.yaml"), kustomization("prod"));

    // One POST with the right head, base, title and headers; the answer's URL comes back.
    let seen = fake.seen();
    assert_eq!(seen.len(), 1, "{seen:?}");
    let post = &seen[0];
    assert_eq!((post.method.clone(), post.path.as_str()), (Method::POST, "/repos/acme/gitops/pulls"));
    assert_eq!(post.body["head"], written.branch.as_str());
    assert_eq!(post.body["base"], "main");
    assert_eq!(post.body["title"], "chore(web): promote v7 to prod");
    assert!(post.body["body"].as_str().is_some_and(|b| b.contains("p-1.prod")), "{:?}", post.body);
    let header = |name: &str| post.headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
    assert_eq!(header("authorization"), format!("Bearer {TOKEN}"));
    assert_eq!(header("accept"), "application/vnd.github+json");
    assert_eq!(header("x-github-api-version"), "2022-11-28");
    assert!(header("user-agent").starts_with("slipway-promoter/"));
    assert_eq!(written.pull_request_url.as_deref(), Some("https://github.example/acme/gitops/pull/1"));

    // A stage not in PR mode still pushes to main directly.
    let direct = deployer.write(&app, &promotion("p-2.dev", "dev", "v7")).await.expect("direct write");
    assert_eq!((direct.branch.as_str(), direct.pull_request_url.as_deref()), ("main", None));
    assert_eq!(remote_head(&daemon, "main"), direct.commit);
    assert_eq!(fake.seen().len(), 1, "no pull request for a direct push");
}

#[tokio::test]
async fn a_retry_after_already_exists_opens_no_second_pull_request() {
    let daemon = GitDaemon::start().await.expect("git daemon");
    let url = seed(&daemon);
    let fake = FakeGithub::start().await;
    let app = app(&url);
    let first_work = tempfile::tempdir().expect("work");
    let first = deployer(first_work.path(), &fake.url, &["prod"]);
    let written = first.write(&app, &promotion("p-9.prod", "prod", "v8")).await.expect("first write");

    // A redelivery, even from a fresh promoter (empty cache): same branch and commit, same PR.
    let second_work = tempfile::tempdir().expect("work");
    let second = deployer(second_work.path(), &fake.url, &["prod"]);
    for deployer in [&first, &second] {
        let again = deployer.write(&app, &promotion("p-9.prod", "prod", "v8")).await.expect("retry");
        assert_eq!(again, written);
    }
    assert_eq!(fake.open().len(), 1, "one pull request");
    let seen = fake.seen();
    let posts = seen.iter().filter(|s| s.method == Method::POST).count();
    let lookups: Vec<&Seen> = seen.iter().filter(|s| s.method == Method::GET).collect();
    assert_eq!((posts, lookups.len()), (3, 2), "{seen:?}");
    let expected = HashMap::from([
        ("head".to_owned(), format!("acme:{}", written.branch)),
        ("state".to_owned(), "open".to_owned()),
    ]);
    assert!(lookups.iter().all(|s| s.query == expected), "{lookups:?}");
    let log = git(&["--git-dir", &git_dir(&daemon, "acme/gitops"), "log", "--format=%H", &written.branch]);
    assert_eq!(log.lines().count(), 2, "seed + one promotion commit: {log}");
}

#[tokio::test]
async fn a_refusal_is_permanent_and_an_unreachable_api_is_not() {
    let daemon = GitDaemon::start().await.expect("git daemon");
    let url = seed(&daemon);
    let app = app(&url);
    // Nothing listens on port 9 of localhost: a transport failure, worth a retry.
    let work = tempfile::tempdir().expect("work");
    let unreachable = deployer(work.path(), "http://127.0.0.1:9", &["prod"]);
    let error = unreachable.write(&app, &promotion("p-3.prod", "prod", "v1")).await.expect_err("no api");
    assert!(matches!(error, slipway_promoter::Error::Deploy { permanent: false, .. }), "{error:?}");
    // A repository the API does not know (the fake answers 404 off its route): permanent.
    let fake = FakeGithub::start().await;
    let refused = deployer(work.path(), &format!("{}/nowhere", fake.url), &["prod"]);
    let error = refused.write(&app, &promotion("p-3.prod", "prod", "v1")).await.expect_err("404");
    assert!(matches!(error, slipway_promoter::Error::Deploy { permanent: true, .. }), "{error:?}");
}

// ------------------------------------------------------------------ end to end

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn promotion_committed_carries_the_pull_request_url() {
    let nats = NatsServer::start().await.expect("nats");
    let daemon = GitDaemon::start().await.expect("git daemon");
    let db = slipway_testkit::shared_database().await.expect("database");
    let url = seed(&daemon);
    let fake = FakeGithub::start().await;
    let work = tempfile::tempdir().expect("work dir");
    let stage: StageConfig =
        serde_json::from_value(json!({ "name": "dev", "policy": "auto", "pull_request": true })).expect("stage");
    let mut config = Config {
        nats: NatsConfig { url: nats.url(), ack_wait_secs: 5, ..NatsConfig::default() },
        database: DatabaseConfig { url: Some(Secret::new(db)), ..DatabaseConfig::with_schema("promoter") },
        pipeline: PipelineConfig { stages: vec![stage], tick_secs: 1, ..PipelineConfig::default() },
        apps: vec![app(&url)],
        ..Config::default()
    };
    config.gitops.work_dir = work.path().to_owned();
    config.github.api_url.clone_from(&fake.url);
    config.github.token = Some(Secret::new(TOKEN));
    slipway_runtime::config::Validate::validate(&config).expect("valid config");

    let client = async_nats::connect(nats.url()).await.expect("connect");
    let js = async_nats::jetstream::new(client.clone());
    slipway_runtime::jetstream::ensure_stream(&js, &config.nats).await.expect("stream");
    let mut events = client.subscribe("slipway.promotion.>").await.expect("subscribe");
    let shutdown = CancellationToken::new();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let service = tokio::spawn(slipway_promoter::run(config.clone(), listener, shutdown.clone()));

    let build = v1::BuildSucceeded {
        build_id: "build-pr-1".into(),
        app: "web".into(),
        source: Some(v1::SourceRef {
            repository: "acme/web".into(),
            commit_sha: format!("{:0>40}", 5),
            r#ref: "refs/heads/main".into(),
            author: "dana".into(),
        }),
        image: Some(v1::ImageRef { repository: IMAGE.into(), tag: "v5".into(), digest: String::new() }),
        tags: vec!["v5".into()],
        duration_ms: 1,
        sbom_digest: String::new(),
    };
    Publisher::new(client, "/slipway/test/local").publish(&build).await.expect("publish build");

    let committed = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            let message = events.next().await.expect("subscription open");
            let Some(envelope) = message.headers.as_ref().and_then(|h| Envelope::from_headers(h).ok()) else {
                continue;
            };
            if envelope.kind == EventKind::PromotionCommitted {
                let payload = slipway_mesh::decode_payload(envelope.kind, &message.payload).expect("payload");
                let Payload::PromotionCommitted(committed) = payload else { panic!("{payload:?}") };
                return committed;
            }
        }
    })
    .await
    .expect("promotion.committed in time");

    let open = fake.open();
    assert_eq!(open.len(), 1, "{open:?}");
    assert_eq!(committed.pull_request_url, open[0].1);
    assert_eq!(committed.gitops_branch, open[0].0);
    assert!(committed.gitops_branch.starts_with("slipway/web-dev-"), "{committed:?}");
    assert_eq!(remote_head(&daemon, &committed.gitops_branch), committed.gitops_commit);
    assert_eq!(remote_show(&daemon, "main", "envs/dev/kustomization.yaml"), kustomization("dev"));

    shutdown.cancel();
    service.await.expect("join").expect("clean shutdown");
}
