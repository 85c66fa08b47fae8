//! The fake API server's HTTP side: one handler that reads the Kubernetes REST path
//! (`/api/v1/…` and `/apis/{group}/{version}/…`, namespaced or cluster-level, with the
//! `status` and `log` subresources) and answers as the real server does, errors included
//! (a `Status` object with `reason` and `code`).

use super::Shared;
use super::select::Scope;
use super::store::{Change, Failure, key};
use axum::body::{Body, Bytes};
use axum::extract::{Query, State};
use axum::http::{Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{broadcast, mpsc};
use tokio_stream::wrappers::ReceiverStream;

/// A request's resource: the collection, and the object and subresource if named.
struct Target {
    api_version: String,
    plural: String,
    namespace: Option<String>,
    name: Option<String>,
    sub: Option<String>,
}

fn parse(path: &str) -> Option<Target> {
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    let (api_version, rest) = match segments.as_slice() {
        ["api", version, rest @ ..] => ((*version).to_owned(), rest),
        ["apis", group, version, rest @ ..] => (format!("{group}/{version}"), rest),
        _ => return None,
    };
    let (namespace, rest) = match rest {
        ["namespaces", ns, rest @ ..] if !rest.is_empty() => (Some((*ns).to_owned()), rest),
        _ => (None, rest),
    };
    let (plural, name, sub) = match rest {
        [plural] => (plural, None, None),
        [plural, name] => (plural, Some((*name).to_owned()), None),
        [plural, name, sub] => (plural, Some((*name).to_owned()), Some((*sub).to_owned())),
        _ => return None,
    };
    Some(Target { api_version, plural: (*plural).to_owned(), namespace, name, sub })
}

/// Every request comes through here.
pub(crate) async fn handle(
    State(shared): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    Query(query): Query<HashMap<String, String>>,
    body: Bytes,
) -> Response {
    let line = format!("{method} {}", uri.path_and_query().map_or(uri.path(), |p| p.as_str()));
    shared.lock().requests.push(line);
    let Some(target) = parse(uri.path()) else {
        return status((404, "NotFound", format!("the server could not find the requested resource {}", uri.path())));
    };
    let body: Value = if body.is_empty() { Value::Null } else { serde_json::from_slice(&body).unwrap_or(Value::Null) };
    let result = match (&method, target.name.as_deref(), target.sub.as_deref()) {
        (&Method::GET, None, _) if is_true(query.get("watch")) => return watch(&shared, target, &query),
        (&Method::GET, None, _) => list(&shared, target, &query),
        (&Method::POST, None, _) => create(&shared, &target, body),
        (&Method::DELETE, None, _) => delete_collection(&shared, target, &query, &body),
        (&Method::GET, Some(name), Some("log")) => return log(&shared, &target, name, &query),
        (&Method::GET, Some(name), None | Some("status")) => {
            let store = shared.lock();
            let key = key(&target.api_version, &target.plural, target.namespace.as_deref().unwrap_or(""), name);
            store.objects.get(&key).cloned().ok_or_else(|| super::store::not_found(&key)).map(|o| (200, o))
        }
        (&Method::PUT | &Method::PATCH | &Method::DELETE, Some(name), sub) => {
            let key = key(&target.api_version, &target.plural, target.namespace.as_deref().unwrap_or(""), name);
            let status_only = sub == Some("status");
            match method {
                Method::PUT => shared.change(|s| s.replace(&key, body, status_only).map(|c| vec![c])),
                Method::PATCH => shared.change(|s| s.patch(&key, &body, status_only).map(|c| vec![c])),
                _ => shared.change(|s| s.delete(&key, propagation(&query, &body), true)),
            }
            .map(|changes| (200, changes[0].object.clone()))
        }
        _ => Err((405, "MethodNotAllowed", format!("{method} is not supported on {}", uri.path()))),
    };
    match result {
        Ok((code, object)) => {
            (StatusCode::from_u16(code).unwrap_or(StatusCode::OK), axum::Json(object)).into_response()
        }
        Err(failure) => status(failure),
    }
}

fn is_true(value: Option<&String>) -> bool {
    matches!(value.map(String::as_str), Some("true" | "1"))
}

fn scope(target: Target, query: &HashMap<String, String>) -> Result<Scope, Failure> {
    let (labels, fields) = (query.get("labelSelector"), query.get("fieldSelector"));
    Scope::new(
        target.api_version,
        target.plural,
        target.namespace,
        labels.map(String::as_str),
        fields.map(String::as_str),
    )
    .map_err(|why| (400, "BadRequest", why))
}

fn list(shared: &Shared, target: Target, query: &HashMap<String, String>) -> Result<(u16, Value), Failure> {
    let scope = scope(target, query)?;
    let store = shared.lock();
    let items: Vec<Value> = store.objects.iter().filter(|(k, o)| scope.matches(k, o)).map(|(_, o)| o.clone()).collect();
    let kind = store.kind_of(&scope.api_version, &scope.plural);
    let list = json!({
        "apiVersion": scope.api_version, "kind": format!("{kind}List"),
        "metadata": { "resourceVersion": store.rv.to_string() }, "items": items,
    });
    Ok((200, list))
}

fn create(shared: &Shared, target: &Target, body: Value) -> Result<(u16, Value), Failure> {
    let namespace = target.namespace.as_deref().unwrap_or("");
    if let Some(ns) = body["metadata"]["namespace"].as_str()
        && ns != namespace
    {
        return Err((400, "BadRequest", format!("the namespace of the object ({ns}) does not match the request")));
    }
    let changes = shared.change(|s| s.create(&target.api_version, &target.plural, namespace, body).map(|c| vec![c]))?;
    Ok((201, changes[0].object.clone()))
}

fn delete_collection(
    shared: &Shared,
    target: Target,
    query: &HashMap<String, String>,
    body: &Value,
) -> Result<(u16, Value), Failure> {
    let scope = scope(target, query)?;
    let propagation = propagation(query, body);
    let keys: Vec<_> =
        shared.lock().objects.iter().filter(|(k, o)| scope.matches(k, o)).map(|(k, _)| k.clone()).collect();
    let mut items = Vec::new();
    for key in keys {
        // A dependent may already be gone with its owner.
        if let Ok(changes) = shared.change(|s| s.delete(&key, propagation.clone(), true)) {
            items.push(changes[0].object.clone());
        }
    }
    Ok((200, json!({ "apiVersion": scope.api_version, "kind": "List", "metadata": {}, "items": items })))
}

/// `propagationPolicy` from the query or the `DeleteOptions` body (kube sends the body).
fn propagation(query: &HashMap<String, String>, body: &Value) -> Option<String> {
    query.get("propagationPolicy").cloned().or_else(|| body["propagationPolicy"].as_str().map(str::to_owned))
}

/// `GET /api/v1/namespaces/{ns}/pods/{name}/log`: the text the test set (`tailLines` honoured).
fn log(shared: &Shared, target: &Target, name: &str, query: &HashMap<String, String>) -> Response {
    let namespace = target.namespace.clone().unwrap_or_default();
    let store = shared.lock();
    if target.plural != "pods" || !store.objects.contains_key(&key("v1", "pods", &namespace, name)) {
        return status((404, "NotFound", format!("pods \"{name}\" not found")));
    }
    let text = store.logs.get(&(namespace, name.to_owned())).cloned().unwrap_or_default();
    let text = match query.get("tailLines").and_then(|n| n.parse::<usize>().ok()) {
        Some(n) => {
            let lines: Vec<&str> = text.lines().collect();
            lines[lines.len().saturating_sub(n)..].iter().map(|l| format!("{l}\n")).collect()
        }
        None => text,
    };
    ([("content-type", "text/plain")], text).into_response()
}

/// A Kubernetes `Status` error body.
pub(crate) fn status((code, reason, message): Failure) -> Response {
    let body = json!({
        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": message, "reason": reason, "code": code,
    });
    (StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR), axum::Json(body)).into_response()
}

