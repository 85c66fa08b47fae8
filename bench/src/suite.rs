//! The load suite (issue 8): the services' start-up time and memory, the Watch fan-out, the
//! ingest and the promotion benchmarks in one run, with one table of figure, value, target and
//! whether it was met. Sizes default to what finishes in a few minutes on a small machine.
//!
//! Order: the four real service binaries start one by one (ready time, idle RSS); the
//! promoter is loaded with the Watch benchmark, then ingest with webhooks (which every service
//! then works on), their RSS sampled meanwhile; then the ingest and promotion benchmarks run
//! with their own servers, each once on one nats-server and once on a three-node cluster with
//! the stream at three replicas (the cluster's figures have no targets of their own).

use crate::services::{self, Servers};
use crate::{ingest, promotion, watch};

#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// Watch streams.
    #[arg(long, default_value_t = 1000)]
    subscribers: usize,
    /// Watch events per second.
    #[arg(long, default_value_t = 1000)]
    rate: u64,
    /// Seconds of Watch publishing.
    #[arg(long, default_value_t = 5)]
    seconds: u64,
    /// Webhooks for the ingest benchmark (and for ingest's RSS under load).
    #[arg(long, default_value_t = 10_000)]
    requests: usize,
    /// Apps in the promotion benchmark's GitOps repository (all complete a build at once).
    #[arg(long, default_value_t = 1000)]
    apps: usize,
    /// Single promotions timed one after the other.
    #[arg(long, default_value_t = 20)]
    singles: usize,
}

/// One line of the table.
struct Row {
    figure: String,
    value: String,
    target: String,
    met: Option<bool>,
}

fn row(figure: impl Into<String>, value: String, target: &str, met: Option<bool>) -> Row {
    Row { figure: figure.into(), value, target: target.to_owned(), met }
}

fn mb(bytes: u64) -> String {
    format!("{:.1} MB", bytes as f64 / 1e6)
}

const MB_25: u64 = 25_000_000;

/// Ready time and idle RSS of each service, then ingest and the promoter under load.
async fn services_rows(args: &Args, rows: &mut Vec<Row>) -> anyhow::Result<()> {
    let servers = Servers::start().await?;
    let (running, idle) = services::start_all(&servers).await?;
    for s in &idle {
        let ms = s.ready.as_secs_f64() * 1e3;
        rows.push(row(format!("{} ready after start", s.name), format!("{ms:.0} ms"), "<= 500 ms", Some(ms <= 500.0)));
        rows.push(row(format!("{} RSS idle", s.name), mb(s.rss), "<= 25 MB", Some(s.rss <= MB_25)));
    }
    let find =
        |name: &str| running.iter().find(|s| s.name == name).ok_or_else(|| anyhow::anyhow!("{name} not started"));
    // Watch first: the webhooks below set every service to work for a while afterwards.
    let watch_args =
        watch::Args { subscribers: args.subscribers, rate: args.rate, seconds: args.seconds, connections: 0 };
    let w = watch::measure(find("promoter")?, &servers, &watch_args).await?;
    // All four services are up and work on the same events; `slipway-bench watch` measures
    // the promoter alone.
    let scale = format!("{} subscribers x {}/s, 4 services up", args.subscribers, args.rate);
    rows.push(row(format!("Watch p50 delivery ({scale})"), format!("{:.1} ms", w.load.p50_ms), "-", None));
    let p99_met = w.load.p99_ms <= 100.0 && args.subscribers >= 1000 && args.rate >= 1000;
    rows.push(row(
        format!("Watch p99 delivery ({scale})"),
        format!("{:.1} ms", w.load.p99_ms),
        "<= 100 ms",
        Some(p99_met),
    ));
    let delivered = format!("{} of {}", w.load.delivered, w.load.expected);
    rows.push(row("Watch deliveries", delivered, "all", Some(w.load.lost == 0 && w.load.stream_errors == 0)));
    rows.push(row("promoter RSS peak under Watch load", mb(w.promoter_rss), "-", None));
    let (rss, load) = services::ingest_under_load(find("ingest")?, servers.dir.path(), args.requests).await?;
    let what = format!("ingest RSS peak, {} webhooks at {:.0}/s", load.requests, load.per_second);
    rows.push(row(what, mb(rss), "-", None));
    Ok(())
}

/// `figure` as measured on `nats`: the single-node figures carry the targets, the cluster's
/// are printed next to them.
fn on(figure: &str, cluster: bool) -> String {
    if cluster { format!("{figure} [3-node NATS, R3]") } else { figure.to_owned() }
}

