//! Readiness checks behind `/readyz`: one per dependency a service cannot work without.

use std::time::Duration;

use futures::FutureExt as _;
use futures::future::BoxFuture;

/// Why a dependency is not usable right now: a short message shown in `/readyz`; it must not
/// contain secrets (no connection strings).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct NotReady(pub String);

/// What a [`ReadinessCheck`] resolves to.
pub type Readiness = std::result::Result<(), NotReady>;

/// One dependency's readiness.
pub trait ReadinessCheck: Send + Sync + 'static {
    /// Key of the check in the `/readyz` body (`nats`, `database`).
    fn name(&self) -> &'static str;
    /// Resolves to `Ok(())` when the dependency is usable right now.
    fn check(&self) -> BoxFuture<'_, Readiness>;

    /// Whether the service is unready without this dependency. A service that can work
    /// around an outage (ingest spools to disk while NATS is down) marks the check optional:
    /// its failure makes `/readyz` answer 200 with status `degraded` instead of 503.
    fn required(&self) -> bool {
        true
    }
}

/// Time a database round trip may take before the service reports not ready.
const DB_TIMEOUT: Duration = Duration::from_secs(2);

struct NatsCheck(async_nats::Client);

impl ReadinessCheck for NatsCheck {
    fn name(&self) -> &'static str {
        "nats"
    }

    fn check(&self) -> BoxFuture<'_, Readiness> {
        // The client tracks its connection state itself; no round trip is needed, and none
        // would help: while reconnecting, a request would just wait.
        let state = self.0.connection_state();
        async move {
            match state {
                async_nats::connection::State::Connected => Ok(()),
                other => Err(NotReady(format!("connection {other:?}").to_lowercase())),
            }
        }
        .boxed()
    }
}

/// Ready while the NATS client is connected.
pub fn nats_check(client: async_nats::Client) -> Box<dyn ReadinessCheck> {
    Box::new(NatsCheck(client))
}

struct DbCheck(sqlx::PgPool);

impl ReadinessCheck for DbCheck {
    fn name(&self) -> &'static str {
        "database"
    }

    fn check(&self) -> BoxFuture<'_, Readiness> {
        async move {
            let query = sqlx::query("SELECT 1").execute(&self.0);
            match tokio::time::timeout(DB_TIMEOUT, query).await {
                Ok(Ok(_)) => Ok(()),
                // sqlx errors carry no credentials, only host and cause.
                Ok(Err(e)) => Err(NotReady(e.to_string())),
                Err(_) => Err(NotReady(format!("no answer within {}s", DB_TIMEOUT.as_secs()))),
            }
        }
        .boxed()
    }
}

/// Ready while PostgreSQL answers `SELECT 1` within 2 s.
pub fn db_check(pool: sqlx::PgPool) -> Box<dyn ReadinessCheck> {
    Box::new(DbCheck(pool))
}
