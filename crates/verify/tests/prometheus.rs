//! Prometheus checks against a real Prometheus scraping a test exporter whose request rates
//! the test sets: a good version passes after `count` measurements, a bad one fails after
//! failureLimit+1 failed ones, a query without data ends as Error, and a check without a
//! count ends when stopped.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use slipway_catalog::verify::eval::Value;
use slipway_catalog::verify::{Check, PrometheusCheck};
use slipway_testkit::Prometheus;
use slipway_verify::{Measurement, Phase, Subject, Verdict, Verifier};
use tokio_util::sync::CancellationToken;

/// Requests per 100 ms tick for each `app`: (200s, 500s).
type Rates = Arc<Mutex<BTreeMap<String, (u64, u64)>>>;

/// An exporter on 127.0.0.1:0 serving `http_requests_total{app,code}`, counting up at the
/// test's rates; its `host:port`.
async fn exporter(rates: Rates) -> String {
    let totals: Arc<Mutex<BTreeMap<String, (u64, u64)>>> = Arc::default();
    let (ticking, serving) = (totals.clone(), totals);
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_millis(100));
        loop {
            tick.tick().await;
            let rates = rates.lock().unwrap().clone();
            let mut totals = ticking.lock().unwrap();
            for (app, (ok, errors)) in rates {
                let total = totals.entry(app).or_default();
                total.0 += ok;
                total.1 += errors;
            }
        }
    });
    let metrics = move || {
        let totals = serving.lock().unwrap().clone();
        async move {
            let mut text = String::from("# TYPE http_requests_total counter\n");
            for (app, (ok, errors)) in totals {
                text.push_str(&format!("http_requests_total{{app=\"{app}\",code=\"200\"}} {ok}\n"));
                text.push_str(&format!("http_requests_total{{app=\"{app}\",code=\"500\"}} {errors}\n"));
            }
            text
        }
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap().to_string();
    let router = axum::Router::new().route("/metrics", axum::routing::get(metrics));
    tokio::spawn(async move { axum::serve(listener, router).await });
    address
}

const SUCCESS_RATE: &str =
    r#"sum(rate(http_requests_total{app="{app}",code="200"}[10s])) / sum(rate(http_requests_total{app="{app}"}[10s]))"#;

struct World {
    prometheus: Prometheus,
    verifier: Verifier,
}

