//! What the builder's integration tests share: the test kit's real servers (nats-server,
//! PostgreSQL, the Distribution registry, git daemon), a test repository with a
//! `FROM scratch` + `COPY` Dockerfile, a builder run in-process, and a reader of the
//! `SLIPWAY` stream's `build.*` events.

#![allow(dead_code)]

use serde_json::Value;
use slipway_builder::config::{AppConfig, BuildConfig};
use slipway_builder::scan::ScanConfig;
use slipway_builder::{Config, run};
use slipway_mesh::v1::{BuildRequested, SourceRef};
use slipway_runtime::config::{DatabaseConfig, NatsConfig, Secret};
use slipway_runtime::jetstream::Publisher;
use slipway_testkit::{GitDaemon, NatsServer, Registry};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// The servers of one test.
pub struct World {
    pub nats: NatsServer,
    pub db: String,
    pub registry: Registry,
    pub git: GitDaemon,
    pub repo_url: String,
    pub work: tempfile::TempDir,
    checkout: tempfile::TempDir,
}

impl World {
    pub async fn start() -> Self {
        let (nats, registry, git) = (
            NatsServer::start().await.expect("nats"),
            Registry::start().await.expect("registry"),
            GitDaemon::start().await.expect("git daemon"),
        );
        let db = slipway_testkit::shared_database().await.expect("database");
        let repo_url = git.create_bare_repo("acme/monorepo").expect("bare repo");
        let checkout = tempfile::tempdir().expect("checkout dir");
        sh(checkout.path(), "git", &["init", "-q", "-b", "main"]);
        Self { nats, db, registry, git, repo_url, work: tempfile::tempdir().expect("work dir"), checkout }
    }

    /// Commits `files` (path, content) on top of the last commit and pushes it to `branch`;
    /// returns the commit sha.
    pub fn commit(&self, branch: &str, files: &[(&str, &str)]) -> String {
        let dir = self.checkout.path();
        for (path, content) in files {
            let path = dir.join(path);
            std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
            std::fs::write(path, content).expect("write");
        }
        sh(dir, "git", &["add", "-A"]);
        sh(dir, "git", &["commit", "-q", "--allow-empty", "-m", "test commit"]);
        let bare = self.git.repo_path("acme/monorepo");
        sh(dir, "git", &["push", "-q", "-f", &bare.display().to_string(), &format!("HEAD:refs/heads/{branch}")]);
        sh(dir, "git", &["rev-parse", "HEAD"])
    }

    /// A commit of the writer app: `FROM scratch` + `COPY hello.txt`.
    pub fn commit_writer(&self, branch: &str, hello: &str) -> String {
        self.commit(
            branch,
            &[
                ("apps/writer/Dockerfile", "FROM scratch\nCOPY hello.txt /hello.txt\n"),
                ("apps/writer/hello.txt", hello),
            ],
        )
    }

    /// The `writer` app, built from `apps/writer`, pushed to the test registry.
    pub fn writer_app(&self) -> AppConfig {
        serde_json::from_value(serde_json::json!({
            "name": "writer",
            "repository": self.repo_url,
            "context": "apps/writer",
            "image": format!("{}/acme/writer", self.registry.host()),
            "moving_tags": ["latest"],
        }))
        .expect("app config")
    }

    /// A builder config against this world's servers.
    pub fn config(&self) -> Config {
        Config {
            nats: NatsConfig { url: self.nats.url(), ack_wait_secs: 4, ..NatsConfig::default() },
            database: DatabaseConfig {
                url: Some(Secret::new(self.db.clone())),
                ..DatabaseConfig::with_schema("builder")
            },
            build: BuildConfig {
                work_dir: self.work.path().to_owned(),
                registry_tls: false,
                concurrency: 2,
                ..BuildConfig::default()
            },
            apps: vec![self.writer_app()],
            scan: ScanConfig {
                syft: slipway_testkit::syft_program().expect("syft (scripts/bootstrap installs it)"),
                ..ScanConfig::default()
            },
            ..Config::default()
        }
    }

    pub async fn publisher(&self) -> Publisher {
        let client = async_nats::connect(self.nats.url()).await.expect("connect");
        // The stream may not exist before a builder booted: make sure it does.
        let js = async_nats::jetstream::new(client.clone());
        slipway_runtime::jetstream::ensure_stream(&js, &NatsConfig { url: self.nats.url(), ..NatsConfig::default() })
            .await
            .expect("stream");
        Publisher::new(client, "/slipway/test/local")
    }

    pub async fn js(&self) -> async_nats::jetstream::Context {
        async_nats::jetstream::new(async_nats::connect(self.nats.url()).await.expect("connect"))
    }

    /// The registry's digest of `acme/writer:<tag>`.
    pub async fn registry_digest(&self, tag: &str) -> Option<String> {
        let resp = http()
            .head(format!("{}/v2/acme/writer/manifests/{tag}", self.registry.url()))
            .header(
                "accept",
                "application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json",
            )
            .send()
            .await
            .expect("HEAD manifest");
        if !resp.status().is_success() {
            return None;
        }
        resp.headers().get("docker-content-digest").map(|v| v.to_str().expect("ascii").to_owned())
    }

