//! The builder service: takes `slipway.build.requested.*` from a work queue shared by its
//! replicas, builds and pushes images, and reports `slipway.build.*`.
//!
//! A request flows: durable consumer `builder` → [`worker::Worker::handle`] → [`plan`] (is it
//! valid, which tags) → [`store`] claim (idempotent by build id, supersede by branch) →
//! [`source`] checkout of the exact commit → [`backend`] build and push → [`registry`] digest
//! read-back → `build.succeeded`/`build.failed` through the outbox, log in the Object Store
//! ([`logs`]). [`run`] boots the shared parts (admin port, NATS and the `SLIPWAY` stream,
//! PostgreSQL schema `builder`), relays the outbox and consumes until the shutdown token fires.

pub mod apps;
pub mod backend;
pub mod config;
pub mod logs;
pub mod plan;
pub mod registry;
pub mod source;
pub mod store;
pub mod worker;

pub use config::Config;

use anyhow::Context as _;
use slipway_mesh::EventKind;
use slipway_runtime::admin::AdminServer;
use slipway_runtime::consumer::{self, ConsumerSpec, LoopOptions};
use slipway_runtime::db::outbox::Relay;
use slipway_runtime::service::{self, Boot};
use sqlx::migrate::Migrator;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// The builder schema's migrations.
pub static MIGRATOR: Migrator = sqlx::migrate!("./migrations");

/// The durable consumer all builder replicas share.
pub const DURABLE: &str = "builder";

/// How long build logs are kept in the bucket.
const LOG_MAX_AGE: Duration = Duration::from_secs(14 * 24 * 60 * 60);

/// Runs the service until `shutdown` is cancelled. The admin listener is passed in so tests
/// can bind port 0. Builds in hand finish before it returns.
pub async fn run(config: Config, admin_listener: TcpListener, shutdown: CancellationToken) -> anyhow::Result<()> {
    let backend = backend::from_config(&config.build).map_err(anyhow::Error::msg)?;
    std::fs::create_dir_all(&config.build.work_dir)
        .with_context(|| format!("build.work_dir {}", config.build.work_dir.display()))?;
    let boot = Boot {
        name: "builder",
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
    let js = async_nats::jetstream::new(ctx.client.clone());
    let logs = match logs::LogStore::open(&js, &config.logs.bucket, LOG_MAX_AGE).await {
        Ok(store) => Some(store),
        Err(e) => {
            tracing::warn!(error = %e, "build logs will not be stored");
            None
        }
    };
    // The relay outlives the consumer, so the events of the last builds still go out.
    let relay_stop = CancellationToken::new();
    let relay = Relay::new(ctx.pool.clone(), ctx.publisher.clone());
    let relay_task = tokio::spawn(relay.clone().run(relay_stop.clone()));

    let spec = ConsumerSpec::new(DURABLE, &[EventKind::BuildRequested.filter()], &config.nats);
    let durable =
        match service::retry("ensure consumer", &shutdown, || consumer::ensure_consumer(&ctx.stream, &spec)).await {
            Ok(c) => c,
            Err(slipway_runtime::Error::ShuttingDown) => return stop(ctx, admin, relay_stop, relay_task).await,
            Err(e) => return Err(e.into()),
        };
    let apps = if config.catalog.enabled {
        match slipway_runtime::catalog::follow(&ctx.client, config.nats.stream_replicas, &shutdown).await {
            Ok((store, live)) => apps::Apps::Catalog(live, Box::new(store)),
            Err(slipway_runtime::Error::ShuttingDown) => return stop(ctx, admin, relay_stop, relay_task).await,
            Err(e) => return Err(e.into()),
        }
    } else {
        apps::Apps::Fixed(config.apps.clone())
    };
    let replica = replica_name();
    let stale_after = (spec.ack_wait / 2).max(worker::HEARTBEAT * 5);
    let worker = Arc::new(worker::Worker {
        apps,
        store: store::Store::new(ctx.pool.clone(), ctx.publisher.source(), &replica, backend.name(), stale_after),
        sources: source::SourceCache::new(&config.build.work_dir),
        registry: registry::RegistryClient::new(config.build.registry_tls),
        backend,
        logs,
        stream: ctx.stream.clone(),
        config: Arc::new(config.clone()),
    });
    tracing::info!(
        replica,
        backend = worker.backend.name(),
        concurrency = config.build.concurrency,
        "consuming build requests"
    );
    let opts = LoopOptions::for_spec(&spec, config.build.concurrency);
    consumer::run(durable, opts, shutdown.child_token(), move |delivery| worker.clone().handle(delivery)).await?;
    if let Err(e) = relay.relay_pending().await {
        tracing::warn!(error = %e, "final outbox relay failed; the next replica to start relays it");
    }
    stop(ctx, admin, relay_stop, relay_task).await
}

async fn stop(
    ctx: service::ServiceContext,
    admin: tokio::task::JoinHandle<slipway_runtime::Result<()>>,
    relay_stop: CancellationToken,
    relay_task: tokio::task::JoinHandle<slipway_runtime::Result<()>>,
) -> anyhow::Result<()> {
    tracing::info!(service = ctx.name, "shutting down");
    relay_stop.cancel();
    relay_task.await??;
    admin.await??;
    ctx.client.drain().await?;
    Ok(())
}

/// `<host>-<pid>`: which process holds a build.
fn replica_name() -> String {
    let host = std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/proc/sys/kernel/hostname").ok())
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "local".to_owned());
    format!("{host}-{}", std::process::id())
}
