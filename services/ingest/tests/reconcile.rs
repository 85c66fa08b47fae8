//! The redelivery reconciler against a local fake of GitHub's REST API (real HTTP, GitHub's
//! paths, headers and JSON) and real PostgreSQL.

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::{Duration as ChronoDuration, Utc};
use serde_json::{Value, json};
use slipway_ingest::reconcile::{ReconcileConfig, Reconciler};
use slipway_runtime::config::{DatabaseConfig, Secret};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

#[derive(Default)]
struct FakeGithub {
    redeliveries: Mutex<Vec<(u64, String)>>,
}

fn attempt(id: u64, guid: &str, hours_ago: i64, status: u16) -> Value {
    let at = (Utc::now() - ChronoDuration::hours(hours_ago)).to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    json!({ "id": id, "guid": guid, "delivered_at": at, "redelivery": false, "duration": 0.3,
            "status": if status == 200 { "OK" } else { "failed" }, "status_code": status,
            "event": "push", "action": null, "installation_id": null, "repository_id": 1 })
}

async fn list(
    State(_): State<Arc<FakeGithub>>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Result<(HeaderMap, Json<Value>), StatusCode> {
    if headers.get("authorization").and_then(|v| v.to_str().ok()) != Some("Bearer gh-token") {
        return Err(StatusCode::UNAUTHORIZED);
    }
    let mut out = HeaderMap::new();
    if !q.contains_key("cursor") {
        let host = headers.get("host").and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
        let next = format!("<http://{host}/repos/acme/mono/hooks/7/deliveries?per_page=100&cursor=p2>; rel=\"next\"");
        out.insert("link", next.parse().map_err(|_| StatusCode::INTERNAL_SERVER_ERROR)?);
        // Newest first, as GitHub lists them.
        Ok((out, Json(json!([attempt(12, "b", 1, 200), attempt(11, "a", 2, 502), attempt(10, "c", 3, 504)]))))
    } else {
        Ok((out, Json(json!([attempt(9, "b", 4, 500), attempt(8, "a", 5, 0), attempt(1, "old", 80, 500)]))))
    }
}

async fn redeliver(State(fake): State<Arc<FakeGithub>>, headers: HeaderMap, Path(id): Path<u64>) -> StatusCode {
    let auth = headers.get("authorization").and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
    fake.redeliveries.lock().expect("lock").push((id, auth));
    StatusCode::ACCEPTED
}

#[tokio::test]
async fn failed_deliveries_ingest_never_accepted_are_redelivered_by_one_replica() {
    let fake = Arc::new(FakeGithub::default());
    let app = Router::new()
        .route("/repos/acme/mono/hooks/7/deliveries", get(list))
        .route("/repos/acme/mono/hooks/7/deliveries/{id}/attempts", post(redeliver))
        .with_state(fake.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let api = format!("http://{}", listener.local_addr().expect("addr"));
    tokio::spawn(async move { axum::serve(listener, app).await });

    let url = slipway_testkit::shared_database().await.expect("database");
    let db = DatabaseConfig { url: Some(Secret::new(url)), ..DatabaseConfig::with_schema("ingest") };
    let pool = slipway_runtime::db::connect(&db).await.expect("connect");
    slipway_runtime::db::migrate(&pool, &slipway_ingest::MIGRATOR).await.expect("migrate");
    // "c" failed at GitHub's end (our answer timed out) but ingest did store it.
    sqlx::query("INSERT INTO github_deliveries (delivery_id, event) VALUES ('c', 'push')")
        .execute(&pool)
        .await
        .expect("insert");

    let config = ReconcileConfig {
        hook: "repos/acme/mono/hooks/7".into(),
        api_url: api,
        token: Some(Secret::new("gh-token")),
        ..ReconcileConfig::default()
    };
    let token = config.validated().expect("valid").expect("enabled");
    let reconciler = Reconciler::new(config, token, pool.clone());

    // Another replica holds the lock: this one does nothing.
    let mut other = pool.acquire().await.expect("conn");
    sqlx::query("SELECT pg_advisory_lock(5843150581544353298)").execute(&mut *other).await.expect("lock");
    assert_eq!(reconciler.cycle(Utc::now()).await.expect("cycle"), Vec::<u64>::new());
    sqlx::query("SELECT pg_advisory_unlock(5843150581544353298)").execute(&mut *other).await.expect("unlock");
    drop(other);
    assert!(fake.redeliveries.lock().expect("lock").is_empty());

    // Only "a" qualifies: "b" succeeded on a retry, "c" was accepted, "old" is past the window.
    let asked = reconciler.cycle(Utc::now()).await.expect("cycle");
    assert_eq!(asked, vec![11]);
    assert_eq!(*fake.redeliveries.lock().expect("lock"), vec![(11, "Bearer gh-token".to_owned())]);
}
