//! The boot sequence every service shares: serve the admin port first (so `/healthz`
//! answers and `/readyz` says why it is not ready yet), then connect NATS and ensure the
//! stream, then connect PostgreSQL and migrate. Each step is retried until it works or the
//! service is told to shut down, so a service started before its dependencies just waits.

use crate::admin::{AdminServer, ReadinessCheck, db_check, nats_check};
use crate::config::{DatabaseConfig, NatsConfig};
use crate::jetstream::{self, Publisher};
use crate::{Error, Result, db};
use async_nats::jetstream::stream::Stream;
use futures::FutureExt as _;
use futures::future::BoxFuture;
use sqlx::PgPool;
use sqlx::migrate::Migrator;
use std::future::Future;
use std::sync::{Arc, OnceLock};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// What a booted service holds on to.
#[derive(Clone)]
pub struct ServiceContext {
    /// Service name (`ingest`, ...).
    pub name: &'static str,
    /// The NATS client.
    pub client: async_nats::Client,
    /// The `SLIPWAY` stream.
    pub stream: Stream,
    /// Pool bound to the service's schema, migrated.
    pub pool: PgPool,
    /// Publisher with `ce-source` `/slipway/<name>/<host>`.
    pub publisher: Publisher,
}

/// What [`start`] needs to know.
pub struct Boot<'a> {
    /// Service name.
    pub name: &'static str,
    /// `nats` config section.
    pub nats: &'a NatsConfig,
    /// `database` config section.
    pub database: &'a DatabaseConfig,
    /// The service's own migrations.
    pub migrator: &'a Migrator,
    /// Admin server with any extra routes; NATS and database checks are added here.
    pub admin: AdminServer,
    /// False when the service keeps working through a NATS outage (`/readyz` then says
    /// `degraded` instead of 503).
    pub nats_required: bool,
}

/// A readiness check that reports "starting" until the real one is known.
struct Deferred {
    name: &'static str,
    required: bool,
    inner: Arc<OnceLock<Box<dyn ReadinessCheck>>>,
}

impl ReadinessCheck for Deferred {
    fn name(&self) -> &'static str {
        self.name
    }

    fn check(&self) -> BoxFuture<'_, std::result::Result<(), String>> {
        match self.inner.get() {
            Some(check) => check.check(),
            None => async { Err("starting".to_owned()) }.boxed(),
        }
    }

    fn required(&self) -> bool {
        // Until the first connection is made, nothing can be served either way.
        self.required || self.inner.get().is_none()
    }
}

/// Boots the shared parts; returns them and the admin server's task.
pub async fn start(
    boot: Boot<'_>,
    admin_listener: TcpListener,
    shutdown: &CancellationToken,
) -> Result<(ServiceContext, JoinHandle<Result<()>>)> {
    let nats_ready = Arc::new(OnceLock::new());
    let db_ready = Arc::new(OnceLock::new());
    let admin = boot
        .admin
        .with_check(Box::new(Deferred { name: "nats", required: boot.nats_required, inner: nats_ready.clone() }))
        .with_check(Box::new(Deferred { name: "database", required: true, inner: db_ready.clone() }));
    let admin_task = tokio::spawn(admin.serve(admin_listener, shutdown.child_token()));

    let client = jetstream::connect(boot.nats, &format!("slipway-{}", boot.name)).await?;
    let _ = nats_ready.set(nats_check(client.clone()));
    let js = async_nats::jetstream::new(client.clone());
    let stream = retry("ensure stream", shutdown, || jetstream::ensure_stream(&js, boot.nats)).await?;
    check_max_payload(&client)?;
    let pool = retry("connect database", shutdown, || db::connect(boot.database)).await?;
    retry("migrate", shutdown, || db::migrate(&pool, boot.migrator)).await?;
    let _ = db_ready.set(db_check(pool.clone()));

    let host = hostname();
    let publisher = Publisher::new(client.clone(), format!("/slipway/{}/{host}", boot.name));
    tracing::info!(service = boot.name, "ready");
    Ok((ServiceContext { name: boot.name, client, stream, pool, publisher }, admin_task))
}

