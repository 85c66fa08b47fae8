//! The builder end to end against real nats-server, PostgreSQL, the Distribution registry and
//! git daemon, with real buildah builds: image pushed and its digest read back, idempotent
//! redelivery, malformed requests terminated, a newer commit superseding a running build, and
//! the docker backend's clear error on a host without a Docker engine.

mod common;

use common::{Builder, World, of, request, wait_events};
use slipway_builder::config::BackendKind;
use std::time::Duration;
use tokio::io::AsyncReadExt as _;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn builds_a_real_image_pushes_it_and_reports_the_registry_digest() {
    let world = World::start().await;
    let sha = world.commit_writer("main", "hello from slipway\n");
    let builder = Builder::start(world.config()).await;
    let publisher = world.publisher().await;
    let js = world.js().await;

    let req = request("gh-1-build-writer", "writer", &sha, "refs/heads/main", &[]);
    publisher.publish(&req).await.expect("publish");
    let events = wait_events(&js, Duration::from_secs(60), |e| {
        !of(e, "succeeded", "gh-1-build-writer").is_empty() || !of(e, "failed", "gh-1-build-writer").is_empty()
    })
    .await;
    assert!(of(&events, "failed", "gh-1-build-writer").is_empty(), "{events:#?}");
    let started = of(&events, "started", "gh-1-build-writer");
    assert_eq!(started.len(), 1, "{events:#?}");
    assert_eq!(started[0].body["backend"], "buildah");
    let ok = &of(&events, "succeeded", "gh-1-build-writer")[0].body;
    let image = &ok["image"];
    assert_eq!(image["repository"], format!("{}/acme/writer", world.registry.host()));
    assert_eq!(image["tag"], sha.as_str());
    assert_eq!(ok["tags"], serde_json::json!([sha, "latest"]));

    // The digest on the event is the one the registry serves, for the sha and the moving tag.
    let digest = world.registry_digest(&sha).await.expect("sha tag in registry");
    assert_eq!(image["digest"], digest.as_str());
    assert_eq!(world.registry_digest("latest").await.as_deref(), Some(digest.as_str()));
    let manifest = world.manifest(&digest).await;
    let layers = manifest["layers"].as_array().expect("layers");
    assert_eq!(layers.len(), 1, "FROM scratch + one COPY is one layer: {manifest}");
    for blob in [&layers[0]["digest"], &manifest["config"]["digest"]] {
        assert_eq!(world.blob_status(blob.as_str().expect("digest")).await, 200, "{blob}");
    }

    // The build log is in the Object Store bucket.
    let store = js.get_object_store("slipway-build-logs").await.expect("log bucket");
    let mut object = store.get("gh-1-build-writer.log").await.expect("log object");
    let mut log = String::new();
    object.read_to_string(&mut log).await.expect("read log");
    assert!(log.contains("COPY hello.txt /hello.txt") && log.contains(&digest), "{log}");

    // A redelivered request (new event id, same build id) builds nothing and emits nothing.
    publisher.publish(&req).await.expect("publish again");
    // A tag push of the same commit: a second build with the semver tag and no moving tag.
    let tag_req = request("tag-1-build-writer", "writer", &sha, "refs/tags/v1.2.3", &["v1.2.3"]);
    publisher.publish(&tag_req).await.expect("publish tag build");
    let events =
        wait_events(&js, Duration::from_secs(60), |e| !of(e, "succeeded", "tag-1-build-writer").is_empty()).await;
    let tagged = &of(&events, "succeeded", "tag-1-build-writer")[0].body;
    assert_eq!(tagged["tags"], serde_json::json!([sha, "v1.2.3"]));
    assert_eq!(world.registry_digest("v1.2.3").await.as_deref(), tagged["image"]["digest"].as_str());
    assert_eq!(of(&events, "succeeded", "gh-1-build-writer").len(), 1, "redelivery built again: {events:#?}");
    assert_eq!(of(&events, "started", "gh-1-build-writer").len(), 1);

    let metrics = common::http().get(format!("{}/metrics", builder.admin)).send().await.expect("metrics");
    let metrics = metrics.text().await.expect("text");
    assert!(metrics.contains("slipway_build_duration_seconds"), "{metrics}");
    assert!(metrics.contains("slipway_build_queue_wait_seconds"), "{metrics}");
    builder.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_requests_fail_as_invalid_and_are_not_retried() {
    let world = World::start().await;
    let sha = world.commit_writer("main", "x\n");
    let builder = Builder::start(world.config()).await;
    let publisher = world.publisher().await;
    let js = world.js().await;

    let cases = [
        (request("bad-app", "reader", &sha, "refs/heads/main", &[]), "unknown app"),
        (request("bad-sha", "writer", "abc123", "refs/heads/main", &[]), "40 or 64 hex"),
        (request("bad-tag", "writer", &sha, "refs/tags/v1", &["-v1"]), "extra tag"),
    ];
    for (req, _) in &cases {
        publisher.publish(req).await.expect("publish");
    }
    let events =
        wait_events(&js, Duration::from_secs(30), |e| e.iter().filter(|e| e.kind == "failed").count() >= 3).await;
    for (req, why) in &cases {
        let failed = of(&events, "failed", &req.build_id);
        assert_eq!(failed.len(), 1, "{}: {events:#?}", req.build_id);
        assert_eq!(failed[0].body["reason"], "invalid-request");
        let message = failed[0].body["message"].as_str().unwrap_or_default();
        assert!(message.contains(why), "{}: {message}", req.build_id);
    }
    assert!(events.iter().all(|e| e.kind == "failed"), "nothing was built: {events:#?}");

    // Terminated, not redelivered: nothing pending after longer than the ack wait.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let mut consumer: async_nats::jetstream::consumer::PullConsumer =
        js.get_stream("SLIPWAY").await.expect("stream").get_consumer("builder").await.expect("consumer");
    let info = consumer.info().await.expect("consumer info");
    assert_eq!((info.num_ack_pending, info.num_redelivered, info.num_pending), (0, 0, 0), "{info:?}");
    assert_eq!(common::build_events(&js).await.len(), 3, "no second build.failed");
    builder.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_newer_commit_on_the_branch_supersedes_the_running_build() {
    let world = World::start().await;
    let first = world.commit_writer("main", "one\n");
    let second = world.commit_writer("main", "two\n");
    let mut config = world.config();
    config.build.buildah.program = common::slow_buildah(world.work.path(), 4);
    let builder = Builder::start(config).await;
    let publisher = world.publisher().await;
    let js = world.js().await;

    publisher.publish(&request("b-old", "writer", &first, "refs/heads/main", &[])).await.expect("publish");
    wait_events(&js, Duration::from_secs(30), |e| !of(e, "started", "b-old").is_empty()).await;
    publisher.publish(&request("b-new", "writer", &second, "refs/heads/main", &[])).await.expect("publish");
    let events = wait_events(&js, Duration::from_secs(60), |e| !of(e, "succeeded", "b-new").is_empty()).await;
    let failed = of(&events, "failed", "b-old");
    assert_eq!(failed.len(), 1, "{events:#?}");
    assert_eq!(failed[0].body["reason"], "superseded");
    assert!(failed[0].body["message"].as_str().unwrap_or_default().contains("b-new"), "{failed:?}");
    // The cancelled build never finishes later.
    tokio::time::sleep(Duration::from_secs(6)).await;
    let events = common::build_events(&js).await;
    assert!(of(&events, "succeeded", "b-old").is_empty(), "{events:#?}");
    assert_eq!(world.registry_digest(&first).await, None, "the superseded commit was pushed");
    assert!(world.registry_digest(&second).await.is_some());
    builder.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_docker_backend_without_an_engine_fails_with_a_clear_error() {
    let world = World::start().await;
    let sha = world.commit_writer("main", "x\n");
    let mut config = world.config();
    config.build.backend = BackendKind::Docker;
    let builder = Builder::start(config).await;
    let publisher = world.publisher().await;
    let js = world.js().await;
    publisher.publish(&request("d-1", "writer", &sha, "refs/heads/main", &[])).await.expect("publish");
    let events = wait_events(&js, Duration::from_secs(30), |e| !of(e, "failed", "d-1").is_empty()).await;
    let failed = &of(&events, "failed", "d-1")[0].body;
    assert_eq!(failed["reason"], "backend-unavailable", "{failed}");
    let message = failed["message"].as_str().unwrap_or_default();
    assert!(message.contains("no Docker engine reachable"), "{message}");
    assert!(failed["logTail"].as_array().is_some_and(|l| !l.is_empty()), "{failed}");
    builder.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_queued_build_is_superseded_by_a_newer_request_for_the_branch() {
    let world = World::start().await;
    let first = world.commit_writer("main", "one\n");
    let second = world.commit_writer("main", "two\n");
    let publisher = world.publisher().await;
    let js = world.js().await;
    // Both requests wait in the queue before any builder runs.
    publisher.publish(&request("q-old", "writer", &first, "refs/heads/main", &[])).await.expect("publish");
    publisher.publish(&request("q-new", "writer", &second, "refs/heads/main", &[])).await.expect("publish");
    let builder = Builder::start(world.config()).await;
    let events = wait_events(&js, Duration::from_secs(60), |e| {
        !of(e, "succeeded", "q-new").is_empty() && !of(e, "failed", "q-old").is_empty()
    })
    .await;
    assert_eq!(of(&events, "failed", "q-old")[0].body["reason"], "superseded");
    assert!(of(&events, "started", "q-old").is_empty() && of(&events, "succeeded", "q-old").is_empty());
    assert_eq!(world.registry_digest(&first).await, None);
    builder.stop().await;
}
