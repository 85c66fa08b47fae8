//! The app catalog in NATS: every service runs from the revision in force, and switches to
//! a new one without a restart.
//!
//! A compiled [`Catalog`] is stored whole in the object store [`OBJECTS`] under its digest
//! (10,000 apps are megabytes: more than one message may hold), and the JetStream KV bucket
//! [`BUCKET`] holds under [`KEY`] which revision is in force: the git commit it was read at,
//! the object's digest, when, and how many apps. The key's history (the last [`HISTORY`]
//! values) is the catalog's history. [`Live`] watches the key and swaps the catalog it hands
//! out atomically: a caller that took one keeps it for the work in hand (a build or promotion
//! in flight finishes under the revision it started with).

use std::sync::{Arc, RwLock};

use async_nats::jetstream::{self, kv, object_store};
use futures::StreamExt as _;
use serde::{Deserialize, Serialize};
use slipway_catalog::Catalog;
use tokio::io::AsyncReadExt as _;
use tokio_util::sync::CancellationToken;

use crate::{Error, Result};

/// The KV bucket of catalog revisions.
pub const BUCKET: &str = "slipway-catalog";
/// The key of the revision in force.
pub const KEY: &str = "current";
/// The object store of compiled catalogs, by digest.
pub const OBJECTS: &str = "slipway-catalog-revisions";
/// Revisions the KV key keeps (NATS' most).
pub const HISTORY: i64 = 64;

/// One published revision.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Revision {
    /// Where the catalog was read: a git URL, or a local file.
    pub repository: String,
    /// The commit it was read at (empty for a local file).
    pub commit: String,
    /// `sha256:<hex>` of the compiled catalog's JSON; the object's name.
    pub digest: String,
    /// Apps in it.
    pub apps: usize,
    /// The catalog files read, root first.
    pub files: Vec<String>,
    /// RFC 3339.
    pub published_at: String,
    /// KV revision (stream sequence) of this value; 0 before it is stored.
    #[serde(default)]
    pub sequence: u64,
}

fn nats(context: &str) -> impl FnOnce(String) -> Error + '_ {
    move |e| Error::Nats(format!("{context}: {e}"))
}

/// The bucket and the object store.
#[derive(Clone)]
pub struct CatalogStore {
    kv: kv::Store,
    objects: object_store::ObjectStore,
}

impl std::fmt::Debug for CatalogStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CatalogStore").finish_non_exhaustive()
    }
}

impl CatalogStore {
    /// Binds to the bucket and object store, creating them if missing.
    pub async fn open(js: &jetstream::Context, replicas: usize) -> Result<Self> {
        let kv = crate::jetstream::key_value(
            js,
            crate::jetstream::KeyValue {
                bucket: BUCKET,
                description: "slipway: the app catalog revision in force, and its history",
                history: HISTORY,
                max_age: std::time::Duration::ZERO,
                replicas,
            },
        )
        .await?;
        let config = object_store::Config {
            bucket: OBJECTS.to_owned(),
            description: Some("slipway: compiled app catalogs by digest".to_owned()),
            num_replicas: replicas,
            ..Default::default()
        };
        let objects = crate::jetstream::object_store(js, config).await?;
        Ok(Self { kv, objects })
    }

    /// Stores `catalog` and makes it the revision in force.
    pub async fn publish(&self, repository: &str, commit: &str, catalog: &Catalog) -> Result<Revision> {
        let json = serde_json::to_vec(catalog)?;
        let digest = digest(&json);
        let mut reader = json.as_slice();
        self.objects.put(digest.as_str(), &mut reader).await.map_err(|e| nats("catalog object")(e.to_string()))?;
        let mut revision = Revision {
            repository: repository.to_owned(),
            commit: commit.to_owned(),
            digest,
            apps: catalog.apps.len(),
            files: catalog.files.clone(),
            published_at: chrono::Utc::now().to_rfc3339(),
            sequence: 0,
        };
        let value = serde_json::to_vec(&revision)?;
        revision.sequence =
            self.kv.put(KEY, value.into()).await.map_err(|e| nats("catalog revision")(e.to_string()))?;
        Ok(revision)
    }

    /// Follows the revisions put after now.
    async fn watch(&self) -> Result<kv::Watch> {
        self.kv.watch(KEY).await.map_err(|e| nats("catalog watch")(e.to_string()))
    }

    /// The revision in force, if any.
    pub async fn current(&self) -> Result<Option<Revision>> {
        let entry = self.kv.entry(KEY).await.map_err(|e| nats("catalog revision")(e.to_string()))?;
        entry.map(|e| revision_of(&e)).transpose()
    }

