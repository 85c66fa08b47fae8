//! The runtime on a three-node nats-server cluster: the `SLIPWAY` stream and the catalog's
//! bucket at three replicas, and publishing and consuming that carry on across a kill -9 of
//! the stream leader's node, every event stored exactly once and handled, the killed node
//! rejoining and catching up.

mod common;

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_nats::jetstream::Context;
use common::{build_requested, wait_for};
use slipway_mesh::EventId;
use slipway_runtime::catalog::{self, CatalogStore};
use slipway_runtime::config::NatsConfig;
use slipway_runtime::consumer::{self, ConsumerSpec, Delivery, LoopOptions, Outcome};
use slipway_runtime::jetstream::{self, Publisher, STREAM_NAME};
use slipway_testkit::NatsCluster;
use tokio_util::sync::CancellationToken;

fn cluster_config(cluster: &NatsCluster) -> NatsConfig {
    NatsConfig { url: cluster.url(), stream_replicas: 3, ..NatsConfig::default() }
}

async fn connect(cluster: &NatsCluster) -> (async_nats::Client, Context) {
    let client = jetstream::connect(&cluster_config(cluster), "cluster-test").await.expect("connect");
    let js = async_nats::jetstream::new(client.clone());
    (client, js)
}

/// The (leader, replicas) names of a stream.
async fn placement(js: &Context, stream: &str) -> (String, Vec<String>) {
    let info = js.get_stream(stream).await.expect("stream").info().await.expect("info").clone();
    let cluster = info.cluster.expect("a clustered stream");
    (cluster.leader.unwrap_or_default(), cluster.replicas.into_iter().map(|p| p.name).collect())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_stream_and_the_catalog_bucket_run_at_three_replicas() {
    let cluster = NatsCluster::start().await.expect("cluster");
    let (_client, js) = connect(&cluster).await;
    jetstream::ensure_stream(&js, &cluster_config(&cluster)).await.expect("ensure stream");
    let (leader, replicas) = placement(&js, STREAM_NAME).await;
    assert!(cluster.node_index(&leader).is_some(), "leader {leader:?}");
    assert_eq!(replicas.len(), 2, "{replicas:?}");
    assert!(!replicas.contains(&leader));

    let store = CatalogStore::open(&js, 3).await.expect("open the catalog on the cluster");
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../catalog/example");
    let catalog = slipway_catalog::build(&slipway_catalog::DirTree(dir), "slipway.yaml", &|_| None).expect("example");
    let revision = store.publish("git://h/deploy", &"1".repeat(40), &catalog).await.expect("publish");
    assert_eq!(store.current().await.expect("current"), Some(revision.clone()));
    assert_eq!(store.load(&revision).await.expect("load").apps.len(), catalog.apps.len());
    // The bucket and the object store are streams of their own, at the replicas given.
    for name in [format!("KV_{}", catalog::BUCKET), format!("OBJ_{}", catalog::OBJECTS)] {
        let (_, replicas) = placement(&js, &name).await;
        assert_eq!(replicas.len(), 2, "{name}: {replicas:?}");
    }
}

/// Publishes `id` until the cluster stores it, as the outbox relay and ingest's spool do: a
/// failed publish is sent again with the same id, which the duplicate window dedupes. Returns
/// the errors seen.
async fn publish_until_stored(publisher: &Publisher, id: &EventId, n: usize) -> Vec<String> {
    let started = Instant::now();
    let mut errors = Vec::new();
    while let Err(e) = publisher.publish_with_id(id.clone(), &build_requested(n)).await {
        // An election takes seconds; an outage ten times as long is a failure.
        assert!(started.elapsed() < Duration::from_secs(60), "publish never recovered: {e} ({} tries)", errors.len());
        errors.push(e.to_string());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    errors
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publishing_and_consuming_carry_on_across_a_kill_of_the_stream_leader() {
    const PER_PHASE: usize = 150;
    let mut cluster = NatsCluster::start().await.expect("cluster");
    let (client, js) = connect(&cluster).await;
    let stream = jetstream::ensure_stream(&js, &cluster_config(&cluster)).await.expect("ensure stream");
    let spec = ConsumerSpec {
        durable: "builder".into(),
        filter_subjects: vec!["slipway.build.requested.>".into()],
        max_deliver: 10,
        ack_wait: Duration::from_secs(2),
        max_ack_pending: 1000,
    };
    let pull = consumer::ensure_consumer(&stream, &spec).await.expect("consumer");
    let handled: Arc<Mutex<(usize, HashSet<String>)>> = Arc::default();
    let shutdown = CancellationToken::new();
    let seen = handled.clone();
    let opts = LoopOptions {
        backoff_base: Duration::from_millis(20),
        backoff_max: Duration::from_millis(200),
        ..LoopOptions::for_spec(&spec, 4)
    };
    let task = tokio::spawn(consumer::run(pull, opts, shutdown.clone(), move |d: Delivery| {
        let seen = seen.clone();
        async move {
            let mut seen = seen.lock().unwrap();
            seen.0 += 1;
            seen.1.insert(d.envelope.id.to_string());
            Outcome::Ack
        }
    }));

    let publisher = Publisher::new(client.clone(), "/test");
    let ids: Vec<EventId> = (0..2 * PER_PHASE).map(|_| EventId::new()).collect();
    for (n, id) in ids[..PER_PHASE].iter().enumerate() {
        assert!(publish_until_stored(&publisher, id, n).await.is_empty(), "a publish failed before the kill");
    }
    let leader = cluster.stream_leader(&js, STREAM_NAME).await.expect("stream leader");
    let consumer_leader = stream.consumer_info("builder").await.expect("consumer info").cluster.clone();
    eprintln!("stream leader: node {leader}; consumer leader: {:?}", consumer_leader.and_then(|c| c.leader));
    cluster.kill(leader).await.expect("kill -9 the stream leader's node");
    let killed_at = Instant::now();

    // The publishes right after the kill wait for an ack that no leader sends; the first one
    // stored after the kill ends the gap.
    let mut errors = Vec::new();
    let mut gap = None;
    for (n, id) in ids.iter().enumerate().skip(PER_PHASE) {
        errors.extend(publish_until_stored(&publisher, id, n).await);
        gap.get_or_insert_with(|| killed_at.elapsed());
    }
    let (new_leader, _) =
        cluster.wait_stream_leader(&js, STREAM_NAME, Duration::from_secs(30)).await.expect("a new stream leader");
    assert_ne!(new_leader, leader);
    let distinct: HashSet<&String> = errors.iter().collect();
    eprintln!(
        "kill -9 of node {leader}: first publish stored {:?} after it, node {new_leader} leads; \
         {} failed publish attempts retried, errors: {distinct:?}; all {} published {:?} after the kill",
        gap.unwrap_or_default(),
        errors.len(),
        PER_PHASE,
        killed_at.elapsed(),
    );

    // Every event in the stream exactly once.
    let messages = slipway_testkit::stream_messages(&js, STREAM_NAME).await.expect("read the stream");
    let stored: Vec<String> =
        messages.iter().filter_map(|m| m.headers.get("Nats-Msg-Id").map(|v| v.as_str().to_owned())).collect();
    assert_eq!(stored.len(), 2 * PER_PHASE, "messages in the stream");
    let stored: HashSet<String> = stored.into_iter().collect();
    let wanted: HashSet<String> = ids.iter().map(ToString::to_string).collect();
    assert_eq!(stored, wanted, "each event stored once");

    // And handled by the consumer, which kept going through the election.
    let h = handled.clone();
    wait_for("every event handled", Duration::from_secs(60), || {
        let h = h.clone();
        async move { h.lock().unwrap().1.len() == 2 * PER_PHASE }
    })
    .await;
    let (calls, distinct_handled) = {
        let h = handled.lock().unwrap();
        (h.0, h.1.clone())
    };
    assert_eq!(distinct_handled, wanted, "every event handled");
    eprintln!(
        "consumer: {calls} deliveries for {} events, all handled {:?} after the kill",
        2 * PER_PHASE,
        killed_at.elapsed()
    );

    // The killed node rejoins and its replica catches up.
    let restarted = Instant::now();
    cluster.restart(leader).await.expect("restart");
    let (c, j) = (&cluster, &js);
    wait_for("the restarted replica current", Duration::from_secs(30), || async move {
        c.stream_replica_current(j, STREAM_NAME, leader).await.unwrap_or(false)
    })
    .await;
    eprintln!("node {leader} restarted and its replica current after {:?}", restarted.elapsed());

    shutdown.cancel();
    task.await.expect("join").expect("consumer run");
}
