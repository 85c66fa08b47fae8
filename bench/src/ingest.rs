//! The ingest benchmark (issue 3): signed 8 KB push webhooks into a running ingest, from a
//! separate load process, with JetStream file storage; next to the raw JetStream publish rate
//! measured in the same run, and next to the adnanh `webhook` server verifying the same
//! signatures (Debian package `webhook`).

use crate::load::Figures;
use anyhow::{Context as _, bail};
use futures::StreamExt as _;
use slipway_ingest::config::{GithubConfig, SpoolConfig};
use slipway_ingest::{Config, apps::AppRule, signature};
use slipway_runtime::config::{DatabaseConfig, NatsConfig, Secret, TelemetryConfig};
use slipway_testkit::{ServiceProcess, free_port, shared_database};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

pub const SECRET: &str = "bench-secret";

#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// Webhooks per measured run.
    #[arg(long, default_value_t = 20_000)]
    pub requests: usize,
    /// Requests in flight.
    #[arg(long, default_value_t = 32)]
    pub concurrency: usize,
    /// Body size in bytes.
    #[arg(long, default_value_t = 8192)]
    pub body_bytes: usize,
    /// The load generator: `wrk` (C, one thread, the least CPU per request, so more of a
    /// 2-core machine goes to the server) or the built-in Rust client (a fixed request count).
    #[arg(long, value_enum, default_value_t = Generator::Wrk)]
    pub generator: Generator,
    /// With wrk: seconds per measured run (wrk runs for a time, not a count).
    #[arg(long, default_value_t = 5)]
    pub seconds: u64,
    /// The push webhook sent.
    #[arg(long, value_enum, default_value_t = Payload::Github)]
    pub payload: Payload,
    /// Apps ingest knows (`writer` and `app-00001`...), as a catalog of that size gives it.
    #[arg(long, default_value_t = 1)]
    pub apps: usize,
    /// Apps each push (of the GitHub payload) touches: one file in each.
    #[arg(long, default_value_t = 1)]
    pub touch: usize,
    /// Run on a three-node NATS cluster, the stream at three replicas.
    #[arg(long)]
    pub cluster: bool,
}

/// What the pushes look like.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Payload {
    /// GitHub's own push payload (the octokit fixture of a branch push: one commit and the
    /// full repository, sender and pusher objects, 8.8 KB) sent to `main`, touching
    /// `apps/writer`: what a webhook of a one-commit push weighs.
    Github,
    /// A synthetic push of small commits padded to `--body-bytes`: every byte is a commit
    /// ingest decodes and carries into the source event, the worst case for its work.
    Commits,
}

impl Payload {
    /// The body sent.
    pub fn body(self, size: usize, touch: usize) -> anyhow::Result<Vec<u8>> {
        match self {
            Payload::Github => github_push(touch),
            Payload::Commits => Ok(push_body(size)),
        }
    }

    pub fn describe(self) -> &'static str {
        match self {
            Payload::Github => "GitHub's push payload, 1 commit",
            Payload::Commits => "small commits only",
        }
    }
}

/// The fixture `push/with-new-branch.payload.json`, sent to `main` with its one commit
/// changing `apps/writer`, so that it builds like any push touching the app.
fn github_push(touch: usize) -> anyhow::Result<Vec<u8>> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../shared/fixtures/github-webhooks/push/with-new-branch.payload.json");
    let text = std::fs::read(&path).with_context(|| format!("reading the push fixture {}", path.display()))?;
    let mut push: serde_json::Value = serde_json::from_slice(&text)?;
    push["ref"] = "refs/heads/main".into();
    let mut files = vec!["apps/writer/src/main.rs".to_owned()];
    files.extend((1..touch).map(|n| format!("apps/app-{n:05}/src/main.rs")));
    let touch = |commit: &mut serde_json::Value| {
        commit["added"] = serde_json::json!([]);
        commit["modified"] = serde_json::json!(files);
    };
    push["commits"].as_array_mut().into_iter().flatten().for_each(touch);
    touch(&mut push["head_commit"]);
    // Pretty-printed as GitHub sends it.
    Ok(serde_json::to_vec_pretty(&push)?)
}

