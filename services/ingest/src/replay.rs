//! Replaying the [`Spool`]: entries are published oldest first once NATS is back. A failure
//! that will pass (no connection, no ack in time) stops the round, so order is kept and the
//! round is tried again; one that will not (an event larger than the server takes, an entry
//! that does not parse) moves that entry to the dead letters and the round goes on: one bad
//! entry never holds up the deliveries behind it.

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

/// Why an entry did not go out.
enum Failure {
    /// Retrying later may work; the round stops here.
    Transient(String),
    /// Retrying cannot work; the entry is moved aside.
    Permanent(String),
}

/// Publishes every pending entry (oldest first) and deletes it; stops at the first transient
/// failure so order is kept, and moves aside entries that can never be published.
pub async fn replay_once(spool: &Spool, publisher: &Publisher, originals: &Originals) -> Result<Round, String> {
    let files = spool.pending().map_err(|e| e.to_string())?;
    let mut round = Round::default();
    for path in &files {
        match replay_entry(spool, publisher, originals, path).await {
            Ok(()) => {
                spool.remove(path).map_err(|e| e.to_string())?;
                round.replayed += 1;
            }
            Err(Failure::Permanent(reason)) => {
                spool.dead_letter(path, &reason).map_err(|e| e.to_string())?;
                round.dead_lettered += 1;
            }
            Err(Failure::Transient(e)) => return Err(format!("after {} entries: {e}", round.replayed)),
        }
    }
    Ok(round)
}

async fn replay_entry(spool: &Spool, publisher: &Publisher, originals: &Originals, path: &Path) -> Result<(), Failure> {
    let entry = spool.read(path).map_err(|e| Failure::Permanent(e.to_string()))?;
    if let Some(key) = &entry.original {
        // The body first: once the events are out, a consumer may ask for it.
        let body = spool.original(path).map_err(|e| Failure::Permanent(e.to_string()))?;
        originals.put(key, &body).await.map_err(Failure::Transient)?;
    }
    for event in entry.events {
        let envelope = Envelope::from_pairs(&event.headers).map_err(|e| Failure::Permanent(e.to_string()))?;
        match publisher.publish_envelope(&envelope, Bytes::from(event.body)).await {
            Ok(_) => {}
            Err(e) if e.is_permanent() => return Err(Failure::Permanent(e.to_string())),
            Err(e) => return Err(Failure::Transient(e.to_string())),
        }
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
