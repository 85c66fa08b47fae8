//! The ingest service: receives GitHub webhooks and chatops commands and turns them into
//! durable events (`slipway.source.*`, `slipway.chatops.*`, `slipway.build.requested.*`).
//!
//! A delivery flows: [`signature`] check → [`github::normalize`] → dedupe by delivery id →
//! [`plan`] (source event, build requests for the [`apps`] that changed, [`chatops`]
//! commands) → JetStream (or the [`spool`] while NATS is down) → 2xx. [`run`] boots the
//! shared parts (admin port, NATS, PostgreSQL schema `ingest`), serves [`http`], and replays
//! the spool in the background until shutdown ([`replay`]; entries that can never be published
//! become dead letters, served by [`spool_admin`]). Every event is bounded in size ([`cut`]);
//! what an event leaves out stays whole in the [`originals`] bucket.

pub mod apps;
pub mod catalog;
pub mod chatbot;
pub mod chatops;
pub mod config;
pub mod cut;
pub mod deliveries;
pub mod github;
pub mod gittree;
pub mod http;
pub mod known;
pub mod originals;
pub mod plan;
pub mod reconcile;
pub mod replay;
pub mod server;
pub mod signature;
pub mod spool;
pub mod spool_admin;

pub use config::Config;

use anyhow::Context as _;
use slipway_runtime::admin::AdminServer;
use slipway_runtime::service::{self, Boot};
use sqlx::migrate::Migrator;
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// The ingest schema's migrations.
pub static MIGRATOR: Migrator = sqlx::migrate!("./migrations");

/// Binds the webhook listener from the config and runs until `shutdown`.
pub async fn run(config: Config, admin_listener: TcpListener, shutdown: CancellationToken) -> anyhow::Result<()> {
    let http =
        TcpListener::bind(config.http.listen).await.with_context(|| format!("http.listen {}", config.http.listen))?;
    serve(config, admin_listener, http, shutdown).await
}

/// Runs with both listeners given (tests bind port 0). Webhooks are accepted only once
/// NATS or the spool can take them and the database is migrated.
pub async fn serve(
    config: Config,
    admin_listener: TcpListener,
    http_listener: TcpListener,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let spool = Arc::new(spool::Spool::open(&config.spool.dir).context("spool.dir")?);
    let matcher = apps::AppMatcher::new(&config.apps).map_err(anyhow::Error::msg).context("apps")?;
    let secrets = config.github.secrets()?;
    let boot = Boot {
        name: "ingest",
        nats: &config.nats,
        database: &config.database,
        migrator: &MIGRATOR,
        admin: AdminServer::new()
            .with_metrics(slipway_runtime::admin::metrics_recorder())
            .with_check(Box::new(spool_admin::SpoolCheck(spool.clone())))
            .with_routes(spool_admin::routes(spool.clone())),
        nats_required: false,
    };
    let (ctx, admin) = match service::start(boot, admin_listener, &shutdown).await {
        Ok(started) => started,
        Err(slipway_runtime::Error::ShuttingDown) => return Ok(()),
        Err(e) => return Err(e.into()),
    };
    let retention = std::time::Duration::from_secs(config.github.delivery_retention_hours * 3600);
    let js = async_nats::jetstream::new(ctx.client.clone());
    let replicas = config.nats.stream_replicas;
    let originals = match service::retry("originals bucket", &shutdown, || async {
        originals::Originals::open(&js, retention, replicas).await.map_err(slipway_runtime::Error::Nats)
    })
    .await
    {
        Ok(originals) => originals,
        Err(slipway_runtime::Error::ShuttingDown) => return Ok(()),
        Err(e) => return Err(e.into()),
    };
    let (apps, reloader) = if config.catalog.enabled() {
        let store = match slipway_runtime::catalog::open(&ctx.client, replicas, &shutdown).await {
            Ok(store) => store,
            Err(slipway_runtime::Error::ShuttingDown) => return Ok(()),
            Err(e) => return Err(e.into()),
        };
        let reloader = Arc::new(catalog::Reloader::new(config.catalog.clone(), store.clone(), ctx.publisher.clone()));
        // The catalog in force before the first webhook: compared with its branch (or file) now.
        if let Err(e) = reloader.reload(None, None).await {
            tracing::warn!(error = %e, "catalog not read at start; the revision in force stays");
        }
        tokio::spawn(reloader.clone().keep_current(shutdown.child_token()));
        let (live, _watch) = slipway_runtime::catalog::Live::watch(store, shutdown.child_token()).await?;
        (catalog::Apps::Live { live, cache: std::sync::Mutex::default() }, Some(reloader))
    } else {
        (catalog::Apps::Fixed(Arc::new(matcher)), None)
    };
    let replay = tokio::spawn(replay::replay(
        spool.clone(),
        ctx.publisher.clone(),
        originals.clone(),
        ctx.client.clone(),
        shutdown.child_token(),
    ));
    let (recorder, recording) = deliveries::Recorder::spawn(ctx.pool.clone(), shutdown.child_token());
    let known = Arc::new(known::Known::new());
    known::load(&ctx.pool, &known).await;
    tokio::spawn(known::keep_loaded(ctx.pool.clone(), known.clone(), shutdown.child_token()));
    let state = Arc::new(http::Webhooks {
        secrets,
        apps,
        reloader,
        pool: ctx.pool.clone(),
        recorder,
        known,
        publisher: ctx.publisher.clone(),
        client: ctx.client.clone(),
        spool,
        originals,
        shape: plan::Shape { caps: config.events, keep: config.github.keep_originals },
        chatops_tokens: config.chatops.tokens.iter().map(|t| chatbot::token_digest(t.expose())).collect(),
    });
    if let Some(token) = config.github.reconcile.validated()? {
        let reconciler = reconcile::Reconciler::new(config.github.reconcile.clone(), token, ctx.pool.clone());
        tokio::spawn(reconciler.run(shutdown.child_token()));
    }
    tokio::spawn(deliveries::prune_periodically(ctx.pool.clone(), retention, shutdown.child_token()));
    let limits = http::BodyLimits {
        max_bytes: config.github.max_body_bytes,
        timeout: std::time::Duration::from_millis(config.http.body_timeout_ms),
    };
    let app = http::router(state, limits);
    tracing::info!(listen = %http_listener.local_addr()?, "accepting webhooks");
    // Graceful: stop accepting, let in-flight deliveries finish (they end durable or failed).
    let header_timeout = std::time::Duration::from_millis(config.http.header_timeout_ms);
    server::serve(http_listener, app, header_timeout, shutdown.clone()).await;
    tracing::info!("shutting down");
    replay.await?;
    recording.await?;
    admin.await??;
    ctx.client.drain().await?;
    Ok(())
}
