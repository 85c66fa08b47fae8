//! A fake Kubernetes API server for the health gate's tests: it speaks the real wire protocol
//! over plain HTTP for namespaced collections (`/apis/{group}/{version}/namespaces/{ns}/{resource}`):
//! GET of one object, list (with `fieldSelector=metadata.name=…`) answering a `…List` with the
//! collection's resourceVersion, and watch (`watch=true&resourceVersion=N`) streaming
//! newline-delimited `{"type":"ADDED|MODIFIED|DELETED","object":{…}}` events after N. The test
//! changes objects with [`FakeKube::apply`]/[`FakeKube::delete`], and can cut every open watch
//! connection ([`FakeKube::drop_watches`]) to check that clients resume.

#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap};
use std::convert::Infallible;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::{Value, json};
use tokio::sync::{broadcast, mpsc};
use tokio_stream::wrappers::ReceiverStream;

/// A kind the fake serves: `(group/version, plural, Kind)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Kind {
    pub api_version: &'static str,
    pub plural: &'static str,
    pub kind: &'static str,
}

pub const APPLICATION: Kind = Kind { api_version: "argoproj.io/v1alpha1", plural: "applications", kind: "Application" };
pub const DEPLOYMENT: Kind = Kind { api_version: "apps/v1", plural: "deployments", kind: "Deployment" };
const KINDS: [Kind; 2] = [APPLICATION, DEPLOYMENT];

/// (api version, plural, namespace, name)
type Key = (&'static str, &'static str, String, String);

#[derive(Debug, Clone)]
struct Change {
    rv: u64,
    key: Key,
    kind: &'static str,
    object: Value,
}

#[derive(Default)]
struct Store {
    rv: u64,
    objects: BTreeMap<Key, Value>,
    history: Vec<Change>,
    /// Every request's path and query, in order.
    requests: Vec<String>,
}

struct Shared {
    store: Mutex<Store>,
    changes: broadcast::Sender<Change>,
    drops: tokio::sync::watch::Sender<u64>,
}

/// The running fake; stops when dropped.
pub struct FakeKube {
    pub url: String,
    shared: Arc<Shared>,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for FakeKube {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl FakeKube {
    pub async fn start() -> Self {
        let (changes, _) = broadcast::channel(1024);
        let (drops, _) = tokio::sync::watch::channel(0);
        let shared = Arc::new(Shared { store: Mutex::new(Store::default()), changes, drops });
        let router = Router::new()
            .route("/apis/{group}/{version}/namespaces/{ns}/{plural}", get(collection))
            .route("/apis/{group}/{version}/namespaces/{ns}/{plural}/{name}", get(object))
            .with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind fake kube");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        let server = tokio::spawn(async move {
            axum::serve(listener, router).await.expect("fake kube serves");
        });
        FakeKube { url, shared, server }
    }

    /// Creates or replaces an object (`body` without metadata is fine); returns its resourceVersion.
    pub fn apply(&self, kind: Kind, namespace: &str, name: &str, mut body: Value) -> u64 {
        let mut store = self.shared.store.lock().expect("store");
        store.rv += 1;
        let rv = store.rv;
        let key: Key = (kind.api_version, kind.plural, namespace.to_owned(), name.to_owned());
        let generation = body["metadata"]["generation"].as_i64().unwrap_or(1);
        body["apiVersion"] = json!(kind.api_version);
        body["kind"] = json!(kind.kind);
        body["metadata"] = json!({
            "name": name, "namespace": namespace, "uid": format!("uid-{namespace}-{name}"),
            "resourceVersion": rv.to_string(), "generation": generation,
        });
        let event = if store.objects.contains_key(&key) { "MODIFIED" } else { "ADDED" };
        store.objects.insert(key.clone(), body.clone());
        let change = Change { rv, key, kind: event, object: body };
        store.history.push(change.clone());
        let _ = self.shared.changes.send(change);
        rv
    }

    /// Deletes an object (a DELETED event with its last state).
    pub fn delete(&self, kind: Kind, namespace: &str, name: &str) {
        let mut store = self.shared.store.lock().expect("store");
        let key: Key = (kind.api_version, kind.plural, namespace.to_owned(), name.to_owned());
        let Some(mut object) = store.objects.remove(&key) else { return };
        store.rv += 1;
        let rv = store.rv;
        object["metadata"]["resourceVersion"] = json!(rv.to_string());
        let change = Change { rv, key, kind: "DELETED", object };
        store.history.push(change.clone());
        let _ = self.shared.changes.send(change);
    }

    /// Ends every open watch response (the client sees its connection's body end).
    pub fn drop_watches(&self) {
        self.shared.drops.send_modify(|n| *n += 1);
    }

    /// The requests seen so far (`path?query`).
    pub fn requests(&self) -> Vec<String> {
        self.shared.store.lock().expect("store").requests.clone()
    }

