//! The quickstart's demo for tests, step by step as `scripts/quickstart` does it: the test
//! kit's servers (nats-server, PostgreSQL, the Distribution registry, git daemon), the demo app
//! repository (apps/hello: a FROM-scratch Dockerfile) and the demo GitOps repository (kustomize
//! base + dev/staging/prod overlays) pushed to the daemon, the services' configs rendered from
//! `scripts/quickstart.d`, and the four services started with the quickstart's environment.
//!
//! [`Demo::start_apps`] renders the same demo as a monorepo of several apps: each app is a copy
//! of hello (its directory, image and overlays); the app catalog's directory generator in the
//! GitOps repository's slipway.yaml makes each an app, as in the quickstart.

use std::path::{Path, PathBuf};
use std::process::Command;

use slipway_testkit::{GitDaemon, Nats, Postgres, Registry, free_port, shared_database};
use tempfile::TempDir;

use crate::service::{Binaries, Service, Services};

/// The quickstart's templates.
pub const TEMPLATES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../scripts/quickstart.d");
/// The quickstart's default webhook secret.
pub const WEBHOOK_SECRET: &str = "quickstart-secret";
/// The demo admin token (the promoter is only told its SHA-256), named "demo" in promoter.toml.
pub const DEMO_TOKEN: &str = "slipway-demo-e2e";
/// The demo app.
pub const APP: &str = "hello";
/// The demo stages, in promotion order.
pub const STAGES: [&str; 3] = ["dev", "staging", "prod"];

/// Environment variables added to the quickstart's: for every service, and for the builder
/// only (each service refuses keys it does not know).
#[derive(Debug, Default, Clone, Copy)]
pub struct Overrides<'a> {
    pub all: &'a [(&'a str, &'a str)],
    pub builder: &'a [(&'a str, &'a str)],
}

/// Which PostgreSQL the services share.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Database {
    /// A fresh database in the test process's shared cluster.
    Shared,
    /// A cluster of its own, which the test may kill; its commits are synchronous so that a
    /// commit acknowledged before a kill survives it.
    Dedicated,
}

/// The servers, repositories and configs of one demo.
pub struct Demo {
    /// One nats-server, or a three-node cluster ([`Demo::start_on_cluster`]).
    pub nats: Nats,
    pub registry: Registry,
    pub git: GitDaemon,
    /// The dedicated cluster ([`Database::Dedicated`]).
    pub postgres: Option<Postgres>,
    pub db_url: String,
    /// The demo's apps (`[APP]` unless started with [`Demo::start_apps`]).
    pub apps: Vec<String>,
    /// `127.0.0.1:<port>/demo/hello`, the image the builder pushes.
    pub image: String,
    /// `git://…/demo/hello.git`
    pub app_url: String,
    /// `git://…/demo/gitops.git`
    pub gitops_url: String,
    /// The app repository's first commit.
    pub app_sha: String,
    /// `http://127.0.0.1:<port>/webhooks/github`
    pub webhook_url: String,
    /// `http://127.0.0.1:<port>`, the promoter's admin gRPC API.
    pub admin_api: String,
    webhook_port: u16,
    admin_api_port: u16,
    app_tree: PathBuf,
    // Last: the services' files live here.
    state: TempDir,
}

impl Demo {
    /// Starts the servers and pushes the demo repositories.
    pub async fn start(database: Database) -> Demo {
        Demo::start_apps(database, &[APP]).await
    }

    /// As [`Demo::start`], with `apps` (each a copy of hello) in place of hello.
    pub async fn start_apps(database: Database, apps: &[&str]) -> Demo {
        Demo::start_on(Nats::start(false).await.expect("nats-server"), database, apps).await
    }

    /// As [`Demo::start_apps`], on a three-node NATS cluster: the services keep the stream
    /// and their buckets at three replicas.
    pub async fn start_on_cluster(database: Database, apps: &[&str]) -> Demo {
        Demo::start_on(Nats::start(true).await.expect("nats cluster"), database, apps).await
    }

