//! The Watch fan-out benchmark (issue 8): the real `slipway-promoter` serving gRPC `Watch` to
//! `subscribers` streams opened by a separate load process (a few HTTP/2 connections, many
//! streams each), while this process publishes `build.started` events into JetStream at
//! `rate` per second. Each event carries its publish time (`ce-time`), so the subscriber's
//! clock on arrival gives the delivery latency; every subscriber should see every event.

use anyhow::{Context as _, bail};
use futures::StreamExt as _;
use serde::{Deserialize, Serialize};
use slipway_mesh::v1;
use slipway_runtime::jetstream::Publisher;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _};
use tokio_util::sync::CancellationToken;
use tonic::transport::{Channel, Endpoint};

use crate::services::{PeakRss, Servers, Service, TOKEN};

/// What the subscribers ask for: the benchmark's events only.
const SUBJECT: &str = "slipway.build.started.>";

#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// Concurrent Watch streams.
    #[arg(long, default_value_t = 1000)]
    pub subscribers: usize,
    /// Events published per second.
    #[arg(long, default_value_t = 1000)]
    pub rate: u64,
    /// Seconds of publishing.
    #[arg(long, default_value_t = 10)]
    pub seconds: u64,
    /// HTTP/2 connections the streams share (0: one per 100 streams).
    #[arg(long, default_value_t = 0)]
    pub connections: usize,
}

/// The `watch-load` child: opens the streams, says `ready`, then counts and times arrivals.
#[derive(Debug, Clone, clap::Args)]
pub struct LoadArgs {
    #[arg(long)]
    url: String,
    #[arg(long)]
    subscribers: usize,
    #[arg(long)]
    connections: usize,
    /// Events each subscriber should receive.
    #[arg(long)]
    events: usize,
}

/// How long subscribers still wait for missing events once publishing is done (a line on
/// the child's stdin, or its end).
const GRACE: Duration = Duration::from_secs(30);

/// What the subscribers saw.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Figures {
    pub subscribers: usize,
    pub expected: u64,
    pub delivered: u64,
    pub lost: u64,
    /// Streams that ended with an error status.
    pub stream_errors: usize,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

/// The benchmark's result.
#[derive(Debug, Clone)]
pub struct Report {
    pub load: Figures,
    pub published: u64,
    /// Peak VmRSS of the promoter while publishing and delivering.
    pub promoter_rss: u64,
}

fn now_micros() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_micros() as i64)
}

/// The fields of a `slipway.v1.Event` the subscribers read; prost skips the rest, so the
/// load process spends its CPU on receiving rather than on building strings it drops.
#[derive(Clone, PartialEq, prost::Message)]
struct Arrival {
    #[prost(message, optional, tag = "5")]
    time: Option<prost_types::Timestamp>,
    #[prost(uint64, tag = "7")]
    sequence: u64,
}

/// Delivery latency of `event` in microseconds, from its `ce-time` to now.
fn latency_micros(event: &Arrival) -> u32 {
    let sent = event.time.as_ref().map_or(0, |t| t.seconds * 1_000_000 + i64::from(t.nanos) / 1000);
    u32::try_from((now_micros() - sent).max(0)).unwrap_or(u32::MAX)
}

/// One subscriber: its events' latencies, and whether its stream failed.
async fn subscribe_and_count(
    mut events: tonic::Streaming<Arrival>,
    want: usize,
    grace: CancellationToken,
) -> (Vec<u32>, bool) {
    let mut latencies = Vec::with_capacity(want);
    while latencies.len() < want {
        let next = tokio::select! {
            next = events.next() => next,
            () = grace.cancelled() => break,
        };
        match next {
            Some(Ok(event)) => latencies.push(latency_micros(&event)),
            Some(Err(status)) => {
                eprintln!("watch stream failed: {status}");
                return (latencies, true);
            }
            None => break,
        }
    }
    (latencies, false)
}

/// `AdminService/Watch`, as the generated client calls it but decoding [`Arrival`]s.
async fn open_stream(channel: Channel) -> anyhow::Result<tonic::Streaming<Arrival>> {
    let request = v1::WatchRequest { subjects: vec![SUBJECT.into()], ..Default::default() };
    let mut request = tonic::Request::new(request);
    request.metadata_mut().insert("authorization", format!("Bearer {TOKEN}").parse()?);
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready().await?;
    let path = tonic::codegen::http::uri::PathAndQuery::from_static("/slipway.v1.AdminService/Watch");
    let codec = tonic_prost::ProstCodec::<v1::WatchRequest, Arrival>::default();
    Ok(grpc.server_streaming(request, path, codec).await?.into_inner())
}

fn percentile_ms(sorted: &[u32], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    f64::from(sorted[rank.min(sorted.len() - 1)]) / 1000.0
}

