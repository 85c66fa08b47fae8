//! The delivery trend charts from a seeded history: `writer`'s prod gets deployments, a
//! failure, a rollback and health reports spread over four weeks (rows as the promoter writes
//! them); `/api/trends` folds them into the weeks the definitions say, the SVG charts draw
//! them (a bar per week with deployments, a point per week with a lead time), and headless
//! Chromium renders all four on the app page and on the main page, each with its definition.

mod common;
mod dashboard_kit;
mod webdriver;

use chrono::{DateTime, Duration, Utc};
use dashboard_kit::Service;
use serde_json::{Value, json};
use sqlx::PgPool;
use webdriver::Browser;

/// A run that entered the pipeline at `started` and its promotion written into prod at
/// `committed`.
async fn deploy(pool: &PgPool, id: &str, started: DateTime<Utc>, committed: DateTime<Utc>, trigger: &str) {
    let version = json!({
        "image": { "repository": "registry.local/acme/writer", "tag": id, "digest": "" },
        "source": { "repository": "acme/monorepo", "commitSha": "c".repeat(40), "ref": "refs/heads/main", "author": "dana" },
    });
    sqlx::query(
        "INSERT INTO runs (id, app, build_id, source_repository, commit_sha, git_ref, author, image_repository, \
         image_tag, image_digest, state, started_at) VALUES ($1, 'writer', $1, 'acme/monorepo', $2, 'refs/heads/main', \
         'dana', 'registry.local/acme/writer', $1, '', 'succeeded', $3)",
    )
    .bind(id)
    .bind("c".repeat(40))
    .bind(started)
    .execute(pool)
    .await
    .expect("run");
    sqlx::query(
        "INSERT INTO promotions (id, app, stage, run_id, version, image_tag, image_digest, source_commit, state, \
         trigger, actor, committed_at) VALUES ($1, 'writer', 'prod', $1, $2, $1, '', $3, 'healthy', $4, 'slipway', $5)",
    )
    .bind(id)
    .bind(version)
    .bind("c".repeat(40))
    .bind(trigger)
    .bind(committed)
    .execute(pool)
    .await
    .expect("promotion");
}

/// A health report about `id` in prod, in the audit log as the promoter records it.
async fn report(pool: &PgPool, id: &str, at: DateTime<Utc>, action: &str) {
    sqlx::query(
        "INSERT INTO audit_log (at, actor, action, app, stage, detail) VALUES ($1, 'slipway', $2, 'writer', 'prod', $3)",
    )
    .bind(at)
    .bind(action)
    .bind(json!({ "promotion_id": id }))
    .execute(pool)
    .await
    .expect("audit");
}

fn column(weeks: &Value, field: &str) -> Value {
    Value::Array(weeks.as_array().expect("weeks").iter().map(|w| w[field].clone()).collect())
}

