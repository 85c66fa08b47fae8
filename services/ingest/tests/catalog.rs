//! The app catalog live in ingest, against real NATS (KV and object store), PostgreSQL and a
//! git daemon, restarting nothing: a push that adds an app to the catalog, a push that adds
//! a generator-matched directory (the new app builds on that same push), and a broken
//! catalog refused with file:line while the next build runs under the previous revision.

mod common;

use common::{Ingest, stream_messages};
use serde_json::{Value, json};
use slipway_runtime::catalog::CatalogStore;
use slipway_testkit::{GitDaemon, NatsServer};
use std::path::Path;

fn git(dir: &Path, args: &[&str]) -> String {
    let out = std::process::Command::new("git")
        .args(["-c", "user.name=Test", "-c", "user.email=test@example.invalid", "-c", "commit.gpgsign=false"])
        .args(args)
        .current_dir(dir)
        .output()
        .expect("git");
    assert!(out.status.success(), "git {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// A working copy of a daemon repository; `commit` writes files and pushes, returning the sha.
struct Work(tempfile::TempDir);

impl Work {
    fn clone(url: &str) -> Self {
        let dir = tempfile::tempdir().expect("tmp");
        git(dir.path(), &["init", "-q", "-b", "main"]);
        git(dir.path(), &["remote", "add", "origin", url]);
        Work(dir)
    }

    fn commit(&self, files: &[(&str, &str)]) -> String {
        for (path, text) in files {
            let path = self.0.path().join(path);
            std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
            std::fs::write(path, text).expect("write");
        }
        git(self.0.path(), &["add", "-A"]);
        git(self.0.path(), &["commit", "-q", "-m", "change"]);
        git(self.0.path(), &["push", "-q", "origin", "main"]);
        git(self.0.path(), &["rev-parse", "HEAD"])
    }
}

const CATALOG: &str = "\
pipelines:
  standard:
    stages:
      - { name: dev, policy: auto }
apps:
  - name: writer
    source: { repository: acme/mono, paths: [\"apps/writer/**\"] }
    image: registry.example/acme/writer
    deploy: { repository: git://h/deploy.git, path: \"{stage}/writer.yaml\", kind: kustomize }
    pipeline: standard
generators:
  - directory: { repository: acme/mono, glob: \"apps/*\" }
    template:
      source: { repository: acme/mono, paths: [\"{dir}/**\"] }
      image: registry.example/acme/{name}
      deploy: { repository: git://h/deploy.git, path: \"{stage}/{name}.yaml\", kind: kustomize }
      pipeline: standard
";

const READER: &str = "  - name: reader
    source: { repository: acme/mono, paths: [\"libs/reader/**\"] }
    image: registry.example/acme/reader
    deploy: { repository: git://h/deploy.git, path: \"{stage}/reader.yaml\", kind: kustomize }
    pipeline: standard
";

fn push(repo: &str, after: &str, added: &[&str]) -> Vec<u8> {
    let body = json!({
        "ref": "refs/heads/main", "before": "0".repeat(40), "after": after,
        "repository": { "full_name": repo }, "pusher": { "name": "octocat" },
        "commits": [{ "id": after, "message": "change", "added": added, "modified": [], "removed": [],
                      "author": { "username": "octocat" } }],
    });
    serde_json::to_vec(&body).expect("json")
}

/// The apps built for `delivery`, and every catalog event so far.
async fn outcome(nats: &NatsServer, delivery: &str) -> (Vec<String>, Vec<Value>) {
    let messages = stream_messages(nats).await;
    let prefix = format!("gh-{delivery}-build-");
    let mut builds: Vec<String> =
        messages.iter().filter_map(|(_, b)| b["buildId"].as_str()?.strip_prefix(&prefix).map(String::from)).collect();
    builds.sort();
    let catalog = messages.into_iter().filter(|(s, _)| s.starts_with("slipway.catalog.")).map(|(s, mut b)| {
        b["subject"] = s.into();
        b
    });
    (builds, catalog.collect())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_catalog_is_live_from_git_pushes() {
    let nats = NatsServer::start().await.expect("nats");
    let daemon = GitDaemon::start().await.expect("git daemon");
    let (deploy_url, mono_url) =
        (daemon.create_bare_repo("deploy").expect("repo"), daemon.create_bare_repo("mono").expect("repo"));
    let (deploy, mono) = (Work::clone(&deploy_url), Work::clone(&mono_url));
    let first = deploy.commit(&[("slipway.yaml", CATALOG)]);
    mono.commit(&[("apps/writer/Dockerfile", "FROM scratch\n")]);
    let work = tempfile::tempdir().expect("work");
    let work_dir = work.path().to_owned();
    let ingest = Ingest::start(&nats, move |c| {
        c.apps.clear();
        c.catalog.repository = Some(deploy_url.clone());
        c.catalog.github_repository = Some(slipway_mesh::names::RepoName::parse("acme/deploy").expect("name"));
        c.catalog.sources.insert("acme/mono".into(), mono_url.clone());
        c.catalog.work_dir = work_dir;
    })
    .await;

    // At start: the branch head is read and published.
    let js = async_nats::jetstream::new(async_nats::connect(nats.url()).await.expect("connect"));
    let store = CatalogStore::open(&js, 1).await.expect("catalog store");
    // Ready (NATS, PostgreSQL) comes before the catalog is read: wait for its revision.
    let mut current = None;
    for _ in 0..200 {
        current = store.current().await.expect("current");
        if current.is_some() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let revision = current.expect("published at start");
    assert_eq!((revision.commit.as_str(), revision.apps), (first.as_str(), 1));

    let (status, body) =
        ingest.deliver("push", "d-1", &push("acme/mono", &"1".repeat(40), &["apps/writer/main.rs"])).await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(outcome(&nats, "d-1").await.0, ["writer"]);

    // 1. A push to the catalog adds reader; the catalog's push webhook reloads it.
    let with_reader = CATALOG.replace("generators:", &format!("{READER}generators:"));
    let second = deploy.commit(&[("slipway.yaml", &with_reader)]);
    let (status, _) = ingest.deliver("push", "d-2", &push("acme/deploy", &second, &["slipway.yaml"])).await;
    assert_eq!(status, 202);
    let (status, _) = ingest.deliver("push", "d-3", &push("acme/mono", &"3".repeat(40), &["libs/reader/lib.rs"])).await;
    assert_eq!(status, 202);
    let (builds, events) = outcome(&nats, "d-3").await;
    assert_eq!(builds, ["reader"], "the app added by the catalog push builds: {events:?}");
    assert_eq!(store.current().await.expect("current").expect("rev").commit, second);

    // 2. A push adding apps/new/Dockerfile under the generator: `new` builds on that push.
    let added = mono.commit(&[("apps/new/Dockerfile", "FROM scratch\n"), ("apps/new/main.rs", "fn main() {}\n")]);
    let (status, _) =
        ingest.deliver("push", "d-4", &push("acme/mono", &added, &["apps/new/Dockerfile", "apps/new/main.rs"])).await;
    assert_eq!(status, 202);
    assert_eq!(outcome(&nats, "d-4").await.0, ["new"]);

    // 3. A broken catalog is refused naming file:line; the next build runs as before.
    let broken =
        deploy.commit(&[("slipway.yaml", &with_reader.replace("    pipeline: standard\n", "    pipeline: fast\n"))]);
    let (status, _) = ingest.deliver("push", "d-5", &push("acme/deploy", &broken, &["slipway.yaml"])).await;
    assert_eq!(status, 202);
    let (status, _) = ingest
        .deliver("push", "d-6", &push("acme/mono", &"6".repeat(40), &["apps/writer/x.rs", "apps/new/y.rs"]))
        .await;
    assert_eq!(status, 202);
    let (builds, events) = outcome(&nats, "d-6").await;
    assert_eq!(builds, ["new", "writer"], "under the previous revision");
    let rejected =
        events.iter().find(|e| e["subject"] == "slipway.catalog.rejected.acme-deploy").expect("refusal event");
    assert_eq!(rejected["commitSha"], broken);
    assert_eq!(rejected["problems"][0]["file"], "slipway.yaml");
    assert_eq!(rejected["problems"][0]["key"], "apps[0].pipeline");
    assert!(rejected["problems"][0]["line"].as_u64().is_some_and(|l| l == 10), "{rejected}");
    assert_eq!(rejected["inForceCommit"], store.current().await.expect("current").expect("rev").commit);
    let published = events.iter().filter(|e| e["subject"] == "slipway.catalog.published.acme-deploy").count();
    assert_eq!(published, 3, "at start, with reader, with new: {events:?}");
    let history = store.history().await.expect("history");
    assert_eq!(history.len(), 3);
    ingest.stop().await;
}

/// The hourly-ish recheck finds the branch moved by commits that leave the catalog as it is
/// (the promoter's own, to the overlays): nothing is published, so no service loads the same
/// catalog again. A push of such a commit is still a revision (its commit status needs one),
/// and a real change on the recheck is published.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recheck_publishes_only_a_changed_catalog() {
    use slipway_ingest::catalog::{CatalogConfig, Reloaded, Reloader};
    let nats = NatsServer::start().await.expect("nats");
    let daemon = GitDaemon::start().await.expect("git daemon");
    let url = daemon.create_bare_repo("acme/deploy").expect("repo");
    let deploy = Work::clone(&url);
    let only_writer = CATALOG.split("generators:").next().expect("apps");
    deploy.commit(&[("slipway.yaml", only_writer)]);
    let client = async_nats::connect(nats.url()).await.expect("connect");
    let store = CatalogStore::open(&async_nats::jetstream::new(client.clone()), 1).await.expect("store");
    let work = tempfile::tempdir().expect("work");
    let config = CatalogConfig { repository: Some(url), work_dir: work.path().to_owned(), ..CatalogConfig::default() };
    let reloader = Reloader::new(config, store.clone(), slipway_runtime::jetstream::Publisher::new(client, "/test"));

    assert!(matches!(reloader.reload(None, None).await.expect("first"), Reloaded::Published(..)));
    let overlay = deploy.commit(&[("dev/writer.yaml", "image: writer:1\n")]);
    assert!(matches!(reloader.reload(None, None).await.expect("recheck"), Reloaded::Unchanged));
    assert_eq!(store.history().await.expect("history").len(), 1, "the same catalog is not published again");

    let pushed = reloader.reload(Some(overlay.clone()), None).await.expect("push");
    assert!(matches!(pushed, Reloaded::Published(ref r, _) if r.commit == overlay), "a push is a revision");
    deploy.commit(&[("slipway.yaml", &format!("{only_writer}{READER}"))]);
    assert!(matches!(reloader.reload(None, None).await.expect("changed"), Reloaded::Published(..)));
    assert_eq!(store.history().await.expect("history").len(), 3);
}
