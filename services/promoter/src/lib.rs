//! The promoter service: keeps the pipeline state, writes image tags into the GitOps repository, gates stages on approvals and health, rolls back, and serves the admin API.
//!
//! [`run`] boots the shared parts (admin port, NATS and the `SLIPWAY` stream, PostgreSQL
//! schema `promoter` with its migrations) and runs until the shutdown token fires.

pub mod config;
pub mod gitops;

pub use config::Config;

use slipway_runtime::admin::AdminServer;
use slipway_runtime::service::{self, Boot};
use sqlx::migrate::Migrator;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// The promoter schema's migrations.
pub static MIGRATOR: Migrator = sqlx::migrate!("./migrations");

/// Runs the service until `shutdown` is cancelled. The admin listener is passed in so tests
/// can bind port 0.
pub async fn run(config: Config, admin_listener: TcpListener, shutdown: CancellationToken) -> anyhow::Result<()> {
    let boot = Boot {
        name: "promoter",
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