    /// The manifest of `acme/writer@<reference>`.
    pub async fn manifest(&self, reference: &str) -> Value {
        http()
            .get(format!("{}/v2/acme/writer/manifests/{reference}", self.registry.url()))
            .header(
                "accept",
                "application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json",
            )
            .send()
            .await
            .expect("GET manifest")
            .json()
            .await
            .expect("manifest JSON")
    }

    pub async fn blob_status(&self, digest: &str) -> u16 {
        let url = format!("{}/v2/acme/writer/blobs/{digest}", self.registry.url());
        http().head(url).send().await.expect("HEAD blob").status().as_u16()
    }
}

pub fn http() -> reqwest::Client {
    reqwest::Client::builder().no_proxy().build().expect("client")
}

pub fn sh(dir: &Path, program: &str, args: &[&str]) -> String {
    let out = Command::new(program)
        .current_dir(dir)
        .args(if program == "git" {
            vec!["-c", "user.name=Test", "-c", "user.email=test@example.invalid"]
        } else {
            vec![]
        })
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{program}: {e}"));
    assert!(out.status.success(), "{program} {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

pub fn request(build_id: &str, app: &str, sha: &str, git_ref: &str, extra_tags: &[&str]) -> BuildRequested {
    BuildRequested {
        build_id: build_id.to_owned(),
        app: app.to_owned(),
        source: Some(SourceRef {
            repository: "acme/monorepo".to_owned(),
            commit_sha: sha.to_owned(),
            r#ref: git_ref.to_owned(),
            author: "test".to_owned(),
        }),
        extra_tags: extra_tags.iter().map(|t| (*t).to_owned()).collect(),
        reason: "push".to_owned(),
        conventional_type: String::new(),
        catalog_revision: 0,
    }
}

/// A builder running in this test process.
pub struct Builder {
    pub admin: String,
    pub shutdown: CancellationToken,
    pub task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl Builder {
    pub async fn start(config: Config) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let admin = format!("http://{}", listener.local_addr().expect("addr"));
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(run(config, listener, shutdown.clone()));
        for _ in 0..300 {
            if let Ok(r) = http().get(format!("{admin}/readyz")).send().await
                && r.status() == 200
            {
                return Self { admin, shutdown, task };
            }
            assert!(!task.is_finished(), "builder exited during start: {:?}", task.await);
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("builder never became ready");
    }

    pub async fn stop(self) {
        self.shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(30), self.task)
            .await
            .expect("builder stops")
            .expect("join")
            .expect("builder run");
    }
}

/// One `slipway.build.*` event from the stream.
#[derive(Debug, Clone)]
pub struct Event {
    pub kind: String,
    pub id: String,
    pub body: Value,
}

/// Every `build.started/succeeded/failed` event in the stream, in order.
pub async fn build_events(js: &async_nats::jetstream::Context) -> Vec<Event> {
    let mut out = Vec::new();
    for m in slipway_testkit::stream_messages(js, "SLIPWAY").await.expect("stream") {
        if m.subject.starts_with("slipway.build.requested") || !m.subject.starts_with("slipway.build.") {
            continue;
        }
        let kind = m.subject.split('.').nth(2).unwrap_or_default().to_owned();
        let id = m.headers.get("ce-id").map(|v| v.as_str().to_owned()).unwrap_or_default();
        out.push(Event { kind, id, body: serde_json::from_slice(&m.payload).expect("event JSON") });
    }
    out
}

/// Waits until `done(events)` holds; panics with the events seen after `timeout`.
pub async fn wait_events(
    js: &async_nats::jetstream::Context,
    timeout: Duration,
    done: impl Fn(&[Event]) -> bool,
) -> Vec<Event> {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let events = build_events(js).await;
        if done(&events) {
            return events;
        }
        assert!(tokio::time::Instant::now() < deadline, "timed out; events so far: {events:#?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The events of kind `kind` for `build_id`.
pub fn of<'a>(events: &'a [Event], kind: &str, build_id: &str) -> Vec<&'a Event> {
    events.iter().filter(|e| e.kind == kind && e.body["buildId"] == build_id).collect()
}

/// A `buildah` that waits `secs` before `bud`, then runs the real one: room for a test to act
/// while a real build is in progress.
pub fn slow_buildah(dir: &Path, secs: u32) -> PathBuf {
    let path = dir.join("slow-buildah");
    let script = format!(
        "#!/bin/sh\nfor a in \"$@\"; do if [ \"$a\" = bud ]; then sleep {secs}; fi; done\nexec buildah \"$@\"\n"
    );
    std::fs::write(&path, script).expect("write script");
    sh(dir, "chmod", &["+x", &path.display().to_string()]);
    path
}

/// A `buildah` that runs the real one and appends `<exit code> <arguments>` of every `bud` and
/// `push` to `log`: the record of which builds really ran, and how they ended.
pub fn counting_buildah(dir: &Path, log: &Path) -> PathBuf {
    let path = dir.join("counting-buildah");
    let script = format!(
        "#!/bin/sh\nbuildah \"$@\"\ncode=$?\nfor a in \"$@\"; do case $a in bud|push) echo \"$code $*\" >> {log:?};; esac; done\nexit $code\n"
    );
    std::fs::write(&path, script).expect("write script");
    sh(dir, "chmod", &["+x", &path.display().to_string()]);
    path
}
