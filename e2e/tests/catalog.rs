//! The app catalog live across the four service binaries, restarting none, with the
//! quickstart's configs (its GitOps repository's slipway.yaml: a directory generator over the
//! app repository): a catalog push that adds an app, and its webhook → the app builds and
//! reaches dev; a push adding apps/new/Dockerfile → `new` builds on that push; a broken
//! catalog → `catalog.rejected` naming file:line and a failing `slipway/catalog` status on a
//! GitHub stand-in, while the next build runs under the previous revision.

use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use serde_json::{Value, json};
use slipway_e2e::demo::{WEBHOOK_SECRET, git};
use slipway_e2e::{Database, Demo, Overrides, Services, binaries, inspect, webhook};

const TIMEOUT: Duration = Duration::from_secs(180);

/// GitHub's statuses API, recording what the notifier posts.
async fn github() -> (String, Arc<Mutex<Vec<(String, Value)>>>) {
    let seen: Arc<Mutex<Vec<(String, Value)>>> = Arc::default();
    let record = seen.clone();
    let app = axum::Router::new().route(
        "/repos/{owner}/{repo}/statuses/{sha}",
        axum::routing::post(move |uri: axum::http::Uri, body: axum::Json<Value>| {
            let record = record.clone();
            async move {
                record.lock().unwrap_or_else(PoisonError::into_inner).push((uri.path().to_owned(), body.0));
                (axum::http::StatusCode::CREATED, "{}")
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    tokio::spawn(async move { axum::serve(listener, app).await });
    (base, seen)
}

/// Clones `bare`, lets `change` edit the tree, commits and pushes; returns (before, after).
fn push_change(bare: &Path, message: &str, change: impl FnOnce(&Path)) -> (String, String) {
    let work = tempfile::tempdir().expect("tmp");
    let dir = work.path();
    git(dir, &["clone", "-q", &bare.display().to_string(), "."]);
    let before = git(dir, &["rev-parse", "HEAD"]);
    change(dir);
    git(dir, &["add", "-A"]);
    git(dir, &["commit", "-q", "-m", message]);
    git(dir, &["push", "-q", "origin", "HEAD:refs/heads/main"]);
    (before, git(dir, &["rev-parse", "HEAD"]))
}

fn write(dir: &Path, path: &str, text: &str) {
    let path = dir.join(path);
    std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
    std::fs::write(path, text).expect("write");
}

/// A signed push webhook of `repository` (`demo/hello` or `demo/gitops`).
async fn deliver(demo: &Demo, services: &Services, repository: &str, before: &str, after: &str, files: &[&str]) {
    let commit = json!({ "id": after, "message": "change", "author": { "username": "demo" },
                         "added": files, "modified": [], "removed": [] });
    let body = json!({ "ref": "refs/heads/main", "before": before, "after": after,
                       "repository": { "full_name": repository }, "pusher": { "name": "demo" },
                       "commits": [commit.clone()], "head_commit": commit });
    let push = webhook::Push {
        delivery: uuid::Uuid::new_v4().to_string(),
        after: after.to_owned(),
        body: body.to_string().into_bytes(),
    };
    let status = webhook::send(&webhook::client(), &demo.webhook_url, WEBHOOK_SECRET, &push).await;
    assert!(matches!(status, Ok(200..=299)), "ingest refused the webhook: {status:?}\n{}", services.tails(30));
}

/// The overlays of a new app in the GitOps repository, as the demo's hello has them.
fn overlays(tree: &Path, demo: &Demo, app: &str) {
    for stage in ["dev", "staging", "prod"] {
        let text = format!("resources:\n  - ../base\nimages:\n  - name: {}\n    newTag: v0\n", demo.image_of(app));
        write(tree, &format!("apps/{app}/{stage}/kustomization.yaml"), &text);
    }
    write(tree, &format!("apps/{app}/base/kustomization.yaml"), "resources: []\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_catalog_is_live_in_every_service() {
    let demo = Demo::start(Database::Shared).await;
    let (github_url, statuses) = github().await;
    demo.write_configs(&format!(
        "[[destinations]]\nname = \"gh\"\nprovider = \"github\"\nurl = \"{github_url}\"\ntoken = \"ghp_e2e0123456789\"\n\
         [[routes]]\nevents = [\"catalog.*\"]\ndestinations = [\"gh\"]\n"
    ));
    let services = demo.start_services(binaries!(), Overrides::default()).await;
    let (gitops_bare, app_bare) = (demo.git.repo_path("demo/gitops"), demo.git.repo_path("demo/hello"));

    // 1. A catalog push adds `extra` (explicitly: its own paths, the hello Dockerfile).
    let extra = format!(
        "apps:\n  - name: extra\n    source: {{ repository: demo/hello, url: \"{}\", paths: [\"libs/extra/**\"] }}\n    \
         build: {{ context: apps/hello, dockerfile: apps/hello/Dockerfile }}\n    image: \"{}\"\n    \
         deploy: {{ repository: \"{}\", path: \"apps/{{app}}/{{stage}}/kustomization.yaml\", kind: kustomize }}\n    \
         pipeline: quickstart\n",
        demo.app_url,
        demo.image_of("extra"),
        demo.gitops_url
    );
    let (before, after) = push_change(&gitops_bare, "catalog: extra", |tree| {
        let text = std::fs::read_to_string(tree.join("slipway.yaml")).expect("catalog");
        write(tree, "slipway.yaml", &format!("{text}\n{extra}"));
        overlays(tree, &demo, "extra");
    });
    deliver(&demo, &services, "demo/gitops", &before, &after, &["slipway.yaml"]).await;
    let (before, sha) =
        push_change(&app_bare, "feat(extra): start", |tree| write(tree, "libs/extra/lib.txt", "extra\n"));
    deliver(&demo, &services, "demo/hello", &before, &sha, &["libs/extra/lib.txt"]).await;
    services.wait_until("extra's dev commit", TIMEOUT, || async { demo.overlay_tag_of("extra", "dev") == sha }).await;

    // 2. apps/new/Dockerfile under the generator: `new` builds on that very push.
    let (before, after) = push_change(&gitops_bare, "gitops: overlays of new", |tree| overlays(tree, &demo, "new"));
    deliver(&demo, &services, "demo/gitops", &before, &after, &["apps/new/dev/kustomization.yaml"]).await;
    let (before, sha) = push_change(&app_bare, "feat(new): the new app", |tree| {
        write(tree, "apps/new/Dockerfile", "FROM scratch\nCOPY hello.txt /hello.txt\n");
        write(tree, "apps/new/hello.txt", "new\n");
    });
    deliver(&demo, &services, "demo/hello", &before, &sha, &["apps/new/Dockerfile", "apps/new/hello.txt"]).await;
    let pushed = || async { inspect::registry_tags(&demo.registry.url(), "demo/new").await.contains(&sha) };
    services.wait_until("new's image", TIMEOUT, pushed).await;
    services.wait_until("new's dev commit", TIMEOUT, || async { demo.overlay_tag_of("new", "dev") == sha }).await;

    // 3. A broken catalog: refused with file:line, a failing status; hello still builds.
    let (before, broken) = push_change(&gitops_bare, "catalog: typo", |tree| {
        let text = std::fs::read_to_string(tree.join("slipway.yaml")).expect("catalog");
        write(tree, "slipway.yaml", &text.replace("    pipeline: quickstart\n", "    pipeline: quick\n"));
    });
    deliver(&demo, &services, "demo/gitops", &before, &broken, &["slipway.yaml"]).await;
    let failing = || async {
        let seen = statuses.lock().unwrap_or_else(PoisonError::into_inner);
        seen.iter().any(|(path, body)| path.ends_with(&broken) && body["state"] == "failure")
    };
    services.wait_until("a failing slipway/catalog status", TIMEOUT, failing).await;
    let (path, status) = {
        let seen = statuses.lock().unwrap_or_else(PoisonError::into_inner);
        seen.iter().find(|(path, body)| path.ends_with(&broken) && body["state"] == "failure").cloned().expect("status")
    };
    assert_eq!(path, format!("/repos/demo/gitops/statuses/{broken}"));
    assert_eq!(status["context"], "slipway/catalog");
    let description = status["description"].as_str().expect("description");
    assert!(
        description.starts_with("slipway.yaml:") && description.contains("pipeline \"quick\" is not defined"),
        "{description}"
    );
    let (before, sha) =
        push_change(&app_bare, "feat(hello): again", |tree| write(tree, "apps/hello/hello.txt", "again\n"));
    deliver(&demo, &services, "demo/hello", &before, &sha, &["apps/hello/hello.txt"]).await;
    services
        .wait_until("hello's dev commit under the previous revision", TIMEOUT, || async {
            demo.overlay_tag("dev") == sha
        })
        .await;
    services.stop().await;
}
