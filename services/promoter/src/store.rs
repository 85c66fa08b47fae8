//! The pipeline state in PostgreSQL: [`load`] reads one app's [`AppState`] after [`lock_app`]
//! serialized decisions about that app, and [`apply`] writes a decision's [`Effect`]s — rows,
//! timeline, audit log and outbox events — into the same transaction.

pub mod dashboard;
mod reads;
pub mod scans;
pub use reads::*;

use slipway_mesh::names::{AppName, EnvName};
use slipway_runtime::db::outbox;
use sqlx::postgres::PgRow;
use sqlx::{PgConnection, Row};

use crate::domain::{
    AppState, Audit, Effect, Hold, Made, Outgoing, Promotion, PromotionState, Run, RunState, StageState, Trigger,
    Version, Waiting,
};
use crate::error::{Error, Result};

/// Creates the app's row if needed and locks it until the transaction ends.
pub async fn lock_app(conn: &mut PgConnection, app: &AppName) -> Result<()> {
    sqlx::query("INSERT INTO apps (name) VALUES ($1) ON CONFLICT DO NOTHING")
        .bind(app.as_str())
        .execute(&mut *conn)
        .await?;
    sqlx::query("SELECT name FROM apps WHERE name = $1 FOR UPDATE").bind(app.as_str()).execute(&mut *conn).await?;
    Ok(())
}

fn corrupt(what: &str, value: &str) -> Error {
    Error::Corrupt(format!("{what} {value:?}"))
}

fn version(value: Option<serde_json::Value>) -> Result<Option<Version>> {
    Ok(value.map(serde_json::from_value).transpose()?)
}

/// The state one decision about `app` needs, plus the promotions named in `extra`.
pub async fn load(conn: &mut PgConnection, app: &AppName, extra: &[String]) -> Result<AppState> {
    let mut state = AppState::new(app.clone());
    let made = sqlx::query("SELECT runs_made, promotions_made FROM apps WHERE name = $1")
        .bind(app.as_str())
        .fetch_optional(&mut *conn)
        .await?;
    if let Some(row) = made {
        let count = |column: &str| -> Result<u64> {
            let n: i64 = row.try_get(column)?;
            u64::try_from(n).map_err(|_| corrupt(column, &n.to_string()))
        };
        state.made = Made { runs: count("runs_made")?, promotions: count("promotions_made")? };
    }
    let mut wanted: Vec<String> = extra.to_vec();
    let rows = sqlx::query(
        "SELECT stage, desired, desired_promotion, last_healthy, previous_healthy, healthy_since \
         FROM stage_versions WHERE app = $1",
    )
    .bind(app.as_str())
    .fetch_all(&mut *conn)
    .await?;
    for row in rows {
        let desired_promotion: Option<String> = row.try_get("desired_promotion")?;
        wanted.extend(desired_promotion.clone());
        let st = StageState {
            desired: version(row.try_get("desired")?)?,
            desired_promotion,
            last_healthy: version(row.try_get("last_healthy")?)?,
            previous_healthy: version(row.try_get("previous_healthy")?)?,
            healthy_since: row.try_get("healthy_since")?,
            hold: None,
        };
        state.stages.insert(row.try_get("stage")?, st);
    }
    let holds = sqlx::query("SELECT stage, actor, reason, at FROM holds WHERE app = $1")
        .bind(app.as_str())
        .fetch_all(&mut *conn)
        .await?;
    for row in holds {
        let stage: String = row.try_get("stage")?;
        let hold = Hold { actor: row.try_get("actor")?, reason: row.try_get("reason")?, at: row.try_get("at")? };
        state.stages.entry(stage).or_default().hold = Some(hold);
    }
    load_promotions(conn, &mut state, &wanted).await?;
    load_runs(conn, &mut state).await?;
    let commits: Vec<String> = (state.promotions.values().map(|p| p.version.source.commit_sha.clone()))
        .chain(state.runs.values().map(|r| r.version.source.commit_sha.clone()))
        .collect();
    let gates =
        sqlx::query("SELECT commit_sha, name FROM test_gates WHERE conclusion = 'success' AND commit_sha = ANY($1)")
            .bind(&commits)
            .fetch_all(&mut *conn)
            .await?;
    for row in gates {
        state.gates.entry(row.try_get("commit_sha")?).or_default().insert(row.try_get("name")?);
    }
    let digests: Vec<String> = (state.promotions.values().map(|p| p.version.image.digest.clone()))
        .chain(state.runs.values().map(|r| r.version.image.digest.clone()))
        .filter(|d| !d.is_empty())
        .collect();
    state.scans = crate::store::scans::load(conn, &digests).await?;
    Ok(state)
}

