//! A promoter serving its dashboard for the app page tests: `writer` through `dev` (auto) and
//! `prod` (approval by `bob` or team `sre`; `olga` is an admin), with tokens of each role, the
//! GitOps repository on a git daemon, and a plain HTTP client. Also a real source repository
//! ([`SourceRepo`]) whose pushes become `source.push` events as ingest sends them.
#![allow(dead_code)]

use std::time::Duration;

use serde_json::{Value, json};
use slipway_mesh::v1;
use slipway_promoter::config::Role;
use slipway_testkit::{GitDaemon, NatsServer};

use crate::common::running::Running;
use crate::common::writer::{self, IMAGE};
use crate::common::{git, seed_repo, stage_files};

/// (token, name, role): `bob` approves prod, `mallory` is an approver of nothing here, `olga`
/// an operator who is a pipeline admin.
pub const TOKENS: [(&str, &str, Role); 4] = [
    ("viewer-token", "vera", Role::Viewer),
    ("approver-token", "bob", Role::Approver),
    ("mallory-token", "mallory", Role::Approver),
    ("operator-token", "olga", Role::Operator),
];

/// The source repository the builds name.
pub const SOURCE_REPO: &str = "acme/monorepo";

pub struct Service {
    pub nats: NatsServer,
    pub daemon: GitDaemon,
    _work: tempfile::TempDir,
    pub promoter: Running,
    pub http: reqwest::Client,
}

impl Service {
    pub async fn start() -> Service {
        Service::start_with(0).await
    }

    /// With `extra` more apps besides `writer` (`app-000`, `app-001` ...), which never build.
    pub async fn start_with(extra: usize) -> Service {
        Service::start_custom(extra, |_| {}).await
    }

