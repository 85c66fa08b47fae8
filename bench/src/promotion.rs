//! The promotion benchmark (issue 5): a GitOps repository of `apps` apps × 3 stages on the
//! test kit's git daemon, the promoter in its own process. It prints the latency from
//! `build.succeeded` to the commit on the remote (the promoter's `promotion.committed`, sent
//! once the push was accepted), the time and commit count for all apps completing a build at
//! once, and the same single promotion done the way CI scripts do it (fresh `git clone`, edit,
//! commit, push) in the same run. Where a single promotion's time goes comes from the
//! promoter's own step histograms ([`slipway_promoter::timing`]), scraped from its `/metrics`
//! before and after the singles, plus the last hop (`promotion.committed` to this process)
//! measured here.

use anyhow::{Context as _, bail};
use futures::StreamExt as _;
use slipway_mesh::v1;
use slipway_promoter::Config;
use slipway_promoter::config::{ApiToken, AppConfig, PipelineConfig, Role, StageConfig};
use slipway_runtime::config::{DatabaseConfig, NatsConfig, Secret, TelemetryConfig};
use slipway_runtime::jetstream::Publisher;
use slipway_testkit::{GitDaemon, ServiceProcess, free_port, shared_database};
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// Apps in the GitOps repository (each with dev, staging and prod).
    #[arg(long, default_value_t = 1000)]
    pub apps: usize,
    /// Single promotions timed one after the other.
    #[arg(long, default_value_t = 100)]
    pub singles: usize,
    /// Clone-edit-commit-push runs of the CI-script way.
    #[arg(long, default_value_t = 5)]
    pub script_runs: usize,
    /// Define the apps in an app catalog (one directory generator, published to the KV
    /// bucket) instead of the promoter's `[[apps]]`, and also measure the promoter's RSS and
    /// one page of `GET /api/status` and of `slipctl status`.
    #[arg(long)]
    pub catalog: bool,
    /// Run on a three-node NATS cluster, the stream and buckets at three replicas.
    #[arg(long)]
    pub cluster: bool,
}

#[derive(Debug, Clone, clap::Args)]
pub struct ServerArgs {
    #[arg(long)]
    nats: String,
    #[arg(long)]
    db: String,
    #[arg(long)]
    repo: String,
    #[arg(long)]
    work: PathBuf,
    #[arg(long)]
    apps: usize,
    #[arg(long)]
    admin: u16,
    /// The apps come from the catalog in the KV bucket.
    #[arg(long)]
    catalog: bool,
    /// The admin gRPC port (viewer token `BENCH_TOKEN`); none when 0.
    #[arg(long, default_value_t = 0)]
    grpc: u16,
    /// `nats.stream_replicas`.
    #[arg(long, default_value_t = 1)]
    replicas: usize,
}

/// The viewer token of the benchmark's admin gRPC API, and its SHA-256 as the config holds it.
const BENCH_TOKEN: &str = "bench-token";
const BENCH_TOKEN_SHA256: &str = "7137e16f75a1d75b6fd65930672814806cdc1a0d6e0aa38611afc996a402258b";

/// The benchmark's catalog: `apps` apps from one directory generator over `acme/mono`, the
/// same three stages and GitOps files as the `[[apps]]` config.
fn catalog(repo: &str, apps: usize) -> anyhow::Result<slipway_catalog::Catalog> {
    let dir = tempfile::tempdir()?;
    let yaml = format!(
        "pipelines:\n  standard:\n    stages:\n      - {{ name: dev, policy: auto }}\n      \
         - {{ name: staging, policy: approval, approvers: [bob] }}\n      \
         - {{ name: prod, policy: approval, approvals: 2, approvers: [alice, bob] }}\n\
         teams:\n  platform: {{ members: [alice, bob] }}\n\
         generators:\n  - directory: {{ repository: acme/mono, glob: \"apps/*\" }}\n    template:\n      \
         team: platform\n      source: {{ repository: acme/mono, paths: [\"{{dir}}/**\"] }}\n      \
         build: {{ context: \"{{dir}}\" }}\n      image: \"registry.local/acme/{{name}}\"\n      \
         deploy: {{ repository: \"{repo}\", path: \"apps/{{app}}/{{stage}}/kustomization.yaml\", kind: kustomize }}\n      \
         pipeline: standard\n"
    );
    std::fs::write(dir.path().join("slipway.yaml"), yaml)?;
    let paths: Vec<String> = (0..apps).map(|i| format!("apps/{}/Dockerfile", app_name(i))).collect();
    let sources = |repo: &str| (repo == "acme/mono").then(|| paths.clone());
    slipway_catalog::build(&slipway_catalog::DirTree(dir.path().to_owned()), "slipway.yaml", &sources)
        .map_err(|e| anyhow::anyhow!("the benchmark's catalog: {e}"))
}

