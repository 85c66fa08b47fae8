//! The delivery table: one row per (event, destination), claimed before the first post and
//! marked after the last, so a redelivered event finds its row and posts nothing again.
//!
//! States: `pending` (reopened for a replay), `sending` (claimed; attempts counted), `sent`, `skipped` (the provider had nothing
//! to say), `dead` (failed for good; a dead letter holds the event for replay). A `sending`
//! row whose claim is older than the lease belongs to a replica that died mid-delivery and may
//! be taken over. The only duplicate left is a crash between the remote's 2xx and the mark.
//!
//! Finishing a delivery writes the row, the `notification.sent` / `notification.failed` event
//! (outbox) and, for a failure, the dead letter in one transaction.

use serde::Serialize;
use slipway_mesh::v1::{NotificationFailed, NotificationSent};
use slipway_mesh::{Envelope, EventId};
use slipway_runtime::db::outbox;
use sqlx::{PgPool, Row};
use std::time::Duration;

/// What a claim found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// Ours to deliver; attempts made so far (by earlier deliveries of the event).
    Mine {
        /// Attempts already made.
        attempts: u32,
        /// The error of the last one.
        last_error: Option<String>,
    },
    /// Already finished in this state (`sent`, `skipped`, `dead`).
    Done(String),
    /// Another replica is delivering it right now.
    Busy,
}

/// Claims (event, destination).
pub async fn claim(pool: &PgPool, event_id: &str, destination: &str, lease: Duration) -> sqlx::Result<Claim> {
    let lease_ms = i64::try_from(lease.as_millis()).unwrap_or(i64::MAX);
    let row = sqlx::query(
        "INSERT INTO notification_deliveries (event_id, destination, state, attempts) VALUES ($1, $2, 'sending', 0) \
         ON CONFLICT (event_id, destination) DO UPDATE SET state = 'sending', updated_at = now() \
         WHERE notification_deliveries.state = 'pending' OR (notification_deliveries.state = 'sending' \
           AND notification_deliveries.updated_at < now() - make_interval(secs => $3::float8 / 1000)) \
         RETURNING attempts, last_error",
    )
    .bind(event_id)
    .bind(destination)
    .bind(lease_ms as f64)
    .fetch_optional(pool)
    .await?;
    if let Some(row) = row {
        let attempts: i32 = row.try_get("attempts")?;
        return Ok(Claim::Mine {
            attempts: u32::try_from(attempts).unwrap_or(0),
            last_error: row.try_get("last_error")?,
        });
    }
    let state: String =
        sqlx::query_scalar("SELECT state FROM notification_deliveries WHERE event_id = $1 AND destination = $2")
            .bind(event_id)
            .bind(destination)
            .fetch_one(pool)
            .await?;
    Ok(if state == "sending" { Claim::Busy } else { Claim::Done(state) })
}

/// Records an attempt (also renews the claim).
pub async fn record_attempt(
    pool: &PgPool,
    event_id: &str,
    destination: &str,
    attempts: u32,
    error: Option<&str>,
) -> sqlx::Result<()> {
    sqlx::query(
        "UPDATE notification_deliveries SET attempts = $3, last_error = $4, updated_at = now() \
         WHERE event_id = $1 AND destination = $2",
    )
    .bind(event_id)
    .bind(destination)
    .bind(i32::try_from(attempts).unwrap_or(i32::MAX))
    .bind(error)
    .execute(pool)
    .await?;
    Ok(())
}

/// Marks a delivery skipped.
pub async fn skip(pool: &PgPool, event_id: &str, destination: &str, why: &str) -> sqlx::Result<()> {
    sqlx::query(
        "UPDATE notification_deliveries SET state = 'skipped', last_error = $3, updated_at = now() \
         WHERE event_id = $1 AND destination = $2",
    )
    .bind(event_id)
    .bind(destination)
    .bind(why)
    .execute(pool)
    .await?;
    Ok(())
}

/// Marks a delivery sent and emits `notification.sent`.
pub async fn finish_sent(pool: &PgPool, source: &str, sent: &NotificationSent) -> slipway_runtime::Result<()> {
    let mut tx = pool.begin().await?;
    sqlx::query(
        "UPDATE notification_deliveries SET state = 'sent', attempts = $3, last_error = NULL, updated_at = now() \
         WHERE event_id = $1 AND destination = $2",
    )
    .bind(&sent.event_id)
    .bind(&sent.destination)
    .bind(i32::try_from(sent.attempts).unwrap_or(i32::MAX))
    .execute(&mut *tx)
    .await?;
    outbox::enqueue(&mut tx, source, sent).await?;
    tx.commit().await?;
    Ok(())
}

