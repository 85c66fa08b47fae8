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
pub mod error;
pub mod interactions;
pub mod providers;
pub mod render;
pub mod routing;
pub mod send;
pub mod store;

pub use config::Config;
pub use error::{Error, Result};

use anyhow::Context as _;
use slipway_runtime::admin::AdminServer;
use slipway_runtime::consumer::ConsumerSpec;
use slipway_runtime::service::{self, Boot, Running};
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
    // Borrowed by the boot; the body takes the config itself.
    let (nats, database) = (config.nats.clone(), config.database.clone());
    let boot = Boot {
        name: "notifier",
        nats: &nats,
        database: &database,
        migrator: &MIGRATOR,
        admin: AdminServer::new()
            .with_metrics(slipway_runtime::admin::metrics_recorder())
            .with_routes(dlq::router(slot.clone())),
        nats_required: true,
        outbox: true,
    };
    service::run(boot, admin_listener, &shutdown, async move |running: Running| {
        let ctx = &running.ctx;
        let others: Vec<&slipway_runtime::config::Secret> = signing_secret.iter().collect();
        let redactor = destination::Redactor::new(&destinations, &others);
        let spec = ConsumerSpec::new(dispatch::DURABLE, &dispatch::filter_subjects(), &config.nats);
        let mut dispatcher = dispatch::Dispatcher::new(
            ctx.pool.clone(),
            ctx.publisher.source().to_owned(),
            router,
            dispatch::Settings { routes: &config.routes, retry: config.retry.clone(), lease: spec.ack_wait, redactor },
            destinations,
            running.shutdown.child_token(),
        )?;
        if config.catalog.enabled {
            let (_, live) = slipway_runtime::catalog::follow(&running).await?;
            dispatcher = dispatcher.with_catalog(live);
        }
        let dispatcher = Arc::new(dispatcher);
        let _ = slot.set(dispatcher.clone());

        let interactions = Arc::new(interactions::Interactions {
            signing_secret,
            actors: config.slack.actors.clone(),
            publisher: ctx.publisher.clone(),
        });
        tracing::info!(listen = %http_listener.local_addr()?, "accepting slack callbacks");
        running.spawn(
            "slack callbacks",
            axum::serve(http_listener, interactions::router(interactions))
                .with_graceful_shutdown(running.shutdown.clone().cancelled_owned())
                .into_future(),
        );
        running.consume(&spec, config.concurrency, move |d| dispatcher.clone().handle(d)).await?;
        Ok(())
    })
    .await
}
