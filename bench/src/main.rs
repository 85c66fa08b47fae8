//! `slipway-bench`: Slipway's benchmarks. Each starts the real servers it needs (from the
//! test kit), drives load from a separate process over loopback, and prints its figures.
//! Targets are printed next to the figures; nothing here asserts on time.
//!
//! ```text
//! cargo run --release -p slipway-bench -- ingest [--requests 20000] [--concurrency 32]
//! cargo run --release -p slipway-bench -- promotion [--apps 1000] [--singles 100]
//! ```
//! The same binary plays the other roles (`ingest-server`, `load`) as child processes, so the
//! load generator never shares a process (or an allocator, or a runtime) with the server.

mod ingest;
mod load;
mod promotion;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(name = "slipway-bench", about = "Slipway benchmarks")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Signed 8 KB push webhooks into ingest (JetStream file storage), next to the raw
    /// JetStream publish rate and the adnanh `webhook` server verifying the same signatures.
    Ingest(ingest::Args),
    /// build.succeeded → GitOps commit latency, a burst of completions, and the CI-script way.
    Promotion(promotion::Args),
    /// (child role) Runs the promoter against the given servers.
    PromoterServer(promotion::ServerArgs),
    /// (child role) Runs ingest against the given servers.
    IngestServer(ingest::ServerArgs),
    /// (child role) Sends signed webhooks and prints JSON figures.
    Load(load::Args),
}

/// The same allocator as the service binaries, so the server roles measure what ships.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(async {
        match cli.command {
            Command::Ingest(args) => ingest::run(args).await,
            Command::IngestServer(args) => ingest::serve(args).await,
            Command::Load(args) => load::run(args).await,
            Command::Promotion(args) => promotion::run(args).await,
            Command::PromoterServer(args) => promotion::serve(args).await,
        }
    })
}
