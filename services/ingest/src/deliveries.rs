//! The deliveries record: which `X-GitHub-Delivery` ids were accepted. GitHub lets people
//! redeliver a webhook for 3 days and reuses its id, while JetStream's duplicate window is a
//! day, so this record is what keeps a late redelivery from publishing twice. Rows older
//! than the retention (at least 3 days) are pruned.

use sqlx::PgPool;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// True when this delivery id was accepted before. A database outage answers "no": the
/// deterministic event ids still let JetStream drop the copies within its window.
pub async fn seen_before(pool: &PgPool, delivery: &str) -> bool {
    let found = sqlx::query_scalar::<_, i32>("SELECT 1 FROM github_deliveries WHERE delivery_id = $1")
        .bind(delivery)
        .fetch_optional(pool)
        .await;
    match found {
        Ok(row) => row.is_some(),
        Err(e) => {
            tracing::warn!(error = %e, "delivery lookup failed; relying on stream dedupe");
            false
        }
    }
}

/// Records an accepted delivery (best effort; see [`seen_before`]).
pub async fn remember(pool: &PgPool, delivery: &str, event: &str) {
    let stored =
        sqlx::query("INSERT INTO github_deliveries (delivery_id, event) VALUES ($1, $2) ON CONFLICT DO NOTHING")
            .bind(delivery)
            .bind(event)
            .execute(pool)
            .await;
    if let Err(e) = stored {
        tracing::warn!(error = %e, "delivery not recorded; a late redelivery relies on stream dedupe");
    }
}

/// Deletes deliveries older than `retention`; returns how many.
pub async fn prune(pool: &PgPool, retention: Duration) -> Result<u64, sqlx::Error> {
    let secs = i64::try_from(retention.as_secs()).unwrap_or(i64::MAX);
    let done = sqlx::query("DELETE FROM github_deliveries WHERE received_at < now() - make_interval(secs => $1)")
        .bind(secs as f64)
        .execute(pool)
        .await?;
    Ok(done.rows_affected())
}

/// Prunes every hour until `shutdown`.
pub async fn prune_periodically(pool: PgPool, retention: Duration, shutdown: CancellationToken) {
    let mut every = tokio::time::interval(Duration::from_secs(3600));
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = every.tick() => match prune(&pool, retention).await {
                Ok(n) if n > 0 => tracing::info!(deleted = n, "old deliveries pruned"),
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "pruning deliveries failed"),
            },
        }
    }
}
