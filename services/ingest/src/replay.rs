//! Replaying the [`Spool`]: entries are published oldest first once NATS is back. A failure
//! that will pass (no connection, no ack in time) stops the round, so order is kept and the
//! round is tried again; one that will not (an event larger than the server takes, an entry
//! that does not parse) moves that entry to the dead letters and the round goes on: one bad
//! entry never holds up the deliveries behind it.

use crate::error::{Error, Result};
use crate::originals::Originals;
use crate::spool::Spool;
use bytes::Bytes;
use slipway_mesh::Envelope;
use slipway_runtime::jetstream::Publisher;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// What one round did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Round {
    /// Entries published and deleted.
    pub replayed: usize,
    /// Entries moved to the dead letters.
    pub dead_lettered: usize,
}

/// Publishes every pending entry (oldest first) and deletes it; stops at the first transient
/// failure so order is kept, and moves aside entries that can never be published.
/// A failure that will pass ([`Error::is_permanent`] false) stops the round: it is in the
/// error, with how many entries went out before it.
pub async fn replay_once(spool: &Spool, publisher: &Publisher, originals: &Originals) -> Result<Round> {
    let files = spool.pending()?;
    let mut round = Round::default();
    for path in &files {
        match replay_entry(spool, publisher, originals, path).await {
            Ok(()) => {
                spool.remove(path)?;
                round.replayed += 1;
            }
            Err(e) if e.is_permanent() => {
                spool.dead_letter(path, &e.to_string())?;
                round.dead_lettered += 1;
            }
            Err(e) => {
                tracing::debug!(replayed = round.replayed, "spool replay stops at a failure that may pass");
                return Err(e);
            }
        }
    }
    Ok(round)
}

async fn replay_entry(spool: &Spool, publisher: &Publisher, originals: &Originals, path: &Path) -> Result<()> {
    // An entry that does not read is corrupt for good: Error::Spool(Corrupt) is permanent.
    let entry = spool.read(path)?;
    if let Some(key) = &entry.original {
        // The body first: once the events are out, a consumer may ask for it.
        let body = spool.original(path).map_err(|e| Error::Invalid(e.to_string()))?;
        originals.put(key, &body).await?;
    }
    for event in entry.events {
        let envelope = Envelope::from_pairs(&event.headers).map_err(|e| Error::Invalid(e.to_string()))?;
        (publisher.publish_envelope(&envelope, Bytes::from(event.body)).await).map_err(|e| Error::nats(&e))?;
    }
    Ok(())
}

/// Replays the spool whenever NATS is connected, until `shutdown`.
pub async fn replay(
    spool: Arc<Spool>,
    publisher: Publisher,
    originals: Originals,
    client: async_nats::Client,
    shutdown: CancellationToken,
) {
    while !shutdown.is_cancelled() {
        if client.connection_state() == async_nats::connection::State::Connected && !spool.is_empty() {
            match replay_once(&spool, &publisher, &originals).await {
                Ok(round) if round == Round::default() => {}
                Ok(round) => {
                    tracing::info!(replayed = round.replayed, dead_lettered = round.dead_lettered, "spool replayed")
                }
                Err(e) => tracing::warn!(error = %e, "spool replay interrupted; will retry"),
            }
        }
        tokio::select! {
            () = shutdown.cancelled() => break,
            () = tokio::time::sleep(Duration::from_millis(250)) => {}
        }
    }
}
