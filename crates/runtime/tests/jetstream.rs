//! Publishing against a real nats-server: stream settings, dedupe by event id, headers.

mod common;

use common::{build_requested, nats_config, stream};
use slipway_mesh::{Envelope, EventId, EventKind};
use slipway_runtime::jetstream::{self, Publisher};
use slipway_testkit::NatsServer;
use std::time::Duration;

#[tokio::test]
async fn stream_is_file_backed_with_a_day_of_dedupe() {
    let nats = NatsServer::start().await.expect("nats");
    let client = jetstream::connect(&nats_config(&nats.url()), "test").await.expect("connect");
    let mut stream = stream(&client, &nats.url()).await;
    let info = stream.info().await.expect("info");
    assert_eq!(info.config.name, "SLIPWAY");
    assert_eq!(info.config.subjects, vec!["slipway.>".to_owned()]);
    assert_eq!(info.config.storage, async_nats::jetstream::stream::StorageType::File);
    assert!(info.config.duplicate_window >= Duration::from_secs(24 * 3600));
    // Ensuring again is a no-op, not an error.
    let _again = common::stream(&client, &nats.url()).await;
}

#[tokio::test]
async fn an_event_published_twice_with_one_id_is_stored_once() {
    let nats = NatsServer::start().await.expect("nats");
    let client = jetstream::connect(&nats_config(&nats.url()), "test").await.expect("connect");
    let mut stream = stream(&client, &nats.url()).await;
    let publisher = Publisher::new(client, "/slipway/test/1");
    let id = EventId::new();
    let first = publisher.publish_with_id(id.clone(), &build_requested(1)).await.expect("publish");
    let second = publisher.publish_with_id(id.clone(), &build_requested(1)).await.expect("publish again");
    assert!(!first.duplicate);
    assert!(second.duplicate, "the server must report the second publish as a duplicate");
    assert_eq!(first.sequence, second.sequence);
    let other = publisher.publish(&build_requested(2)).await.expect("another event");
    assert!(!other.duplicate);

    let info = stream.info().await.expect("info");
    assert_eq!(info.state.messages, 2, "one message per distinct id");

    let raw = stream.get_raw_message(first.sequence).await.expect("stored message");
    assert_eq!(raw.subject.as_str(), "slipway.build.requested.writer");
    let envelope = Envelope::from_headers(&raw.headers).expect("envelope");
    assert_eq!(envelope.id, id);
    assert_eq!(envelope.kind, EventKind::BuildRequested);
    assert_eq!(envelope.source, "/slipway/test/1");
    let body: slipway_mesh::v1::BuildRequested = serde_json::from_slice(&raw.payload).expect("json body");
    assert_eq!(body, build_requested(1));
}

#[tokio::test]
async fn invalid_names_never_reach_the_stream() {
    let nats = NatsServer::start().await.expect("nats");
    let client = jetstream::connect(&nats_config(&nats.url()), "test").await.expect("connect");
    let mut stream = stream(&client, &nats.url()).await;
    let publisher = Publisher::new(client, "/test");
    let mut evil = build_requested(1);
    evil.app = "writer.>".into();
    let err = publisher.publish(&evil).await.expect_err("must be refused");
    assert!(err.to_string().contains("app name"), "{err}");
    assert_eq!(stream.info().await.expect("info").state.messages, 0);
}
