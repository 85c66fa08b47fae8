//! The notifier service: delivers every event to the people and systems that asked for it,
//! once per event and destination.
//!
//! An event flows: durable consumer on every subject but `slipway.notification.>` →
//! [`routing`] (pure rules) → per destination: [`store::claim`] → [`render`] (default text or a
//! route's template) → a [`providers`] request → [`send`] with retries and a rate limit →
//! `sent` + `notification.sent`, or `dead` + a dead letter + `notification.failed` (outbox).
//! Slack button clicks come back through [`interactions`] as `chatops.command` events; dead
//! letters are listed and replayed through [`dlq`] on the admin port.

pub mod config;
pub mod destination;
pub mod dispatch;
pub mod dlq;
pub mod interactions;
pub mod providers;
pub mod render;
pub mod routing;
pub mod send;
pub mod store;

pub use config::Config;

use anyhow::Context as _;
use slipway_runtime::admin::AdminServer;
use slipway_runtime::consumer::{self, ConsumerSpec, LoopOptions};
use slipway_runtime::db::outbox::Relay;
use slipway_runtime::service::{self, Boot};
use sqlx::migrate::Migrator;
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// The notifier schema's migrations.
pub static MIGRATOR: Migrator = sqlx::migrate!("./migrations");

/// Binds the callback listener from the config and runs until `shutdown`.
pub async fn run(config: Config, admin_listener: TcpListener, shutdown: CancellationToken) -> anyhow::Result<()> {
    let http =
        TcpListener::bind(config.http.listen).await.with_context(|| format!("http.listen {}", config.http.listen))?;
    serve(config, admin_listener, http, shutdown).await
}

/// Runs with both listeners given (tests bind port 0).
pub async fn serve(
    config: Config,
    admin_listener: TcpListener,
    http_listener: TcpListener,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let destinations = config.resolve_destinations()?;
    let router = config.router()?;
    let signing_secret = config.slack.signing_secret()?;
    let slot = dlq::Slot::default();
    let boot = Boot {
        name: "notifier",
        nats: &config.nats,
        database: &config.database,
        migrator: &MIGRATOR,
        admin: AdminServer::new()
            .with_metrics(slipway_runtime::admin::metrics_recorder())
            .with_routes(dlq::router(slot.clone())),
        nats_required: true,
    };
    let (ctx, admin) = match service::start(boot, admin_listener, &shutdown).await {
        Ok(started) => started,
        Err(slipway_runtime::Error::ShuttingDown) => return Ok(()),
        Err(e) => return Err(e.into()),
    };
    // The relay outlives the consumer, so the last deliveries' events still go out.
    let relay_stop = CancellationToken::new();
    let relay = Relay::new(ctx.pool.clone(), ctx.publisher.clone());
    let relay_task = tokio::spawn(relay.clone().run(relay_stop.clone()));

    let others: Vec<&slipway_runtime::config::Secret> = signing_secret.iter().collect();
    let redactor = destination::Redactor::new(&destinations, &others);
    let spec = ConsumerSpec::new(dispatch::DURABLE, &dispatch::filter_subjects(), &config.nats);
    let mut dispatcher = dispatch::Dispatcher::new(
        ctx.pool.clone(),
        ctx.publisher.source().to_owned(),
        router,
        dispatch::Settings { routes: &config.routes, retry: config.retry.clone(), lease: spec.ack_wait, redactor },
        destinations,
        shutdown.child_token(),
    );
    if config.catalog.enabled {
        match slipway_runtime::catalog::follow(&ctx.client, config.nats.stream_replicas, &shutdown).await {
            Ok((_, live)) => dispatcher = dispatcher.with_catalog(live),
            Err(slipway_runtime::Error::ShuttingDown) => return Ok(()),
            Err(e) => return Err(e.into()),
        }
    }
    let dispatcher = Arc::new(dispatcher);
    let _ = slot.set(dispatcher.clone());

    let interactions = Arc::new(interactions::Interactions {
        signing_secret,
        actors: config.slack.actors.clone(),
        publisher: ctx.publisher.clone(),
    });
    tracing::info!(listen = %http_listener.local_addr()?, "accepting slack callbacks");
    let http = tokio::spawn(
        axum::serve(http_listener, interactions::router(interactions))
            .with_graceful_shutdown(shutdown.clone().cancelled_owned())
            .into_future(),
    );

    let consumed =
        match service::retry("ensure consumer", &shutdown, || consumer::ensure_consumer(&ctx.stream, &spec)).await {
            Ok(durable) => {
                let opts = LoopOptions::for_spec(&spec, config.concurrency);
                consumer::run(durable, opts, shutdown.child_token(), move |d| dispatcher.clone().handle(d)).await
            }
            Err(slipway_runtime::Error::ShuttingDown) => Ok(()),
            Err(e) => Err(e),
        };
    tracing::info!(service = ctx.name, "shutting down");
    if let Err(e) = relay.relay_pending().await {
        tracing::warn!(error = %e, "final outbox relay failed; the next replica to start relays it");
    }
    relay_stop.cancel();
    relay_task.await??;
    http.await??;
    admin.await??;
    ctx.client.drain().await?;
    consumed?;
    Ok(())
}