/// The `watch-load` child role.
pub async fn load(args: LoadArgs) -> anyhow::Result<()> {
    let mut channels = Vec::new();
    for _ in 0..args.connections.max(1) {
        // Modest flow-control windows: what the server may buffer for a subscriber that
        // reads late is bounded by them, so large ones only inflate its memory.
        let endpoint = Endpoint::from_shared(args.url.clone())?
            .initial_connection_window_size(Some(2 << 20))
            .initial_stream_window_size(Some(128 << 10));
        channels.push(endpoint.connect().await.context("connecting to the admin API")?);
    }
    // Every stream is open (its subscription made) before the first event is published.
    let streams: Vec<_> = futures::stream::iter(0..args.subscribers)
        .map(|i| open_stream(channels[i % channels.len()].clone()))
        .buffered(64)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<anyhow::Result<_>>()?;
    println!("ready");
    let grace = CancellationToken::new();
    let done = grace.clone();
    tokio::spawn(async move {
        let _ = tokio::io::BufReader::new(tokio::io::stdin()).lines().next_line().await;
        tokio::time::sleep(GRACE).await;
        done.cancel();
    });
    let tasks: Vec<_> =
        streams.into_iter().map(|s| tokio::spawn(subscribe_and_count(s, args.events, grace.clone()))).collect();
    let (mut all, mut stream_errors) = (Vec::with_capacity(args.events * args.subscribers), 0);
    for task in tasks {
        let (latencies, failed) = task.await?;
        all.extend(latencies);
        stream_errors += usize::from(failed);
    }
    all.sort_unstable();
    let expected = (args.events * args.subscribers) as u64;
    let figures = Figures {
        subscribers: args.subscribers,
        expected,
        delivered: all.len() as u64,
        lost: expected.saturating_sub(all.len() as u64),
        stream_errors,
        p50_ms: percentile_ms(&all, 50.0),
        p99_ms: percentile_ms(&all, 99.0),
        max_ms: all.last().map_or(0.0, |m| f64::from(*m) / 1000.0),
    };
    println!("{}", serde_json::to_string(&figures)?);
    Ok(())
}

fn event(n: u64) -> v1::BuildStarted {
    v1::BuildStarted {
        build_id: format!("watch-{n}"),
        app: "bench".into(),
        commit_sha: format!("{n:040x}"),
        replica: "bench".into(),
        backend: "none".into(),
    }
}

/// Publishes `count` events at `rate` per second (not waiting for one ack before the next
/// send); returns how many were stored.
async fn publish(publisher: &Publisher, count: u64, rate: u64) -> anyhow::Result<u64> {
    let started = tokio::time::Instant::now();
    let mut acks = Vec::with_capacity(count as usize);
    for n in 0..count {
        tokio::time::sleep_until(started + Duration::from_secs_f64(n as f64 / rate as f64)).await;
        let publisher = publisher.clone();
        acks.push(tokio::spawn(async move { publisher.publish(&event(n)).await }));
    }
    let mut stored = 0;
    for ack in acks {
        stored += u64::from(ack.await?.is_ok());
    }
    Ok(stored)
}

/// Runs the benchmark against a running promoter.
pub async fn measure(promoter: &Service, servers: &Servers, args: &Args) -> anyhow::Result<Report> {
    let connections = if args.connections == 0 { args.subscribers.div_ceil(100) } else { args.connections };
    let events = args.rate * args.seconds;
    let mut child = tokio::process::Command::new(std::env::current_exe()?)
        .args(["watch-load", "--url", &format!("http://127.0.0.1:{}", promoter.port)])
        .args(["--subscribers", &args.subscribers.to_string(), "--connections", &connections.to_string()])
        .args(["--events", &events.to_string()])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()?;
    let mut lines = tokio::io::BufReader::new(child.stdout.take().context("child stdout")?).lines();
    let opening = Instant::now();
    match lines.next_line().await? {
        Some(line) if line == "ready" => {}
        other => bail!("watch-load did not get ready: {other:?}"),
    }
    eprintln!("{} Watch streams open in {:.1}s", args.subscribers, opening.elapsed().as_secs_f64());
    let client = async_nats::connect(servers.nats.url()).await?;
    let publisher = Publisher::new(client, "/bench/watch");
    let peak = PeakRss::start(promoter.pid()?);
    let published = publish(&publisher, events, args.rate).await?;
    child.stdin.take().context("child stdin")?.write_all(b"done\n").await?;
    let line = lines.next_line().await?.context("watch-load ended without figures")?;
    let promoter_rss = peak.finish();
    if !child.wait().await?.success() {
        bail!("watch-load failed");
    }
    let load: Figures = serde_json::from_str(&line).with_context(|| format!("watch-load output {line:?}"))?;
    Ok(Report { load, published, promoter_rss })
}

/// Starts NATS, PostgreSQL and the promoter, measures and prints.
pub async fn run(args: Args) -> anyhow::Result<()> {
    let servers = Servers::start().await?;
    let promoter = crate::services::spawn("promoter", &servers).await?;
    let r = measure(&promoter, &servers, &args).await?;
    let f = &r.load;
    println!(
        "\nWatch fan-out: {} subscribers, {} events/s for {} s ({} published), real slipway-promoter",
        args.subscribers, args.rate, args.seconds, r.published
    );
    println!("{:<40} {:>14}", "measure", "value");
    println!("{:<40} {:>14}", "deliveries expected", f.expected);
    println!("{:<40} {:>14}", "deliveries received", f.delivered);
    println!("{:<40} {:>14}", "lost", f.lost);
    println!("{:<40} {:>14}", "streams ended with an error", f.stream_errors);
    println!("{:<40} {:>11.2} ms", "delivery latency p50", f.p50_ms);
    println!("{:<40} {:>11.2} ms", "delivery latency p99", f.p99_ms);
    println!("{:<40} {:>11.2} ms", "delivery latency max", f.max_ms);
    println!("{:<40} {:>11.1} MB", "promoter peak RSS under this load", r.promoter_rss as f64 / 1e6);
    println!("\ntarget: p99 <= 100 ms for 1000 subscribers at 1000 events/s: {:.2} ms", f.p99_ms);
    Ok(())
}
