//! The builder on the app catalog: apps come from the revision in force in NATS (as ingest
//! publishes it), and a new revision applies to the next build without a restart: an app
//! added builds, an app removed is refused.

mod common;

use common::{Builder, World, of, request, wait_events};
use slipway_runtime::catalog::CatalogStore;
use std::collections::BTreeMap;
use std::time::Duration;

fn catalog(world: &World, apps: &[&str]) -> slipway_catalog::Catalog {
    let mut yaml = String::from("pipelines:\n  p:\n    stages:\n      - { name: dev, policy: auto }\napps:\n");
    for app in apps {
        yaml.push_str(&format!(
            "  - name: {app}\n    source: {{ repository: acme/monorepo, url: \"{url}\", paths: [\"apps/{app}/**\"] }}\n    \
             build: {{ context: apps/{app}, moving_tags: [latest], args: {{ GREETING: hello-{app} }} }}\n    image: {host}/acme/{app}\n    \
             deploy: {{ repository: git://h/d.git, path: \"{{stage}}.yaml\", kind: kustomize }}\n    pipeline: p\n",
            url = world.repo_url,
            host = world.registry.host(),
        ));
    }
    let files = BTreeMap::from([("slipway.yaml".to_owned(), yaml)]);
    slipway_catalog::build(&files, "slipway.yaml", &|_| None).expect("valid catalog")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apps_come_from_the_catalog_in_force() {
    let world = World::start().await;
    let sha = world.commit(
        "main",
        &[
            (
                "apps/writer/Dockerfile",
                "FROM scratch\nARG GREETING\nLABEL greeting=$GREETING\nCOPY hello.txt /hello.txt\n",
            ),
            ("apps/writer/hello.txt", "writer\n"),
            ("apps/reader/Dockerfile", "FROM scratch\nCOPY hello.txt /hello.txt\n"),
            ("apps/reader/hello.txt", "reader\n"),
        ],
    );
    let publisher = world.publisher().await;
    let js = world.js().await;
    let store = CatalogStore::open(&js, 1).await.expect("catalog store");
    store.publish("test", "c1", &catalog(&world, &["writer"])).await.expect("publish");
    let mut config = world.config();
    config.apps.clear();
    config.catalog.enabled = true;
    let builder = Builder::start(config).await;

    publisher.publish(&request("b-1-build-writer", "writer", &sha, "refs/heads/main", &[])).await.expect("publish");
    let done = |id: &'static str| {
        move |e: &[common::Event]| !of(e, "succeeded", id).is_empty() || !of(e, "failed", id).is_empty()
    };
    let events = wait_events(&js, Duration::from_secs(60), done("b-1-build-writer")).await;
    let ok = &of(&events, "succeeded", "b-1-build-writer")[0].body;
    assert_eq!(ok["tags"], serde_json::json!([sha, "latest"]), "moving tags from the catalog");
    // The catalog's build args reached the build: the image's config carries the label.
    let digest = ok["image"]["digest"].as_str().expect("digest");
    let config = world.manifest(digest).await["config"]["digest"].as_str().expect("config digest").to_owned();
    let url = format!("{}/v2/acme/writer/blobs/{config}", world.registry.url());
    let image: serde_json::Value = common::http().get(url).send().await.expect("config").json().await.expect("json");
    assert_eq!(image["config"]["Labels"]["greeting"], "hello-writer", "{image}");

    // A new revision: reader added, writer removed. No restart.
    store.publish("test", "c2", &catalog(&world, &["reader"])).await.expect("publish");
    // The builder reports the revision it runs in /metrics.
    let mut metrics = String::new();
    for _ in 0..200 {
        metrics = common::http()
            .get(format!("{}/metrics", builder.admin))
            .send()
            .await
            .expect("metrics")
            .text()
            .await
            .expect("text");
        if metrics.lines().any(|l| l == "slipway_catalog_revision 2") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert!(metrics.lines().any(|l| l == "slipway_catalog_revision 2"), "{metrics}");
    publisher.publish(&request("b-2-build-reader", "reader", &sha, "refs/heads/main", &[])).await.expect("publish");
    publisher.publish(&request("b-3-build-writer", "writer", &sha, "refs/heads/main", &[])).await.expect("publish");
    let events =
        wait_events(&js, Duration::from_secs(60), |e| done("b-2-build-reader")(e) && done("b-3-build-writer")(e)).await;
    let reader = &of(&events, "succeeded", "b-2-build-reader")[0].body;
    assert_eq!(reader["image"]["repository"], format!("{}/acme/reader", world.registry.host()));
    let refused = &of(&events, "failed", "b-3-build-writer")[0].body;
    assert_eq!(refused["reason"], "invalid-request");
    assert_eq!(refused["message"], "unknown app \"writer\": not in the app catalog in force");
    builder.stop().await;
}