/// Refuses to run against a server whose `max_payload` cannot carry the largest event
/// Slipway publishes with its headers: every such event would be stored (an outbox row, a
/// spool entry) and never go out. Known once the stream was ensured (the client is connected).
fn check_max_payload(client: &async_nats::Client) -> Result<()> {
    use slipway_mesh::bounds::{MAX_EVENT_BYTES, MAX_HEADER_BYTES};
    let max = client.server_info().max_payload;
    let needed = MAX_EVENT_BYTES + MAX_HEADER_BYTES;
    if max < needed {
        return Err(Error::Config(format!(
            "nats: the server's max_payload is {max} bytes, below the {needed} bytes a Slipway event may take \
             ({MAX_EVENT_BYTES} bytes plus headers); run nats-server with max_payload of at least 1MB"
        )));
    }
    Ok(())
}

/// Retries `step` with capped backoff until it succeeds or `shutdown` fires.
pub async fn retry<T, F, Fut>(what: &str, shutdown: &CancellationToken, mut step: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T>>,
{
    let mut delay = Duration::from_millis(100);
    loop {
        match step().await {
            Ok(v) => return Ok(v),
            Err(e) => tracing::warn!(step = what, error = %e, retry_in_ms = delay.as_millis() as u64, "not yet"),
        }
        tokio::select! {
            () = shutdown.cancelled() => return Err(Error::ShuttingDown),
            () = tokio::time::sleep(delay) => {}
        }
        delay = (delay * 2).min(Duration::from_secs(5));
    }
}

fn hostname() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/proc/sys/kernel/hostname").ok())
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "local".to_owned())
}

/// The config file named on the command line (`--config <file>` or `--config=<file>`);
/// `None` leaves it to `SLIPWAY_CONFIG`. Any other argument is an error.
pub fn config_file_from_args(args: impl IntoIterator<Item = String>) -> Result<Option<std::path::PathBuf>> {
    let mut args = args.into_iter().skip(1);
    let mut file = None;
    while let Some(arg) = args.next() {
        if let Some(value) = arg.strip_prefix("--config=") {
            file = Some(value.into());
        } else if arg == "--config" {
            let value = args.next().ok_or_else(|| Error::Config("--config needs a file".into()))?;
            file = Some(value.into());
        } else {
            return Err(Error::Config(format!("unknown argument {arg:?} (usage: --config <file>)")));
        }
    }
    Ok(file)
}

/// What [`main`] needs from a service's configuration.
pub trait ServiceConfig: serde::de::DeserializeOwned + serde::Serialize + Default + crate::config::Validate {
    /// The `telemetry` section.
    fn telemetry(&self) -> &crate::config::TelemetryConfig;
    /// The `admin` section.
    fn admin(&self) -> &crate::config::AdminConfig;
}

/// The whole `main` of a service binary: load the config (`--config <file>` or
/// `SLIPWAY_CONFIG`, then `SLIPWAY_*` env), set up telemetry, bind the admin port, call `run`
/// with a token that SIGTERM/SIGINT cancel, and flush telemetry last. Errors are printed as one
/// plain line (they are an operator's to fix: a bad key, a taken port), exit code 1.
pub async fn main<C, F, Fut>(binary: &'static str, run: F) -> std::process::ExitCode
where
    C: ServiceConfig,
    F: FnOnce(C, TcpListener, CancellationToken) -> Fut,
    Fut: Future<Output = anyhow::Result<()>>,
{
    let started = async {
        let file = config_file_from_args(std::env::args())?;
        let config: C = crate::config::load(file.as_deref())?;
        let telemetry = crate::telemetry::init(config.telemetry(), binary)?;
        let shutdown = crate::shutdown::root_token();
        let admin = TcpListener::bind(config.admin().listen).await?;
        let result = run(config, admin, shutdown).await;
        let flushed = telemetry.shutdown();
        result.and(flushed.map_err(Into::into))
    };
    match started.await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{binary}: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(a: &[&str]) -> Vec<String> {
        std::iter::once("bin").chain(a.iter().copied()).map(String::from).collect()
    }

    #[test]
    fn config_flag() {
        assert_eq!(config_file_from_args(args(&[])).expect("none"), None);
        assert_eq!(config_file_from_args(args(&["--config", "a.toml"])).expect("a"), Some("a.toml".into()));
        assert_eq!(config_file_from_args(args(&["--config=b.toml"])).expect("b"), Some("b.toml".into()));
        assert!(config_file_from_args(args(&["--config"])).is_err());
        assert!(config_file_from_args(args(&["--verbose"])).is_err());
    }
}
