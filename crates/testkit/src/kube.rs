//! A fake Kubernetes API server for tests of code that talks to a cluster through `kube`: an
//! axum server on `127.0.0.1:0` that keeps objects in memory and speaks the real HTTP API
//! for any resource (core `/api/v1/…` and `/apis/{group}/{version}/…`, namespaced or
//! cluster-level): create (`POST`, `generateName` too), get, list (`labelSelector`,
//! `fieldSelector=metadata.name=…`), watch (`?watch=true&resourceVersion=N`, newline-delimited
//! `{"type":"ADDED|MODIFIED|DELETED","object":{…}}` with increasing resourceVersions), replace,
//! merge patch (also on `/status`), delete (owned objects go with their owner unless
//! `propagationPolicy` is `Orphan`) and pod logs (`GET …/pods/{name}/log`, plain text).
//!
//! No controllers run: the test plays the cluster's part through the hooks
//! ([`apply`](FakeKube::apply), [`update_status`](FakeKube::update_status),
//! [`set_pod_log`](FakeKube::set_pod_log)) and checks what the code under test did with
//! [`objects`](FakeKube::objects), [`deletions`](FakeKube::deletions) and
//! [`requests`](FakeKube::requests).
//!
//! ```no_run
//! # async fn demo() -> slipway_testkit::Result<()> {
//! let kube = slipway_testkit::kube::FakeKube::start().await?;
//! // point the client at kube.url() (`kube::Config::new(url)`), then:
//! let jobs = kube.objects("Job");
//! # Ok(()) }
//! ```

mod http;
mod select;
mod store;

pub use store::{Deletion, plural_of};

use crate::error::{Error, Result};
use serde_json::Value;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;
use store::{Change, Failure, Store};
use tokio::sync::broadcast;

/// What the handler and the hooks share.
pub(crate) struct Shared {
    store: Mutex<Store>,
    changes: broadcast::Sender<Change>,
    drops: tokio::sync::watch::Sender<u64>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Store> {
        self.store.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Runs a mutation and announces its changes to the open watches.
    fn change(&self, f: impl FnOnce(&mut Store) -> Result<Vec<Change>, Failure>) -> Result<Vec<Change>, Failure> {
        let mut store = self.lock();
        let changes = f(&mut store)?;
        for change in &changes {
            let _ = self.changes.send(change.clone());
        }
        Ok(changes)
    }
}

/// The running fake API server; it stops when dropped.
pub struct FakeKube {
    url: String,
    shared: Arc<Shared>,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for FakeKube {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl FakeKube {
    /// Binds `127.0.0.1:0` and serves until dropped.
    pub async fn start() -> Result<Self> {
        let (changes, _) = broadcast::channel(4096);
        let (drops, _) = tokio::sync::watch::channel(0);
        let shared = Arc::new(Shared { store: Mutex::new(Store::default()), changes, drops });
        let router = axum::Router::new().fallback(http::handle).with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.map_err(Error::io("bind fake kube"))?;
        let url = format!("http://{}", listener.local_addr().map_err(Error::io("fake kube address"))?);
        let server = tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, router).await {
                tracing::error!(error = %e, "fake kube stopped");
            }
        });
        Ok(Self { url, shared, server })
    }

    /// `http://127.0.0.1:PORT`, the cluster URL for `kube::Config::new`.
    pub fn url(&self) -> String {
        self.url.clone()
    }

    /// Every object whose `kind` is `kind` (`Job`, `Pod`, `Application`), in key order.
    pub fn objects(&self, kind: &str) -> Vec<Value> {
        self.shared.lock().objects.values().filter(|o| o["kind"] == kind).cloned().collect()
    }

    /// The object of `kind` called `namespace/name` (empty namespace: cluster-scoped).
    pub fn get(&self, kind: &str, namespace: &str, name: &str) -> Option<Value> {
        let store = self.shared.lock();
        store.find(kind, namespace, name).and_then(|key| store.objects.get(&key).cloned())
    }

    /// Creates `object` (a full manifest: `apiVersion`, `kind`, `metadata.name`, and
    /// `metadata.namespace` unless cluster-scoped) or replaces the one of that name, as a
    /// controller or `kubectl apply` would; returns it as stored. Panics on a bad manifest.
    pub fn apply(&self, object: Value) -> Value {
        let changes = self.shared.change(|s| s.apply(object).map(|c| vec![c]));
        changes.unwrap_or_else(|(_, _, why)| panic!("FakeKube::apply: {why}")).remove(0).object
    }

    /// Merges `status` into the object's status (a JSON merge patch) and sends `MODIFIED`, as
    /// a controller reporting progress; `None` if there is no such object.
    pub fn update_status(&self, kind: &str, namespace: &str, name: &str, status: Value) -> Option<Value> {
        let key = self.shared.lock().find(kind, namespace, name)?;
        let patch = serde_json::json!({ "status": status });
        self.shared.change(|s| s.patch(&key, &patch, true).map(|c| vec![c])).ok().map(|mut c| c.remove(0).object)
    }

    /// Deletes the object (and what it owns), as if a client had (`Background`); `false` if
    /// there was none. Not recorded in [`deletions`](Self::deletions).
    pub fn delete(&self, kind: &str, namespace: &str, name: &str) -> bool {
        let Some(key) = self.shared.lock().find(kind, namespace, name) else { return false };
        self.shared.change(|s| s.delete(&key, Some("Background".to_owned()), false)).is_ok()
    }

    /// The text `GET /api/v1/namespaces/{namespace}/pods/{name}/log` answers.
    pub fn set_pod_log(&self, namespace: &str, name: &str, text: &str) {
        self.shared.lock().logs.insert((namespace.to_owned(), name.to_owned()), text.to_owned());
    }

    /// The delete requests clients made, in order.
    pub fn deletions(&self) -> Vec<Deletion> {
        self.shared.lock().deletions.clone()
    }

    /// `METHOD /path?query` of every request so far, in order.
    pub fn requests(&self) -> Vec<String> {
        self.shared.lock().requests.clone()
    }

    /// The current resourceVersion (of the last change to any object).
    pub fn resource_version(&self) -> u64 {
        self.shared.lock().rv
    }

    /// Ends every open watch response, as an API server restart or a load balancer does:
    /// clients must resume from their last resourceVersion.
    pub fn drop_watches(&self) {
        self.shared.drops.send_modify(|n| *n += 1);
    }

    /// Polls `probe` every 20 ms until it returns `Some`, for up to `timeout`.
    pub async fn wait_for<T>(&self, timeout: Duration, mut probe: impl FnMut(&Self) -> Option<T>) -> Option<T> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if let Some(found) = probe(self) {
                return Some(found);
            }
            if tokio::time::Instant::now() >= deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}
