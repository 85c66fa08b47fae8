//! Set-up shared by ingest's integration tests: reading back what ingest stored.

use serde_json::Value;
use slipway_testkit::NatsServer;

/// Every message of the `SLIPWAY` stream: (subject, JSON body).
pub async fn stream_messages(nats: &NatsServer) -> Vec<(String, Value)> {
    let js = async_nats::jetstream::new(async_nats::connect(nats.url()).await.expect("connect"));
    let messages = slipway_testkit::stream_messages(&js, "SLIPWAY").await.expect("stream");
    messages
        .iter()
        .map(|m| (m.subject.to_string(), serde_json::from_slice(&m.payload).unwrap_or(Value::Null)))
        .collect()
}