    async fn start_on(nats: Nats, database: Database, apps: &[&str]) -> Demo {
        assert!(!apps.is_empty(), "a demo needs an app");
        let state = tempfile::Builder::new().prefix("slipway-e2e-").tempdir().expect("scratch dir");
        for dir in ["config", "tmp", "work"] {
            std::fs::create_dir_all(state.path().join(dir)).expect("mkdir");
        }
        let registry = Registry::start().await.expect("registry");
        let git = GitDaemon::start().await.expect("git daemon");
        let (postgres, db_url) = database_for(database).await;
        let image = format!("{}/demo/{}", registry.host(), apps[0]);
        let (webhook_port, admin_api_port) = (free_port(), free_port());
        let mut demo = Demo {
            app_url: git.url("demo/hello"),
            gitops_url: git.url("demo/gitops"),
            app_sha: String::new(),
            webhook_url: format!("http://127.0.0.1:{webhook_port}/webhooks/github"),
            admin_api: format!("http://127.0.0.1:{admin_api_port}"),
            app_tree: state.path().join("work/app"),
            nats,
            registry,
            git,
            postgres,
            db_url,
            apps: apps.iter().map(|a| (*a).to_owned()).collect(),
            image,
            webhook_port,
            admin_api_port,
            state,
        };
        demo.app_sha = demo.create_app_repo();
        demo.create_gitops_repo();
        demo
    }

    /// The app repository: apps/<app> with the quickstart's Dockerfile and hello.txt, per app.
    fn create_app_repo(&self) -> String {
        for name in &self.apps {
            let app = self.app_tree.join("apps").join(name);
            std::fs::create_dir_all(&app).expect("mkdir app");
            for file in ["Dockerfile", "hello.txt"] {
                std::fs::copy(Path::new(TEMPLATES).join("app").join(file), app.join(file)).expect("copy app file");
            }
        }
        self.git.create_bare_repo("demo/hello").expect("bare app repo");
        create_repo(&self.app_tree, &self.app_url, "feat(hello): the demo app")
    }

    /// The GitOps repository: apps/<app>/{base,dev,staging,prod} rendered from the templates,
    /// per app (hello's names replaced by the app's).
    fn create_gitops_repo(&self) {
        let tree = self.state.path().join("work/gitops");
        for app in &self.apps {
            let dir = tree.join("apps").join(app);
            let image = self.image_of(app);
            let render_for = |template: &str, pairs: &[(&str, &str)]| render(template, pairs).replace(APP, app);
            write(&dir.join("base/kustomization.yaml"), &render_for("gitops/base/kustomization.yaml", &[]));
            write(&dir.join("base/deployment.yaml"), &render_for("gitops/base/deployment.yaml", &[("IMAGE", &image)]));
            for stage in STAGES {
                let text = render_for("gitops/overlay/kustomization.yaml", &[("IMAGE", &image), ("STAGE", stage)]);
                write(&dir.join(stage).join("kustomization.yaml"), &text);
            }
        }
        // The app catalog: its generator makes every apps/<app> of the app repository an app.
        let host = self.registry.host();
        let catalog = [
            ("APP_REPO_URL", self.app_url.as_str()),
            ("REGISTRY", host.as_str()),
            ("GITOPS_REPO_URL", &self.gitops_url),
        ];
        write(&tree.join("slipway.yaml"), &render("gitops/slipway.yaml", &catalog));
        self.git.create_bare_repo("demo/gitops").expect("bare gitops repo");
        create_repo(&tree, &self.gitops_url, "chore: hello at v0 everywhere");
    }

    /// Makes `stage` of the demo pipeline automatic (the quickstart's staging and prod wait for
    /// an approval): commits the change to the catalog in the GitOps repository. Call it before
    /// the services start, which then read the catalog with it.
    pub fn auto_stage(&self, stage: &str) {
        let tree = self.state.path().join("work/gitops");
        let path = tree.join("slipway.yaml");
        let text = std::fs::read_to_string(&path).expect("the catalog");
        let approval = format!("{{ name: {stage}, policy: approval, approvers: [demo] }}");
        let auto = text.replace(&approval, &format!("{{ name: {stage}, policy: auto }}"));
        assert_ne!(auto, text, "no stage {stage} waiting for approval in the catalog");
        write(&path, &auto);
        git(&tree, &["commit", "-q", "-a", "-m", &format!("chore: {stage} automatic")]);
        git(&tree, &["push", "-q", &self.gitops_url, "HEAD:refs/heads/main"]);
    }

