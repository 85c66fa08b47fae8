//! Catalog revisions in a real nats-server: published, followed live, kept as history.

use std::time::Duration;

use slipway_catalog::{Catalog, DirTree};
use slipway_runtime::catalog::{CatalogStore, Live};
use slipway_testkit::NatsServer;
use tokio_util::sync::CancellationToken;

fn example() -> Catalog {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../catalog/example");
    slipway_catalog::build(&DirTree(dir), "slipway.yaml", &|_| None).expect("the example is valid")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revisions_are_followed_live_and_kept_as_history() {
    let nats = NatsServer::start().await.expect("nats");
    let js = async_nats::jetstream::new(async_nats::connect(nats.url()).await.expect("connect"));
    let store = CatalogStore::open(&js, 1).await.expect("open");
    assert_eq!(store.current().await.expect("current"), None);

    let first = example();
    store.publish("git://h/deploy", "1111111111111111111111111111111111111111", &first).await.expect("publish");
    let shutdown = CancellationToken::new();
    let (live, task) = Live::watch(store.clone(), shutdown.clone()).await.expect("watch");
    let held = live.get();
    assert_eq!(held.catalog.apps.len(), 3);
    assert_eq!(held.revision.as_ref().map(|r| r.commit.as_str()), Some("1111111111111111111111111111111111111111"));

    // A second revision: writer removed. The watcher switches; what was taken stays.
    let mut second = first.clone();
    second.apps.remove("writer");
    let published =
        store.publish("git://h/deploy", "2222222222222222222222222222222222222222", &second).await.expect("publish");
    for _ in 0..100 {
        if live.get().catalog.apps.len() == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let now = live.get();
    assert_eq!(now.catalog.apps.len(), 2, "switched without a restart");
    assert_eq!(now.revision.as_ref().map(|r| r.sequence), Some(published.sequence));
    assert!(held.catalog.apps.contains_key("writer"), "work in hand keeps its revision");

    let history = store.history().await.expect("history");
    let commits: Vec<&str> = history.iter().map(|r| &r.commit[..4]).collect();
    assert_eq!(commits, ["1111", "2222"]);
    assert_eq!(store.load(&history[0]).await.expect("load"), first);
    shutdown.cancel();
    task.await.expect("watch task");
}

/// A service starting while NATS is away for a moment waits for it: the watch is set up and
/// the revision in force loaded once NATS is back, instead of failing the service (an ingest
/// that stopped this way accepted no webhook at all).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watch_started_while_nats_is_away_loads_the_revision_once_it_is_back() {
    let mut nats = NatsServer::start().await.expect("nats");
    let client =
        async_nats::ConnectOptions::new().retry_on_initial_connect().connect(nats.url()).await.expect("connect");
    // Requests time out after 1 s, so an outage of 3 s outlasts them.
    let js = async_nats::jetstream::ContextBuilder::new().timeout(Duration::from_secs(1)).build(client);
    let store = CatalogStore::open(&js, 1).await.expect("open");
    store.publish("git://h/deploy", "1111111111111111111111111111111111111111", &example()).await.expect("publish");

    nats.stop().await.expect("stop nats");
    let shutdown = CancellationToken::new();
    let watching = tokio::spawn(Live::watch(store.clone(), shutdown.clone()));
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(!watching.is_finished(), "the watch waits for NATS instead of failing");
    nats.restart().await.expect("restart nats");
    let (live, task) = tokio::time::timeout(Duration::from_secs(30), watching)
        .await
        .expect("the watch is set up once NATS is back")
        .expect("join")
        .expect("watch");
    assert_eq!(live.get().catalog.apps.len(), 3, "the revision in force is loaded");

    // And it follows revisions published after the outage.
    let mut second = example();
    second.apps.remove("writer");
    store.publish("git://h/deploy", "2222222222222222222222222222222222222222", &second).await.expect("publish");
    for _ in 0..250 {
        if live.get().catalog.apps.len() == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(live.get().catalog.apps.len(), 2, "followed after the outage");
    shutdown.cancel();
    task.await.expect("watch task");
}
