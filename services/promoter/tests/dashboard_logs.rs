//! A build's log in the app page, live: the builder's own log writer
//! (`slipway_builder::logs::lines`) writes a running build's lines into the KV bucket
//! `slipctl logs` reads; the page learns of the build from its `build.started` event, follows
//! the log and shows each line as it is written (the log grows while the build runs), then
//! the outcome once the builder writes the end record. The page lists the build from the app's
//! own build events, however many other events came since.

mod common;
mod dashboard_kit;
mod webdriver;

use std::time::Duration;

use dashboard_kit::Service;
use slipway_builder::logs::{BuildLog, lines};
use slipway_mesh::build_log::End;
use slipway_mesh::v1;
use webdriver::Browser;

const BUILD: &str = "gh-42.writer:1";

/// The log's lines the page shows.
async fn shown(browser: &Browser) -> Vec<String> {
    browser.text("#build-log").await.lines().map(str::to_owned).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_build_log_grows_in_the_page_while_the_build_runs() {
    webdriver::require_chromium();
    let service = Service::start().await;

    // No builder ever ran: there is no bucket, and the stream says so.
    let mut answer = service.http.get(service.url("/api/builds/nope/log")).send().await.expect("GET");
    assert_eq!(answer.headers()["content-type"], "text/event-stream");
    let first = answer.chunk().await.expect("read").expect("an event");
    assert!(String::from_utf8_lossy(&first).contains("event: missing"), "{first:?}");

    let js = async_nats::jetstream::new(async_nats::connect(service.nats.url()).await.expect("nats"));
    let kv = lines::open(&js, lines::MAX_AGE).await.expect("bucket");
    let started = v1::BuildStarted {
        build_id: BUILD.into(),
        app: "writer".into(),
        commit_sha: "b".repeat(40),
        replica: "builder-0".into(),
        backend: "buildah".into(),
    };
    service.promoter.publisher.publish(&started).await.expect("build.started");
    // Other apps' events since: the page's replay of recent events no longer holds the start,
    // the app's own build list does.
    for i in 0..80 {
        let other = v1::BuildStarted { build_id: format!("other-{i}"), app: "other".into(), ..Default::default() };
        service.promoter.publisher.publish(&other).await.expect("noise");
    }
    let listed = service.get("/api/apps/writer/builds").await;
    assert_eq!(listed["builds"][0]["buildId"], BUILD, "{listed}");
    assert_eq!(listed["builds"][0]["state"], "running");
    assert_eq!(listed["builds"].as_array().map(Vec::len), Some(1), "only writer's: {listed}");

    let browser = Browser::start().await;
    browser.goto(&service.url("/dashboard/app/writer")).await;
    browser.wait_text("#builds", &[BUILD, "running (bbbbbbb)"]).await;
    let (writer, tx) = lines::Writer::start(kv.clone(), BUILD, 1);
    tx.send("STEP 1/3: FROM alpine:3.20".into()).expect("line");
    browser.click(&format!("a[data-build='{BUILD}']")).await;
    browser.wait_text("#build-log", &["STEP 1/3: FROM alpine:3.20"]).await;
    browser.wait_text("#log-state", &["following"]).await;

    // Each line the builder writes shows up, after those before it.
    let mut expected = vec!["STEP 1/3: FROM alpine:3.20".to_owned()];
    for step in 2..=3 {
        tokio::time::sleep(Duration::from_millis(400)).await;
        let line = format!("STEP {step}/3: RUN make step-{step}");
        tx.send(line.clone()).expect("line");
        expected.push(line.clone());
        browser.wait_text("#build-log", &[&line]).await;
        assert_eq!(shown(&browser).await, expected, "the log grew by one line, in order");
        assert_eq!(browser.text("#log-state").await, "following…", "the build still runs");
    }
    let extra: Vec<String> = (0..100).map(|i| format!("layer {i:03} pushed")).collect();
    for line in &extra {
        tx.send(line.clone()).expect("line");
    }
    expected.extend(extra);
    drop(tx);
    let log = BuildLog::new(10, 1 << 20);
    let end = End { outcome: "succeeded".into(), reason: String::new(), dropped_lines: 0 };
    writer.finish(&log, Some(end.clone())).await;
    browser.wait_text("#log-state", &["build succeeded"]).await;
    let failed = v1::BuildFailed {
        build_id: BUILD.into(),
        app: "writer".into(),
        reason: "push-error".into(),
        ..Default::default()
    };
    service.promoter.publisher.publish(&failed).await.expect("build.failed");
    browser.wait_text("#builds", &["failed: push-error (bbbbbbb)"]).await;
    assert_eq!(shown(&browser).await, expected, "every line once, in order (several chunks)");

    // Opened after the end, the log replays whole and ends at once.
    let answer = service.http.get(service.url(&format!("/api/builds/{BUILD}/log"))).send().await.expect("GET");
    let text = tokio::time::timeout(Duration::from_secs(10), answer.text()).await.expect("ends").expect("body");
    assert!(text.contains("STEP 1/3") && text.contains("layer 099 pushed"), "{text}");
    let last = text.trim_end().rsplit("\n\n").next().unwrap_or_default();
    let data = last.lines().find_map(|l| l.strip_prefix("data:")).expect("data");
    assert!(last.starts_with("event: end"), "{last}");
    assert_eq!(serde_json::from_str::<End>(data.trim()).expect("End"), end);
    browser.quit().await;
    service.stop().await;
}
