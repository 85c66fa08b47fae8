//! The `builds` table: one row per build id, so a redelivered request is recognised, a
//! crashed replica's build is taken over, and a newer commit on the same app and branch
//! supersedes an older build. Every state change that others must hear about enqueues its
//! event in the same transaction (the outbox), with ids derived from the build id
//! (`<build_id>.started`, `.succeeded`, `.failed`), so a retried step never emits twice.

use crate::plan::BuildPlan;
use slipway_mesh::EventId;
use slipway_mesh::v1::{BuildFailed, BuildStarted};
use slipway_runtime::db::{inbox, outbox};
use slipway_runtime::{Error, Result};
use sqlx::{PgConnection, PgPool, Row};
use std::time::Duration;

/// The consumer name in the inbox.
pub const CONSUMER: &str = "builder";
/// The inbox name of the re-scan consumer.
pub const SCAN_CONSUMER: &str = "builder-scans";

/// What [`Store::claim`] decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// Build it; `attempt` counts takeovers after crashes (1 the first time).
    Build {
        /// 1 on the first build of this id.
        attempt: i32,
    },
    /// Already finished (state given): nothing to do.
    Done(String),
    /// A live replica is building it; its own delivery will finish it.
    Busy,
    /// A newer request for the same app and branch exists; `build.failed` was enqueued.
    Superseded,
}

/// Build rows and their events.
#[derive(Clone)]
pub struct Store {
    pool: PgPool,
    source: String,
    replica: String,
    backend: &'static str,
    stale_after: Duration,
}

impl Store {
    /// `source` is the `ce-source` of emitted events; `replica` names this process; a build
    /// whose heartbeat is older than `stale_after` belongs to a dead replica; `backend` goes on
    /// `build.started`.
    pub fn new(pool: PgPool, source: &str, replica: &str, backend: &'static str, stale_after: Duration) -> Self {
        Self { pool, source: source.to_owned(), replica: replica.to_owned(), backend, stale_after }
    }

    /// Claims `plan` for this replica, superseding older builds of the same branch.
    /// `newer_queued` tells that a newer valid request for the branch is already in the stream.
    pub async fn claim(&self, plan: &BuildPlan, stream_seq: u64, newer_queued: bool) -> Result<Claim> {
        let seq = i64::try_from(stream_seq).unwrap_or(i64::MAX);
        let mut tx = self.pool.begin().await?;
        if plan.branch().is_some() {
            // Serialises claims of one app and branch, so two replicas cannot both miss each other.
            sqlx::query("SELECT pg_advisory_xact_lock(hashtext($1))")
                .bind(format!("{}\n{}", plan.app.name, plan.git_ref))
                .execute(&mut *tx)
                .await?;
        }
        let stale = self.stale_after.as_secs_f64();
        let row = sqlx::query(
            "SELECT state, heartbeat_at > now() - make_interval(secs => $2) AS alive, attempts \
             FROM builds WHERE build_id = $1 FOR UPDATE",
        )
        .bind(&plan.build_id)
        .bind(stale)
        .fetch_optional(&mut *tx)
        .await?;
        let attempt = match row {
            None => {
                sqlx::query(
                    "INSERT INTO builds (build_id, app, commit_sha, state, git_ref, stream_seq, attempts, replica) \
                     VALUES ($1, $2, $3, 'running', $4, $5, 1, $6)",
                )
                .bind(&plan.build_id)
                .bind(plan.app.name.as_str())
                .bind(plan.commit.as_str())
                .bind(&plan.git_ref)
                .bind(seq)
                .bind(&self.replica)
                .execute(&mut *tx)
                .await?;
                1
            }
            Some(row) => {
                let state: String = row.try_get("state")?;
                if state != "running" {
                    tx.commit().await?;
                    return Ok(Claim::Done(state));
                }
                if row.try_get::<bool, _>("alive")? {
                    tx.commit().await?;
                    return Ok(Claim::Busy);
                }
                let attempt: i32 = row.try_get::<i32, _>("attempts")? + 1;
                sqlx::query(
                    "UPDATE builds SET attempts = $2, replica = $3, heartbeat_at = now(), updated_at = now() \
                     WHERE build_id = $1",
                )
                .bind(&plan.build_id)
                .bind(attempt)
                .bind(&self.replica)
                .execute(&mut *tx)
                .await?;
                attempt
            }
        };
        if plan.branch().is_some() && (newer_queued || self.newer_in_table(&mut tx, plan, seq).await?) {
            let why = "a newer request for the same app and branch is queued";
            self.set_superseded(&mut tx, &plan.build_id, plan.app.name.as_str(), plan.commit.as_str(), why).await?;
            tx.commit().await?;
            return Ok(Claim::Superseded);
        }
        if plan.branch().is_some() {
            self.supersede_older(&mut tx, plan, seq).await?;
        }
        let started = BuildStarted {
            build_id: plan.build_id.clone(),
            app: plan.app.name.to_string(),
            commit_sha: plan.commit.to_string(),
            replica: self.replica.clone(),
            backend: self.backend.to_owned(),
        };
        outbox::enqueue_with_id(&mut tx, event_id(&plan.build_id, "started")?, &self.source, &started).await?;
        tx.commit().await?;
        Ok(Claim::Build { attempt })
    }

