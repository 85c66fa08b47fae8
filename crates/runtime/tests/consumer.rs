//! The consumer loop against a real nats-server (and PostgreSQL for the inbox): ack, retry
//! with a bounded number of deliveries, poison messages, and a nats-server kill -9 in the
//! middle of a stream of events.

mod common;

use common::{build_requested, database, nats_config, stream, wait_for};
use slipway_mesh::v1::event::Payload;
use slipway_runtime::consumer::{self, ConsumerSpec, Delivery, LoopOptions, Outcome};
use slipway_runtime::db::inbox;
use slipway_runtime::jetstream::{self, Publisher};
use slipway_testkit::NatsServer;
use sqlx::PgPool;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

fn spec(durable: &str, max_deliver: i64, ack_wait: Duration) -> ConsumerSpec {
    ConsumerSpec {
        durable: durable.into(),
        filter_subjects: vec!["slipway.build.requested.>".into()],
        max_deliver,
        ack_wait,
        max_ack_pending: 1000,
    }
}

fn fast(spec: &ConsumerSpec, concurrency: usize) -> LoopOptions {
    LoopOptions {
        backoff_base: Duration::from_millis(20),
        backoff_max: Duration::from_millis(200),
        ..LoopOptions::for_spec(spec, concurrency)
    }
}

#[tokio::test]
async fn retries_are_bounded_and_poison_is_terminated() {
    let nats = NatsServer::start().await.expect("nats");
    let client = jetstream::connect(&nats_config(&nats.url()), "test").await.expect("connect");
    let stream = stream(&client, &nats.url()).await;
    let spec = spec("bounded", 3, Duration::from_secs(5));
    let consumer = consumer::ensure_consumer(&stream, &spec).await.expect("consumer");

    // A message without CloudEvents headers, and one that always fails.
    let js = async_nats::jetstream::new(client.clone());
    js.publish("slipway.build.requested.writer", "not an event".into()).await.expect("publish").await.expect("ack");
    Publisher::new(client.clone(), "/test").publish(&build_requested(1)).await.expect("publish");
    // An event outside the filter, which the server must not deliver (or the loop must drop).
    let push = slipway_mesh::v1::SourcePush { repository: "acme/mono".into(), ..Default::default() };
    Publisher::new(client.clone(), "/test").publish(&push).await.expect("publish");

    let calls = Arc::new(AtomicUsize::new(0));
    let shutdown = CancellationToken::new();
    let counter = calls.clone();
    let task = tokio::spawn(consumer::run(consumer, fast(&spec, 2), shutdown.clone(), move |d: Delivery| {
        let counter = counter.clone();
        async move {
            assert_eq!(d.envelope.kind, slipway_mesh::EventKind::BuildRequested, "a message outside the filter");
            counter.fetch_add(1, Ordering::SeqCst);
            Outcome::Retry("remote busy".into())
        }
    }));
    let named = stream.get_consumer::<async_nats::jetstream::consumer::pull::Config>("bounded").await.expect("get");
    wait_for("both messages settled", Duration::from_secs(20), || {
        let mut named = named.clone();
        async move {
            let info = named.info().await.expect("info");
            info.ack_floor.stream_sequence >= 2 && info.num_ack_pending == 0 && info.num_pending == 0
        }
    })
    .await;
    // The handler never saw the poison message, and saw the failing one exactly max_deliver times.
    assert_eq!(calls.load(Ordering::SeqCst), 3);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(calls.load(Ordering::SeqCst), 3, "no delivery after the last one");
    shutdown.cancel();
    task.await.expect("join").expect("run");
}