    /// Every kept revision, oldest first.
    pub async fn history(&self) -> Result<Vec<Revision>> {
        let mut history = self.kv.history(KEY).await.map_err(|e| nats("catalog history")(e.to_string()))?;
        let mut out = Vec::new();
        while let Some(entry) = history.next().await {
            let entry = entry.map_err(|e| nats("catalog history")(e.to_string()))?;
            if entry.operation == kv::Operation::Put {
                out.push(revision_of(&entry)?);
            }
        }
        Ok(out)
    }

    /// The compiled catalog of `revision`.
    pub async fn load(&self, revision: &Revision) -> Result<Catalog> {
        let mut object =
            self.objects.get(revision.digest.as_str()).await.map_err(|e| nats("catalog object")(e.to_string()))?;
        let mut json = Vec::new();
        object.read_to_end(&mut json).await?;
        if digest(&json) != revision.digest {
            return Err(Error::Nats(format!("catalog object {} does not match its digest", revision.digest)));
        }
        Ok(serde_json::from_slice(&json)?)
    }
}

/// Opens the catalog's bucket, retrying until NATS takes it or `shutdown` fires
/// ([`Error::ShuttingDown`]).
pub async fn open(client: &async_nats::Client, replicas: usize, shutdown: &CancellationToken) -> Result<CatalogStore> {
    let js = jetstream::new(client.clone());
    crate::service::retry("catalog bucket", shutdown, || CatalogStore::open(&js, replicas)).await
}

/// [`open`], then follows the revision in force until the service stops (the watch is one
/// of its tasks): what a service that takes its apps from the catalog starts with.
pub async fn follow(running: &crate::service::Running) -> Result<(CatalogStore, Live)> {
    follow_as(running, |catalog| catalog).await
}

/// [`follow`], keeping only `view` of each revision (a service's own form of it): the
/// compiled catalog is dropped once converted.
pub async fn follow_as<T: Send + Sync + 'static>(
    running: &crate::service::Running,
    view: impl Fn(Catalog) -> T + Send + Sync + 'static,
) -> Result<(CatalogStore, Live<T>)> {
    let store = open(&running.ctx.client, running.replicas, &running.shutdown).await?;
    let (live, task) = Live::watch_as(store.clone(), running.shutdown.child_token(), view).await?;
    running.spawn("catalog watch", task);
    Ok((store, live))
}

fn revision_of(entry: &kv::Entry) -> Result<Revision> {
    let mut revision: Revision = serde_json::from_slice(&entry.value)?;
    revision.sequence = entry.revision;
    Ok(revision)
}

/// The digest `catalog` is stored under: equal digests are equal catalogs (its maps are
/// ordered, so its JSON is canonical).
pub fn digest_of(catalog: &Catalog) -> Result<String> {
    Ok(digest(&serde_json::to_vec(catalog)?))
}

fn digest(bytes: &[u8]) -> String {
    use sha2::Digest as _;
    format!("sha256:{}", hex::encode(sha2::Sha256::digest(bytes)))
}

/// A catalog revision with the view of it a service keeps (the compiled catalog itself by
/// default).
#[derive(Debug, Clone, Default)]
pub struct InForce<T = Catalog> {
    /// `None` before any revision was published.
    pub revision: Option<Revision>,
    pub catalog: Arc<T>,
}

/// How a [`Live`] turns a loaded catalog into what it keeps.
type View<T> = Arc<dyn Fn(Catalog) -> T + Send + Sync>;

/// The revision in force, kept current by a watch on the bucket.
pub struct Live<T = Catalog> {
    current: Arc<RwLock<Arc<InForce<T>>>>,
    view: View<T>,
}

impl<T> Clone for Live<T> {
    fn clone(&self) -> Self {
        Self { current: self.current.clone(), view: self.view.clone() }
    }
}

impl<T> std::fmt::Debug for Live<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let current = self.current.read().unwrap_or_else(std::sync::PoisonError::into_inner);
        f.debug_struct("Live").field("revision", &current.revision).finish_non_exhaustive()
    }
}

impl Default for Live {
    fn default() -> Self {
        Self::fixed(Catalog::default())
    }
}

impl Live {
    /// A fixed catalog (a local file; tests).
    pub fn fixed(catalog: Catalog) -> Self {
        let current = Arc::new(InForce { revision: None, catalog: Arc::new(catalog) });
        Self { current: Arc::new(RwLock::new(current)), view: Arc::new(|catalog| catalog) }
    }

