//! The trace context crosses NATS: the consumer's span is a child of the publish span, also
//! when the event was stored with its context and published later from another trace.

mod common;

use common::{build_requested, nats_config, stream};
use slipway_runtime::consumer::{self, ConsumerSpec, LoopOptions, Outcome};
use slipway_runtime::jetstream::{self, Publisher};
use slipway_runtime::telemetry;
use slipway_testkit::NatsServer;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

#[tokio::test]
async fn the_publish_span_is_the_parent_of_the_consumer_span() {
    let capture = telemetry::capture_spans();
    let nats = NatsServer::start().await.expect("nats");
    let client = jetstream::connect(&nats_config(&nats.url()), "test").await.expect("connect");
    let stream = stream(&client, &nats.url()).await;
    let spec = ConsumerSpec::new("traced", &["slipway.build.>".to_owned()], &nats_config(&nats.url()));
    let consumer = consumer::ensure_consumer(&stream, &spec).await.expect("consumer");

    Publisher::new(client, "/test")
        .publish(&build_requested(1))
        .instrument(tracing::info_span!("webhook"))
        .await
        .expect("publish");

    let (done_tx, done_rx) = tokio::sync::mpsc::channel::<()>(1);
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(consumer::run(consumer, LoopOptions::for_spec(&spec, 1), shutdown.clone(), move |_d| {
        let done = done_tx.clone();
        async move {
            let _ = done.send(()).await;
            Outcome::Ack
        }
    }));
    let mut done_rx = done_rx;
    tokio::time::timeout(Duration::from_secs(10), done_rx.recv()).await.expect("handled in time");
    shutdown.cancel();
    task.await.expect("join").expect("run");

    let publish = capture.spans_named("publish").pop().expect("publish span exported");
    let webhook = capture.spans_named("webhook").pop().expect("webhook span exported");
    let consume = capture.spans_named("consume").pop().expect("consume span exported");
    let trace_id = webhook.span_context.trace_id();
    assert_eq!(publish.span_context.trace_id(), trace_id);
    assert_eq!(consume.span_context.trace_id(), trace_id, "the consumer continued the producer's trace");
    assert_eq!(
        consume.parent_span_id,
        publish.span_context.span_id(),
        "the publish span is the consumer span's parent"
    );
}

/// An event stored with the trace context of the span that caused it (an outbox row, a spool
/// entry) and published later from a span of another trace (the relay's, the replay loop's):
/// the publish span continues the stored context, and the consumer continues the publish span.
#[tokio::test]
async fn a_stored_envelope_publishes_in_the_trace_that_stored_it() {
    let capture = telemetry::capture_spans();
    let nats = NatsServer::start().await.expect("nats");
    let client = jetstream::connect(&nats_config(&nats.url()), "test").await.expect("connect");
    let stream = stream(&client, &nats.url()).await;
    let spec = ConsumerSpec::new("stored", &["slipway.build.>".to_owned()], &nats_config(&nats.url()));
    let consumer = consumer::ensure_consumer(&stream, &spec).await.expect("consumer");

    let (mut envelope, body) = slipway_mesh::prepare("/test", &build_requested(2)).expect("prepare");
    envelope.traceparent = tracing::info_span!("enqueue").in_scope(telemetry::current_traceparent);
    assert!(envelope.traceparent.is_some());
    Publisher::new(client, "/test")
        .publish_envelope(&envelope, body.into())
        .instrument(tracing::info_span!("relay"))
        .await
        .expect("publish");

    let (done_tx, mut done_rx) = tokio::sync::mpsc::channel::<()>(1);
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(consumer::run(consumer, LoopOptions::for_spec(&spec, 1), shutdown.clone(), move |_d| {
        let done = done_tx.clone();
        async move {
            let _ = done.send(()).await;
            Outcome::Ack
        }
    }));
    tokio::time::timeout(Duration::from_secs(10), done_rx.recv()).await.expect("handled in time");
    shutdown.cancel();
    task.await.expect("join").expect("run");

    let enqueue = capture.spans_named("enqueue").pop().expect("enqueue span");
    let publish = capture.spans_named("publish").pop().expect("publish span");
    let consume = capture.spans_named("consume").pop().expect("consume span");
    let relay = capture.spans_named("relay").pop().expect("relay span");
    let trace_id = enqueue.span_context.trace_id();
    assert_ne!(relay.span_context.trace_id(), trace_id, "the relay's own span is another trace");
    assert_eq!(publish.span_context.trace_id(), trace_id);
    assert_eq!(publish.parent_span_id, enqueue.span_context.span_id(), "published under the enqueuing span");
    assert_eq!(consume.span_context.trace_id(), trace_id);
    assert_eq!(consume.parent_span_id, publish.span_context.span_id(), "consumed under the publish span");
}
