//! The real `slipctl` binary against a promoter started in-process (real NATS and PostgreSQL; a
//! recording deployer stands in for git): `status` shows the matrix and who may approve,
//! `approve` moves staging, `watch` replays and follows, `--json` is machine-readable, a token can come from the config
//! file, and a wrong token, a too-low role, a bad name and an unreachable server each give
//! one clear line and their exit code.

use std::process::Output;
use std::sync::Arc;
use std::time::Duration;

use slipway_promoter::config::{AdminApiConfig, ApiToken, AppConfig, PipelineConfig, Role, StageConfig};
use slipway_promoter::deployer::RecordingDeployer;
use slipway_promoter::{Config, grpc::hash_token};
use slipway_proto::v1;
use slipway_runtime::config::{DatabaseConfig, NatsConfig, Secret};
use slipway_runtime::jetstream::Publisher;
use slipway_testkit::NatsServer;
use sqlx::{PgPool, Row};
use tokio::io::{AsyncBufReadExt as _, BufReader};
use tokio_util::sync::CancellationToken;

const VIEWER: &str = "viewer-secret";
const APPROVER: &str = "approver-secret";
/// An approver token whose name is not among staging's approvers.
const OUTSIDER: &str = "outsider-secret";

fn config(nats: &NatsServer, db: &str) -> Config {
    let stage = |json: serde_json::Value| -> StageConfig { serde_json::from_value(json).expect("stage") };
    let pipeline = PipelineConfig {
        stages: vec![
            stage(serde_json::json!({ "name": "dev", "policy": "auto" })),
            stage(serde_json::json!({ "name": "staging", "policy": "approval", "approvers": ["bob"] })),
        ],
        tick_secs: 1,
        ..PipelineConfig::default()
    };
    let app: AppConfig = serde_json::from_value(serde_json::json!({
        "name": "writer",
        "gitops": { "repository": "git://unused/gitops", "path": "envs/{stage}/kustomization.yaml", "kind": "kustomize" },
    }))
    .expect("app");
    let tokens = vec![
        ApiToken { name: "vera".into(), role: Role::Viewer, sha256: hash_token(VIEWER) },
        ApiToken { name: "bob".into(), role: Role::Approver, sha256: hash_token(APPROVER) },
        ApiToken { name: "mallory".into(), role: Role::Approver, sha256: hash_token(OUTSIDER) },
    ];
    Config {
        nats: NatsConfig { url: nats.url(), ack_wait_secs: 5, ..NatsConfig::default() },
        database: DatabaseConfig { url: Some(Secret::new(db.to_owned())), ..DatabaseConfig::with_schema("promoter") },
        pipeline,
        apps: vec![app],
        admin_api: AdminApiConfig { listen: None, tokens, tls: None },
        ..Config::default()
    }
}

/// Runs slipctl with a clean environment: no token or server from the caller's shell, and a
/// config directory of its own.
struct Slipctl {
    server: String,
    config_home: tempfile::TempDir,
}

impl Slipctl {
    async fn run(&self, token: Option<&str>, args: &[&str]) -> Output {
        let output = self.command(token, args).output();
        tokio::time::timeout(Duration::from_secs(30), output).await.expect("slipctl in time").expect("run")
    }

    fn command(&self, token: Option<&str>, args: &[&str]) -> tokio::process::Command {
        let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_slipctl"));
        command
            .args(args)
            .env_remove("SLIPWAY_TOKEN")
            .env_remove("SLIPCTL_CONFIG")
            .env("SLIPWAY_ADMIN_URL", &self.server)
            .env("XDG_CONFIG_HOME", self.config_home.path());
        if let Some(token) = token {
            command.env("SLIPWAY_TOKEN", token);
        }
        command
    }

    async fn json(&self, args: &[&str]) -> serde_json::Value {
        let out = self.run(Some(VIEWER), &[args, &["--json"]].concat()).await;
        assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
        serde_json::from_slice(&out.stdout).expect("json")
    }