fn app_name(i: usize) -> String {
    format!("app-{i:04}")
}

fn image(i: usize) -> String {
    format!("registry.local/acme/{}", app_name(i))
}

fn config(args: &ServerArgs) -> anyhow::Result<Config> {
    let stage = |json: serde_json::Value| -> anyhow::Result<StageConfig> { Ok(serde_json::from_value(json)?) };
    let pipeline = PipelineConfig {
        stages: vec![
            stage(serde_json::json!({ "name": "dev", "policy": "auto" }))?,
            stage(serde_json::json!({ "name": "staging", "policy": "approval", "approvers": ["bob"] }))?,
            stage(
                serde_json::json!({ "name": "prod", "policy": "approval", "approvals": 2, "approvers": ["alice", "bob"] }),
            )?,
        ],
        ..PipelineConfig::default()
    };
    let apps = (0..if args.catalog { 0 } else { args.apps })
        .map(|i| {
            serde_json::from_value::<AppConfig>(serde_json::json!({
                "name": app_name(i),
                "gitops": { "repository": args.repo, "path": "apps/{app}/{stage}/kustomization.yaml",
                            "kind": "kustomize", "image": image(i) },
            }))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let mut config = Config {
        nats: NatsConfig { url: args.nats.clone(), stream_replicas: args.replicas, ..NatsConfig::default() },
        database: DatabaseConfig {
            url: Some(Secret::new(args.db.clone())),
            max_connections: 16,
            ..DatabaseConfig::with_schema("promoter")
        },
        telemetry: TelemetryConfig { filter: "warn".into(), ..TelemetryConfig::default() },
        pipeline: if args.catalog { PipelineConfig::default() } else { pipeline },
        apps,
        ..Config::default()
    };
    config.catalog.enabled = args.catalog;
    if args.grpc != 0 {
        config.admin_api.listen = Some(std::net::SocketAddr::from(([127, 0, 0, 1], args.grpc)));
        config.admin_api.tokens =
            vec![ApiToken { name: "bench".into(), role: Role::Viewer, sha256: BENCH_TOKEN_SHA256.into() }];
    }
    config.gitops.work_dir = args.work.clone();
    Ok(config)
}

/// The `promoter-server` child: the promoter as in production, with the benchmark's config.
pub async fn serve(args: ServerArgs) -> anyhow::Result<()> {
    let config = config(&args)?;
    let telemetry = slipway_runtime::telemetry::init(&config.telemetry, "slipway-promoter")?;
    let admin = tokio::net::TcpListener::bind(("127.0.0.1", args.admin)).await?;
    let result = slipway_promoter::run(config, admin, slipway_runtime::shutdown::root_token()).await;
    let _ = telemetry.shutdown();
    result
}

fn git(dir: Option<&Path>, args: &[&str]) -> anyhow::Result<String> {
    let mut cmd = std::process::Command::new("git");
    cmd.args(["-c", "user.name=bench", "-c", "user.email=bench@example.invalid", "-c", "init.defaultBranch=main"]);
    if let Some(dir) = dir {
        cmd.arg("-C").arg(dir);
    }
    let out = cmd.args(args).output()?;
    if !out.status.success() {
        bail!("git {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn kustomization(i: usize, stage: &str, tag: &str) -> String {
    format!(
        "# {} in {stage}\nresources:\n  - ../base\nimages:\n  - name: {}\n    newTag: {tag} # pinned by Slipway\n",
        app_name(i),
        image(i)
    )
}

/// Seeds the GitOps repository: `apps/<app>/<stage>/kustomization.yaml` for every app.
fn seed(url: &str, apps: usize) -> anyhow::Result<()> {
    let work = tempfile::tempdir()?;
    git(None, &["init", "-q", &work.path().display().to_string()])?;
    for i in 0..apps {
        for stage in ["dev", "staging", "prod"] {
            let path = work.path().join(format!("apps/{}/{stage}/kustomization.yaml", app_name(i)));
            std::fs::create_dir_all(path.parent().context("parent")?)?;
            std::fs::write(path, kustomization(i, stage, "v0"))?;
        }
    }
    git(Some(work.path()), &["add", "-A"])?;
    git(Some(work.path()), &["commit", "-q", "-m", "seed"])?;
    git(Some(work.path()), &["push", "-q", url, "main"])?;
    Ok(())
}

fn build(i: usize, tag: &str) -> v1::BuildSucceeded {
    v1::BuildSucceeded {
        build_id: format!("{}-{tag}", app_name(i)),
        app: app_name(i),
        source: Some(v1::SourceRef {
            repository: "acme/mono".into(),
            commit_sha: format!("{:040x}", i + 1),
            r#ref: "refs/heads/main".into(),
            author: "dana".into(),
        }),
        image: Some(v1::ImageRef { repository: image(i), tag: tag.into(), digest: String::new() }),
        tags: vec![tag.into()],
        duration_ms: 1,
        sbom_digest: String::new(),
    }
}

/// The CI-script way: fresh clone, edit one file, commit, push. Returns seconds per run.
fn script_way(url: &str, runs: usize) -> anyhow::Result<Vec<f64>> {
    let mut times = Vec::new();
    for run in 0..runs {
        let dir = tempfile::tempdir()?;
        let started = Instant::now();
        git(None, &["clone", "-q", url, &dir.path().display().to_string()])?;
        let path = dir.path().join(format!("apps/{}/staging/kustomization.yaml", app_name(run)));
        std::fs::write(&path, kustomization(run, "staging", &format!("script-{run}")))?;
        git(Some(dir.path()), &["commit", "-q", "-am", &format!("chore: set image to script-{run}")])?;
        git(Some(dir.path()), &["push", "-q", "origin", "main"])?;
        times.push(started.elapsed().as_secs_f64());
    }
    Ok(times)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    sorted[(((p / 100.0) * (sorted.len() - 1) as f64).round() as usize).min(sorted.len() - 1)]
}

/// The app of a `promotion.committed` on `stage` with `tag`, from its subject and body.
fn committed(msg: &async_nats::Message, stage: &str, tag: &str) -> Option<String> {
    let body: serde_json::Value = serde_json::from_slice(&msg.payload).ok()?;
    (body["stage"] == stage && body["image"]["tag"] == tag).then(|| body["app"].as_str().unwrap_or_default().to_owned())
}

/// Step → (sum of seconds, count) of the promoter's step histogram.
type Steps = HashMap<String, (f64, u64)>;

/// Reads the promoter's step histogram from its `/metrics`.
async fn scrape(admin: u16) -> anyhow::Result<Steps> {
    let text = reqwest::get(format!("http://127.0.0.1:{admin}/metrics")).await?.text().await?;
    let mut steps = Steps::new();
    for line in text.lines() {
        let Some(rest) = line.strip_prefix(slipway_promoter::timing::STEP_SECONDS) else { continue };
        let (field, rest) = match (rest.strip_prefix("_sum{"), rest.strip_prefix("_count{")) {
            (Some(rest), _) => (0, rest),
            (_, Some(rest)) => (1, rest),
            _ => continue,
        };
        let Some((labels, value)) = rest.split_once("} ") else { continue };
        let Some(step) = labels.split(',').find_map(|l| l.strip_prefix("step=\"")?.strip_suffix('"')) else {
            continue;
        };
        let value: f64 = value.trim().parse()?;
        let entry = steps.entry(step.to_owned()).or_default();
        if field == 0 { entry.0 = value } else { entry.1 = value as u64 }
    }
    Ok(steps)
}

/// One line of the breakdown: what, where the time is spent, mean ms per single promotion,
/// and how many times it happened over the singles.
#[derive(Debug, Clone)]
pub struct Step {
    pub name: &'static str,
    pub kind: &'static str,
    pub ms_per_promotion: f64,
    pub count: u64,
}

/// The kind of the sub-steps of `git_push` (git:// remotes), left out of the totals (as is the
/// connect, which overlaps planning and committing).
const PART_OF_PUSH: &str = "  part of git_push";

/// The steps of a single promotion, in path order, from two scrapes around `singles`
/// promotions and the last hop measured here (`committed` seconds per single).
fn breakdown(before: &Steps, after: &Steps, singles: usize, committed: &[f64]) -> Vec<Step> {
    use slipway_promoter::timing as t;
    let steps: [(&'static str, &'static str); 13] = [
        (t::BUILD_DELIVERY, "NATS"),
        (t::BUILD_TX, "DB"),
        (t::REQUESTED_DELIVERY, "DB commit + outbox relay + NATS"),
        (t::WRITER_LOOKUP, "DB"),
        (t::GITOPS_QUEUE, "writer queue"),
        (t::GIT_FETCH, "git"),
        (t::GIT_PLAN, "git"),
        (t::GIT_COMMIT, "git"),
        (t::GIT_PUSH, "git"),
        (t::GIT_PUSH_CONNECT, "  beside git_plan + git_commit"),
        (t::GIT_PUSH_PACK, PART_OF_PUSH),
        (t::GIT_PUSH_REPORT, PART_OF_PUSH),
        (t::COMMITTED_TX, "DB"),
    ];
    let n = singles.max(1) as f64;
    let mut lines: Vec<Step> = steps
        .iter()
        .map(|(name, kind)| {
            let (s0, c0) = before.get(*name).copied().unwrap_or_default();
            let (s1, c1) = after.get(*name).copied().unwrap_or_default();
            Step { name, kind, ms_per_promotion: (s1 - s0) * 1e3 / n, count: c1.saturating_sub(c0) }
        })
        .collect();
    let last = committed.iter().sum::<f64>() * 1e3 / n;
    let count = committed.len() as u64;
    lines.push(Step { name: "committed_delivery", kind: "outbox relay + NATS", ms_per_promotion: last, count });
    lines
}

/// What the promotion benchmark measured (seconds).
#[derive(Debug, Clone)]
pub struct Report {
    pub singles: usize,
    pub p50: f64,
    pub p99: f64,
    /// All apps completing a build at once, until every commit landed.
    pub burst: f64,
    pub burst_commits: usize,
    pub script_p50: f64,
    pub script_runs: usize,
    /// Where a single promotion's time went (means over the singles).
    pub breakdown: Vec<Step>,
    /// The promoter's VmRSS in bytes: ready, after the singles, peak through the burst and
    /// the pages, after them.
    pub rss: [u64; 4],
    /// Status pages, when the apps came from the catalog.
    pub pages: Vec<Page>,
}

/// Spawns this binary's `promoter-server` child on `repo` with `apps` apps, its admin port on
/// `admin`, and `extra` arguments.
pub fn spawn_server(
    nats: &str,
    db: &str,
    repo: &str,
    work: &Path,
    apps: usize,
    admin: u16,
    extra: Vec<String>,
) -> anyhow::Result<ServiceProcess> {
    let (work, apps, admin) = (work.display().to_string(), apps.to_string(), admin.to_string());
    let args = [
        "promoter-server",
        "--nats",
        nats,
        "--db",
        db,
        "--repo",
        repo,
        "--work",
        &work,
        "--apps",
        &apps,
        "--admin",
        &admin,
    ]
    .into_iter()
    .map(str::to_owned)
    .chain(extra);
    Ok(ServiceProcess::spawn_with_args(std::env::current_exe()?, args, &[])?)
}

/// The orchestrator.
pub async fn measure(args: &Args) -> anyhow::Result<Report> {
    let nats = slipway_testkit::Nats::start(args.cluster).await?;
    let db = shared_database().await?;
    let daemon = GitDaemon::start().await?;
    let url = daemon.create_bare_repo("acme/gitops")?;
    let bare = daemon.repo_path("acme/gitops");
    let seeding = Instant::now();
    seed(&url, args.apps)?;
    eprintln!("seeded {} files in {:.1}s", args.apps * 3, seeding.elapsed().as_secs_f64());
    let work = tempfile::tempdir()?;
    let admin = free_port();
    let grpc = if args.catalog { free_port() } else { 0 };
    if args.catalog {
        let started = Instant::now();
        let catalog = catalog(&url, args.apps)?;
        anyhow::ensure!(catalog.apps.len() == args.apps, "the catalog has {} apps", catalog.apps.len());
        let js = async_nats::jetstream::new(slipway_testkit::connect_nats(&nats.url()).await?);
        slipway_runtime::catalog::CatalogStore::open(&js, nats.replicas())
            .await?
            .publish(&url, "bench", &catalog)
            .await?;
        eprintln!("catalog of {} apps compiled and published in {:.1}s", args.apps, started.elapsed().as_secs_f64());
    }
    let mut server_args =
        vec!["--grpc".to_owned(), grpc.to_string(), "--replicas".to_owned(), nats.replicas().to_string()];
    if args.catalog {
        server_args.push("--catalog".into());
    }
    let server = spawn_server(&nats.url(), &db, &url, work.path(), args.apps, admin, server_args)?;
    server.wait_http_ok(&format!("http://127.0.0.1:{admin}/readyz"), Duration::from_secs(60)).await?;
    let pid = server.pid().context("the promoter's pid")?;
    let rss_ready = crate::services::rss(pid)?;
    let client = slipway_testkit::connect_nats(&nats.url()).await?;
    let mut commits = client.subscribe("slipway.promotion.committed.>").await?;
    let publisher = Publisher::new(client.clone(), "/bench");
    let count = |bare: &Path| -> anyhow::Result<usize> {
        Ok(git(None, &["--git-dir", &bare.display().to_string(), "rev-list", "--count", "main"])?.trim().parse()?)
    };

    // One at a time: build.succeeded → commit on the remote.
    let mut singles = Vec::new();
    let mut last_hop = Vec::new();
    let steps_before = scrape(admin).await?;
    for i in 0..args.singles.min(args.apps) {
        let started = Instant::now();
        publisher.publish(&build(i, "v1")).await?;
        let want = app_name(i);
        loop {
            let msg = tokio::time::timeout(Duration::from_secs(30), commits.next()).await?.context("subscription")?;
            if committed(&msg, "dev", "v1").as_deref() == Some(want.as_str()) {
                last_hop.push(since_ce_time(&msg));
                break;
            }
        }
        singles.push(started.elapsed().as_secs_f64());
    }
    let steps_after = scrape(admin).await?;
    let rss_singles = crate::services::rss(pid)?;
    let breakdown = breakdown(&steps_before, &steps_after, singles.len(), &last_hop);
    singles.sort_by(f64::total_cmp);

    // Every app at once.
    let before = count(&bare)?;
    let peak = crate::services::PeakRss::start(pid);
    let started = Instant::now();
    futures::stream::iter(0..args.apps)
        .map(|i| {
            let publisher = publisher.clone();
            async move { publisher.publish(&build(i, "v2")).await }
        })
        .buffer_unordered(64)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<Result<Vec<_>, _>>()?;
    let mut landed = HashSet::new();
    while landed.len() < args.apps {
        let msg = tokio::time::timeout(Duration::from_secs(120), commits.next()).await?.context("subscription")?;
        if let Some(app) = committed(&msg, "dev", "v2") {
            landed.insert(app);
        }
    }
    let burst = started.elapsed().as_secs_f64();
    let burst_commits = count(&bare)? - before;
    let rss_peak = peak.finish();
    let pages = if args.catalog { pages(admin, grpc, args.apps).await? } else { Vec::new() };
    let rss_after = crate::services::rss(pid)?;
    drop(server);

    let mut script = script_way(&url, args.script_runs)?;
    script.sort_by(f64::total_cmp);
    Ok(Report {
        singles: singles.len(),
        p50: percentile(&singles, 50.0),
        p99: percentile(&singles, 99.0),
        burst,
        burst_commits,
        script_p50: percentile(&script, 50.0),
        script_runs: script.len(),
        breakdown,
        rss: [rss_ready, rss_singles, rss_peak.max(rss_after), rss_after],
        pages,
    })
}

/// One page of the status, timed: what was asked, median ms of 5 after a warm-up, apps on the
/// page, apps matching.
#[derive(Debug, Clone)]
pub struct Page {
    pub what: String,
    pub ms: f64,
    pub apps: usize,
    pub total: u64,
}

/// Pages of `GET /api/status` and of `slipctl status` (when the binary is next to this one)
/// over the whole catalog, with and without filters.
async fn pages(admin: u16, grpc: u16, apps: usize) -> anyhow::Result<Vec<Page>> {
    let http = reqwest::Client::builder().no_proxy().build()?;
    let last = (apps.saturating_sub(1) / 50 * 50).to_string();
    let one = app_name(apps / 2);
    let queries = [
        ("page_size=50".to_owned(), vec!["--page-size", "50"]),
        (format!("page_size=50&page_token={last}"), vec!["--page-size", "50", "--page-token", &last]),
        ("page_size=50&team=platform".to_owned(), vec!["--page-size", "50", "--team", "platform"]),
        (
            "page_size=50&stage=staging&state=waiting".to_owned(),
            vec!["--page-size", "50", "--stage", "staging", "--state", "waiting"],
        ),
        (format!("app={one}"), vec!["--app", &one]),
    ];
    let median = |mut times: Vec<f64>| {
        times.sort_by(f64::total_cmp);
        times[times.len() / 2]
    };
    let mut pages = Vec::new();
    for (query, _) in &queries {
        let url = format!("http://127.0.0.1:{admin}/api/status?{query}");
        let mut times = Vec::new();
        let mut body = serde_json::Value::Null;
        for _ in 0..6 {
            let started = Instant::now();
            let answer = http.get(&url).send().await?;
            anyhow::ensure!(answer.status().is_success(), "GET {url}: {}", answer.status());
            body = answer.json().await?;
            times.push(started.elapsed().as_secs_f64() * 1e3);
        }
        times.remove(0);
        pages.push(Page {
            what: format!("GET /api/status?{query}"),
            ms: median(times),
            apps: body["apps"].as_array().map_or(0, Vec::len),
            total: body["total"].as_u64().unwrap_or(0),
        });
    }
    let slipctl = std::env::current_exe()?.with_file_name("slipctl");
    if !slipctl.exists() {
        eprintln!("{} not built: slipctl pages not timed", slipctl.display());
        return Ok(pages);
    }
    let server = format!("http://127.0.0.1:{grpc}");
    for (_, flags) in &queries {
        let mut times = Vec::new();
        let mut lines = 0;
        for _ in 0..6 {
            let started = Instant::now();
            let out = tokio::process::Command::new(&slipctl)
                .args(["--server", &server, "--token", BENCH_TOKEN, "status"])
                .args(flags)
                .output()
                .await?;
            anyhow::ensure!(out.status.success(), "slipctl status {flags:?}: {}", String::from_utf8_lossy(&out.stderr));
            times.push(started.elapsed().as_secs_f64() * 1e3);
            lines = out.stdout.iter().filter(|b| **b == b'\n').count();
        }
        times.remove(0);
        pages.push(Page {
            what: format!("slipctl status {}", flags.join(" ")),
            ms: median(times),
            apps: lines,
            total: 0,
        });
    }
    Ok(pages)
}

/// Seconds from a message's `ce-time` (set by the promoter when it enqueued the event) to now.
fn since_ce_time(msg: &async_nats::Message) -> f64 {
    let time = msg.headers.as_ref().and_then(|h| h.get("ce-time")).map(|v| v.as_str().to_owned());
    let time = time.and_then(|t| chrono::DateTime::parse_from_rfc3339(&t).ok());
    time.map_or(0.0, |t| {
        (chrono::Utc::now() - t.with_timezone(&chrono::Utc)).num_microseconds().unwrap_or(0) as f64 / 1e6
    })
}

/// Measures and prints the table.
pub async fn run(args: Args) -> anyhow::Result<()> {
    let r = measure(&args).await?;
    let (p50, p99, burst, burst_commits, script_p50) = (r.p50, r.p99, r.burst, r.burst_commits, r.script_p50);
    let on = crate::describe_nats(args.cluster);
    println!(
        "\npromotion benchmark: GitOps repository of {} apps x 3 stages on git daemon (loopback), {on}",
        args.apps
    );
    println!("{:<58} {:>12}", "measure", "value");
    println!(
        "{:<58} {:>9.0} ms",
        format!("build.succeeded -> commit on remote, p50 ({} singles)", r.singles),
        p50 * 1e3
    );
    println!("{:<58} {:>9.0} ms", "build.succeeded -> commit on remote, p99", p99 * 1e3);
    println!("{:<58} {:>10.2} s", format!("{} simultaneous completions, all landed", args.apps), burst);
    println!("{:<58} {:>9.1} ms", "  per promotion, amortized", burst * 1e3 / args.apps as f64);
    println!("{:<58} {:>12}", "commits for them", burst_commits);
    println!(
        "{:<58} {:>9.0} ms",
        format!("CI-script way (clone, edit, commit, push), p50 of {}", r.script_runs),
        script_p50 * 1e3
    );
    println!("{:<58} {:>11.1}x", "Slipway single vs CI-script way, p50 / p50", script_p50 / p50);
    print_breakdown(&r, p50);
    if args.catalog {
        print_catalog_figures(&r, args.apps);
        return Ok(());
    }
    println!(
        "\ntargets: p50 <= 50 ms: {:.0} ms | p99 <= 150 ms: {:.0} ms | {} in <= 10 s: {burst:.1} s, <= 20 commits: {burst_commits}\n\
         >= 20x the script per promotion: {:.1}x single, {:.1}x amortized in the burst",
        p50 * 1e3,
        p99 * 1e3,
        args.apps,
        script_p50 / p50,
        script_p50 / (burst / args.apps as f64),
    );
    Ok(())
}

/// Where a single promotion's time went: the promoter's steps, then totals by kind.
fn print_breakdown(r: &Report, p50: f64) {
    println!("\nwhere a single promotion's time goes (mean ms per promotion over {} singles):", r.singles);
    println!("  {:<22} {:<32} {:>9} {:>7}", "step", "in", "ms", "times");
    for s in &r.breakdown {
        println!("  {:<22} {:<32} {:>9.2} {:>7}", s.name, s.kind, s.ms_per_promotion, s.count);
    }
    let total =
        |pred: &dyn Fn(&Step) -> bool| r.breakdown.iter().filter(|s| pred(s)).map(|s| s.ms_per_promotion).sum::<f64>();
    let (db, git) = (total(&|s| s.kind == "DB"), total(&|s| s.kind == "git"));
    let nats = total(&|s| s.kind.contains("NATS"));
    let queue = total(&|s| s.kind == "writer queue");
    let all = total(&|s| !s.kind.starts_with(' '));
    println!(
        "  totals: DB {db:.1} ms | NATS + outbox {nats:.1} ms | writer queue {queue:.1} ms | git {git:.1} ms \
         | sum {all:.1} ms (single mean; p50 {:.1} ms)",
        p50 * 1e3
    );
}

/// The catalog issue's figures: the burst, the promoter's RSS and the status pages.
pub fn print_catalog_figures(r: &Report, apps: usize) {
    let mb = |b: u64| b as f64 / 1_048_576.0;
    let [ready, singles, peak, after] = r.rss;
    println!("\npromoter with a catalog of {apps} apps x 3 stages (one directory generator):");
    println!(
        "  VmRSS ready {:.1} MB | after the singles {:.1} MB | peak through the burst and the pages {:.1} MB | after {:.1} MB",
        mb(ready),
        mb(singles),
        mb(peak),
        mb(after)
    );
    println!("  {:<64} {:>9} {:>6} {:>7}", "one page of the status", "ms", "rows", "total");
    for p in &r.pages {
        let total = if p.total == 0 { String::new() } else { p.total.to_string() };
        println!("  {:<64} {:>9.1} {:>6} {:>7}", p.what, p.ms, p.apps, total);
    }
    let slowest = r.pages.iter().map(|p| p.ms).fold(0.0, f64::max);
    let met = |ok: bool| if ok { "met" } else { "NOT met" };
    println!(
        "targets: {apps} completions landed <= 60 s: {:.1} s ({}), in <= 100 commits: {} ({}) | promoter RSS <= 150 MB: \
         peak {:.1} MB ({}) | a page <= 300 ms: slowest {slowest:.1} ms ({})",
        r.burst,
        met(r.burst <= 60.0),
        r.burst_commits,
        met(r.burst_commits <= 100),
        mb(peak),
        met(mb(peak) <= 150.0),
        met(slowest <= 300.0),
    );
}
