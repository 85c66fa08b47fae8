//! A Bloom filter of the delivery ids in the deliveries record, so the common case — a new
//! delivery — does not need a PostgreSQL lookup: the filter's "no" is certain, only its
//! "maybe" is checked against the table.
//!
//! It is filled from the table at start, from this replica's own accepts at once, and from
//! the other replicas' accepts by a refresh every [`REFRESH`]. A redelivery that reaches this
//! replica before the refresh has seen another replica's accept is still dropped: event ids
//! derive from the delivery id and JetStream's duplicate window is a day. Until the first
//! load succeeds, every lookup goes to the table.

use sqlx::PgPool;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// How often the other replicas' accepts are read in.
pub const REFRESH: Duration = Duration::from_secs(30);
/// 2^25 bits (4 MiB): about 1 % false "maybe" at 3.5 million ids within the retention.
const BITS: u64 = 1 << 25;
const HASHES: u64 = 7;

/// The filter.
#[derive(Debug)]
pub struct Known {
    words: Vec<AtomicU64>,
    loaded: AtomicBool,
    hasher: std::collections::hash_map::RandomState,
}

impl Default for Known {
    fn default() -> Self {
        Self::new()
    }
}

impl Known {
    /// An empty, not yet loaded filter.
    pub fn new() -> Self {
        Self {
            words: (0..BITS / 64).map(|_| AtomicU64::new(0)).collect(),
            loaded: AtomicBool::new(false),
            hasher: std::collections::hash_map::RandomState::new(),
        }
    }

    fn positions(&self, id: &str) -> impl Iterator<Item = u64> {
        let mut h = self.hasher.build_hasher();
        h.write(id.as_bytes());
        let a = h.finish();
        let mut h = self.hasher.build_hasher();
        h.write_u8(0xa5);
        h.write(id.as_bytes());
        let b = h.finish() | 1;
        (0..HASHES).map(move |i| a.wrapping_add(i.wrapping_mul(b)) % BITS)
    }

    /// Adds an accepted delivery id.
    pub fn insert(&self, id: &str) {
        for bit in self.positions(id) {
            self.words[(bit / 64) as usize].fetch_or(1 << (bit % 64), Ordering::Relaxed);
        }
    }

    /// False only when `id` was certainly never inserted (and the filter is loaded).
    pub fn may_contain(&self, id: &str) -> bool {
        if !self.loaded.load(Ordering::Acquire) {
            return true;
        }
        self.positions(id).all(|bit| self.words[(bit / 64) as usize].load(Ordering::Relaxed) & (1 << (bit % 64)) != 0)
    }

    /// Marks the filter complete: from now on its "no" is trusted.
    pub fn mark_loaded(&self) {
        self.loaded.store(true, Ordering::Release);
    }
}

async fn read_since(pool: &PgPool, known: &Known, since: Option<chrono::DateTime<chrono::Utc>>) -> sqlx::Result<usize> {
    let ids: Vec<String> = match since {
        None => sqlx::query_scalar("SELECT delivery_id FROM github_deliveries").fetch_all(pool).await?,
        Some(t) => {
            sqlx::query_scalar("SELECT delivery_id FROM github_deliveries WHERE received_at >= $1")
                .bind(t)
                .fetch_all(pool)
                .await?
        }
    };
    for id in &ids {
        known.insert(id);
    }
    Ok(ids.len())
}

/// Loads the whole table (before webhooks are served). On failure the filter stays
/// unloaded, so every lookup goes to the table, and [`keep_loaded`] tries again.
pub async fn load(pool: &PgPool, known: &Known) -> bool {
    match read_since(pool, known, None).await {
        Ok(n) => {
            tracing::info!(ids = n, "delivery filter loaded");
            known.mark_loaded();
            true
        }
        Err(e) => {
            tracing::warn!(error = %e, "delivery filter not loaded; lookups go to the table");
            false
        }
    }
}

/// Reads rows added since the last read every [`REFRESH`] until `shutdown` (and the whole
/// table first, if [`load`] had failed).
pub async fn keep_loaded(pool: PgPool, known: std::sync::Arc<Known>, shutdown: CancellationToken) {
    let mut since = chrono::Utc::now() - chrono::Duration::seconds(60);
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(REFRESH) => {}
        }
        // Rows are written in batches a little after their accept: overlap the windows.
        let started = chrono::Utc::now() - chrono::Duration::seconds(60);
        let unloaded = !known.loaded.load(Ordering::Acquire);
        let read = if unloaded {
            load(&pool, &known).await.then_some(0).ok_or(())
        } else {
            read_since(&pool, &known, Some(since)).await.map_err(|e| {
                tracing::warn!(error = %e, "delivery filter refresh failed");
            })
        };
        if read.is_ok() {
            since = started;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_false_negatives_and_few_false_positives() {
        let known = Known::new();
        assert!(known.may_contain("x"), "an unloaded filter always says maybe");
        known.mark_loaded();
        for i in 0..100_000 {
            known.insert(&format!("delivery-{i}"));
        }
        assert!((0..100_000).all(|i| known.may_contain(&format!("delivery-{i}"))));
        let false_positives = (0..100_000).filter(|i| known.may_contain(&format!("other-{i}"))).count();
        assert!(false_positives < 100, "{false_positives} false positives in 100,000");
    }
}
