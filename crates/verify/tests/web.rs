//! Web checks against a local server: a response with the expected status and a body that
//! meets the condition passes, a wrong status fails, a condition that does not hold fails,
//! and a server that does not answer in time is retried, then an Error.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use axum::http::{HeaderMap, StatusCode};
use axum::routing::get;
use slipway_catalog::verify::Check;
use slipway_verify::{Measurement, Outcome, Phase, Subject, Verdict, Verifier};
use tokio_util::sync::CancellationToken;

/// The server's base URL and how many requests `/slow` got.
async fn server() -> (String, Arc<AtomicU32>) {
    let slow_hits = Arc::new(AtomicU32::new(0));
    let hits = slow_hits.clone();
    let router = axum::Router::new()
        .route(
            "/status/{app}",
            get(|axum::extract::Path(app): axum::extract::Path<String>, headers: HeaderMap| async move {
                let token = headers.get("x-token").and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
                axum::Json(serde_json::json!({ "data": { "ok": app == "hello", "ratio": 0.97, "token": token } }))
            }),
        )
        .route("/broken", get(|| async { (StatusCode::SERVICE_UNAVAILABLE, "down") }))
        .route(
            "/slow",
            get(move || {
                hits.fetch_add(1, Ordering::SeqCst);
                async {
                    tokio::time::sleep(Duration::from_secs(5)).await;
                    "late"
                }
            }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, router).await });
    (url, slow_hits)
}

async fn run(check: serde_json::Value) -> (Outcome, Vec<Measurement>) {
    let check: Check = serde_json::from_value(serde_json::json!({ "web": check })).expect("check");
    assert!(check.problems().is_empty(), "{:?}", check.problems());
    let subject =
        Subject { app: "hello".into(), stage: "prod".into(), version: "1.3.0".into(), image: "r/hello:1.3.0".into() };
    let mut seen = Vec::new();
    let mut on_measurement = |m: &Measurement| seen.push(m.clone());
    let verifier = Verifier::new(None).unwrap();
    let outcome = verifier.run(&check, &subject, &mut on_measurement, &CancellationToken::new()).await;
    (outcome, seen)
}

#[tokio::test]
async fn the_expected_status_and_a_true_condition_pass() {
    let (url, _) = server().await;
    let (outcome, seen) = run(serde_json::json!({
        "name": "smoke", "url": format!("{url}/status/{{app}}"), "headers": { "x-token": "{version}" },
        "jsonPath": "{$.data}", "successCondition": "result.ok == true && result.ratio >= 0.95 && result.token == '1.3.0'"
    }))
    .await;
    assert_eq!(outcome.verdict, Verdict::Successful, "{outcome:?} {seen:?}");
    assert_eq!((outcome.measurements, seen.len()), (1, 1));
    assert_eq!(seen[0].phase, Phase::Successful);
    assert!(seen[0].value.contains("\"ok\":true"), "{seen:?}");
}

#[tokio::test]
async fn a_false_condition_fails() {
    let (url, _) = server().await;
    let (outcome, seen) = run(serde_json::json!({
        "name": "smoke", "url": format!("{url}/status/other"), "jsonPath": "$.data.ok", "successCondition": "result == true"
    }))
    .await;
    assert_eq!(outcome.verdict, Verdict::Failed, "{outcome:?}");
    assert_eq!(outcome.message, "failed (1) > failureLimit (0)");
    assert_eq!(seen[0].value, "false");
}

#[tokio::test]
async fn a_wrong_status_fails_saying_what_was_expected() {
    let (url, _) = server().await;
    let (outcome, seen) = run(serde_json::json!({ "name": "smoke", "url": format!("{url}/broken") })).await;
    assert_eq!(outcome.verdict, Verdict::Failed, "{outcome:?}");
    assert_eq!(seen[0].message, "expected status 200, got 503");
    assert_eq!(seen[0].value, "503");
    let (outcome, _) = run(serde_json::json!({ "name": "smoke", "url": format!("{url}/broken"), "status": 503 })).await;
    assert_eq!(outcome.verdict, Verdict::Successful, "the status it was told to expect");
}

#[tokio::test]
async fn a_timeout_is_retried_then_an_error() {
    let (url, slow_hits) = server().await;
    let started = std::time::Instant::now();
    let (outcome, seen) =
        run(serde_json::json!({ "name": "smoke", "url": format!("{url}/slow"), "timeoutSeconds": 1, "retries": 1 }))
            .await;
    assert_eq!(outcome.verdict, Verdict::Error, "{outcome:?}");
    assert_eq!(outcome.message, "consecutiveErrors (1) > consecutiveErrorLimit (0)");
    assert_eq!(seen[0].phase, Phase::Error);
    assert!(seen[0].message.contains("2 attempt(s)"), "{seen:?}");
    assert_eq!(slow_hits.load(Ordering::SeqCst), 2, "one retry");
    assert!(started.elapsed() < Duration::from_secs(4), "bounded by the timeout: {:?}", started.elapsed());
}
