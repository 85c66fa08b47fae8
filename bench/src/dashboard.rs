//! The dashboard at 10,000 apps × 3 stages (issue 19): the promoter runs as a child process
//! (the `promoter-server` role, `[[apps]]` config) on the test kit's NATS and PostgreSQL; its
//! schema is seeded with every app running a version in dev, staging and prod and one app in
//! ten waiting for an approval in staging. Then the page's first paint is timed the way a
//! browser gets there — the HTML, its script and style together, then the first page of the
//! app list — next to peers measured in the same run: the unpaged full matrix (what the page
//! read before paging), a search, the `waiting` filter, and the DORA table the page loads next.
//! When Debian's chromium and chromedriver are installed, the same page is also loaded in
//! headless Chromium (WebDriver) and timed from navigation start to the browser's first
//! contentful paint and to the first frame with the matrix drawn. Figures are printed; nothing
//! is asserted on time.

use std::time::{Duration, Instant};

use anyhow::Context as _;
use slipway_testkit::{GitDaemon, NatsServer, free_port, shared_database};

#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// Apps (each with dev, staging and prod).
    #[arg(long, default_value_t = 10_000)]
    pub apps: usize,
    /// Timed repetitions of each request (after one untimed warm-up).
    #[arg(long, default_value_t = 5)]
    pub runs: usize,
}

/// One figure: a request (or the requests of a first paint), its cold time and the median
/// of the warm runs.
struct Figure {
    what: String,
    cold_ms: f64,
    median_ms: f64,
    bytes: usize,
}

/// Every app × stage runs a version; one app in ten waits for an approval in staging.
/// Rows as the promoter writes them (`store::save_stage` / `save_promotion`), in bulk.
async fn seed(db: &str, apps: usize) -> anyhow::Result<()> {
    let pool = sqlx::PgPool::connect(db).await?;
    let count = i32::try_from(apps)?;
    let version = "jsonb_build_object('image', jsonb_build_object('repository', 'registry.local/acme/' || a.name, \
        'tag', s.tag, 'digest', ''), 'source', jsonb_build_object('repository', 'acme/mono', \
        'commitSha', md5(a.name || s.tag) || '01234567', 'ref', 'refs/heads/main', 'author', 'dana'))";
    sqlx::query(
        "INSERT INTO promoter.apps (name) SELECT format('app-%s', lpad(i::text, 4, '0')) \
         FROM generate_series(0, $1 - 1) i",
    )
    .bind(count)
    .execute(&pool)
    .await
    .context("seeding apps")?;
    let statements = [
        format!(
            "INSERT INTO promoter.stage_versions (app, stage, desired, last_healthy, healthy_since) \
             SELECT a.name, s.stage, {version}, {version}, now() FROM promoter.apps a \
             CROSS JOIN (VALUES ('dev', 'v3'), ('staging', 'v2'), ('prod', 'v1')) s(stage, tag)"
        ),
        format!(
            "INSERT INTO promoter.promotions (id, app, stage, version, image_tag, image_digest, source_commit, \
             state, trigger, actor, waiting_on, waiting_for) \
             SELECT a.name || '-staging-v3', a.name, 'staging', {version}, 'v3', '', md5(a.name || 'v3') || '01234567', \
             'pending', 'auto', 'slipway', 'approvals: 0/1', 'approvals' \
             FROM promoter.apps a CROSS JOIN (VALUES ('v3')) s(tag) WHERE right(a.name, 1) = '7'"
        ),
    ];
    for sql in statements {
        sqlx::query(sqlx::AssertSqlSafe(sql)).execute(&pool).await.context("seeding stages")?;
    }
    pool.close().await;
    Ok(())
}

async fn get(http: &reqwest::Client, url: String) -> anyhow::Result<usize> {
    let answer = http.get(&url).send().await?;
    anyhow::ensure!(answer.status().is_success(), "GET {url}: {}", answer.status());
    Ok(answer.bytes().await?.len())
}

