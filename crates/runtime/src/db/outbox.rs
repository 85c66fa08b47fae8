//! The outbox: events written in the same transaction as the state change that caused
//! them, relayed to JetStream afterwards.
//!
//! [`enqueue`] stores the envelope and body and notifies `slipway_outbox`; the [`Relay`]
//! wakes on that notification (or a poll interval), publishes pending rows in order with
//! `Nats-Msg-Id` = event id, and marks them published. A crash after the publish but before
//! the mark republishes the same id, which JetStream drops as a duplicate.

use crate::jetstream::Publisher;
use crate::{Result, telemetry};
use bytes::Bytes;
use slipway_mesh::{Envelope, EventId, EventPayload};
use sqlx::postgres::PgListener;
use sqlx::{PgConnection, PgPool, Row};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

const CHANNEL: &str = "slipway_outbox";

/// Stores a new event in the outbox inside the caller's transaction and returns its id.
/// The current span's trace context goes with it, so the relay continues the trace.
pub async fn enqueue<E: EventPayload>(conn: &mut PgConnection, source: &str, payload: &E) -> Result<EventId> {
    enqueue_with_id(conn, EventId::new(), source, payload).await
}

/// [`enqueue`] with a caller-chosen id (enqueueing the same id twice is a no-op).
pub async fn enqueue_with_id<E: EventPayload>(
    conn: &mut PgConnection,
    id: EventId,
    source: &str,
    payload: &E,
) -> Result<EventId> {
    let (mut envelope, body) = slipway_mesh::prepare_with_id(id, source, payload)?;
    envelope.traceparent = telemetry::current_traceparent();
    let headers = serde_json::to_value(envelope.to_pairs())?;
    sqlx::query(
        "INSERT INTO slipway_outbox (event_id, subject, headers, body) VALUES ($1, $2, $3, $4) \
         ON CONFLICT (event_id) DO NOTHING",
    )
    .bind(envelope.id.as_str())
    .bind(&envelope.subject)
    .bind(headers)
    .bind(body)
    .execute(&mut *conn)
    .await?;
    sqlx::query("SELECT pg_notify($1, '')").bind(CHANNEL).execute(&mut *conn).await?;
    Ok(envelope.id)
}

/// Publishes outbox rows to JetStream.
#[derive(Clone)]
pub struct Relay {
    pool: PgPool,
    publisher: Publisher,
    batch: i64,
    poll: Duration,
}

impl Relay {
    /// A relay publishing through `publisher`.
    pub fn new(pool: PgPool, publisher: Publisher) -> Self {
        Self { pool, publisher, batch: 100, poll: Duration::from_secs(1) }
    }

    /// Publishes pending rows (oldest first) until none are left; returns how many it sent.
    /// Rows are locked with `SKIP LOCKED`, so several relays (replicas) can run at once.
    pub async fn relay_pending(&self) -> Result<usize> {
        let mut total = 0;
        loop {
            let mut tx = self.pool.begin().await?;
            let rows = sqlx::query(
                "SELECT seq, headers, body FROM slipway_outbox WHERE published_at IS NULL \
                 ORDER BY seq LIMIT $1 FOR UPDATE SKIP LOCKED",
            )
            .bind(self.batch)
            .fetch_all(&mut *tx)
            .await?;
            if rows.is_empty() {
                tx.commit().await?;
                return Ok(total);
            }
            let mut done = Vec::with_capacity(rows.len());
            for row in &rows {
                let pairs: Vec<(String, String)> = serde_json::from_value(row.try_get("headers")?)?;
                let envelope = Envelope::from_pairs(&pairs)?;
                let body: Vec<u8> = row.try_get("body")?;
                // On a failed publish the transaction rolls back: nothing is marked, all is retried.
                self.publisher.publish_envelope(&envelope, Bytes::from(body)).await?;
                done.push(row.try_get::<i64, _>("seq")?);
            }
            sqlx::query("UPDATE slipway_outbox SET published_at = now() WHERE seq = ANY($1)")
                .bind(&done)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            total += done.len();
        }
    }

    /// Relays until `shutdown`, waking on `NOTIFY slipway_outbox` or every poll interval;
    /// failures are logged and retried on the next wake-up.
    pub async fn run(self, shutdown: CancellationToken) -> Result<()> {
        let mut listener = match PgListener::connect_with(&self.pool).await {
            Ok(mut l) => l.listen(CHANNEL).await.map(|()| l).ok(),
            Err(_) => None,
        };
        while !shutdown.is_cancelled() {
            match self.relay_pending().await {
                Ok(n) if n > 0 => tracing::debug!(events = n, "outbox relayed"),
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "outbox relay failed; will retry"),
            }
            let wait = async {
                match listener.as_mut() {
                    Some(l) => {
                        let _ = tokio::time::timeout(self.poll, l.recv()).await;
                    }
                    None => tokio::time::sleep(self.poll).await,
                }
            };
            tokio::select! { () = shutdown.cancelled() => break, () = wait => {} }
        }
        Ok(())
    }

    /// Deletes rows published more than `days` days ago.
    pub async fn prune(&self, days: i32) -> Result<u64> {
        Ok(sqlx::query("DELETE FROM slipway_outbox WHERE published_at < now() - make_interval(days => $1)")
            .bind(days)
            .execute(&self.pool)
            .await?
            .rows_affected())
    }
}
