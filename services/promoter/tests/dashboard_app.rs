//! The app page (`/dashboard/app/writer`) in headless Chromium through ChromeDriver, against a
//! promoter booted with `run()` on real NATS, PostgreSQL and a git daemon:
//! - the pipeline shows as its stage graph with versions, who may act and the blocker;
//! - each button acts (the promoter records it and writes the GitOps repository) and refuses
//!   with the same code and message the gRPC admin API gives the same token and request;
//! - the commits between the version waiting in prod and the one running there are those of a
//!   real git repository (`git log running..waiting`), pushed as `source.push` events;
//! - the stage's history lists every version with who deployed it, rollbacks marked.

mod common;
mod dashboard_kit;
mod webdriver;

use common::writer::wait_promotion;
use dashboard_kit::{Service, SourceRepo};
use serde_json::{Value, json};
use slipway_mesh::v1;
use webdriver::Browser;

/// Saves `token` in the page (none: removes it).
async fn use_token(browser: &Browser, token: Option<&str>) {
    browser.clear("#token").await;
    if let Some(token) = token {
        browser.type_into("#token", token).await;
    }
    browser.click("#save-token").await;
    browser.wait_text("#token-state", &[if token.is_some() { "token saved" } else { "no token" }]).await;
}

/// Clicks `action` of `stage` and returns the result line once it says something.
async fn click(browser: &Browser, action: &str, stage: &str) -> String {
    browser.script("document.getElementById('action-result').textContent = '';", json!([])).await;
    browser.click(&format!("button[data-action='{action}'][data-stage='{stage}']")).await;
    browser.wait_text("#action-result", &[&format!("{action} writer → {stage}")]).await
}

/// The HTTP status and message the gRPC API's refusal maps to, as the page shows it.
fn as_page_shows(status: &tonic::Status) -> String {
    let code = match status.code() {
        tonic::Code::Unauthenticated => 401,
        tonic::Code::PermissionDenied => 403,
        tonic::Code::FailedPrecondition | tonic::Code::Aborted | tonic::Code::AlreadyExists => 409,
        tonic::Code::NotFound => 404,
        tonic::Code::InvalidArgument => 400,
        other => panic!("unexpected refusal {other:?}: {}", status.message()),
    };
    format!("{code}: {}", status.message())
}