    /// Puts `catalog` of `revision` in force at once if it is newer than the one held: for
    /// the publisher itself, whose next decision must not wait for its own watch to see it.
    pub fn install(&self, revision: Revision, catalog: Arc<Catalog>) {
        if revision.sequence > self.sequence() {
            self.set(InForce { revision: Some(revision), catalog });
        }
    }

    /// Loads the revision in force and follows the bucket until `shutdown`.
    pub async fn watch(
        store: CatalogStore,
        shutdown: CancellationToken,
    ) -> Result<(Self, tokio::task::JoinHandle<()>)> {
        Self::watch_as(store, shutdown, |catalog| catalog).await
    }
}

impl<T: Send + Sync + 'static> Live<T> {
    /// No revision yet: `view` of an empty catalog.
    fn empty(view: View<T>) -> Self {
        let current = Arc::new(InForce { revision: None, catalog: Arc::new(view(Catalog::default())) });
        Self { current: Arc::new(RwLock::new(current)), view }
    }

    /// What is in force now. Hold on to it for the work in hand.
    pub fn get(&self) -> Arc<InForce<T>> {
        self.current.read().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }

    /// The KV sequence of the revision in force (0: none).
    pub fn sequence(&self) -> u64 {
        self.get().revision.as_ref().map_or(0, |r| r.sequence)
    }

    /// Loads the revision in force from `store` now if it is newer than the one held: for a
    /// request made under a revision this watcher has not seen yet.
    pub async fn refresh(&self, store: &CatalogStore) -> Result<()> {
        if let Some(revision) = store.current().await?
            && revision.sequence > self.sequence()
        {
            let catalog = (self.view)(store.load(&revision).await?);
            self.set(InForce { revision: Some(revision), catalog: Arc::new(catalog) });
        }
        Ok(())
    }

    fn set(&self, in_force: InForce<T>) {
        let sequence = in_force.revision.as_ref().map_or(0, |r| r.sequence);
        let mut current = self.current.write().unwrap_or_else(std::sync::PoisonError::into_inner);
        // A refresh and the watch may load the same revision; the newer one wins.
        if current.revision.as_ref().map_or(0, |r| r.sequence) > sequence {
            return;
        }
        metrics::gauge!("slipway_catalog_revision").set(sequence as f64);
        *current = Arc::new(in_force);
    }

    /// Loads the revision in force and follows the bucket until `shutdown`: each new revision
    /// is loaded whole, turned into `view`, then swapped in at once.
    pub async fn watch_as(
        store: CatalogStore,
        shutdown: CancellationToken,
        view: impl Fn(Catalog) -> T + Send + Sync + 'static,
    ) -> Result<(Self, tokio::task::JoinHandle<()>)> {
        let live = Self::empty(Arc::new(view));
        // NATS may be away for a moment at start: wait for it rather than fail the service.
        let mut updates = crate::service::retry("catalog watch", &shutdown, || store.watch()).await?;
        crate::service::retry("catalog load", &shutdown, || live.refresh(&store)).await?;
        let follower = live.clone();
        let task = tokio::spawn(async move {
            // Catches up with the newest revision after a failure, retrying until it is loaded
            // (or the service stops): a revision missed for a moment must not stay missed.
            let catch_up = async |follower: &Self| {
                crate::service::retry("catalog load", &shutdown, || follower.refresh(&store)).await.is_ok()
            };
            loop {
                let entry = tokio::select! {
                    () = shutdown.cancelled() => return,
                    entry = updates.next() => entry,
                };
                let entry = match entry {
                    Some(Ok(entry)) => entry,
                    _ => {
                        tracing::warn!("catalog watch ended; watching again");
                        match crate::service::retry("catalog watch", &shutdown, || store.watch()).await {
                            Ok(again) => updates = again,
                            Err(_) => return,
                        }
                        if !catch_up(&follower).await {
                            return;
                        }
                        continue;
                    }
                };
                if entry.operation != kv::Operation::Put || entry.revision <= follower.sequence() {
                    continue;
                }
                match async { store.load(&revision_of(&entry)?).await.map(|c| (revision_of(&entry), c)) }.await {
                    Ok((Ok(revision), catalog)) => {
                        tracing::info!(commit = %revision.commit, apps = revision.apps, "catalog revision in force");
                        metrics::counter!("slipway_catalog_switches_total").increment(1);
                        let catalog = Arc::new((follower.view)(catalog));
                        follower.set(InForce { revision: Some(revision), catalog });
                    }
                    Ok((Err(e), _)) | Err(e) => {
                        tracing::warn!(error = %e, "catalog revision not loaded yet; loading it again");
                        if !catch_up(&follower).await {
                            return;
                        }
                    }
                }
            }
        });
        Ok((live, task))
    }
}