/// For each figure under `css`: its image's natural width (0 until it rendered) and caption.
async fn rendered(browser: &Browser, css: &str) -> Vec<(u64, String)> {
    let script = "return [...document.querySelectorAll(arguments[0] + ' figure')]\
                  .map(f => [f.querySelector('img').naturalWidth, f.querySelector('figcaption').innerText]);";
    for _ in 0..100 {
        let figures: Vec<(u64, String)> =
            serde_json::from_value(browser.script(script, json!([css])).await).expect("figures");
        if figures.len() == 4 && figures.iter().all(|(width, _)| *width > 0) {
            return figures;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    panic!("the charts under {css} never rendered: {}", browser.text(css).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn charts_render_from_a_seeded_history() {
    webdriver::require_chromium();
    let service = Service::start().await;
    let pool = &service.promoter.pool;
    sqlx::query("INSERT INTO apps (name) VALUES ('writer') ON CONFLICT DO NOTHING").execute(pool).await.expect("app");
    let now = Utc::now();
    let (h, week) = (Duration::hours(1), Duration::weeks(1));
    let week0 = now - week * 4 + Duration::days(2);
    deploy(pool, "d1", week0 - h, week0, "auto").await;
    report(pool, "d1", week0 + h, "healthy").await;
    deploy(pool, "d2", week0, week0 + h, "auto").await;
    let week2 = now - week * 2 + Duration::days(2);
    deploy(pool, "d3", week2 - h * 2, week2, "auto").await;
    report(pool, "d3", week2 + h, "degraded").await;
    deploy(pool, "r1", week2 + h, week2 + h * 2, "rollback").await;
    report(pool, "r1", week2 + h * 3, "healthy").await;
    let week3 = now - week + Duration::days(2);
    for (i, id) in ["d4", "d5", "d6"].iter().enumerate() {
        let at = week3 + h * i32::try_from(i).expect("small");
        deploy(pool, id, at - Duration::minutes(30), at - Duration::minutes(10), "manual").await;
        report(pool, id, at, "healthy").await;
    }

    let trends = service.get("/api/trends?app=writer&weeks=4").await;
    assert_eq!(trends["scope"], "app writer");
    let weeks = &trends["weeks"];
    assert_eq!(column(weeks, "deployments"), json!([2, 0, 1, 3]), "the rollback is not a deployment");
    assert_eq!(column(weeks, "failures"), json!([0, 0, 1, 0]));
    assert_eq!(column(weeks, "changeFailureRate"), json!([0.0, null, 1.0, 0.0]));
    assert_eq!(column(weeks, "leadTimeSecs"), json!([5400.0, null, 7200.0, 1800.0]));
    assert_eq!(column(weeks, "timeToRestoreSecs"), json!([null, null, 7200.0, null]));
    let everything = service.get("/api/trends?weeks=4").await;
    assert_eq!((everything["scope"].as_str(), everything["apps"].as_u64()), (Some("everything"), Some(1)));
    for field in ["deployments", "failures", "leadTimeSecs", "timeToRestoreSecs"] {
        assert_eq!(column(&everything["weeks"], field), column(weeks, field), "{field}");
    }
    let definitions = trends["metrics"].as_array().expect("metrics");
    assert_eq!(definitions.len(), 4);

    // The SVG: a bar per week with deployments, a point per week with a lead time.
    let svg = |metric: &str| {
        let url = service.url(&format!("/api/charts/{metric}.svg?app=writer&weeks=4"));
        let http = service.http.clone();
        async move {
            let answer = http.get(url).send().await.expect("GET chart");
            assert_eq!(answer.status(), 200);
            assert_eq!(answer.headers()["content-type"], "image/svg+xml");
            answer.text().await.expect("svg")
        }
    };
    let bars = svg("deployment-frequency").await;
    assert!(bars.starts_with("<svg") && bars.contains("Deployments per week · app writer"), "{bars}");
    assert_eq!(bars.matches("fill=\"#2457C5\"").count(), 3, "{bars}");
    assert_eq!(svg("lead-time").await.matches("<circle").count(), 3);
    assert_eq!(svg("time-to-restore").await.matches("<circle").count(), 1);
    let missing = service.http.get(service.url("/api/charts/nope.svg")).send().await.expect("GET");
    assert_eq!(missing.status(), 404);
    let too_long = service.http.get(service.url("/api/trends?weeks=500")).send().await.expect("GET");
    assert_eq!(too_long.status(), 400);

    // Chromium renders the four charts, each with its definition, on both pages.
    let browser = Browser::start().await;
    browser.goto(&service.url("/dashboard/app/writer")).await;
    let figures = rendered(&browser, "#charts").await;
    for ((width, caption), definition) in figures.iter().zip(definitions) {
        assert_eq!(*width, 640);
        assert!(caption.contains(definition["definition"].as_str().expect("text")), "{caption}");
    }
    browser.goto(&service.url("/dashboard")).await;
    let figures = rendered(&browser, "#trends").await;
    assert!(figures[1].1.starts_with("Lead time for changes (median): From the commit entering"), "{figures:?}");
    let shot = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("dashboard-trends.png");
    browser.script("document.getElementById('trends').scrollIntoView();", json!([])).await;
    browser.screenshot(&shot).await;
    println!("trends screenshot: {}", shot.display());
    browser.quit().await;
    service.stop().await;
}