/// Prometheus scraping an exporter where `hello` answers 200 only and `bad` half 500s, with
/// enough samples in for a rate.
async fn world() -> World {
    let rates: Rates = Arc::default();
    rates.lock().unwrap().extend([("hello".to_owned(), (10, 0)), ("bad".to_owned(), (5, 5))]);
    let target = exporter(rates).await;
    let prometheus = Prometheus::start(&[target]).await.expect("start prometheus");
    let verifier = Verifier::new(None).expect("verifier");
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    let query = SUCCESS_RATE.replace("{app}", "bad");
    for _ in 0..150 {
        let result = slipway_verify::prometheus::query(&http, &prometheus.url(), &query).await;
        if matches!(result, Ok(Value::Array(ref items)) if !items.is_empty()) {
            return World { prometheus, verifier };
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    panic!("no data in Prometheus after 30 s; log:\n{}", prometheus.log_tail(30));
}

fn subject(app: &str) -> Subject {
    Subject { app: app.into(), stage: "prod".into(), version: "1.3.0".into(), image: format!("r.example/{app}:1.3.0") }
}

fn check(world: &World, count: Option<u32>, failure_limit: i32, consecutive_error_limit: i32) -> Check {
    Check::Prometheus(PrometheusCheck {
        name: "success-rate".into(),
        address: world.prometheus.url(),
        query: SUCCESS_RATE.into(),
        interval: "1s".into(),
        count,
        initial_delay: None,
        success_condition: Some("result[0] >= 0.95".into()),
        failure_condition: None,
        failure_limit,
        inconclusive_limit: 0,
        consecutive_error_limit,
        consecutive_success_limit: None,
    })
}

/// Runs `check` for `app`; the outcome and every measurement.
async fn run(
    world: &World,
    check: &Check,
    app: &str,
    stop: &CancellationToken,
) -> (slipway_verify::Outcome, Vec<Measurement>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let record = seen.clone();
    let mut on_measurement = move |m: &Measurement| record.lock().unwrap().push(m.clone());
    let outcome = tokio::time::timeout(
        Duration::from_secs(60),
        world.verifier.run(check, &subject(app), &mut on_measurement, stop),
    )
    .await
    .expect("the check ends");
    let measurements = seen.lock().unwrap().clone();
    (outcome, measurements)
}

#[tokio::test]
async fn a_good_version_passes_after_count_measurements() {
    let world = world().await;
    let (outcome, measurements) = run(&world, &check(&world, Some(3), 0, 4), "hello", &CancellationToken::new()).await;
    assert_eq!(outcome.verdict, Verdict::Successful, "{outcome:?} {measurements:?}");
    assert_eq!(outcome.message, "count (3) reached");
    assert_eq!(outcome.measurements, 3);
    assert!(measurements.iter().all(|m| m.phase == Phase::Successful && m.value == "[1]"), "{measurements:?}");
    assert!(
        measurements.windows(2).all(|w| w[1].at - w[0].at >= chrono::Duration::milliseconds(900)),
        "an interval apart"
    );
}

#[tokio::test]
async fn a_bad_version_fails_after_failure_limit_plus_one_failed_measurements() {
    let world = world().await;
    let (outcome, measurements) = run(&world, &check(&world, Some(10), 1, 4), "bad", &CancellationToken::new()).await;
    assert_eq!(outcome.verdict, Verdict::Failed, "{outcome:?} {measurements:?}");
    assert_eq!(outcome.message, "failed (2) > failureLimit (1)");
    assert_eq!(outcome.measurements, 2);
    assert!(measurements.iter().all(|m| m.phase == Phase::Failed && m.value.starts_with("[0.")), "{measurements:?}");
}

#[tokio::test]
async fn a_query_without_data_ends_as_error_after_consecutive_error_limit_plus_one() {
    let world = world().await;
    let (outcome, measurements) = run(&world, &check(&world, Some(3), 0, 2), "ghost", &CancellationToken::new()).await;
    assert_eq!(outcome.verdict, Verdict::Error, "{outcome:?} {measurements:?}");
    assert_eq!(outcome.message, "consecutiveErrors (3) > consecutiveErrorLimit (2)");
    assert_eq!(measurements.len(), 3);
    assert!(measurements.iter().all(|m| m.phase == Phase::Error && m.message.contains("no data")), "{measurements:?}");
    // A Prometheus that does not answer is an Error measurement too.
    let mut down = check(&world, Some(1), 0, 0);
    let Check::Prometheus(c) = &mut down else { unreachable!() };
    c.address = format!("http://127.0.0.1:{}", slipway_testkit::free_port());
    let (outcome, measurements) = run(&world, &down, "hello", &CancellationToken::new()).await;
    assert_eq!(outcome.verdict, Verdict::Error);
    assert!(measurements[0].message.contains("querying"), "{measurements:?}");
}

#[tokio::test]
async fn a_check_without_count_runs_until_stopped() {
    let world = world().await;
    let stop = CancellationToken::new();
    let seen = Arc::new(Mutex::new(0));
    let (counter, stopper) = (seen.clone(), stop.clone());
    let mut on_measurement = move |_: &Measurement| {
        let mut n = counter.lock().unwrap();
        *n += 1;
        if *n == 2 {
            stopper.cancel();
        }
    };
    let check = check(&world, None, 0, 4);
    let outcome = world.verifier.run(&check, &subject("hello"), &mut on_measurement, &stop).await;
    assert_eq!(outcome.verdict, Verdict::Successful, "{outcome:?}");
    assert!(outcome.message.starts_with("stopped"), "{outcome:?}");
    assert_eq!(outcome.measurements, 2);
}