async fn promotion_state(service: &Service, id: &str) -> String {
    sqlx::query_scalar("SELECT state FROM promotions WHERE id = $1")
        .bind(id)
        .fetch_one(&service.promoter.pool)
        .await
        .expect("promotion")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn app_page_buttons_act_and_refuse_as_the_api_does() {
    webdriver::require_chromium();
    let service = Service::start().await;
    let pool = &service.promoter.pool;
    let channel = common::api::connect(service.promoter.api).await;
    let mut repo = SourceRepo::new();
    let c1 = repo.commit("dana", "feat: greet the world");
    service.promoter.publisher.publish(&repo.push()).await.expect("push 1");
    service.build("v1", &c1).await;
    let dev = wait_promotion(pool, "dev", "v1", "committed").await;
    service.healthy("dev", &dev).await;
    let prod = service.wait_stage("prod", |s| s["pending"].is_object()).await;
    let pending_v1 = prod["pending"]["promotionId"].as_str().expect("id").to_owned();

    let browser = Browser::start().await;
    browser.goto(&service.url("/dashboard/app/writer")).await;
    let short = &c1[..7];
    browser.wait_text(".stage[data-stage='dev']", &["v1", short, "healthy", "no checks"]).await;
    let box_text = browser
        .wait_text(".stage[data-stage='prod']", &["waiting: v1", "waiting for approvals: 0/1", "bob, team sre (alice)"])
        .await;
    assert!(box_text.contains("admins (olga)") && box_text.contains("not deployed"), "{box_text}");
    let title = browser
        .script("return document.querySelector(\".stage[data-stage='dev'] .running-version\").title", json!([]))
        .await;
    assert!(title.as_str().is_some_and(|t| t.contains(&c1)), "the full sha on hover: {title}");

    // Refusals: the page's answer is the gRPC API's for the same token and request.
    let request = v1::ApproveRequest {
        app: "writer".into(),
        stage: "prod".into(),
        promotion_id: pending_v1.clone(),
        ..Default::default()
    };
    for token in [None, Some("viewer-token"), Some("mallory-token")] {
        let mut client = match token {
            Some(token) => common::api::bearer(&channel, token),
            None => common::api::client(&channel, None),
        };
        let refused = client.approve(request.clone()).await.expect_err("refused over gRPC");
        use_token(&browser, token).await;
        let shown = click(&browser, "approve", "prod").await;
        assert!(shown.contains(&as_page_shows(&refused)), "{token:?}: the page says {shown:?}, gRPC {refused:?}");
    }
    let hold =
        v1::HoldRequest { app: "writer".into(), stage: "prod".into(), reason: "from the dashboard (hold)".into() };
    let refused = common::api::bearer(&channel, "approver-token").hold(hold).await;
    use_token(&browser, Some("approver-token")).await;
    let shown = click(&browser, "hold", "prod").await;
    match refused {
        Err(refused) => assert!(shown.contains(&as_page_shows(&refused)), "{shown:?} vs {refused:?}"),
        Ok(_) => assert!(shown.contains("done"), "gRPC allowed bob's hold, so must the page: {shown}"),
    }
    if shown.contains("done") {
        common::api::bearer(&channel, "operator-token")
            .release(v1::ReleaseRequest { app: "writer".into(), stage: "prod".into(), reason: "undo".into() })
            .await
            .expect("release");
    }
    assert_eq!(promotion_state(&service, &pending_v1).await, "pending", "no refusal changed anything");

    // Approve as bob: recorded, and v1 is written to prod.
    let shown = click(&browser, "approve", "prod").await;
    assert!(shown.contains("done"), "{shown}");
    let approvers: Vec<String> = sqlx::query_scalar("SELECT actor FROM approvals WHERE promotion_id = $1")
        .bind(&pending_v1)
        .fetch_all(pool)
        .await
        .expect("approvals");
    assert_eq!(approvers, ["bob"]);
    let prod_v1 = wait_promotion(pool, "prod", "v1", "committed").await;
    assert_eq!(common::remote_tag(&service.daemon, "prod"), "v1");
    service.healthy("prod", &prod_v1).await;

    // Hold and release as olga (an operator and pipeline admin).
    use_token(&browser, Some("operator-token")).await;
    assert!(click(&browser, "hold", "prod").await.contains("done"));
    browser.wait_text(".stage[data-stage='prod'] .blocker", &["held by olga: from the dashboard (hold)"]).await;
    let held: Option<String> = sqlx::query_scalar("SELECT actor FROM holds WHERE app = 'writer' AND stage = 'prod'")
        .fetch_optional(pool)
        .await
        .expect("holds");
    assert_eq!(held.as_deref(), Some("olga"));
    assert!(click(&browser, "release", "prod").await.contains("done"));
    let held: Option<String> = sqlx::query_scalar("SELECT actor FROM holds WHERE app = 'writer' AND stage = 'prod'")
        .fetch_optional(pool)
        .await
        .expect("holds");
    assert_eq!(held, None);

    // Three more commits in two pushes; v2 is built from the last and waits in prod.
    let c2 = repo.commit("erin", "fix: greet politely");
    let c3 = repo.commit("dana", "docs: say who is greeted");
    service.promoter.publisher.publish(&repo.push()).await.expect("push 2");
    let c4 = repo.commit("frank", "feat: greet in French\n\nBonjour.");
    service.promoter.publisher.publish(&repo.push()).await.expect("push 3");
    service.build("v2", &c4).await;
    let dev_v2 = wait_promotion(pool, "dev", "v2", "committed").await;
    service.healthy("dev", &dev_v2).await;
    let prod = service.wait_stage("prod", |s| s["pending"]["version"]["tag"] == "v2").await;
    let pending_v2 = prod["pending"]["promotionId"].as_str().expect("id").to_owned();

    // The commits between them are those git has between them, with links.
    let expected = repo.log(&format!("{c1}..{c4}"), "%H");
    assert_eq!(expected, [c4.clone(), c3.clone(), c2.clone()]);
    let listed = |field: &str| {
        format!("return [...document.querySelectorAll(\".commits[data-stage='prod'] li\")].map(l => {field});")
    };
    let commits = browser.wait_text(".commits[data-stage='prod']", &["greet in French", "frank"]).await;
    let shas = browser.script(&listed("l.dataset.sha"), json!([])).await;
    assert_eq!(shas, json!(expected), "{commits}");
    let subjects = browser.script(&listed("l.querySelector('.message').textContent"), json!([])).await;
    assert_eq!(subjects, json!(repo.log(&format!("{c1}..{c4}"), "%s")));
    let authors = browser.script(&listed("l.querySelector('.author').textContent"), json!([])).await;
    assert_eq!(authors, json!(["— frank", "— dana", "— erin"]));
    let links = browser.script(&listed("l.querySelector('a').href"), json!([])).await;
    assert_eq!(links[0], json!(format!("https://github.com/acme/monorepo/commit/{c4}")));
    assert!(!commits.contains("greet the world"), "the running version's own commit is not listed: {commits}");

    // Reject as bob: the promotion fails, nothing waits.
    use_token(&browser, Some("approver-token")).await;
    assert!(click(&browser, "reject", "prod").await.contains("done"));
    assert_ne!(promotion_state(&service, &pending_v2).await, "pending");
    service.wait_stage("prod", |s| s["pending"].is_null()).await;

    // Promote as olga (her promotion counts as the approval), then roll back.
    use_token(&browser, Some("operator-token")).await;
    let shown = click(&browser, "promote", "prod").await;
    assert!(shown.contains("done"), "{shown}");
    wait_promotion(pool, "prod", "v2", "committed").await;
    assert_eq!(common::remote_tag(&service.daemon, "prod"), "v2");
    assert!(click(&browser, "rollback", "prod").await.contains("done"));
    wait_promotion(pool, "prod", "v1", "committed").await;
    assert_eq!(common::remote_tag(&service.daemon, "prod"), "v1");

    // prod's history: v1 (auto), v2 by olga, the rollback to v1, newest first.
    let history = browser.wait_text(".history[data-stage='prod']", &["rollback"]).await;
    let rows = browser
        .script(
            "return [...document.querySelectorAll(\".history[data-stage='prod'] tbody tr\")]\
             .map(r => [r.classList.contains('rollback'), r.cells[0].innerText, r.cells[2].innerText]);",
            json!([]),
        )
        .await;
    let rows: Vec<(bool, String, String)> = serde_json::from_value(rows).expect("rows");
    assert_eq!(rows.len(), 3, "{history}");
    assert!(rows[0].0 && rows[0].1.contains("v1") && rows[0].1.contains("running"), "{rows:?}");
    assert!(!rows[1].0 && rows[1].1.contains("v2") && rows[1].2.contains("olga (manual)"), "{rows:?}");
    assert!(!rows[2].0 && rows[2].1.contains("v1") && !rows[2].1.contains("running"), "{rows:?}");
    let shot = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("dashboard-app.png");
    browser.screenshot(&shot).await;
    println!("app page screenshot: {}", shot.display());
    let _: Value = service.get("/api/apps/writer").await;
    browser.quit().await;
    service.stop().await;
}