/// A chunked response of newline-delimited watch events: after `resourceVersion` N the
/// changes after N; without one (or `0`) an `ADDED` per current object first, as the real
/// server does. Ends after `timeoutSeconds` or on [`FakeKube::drop_watches`](super::FakeKube::drop_watches).
fn watch(shared: &Arc<Shared>, target: Target, query: &HashMap<String, String>) -> Response {
    let scope = match scope(target, query) {
        Ok(scope) => scope,
        Err(failure) => return status(failure),
    };
    let from = query.get("resourceVersion").and_then(|v| v.parse::<u64>().ok()).filter(|v| *v > 0);
    let timeout = query.get("timeoutSeconds").and_then(|v| v.parse::<u64>().ok()).map(Duration::from_secs);
    // Subscribe under the lock, so no change falls between the backlog and the live feed.
    let (backlog, seen, mut live, mut drops) = {
        let store = shared.lock();
        let backlog: Vec<Change> = match from {
            Some(from) => store.history.iter().filter(|c| c.rv > from).cloned().collect(),
            None => store
                .objects
                .iter()
                .map(|(k, o)| Change { rv: store.rv, kind: "ADDED", key: k.clone(), object: o.clone() })
                .collect(),
        };
        (backlog, store.rv, shared.changes.subscribe(), shared.drops.subscribe())
    };
    let (tx, rx) = mpsc::channel::<Result<Bytes, Infallible>>(64);
    tokio::spawn(async move {
        let deadline = tokio::time::sleep(timeout.unwrap_or(Duration::from_secs(24 * 3600)));
        tokio::pin!(deadline);
        let line = |c: &Change| Ok(Bytes::from(json!({ "type": c.kind, "object": c.object }).to_string() + "\n"));
        for change in backlog.iter().filter(|c| scope.matches(&c.key, &c.object)) {
            if tx.send(line(change)).await.is_err() {
                return;
            }
        }
        loop {
            let change = tokio::select! {
                _ = drops.changed() => return,
                () = tx.closed() => return,
                () = &mut deadline => return,
                change = live.recv() => match change {
                    Ok(change) => change,
                    Err(broadcast::error::RecvError::Lagged(_)) => continue,
                    Err(broadcast::error::RecvError::Closed) => return,
                },
            };
            if change.rv > seen && scope.matches(&change.key, &change.object) && tx.send(line(&change)).await.is_err() {
                return;
            }
        }
    });
    let body = Body::from_stream(ReceiverStream::new(rx));
    ([("content-type", "application/json")], body).into_response()
}
