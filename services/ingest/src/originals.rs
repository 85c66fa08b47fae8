//! Whole delivery bodies, kept in the JetStream object store bucket
//! [`ORIGINALS_BUCKET`](slipway_mesh::bounds::ORIGINALS_BUCKET) under their delivery id, for as
//! long as delivery ids are remembered. An event that carries only part of a payload (a push
//! of 2,048 commits lists the newest few) references the object, so nothing accepted is thrown
//! away: a consumer or `slipctl delivery` reads the original back. Objects are chunked by the
//! object store, so a 25 MB body never meets the server's `max_payload`.

use async_nats::jetstream::{self, object_store};
use sha2::{Digest, Sha256};
use slipway_mesh::bounds::ORIGINALS_BUCKET;
use slipway_mesh::v1;
use std::time::Duration;

/// Which deliveries keep their whole body.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Keep {
    /// Those whose event had to be cut (the default: no cost for ordinary pushes).
    #[default]
    Cut,
    /// Every push.
    All,
}

/// The reference an event carries to `body`, kept under `delivery`.
pub fn reference(delivery: &str, body: &[u8]) -> v1::Original {
    v1::Original {
        bucket: ORIGINALS_BUCKET.to_owned(),
        key: delivery.to_owned(),
        size: body.len() as u64,
        digest: format!("sha256:{}", hex::encode(Sha256::digest(body))),
    }
}

/// The bucket.
#[derive(Clone)]
pub struct Originals {
    store: object_store::ObjectStore,
}

impl std::fmt::Debug for Originals {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Originals").finish_non_exhaustive()
    }
}

impl Originals {
    /// Binds to the bucket, creating it with objects kept for `retention`.
    pub async fn open(js: &jetstream::Context, retention: Duration, replicas: usize) -> crate::error::Result<Self> {
        let config = object_store::Config {
            bucket: ORIGINALS_BUCKET.to_owned(),
            description: Some("slipway: whole webhook bodies by delivery id".to_owned()),
            max_age: retention,
            storage: jetstream::stream::StorageType::File,
            num_replicas: replicas,
            ..Default::default()
        };
        let store = slipway_runtime::jetstream::object_store(js, config).await?;
        Ok(Self { store })
    }

    /// Stores `body` under `key` (again: the same delivery's body replaces itself).
    pub async fn put(&self, key: &str, body: &[u8]) -> crate::error::Result<()> {
        let started = std::time::Instant::now();
        let mut reader = body;
        (self.store.put(key, &mut reader).await).map_err(|e| crate::error::Error::Nats {
            message: format!("keeping the original of {key}: {e}"),
            permanent: false,
        })?;
        metrics::histogram!("slipway_ingest_original_put_seconds").record(started.elapsed().as_secs_f64());
        metrics::counter!("slipway_ingest_originals_kept_total").increment(1);
        Ok(())
    }
}