    /// The `status --json` cell of `stage`, once `done` holds for it.
    async fn wait_stage(&self, stage: &str, done: impl Fn(&serde_json::Value) -> bool) -> serde_json::Value {
        for _ in 0..200 {
            let status = self.json(&["status"]).await;
            let cell = status["apps"][0]["stages"].as_array().and_then(|s| s.iter().find(|c| c["stage"] == stage));
            if let Some(cell) = cell.filter(|c| done(c)) {
                return cell.clone();
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("{stage} never got there: {}", self.json(&["status"]).await);
    }
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

async fn dev_promotion(pool: &PgPool) -> String {
    for _ in 0..200 {
        let row =
            sqlx::query("SELECT id FROM promotions WHERE app = 'writer' AND stage = 'dev' AND state = 'committed'")
                .fetch_optional(pool)
                .await
                .expect("query");
        if let Some(row) = row {
            return row.try_get("id").expect("id");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("dev was never committed");
}

fn build(tag: &str) -> v1::BuildSucceeded {
    v1::BuildSucceeded {
        build_id: format!("build-{tag}"),
        app: "writer".into(),
        source: Some(v1::SourceRef {
            repository: "acme/monorepo".into(),
            commit_sha: "b".repeat(40),
            ..Default::default()
        }),
        image: Some(v1::ImageRef {
            repository: "registry.local/writer".into(),
            tag: tag.into(),
            digest: String::new(),
        }),
        tags: vec![tag.into()],
        duration_ms: 1,
        sbom_digest: String::new(),
    }
}

async fn error_messages(slipctl: &Slipctl) {
    let wrong = slipctl.run(Some("not-a-token"), &["status"]).await;
    assert_eq!(wrong.status.code(), Some(4));
    assert!(text(&wrong.stderr).starts_with("slipctl: the token was not accepted"), "{}", text(&wrong.stderr));
    assert_eq!(text(&wrong.stderr).lines().count(), 1, "one line");
    let none = slipctl.run(None, &["status"]).await;
    assert_eq!(none.status.code(), Some(4));
    assert!(text(&none.stderr).contains("no token"), "{}", text(&none.stderr));
    let viewer = slipctl.run(Some(VIEWER), &["approve", "writer", "staging"]).await;
    assert_eq!(viewer.status.code(), Some(4));
    assert!(text(&viewer.stderr).contains("permission denied"), "{}", text(&viewer.stderr));
    // The pipeline's refusal is the server's answer (1), not a token or role problem (4).
    let outsider = slipctl.run(Some(OUTSIDER), &["approve", "writer", "staging"]).await;
    assert_eq!(outsider.status.code(), Some(1), "{}", text(&outsider.stderr));
    let said = text(&outsider.stderr);
    assert!(said.starts_with("slipctl: refused by the server: ") && said.contains("may approve: bob"), "{said}");
    // `slipctl verify` reaches the pipeline, which says why it cannot run there.
    let verify = slipctl.run(Some(APPROVER), &["verify", "writer", "staging"]).await;
    assert_eq!(verify.status.code(), Some(1), "{}", text(&verify.stderr));
    assert!(text(&verify.stderr).contains("refused by the server: no-checks"), "{}", text(&verify.stderr));
    let bad = slipctl.run(Some(APPROVER), &["approve", "Writer!", "staging"]).await;
    assert_eq!(bad.status.code(), Some(1));
    assert!(text(&bad.stderr).contains("invalid argument"), "{}", text(&bad.stderr));
    let nowhere = format!("http://127.0.0.1:{}", slipway_testkit::free_port());
    let gone = slipctl.run(Some(VIEWER), &["status", "--server", &nowhere]).await;
    assert_eq!(gone.status.code(), Some(3));
    let expected = format!("slipctl: cannot reach the Slipway admin API at {nowhere}");
    assert!(text(&gone.stderr).starts_with(&expected), "{}", text(&gone.stderr));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slipctl_shows_status_approves_and_explains_errors() {
    let nats = NatsServer::start().await.expect("nats");
    let db = slipway_testkit::shared_database().await.expect("database");
    let config = config(&nats, &db);
    let shutdown = CancellationToken::new();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let api = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind the admin API");
    let server = format!("http://{}", api.local_addr().expect("addr"));
    let listeners = slipway_promoter::Listeners { admin: listener, api: Some(api) };
    let deployer = Arc::new(RecordingDeployer::new());
    let service = tokio::spawn(slipway_promoter::serve(config.clone(), listeners, shutdown.clone(), deployer));
    let slipctl = Slipctl { server, config_home: tempfile::tempdir().expect("dir") };
    for _ in 0..150 {
        if slipctl.run(Some(VIEWER), &["status"]).await.status.success() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    let client = async_nats::connect(nats.url()).await.expect("connect");
    let publisher = Publisher::new(client, "/slipway/test/slipctl");
    let pool = slipway_runtime::db::connect(&config.database).await.expect("pool");
    publisher.publish(&build("v1")).await.expect("publish build");
    let dev = dev_promotion(&pool).await;
    let healthy = v1::PromotionHealthy { promotion_id: dev, app: "writer".into(), stage: "dev".into(), image: None };
    publisher.publish(&healthy).await.expect("publish healthy");
    slipctl.wait_stage("staging", |c| c["approvalsRequired"] == 1).await;

    let status = slipctl.run(Some(VIEWER), &["status"]).await;
    assert!(status.status.success(), "{}", text(&status.stderr));
    let out = text(&status.stdout);
    assert!(out.starts_with("APP"), "{out}");
    assert!(out.contains("writer  v1 healthy  - waiting 0/1"), "{out}");
    assert!(out.contains("writer/staging waits for approval (0/1); may approve: bob"), "{out}");
    assert!(!out.contains('\x1b'), "no colours when stdout is not a terminal: {out:?}");

    error_messages(&slipctl).await;

    let approved = slipctl.run(Some(APPROVER), &["approve", "writer", "staging"]).await;
    assert!(approved.status.success(), "{}", text(&approved.stderr));
    assert!(
        text(&approved.stdout).starts_with("approved writer/staging: 1/1 approvals; promoting"),
        "{}",
        text(&approved.stdout)
    );
    let staging = slipctl.wait_stage("staging", |c| c["desired"]["tag"] == "v1").await;
    assert_eq!(staging["health"], "HEALTH_PROGRESSING", "{staging}");

    // `watch` replays from a sequence and keeps following.
    let mut watch = slipctl.command(Some(VIEWER), &["watch", "--app", "writer", "--from-seq", "1"]);
    let mut child = watch.stdout(std::process::Stdio::piped()).kill_on_drop(true).spawn().expect("watch");
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let first = tokio::time::timeout(Duration::from_secs(10), lines.next_line()).await.expect("in time");
    let first = first.expect("read").expect("a line");
    assert!(first.contains("build.succeeded") && first.ends_with("slipway.build.succeeded.writer"), "{first}");
    child.kill().await.expect("stop watch");

    // A token from the config file works as well as one from the environment.
    let dir = slipctl.config_home.path().join("slipway");
    std::fs::create_dir_all(&dir).expect("mkdir");
    std::fs::write(dir.join("slipctl.toml"), format!("token = \"{VIEWER}\"\n")).expect("config file");
    let runs = slipctl.run(None, &["runs", "--json"]).await;
    assert!(runs.status.success(), "{}", text(&runs.stderr));
    let runs: serde_json::Value = serde_json::from_slice(&runs.stdout).expect("json");
    assert_eq!(runs["runs"][0]["app"], "writer", "{runs}");

    shutdown.cancel();
    service.await.expect("join").expect("service");
}
