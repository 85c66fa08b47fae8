//! The kaniko backend end to end against real nats-server, PostgreSQL and the Distribution
//! registry, and the test kit's fake Kubernetes API server. kaniko cannot run here (no
//! cluster), so each test plays the cluster's part: it reads the Job the builder created,
//! pushes an image to the real registry as kaniko would, adds the Job's pod with its log and
//! termination message (the digest), and sets the Job's status.
//!
//! The app's repository is an https URL (kaniko clones over http(s) only) that no test server
//! serves; the builder's own checkout of the commit (the worker's, before any backend runs)
//! finds it in its per-app cache, seeded from the test's bare repository.

mod common;

use common::{Builder, World, http, of, request, sh, wait_events};
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};
use slipway_builder::Config;
use slipway_builder::config::BackendKind;
use slipway_testkit::kube::FakeKube;
use std::time::Duration;
use tokio::io::AsyncReadExt as _;

const REPOSITORY: &str = "https://git.example.invalid/acme/monorepo.git";

/// A kaniko builder config against `kube`, its source cache seeded with the world's commits.
fn kaniko_config(world: &World, kube: &FakeKube) -> Config {
    let bare = world.git.repo_path("acme/monorepo");
    let cache = world.work.path().join("git").join(slipway_builder::source::cache_name(REPOSITORY));
    let _ = std::fs::remove_dir_all(&cache);
    sh(world.work.path(), "git", &["clone", "-q", "--bare", &bare.display().to_string(), &cache.display().to_string()]);
    let mut config = world.config();
    config.build.backend = BackendKind::Kaniko;
    config.build.kaniko.kube_url = Some(kube.url());
    config.build.kaniko.namespace = "builds".to_owned();
    config.apps[0].repository = REPOSITORY.to_owned();
    config
}

/// The Job the builder created for `build_id`.
async fn job_of(kube: &FakeKube, build_id: &str) -> Value {
    let find = |k: &FakeKube| {
        k.objects("Job").into_iter().find(|j| j["metadata"]["annotations"]["slipway.dev/build-id"] == build_id)
    };
    kube.wait_for(Duration::from_secs(30), find).await.unwrap_or_else(|| panic!("no Job for {build_id}"))
}

/// The cluster runs the Job's pod to its end: `exit_code`, termination `message`, `log`.
fn run_pod(kube: &FakeKube, job: &Value, exit_code: i32, message: &str, log: &str) {
    let (ns, name) =
        (job["metadata"]["namespace"].as_str().expect("ns"), job["metadata"]["name"].as_str().expect("name"));
    let pod = format!("{name}-x7k2p");
    kube.apply(json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {
            "name": pod, "namespace": ns, "labels": { "job-name": name, "batch.kubernetes.io/job-name": name },
            "ownerReferences": [{ "apiVersion": "batch/v1", "kind": "Job", "name": name, "uid": job["metadata"]["uid"], "controller": true }],
        },
        "spec": job["spec"]["template"]["spec"],
        "status": {
            "phase": if exit_code == 0 { "Succeeded" } else { "Failed" },
            "containerStatuses": [{
                "name": "kaniko", "image": job["spec"]["template"]["spec"]["containers"][0]["image"], "imageID": "",
                "ready": false, "restartCount": 0,
                "state": { "terminated": { "exitCode": exit_code, "message": message } },
            }],
        },
    }));
    kube.set_pod_log(ns, &pod, log);
}

/// The Job controller's verdict.
fn finish_job(kube: &FakeKube, job: &Value, complete: bool) {
    let (ns, name) =
        (job["metadata"]["namespace"].as_str().expect("ns"), job["metadata"]["name"].as_str().expect("name"));
    kube.update_status("Job", ns, name, json!({ "active": 1 })).expect("job");
    let status = if complete {
        json!({ "active": 0, "succeeded": 1, "conditions": [{ "type": "Complete", "status": "True" }] })
    } else {
        json!({ "active": 0, "failed": 1, "conditions": [{
            "type": "Failed", "status": "True", "reason": "BackoffLimitExceeded", "message": "Job has reached the specified backoff limit",
        }] })
    };
    kube.update_status("Job", ns, name, status).expect("job");
}

