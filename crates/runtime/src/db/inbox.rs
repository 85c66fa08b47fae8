//! The inbox: which events a consumer has already applied.
//!
//! A handler claims the event id inside the transaction that applies its effect. If the
//! claim finds the id already there, the event is a redelivery and the handler only acks.
//! Because claim and effect commit together, a crash between them leaves neither.

use crate::Result;
use slipway_mesh::EventId;
use sqlx::PgConnection;

/// Claims `event_id` for `consumer`. `true`: first time, apply the effect in this
/// transaction. `false`: already applied, do nothing.
pub async fn claim(conn: &mut PgConnection, consumer: &str, event_id: &EventId) -> Result<bool> {
    let inserted = sqlx::query("INSERT INTO slipway_inbox (consumer, event_id) VALUES ($1, $2) ON CONFLICT DO NOTHING")
        .bind(consumer)
        .bind(event_id.as_str())
        .execute(conn)
        .await?
        .rows_affected();
    if inserted == 0 {
        metrics::counter!("slipway_inbox_duplicates_total", "consumer" => consumer.to_owned()).increment(1);
    }
    Ok(inserted == 1)
}

/// Removes claims older than `days` days (the stream's own dedupe covers short windows; the
/// inbox only has to outlive redeliveries).
pub async fn prune(conn: &mut PgConnection, days: i32) -> Result<u64> {
    Ok(sqlx::query("DELETE FROM slipway_inbox WHERE received_at < now() - make_interval(days => $1)")
        .bind(days)
        .execute(conn)
        .await?
        .rows_affected())
}
