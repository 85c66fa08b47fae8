//! The notifier service: delivers every event to the people and systems that asked for it, once per event and destination.
//!
//! [`run`] boots the shared parts (admin port, NATS and the `SLIPWAY` stream, PostgreSQL
//! schema `notifier` with its migrations) and runs until the shutdown token fires.

pub mod config;

pub use config::Config;

use slipway_runtime::admin::AdminServer;
use slipway_runtime::service::{self, Boot};
use sqlx::migrate::Migrator;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// The notifier schema's migrations.
pub static MIGRATOR: Migrator = sqlx::migrate!("./migrations");

/// Runs the service until `shutdown` is cancelled. The admin listener is passed in so tests
/// can bind port 0.
pub async fn run(config: Config, admin_listener: TcpListener, shutdown: CancellationToken) -> anyhow::Result<()> {
    let boot = Boot {
        name: "notifier",
        nats: &config.nats,
        database: &config.database,
        migrator: &MIGRATOR,
        admin: AdminServer::new().with_metrics(slipway_runtime::admin::metrics_recorder()),
        nats_required: true,
    };
    let (ctx, admin) = match service::start(boot, admin_listener, &shutdown).await {
        Ok(started) => started,
        Err(slipway_runtime::Error::ShuttingDown) => return Ok(()),
        Err(e) => return Err(e.into()),
    };
    shutdown.cancelled().await;
    tracing::info!(service = ctx.name, "shutting down");
    admin.await??;
    ctx.client.drain().await?;
    Ok(())
}
