//! Live events fanned out to many watchers: the gRPC `Watch` of the admin API and the
//! dashboard's server-sent events read the `SLIPWAY` stream through here.
//!
//! - [`hub`]: one JetStream consumer per stream for all live watchers, each event decoded and
//!   encoded once and broadcast in batches;
//! - [`watch`]: a watch request validated into a [`watch::Filter`], served from the hub or,
//!   for a start in the past or a watcher that fell behind, from a consumer of its own.
//!
//! What both use, the decoding of a stream message and the clean-up of a watch's consumer,
//! sits here, so neither module imports the other both ways.

pub mod hub;
pub mod watch;

use async_nats::jetstream::{self, Message};
use slipway_mesh::v1;
use slipway_mesh::{Envelope, decode_payload, to_event};

/// The event in `message`, if it decodes. Undecodable messages are skipped: a watcher wants
/// the stream, not the first foreign message's error.
pub(crate) fn event(message: &Message) -> Option<v1::Event> {
    let sequence = message.info().ok()?.stream_sequence;
    let decoded = message.headers.as_ref().map(Envelope::from_headers).transpose().and_then(|envelope| {
        let envelope = envelope.ok_or_else(|| slipway_mesh::Error::Envelope("no headers".into()))?;
        let payload = decode_payload(envelope.kind, &message.payload)?;
        Ok(to_event(&envelope, payload, sequence))
    });
    decoded.inspect_err(|e| tracing::debug!(sequence, error = %e, "Watch: skipping an undecodable message")).ok()
}

/// Deletes a watch's consumer when its stream is dropped, rather than leaving it to the
/// server's inactivity timeout. (A consumer the ordered stream recreated after a gap carries
/// a suffix and is left to that timeout.)
pub(crate) struct Cleanup {
    stream: jetstream::stream::Stream,
    name: String,
}

impl Cleanup {
    pub(crate) fn new(stream: jetstream::stream::Stream, name: String) -> Self {
        Cleanup { stream, name }
    }
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        let (stream, name) = (self.stream.clone(), std::mem::take(&mut self.name));
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                if let Err(e) = stream.delete_consumer(&name).await {
                    tracing::debug!(consumer = %name, error = %e, "Watch: consumer already gone");
                }
            });
        }
    }
}
