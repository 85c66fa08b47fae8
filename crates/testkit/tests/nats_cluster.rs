//! The three-node cluster: up with a meta leader, so a stream at three replicas can be created
//! at once; its leader found through the JetStream API; a new one elected after a kill -9 of the
//! old one's node, which restarts on its ports with its store and catches up; gone after drop.

use std::time::{Duration, Instant};

use async_nats::jetstream::{self, stream};
use slipway_testkit::{NATS_CLUSTER_SIZE, NatsCluster};

type TestResult = Result<(), Box<dyn std::error::Error>>;

async fn wait_until<F, Fut>(what: &str, timeout: Duration, mut cond: F) -> TestResult
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    while !cond().await {
        if Instant::now() > deadline {
            return Err(format!("timed out waiting for {what}").into());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(())
}

#[tokio::test]
async fn a_replicated_stream_survives_its_leaders_kill_and_the_node_rejoins() -> TestResult {
    let started = Instant::now();
    let mut cluster = NatsCluster::start().await?;
    eprintln!("cluster up with a meta leader in {:?}", started.elapsed());
    let urls = cluster.urls();
    assert_eq!(urls.len(), NATS_CLUSTER_SIZE);
    assert_eq!(cluster.url(), urls.join(","));
    assert!((0..NATS_CLUSTER_SIZE).all(|i| cluster.is_running(i)));

    let client = async_nats::connect(urls.clone()).await?;
    let js = jetstream::new(client);
    let config = stream::Config {
        name: "EVENTS".into(),
        subjects: vec!["events.>".into()],
        storage: stream::StorageType::File,
        num_replicas: 3,
        ..Default::default()
    };
    let mut events = js.create_stream(config).await?;
    let info = events.info().await?;
    let peers = info.cluster.as_ref().ok_or("no cluster info")?;
    assert_eq!(peers.replicas.len(), 2, "{peers:?}");
    for i in 0..10 {
        js.publish(format!("events.{i}"), "x".into()).await?.await?;
    }
    let leader = cluster.stream_leader(&js, "EVENTS").await?;
    assert_eq!(cluster.node_name(leader), peers.leader.clone().unwrap_or_default());

    let pid = cluster.node(leader).pid().ok_or("no pid")?;
    cluster.kill(leader).await?;
    assert!(!cluster.is_running(leader));
    let (new_leader, took) = cluster.wait_stream_leader(&js, "EVENTS", Duration::from_secs(30)).await?;
    eprintln!("stream leader {leader} (pid {pid}) killed; node {new_leader} leads after {took:?}");
    assert_ne!(new_leader, leader);
    js.publish("events.after", "x".into()).await?.await?;

    let port = cluster.node(leader).port();
    cluster.restart(leader).await?;
    assert_eq!(cluster.node(leader).port(), port);
    wait_until("the restarted replica current", Duration::from_secs(30), || {
        let (cluster, js) = (&cluster, &js);
        async move { cluster.stream_replica_current(js, "EVENTS", leader).await.unwrap_or(false) }
    })
    .await?;
    assert_eq!(js.get_stream("EVENTS").await?.info().await?.state.messages, 11);

    // A graceful stop of a node hands its leaderships over; the cluster keeps a quorum.
    cluster.stop(new_leader).await?;
    let (after_stop, took) = cluster.wait_stream_leader(&js, "EVENTS", Duration::from_secs(30)).await?;
    eprintln!("stream leader {new_leader} stopped; node {after_stop} leads after {took:?}");
    assert_ne!(after_stop, new_leader);

    let store = cluster.node(0).store_dir();
    drop(cluster);
    assert!(!store.exists(), "the store is removed on drop");
    Ok(())
}
