//! PostgreSQL: the pool (bound to the service's own schema), migrations, and the
//! transactional [`outbox`] and [`inbox`] that make event handling exactly-once in effect.

pub mod inbox;
pub mod outbox;

use crate::config::DatabaseConfig;
use crate::{Error, Result};
use sqlx::migrate::Migrator;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{ConnectOptions, PgPool};
use std::str::FromStr;
use std::time::Duration;

/// Opens a pool whose connections use `cfg.schema` (created when missing) as search path.
pub async fn connect(cfg: &DatabaseConfig) -> Result<PgPool> {
    let url = cfg.url()?;
    let options = PgConnectOptions::from_str(url.expose())
        .map_err(|e| Error::Config(format!("database.url: {}", redact(&e.to_string()))))?
        .log_statements(tracing::log::LevelFilter::Trace)
        .options([("search_path", cfg.schema.as_str())]);
    let pool = PgPoolOptions::new()
        .max_connections(cfg.max_connections)
        .acquire_timeout(Duration::from_millis(cfg.connect_timeout_ms))
        .connect_with(options)
        .await?;
    // The schema name is validated by the config (`[a-z_][a-z0-9_]*`), so quoting is enough.
    let ddl = format!("CREATE SCHEMA IF NOT EXISTS \"{}\"", cfg.schema);
    match sqlx::query(sqlx::AssertSqlSafe(ddl)).execute(&pool).await {
        Ok(_) => {}
        // Two processes creating the schema at once: IF NOT EXISTS is not race-free in
        // PostgreSQL, the loser sees a unique violation (23505) or duplicate_schema (42P06).
        Err(sqlx::Error::Database(e)) if matches!(e.code().as_deref(), Some("23505" | "42P06")) => {}
        Err(e) => return Err(e.into()),
    }
    Ok(pool)
}

/// Applies the runtime's tables (outbox, inbox; tracked in `_slipway_runtime_migrations`),
/// then the service's migrations (tracked in `_sqlx_migrations`), into the pool's schema.
/// Migrations take an advisory lock, so replicas starting together are safe.
pub async fn migrate(pool: &PgPool, service: &Migrator) -> Result<()> {
    let mut runtime = sqlx::migrate!("./migrations");
    runtime.dangerous_set_table_name("_slipway_runtime_migrations");
    runtime.run(pool).await?;
    service.run(pool).await?;
    Ok(())
}

/// Strips a password from a URL-ish error message.
fn redact(message: &str) -> String {
    match (message.find("://"), message.find('@')) {
        (Some(start), Some(at)) if at > start => format!("{}://<redacted>{}", &message[..start], &message[at..]),
        _ => message.to_owned(),
    }
}