    /// The watch requests seen so far.
    pub fn watch_requests(&self) -> Vec<String> {
        self.requests().into_iter().filter(|r| r.contains("watch=true") || r.contains("watch=1")).collect()
    }
}

fn kind_of(group: &str, version: &str, plural: &str) -> Option<Kind> {
    let api_version = format!("{group}/{version}");
    KINDS.into_iter().find(|k| k.api_version == api_version && k.plural == plural)
}

fn status(code: StatusCode, reason: &str, message: String) -> Response {
    let body = json!({
        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": message, "reason": reason, "code": code.as_u16(),
    });
    (code, axum::Json(body)).into_response()
}

/// `metadata.name=X` out of a field selector (the only field selector the fake knows).
fn name_selector(query: &HashMap<String, String>) -> Option<String> {
    let selector = query.get("fieldSelector")?;
    selector.strip_prefix("metadata.name=").map(str::to_owned)
}

fn record(shared: &Shared, path: &str, query: &HashMap<String, String>) {
    let mut pairs: Vec<String> = query.iter().map(|(k, v)| format!("{k}={v}")).collect();
    pairs.sort();
    shared.store.lock().expect("store").requests.push(format!("{path}?{}", pairs.join("&")));
}

async fn object(
    State(shared): State<Arc<Shared>>,
    Path((group, version, ns, plural, name)): Path<(String, String, String, String, String)>,
) -> Response {
    let path = format!("/apis/{group}/{version}/namespaces/{ns}/{plural}/{name}");
    record(&shared, &path, &HashMap::new());
    let Some(kind) = kind_of(&group, &version, &plural) else {
        return status(StatusCode::NOT_FOUND, "NotFound", format!("the server could not find {plural}"));
    };
    let key: Key = (kind.api_version, kind.plural, ns, name.clone());
    match shared.store.lock().expect("store").objects.get(&key) {
        Some(object) => axum::Json(object.clone()).into_response(),
        None => status(StatusCode::NOT_FOUND, "NotFound", format!("{plural} \"{name}\" not found")),
    }
}

async fn collection(
    State(shared): State<Arc<Shared>>,
    Path((group, version, ns, plural)): Path<(String, String, String, String)>,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    record(&shared, &format!("/apis/{group}/{version}/namespaces/{ns}/{plural}"), &query);
    let Some(kind) = kind_of(&group, &version, &plural) else {
        return status(StatusCode::NOT_FOUND, "NotFound", format!("the server could not find {plural}"));
    };
    let name = name_selector(&query);
    let selects = move |key: &Key| {
        key.0 == kind.api_version && key.1 == kind.plural && key.2 == ns && name.as_ref().is_none_or(|n| *n == key.3)
    };
    if matches!(query.get("watch").map(String::as_str), Some("true" | "1")) {
        let from = query.get("resourceVersion").and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
        return watch(&shared, from, selects);
    }
    let store = shared.store.lock().expect("store");
    let items: Vec<Value> = store.objects.iter().filter(|(k, _)| selects(k)).map(|(_, v)| v.clone()).collect();
    let list = json!({
        "apiVersion": kind.api_version, "kind": format!("{}List", kind.kind),
        "metadata": { "resourceVersion": store.rv.to_string() }, "items": items,
    });
    axum::Json(list).into_response()
}

/// A chunked response of watch events after resourceVersion `from`, until the test drops it.
fn watch(shared: &Arc<Shared>, from: u64, selects: impl Fn(&Key) -> bool + Send + Sync + 'static) -> Response {
    let (tx, rx) = mpsc::channel::<Result<Bytes, Infallible>>(64);
    // Subscribe under the lock, so no change falls between the history and the live feed.
    let (backlog, mut live, mut drops) = {
        let store = shared.store.lock().expect("store");
        let backlog: Vec<Change> = store.history.iter().filter(|c| c.rv > from).cloned().collect();
        (backlog, shared.changes.subscribe(), shared.drops.subscribe())
    };
    tokio::spawn(async move {
        let line = |c: &Change| {
            let mut text = json!({ "type": c.kind, "object": c.object }).to_string();
            text.push('\n');
            Ok(Bytes::from(text))
        };
        for change in backlog.iter().filter(|c| selects(&c.key)) {
            if tx.send(line(change)).await.is_err() {
                return;
            }
        }
        let mut seen = backlog.last().map_or(from, |c| c.rv);
        loop {
            let change = tokio::select! {
                _ = drops.changed() => return,
                () = tx.closed() => return,
                change = live.recv() => match change {
                    Ok(change) => change,
                    Err(broadcast::error::RecvError::Lagged(_)) => continue,
                    Err(broadcast::error::RecvError::Closed) => return,
                },
            };
            if change.rv <= seen || !selects(&change.key) {
                continue;
            }
            seen = change.rv;
            if tx.send(line(&change)).await.is_err() {
                return;
            }
        }
    });
    let body = Body::from_stream(ReceiverStream::new(rx));
    Response::builder().header("content-type", "application/json").body(body).expect("watch response")
}
