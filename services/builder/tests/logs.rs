//! Build logs followed while the build runs: a real (slowed) buildah build whose lines are read
//! from the `slipway-build-log-lines` KV bucket before `build.succeeded`, ending with the
//! outcome, and matching the full log stored in the Object Store at the end.

mod common;

use common::{Builder, World, of, request, wait_events};
use futures::StreamExt as _;
use slipway_builder::logs::lines::{self, Error, Item};
use std::time::Duration;
use tokio::io::AsyncReadExt as _;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_lines_can_be_followed_while_the_build_runs() {
    let world = World::start().await;
    let sha = world.commit_writer("main", "live\n");
    let mut config = world.config();
    config.build.buildah.program = common::slow_buildah(world.work.path(), 3);
    let builder = Builder::start(config).await;
    let publisher = world.publisher().await;
    let js = world.js().await;
    // The builder makes the bucket just after it reports ready.
    let mut kv = lines::bind(&js).await;
    for _ in 0..50 {
        if kv.is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        kv = lines::bind(&js).await;
    }
    let kv = kv.expect("lines bucket made by the builder");
    // '.' and ':' are valid in build ids but not inside a KV key token.
    let id = "gh-7.build:writer";
    assert!(matches!(lines::read(&kv, id, true).await.err(), Some(Error::NoLog(_))));

    publisher.publish(&request(id, "writer", &sha, "refs/heads/main", &[])).await.expect("publish");
    wait_events(&js, Duration::from_secs(30), |e| !of(e, "started", id).is_empty()).await;
    // The claim comes before the first line: wait for it to be written.
    let mut log = None;
    for _ in 0..50 {
        match lines::read(&kv, id, true).await {
            Ok(stream) => {
                log = Some(stream);
                break;
            }
            Err(Error::NoLog(_)) => tokio::time::sleep(Duration::from_millis(100)).await,
            Err(e) => panic!("{e}"),
        }
    }
    let mut log = Box::pin(log.expect("the log appears while the build runs"));
    let first = tokio::time::timeout(Duration::from_secs(2), log.next()).await.expect("a line within 2 s");
    let first = first.expect("not ended").expect("read");
    assert!(matches!(&first, Item::Line(l) if l.starts_with("checking out")), "{first:?}");
    let events = common::build_events(&js).await;
    assert!(of(&events, "succeeded", id).is_empty(), "a line arrived only after the build: {events:#?}");

    // Following goes on to the end of the build.
    let mut followed = vec![first];
    while let Some(item) = tokio::time::timeout(Duration::from_secs(60), log.next()).await.expect("the end arrives") {
        followed.push(item.expect("read"));
    }
    let end = lines::End { outcome: "succeeded".into(), reason: String::new(), dropped_lines: 0 };
    assert_eq!(followed.last(), Some(&Item::End(end)), "{followed:#?}");
    let text: String = followed
        .iter()
        .filter_map(|i| match i {
            Item::Line(l) => Some(format!("{l}\n")),
            Item::End(_) => None,
        })
        .collect();
    assert!(text.contains("COPY hello.txt /hello.txt") && text.contains("pushed "), "{text}");
    wait_events(&js, Duration::from_secs(10), |e| !of(e, "succeeded", id).is_empty()).await;

    // The live lines are the whole log, as stored at the end.
    let store = js.get_object_store("slipway-build-logs").await.expect("log bucket");
    let mut stored = String::new();
    store.get(&format!("{id}.log")).await.expect("log object").read_to_string(&mut stored).await.expect("read");
    assert_eq!(text, stored);

    // Read again without following: the same lines and the end, then it stops by itself.
    let again: Vec<Item> = lines::read(&kv, id, false).await.expect("read").map(|i| i.expect("item")).collect().await;
    assert_eq!(again, followed);
    builder.stop().await;
}
