//! `slipway-bench`: Slipway's benchmarks. Each starts the real servers it needs (from the
//! test kit), drives load from a separate process over loopback, and prints its figures.
//! Targets are printed next to the figures; nothing here asserts on time.
//!
//! ```text
//! cargo run --release -p slipway-bench -- ingest [--concurrency 32] [--generator wrk|builtin] [--seconds 5]
//! cargo run --release -p slipway-bench -- promotion [--apps 1000] [--singles 100]
//! cargo run --release -p slipway-bench -- catalog [--apps 10000] [--pushes 5]
//! cargo run --release -p slipway-bench -- dashboard [--apps 10000] [--runs 5]
//! ```
//! The same binary plays the other roles (`ingest-server`, `load`, `watch-load`) as child
//! processes, so the load generator never shares a process (or an allocator, or a runtime)
//! with the server.
//!
//! ## Load suite (issue 8)
//! `watch` and `suite` run the real service binaries, so build them first (same profile):
//! ```text
//! cargo build --release --bins
//! cargo run --release -p slipway-bench -- watch [--subscribers 1000] [--rate 1000] [--seconds 10]
//! cargo run --release -p slipway-bench -- suite [--subscribers 1000] [--rate 1000] [--seconds 5]
//!     [--requests 10000] [--apps 1000] [--singles 20]
//! ```
//! `watch`: N gRPC Watch streams on a few HTTP/2 connections from a child process, events
//! published into JetStream at the rate with their publish time; delivered, lost, p50/p99.
//! `suite`: each service's spawn → `/readyz` time and idle VmRSS, ingest's and the
//! promoter's peak VmRSS under webhook and Watch load, the Watch, ingest and promotion
//! benchmarks; one table of figure, value, target, met. (MB = 10^6 bytes.)

mod catalog;
mod dashboard;
mod ingest;
mod load;
mod promotion;
mod services;
mod suite;
mod watch;
mod wrk;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(name = "slipway-bench", about = "Slipway benchmarks")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// The dashboard at 10,000 apps × 3 stages: first paint next to the unpaged matrix.
    Dashboard(dashboard::Args),
    /// The app catalog at 10,000 apps: compile time, publish, webhook → every watcher live.
    Catalog(catalog::Args),
    /// Signed 8 KB push webhooks into ingest (JetStream file storage), next to the raw
    /// JetStream publish rate and the adnanh `webhook` server verifying the same signatures.
    Ingest(ingest::Args),
    /// build.succeeded → GitOps commit latency, a burst of completions, and the CI-script way.
    Promotion(promotion::Args),
    /// gRPC Watch fan-out: many subscribers, events at a rate, delivery latency.
    Watch(watch::Args),
    /// Everything above plus services' start-up time and memory, as one table.
    Suite(suite::Args),
    /// (child role) Opens Watch streams and times the events they receive.
    WatchLoad(watch::LoadArgs),
    /// (child role) Runs the promoter against the given servers.
    PromoterServer(promotion::ServerArgs),
    /// (child role) Runs ingest against the given servers.
    IngestServer(ingest::ServerArgs),
    /// (child role) Sends signed webhooks and prints JSON figures.
    Load(load::Args),
    /// (child role) An HTTP server that only reads each webhook and answers 202.
    HttpFloor(ingest::FloorArgs),
}

/// The same allocator as the service binaries, so the server roles measure what ships.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(async {
        match cli.command {
            Command::Catalog(args) => catalog::run(args).await,
            Command::Dashboard(args) => dashboard::run(args).await,
            Command::Ingest(args) => ingest::run(args).await,
            Command::IngestServer(args) => ingest::serve(args).await,
            Command::Load(args) => load::run(args).await,
            Command::HttpFloor(args) => ingest::floor(args).await,
            Command::Promotion(args) => promotion::run(args).await,
            Command::PromoterServer(args) => promotion::serve(args).await,
            Command::Watch(args) => watch::run(args).await,
            Command::Suite(args) => suite::run(args).await,
            Command::WatchLoad(args) => watch::load(args).await,
        }
    })
}

/// What a benchmark's figures ran on, for its heading.
fn describe_nats(cluster: bool) -> &'static str {
    if cluster { "3-node NATS cluster, stream R3" } else { "1 nats-server" }
}
