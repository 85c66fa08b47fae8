//! `slipway-ingest`: loads its config (`--config <file>` or `SLIPWAY_CONFIG`, then
//! `SLIPWAY_*` env), sets up telemetry, and runs until SIGTERM/SIGINT.

use slipway_ingest::{Config, run};
use slipway_runtime::{config, service, shutdown, telemetry};
use std::process::ExitCode;

#[tokio::main]
async fn main() -> ExitCode {
    match start().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // Plain message, no backtrace: these are operator errors (bad config, port taken).
            eprintln!("slipway-ingest: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn start() -> anyhow::Result<()> {
    let file = service::config_file_from_args(std::env::args())?;
    let config: Config = config::load(file.as_deref())?;
    let telemetry = telemetry::init(&config.telemetry, "slipway-ingest")?;
    let shutdown = shutdown::root_token();
    let admin = tokio::net::TcpListener::bind(config.admin.listen).await?;
    let result = run(config, admin, shutdown).await;
    // Flush telemetry last, whatever happened.
    let flushed = telemetry.shutdown();
    result.and(flushed.map_err(Into::into))
}