/// What a browser fetches before the matrix paints: the HTML, then its script and style
/// together, then the first page of apps. Bytes of all of them.
async fn first_paint(http: &reqwest::Client, root: &str) -> anyhow::Result<usize> {
    let html = get(http, format!("{root}/dashboard")).await?;
    let (js, css) = tokio::try_join!(
        get(http, format!("{root}/dashboard/app.js")),
        get(http, format!("{root}/dashboard/style.css"))
    )?;
    let page = get(http, format!("{root}/api/status?page_size=50&page_token=")).await?;
    Ok(html + js + css + page)
}

async fn time<F, Fut>(what: &str, runs: usize, mut f: F) -> anyhow::Result<Figure>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<usize>>,
{
    let started = Instant::now();
    let bytes = f().await?;
    let cold_ms = started.elapsed().as_secs_f64() * 1e3;
    let mut times = Vec::new();
    for _ in 0..runs.max(1) {
        let started = Instant::now();
        f().await?;
        times.push(started.elapsed().as_secs_f64() * 1e3);
    }
    times.sort_by(f64::total_cmp);
    Ok(Figure { what: what.to_owned(), cold_ms, median_ms: times[times.len() / 2], bytes })
}

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// The page's script, run in the browser once it loaded: waits for the first frame with a row
/// in the matrix; answers [first contentful paint, that frame], in ms since navigation start.
const MATRIX_DRAWN: &str = "const done = arguments[arguments.length - 1];
    const check = () => {
      if (!document.querySelector('#matrix tbody tr')) return requestAnimationFrame(check);
      const fcp = performance.getEntriesByName('first-contentful-paint')[0];
      done([fcp ? fcp.startTime : -1, performance.now()]);
    };
    check();";

/// One WebDriver command's `value`.
async fn webdriver(
    http: &reqwest::Client,
    method: reqwest::Method,
    url: &str,
    body: serde_json::Value,
) -> anyhow::Result<serde_json::Value> {
    let mut request = http.request(method, url);
    if !body.is_null() {
        request = request.json(&body);
    }
    let answer: serde_json::Value = request.send().await?.json().await?;
    let value = answer.get("value").cloned().unwrap_or_default();
    anyhow::ensure!(value.get("error").is_none(), "WebDriver {url}: {value}");
    Ok(value)
}