    /// As [`start_with`](Self::start_with), with `edit` applied to the config last.
    pub async fn start_custom(extra: usize, edit: impl FnOnce(&mut slipway_promoter::Config)) -> Service {
        let nats = NatsServer::start().await.expect("nats");
        let daemon = GitDaemon::start().await.expect("git daemon");
        let db = slipway_testkit::shared_database().await.expect("database");
        let text = |_: &str| format!("images:\n  - name: {IMAGE}\n    newTag: v0\n");
        let gitops = seed_repo(&daemon, "acme/gitops", &stage_files(&["dev", "prod"], text));
        let work = tempfile::tempdir().expect("work dir");
        let stages = [
            json!({ "name": "dev", "policy": "auto" }),
            json!({ "name": "prod", "policy": "approval", "approvers": ["bob"], "teams": ["sre"] }),
        ];
        let mut config = writer::config(&nats.url(), &db, &gitops, work.path(), &stages);
        config.pipeline.teams = [("sre".to_owned(), vec!["alice".to_owned()])].into();
        config.pipeline.admins = vec!["olga".to_owned()];
        config.admin_api.tokens = writer::tokens(&TOKENS);
        for i in 0..extra {
            let mut app = config.apps[0].clone();
            app.name = slipway_mesh::names::AppName::parse(&format!("app-{i:03}")).expect("name");
            config.apps.push(app);
        }
        edit(&mut config);
        let promoter = Running::start(&config, "/slipway/test/dashboard").await;
        let http = reqwest::Client::builder().timeout(Duration::from_secs(10)).build().expect("http");
        let service = Service { nats, daemon, _work: work, promoter, http };
        service.wait_api().await;
        service
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.promoter.admin)
    }

    async fn wait_api(&self) {
        for _ in 0..300 {
            if let Ok(answer) = self.http.get(self.url("/api/status")).send().await
                && answer.status() == 200
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("the dashboard API never answered 200");
    }

    pub async fn get(&self, path: &str) -> Value {
        let answer = self.http.get(self.url(path)).send().await.expect("GET");
        assert_eq!(answer.status(), 200, "GET {path}");
        answer.json().await.expect("JSON")
    }

    /// `build.succeeded` of `writer` at `tag` from `commit` of [`SOURCE_REPO`].
    pub async fn build(&self, tag: &str, commit: &str) {
        self.promoter.publisher.publish(&writer::build(tag, commit)).await.expect("publish build");
    }

    pub async fn healthy(&self, stage: &str, promotion_id: &str) {
        self.promoter.publisher.publish(&writer::healthy(stage, promotion_id)).await.expect("publish healthy");
    }

    /// The `/api/apps/writer` stage `stage`, once `ready` holds for it (20 s at most).
    pub async fn wait_stage(&self, stage: &str, ready: impl Fn(&Value) -> bool) -> Value {
        for _ in 0..400 {
            let view = self.get("/api/apps/writer").await;
            let found = view["stages"].as_array().and_then(|s| s.iter().find(|s| s["stage"] == stage)).cloned();
            if let Some(found) = found.filter(&ready) {
                return found;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("stage {stage} of writer never got ready: {}", self.get("/api/apps/writer").await);
    }

    pub async fn stop(self) {
        self.promoter.stop().await;
    }
}

/// A git repository in a temp dir whose commits are pushed to Slipway as `source.push`
/// events, built from `git` itself (sha, parent links, message, author, time).
pub struct SourceRepo {
    dir: tempfile::TempDir,
    /// The head at the last push ("" before the first).
    pushed: String,
}

impl SourceRepo {
    pub fn new() -> SourceRepo {
        let dir = tempfile::tempdir().expect("source dir");
        git(&["init", "-q", dir.path().to_str().expect("utf-8")]);
        SourceRepo { dir, pushed: String::new() }
    }

    fn path(&self) -> &str {
        self.dir.path().to_str().expect("utf-8")
    }

    /// Commits a change as `author` with `message`; its sha.
    pub fn commit(&self, author: &str, message: &str) -> String {
        let file = self.dir.path().join("app.txt");
        let before = std::fs::read_to_string(&file).unwrap_or_default();
        std::fs::write(&file, format!("{before}{message}\n")).expect("write");
        git(&["-C", self.path(), "add", "-A"]);
        let who = format!("{author} <{author}@example.invalid>");
        git(&["-C", self.path(), "commit", "-q", "--author", &who, "-m", message]);
        self.head()
    }

    pub fn head(&self) -> String {
        git(&["-C", self.path(), "rev-parse", "HEAD"]).trim().to_owned()
    }

    /// `git log --format=<format> from..to`, newest first, one line per commit.
    pub fn log(&self, range: &str, format: &str) -> Vec<String> {
        let out = git(&["-C", self.path(), "log", &format!("--format={format}"), range]);
        out.lines().map(str::to_owned).collect()
    }

    /// The `source.push` of everything committed since the last push, oldest first as GitHub
    /// lists a push's commits.
    pub fn push(&mut self) -> v1::SourcePush {
        let head = self.head();
        let range = if self.pushed.is_empty() { head.clone() } else { format!("{}..{head}", self.pushed) };
        let lines = self.log(&range, "%H%x1f%an%x1f%ct%x1f%B%x1e");
        let text = lines.join("\n");
        let mut commits: Vec<v1::Commit> = (text.split('\x1e'))
            .filter(|r| !r.trim().is_empty())
            .map(|record| {
                let mut fields = record.trim_start_matches('\n').splitn(4, '\x1f');
                let mut next = || fields.next().unwrap_or_default().to_owned();
                let (sha, author, time, message) = (next(), next(), next(), next());
                v1::Commit {
                    sha,
                    author,
                    message: message.trim().to_owned(),
                    timestamp: Some(pbjson_types::Timestamp { seconds: time.parse().expect("time"), nanos: 0 }),
                    ..Default::default()
                }
            })
            .collect();
        commits.reverse();
        let before = if self.pushed.is_empty() { "0".repeat(40) } else { self.pushed.clone() };
        self.pushed.clone_from(&head);
        v1::SourcePush {
            delivery_id: format!("delivery-{head}"),
            repository: SOURCE_REPO.into(),
            r#ref: "refs/heads/main".into(),
            before,
            after: head,
            pusher: "dana".into(),
            commit_count: u32::try_from(commits.len()).expect("count"),
            head_commit: commits.last().cloned(),
            commits,
            ..Default::default()
        }
    }
}