    /// Renders the services' configs as the quickstart does; `notifier` is the notifier's
    /// whole config (the quickstart's is empty: nothing to send to).
    pub fn write_configs(&self, notifier: &str) {
        let state = self.state.path().display().to_string();
        let token_sha = slipway_promoter::grpc::hash_token(DEMO_TOKEN);
        let port = self.admin_api_port.to_string();
        let config = |name: &str| self.state.path().join("config").join(name);
        let ingest =
            [("STATE", state.as_str()), ("GITOPS_REPO_URL", &self.gitops_url), ("APP_REPO_URL", &self.app_url)];
        write(&config("ingest.toml"), &render("ingest.toml", &ingest));
        write(&config("builder.toml"), &render("builder.toml", &[("STATE", state.as_str())]));
        let promoter = [("STATE", state.as_str()), ("ADMIN_API_PORT", &port), ("TOKEN_SHA256", &token_sha)];
        write(&config("promoter.toml"), &render("promoter.toml", &promoter));
        write(&config("notifier.toml"), notifier);
    }

    /// `127.0.0.1:<port>/demo/<app>`, the image the builder pushes for `app`.
    pub fn image_of(&self, app: &str) -> String {
        format!("{}/demo/{app}", self.registry.host())
    }

    /// Starts the four services with the quickstart's environment plus `extra` and waits
    /// until each is ready.
    pub async fn start_services(&self, bins: Binaries, extra: Overrides<'_>) -> Services {
        self.start_replica(bins, extra, &Replica { index: 1, webhook_port: self.webhook_port, api_port: None }).await
    }

    /// Starts one replica of each of the four services, as [`Demo::start_services`] does for
    /// the first: a replica after the first listens on its own ports and keeps its own files
    /// (spool, clones, image store), as a pod of its own would, and reads
    /// `config/notifier-<index>.toml` when [`Demo::write_notifier_config`] wrote one.
    pub async fn start_replica(&self, bins: Binaries, extra: Overrides<'_>, replica: &Replica) -> Services {
        let owned = |pairs: &[(&str, &str)]| -> Vec<(String, String)> {
            pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
        };
        let spawn = |name: &'static str, bin: &'static str, mut own: Vec<(String, String)>| {
            let admin_port = free_port();
            let mut env = self.service_env(name, admin_port);
            own.extend(owned(extra.all));
            if name == "builder" {
                own.extend(owned(extra.builder));
            }
            env.extend(own);
            Service::spawn(name, bin, env, admin_port)
        };
        let state = self.state.path();
        let own_dir = |name: &str| {
            let dir = if replica.index == 1 { name.to_owned() } else { format!("{name}-{}", replica.index) };
            state.join(dir).display().to_string()
        };
        let mut ingest = vec![
            ("SLIPWAY_GITHUB__WEBHOOK_SECRETS".to_owned(), format!("[{WEBHOOK_SECRET}]")),
            ("SLIPWAY_SPOOL__DIR".to_owned(), own_dir("spool")),
            ("SLIPWAY_HTTP__LISTEN".to_owned(), format!("127.0.0.1:{}", replica.webhook_port)),
        ];
        // Not in the quickstart: the notifier's callback listener defaults to port 8084, which
        // tests running side by side would fight over.
        let mut notifier = vec![("SLIPWAY_HTTP__LISTEN".to_owned(), format!("127.0.0.1:{}", free_port()))];
        let (mut builder, mut promoter) = (Vec::new(), Vec::new());
        if replica.index > 1 {
            ingest.push(("SLIPWAY_CATALOG__WORK_DIR".to_owned(), own_dir("ingest-catalog")));
            builder.push(("SLIPWAY_BUILD__WORK_DIR".to_owned(), own_dir("builder")));
            promoter.push(("SLIPWAY_GITOPS__WORK_DIR".to_owned(), own_dir("gitops")));
            let own_config = state.join("config").join(format!("notifier-{}.toml", replica.index));
            if own_config.exists() {
                notifier.push(("SLIPWAY_CONFIG".to_owned(), own_config.display().to_string()));
            }
        }
        if let Some(port) = replica.api_port {
            promoter.push(("SLIPWAY_ADMIN_API__LISTEN".to_owned(), format!("127.0.0.1:{port}")));
        }
        let services = Services {
            ingest: spawn("ingest", bins.ingest, ingest),
            builder: spawn("builder", bins.builder, builder),
            promoter: spawn("promoter", bins.promoter, promoter),
            notifier: spawn("notifier", bins.notifier, notifier),
        };
        for service in [&services.ingest, &services.builder, &services.promoter, &services.notifier] {
            service.wait_ready().await;
        }
        services
    }