/// Which program sends the webhooks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Generator {
    Wrk,
    Builtin,
}

#[derive(Debug, Clone, clap::Args)]
pub struct ServerArgs {
    #[arg(long)]
    nats: String,
    #[arg(long)]
    db: String,
    #[arg(long)]
    http: u16,
    #[arg(long)]
    admin: u16,
    #[arg(long)]
    spool: PathBuf,
    #[arg(long, default_value_t = 1)]
    apps: usize,
    /// `nats.stream_replicas`.
    #[arg(long, default_value_t = 1)]
    replicas: usize,
}

/// The `ingest-server` child: ingest as in production, configured for the benchmark.
pub async fn serve(args: ServerArgs) -> anyhow::Result<()> {
    let mut rules = vec![serde_json::json!({ "name": "writer", "paths": ["apps/writer/**"] })];
    rules.extend(
        (1..args.apps)
            .map(|n| serde_json::json!({ "name": format!("app-{n:05}"), "paths": [format!("apps/app-{n:05}/**")] })),
    );
    let apps: Vec<AppRule> = serde_json::from_value(serde_json::Value::Array(rules))?;
    let config = Config {
        nats: NatsConfig { url: args.nats, stream_replicas: args.replicas, ..NatsConfig::default() },
        database: DatabaseConfig {
            url: Some(Secret::new(args.db)),
            max_connections: 32,
            ..DatabaseConfig::with_schema("ingest")
        },
        github: GithubConfig { webhook_secrets: vec![Secret::new(SECRET)], ..GithubConfig::default() },
        spool: SpoolConfig { dir: args.spool },
        telemetry: TelemetryConfig { filter: "warn".into(), ..TelemetryConfig::default() },
        apps,
        ..Config::default()
    };
    let telemetry = slipway_runtime::telemetry::init(&config.telemetry, "slipway-ingest")?;
    let admin = tokio::net::TcpListener::bind(("127.0.0.1", args.admin)).await?;
    let http = tokio::net::TcpListener::bind(("127.0.0.1", args.http)).await?;
    let result = slipway_ingest::serve(config, admin, http, slipway_runtime::shutdown::root_token()).await;
    let _ = telemetry.shutdown();
    result
}

#[derive(Debug, Clone, clap::Args)]
pub struct FloorArgs {
    #[arg(long)]
    http: u16,
}

/// The `http-floor` child: the same HTTP stack as ingest (hyper through axum, on the same
/// runtime and allocator) reading each webhook body and answering 202 with a reply like
/// ingest's, doing nothing else: what receiving the webhooks costs before any of ingest's work.
pub async fn floor(args: FloorArgs) -> anyhow::Result<()> {
    use axum::http::{StatusCode, header};
    const REPLY: &str = r#"{"status":"accepted","events":2,"spooled":false}"#;
    let read = |body: bytes::Bytes| async move {
        let _ = std::hint::black_box(body);
        (StatusCode::ACCEPTED, [(header::CONTENT_TYPE, "application/json")], REPLY)
    };
    let router = axum::Router::new()
        .route("/webhooks/github", axum::routing::post(read))
        .route("/readyz", axum::routing::get(|| async { "ok" }));
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", args.http)).await?;
    axum::serve(listener, router).await?;
    Ok(())
}

/// A push to `main` touching `apps/writer`, padded with commits to about `size` bytes.
pub fn push_body(size: usize) -> Vec<u8> {
    let commit = |i: usize| {
        serde_json::json!({
            "id": format!("{i:040x}"), "message": format!("fix(writer): change {i}"), "timestamp": "2026-11-23T10:00:00Z",
            "author": { "name": "Bench", "username": "bench" },
            "added": [], "removed": [], "modified": [format!("apps/writer/src/file_{i}.rs")],
        })
    };
    let mut commits = Vec::new();
    loop {
        commits.push(commit(commits.len()));
        let body = serde_json::json!({
            "ref": "refs/heads/main", "before": "a".repeat(40), "after": format!("{:040x}", commits.len()),
            "created": false, "deleted": false, "forced": false,
            "repository": { "full_name": "acme/mono", "name": "mono" },
            "pusher": { "name": "bench" }, "sender": { "login": "bench" },
            "commits": commits, "head_commit": null,
        });
        let bytes = serde_json::to_vec(&body).unwrap_or_default();
        if bytes.len() >= size || commits.len() > 10_000 {
            return bytes;
        }
    }
}