/// Applies a build request once: inbox claim and effect in one transaction.
async fn apply(pool: &PgPool, d: &Delivery) -> Result<bool, sqlx::Error> {
    let Payload::BuildRequested(req) = &d.payload else { return Ok(false) };
    let mut tx = pool.begin().await?;
    let first =
        inbox::claim(&mut tx, "builder", &d.envelope.id).await.map_err(|e| sqlx::Error::Protocol(e.to_string()))?;
    if first {
        sqlx::query(
            "INSERT INTO applied (event_id, build_id) VALUES ($1, $2) \
             ON CONFLICT (event_id) DO UPDATE SET applied_count = applied.applied_count + 1",
        )
        .bind(d.envelope.id.as_str())
        .bind(&req.build_id)
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await?;
    Ok(first)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consumer_resumes_after_nats_kill_without_loss_or_double_processing() {
    const EVENTS: usize = 300;
    let mut nats = NatsServer::start().await.expect("nats");
    let pool = database().await;
    let client = jetstream::connect(&nats_config(&nats.url()), "test").await.expect("connect");
    let stream = stream(&client, &nats.url()).await;
    let spec = spec("builder", 10, Duration::from_secs(2));
    let consumer = consumer::ensure_consumer(&stream, &spec).await.expect("consumer");

    let handled = Arc::new(AtomicUsize::new(0));
    let duplicates = Arc::new(AtomicUsize::new(0));
    let shutdown = CancellationToken::new();
    let (p, h, dups) = (pool.clone(), handled.clone(), duplicates.clone());
    let task = tokio::spawn(consumer::run(consumer, fast(&spec, 4), shutdown.clone(), move |d: Delivery| {
        let (pool, handled, dups) = (p.clone(), h.clone(), dups.clone());
        async move {
            match apply(&pool, &d).await {
                Ok(true) => {
                    handled.fetch_add(1, Ordering::SeqCst);
                    // Every tenth event "loses its ack" after the effect committed, so the
                    // inbox must catch the redelivery.
                    if d.attempt == 1 && d.stream_sequence.is_multiple_of(10) {
                        Outcome::Retry("simulated lost ack".into())
                    } else {
                        Outcome::Ack
                    }
                }
                Ok(false) => {
                    dups.fetch_add(1, Ordering::SeqCst);
                    Outcome::Ack
                }
                Err(e) => Outcome::Retry(e.to_string()),
            }
        }
    }));

    // Publish with a known id per event; a publish that fails during the outage is retried
    // with the same id, so the server dedupes the ones that had in fact been stored.
    let publisher = Publisher::new(client.clone(), "/test");
    let ids: Vec<_> = (0..EVENTS).map(|_| slipway_mesh::EventId::new()).collect();
    for (n, id) in ids.iter().enumerate() {
        if n == EVENTS / 3 {
            // Kill only once the consumer is demonstrably in the middle of its work.
            let h = handled.clone();
            wait_for("consumer running", Duration::from_secs(20), || {
                let h = h.clone();
                async move { h.load(Ordering::SeqCst) >= EVENTS / 6 }
            })
            .await;
            let before = nats.pid();
            nats.kill().await.expect("kill -9 nats");
            assert!(!nats.is_running());
            tokio::time::sleep(Duration::from_millis(500)).await;
            nats.restart().await.expect("restart nats");
            assert_ne!(nats.pid(), before, "a new nats-server process");
        }
        let mut attempts = 0;
        while let Err(e) = publisher.publish_with_id(id.clone(), &build_requested(n)).await {
            attempts += 1;
            assert!(attempts < 60, "publish never recovered: {e}");
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    let p = pool.clone();
    wait_for("every event applied", Duration::from_secs(90), || {
        let p = p.clone();
        async move {
            let n: i64 = sqlx::query_scalar("SELECT count(*) FROM applied").fetch_one(&p).await.unwrap_or(0);
            n == EVENTS as i64
        }
    })
    .await;
    // Let the simulated lost acks come back round.
    let d = duplicates.clone();
    wait_for("redeliveries deduped", Duration::from_secs(30), || {
        let d = d.clone();
        async move { d.load(Ordering::SeqCst) >= EVENTS / 10 }
    })
    .await;
    shutdown.cancel();
    task.await.expect("join").expect("run");

    let max_applied: i32 =
        sqlx::query_scalar("SELECT max(applied_count) FROM applied").fetch_one(&pool).await.expect("max");
    assert_eq!(max_applied, 1, "an event's effect was applied twice");
    let distinct: i64 =
        sqlx::query_scalar("SELECT count(DISTINCT build_id) FROM applied").fetch_one(&pool).await.expect("n");
    assert_eq!(distinct, EVENTS as i64, "an event was lost");
    assert_eq!(handled.load(Ordering::SeqCst), EVENTS);
}

#[tokio::test]
async fn shutdown_lets_the_message_in_hand_finish() {
    let nats = NatsServer::start().await.expect("nats");
    let client = jetstream::connect(&nats_config(&nats.url()), "test").await.expect("connect");
    let stream = stream(&client, &nats.url()).await;
    let spec = spec("drain", 5, Duration::from_secs(30));
    let consumer = consumer::ensure_consumer(&stream, &spec).await.expect("consumer");
    Publisher::new(client.clone(), "/test").publish(&build_requested(1)).await.expect("publish");

    let (started_tx, started_rx) = tokio::sync::oneshot::channel::<()>();
    let started_tx = Arc::new(std::sync::Mutex::new(Some(started_tx)));
    let finished = Arc::new(AtomicUsize::new(0));
    let shutdown = CancellationToken::new();
    let f = finished.clone();
    let task = tokio::spawn(consumer::run(consumer, fast(&spec, 1), shutdown.clone(), move |_d| {
        let (tx, f) = (started_tx.clone(), f.clone());
        async move {
            if let Some(tx) = tx.lock().expect("lock").take() {
                let _ = tx.send(());
            }
            tokio::time::sleep(Duration::from_millis(700)).await;
            f.fetch_add(1, Ordering::SeqCst);
            Outcome::Ack
        }
    }));
    started_rx.await.expect("handler started");
    shutdown.cancel();
    task.await.expect("join").expect("run");
    assert_eq!(finished.load(Ordering::SeqCst), 1, "run returned before the handler finished");
    let mut c = stream.get_consumer::<async_nats::jetstream::consumer::pull::Config>("drain").await.expect("get");
    assert_eq!(c.info().await.expect("info").ack_floor.stream_sequence, 1, "the finished message was acked");
}
