//! The promotion benchmark (issue 5): a GitOps repository of `apps` apps × 3 stages on the
//! test kit's git daemon, the promoter in its own process. It prints the latency from
//! `build.succeeded` to the commit on the remote (the promoter's `promotion.committed`, sent
//! once the push was accepted), the time and commit count for all apps completing a build at
//! once, and the same single promotion done the way CI scripts do it (fresh `git clone`, edit,
//! commit, push) in the same run.

use anyhow::{Context as _, bail};
use futures::StreamExt as _;
use slipway_mesh::v1;
use slipway_promoter::Config;
use slipway_promoter::config::{AppConfig, PipelineConfig, StageConfig};
use slipway_runtime::config::{DatabaseConfig, NatsConfig, Secret, TelemetryConfig};
use slipway_runtime::jetstream::Publisher;
use slipway_testkit::{GitDaemon, NatsServer, ServiceProcess, free_port, shared_database};
use std::collections::HashSet;
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
    let apps = (0..args.apps)
        .map(|i| {
            serde_json::from_value::<AppConfig>(serde_json::json!({
                "name": app_name(i),
                "gitops": { "repository": args.repo, "path": "apps/{app}/{stage}/kustomization.yaml",
                            "kind": "kustomize", "image": image(i) },
            }))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let mut config = Config {
        nats: NatsConfig { url: args.nats.clone(), ..NatsConfig::default() },
        database: DatabaseConfig {
            url: Some(Secret::new(args.db.clone())),
            max_connections: 16,
            ..DatabaseConfig::with_schema("promoter")
        },
        telemetry: TelemetryConfig { filter: "warn".into(), ..TelemetryConfig::default() },
        pipeline,
        apps,
        ..Config::default()
    };
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
}

/// The orchestrator.
pub async fn measure(args: &Args) -> anyhow::Result<Report> {
    let nats = NatsServer::start().await?;
    let db = shared_database().await?;
    let daemon = GitDaemon::start().await?;
    let url = daemon.create_bare_repo("acme/gitops")?;
    let bare = daemon.repo_path("acme/gitops");
    let seeding = Instant::now();
    seed(&url, args.apps)?;
    eprintln!("seeded {} files in {:.1}s", args.apps * 3, seeding.elapsed().as_secs_f64());
    let work = tempfile::tempdir()?;
    let admin = free_port();
    let server = ServiceProcess::spawn_with_args(
        std::env::current_exe()?,
        [
            "promoter-server",
            "--nats",
            &nats.url(),
            "--db",
            &db,
            "--repo",
            &url,
            "--work",
            &work.path().display().to_string(),
            "--apps",
            &args.apps.to_string(),
            "--admin",
            &admin.to_string(),
        ],
        &[],
    )?;
    server.wait_http_ok(&format!("http://127.0.0.1:{admin}/readyz"), Duration::from_secs(60)).await?;
    let client = async_nats::connect(nats.url()).await?;
    let mut commits = client.subscribe("slipway.promotion.committed.>").await?;
    let publisher = Publisher::new(client.clone(), "/bench");
    let count = |bare: &Path| -> anyhow::Result<usize> {
        Ok(git(None, &["--git-dir", &bare.display().to_string(), "rev-list", "--count", "main"])?.trim().parse()?)
    };

    // One at a time: build.succeeded → commit on the remote.
    let mut singles = Vec::new();
    for i in 0..args.singles.min(args.apps) {
        let started = Instant::now();
        publisher.publish(&build(i, "v1")).await?;
        let want = app_name(i);
        loop {
            let msg = tokio::time::timeout(Duration::from_secs(30), commits.next()).await?.context("subscription")?;
            if committed(&msg, "dev", "v1").as_deref() == Some(want.as_str()) {
                break;
            }
        }
        singles.push(started.elapsed().as_secs_f64());
    }
    singles.sort_by(f64::total_cmp);

    // Every app at once.
    let before = count(&bare)?;
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
    })
}

/// Measures and prints the table.
pub async fn run(args: Args) -> anyhow::Result<()> {
    let r = measure(&args).await?;
    let (p50, p99, burst, burst_commits, script_p50) = (r.p50, r.p99, r.burst, r.burst_commits, r.script_p50);
    println!("\npromotion benchmark: GitOps repository of {} apps x 3 stages on git daemon (loopback)", args.apps);
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
    println!(
        "\ntargets: p50 <= 300 ms: {:.0} ms | p99 <= 1 s: {:.0} ms | {} in <= 10 s: {burst:.1} s, <= 20 commits: {burst_commits}\n\
         >= 20x the script per promotion: {:.1}x single, {:.1}x amortized in the burst",
        p50 * 1e3,
        p99 * 1e3,
        args.apps,
        script_p50 / p50,
        script_p50 / (burst / args.apps as f64),
    );
    Ok(())
}