/// Marks a delivery dead, stores the dead letter and emits `notification.failed`.
pub async fn finish_dead(
    pool: &PgPool,
    source: &str,
    failed: &NotificationFailed,
    envelope: &Envelope,
    body: &[u8],
) -> slipway_runtime::Result<()> {
    let mut tx = pool.begin().await?;
    sqlx::query(
        "UPDATE notification_deliveries SET state = 'dead', attempts = $3, last_error = $4, updated_at = now() \
         WHERE event_id = $1 AND destination = $2",
    )
    .bind(&failed.event_id)
    .bind(&failed.destination)
    .bind(i32::try_from(failed.attempts).unwrap_or(i32::MAX))
    .bind(&failed.error)
    .execute(&mut *tx)
    .await?;
    sqlx::query(
        "INSERT INTO notification_dead_letters (event_id, destination, provider, app, attempts, error, headers, body) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(&failed.event_id)
    .bind(&failed.destination)
    .bind(&failed.provider)
    .bind(&failed.app)
    .bind(i32::try_from(failed.attempts).unwrap_or(i32::MAX))
    .bind(&failed.error)
    .bind(serde_json::to_value(envelope.to_pairs())?)
    .bind(body)
    .execute(&mut *tx)
    .await?;
    outbox::enqueue(&mut tx, source, failed).await?;
    tx.commit().await?;
    Ok(())
}

/// A dead letter as `GET /dlq` lists it.
#[derive(Debug, Clone, Serialize)]
pub struct DeadLetter {
    /// Id for `POST /dlq/{id}/replay`.
    pub id: i64,
    /// The event.
    pub event_id: String,
    /// Destination name.
    pub destination: String,
    /// Provider.
    pub provider: String,
    /// App of the event.
    pub app: String,
    /// Attempts made.
    pub attempts: i32,
    /// The last error (redacted).
    pub error: String,
    /// When it was given up on.
    pub created_at: chrono::DateTime<chrono::Utc>,
    /// When it was replayed, if it was.
    pub replayed_at: Option<chrono::DateTime<chrono::Utc>>,
}

fn dead_letter(row: &sqlx::postgres::PgRow) -> sqlx::Result<DeadLetter> {
    Ok(DeadLetter {
        id: row.try_get("id")?,
        event_id: row.try_get("event_id")?,
        destination: row.try_get("destination")?,
        provider: row.try_get("provider")?,
        app: row.try_get("app")?,
        attempts: row.try_get("attempts")?,
        error: row.try_get("error")?,
        created_at: row.try_get("created_at")?,
        replayed_at: row.try_get("replayed_at")?,
    })
}

/// Dead letters, newest first; replayed ones only when `all`.
pub async fn list_dead(pool: &PgPool, all: bool, limit: i64) -> sqlx::Result<Vec<DeadLetter>> {
    let rows = sqlx::query(
        "SELECT id, event_id, destination, provider, app, attempts, error, created_at, replayed_at \
         FROM notification_dead_letters WHERE $1 OR replayed_at IS NULL ORDER BY id DESC LIMIT $2",
    )
    .bind(all)
    .bind(limit)
    .fetch_all(pool)
    .await?;
    rows.iter().map(dead_letter).collect()
}

/// A dead letter's event, for replay: (destination, envelope headers, body).
pub async fn dead_event(pool: &PgPool, id: i64) -> slipway_runtime::Result<Option<(String, Envelope, Vec<u8>)>> {
    let Some(row) = sqlx::query("SELECT destination, headers, body FROM notification_dead_letters WHERE id = $1")
        .bind(id)
        .fetch_optional(pool)
        .await?
    else {
        return Ok(None);
    };
    let pairs: Vec<(String, String)> = serde_json::from_value(row.try_get("headers")?)?;
    Ok(Some((row.try_get("destination")?, Envelope::from_pairs(&pairs)?, row.try_get("body")?)))
}

/// Makes a dead (event, destination) deliverable again and marks the letter replayed.
pub async fn reopen(pool: &PgPool, id: i64, event_id: &EventId, destination: &str) -> sqlx::Result<()> {
    let mut tx = pool.begin().await?;
    sqlx::query(
        "UPDATE notification_deliveries SET state = 'pending', attempts = 0, updated_at = now() \
         WHERE event_id = $1 AND destination = $2 AND state = 'dead'",
    )
    .bind(event_id.as_str())
    .bind(destination)
    .execute(&mut *tx)
    .await?;
    sqlx::query("UPDATE notification_dead_letters SET replayed_at = now() WHERE id = $1")
        .bind(id)
        .execute(&mut *tx)
        .await?;
    tx.commit().await
}

/// Remembers the GitHub deployment of a promotion.
pub async fn save_deployment(
    pool: &PgPool,
    promotion_id: &str,
    destination: &str,
    repository: &str,
    id: i64,
) -> sqlx::Result<()> {
    sqlx::query(
        "INSERT INTO github_deployments (promotion_id, destination, repository, deployment_id) VALUES ($1, $2, $3, $4) \
         ON CONFLICT (promotion_id, destination) DO UPDATE SET repository = $3, deployment_id = $4",
    )
    .bind(promotion_id)
    .bind(destination)
    .bind(repository)
    .bind(id)
    .execute(pool)
    .await?;
    Ok(())
}

/// The GitHub deployment of a promotion: (repository, id).
pub async fn deployment(pool: &PgPool, promotion_id: &str, destination: &str) -> sqlx::Result<Option<(String, i64)>> {
    let row = sqlx::query(
        "SELECT repository, deployment_id FROM github_deployments WHERE promotion_id = $1 AND destination = $2",
    )
    .bind(promotion_id)
    .bind(destination)
    .fetch_optional(pool)
    .await?;
    row.map(|r| Ok((r.try_get("repository")?, r.try_get("deployment_id")?))).transpose()
}