pub async fn load(
    url: &str,
    body: &Path,
    requests: usize,
    concurrency: usize,
    run_id: &str,
) -> anyhow::Result<Figures> {
    let sig = signature::sign(SECRET.as_bytes(), &std::fs::read(body)?);
    let out = tokio::process::Command::new(std::env::current_exe()?)
        .args(["load", "--url", url, "--signature", &sig, "--run-id", run_id])
        .arg("--body")
        .arg(body)
        .args(["--requests", &requests.to_string(), "--concurrency", &concurrency.to_string()])
        .output()
        .await?;
    if !out.status.success() {
        bail!("load generator failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    let line = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(line.trim()).with_context(|| format!("load output {line:?}"))
}

/// One run of the chosen generator against `url`: a short warm-up, or the measured run.
async fn drive(args: &Args, url: &str, body: &Path, run_id: &str, warm_up: bool) -> anyhow::Result<Figures> {
    match args.generator {
        Generator::Wrk => {
            if !crate::wrk::available() {
                bail!("wrk is not installed (scripts/bootstrap installs it; or pass --generator builtin)");
            }
            let sig = signature::sign(SECRET.as_bytes(), &std::fs::read(body)?);
            let seconds = if warm_up { 1 } else { args.seconds };
            crate::wrk::load(url, body, &sig, seconds, args.concurrency, run_id).await
        }
        Generator::Builtin => {
            let requests = if warm_up { args.requests.min(1000) } else { args.requests };
            load(url, body, requests, args.concurrency, run_id).await
        }
    }
}

/// Acked JetStream publishes of `size`-byte messages, `window` in flight, unique msg ids, for
/// `seconds` (as long as the ingest run, so both see the same phase of the machine).
async fn raw_jetstream(url: &str, seconds: f64, window: usize, size: usize) -> anyhow::Result<f64> {
    let js = async_nats::jetstream::new(slipway_testkit::connect_nats(url).await?);
    let payload = bytes::Bytes::from(vec![b'x'; size]);
    let started = Instant::now();
    let deadline = started + Duration::from_secs_f64(seconds);
    let acks = futures::stream::iter(0..)
        .take_while(|_| futures::future::ready(Instant::now() < deadline))
        .map(|n| {
            let (js, payload) = (js.clone(), payload.clone());
            async move {
                let mut headers = async_nats::HeaderMap::new();
                headers.insert("Nats-Msg-Id", format!("raw-{n}").as_str());
                js.publish_with_headers("slipway.bench.raw", headers, payload).await?.await
            }
        })
        .buffer_unordered(window);
    let (count, failures) =
        acks.fold((0usize, 0usize), |(n, f), r| futures::future::ready((n + 1, f + usize::from(r.is_err())))).await;
    if failures > 0 {
        bail!("{failures} raw publishes failed");
    }
    Ok(count as f64 / started.elapsed().as_secs_f64())
}

/// CPU time of every nats-server of `nats`.
fn nats_cpu(nats: &slipway_testkit::Nats) -> f64 {
    nats.pids().into_iter().map(|pid| cpu_seconds(Some(pid))).sum()
}

/// CPU time (user + system) a process has used so far, from `/proc/<pid>/stat`.
fn cpu_seconds(pid: Option<u32>) -> f64 {
    let Some(stat) = pid.and_then(|pid| std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()) else {
        return 0.0;
    };
    // Fields after the parenthesised command name; utime and stime are the 14th and 15th.
    let rest = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let ticks: Vec<u64> = rest.split_whitespace().skip(11).take(2).filter_map(|t| t.parse().ok()).collect();
    // Linux reports in USER_HZ, 100 on every architecture it runs on.
    ticks.iter().sum::<u64>() as f64 / 100.0
}

/// CPU time the whole machine has been busy so far (all cores, every state but idle and
/// iowait), from the first line of `/proc/stat`.
fn machine_busy_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let fields: Vec<u64> =
        stat.lines().next().unwrap_or_default().split_whitespace().skip(1).filter_map(|t| t.parse().ok()).collect();
    let busy: u64 = fields.iter().enumerate().filter(|(i, _)| *i != 3 && *i != 4).map(|(_, v)| v).sum();
    busy as f64 / 100.0
}

/// CPU microseconds per webhook (or per raw publish) spent by each process of a run.
#[derive(Debug, Clone, Copy, Default)]
pub struct Cpu {
    pub ingest_us: f64,
    pub nats_us: f64,
    /// Everything else busy meanwhile: the load generator, PostgreSQL, the kernel's network
    /// work not charged to a process.
    pub rest_us: f64,
    pub nats_raw_us: f64,
    pub raw_publisher_us: f64,
    /// The HTTP floor server, per request.
    pub floor_us: f64,
}

/// The HTTP floor: the webhooks sent to [`floor`], and its CPU per request.
async fn http_floor(args: &Args, body: &Path) -> anyhow::Result<(Figures, f64)> {
    let port = free_port();
    let exe = std::env::current_exe()?;
    let server = ServiceProcess::spawn_with_args(&exe, ["http-floor", "--http", &port.to_string()], &[])?;
    server.wait_http_ok(&format!("http://127.0.0.1:{port}/readyz"), Duration::from_secs(30)).await?;
    let url = format!("http://127.0.0.1:{port}/webhooks/github");
    drive(args, &url, body, "floor-warm", true).await?;
    let before = cpu_seconds(server.pid());
    let figures = drive(args, &url, body, "floor", false).await?;
    let per_request = (cpu_seconds(server.pid()) - before) * 1e6 / figures.requests.max(1) as f64;
    Ok((figures, per_request))
}

async fn adnanh_webhook(body: &Path, args: &Args, dir: &Path) -> anyhow::Result<Option<Figures>> {
    if std::process::Command::new("webhook").arg("-version").output().is_err() {
        return Ok(None);
    }
    let hooks = dir.join("hooks.json");
    let rule = serde_json::json!([{
        "id": "bench", "execute-command": "/bin/true", "trigger-rule-mismatch-http-response-code": 401,
        "trigger-rule": { "match": { "type": "payload-hmac-sha256", "secret": SECRET,
                                      "parameter": { "source": "header", "name": "X-Hub-Signature-256" } } },
    }]);
    std::fs::write(&hooks, serde_json::to_vec(&rule)?)?;
    let port = free_port();
    let server = ServiceProcess::spawn_with_args(
        "webhook",
        ["-hooks", &hooks.display().to_string(), "-ip", "127.0.0.1", "-port", &port.to_string()],
        &[],
    )?;
    let url = format!("http://127.0.0.1:{port}/hooks/bench");
    for _ in 0..100 {
        if tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    drive(args, &url, body, "warm", true).await?;
    let figures = drive(args, &url, body, "run", false).await?;
    drop(server);
    Ok(Some(figures))
}

fn row(name: &str, f: &Figures) {
    println!("{name:<34} {:>8} {:>7} {:>10.0} {:>9.2} {:>9.2}", f.requests, f.errors, f.per_second, f.p50_ms, f.p99_ms);
}

/// What the ingest benchmark measured.
#[derive(Debug, Clone)]
pub struct Report {
    pub ingest: Figures,
    /// Acked raw JetStream publishes per second, same sizes, same run.
    pub raw: f64,
    /// The HTTP floor server's figures.
    pub floor: Figures,
    pub webhook: Option<Figures>,
    pub body_bytes: u64,
    pub cpu: Cpu,
}

/// The orchestrator: servers, ingest child, load child, raw rate, comparison.
pub async fn measure(args: &Args) -> anyhow::Result<Report> {
    let nats = slipway_testkit::Nats::start(args.cluster).await?;
    let db = shared_database().await?;
    let dir = tempfile::tempdir()?;
    let body = dir.path().join("push.json");
    std::fs::write(&body, args.payload.body(args.body_bytes, args.touch)?)?;
    let (http, admin) = (free_port(), free_port());
    let exe = std::env::current_exe()?;
    let server = ServiceProcess::spawn_with_args(
        &exe,
        [
            "ingest-server",
            "--nats",
            &nats.url(),
            "--db",
            &db,
            "--http",
            &http.to_string(),
            "--admin",
            &admin.to_string(),
            "--spool",
            &dir.path().join("spool").display().to_string(),
            "--apps",
            &args.apps.to_string(),
            "--replicas",
            &nats.replicas().to_string(),
        ],
        &[],
    )?;
    server.wait_http_ok(&format!("http://127.0.0.1:{admin}/readyz"), Duration::from_secs(30)).await?;
    let url = format!("http://127.0.0.1:{http}/webhooks/github");
    drive(args, &url, &body, "warm", true).await?;
    let before = (cpu_seconds(server.pid()), nats_cpu(&nats), machine_busy_seconds());
    let ingest = drive(args, &url, &body, "run", false).await?;
    let after = (cpu_seconds(server.pid()), nats_cpu(&nats), machine_busy_seconds());
    let per_webhook = |spent: f64| spent * 1e6 / ingest.requests.max(1) as f64;
    drop(server);
    let before_raw = (nats_cpu(&nats), cpu_seconds(Some(std::process::id())));
    let raw = raw_jetstream(&nats.url(), ingest.seconds, args.concurrency, args.body_bytes).await?;
    let after_raw = (nats_cpu(&nats), cpu_seconds(Some(std::process::id())));
    let raw_count = raw * ingest.seconds;
    let per_raw = |spent: f64| spent * 1e6 / raw_count.max(1.0);
    let (floor, floor_us) = http_floor(args, &body).await?;
    let cpu = Cpu {
        ingest_us: per_webhook(after.0 - before.0),
        nats_us: per_webhook(after.1 - before.1),
        rest_us: per_webhook((after.2 - before.2) - (after.0 - before.0) - (after.1 - before.1)),
        nats_raw_us: per_raw(after_raw.0 - before_raw.0),
        raw_publisher_us: per_raw(after_raw.1 - before_raw.1),
        floor_us,
    };
    let webhook = adnanh_webhook(&body, args, dir.path()).await?;
    Ok(Report { ingest, raw, floor, webhook, body_bytes: std::fs::metadata(&body)?.len(), cpu })
}

/// Measures and prints the table.
pub async fn run(args: Args) -> anyhow::Result<()> {
    let Report { ingest, raw, floor, webhook, body_bytes: size, cpu } = measure(&args).await?;
    println!(
        "\ningest benchmark: signed push webhooks of {size} bytes ({}, touching {} of {} apps), {} in flight, loopback, load from {:?}, {}",
        args.payload.describe(),
        args.touch,
        args.apps,
        args.concurrency,
        args.generator,
        crate::describe_nats(args.cluster)
    );
    println!("{:<34} {:>8} {:>7} {:>10} {:>9} {:>9}", "system", "requests", "errors", "per sec", "p50 ms", "p99 ms");
    row("slipway ingest (JetStream file)", &ingest);
    let raw_count = (raw * ingest.seconds).round();
    println!("{:<34} {raw_count:>8} {:>7} {raw:>10.0} {:>9} {:>9}", "raw JetStream publish (acked)", 0, "-", "-");
    row("HTTP floor (read body, answer 202)", &floor);
    match &webhook {
        Some(f) => row("adnanh webhook (HMAC, /bin/true)", f),
        None => println!("adnanh webhook: not installed (apt-get install webhook)"),
    }
    println!(
        "\nCPU per webhook: ingest {:.0} us, nats-server {:.0} us, the rest (load generator, PostgreSQL, kernel) {:.0} us\n\
         CPU per raw publish: nats-server {:.0} us, publisher {:.0} us\n\
         CPU per request of the HTTP floor server: {:.0} us",
        cpu.ingest_us, cpu.nats_us, cpu.rest_us, cpu.nats_raw_us, cpu.raw_publisher_us, cpu.floor_us
    );
    let ratio = ingest.per_second / raw;
    println!(
        "\ntargets: >= 10000/s: {:.0}/s | p99 <= 15 ms: {:.2} ms | >= 0.5 x raw JetStream: {ratio:.2} x",
        ingest.per_second, ingest.p99_ms
    );
    Ok(())
}