const PROMOTION_COLUMNS: &str = "p.id, p.run_id, p.stage, p.version, p.state, p.trigger, p.actor, p.reason, \
    p.waiting_on, p.waiting_for, p.override_freeze, p.override_scan, p.gitops_commit, p.committed_at, \
    COALESCE((SELECT array_agg(a.actor ORDER BY a.position) FROM approvals a WHERE a.promotion_id = p.id), '{}') AS approvals";

async fn load_promotions(conn: &mut PgConnection, state: &mut AppState, wanted: &[String]) -> Result<()> {
    let sql = format!(
        "SELECT {PROMOTION_COLUMNS} FROM promotions p WHERE p.app = $1 \
         AND (p.state IN ('pending', 'requested', 'committed', 'synced') OR p.id = ANY($2))"
    );
    let rows =
        sqlx::query(sqlx::AssertSqlSafe(sql)).bind(state.app.as_str()).bind(wanted).fetch_all(&mut *conn).await?;
    for row in rows {
        let p = promotion_from(&row)?;
        state.promotions.insert(p.id.clone(), p);
    }
    Ok(())
}

pub(crate) fn promotion_from(row: &PgRow) -> Result<Promotion> {
    let state: String = row.try_get("state")?;
    let trigger: String = row.try_get("trigger")?;
    let stage: String = row.try_get("stage")?;
    Ok(Promotion {
        id: row.try_get("id")?,
        run_id: row.try_get("run_id")?,
        stage: EnvName::parse(&stage)?,
        version: serde_json::from_value(row.try_get("version")?)?,
        state: PromotionState::parse(&state).ok_or_else(|| corrupt("promotion state", &state))?,
        trigger: Trigger::parse(&trigger).ok_or_else(|| corrupt("trigger", &trigger))?,
        actor: row.try_get("actor")?,
        reason: row.try_get("reason")?,
        approvals: row.try_get("approvals")?,
        waiting_on: row.try_get("waiting_on")?,
        waiting_for: match row.try_get::<Option<String>, _>("waiting_for")? {
            Some(kind) => Some(Waiting::parse(&kind).ok_or_else(|| corrupt("waiting_for", &kind))?),
            None => None,
        },
        override_freeze: row.try_get("override_freeze")?,
        override_scan: row.try_get("override_scan")?,
        gitops_commit: row.try_get("gitops_commit")?,
        committed_at: row.try_get("committed_at")?,
    })
}

const RUN_COLUMNS: &str = "id, build_id, source_repository, commit_sha, git_ref, author, image_repository, \
    image_tag, image_digest, state, stage, started_at, updated_at";

async fn load_runs(conn: &mut PgConnection, state: &mut AppState) -> Result<()> {
    let ids: Vec<String> = state.promotions.values().filter_map(|p| p.run_id.clone()).collect();
    let sql =
        format!("SELECT {RUN_COLUMNS} FROM runs WHERE app = $1 AND (state IN ('running', 'waiting') OR id = ANY($2))");
    let rows = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(state.app.as_str()).bind(&ids).fetch_all(&mut *conn).await?;
    for row in rows {
        let run = run_from(&row)?;
        state.runs.insert(run.id.clone(), run);
    }
    Ok(())
}

pub(crate) fn run_from(row: &PgRow) -> Result<Run> {
    let state: String = row.try_get("state")?;
    let stage: Option<String> = row.try_get("stage")?;
    let image = slipway_mesh::v1::ImageRef {
        repository: row.try_get("image_repository")?,
        tag: row.try_get("image_tag")?,
        digest: row.try_get("image_digest")?,
    };
    let source = slipway_mesh::v1::SourceRef {
        repository: row.try_get("source_repository")?,
        commit_sha: row.try_get("commit_sha")?,
        r#ref: row.try_get("git_ref")?,
        author: row.try_get("author")?,
    };
    Ok(Run {
        id: row.try_get("id")?,
        build_id: row.try_get("build_id")?,
        version: Version { image, source },
        state: RunState::parse(&state).ok_or_else(|| corrupt("run state", &state))?,
        stage: stage.as_deref().map(EnvName::parse).transpose()?,
    })
}

