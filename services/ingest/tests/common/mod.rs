//! Set-up shared by ingest's integration tests: reading back what ingest stored.

use serde_json::Value;
use slipway_testkit::NatsServer;

/// Every message of the `SLIPWAY` stream: (subject, JSON body).
pub async fn stream_messages(nats: &NatsServer) -> Vec<(String, Value)> {
    let client = async_nats::connect(nats.url()).await.expect("connect");
    let js = async_nats::jetstream::new(client);
    let mut stream = js.get_stream("SLIPWAY").await.expect("stream");
    let last = stream.info().await.expect("info").state.last_sequence;
    let mut out = Vec::new();
    for seq in 1..=last {
        if let Ok(m) = stream.get_raw_message(seq).await {
            out.push((m.subject.to_string(), serde_json::from_slice(&m.payload).unwrap_or(Value::Null)));
        }
    }
    out
}