    async fn newer_in_table(&self, conn: &mut PgConnection, plan: &BuildPlan, seq: i64) -> Result<bool> {
        Ok(sqlx::query("SELECT 1 FROM builds WHERE app = $1 AND git_ref = $2 AND stream_seq > $3 LIMIT 1")
            .bind(plan.app.name.as_str())
            .bind(&plan.git_ref)
            .bind(seq)
            .fetch_optional(conn)
            .await?
            .is_some())
    }

    /// Older running builds of the branch: marked superseded (their replicas see it at the next
    /// heartbeat and cancel), with their `build.failed`.
    async fn supersede_older(&self, conn: &mut PgConnection, plan: &BuildPlan, seq: i64) -> Result<()> {
        let older = sqlx::query(
            "SELECT build_id, commit_sha FROM builds WHERE app = $1 AND git_ref = $2 AND stream_seq < $3 \
             AND state = 'running' FOR UPDATE",
        )
        .bind(plan.app.name.as_str())
        .bind(&plan.git_ref)
        .bind(seq)
        .fetch_all(&mut *conn)
        .await?;
        for row in older {
            let (id, sha): (String, String) = (row.try_get("build_id")?, row.try_get("commit_sha")?);
            let why = format!("superseded by build {} of commit {}", plan.build_id, plan.commit);
            self.set_superseded(conn, &id, plan.app.name.as_str(), &sha, &why).await?;
        }
        Ok(())
    }

    async fn set_superseded(&self, conn: &mut PgConnection, id: &str, app: &str, sha: &str, why: &str) -> Result<()> {
        sqlx::query(
            "UPDATE builds SET state = 'superseded', reason = 'superseded', updated_at = now() WHERE build_id = $1",
        )
        .bind(id)
        .execute(&mut *conn)
        .await?;
        let failed = BuildFailed {
            build_id: id.to_owned(),
            app: app.to_owned(),
            commit_sha: sha.to_owned(),
            reason: "superseded".to_owned(),
            message: why.to_owned(),
            log_tail: Vec::new(),
        };
        outbox::enqueue_with_id(conn, event_id(id, "failed")?, &self.source, &failed).await?;
        metrics::counter!("slipway_builds_total", "app" => app.to_owned(), "outcome" => "failed", "reason" => "superseded")
            .increment(1);
        Ok(())
    }

    /// Marks the build alive; returns its state (`None` if this replica no longer holds it).
    pub async fn heartbeat(&self, build_id: &str) -> Result<Option<String>> {
        let row =
            sqlx::query("UPDATE builds SET heartbeat_at = now() WHERE build_id = $1 AND replica = $2 RETURNING state")
                .bind(build_id)
                .bind(&self.replica)
                .fetch_optional(&self.pool)
                .await?;
        row.map(|r| r.try_get("state")).transpose().map_err(Error::from)
    }