async fn ingest_rows(args: &Args, cluster: bool, rows: &mut Vec<Row>) -> anyhow::Result<()> {
    let r = ingest::measure(&ingest::Args {
        requests: args.requests,
        concurrency: 32,
        body_bytes: 8192,
        generator: ingest::Generator::Wrk,
        seconds: 5,
        payload: ingest::Payload::Github,
        apps: 1,
        touch: 1,
        cluster,
    })
    .await?;
    let f = &r.ingest;
    let target = |t: &str| if cluster { "-".to_owned() } else { t.to_owned() };
    let met = |m: bool| (!cluster).then_some(m);
    rows.push(row(
        on("ingest webhooks/s (GitHub push, 8.8 KB, signed)", cluster),
        format!("{:.0}/s", f.per_second),
        &target(">= 10000/s"),
        met(f.per_second >= 10_000.0),
    ));
    rows.push(row(
        on("ingest p99 response", cluster),
        format!("{:.1} ms", f.p99_ms),
        &target("<= 15 ms"),
        met(f.p99_ms <= 15.0),
    ));
    let ratio = f.per_second / r.raw;
    rows.push(row(
        on("ingest / raw JetStream publish rate", cluster),
        format!("{ratio:.2} x"),
        &target(">= 0.5 x"),
        met(ratio >= 0.5),
    ));
    Ok(())
}

async fn promotion_rows(args: &Args, rows: &mut Vec<Row>) -> anyhow::Result<()> {
    let r = promotion::measure(&promotion::Args {
        apps: args.apps,
        singles: args.singles,
        script_runs: 3,
        catalog: false,
        cluster: false,
    })
    .await?;
    let ms = |s: f64| format!("{:.0} ms", s * 1e3);
    rows.push(row("build.succeeded -> commit p50", ms(r.p50), "<= 50 ms", Some(r.p50 <= 0.05)));
    rows.push(row("build.succeeded -> commit p99", ms(r.p99), "<= 150 ms", Some(r.p99 <= 0.15)));
    let burst = format!("{} apps complete at once, all landed", args.apps);
    let burst_met = r.burst <= 10.0 && args.apps >= 1000;
    rows.push(row(burst, format!("{:.1} s", r.burst), "<= 10 s (1000 apps)", Some(burst_met)));
    rows.push(row("  commits for them", r.burst_commits.to_string(), "<= 20", Some(r.burst_commits <= 20)));
    rows.push(row("clone-edit-push script p50", ms(r.script_p50), "-", None));
    let speedup = r.script_p50 / r.p50;
    rows.push(row("faster than clone-edit-push script", format!("{speedup:.1} x"), ">= 20 x", Some(speedup >= 20.0)));
    Ok(())
}

/// The promotion figures again with the stream at three replicas on a three-node cluster.
async fn cluster_promotion_rows(args: &Args, rows: &mut Vec<Row>) -> anyhow::Result<()> {
    let r = promotion::measure(&promotion::Args {
        apps: args.apps,
        singles: args.singles,
        script_runs: 1,
        catalog: false,
        cluster: true,
    })
    .await?;
    let ms = |s: f64| format!("{:.0} ms", s * 1e3);
    rows.push(row(on("build.succeeded -> commit p50", true), ms(r.p50), "-", None));
    rows.push(row(on("build.succeeded -> commit p99", true), ms(r.p99), "-", None));
    rows.push(row(
        on(&format!("{} apps complete at once, all landed", args.apps), true),
        format!("{:.1} s", r.burst),
        "-",
        None,
    ));
    rows.push(row(on("  commits for them", true), r.burst_commits.to_string(), "-", None));
    Ok(())
}

fn print(rows: &[Row]) {
    let width = rows.iter().map(|r| r.figure.len()).max().unwrap_or(10).max(10);
    println!("\nSlipway load suite (one machine, loopback; other load on the machine skews the figures)");
    println!("{:<width$}  {:>16}  {:<20}  met", "figure", "value", "target");
    println!("{}", "-".repeat(width + 48));
    for r in rows {
        let met = match r.met {
            Some(true) => "met",
            Some(false) => "NOT met",
            None => "",
        };
        println!("{:<width$}  {:>16}  {:<20}  {met}", r.figure, r.value, r.target);
    }
}

/// Runs every part; a part that fails is reported in the table and the rest still run.
pub async fn run(args: Args) -> anyhow::Result<()> {
    let mut rows = Vec::new();
    if let Err(e) = services_rows(&args, &mut rows).await {
        rows.push(row("services / Watch", format!("failed: {e:#}"), "-", Some(false)));
    }
    for cluster in [false, true] {
        if let Err(e) = ingest_rows(&args, cluster, &mut rows).await {
            rows.push(row(on("ingest benchmark", cluster), format!("failed: {e:#}"), "-", Some(false)));
        }
    }
    if let Err(e) = promotion_rows(&args, &mut rows).await {
        rows.push(row("promotion benchmark", format!("failed: {e:#}"), "-", Some(false)));
    }
    if let Err(e) = cluster_promotion_rows(&args, &mut rows).await {
        rows.push(row(on("promotion benchmark", true), format!("failed: {e:#}"), "-", Some(false)));
    }
    print(&rows);
    Ok(())
}