    /// Writes `config/notifier-<replica>.toml`, the notifier config of that replica.
    pub fn write_notifier_config(&self, replica: usize, text: &str) {
        write(&self.state.path().join("config").join(format!("notifier-{replica}.toml")), text);
    }

    /// The port of [`Demo::webhook_url`].
    pub fn webhook_port(&self) -> u16 {
        self.webhook_port
    }

    fn service_env(&self, name: &str, admin_port: u16) -> Vec<(String, String)> {
        let state = self.state.path();
        [
            ("SLIPWAY_CONFIG", state.join("config").join(format!("{name}.toml")).display().to_string()),
            ("SLIPWAY_NATS__URL", self.nats.url()),
            ("SLIPWAY_NATS__STREAM_REPLICAS", self.nats.replicas().to_string()),
            ("SLIPWAY_DATABASE__URL", self.db_url.clone()),
            ("SLIPWAY_ADMIN__LISTEN", format!("127.0.0.1:{admin_port}")),
            ("SLIPWAY_TELEMETRY__LOG_FORMAT", "json".to_owned()),
            ("TMPDIR", state.join("tmp").display().to_string()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect()
    }

    /// Commits a new apps/hello/hello.txt holding `text` on main of the app repository and
    /// pushes it straight into the bare repository (not through the daemon, which a fault test
    /// may have cut); returns the commit's sha.
    pub fn commit_app(&self, text: &str) -> String {
        self.commit_app_of(APP, text)
    }

    /// As [`Demo::commit_app`], for apps/<app>/hello.txt.
    pub fn commit_app_of(&self, app: &str, text: &str) -> String {
        self.app_repo().commit(app, text)
    }

    /// A handle on the app repository that a task can own while the test holds the demo.
    pub fn app_repo(&self) -> AppRepo {
        AppRepo { tree: self.app_tree.clone(), bare: self.git.repo_path("demo/hello") }
    }

    /// The bare GitOps repository on disk.
    pub fn gitops_path(&self) -> PathBuf {
        self.git.repo_path("demo/gitops")
    }

    /// `path` of the GitOps repository's main branch (empty if it does not exist).
    pub fn gitops_show(&self, path: &str) -> String {
        crate::inspect::show(&self.gitops_path(), "main", path)
    }

    /// The image tag an overlay of the demo app sets.
    pub fn overlay_tag(&self, stage: &str) -> String {
        self.overlay_tag_of(APP, stage)
    }

    /// The image tag an overlay of `app` sets.
    pub fn overlay_tag_of(&self, app: &str, stage: &str) -> String {
        let text = self.gitops_show(&format!("apps/{app}/{stage}/kustomization.yaml"));
        crate::inspect::new_tag(&text).unwrap_or_default()
    }

    /// The demo's scratch directory (configs, the services' files).
    pub fn scratch(&self) -> &Path {
        self.state.path()
    }

    /// A buildah wrapper (its path) that pauses `secs` before each `bud`, so that a build lasts
    /// long enough for a fault injected once it started to hit it mid-build.
    pub fn slow_buildah(&self, secs: u64) -> String {
        let path = self.scratch().join("slow-buildah");
        let script = format!(
            "#!/bin/sh\nfor a in \"$@\"; do if [ \"$a\" = bud ]; then sleep {secs}; fi; done\nexec buildah \"$@\"\n"
        );
        std::fs::write(&path, script).expect("write slow-buildah");
        std::process::Command::new("chmod").arg("+x").arg(&path).status().expect("chmod");
        path.display().to_string()
    }

    /// The name of the services' database.
    pub fn db_name(&self) -> &str {
        self.db_url.rsplit('/').next().unwrap_or_default()
    }
}

/// Where one replica of the services listens (see [`Demo::start_replica`]): 1 is the first.
#[derive(Debug, Clone, Copy)]
pub struct Replica {
    pub index: usize,
    /// Ingest's webhook port.
    pub webhook_port: u16,
    /// The promoter's admin gRPC port; `None` keeps the demo's.
    pub api_port: Option<u16>,
}

/// The demo app repository's working tree and its bare repository.
#[derive(Debug, Clone)]
pub struct AppRepo {
    tree: PathBuf,
    bare: PathBuf,
}

impl AppRepo {
    /// Commits a new apps/<app>/hello.txt holding `text` on main and pushes it straight into
    /// the bare repository (not through the daemon, which a fault test may have cut); returns
    /// the commit's sha. Commits must not race: one caller at a time.
    pub fn commit(&self, app: &str, text: &str) -> String {
        write(&self.tree.join("apps").join(app).join("hello.txt"), &format!("{text}\n"));
        let bare = self.bare.display().to_string();
        git(&self.tree, &["commit", "-q", "-a", "-m", &format!("feat({app}): {text}")]);
        git(&self.tree, &["push", "-q", &bare, "HEAD:refs/heads/main"]);
        git(&self.tree, &["rev-parse", "HEAD"])
    }

    /// Commits a new apps/<app>/hello.txt holding `text` on main without pushing it (see
    /// [`AppRepo::push`]); returns the commit's sha.
    pub fn commit_local(&self, app: &str, text: &str) -> String {
        write(&self.tree.join("apps").join(app).join("hello.txt"), &format!("{text}\n"));
        git(&self.tree, &["commit", "-q", "-a", "-m", &format!("feat({app}): {text}")]);
        git(&self.tree, &["rev-parse", "HEAD"])
    }

    /// Pushes main straight into the bare repository.
    pub fn push(&self) {
        git(&self.tree, &["push", "-q", &self.bare.display().to_string(), "HEAD:refs/heads/main"]);
    }
}

async fn database_for(database: Database) -> (Option<Postgres>, String) {
    match database {
        Database::Shared => (None, shared_database().await.expect("database")),
        Database::Dedicated => {
            let pg = Postgres::start().await.expect("postgres");
            let url = pg.create_database().await.expect("create database");
            let name = url.rsplit('/').next().unwrap_or_default().to_owned();
            // The test kit's cluster commits asynchronously; a kill must not lose acknowledged
            // commits, as it would not on a production server.
            let sql = format!("ALTER DATABASE \"{name}\" SET synchronous_commit = on");
            pg.psql("postgres", &sql).await.expect("synchronous_commit");
            (Some(pg), url)
        }
    }
}

/// A file of `scripts/quickstart.d` with each `@KEY@` replaced, as the quickstart's `render`.
pub fn render(template: &str, pairs: &[(&str, &str)]) -> String {
    let path = Path::new(TEMPLATES).join(template);
    let mut text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    for (key, value) in pairs {
        text = text.replace(&format!("@{key}@"), value);
    }
    text
}

fn write(path: &Path, text: &str) {
    std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
    std::fs::write(path, text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
}

/// Commits the whole tree as the first commit and pushes it to `url`; returns its sha.
fn create_repo(tree: &Path, url: &str, message: &str) -> String {
    git(tree, &["init", "-q", "-b", "main"]);
    git(tree, &["add", "-A"]);
    git(tree, &["commit", "-q", "-m", message]);
    git(tree, &["push", "-q", url, "HEAD:refs/heads/main"]);
    git(tree, &["rev-parse", "HEAD"])
}

/// git without the user's identity, hooks or signing settings, as the quickstart's `qgit`.
pub fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .current_dir(dir)
        .args(["-c", "user.name=Slipway E2E", "-c", "user.email=e2e@example.invalid", "-c", "commit.gpgsign=false"])
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("git {args:?}: {e}"));
    assert!(out.status.success(), "git {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}