    /// Gives a build back after a transient failure, so its redelivery may take it at once.
    pub async fn release(&self, build_id: &str) -> Result<()> {
        sqlx::query(
            "UPDATE builds SET heartbeat_at = 'epoch' WHERE build_id = $1 AND replica = $2 AND state = 'running'",
        )
        .bind(build_id)
        .bind(&self.replica)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Records the end of a build this replica holds and enqueues its event. `false` when the
    /// build was superseded (or taken over) meanwhile: then nothing is emitted.
    pub async fn finish<E: slipway_mesh::EventPayload>(
        &self,
        build_id: &str,
        state: &str,
        reason: Option<&str>,
        digest: Option<&str>,
        event: &E,
    ) -> Result<bool> {
        let mut tx = self.pool.begin().await?;
        let updated = self.end(&mut tx, build_id, state, reason, digest).await?;
        if updated {
            outbox::enqueue_with_id(&mut tx, event_id(build_id, state)?, &self.source, event).await?;
        }
        tx.commit().await?;
        Ok(updated)
    }

    /// Sets the end state of a build this replica holds; false when it no longer does.
    async fn end(
        &self,
        conn: &mut PgConnection,
        build_id: &str,
        state: &str,
        reason: Option<&str>,
        digest: Option<&str>,
    ) -> Result<bool> {
        let updated = sqlx::query(
            "UPDATE builds SET state = $2, reason = $3, digest = $4, updated_at = now() \
             WHERE build_id = $1 AND replica = $5 AND state = 'running'",
        )
        .bind(build_id)
        .bind(state)
        .bind(reason)
        .bind(digest)
        .bind(&self.replica)
        .execute(conn)
        .await?
        .rows_affected();
        Ok(updated == 1)
    }

    /// Like [`finish`](Self::finish) for a build that succeeded, with its scan's event
    /// (`<build_id>.scanned` / `.scan-failed`) enqueued in the same transaction, before
    /// `build.succeeded`, so the promoter usually knows the report when the build arrives.
    pub async fn finish_scanned(
        &self,
        build_id: &str,
        digest: &str,
        scan: Option<&crate::scan::ScanEvent>,
        succeeded: &slipway_mesh::v1::BuildSucceeded,
    ) -> Result<bool> {
        let mut tx = self.pool.begin().await?;
        let updated = self.end(&mut tx, build_id, "succeeded", None, Some(digest)).await?;
        if updated {
            if let Some(scan) = scan {
                self.enqueue_scan(&mut tx, build_id, scan).await?;
            }
            outbox::enqueue_with_id(&mut tx, event_id(build_id, "succeeded")?, &self.source, succeeded).await?;
        }
        tx.commit().await?;
        Ok(updated)
    }

    /// Whether the re-scan asked for by `request` was answered already.
    pub async fn rescanned(&self, request: &EventId) -> Result<bool> {
        let done: bool =
            sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM slipway_inbox WHERE consumer = $1 AND event_id = $2)")
                .bind(SCAN_CONSUMER)
                .bind(request.as_str())
                .fetch_one(&self.pool)
                .await?;
        Ok(done)
    }

    /// Records the answer to the re-scan `request`, once: the event goes out through the outbox
    /// with an id derived from the request's (`<request id>.scanned` / `.scan-failed`).
    pub async fn rescan_done(&self, request: &EventId, scan: &crate::scan::ScanEvent) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        if inbox::claim(&mut tx, SCAN_CONSUMER, request).await? {
            self.enqueue_scan(&mut tx, request.as_str(), scan).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Enqueues a scan's event as `<base>.scanned` or `<base>.scan-failed`.
    async fn enqueue_scan(&self, conn: &mut PgConnection, base: &str, scan: &crate::scan::ScanEvent) -> Result<()> {
        match scan {
            crate::scan::ScanEvent::Scanned(e) => {
                outbox::enqueue_with_id(conn, event_id(base, "scanned")?, &self.source, e).await?;
            }
            crate::scan::ScanEvent::Failed(e) => {
                outbox::enqueue_with_id(conn, event_id(base, "scan-failed")?, &self.source, e).await?;
            }
        }
        Ok(())
    }

    /// Emits `build.failed` for a request that can never be built, once per request event.
    pub async fn reject(&self, request_event: &EventId, failed: &BuildFailed) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        if inbox::claim(&mut tx, CONSUMER, request_event).await? {
            outbox::enqueue(&mut tx, &self.source, failed).await?;
        }
        tx.commit().await?;
        Ok(())
    }
}

/// `<build_id>.<what>`: the id of a build's event (`what` is `started`, `succeeded`, `failed`,
/// `scanned`, `scan-failed`; a re-scan's answer has the request's event id in place of the
/// build id).
pub fn event_id(build_id: &str, what: &str) -> Result<EventId> {
    let what = if what == "superseded" { "failed" } else { what };
    Ok(EventId::parse(&format!("{build_id}.{what}"))?)
}