/// Writes `effects` about `app` (None: a refusal about no app in particular).
pub async fn apply(conn: &mut PgConnection, app: Option<&AppName>, source: &str, effects: &[Effect]) -> Result<()> {
    let app_name = app.map(AppName::as_str);
    for effect in effects {
        match effect {
            Effect::SaveRun(run) => save_run(conn, app_name.unwrap_or_default(), run).await?,
            Effect::SavePromotion(p) => save_promotion(conn, app_name.unwrap_or_default(), p).await?,
            Effect::SaveStage(stage, st) => save_stage(conn, app_name.unwrap_or_default(), stage, st).await?,
            Effect::Timeline { run_id, stage, step, actor, detail } => {
                sqlx::query(
                    "INSERT INTO run_timeline (run_id, stage, step, actor, detail) VALUES ($1, $2, $3, $4, $5)",
                )
                .bind(run_id)
                .bind(stage.as_ref().map(EnvName::as_str))
                .bind(step)
                .bind(actor)
                .bind(detail)
                .execute(&mut *conn)
                .await?;
            }
            Effect::Audit(audit) => append_audit(conn, app_name, audit).await?,
            Effect::Emit(event) => emit(conn, source, event).await?,
            Effect::SaveMade(made) => {
                let count = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
                sqlx::query("UPDATE apps SET runs_made = $2, promotions_made = $3 WHERE name = $1")
                    .bind(app_name.unwrap_or_default())
                    .bind(count(made.runs))
                    .bind(count(made.promotions))
                    .execute(&mut *conn)
                    .await?;
            }
        }
    }
    Ok(())
}

/// Appends one row to the audit log.
pub async fn append_audit(conn: &mut PgConnection, app: Option<&str>, audit: &Audit) -> Result<()> {
    sqlx::query("INSERT INTO audit_log (actor, action, app, stage, reason, detail) VALUES ($1, $2, $3, $4, $5, $6)")
        .bind(&audit.actor)
        .bind(&audit.action)
        .bind(app)
        .bind(audit.stage.as_ref().map(EnvName::as_str))
        .bind(&audit.reason)
        .bind(&audit.detail)
        .execute(conn)
        .await?;
    Ok(())
}

async fn emit(conn: &mut PgConnection, source: &str, event: &Outgoing) -> Result<()> {
    match event {
        Outgoing::PromotionRequested(e) => outbox::enqueue(conn, source, e).await?,
        Outgoing::PromotionCommitted(e) => outbox::enqueue(conn, source, e).await?,
        Outgoing::PromotionFailed(e) => outbox::enqueue(conn, source, e).await?,
        Outgoing::PromotionRolledBack(e) => outbox::enqueue(conn, source, e).await?,
        Outgoing::ApprovalRequested(e) => outbox::enqueue(conn, source, e).await?,
        Outgoing::ApprovalGranted(e) => outbox::enqueue(conn, source, e).await?,
        Outgoing::ApprovalRejected(e) => outbox::enqueue(conn, source, e).await?,
        Outgoing::CommandRefused(e) => outbox::enqueue(conn, source, e).await?,
        Outgoing::HoldPlaced(e) => outbox::enqueue(conn, source, e).await?,
        Outgoing::HoldReleased(e) => outbox::enqueue(conn, source, e).await?,
        Outgoing::ScanRequested(e) => outbox::enqueue(conn, source, e).await?,
        Outgoing::VerificationRequested(e) => outbox::enqueue(conn, source, e).await?,
    };
    Ok(())
}

