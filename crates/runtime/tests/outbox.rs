//! The transactional outbox against real PostgreSQL and nats-server.

mod common;

use common::{build_requested, database, nats_config, stream, wait_for};
use slipway_runtime::db::outbox::{self, Relay};
use slipway_runtime::jetstream::{self, Publisher};
use slipway_testkit::NatsServer;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

#[tokio::test]
async fn only_committed_events_are_relayed_once_and_in_order() {
    let nats = NatsServer::start().await.expect("nats");
    let pool = database().await;
    let client = jetstream::connect(&nats_config(&nats.url()), "test").await.expect("connect");
    let mut stream = stream(&client, &nats.url()).await;
    let relay = Relay::new(pool.clone(), Publisher::new(client, "/test"));

    let mut tx = pool.begin().await.expect("tx");
    outbox::enqueue(&mut tx, "/test", &build_requested(99)).await.expect("enqueue");
    tx.rollback().await.expect("rollback");
    assert_eq!(relay.relay_pending().await.expect("relay"), 0, "a rolled-back event must not be sent");

    let mut tx = pool.begin().await.expect("tx");
    let mut ids = Vec::new();
    for n in 0..3 {
        ids.push(outbox::enqueue(&mut tx, "/test", &build_requested(n)).await.expect("enqueue"));
    }
    tx.commit().await.expect("commit");
    assert_eq!(relay.relay_pending().await.expect("relay"), 3);
    assert_eq!(relay.relay_pending().await.expect("relay"), 0, "nothing left");
    for (seq, id) in (1..=3).zip(&ids) {
        let raw = stream.get_raw_message(seq).await.expect("message");
        assert_eq!(raw.headers.get("Nats-Msg-Id").map(|v| v.as_str()), Some(id.as_str()));
    }

    // A relay that crashed after publishing but before marking publishes again: the
    // server drops the copies because the ids are the same.
    sqlx::query("UPDATE slipway_outbox SET published_at = NULL").execute(&pool).await.expect("reset");
    assert_eq!(relay.relay_pending().await.expect("relay"), 3);
    assert_eq!(stream.info().await.expect("info").state.messages, 3, "duplicates were stored");
}

#[tokio::test]
async fn the_running_relay_wakes_on_notify() {
    let nats = NatsServer::start().await.expect("nats");
    let pool = database().await;
    let client = jetstream::connect(&nats_config(&nats.url()), "test").await.expect("connect");
    let stream = stream(&client, &nats.url()).await;
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(Relay::new(pool.clone(), Publisher::new(client, "/test")).run(shutdown.clone()));

    let mut tx = pool.begin().await.expect("tx");
    outbox::enqueue(&mut tx, "/test", &build_requested(1)).await.expect("enqueue");
    tx.commit().await.expect("commit");
    let s = stream.clone();
    wait_for("relayed", Duration::from_secs(5), || {
        let mut s = s.clone();
        async move { s.info().await.map(|i| i.state.messages == 1).unwrap_or(false) }
    })
    .await;
    shutdown.cancel();
    task.await.expect("join").expect("relay");
}
