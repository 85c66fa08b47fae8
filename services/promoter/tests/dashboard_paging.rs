//! The dashboard's app list and event feed with many apps, in headless Chromium: the matrix
//! is read a page at a time from the server (not all apps at once), searched, filtered by
//! stage, state and "waiting for me" (the saved token's name, by the approval rules), and the
//! live event feed is filtered by app and kind on the server.

mod common;
mod dashboard_kit;
mod webdriver;

use common::writer::wait_promotion;
use dashboard_kit::Service;
use serde_json::json;
use webdriver::Browser;

/// Apps besides `writer`.
const EXTRA: usize = 120;

/// The app names the matrix shows, in order.
async fn shown(browser: &Browser) -> Vec<String> {
    let names = browser
        .script("return [...document.querySelectorAll('#matrix tbody tr')].map(r => r.dataset.app);", json!([]))
        .await;
    serde_json::from_value(names).expect("names")
}

/// The apps of the delivery table, once its first row is `first`.
async fn delivery_rows(browser: &Browser, first: &str) -> Vec<String> {
    let script = "return [...document.querySelectorAll('#delivery tbody tr')].map(r => r.dataset.app);";
    for _ in 0..100 {
        let rows: Vec<String> = serde_json::from_value(browser.script(script, json!([])).await).expect("rows");
        if rows.first().map(String::as_str) == Some(first) {
            return rows;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    panic!("the delivery table never started at {first}: {}", browser.text("#delivery").await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_matrix_pages_searches_and_filters_on_the_server() {
    webdriver::require_chromium();
    let service = Service::start_with(EXTRA).await;
    let pool = &service.promoter.pool;
    service.build("v1", &"a".repeat(40)).await;
    let dev = wait_promotion(pool, "dev", "v1", "committed").await;
    service.healthy("dev", &dev).await;
    service.wait_stage("prod", |s| s["pending"].is_object()).await;

    // The server pages: 50 of 121, in name order.
    let page = service.get("/api/status?page_size=50").await;
    assert_eq!((page["apps"].as_array().map(Vec::len), page["total"].as_u64()), (Some(50), Some(121)));
    assert_eq!(page["nextPageToken"], "50");

    let browser = Browser::start().await;
    browser.goto(&service.url("/dashboard")).await;
    browser.wait_text("#page-info", &["1–50 of 121"]).await;
    let first = shown(&browser).await;
    assert_eq!(first.len(), 50);
    assert_eq!((first[0].as_str(), first[49].as_str()), ("app-000", "app-049"));
    // The delivery table follows the page's apps.
    assert_eq!(delivery_rows(&browser, "app-000").await.len(), 50);
    browser.click("#f-next").await;
    browser.wait_text("#page-info", &["51–100 of 121"]).await;
    assert_eq!(shown(&browser).await.first().map(String::as_str), Some("app-050"));
    assert_eq!(delivery_rows(&browser, "app-050").await, shown(&browser).await);
    browser.click("#f-next").await;
    browser.wait_text("#page-info", &["101–121 of 121"]).await;
    assert_eq!(shown(&browser).await.last().map(String::as_str), Some("writer"));
    browser.click("#f-prev").await;
    browser.wait_text("#page-info", &["51–100 of 121"]).await;

    // Search restarts at the first page.
    browser.type_into("#f-search", "app-01").await;
    browser.wait_text("#page-info", &["1–10 of 10"]).await;
    let found = shown(&browser).await;
    assert_eq!(found, (10..20).map(|i| format!("app-{i:03}")).collect::<Vec<_>>());
    browser.clear("#f-search").await;
    browser.type_into("#f-search", "writ").await;
    browser.wait_text("#page-info", &["1–1 of 1"]).await;
    browser.clear("#f-search").await;
    browser.type_into("#f-search", " ").await;
    browser.wait_text("#page-info", &["1–50 of 121"]).await;

    // Only apps with a promotion waiting: writer, in prod.
    browser
        .script(
            "const s = document.getElementById('f-state'); s.value = 'waiting'; s.dispatchEvent(new Event('change'));",
            json!([]),
        )
        .await;
    browser.wait_text("#page-info", &["1–1 of 1"]).await;
    assert_eq!(shown(&browser).await, ["writer"]);
    browser
        .script(
            "const s = document.getElementById('f-stage'); s.value = 'dev'; s.dispatchEvent(new Event('change'));",
            json!([]),
        )
        .await;
    browser.wait_text("#page-info", &["0–0 of 0"]).await;
    browser.script("for (const id of ['f-stage', 'f-state']) { const s = document.getElementById(id); s.value = ''; s.dispatchEvent(new Event('change')); }", json!([])).await;
    browser.wait_text("#page-info", &["1–50 of 121"]).await;

    // Waiting for me: bob may approve writer in prod, mallory may not; without a token the
    // server says who it needs.
    browser.type_into("#token", "approver-token").await;
    browser.click("#save-token").await;
    browser.click("#f-mine").await;
    browser.wait_text("#page-info", &["1–1 of 1"]).await;
    assert_eq!(shown(&browser).await, ["writer"]);
    browser.clear("#token").await;
    browser.type_into("#token", "mallory-token").await;
    browser.click("#save-token").await;
    browser.click("#f-mine").await;
    browser.click("#f-mine").await;
    browser.wait_text("#matrix", &["No app matches."]).await;
    let answer = service.http.get(service.url("/api/status?mine=true")).send().await.expect("GET");
    assert_eq!(answer.status(), 401, "waiting for whom? needs a token");

    // The feed, filtered on the server: writer's approval events only.
    browser.type_into("#feed-app", "writer").await;
    browser.script("document.getElementById('feed-domain').value = 'approval';", json!([])).await;
    browser.click("#feed-apply").await;
    browser.wait_text("#feed", &["approval.requested", "writer"]).await;
    let types =
        browser.script("return [...document.querySelectorAll('#feed li')].map(l => l.dataset.type);", json!([])).await;
    let types: Vec<String> = serde_json::from_value(types).expect("types");
    assert!(!types.is_empty() && types.iter().all(|t| t.starts_with("approval.")), "{types:?}");
    // The filtered stream still says where its history ends when the newest events are not
    // among those it keeps (here another app's build).
    let other = slipway_mesh::v1::BuildStarted { build_id: "b-5".into(), app: "app-005".into(), ..Default::default() };
    service.promoter.publisher.publish(&other).await.expect("build.started");
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let mut answer = service.http.get(service.url("/api/events?app=writer&domain=approval")).send().await.expect("GET");
    let mut text = String::new();
    let read = async {
        while !text.contains("event: live") {
            let chunk = answer.chunk().await.expect("read").expect("open");
            text.push_str(&String::from_utf8_lossy(&chunk));
        }
    };
    tokio::time::timeout(std::time::Duration::from_secs(10), read).await.expect("the live marker comes");
    let (history, _) = text.split_once("event: live").expect("marker");
    assert!(history.contains("approval.requested") && !history.contains("build.started"), "{history}");
    let approvals = service.get("/api/approvals?limit=1").await;
    assert_eq!((approvals["approvals"].as_array().map(Vec::len), approvals["total"].as_u64()), (Some(1), Some(1)));
    let zero = service.http.get(service.url("/api/approvals?limit=0")).send().await.expect("GET");
    assert_eq!(zero.status(), 400);
    let all = service.get("/api/status").await;
    assert_eq!(all["apps"].as_array().map(Vec::len), Some(121), "unpaged, as before");
    browser.quit().await;
    service.stop().await;
}