async fn save_run(conn: &mut PgConnection, app: &str, run: &Run) -> Result<()> {
    let (image, source) = (&run.version.image, &run.version.source);
    sqlx::query(
        "INSERT INTO runs (id, app, build_id, source_repository, commit_sha, git_ref, author, image_repository, \
         image_tag, image_digest, state, stage) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) \
         ON CONFLICT (id) DO UPDATE SET state = EXCLUDED.state, stage = EXCLUDED.stage, updated_at = now()",
    )
    .bind(&run.id)
    .bind(app)
    .bind(&run.build_id)
    .bind(&source.repository)
    .bind(&source.commit_sha)
    .bind(&source.r#ref)
    .bind(&source.author)
    .bind(&image.repository)
    .bind(&image.tag)
    .bind(&image.digest)
    .bind(run.state.as_str())
    .bind(run.stage.as_ref().map(EnvName::as_str))
    .execute(conn)
    .await?;
    Ok(())
}

async fn save_promotion(conn: &mut PgConnection, app: &str, p: &Promotion) -> Result<()> {
    sqlx::query(
        "INSERT INTO promotions (id, app, stage, run_id, version, image_tag, image_digest, source_commit, state, \
         trigger, actor, reason, waiting_on, override_freeze, gitops_commit, committed_at, waiting_for, override_scan) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18) \
         ON CONFLICT (id) DO UPDATE SET state = EXCLUDED.state, reason = EXCLUDED.reason, \
         waiting_on = EXCLUDED.waiting_on, waiting_for = EXCLUDED.waiting_for, override_freeze = EXCLUDED.override_freeze, \
         override_scan = EXCLUDED.override_scan, \
         gitops_commit = EXCLUDED.gitops_commit, committed_at = EXCLUDED.committed_at, updated_at = now()",
    )
    .bind(&p.id)
    .bind(app)
    .bind(p.stage.as_str())
    .bind(&p.run_id)
    .bind(serde_json::to_value(&p.version)?)
    .bind(&p.version.image.tag)
    .bind(&p.version.image.digest)
    .bind(&p.version.source.commit_sha)
    .bind(p.state.as_str())
    .bind(p.trigger.as_str())
    .bind(&p.actor)
    .bind(&p.reason)
    .bind(&p.waiting_on)
    .bind(p.override_freeze)
    .bind(&p.gitops_commit)
    .bind(p.committed_at)
    .bind(p.waiting_for.map(Waiting::as_str))
    .bind(p.override_scan)
    .execute(&mut *conn)
    .await?;
    for (position, actor) in p.approvals.iter().enumerate() {
        sqlx::query("INSERT INTO approvals (promotion_id, actor, position) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING")
            .bind(&p.id)
            .bind(actor)
            .bind(i32::try_from(position).unwrap_or(i32::MAX))
            .execute(&mut *conn)
            .await?;
    }
    Ok(())
}

async fn save_stage(conn: &mut PgConnection, app: &str, stage: &EnvName, st: &StageState) -> Result<()> {
    let json = |v: &Option<Version>| v.as_ref().map(serde_json::to_value).transpose();
    sqlx::query(
        "INSERT INTO stage_versions (app, stage, desired, desired_promotion, last_healthy, previous_healthy, healthy_since) \
         VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (app, stage) DO UPDATE SET desired = EXCLUDED.desired, \
         desired_promotion = EXCLUDED.desired_promotion, last_healthy = EXCLUDED.last_healthy, \
         previous_healthy = EXCLUDED.previous_healthy, healthy_since = EXCLUDED.healthy_since, updated_at = now()",
    )
    .bind(app)
    .bind(stage.as_str())
    .bind(json(&st.desired)?)
    .bind(&st.desired_promotion)
    .bind(json(&st.last_healthy)?)
    .bind(json(&st.previous_healthy)?)
    .bind(st.healthy_since)
    .execute(&mut *conn)
    .await?;
    match &st.hold {
        Some(hold) => {
            sqlx::query(
                "INSERT INTO holds (app, stage, actor, reason, at) VALUES ($1, $2, $3, $4, $5) \
                 ON CONFLICT (app, stage) DO UPDATE SET actor = EXCLUDED.actor, reason = EXCLUDED.reason, at = EXCLUDED.at",
            )
            .bind(app)
            .bind(stage.as_str())
            .bind(&hold.actor)
            .bind(&hold.reason)
            .bind(hold.at)
            .execute(conn)
            .await?;
        }
        None => {
            sqlx::query("DELETE FROM holds WHERE app = $1 AND stage = $2")
                .bind(app)
                .bind(stage.as_str())
                .execute(conn)
                .await?;
        }
    }
    Ok(())
}

/// Records the latest conclusion of a test gate for a commit.
pub async fn record_gate(conn: &mut PgConnection, gate: &slipway_mesh::v1::SourceTestGate) -> Result<()> {
    sqlx::query(
        "INSERT INTO test_gates (repository, commit_sha, name, conclusion, url) VALUES ($1, $2, $3, $4, $5) \
         ON CONFLICT (repository, commit_sha, name) DO UPDATE SET conclusion = EXCLUDED.conclusion, \
         url = EXCLUDED.url, at = now()",
    )
    .bind(&gate.repository)
    .bind(&gate.commit_sha)
    .bind(&gate.name)
    .bind(&gate.conclusion)
    .bind(&gate.url)
    .execute(conn)
    .await?;
    Ok(())
}

/// Apps with a promotion waiting (for `commit` only, when given; from `repository` only, when
/// not empty), sorted so several are locked in one order.
pub async fn apps_waiting(conn: &mut PgConnection, commit: Option<&str>, repository: &str) -> Result<Vec<AppName>> {
    let rows = sqlx::query(
        "SELECT DISTINCT app FROM promotions WHERE state = 'pending' AND ($1::text IS NULL OR source_commit = $1) \
         AND ($2 = '' OR version->'source'->>'repository' = $2) ORDER BY app",
    )
    .bind(commit)
    .bind(repository)
    .fetch_all(conn)
    .await?;
    rows.iter().map(|r| Ok(AppName::parse(&r.try_get::<String, _>("app")?)?)).collect()
}

/// Records the trace of the push that started `app`'s run of `build_id`: its id and the
/// `traceparent` to continue it from (once: a run keeps the trace it began in).
pub async fn set_run_trace(
    conn: &mut PgConnection,
    app: &AppName,
    build_id: &str,
    trace_id: &str,
    traceparent: &str,
) -> Result<()> {
    sqlx::query("UPDATE runs SET trace_id = $3, traceparent = $4 WHERE app = $1 AND build_id = $2 AND trace_id = ''")
        .bind(app.as_str())
        .bind(build_id)
        .bind(trace_id)
        .bind(traceparent)
        .execute(conn)
        .await?;
    Ok(())
}

/// The `traceparent` run `run_id` continues its trace from, when it has one.
pub async fn run_traceparent(conn: &mut PgConnection, run_id: &str) -> Result<Option<String>> {
    let found: Option<String> =
        sqlx::query_scalar("SELECT traceparent FROM runs WHERE id = $1").bind(run_id).fetch_optional(conn).await?;
    Ok(found.filter(|tp| !tp.is_empty()))
}

/// The version of `app` tagged `tag`, from its runs or (for versions promoted by hand) its
/// promotions.
pub async fn find_version(conn: &mut PgConnection, app: &AppName, tag: &str) -> Result<Option<Version>> {
    let sql =
        format!("SELECT {RUN_COLUMNS} FROM runs WHERE app = $1 AND image_tag = $2 ORDER BY started_at DESC LIMIT 1");
    if let Some(row) =
        sqlx::query(sqlx::AssertSqlSafe(sql)).bind(app.as_str()).bind(tag).fetch_optional(&mut *conn).await?
    {
        return Ok(Some(run_from(&row)?.version));
    }
    let row = sqlx::query(
        "SELECT version FROM promotions WHERE app = $1 AND image_tag = $2 ORDER BY created_at DESC LIMIT 1",
    )
    .bind(app.as_str())
    .bind(tag)
    .fetch_optional(conn)
    .await?;
    Ok(row.map(|r| r.try_get("version")).transpose()?.map(serde_json::from_value).transpose()?)
}

/// True when a run of `app` exists for `build_id`.
pub async fn run_exists(conn: &mut PgConnection, app: &AppName, build_id: &str) -> Result<bool> {
    let row = sqlx::query("SELECT 1 AS one FROM runs WHERE app = $1 AND build_id = $2")
        .bind(app.as_str())
        .bind(build_id)
        .fetch_optional(conn)
        .await?;
    Ok(row.is_some())
}

/// One promotion by id, with its app, and whether the stage still wants it.
pub async fn promotion(conn: &mut PgConnection, id: &str) -> Result<Option<(AppName, Promotion, bool)>> {
    let sql = format!(
        "SELECT p.app, s.desired_promotion = p.id AS current, {PROMOTION_COLUMNS} FROM promotions p \
         LEFT JOIN stage_versions s ON s.app = p.app AND s.stage = p.stage WHERE p.id = $1"
    );
    let Some(row) = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(id).fetch_optional(conn).await? else { return Ok(None) };
    let app: String = row.try_get("app")?;
    let current: Option<bool> = row.try_get("current")?;
    Ok(Some((AppName::parse(&app)?, promotion_from(&row)?, current.unwrap_or(false))))
}

/// Promotions waiting for approvals, in every app.
pub async fn approvals_waiting(conn: &mut PgConnection) -> Result<i64> {
    let sql = "SELECT count(*) FROM promotions WHERE state = 'pending' AND waiting_for = $1";
    Ok(sqlx::query_scalar(sql).bind(Waiting::Approvals.as_str()).fetch_one(conn).await?)
}