/// (first contentful paint, matrix drawn) in ms for each of `runs` loads of the page after a
/// warm-up one, in headless Chromium; `None` without the browser packages.
async fn browser_paint(root: &str, runs: usize) -> anyhow::Result<Option<Vec<(f64, f64)>>> {
    if !std::path::Path::new(CHROMIUM).exists() || !std::path::Path::new(CHROMEDRIVER).exists() {
        return Ok(None);
    }
    let port = free_port();
    let _driver = tokio::process::Command::new(CHROMEDRIVER)
        .arg(format!("--port={port}"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()?;
    let http = reqwest::Client::builder().no_proxy().timeout(Duration::from_secs(120)).build()?;
    let driver = format!("http://127.0.0.1:{port}");
    let mut ready = false;
    for _ in 0..200 {
        let status = webdriver(&http, reqwest::Method::GET, &format!("{driver}/status"), serde_json::Value::Null).await;
        if status.is_ok_and(|s| s["ready"] == true) {
            ready = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    anyhow::ensure!(ready, "chromedriver never became ready");
    let profile = tempfile::tempdir()?;
    let args = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--window-size=1360,900"];
    let mut args: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
    args.push(format!("--user-data-dir={}", profile.path().display()));
    let capabilities = serde_json::json!({ "capabilities": { "alwaysMatch": {
        "browserName": "chrome", "goog:chromeOptions": { "binary": CHROMIUM, "args": args },
    }}});
    let session = webdriver(&http, reqwest::Method::POST, &format!("{driver}/session"), capabilities).await?;
    let session = format!("{driver}/session/{}", session["sessionId"].as_str().unwrap_or_default());
    webdriver(&http, reqwest::Method::POST, &format!("{session}/timeouts"), serde_json::json!({ "script": 60_000 }))
        .await?;
    let mut times = Vec::new();
    for _ in 0..=runs {
        let url = serde_json::json!({ "url": format!("{root}/dashboard") });
        webdriver(&http, reqwest::Method::POST, &format!("{session}/url"), url).await?;
        let body = serde_json::json!({ "script": MATRIX_DRAWN, "args": [] });
        let answer = webdriver(&http, reqwest::Method::POST, &format!("{session}/execute/async"), body).await?;
        times.push((answer[0].as_f64().unwrap_or(-1.0), answer[1].as_f64().unwrap_or(-1.0)));
    }
    webdriver(&http, reqwest::Method::DELETE, &session, serde_json::Value::Null).await?;
    times.remove(0);
    Ok(Some(times))
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    let nats = NatsServer::start().await?;
    let db = shared_database().await?;
    let daemon = GitDaemon::start().await?;
    // Nothing is promoted: the GitOps repository only has to exist.
    let repo = daemon.create_bare_repo("acme/gitops")?;
    let work = tempfile::tempdir()?;
    let admin = free_port();
    let server = crate::promotion::spawn_server(&nats.url(), &db, &repo, work.path(), args.apps, admin, Vec::new())?;
    let root = format!("http://127.0.0.1:{admin}");
    server.wait_http_ok(&format!("{root}/readyz"), Duration::from_secs(120)).await?;
    let seeding = Instant::now();
    seed(&db, args.apps).await?;
    eprintln!("seeded {} apps × 3 stages in {:.1}s", args.apps, seeding.elapsed().as_secs_f64());
    let http = reqwest::Client::builder().no_proxy().timeout(Duration::from_secs(600)).build()?;
    let runs = args.runs;
    let mut figures = vec![
        time("first paint: HTML + app.js + style.css, then /api/status?page_size=50", runs, || {
            first_paint(&http, &root)
        })
        .await?,
    ];
    let names: Vec<String> = (0..args.apps.min(50)).map(|i| format!("app-{i:04}")).collect();
    let first_page = format!("/api/delivery?days=30&apps={}", names.join(","));
    // Peers, measured in the same run against the same seeded promoter.
    let peers = [
        ("GET /api/status?page_size=50 (first page alone)", "/api/status?page_size=50"),
        ("GET /api/status (unpaged: the whole matrix)", "/api/status"),
        ("GET /api/status?page_size=50&q=app-12 (search)", "/api/status?page_size=50&q=app-12"),
        (
            "GET /api/status?page_size=50&stage=staging&state=waiting",
            "/api/status?page_size=50&stage=staging&state=waiting",
        ),
        ("GET /api/approvals?limit=50 (the page's list)", "/api/approvals?limit=50"),
        ("GET /api/approvals?limit=500 (most one request lists)", "/api/approvals?limit=500"),
        ("GET /api/delivery?days=30&apps=<first page> (the page's table)", &first_page),
        ("GET /api/delivery?days=30 (DORA table of every app)", "/api/delivery?days=30"),
        ("GET /api/trends?weeks=12 (weekly trends of everything)", "/api/trends?weeks=12"),
        ("GET /api/apps/app-0007 (one app's page)", "/api/apps/app-0007"),
    ];
    for (what, path) in peers {
        figures.push(time(what, runs, || get(&http, format!("{root}{path}"))).await?);
    }
    println!("dashboard at {} apps × 3 stages ({} warm runs each; target: first paint ≤ 1000 ms)", args.apps, runs);
    println!("{:<72} {:>10} {:>12} {:>12}", "request", "cold ms", "median ms", "bytes");
    for f in &figures {
        println!("{:<72} {:>10.1} {:>12.1} {:>12}", f.what, f.cold_ms, f.median_ms, f.bytes);
    }
    match browser_paint(&root, runs).await? {
        None => println!("headless Chromium: {CHROMIUM} or {CHROMEDRIVER} missing, browser paint not timed"),
        Some(mut times) => {
            let median = |mut v: Vec<f64>| {
                v.sort_by(f64::total_cmp);
                v[v.len() / 2]
            };
            let fcp = median(times.iter().map(|t| t.0).collect());
            let drawn = median(times.iter().map(|t| t.1).collect());
            times.sort_by(|a, b| a.1.total_cmp(&b.1));
            let worst = times.last().map_or(0.0, |t| t.1);
            println!(
                "headless Chromium, /dashboard from navigation start ({runs} loads after a warm-up): first contentful \
                 paint median {fcp:.1} ms; matrix drawn (first frame with its rows) median {drawn:.1} ms, slowest {worst:.1} ms"
            );
        }
    }
    drop(server);
    Ok(())
}