fn sha256(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

/// What kaniko would push: a one-layer image under every tag; returns the manifest digest.
async fn push_image(world: &World, tags: &[&str], content: &str) -> String {
    let base = format!("{}/v2/acme/writer", world.registry.url());
    let layer = content.as_bytes().to_vec();
    let config =
        json!({ "architecture": "amd64", "os": "linux", "rootfs": { "type": "layers", "diff_ids": [sha256(&layer)] } });
    let config = config.to_string().into_bytes();
    for blob in [&layer, &config] {
        let started = http().post(format!("{base}/blobs/uploads/")).send().await.expect("start upload");
        assert_eq!(started.status(), 202);
        let location = started.headers()["location"].to_str().expect("location").to_owned();
        let location = if location.starts_with('/') { format!("{}{location}", world.registry.url()) } else { location };
        let sep = if location.contains('?') { '&' } else { '?' };
        let put = http().put(format!("{location}{sep}digest={}", sha256(blob))).body(blob.clone()).send().await;
        assert_eq!(put.expect("upload").status(), 201);
    }
    let manifest = json!({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": { "mediaType": "application/vnd.oci.image.config.v1+json", "digest": sha256(&config), "size": config.len() },
        "layers": [{ "mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": sha256(&layer), "size": layer.len() }],
    })
    .to_string();
    for tag in tags {
        let put = http()
            .put(format!("{base}/manifests/{tag}"))
            .header("content-type", "application/vnd.oci.image.manifest.v1+json")
            .body(manifest.clone())
            .send()
            .await
            .expect("put manifest");
        assert_eq!(put.status(), 201, "{:?}", put.text().await);
    }
    sha256(manifest.as_bytes())
}

/// Plays a successful kaniko run of `job` for commit `sha`; returns the pushed digest.
async fn succeed(world: &World, kube: &FakeKube, job: &Value, sha: &str) -> String {
    let digest = push_image(world, &[sha, "latest"], sha).await;
    let log = format!(
        "INFO Retrieving image manifest scratch\nINFO COPY hello.txt /hello.txt\nINFO Pushed {}@{digest}\n",
        "acme/writer"
    );
    run_pod(kube, job, 0, &digest, &log);
    finish_job(kube, job, true);
    digest
}

fn args(job: &Value) -> Vec<String> {
    let args = job["spec"]["template"]["spec"]["containers"][0]["args"].as_array().expect("args");
    args.iter().filter_map(Value::as_str).map(str::to_owned).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kaniko_job_builds_the_commit_and_its_digest_goes_on_build_succeeded() {
    let world = World::start().await;
    let sha = world.commit_writer("main", "hello from kaniko\n");
    let kube = FakeKube::start().await.expect("fake kube");
    let builder = Builder::start(kaniko_config(&world, &kube)).await;
    let (publisher, js) = (world.publisher().await, world.js().await);
    publisher.publish(&request("k-1", "writer", &sha, "refs/heads/main", &[])).await.expect("publish");

    let job = job_of(&kube, "k-1").await;
    let image = format!("{}/acme/writer", world.registry.host());
    assert_eq!(job["metadata"]["namespace"], "builds");
    assert_eq!(job["metadata"]["labels"]["slipway.dev/build-id"], "k-1");
    assert!(job["metadata"]["ownerReferences"].is_null(), "ownerless: {job}");
    assert_eq!(
        (job["spec"]["backoffLimit"].as_i64(), job["spec"]["ttlSecondsAfterFinished"].as_i64()),
        (Some(0), Some(3600))
    );
    let container = &job["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(container["image"], "gcr.io/kaniko-project/executor:v1.23.2");
    let args = args(&job);
    for expected in [
        format!("--context=git://git.example.invalid/acme/monorepo.git#refs/heads/main#{sha}"),
        "--context-sub-path=apps/writer".to_owned(),
        "--dockerfile=/kaniko/buildcontext/apps/writer/Dockerfile".to_owned(),
        format!("--destination={image}:{sha}"),
        format!("--destination={image}:latest"),
        "--digest-file=/dev/termination-log".to_owned(),
        "--insecure".to_owned(),
    ] {
        assert!(args.contains(&expected), "{expected} not in {args:?}");
    }
    assert_eq!(container["env"][0], json!({ "name": "GIT_PULL_METHOD", "value": "https" }));

    let digest = succeed(&world, &kube, &job, &sha).await;
    let events = wait_events(&js, Duration::from_secs(30), |e| !of(e, "succeeded", "k-1").is_empty()).await;
    assert!(of(&events, "failed", "k-1").is_empty(), "{events:#?}");
    assert_eq!(of(&events, "started", "k-1")[0].body["backend"], "kaniko");
    let ok = &of(&events, "succeeded", "k-1")[0].body;
    assert_eq!(ok["image"]["digest"], digest.as_str(), "{ok}");
    assert_eq!(ok["tags"], json!([sha, "latest"]));

    // The pod's log is in the build log, the finished Job is left to its TTL.
    let store = js.get_object_store("slipway-build-logs").await.expect("log bucket");
    let mut log = String::new();
    store.get("k-1.log").await.expect("log object").read_to_string(&mut log).await.expect("read");
    assert!(
        log.contains("INFO COPY hello.txt /hello.txt") && log.contains(&format!("kaniko pushed {digest}")),
        "{log}"
    );
    assert!(kube.requests().iter().any(|r| r.contains("/pods/") && r.contains("/log")));
    assert!(kube.deletions().is_empty(), "{:?}", kube.deletions());
    builder.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_kaniko_job_is_build_failed_with_the_log_tail() {
    let world = World::start().await;
    let sha = world.commit_writer("main", "x\n");
    let kube = FakeKube::start().await.expect("fake kube");
    let builder = Builder::start(kaniko_config(&world, &kube)).await;
    let (publisher, js) = (world.publisher().await, world.js().await);
    publisher.publish(&request("k-bad", "writer", &sha, "refs/heads/main", &[])).await.expect("publish");

    let job = job_of(&kube, "k-bad").await;
    let why = "error building image: COPY failed: stat hello.txt: no such file or directory";
    run_pod(
        &kube,
        &job,
        1,
        &format!("INFO COPY hello.txt /hello.txt\n{why}\n"),
        &format!("INFO Retrieving image\n{why}\n"),
    );
    finish_job(&kube, &job, false);
    let events = wait_events(&js, Duration::from_secs(30), |e| !of(e, "failed", "k-bad").is_empty()).await;
    let failed = &of(&events, "failed", "k-bad")[0].body;
    assert_eq!(failed["reason"], "build-error", "{failed}");
    let message = failed["message"].as_str().unwrap_or_default();
    assert!(message.contains("BackoffLimitExceeded") && message.contains("COPY failed"), "{message}");
    assert!(failed["logTail"].as_array().is_some_and(|t| t.iter().any(|l| l == why)), "{failed}");
    assert_eq!(world.registry_digest(&sha).await, None);
    builder.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_superseded_build_deletes_its_job() {
    let world = World::start().await;
    let first = world.commit_writer("main", "one\n");
    let second = world.commit_writer("main", "two\n");
    let kube = FakeKube::start().await.expect("fake kube");
    let builder = Builder::start(kaniko_config(&world, &kube)).await;
    let (publisher, js) = (world.publisher().await, world.js().await);

    publisher.publish(&request("s-old", "writer", &first, "refs/heads/main", &[])).await.expect("publish");
    let old = job_of(&kube, "s-old").await;
    publisher.publish(&request("s-new", "writer", &second, "refs/heads/main", &[])).await.expect("publish");
    let events = wait_events(&js, Duration::from_secs(30), |e| !of(e, "failed", "s-old").is_empty()).await;
    assert_eq!(of(&events, "failed", "s-old")[0].body["reason"], "superseded");
    let old_name = old["metadata"]["name"].as_str().expect("name").to_owned();
    let deleted =
        kube.wait_for(Duration::from_secs(10), |k| k.deletions().into_iter().find(|d| d.name == old_name)).await;
    let deleted = deleted.expect("the superseded build's Job is deleted");
    assert_eq!((deleted.namespace.as_str(), deleted.propagation.as_deref()), ("builds", Some("Background")));
    assert!(kube.get("Job", "builds", &old_name).is_none());

    let new = job_of(&kube, "s-new").await;
    let digest = succeed(&world, &kube, &new, &second).await;
    let events = wait_events(&js, Duration::from_secs(30), |e| !of(e, "succeeded", "s-new").is_empty()).await;
    assert_eq!(of(&events, "succeeded", "s-new")[0].body["image"]["digest"], digest.as_str());
    builder.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_past_the_build_timeout_is_deleted() {
    let world = World::start().await;
    let sha = world.commit_writer("main", "x\n");
    let kube = FakeKube::start().await.expect("fake kube");
    let mut config = kaniko_config(&world, &kube);
    config.build.timeout_secs = 2;
    let builder = Builder::start(config).await;
    let (publisher, js) = (world.publisher().await, world.js().await);
    publisher.publish(&request("k-slow", "writer", &sha, "refs/heads/main", &[])).await.expect("publish");

    let job = job_of(&kube, "k-slow").await;
    assert_eq!(job["spec"]["activeDeadlineSeconds"], 2, "the cluster enforces the timeout too");
    let events = wait_events(&js, Duration::from_secs(30), |e| !of(e, "failed", "k-slow").is_empty()).await;
    assert_eq!(of(&events, "failed", "k-slow")[0].body["reason"], "timeout");
    let name = job["metadata"]["name"].as_str().expect("name").to_owned();
    assert!(
        kube.wait_for(Duration::from_secs(10), |k| k.get("Job", "builds", &name).is_none().then_some(()))
            .await
            .is_some()
    );
    builder.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_api_server_fails_the_build_as_backend_unavailable() {
    let world = World::start().await;
    let sha = world.commit_writer("main", "x\n");
    let kube = FakeKube::start().await.expect("fake kube");
    let mut config = kaniko_config(&world, &kube);
    config.build.kaniko.kube_url = Some(format!("http://127.0.0.1:{}", slipway_testkit::free_port()));
    let builder = Builder::start(config).await;
    let (publisher, js) = (world.publisher().await, world.js().await);
    publisher.publish(&request("k-down", "writer", &sha, "refs/heads/main", &[])).await.expect("publish");
    let events = wait_events(&js, Duration::from_secs(30), |e| !of(e, "failed", "k-down").is_empty()).await;
    let failed = &of(&events, "failed", "k-down")[0].body;
    assert_eq!(failed["reason"], "backend-unavailable", "{failed}");
    assert!(failed["message"].as_str().unwrap_or_default().contains("kaniko backend"), "{failed}");
    builder.stop().await;
}
