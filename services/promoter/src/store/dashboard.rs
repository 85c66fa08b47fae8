//! What the dashboard reads besides the status views: each stage's version history, the latest
//! verification of each stage, the app's recent builds, the source commits recorded from
//! `source.push` (written here when the promoter consumes a push) with the walk from a waiting
//! version back to the running one, and the delivery histories the DORA metrics are computed from.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use slipway_mesh::v1;
use sqlx::{PgConnection, PgPool, Row};

use crate::dashboard::delivery::{Deployment, History, Report};
use crate::error::Result;

/// A promotion written into a stage (committed to the GitOps repository).
#[derive(Debug, Clone, PartialEq)]
pub struct Deployed {
    pub promotion_id: String,
    pub stage: String,
    pub tag: String,
    pub commit: String,
    pub repository: String,
    /// `auto`, `manual` or `rollback`.
    pub trigger: String,
    pub actor: String,
    pub reason: String,
    pub state: String,
    pub committed_at: DateTime<Utc>,
}

/// The last `per_stage` versions written into each stage of `app`, newest first per stage.
pub async fn stage_history(pool: &PgPool, app: &str, per_stage: i64) -> Result<Vec<Deployed>> {
    let rows = sqlx::query(
        "SELECT id, stage, image_tag, source_commit, version->'source'->>'repository' AS repository, trigger, \
         actor, reason, state, committed_at FROM ( \
           SELECT p.*, row_number() OVER (PARTITION BY stage ORDER BY committed_at DESC, id DESC) AS n \
           FROM promotions p WHERE app = $1 AND committed_at IS NOT NULL) h \
         WHERE n <= $2 ORDER BY stage, committed_at DESC, id DESC",
    )
    .bind(app)
    .bind(per_stage)
    .fetch_all(pool)
    .await?;
    rows.iter()
        .map(|row| {
            Ok(Deployed {
                promotion_id: row.try_get("id")?,
                stage: row.try_get("stage")?,
                tag: row.try_get("image_tag")?,
                commit: row.try_get("source_commit")?,
                repository: row.try_get::<Option<String>, _>("repository")?.unwrap_or_default(),
                trigger: row.try_get("trigger")?,
                actor: row.try_get("actor")?,
                reason: row.try_get("reason")?,
                state: row.try_get("state")?,
                committed_at: row.try_get("committed_at")?,
            })
        })
        .collect()
}

/// The newest verification step of a promotion: `verify` (checks running), `verified`,
/// `verification-failed` or `verification-inconclusive`.
#[derive(Debug, Clone, PartialEq)]
pub struct VerificationStep {
    pub stage: String,
    pub promotion_id: String,
    pub action: String,
    pub at: DateTime<Utc>,
}

/// The newest verification step of each stage of `app`.
pub async fn verifications(pool: &PgPool, app: &str) -> Result<Vec<VerificationStep>> {
    let rows = sqlx::query(
        "SELECT DISTINCT ON (stage) stage, COALESCE(detail->>'promotion_id', '') AS promotion_id, action, at \
         FROM audit_log WHERE app = $1 AND stage IS NOT NULL \
         AND action IN ('verify', 'verified', 'verification-failed', 'verification-inconclusive') \
         ORDER BY stage, id DESC",
    )
    .bind(app)
    .fetch_all(pool)
    .await?;
    rows.iter()
        .map(|row| {
            Ok(VerificationStep {
                stage: row.try_get("stage")?,
                promotion_id: row.try_get("promotion_id")?,
                action: row.try_get("action")?,
                at: row.try_get("at")?,
            })
        })
        .collect()
}

/// A build that became a run of the app.
#[derive(Debug, Clone, PartialEq)]
pub struct BuildRow {
    pub build_id: String,
    pub tag: String,
    pub commit: String,
    pub started_at: DateTime<Utc>,
}

/// The app's last `limit` builds that became runs, newest first.
pub async fn recent_builds(pool: &PgPool, app: &str, limit: i64) -> Result<Vec<BuildRow>> {
    let rows = sqlx::query(
        "SELECT build_id, image_tag, commit_sha, started_at FROM runs WHERE app = $1 \
         ORDER BY started_at DESC, id DESC LIMIT $2",
    )
    .bind(app)
    .bind(limit)
    .fetch_all(pool)
    .await?;
    rows.iter()
        .map(|row| {
            Ok(BuildRow {
                build_id: row.try_get("build_id")?,
                tag: row.try_get("image_tag")?,
                commit: row.try_get("commit_sha")?,
                started_at: row.try_get("started_at")?,
            })
        })
        .collect()
}

/// The newest scans of `digests`, on a connection of the pool.
pub async fn scans(
    pool: &PgPool,
    digests: &[String],
) -> Result<std::collections::BTreeMap<String, crate::domain::scan_policy::ScanRecord>> {
    let mut conn = pool.acquire().await?;
    super::scans::load(&mut conn, digests).await
}

/// A git sha GitHub sends for "no commit" (`before` of a new branch).
fn is_zero(sha: &str) -> bool {
    sha.bytes().all(|b| b == b'0')
}

/// Records the commits of `push`, each linked to the one before it in the push (the first to
/// `before`). Commits cut from the event (`commit_count` above the list) leave the first link
/// unknown, so a walk stops there instead of skipping them silently.
pub async fn record_push(conn: &mut PgConnection, push: &v1::SourcePush) -> Result<()> {
    let complete = push.commit_count as usize <= push.commits.len();
    let mut parent = if complete && !is_zero(&push.before) { push.before.clone() } else { String::new() };
    for commit in &push.commits {
        let at = commit.timestamp.as_ref().and_then(|t| DateTime::from_timestamp(t.seconds, 0));
        sqlx::query(
            "INSERT INTO source_commits (repository, sha, parent, message, author, committed_at) \
             VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (repository, sha) DO UPDATE SET \
             parent = CASE WHEN source_commits.parent = '' THEN EXCLUDED.parent ELSE source_commits.parent END",
        )
        .bind(&push.repository)
        .bind(&commit.sha)
        .bind(&parent)
        .bind(&commit.message)
        .bind(&commit.author)
        .bind(at)
        .execute(&mut *conn)
        .await?;
        parent.clone_from(&commit.sha);
    }
    Ok(())
}

/// A commit as a push recorded it.
#[derive(Debug, Clone, PartialEq)]
pub struct CommitRow {
    pub sha: String,
    pub message: String,
    pub author: String,
    pub committed_at: Option<DateTime<Utc>>,
}

/// The commits from `to` back to `from` (exclusive), newest first, at most `limit`; and
/// whether the walk reached `from` (false: the records end or `from` is not an ancestor).
pub async fn commits_between(
    pool: &PgPool,
    repository: &str,
    from: &str,
    to: &str,
    limit: i64,
) -> Result<(Vec<CommitRow>, bool)> {
    let rows = sqlx::query(
        "WITH RECURSIVE chain AS ( \
           SELECT sha, parent, message, author, committed_at, 1 AS depth FROM source_commits \
           WHERE repository = $1 AND sha = $3 \
           UNION ALL \
           SELECT c.sha, c.parent, c.message, c.author, c.committed_at, chain.depth + 1 FROM source_commits c \
           JOIN chain ON c.repository = $1 AND c.sha = chain.parent \
           WHERE chain.sha <> $2 AND chain.depth <= $4) \
         SELECT sha, message, author, committed_at FROM chain ORDER BY depth",
    )
    .bind(repository)
    .bind(from)
    .bind(to)
    .bind(limit)
    .fetch_all(pool)
    .await?;
    let mut commits = Vec::new();
    let mut reached = from == to;
    for row in rows {
        let sha: String = row.try_get("sha")?;
        if sha == from {
            reached = true;
            break;
        }
        commits.push(CommitRow {
            sha,
            message: row.try_get("message")?,
            author: row.try_get("author")?,
            committed_at: row.try_get("committed_at")?,
        });
    }
    commits.truncate(usize::try_from(limit).unwrap_or(usize::MAX));
    Ok((commits, reached))
}

/// The delivery history of many (app, stage) pairs since `since`: promotions written into each
/// stage, and the health reports about it; in two queries, as the charts of a team or of
/// everything read thousands of apps.
pub async fn delivery_histories(
    pool: &PgPool,
    stages: &[(String, String)],
    since: DateTime<Utc>,
) -> Result<HashMap<(String, String), History>> {
    let (apps, names): (Vec<&str>, Vec<&str>) = stages.iter().map(|(a, s)| (a.as_str(), s.as_str())).unzip();
    let mut out: HashMap<(String, String), History> = HashMap::new();
    let rows = sqlx::query(
        "SELECT p.app, p.stage, p.id, p.trigger, p.committed_at, r.started_at FROM promotions p \
         LEFT JOIN runs r ON r.id = p.run_id \
         JOIN unnest($1::text[], $2::text[]) AS w(app, stage) ON w.app = p.app AND w.stage = p.stage \
         WHERE p.committed_at >= $3",
    )
    .bind(&apps)
    .bind(&names)
    .bind(since)
    .fetch_all(pool)
    .await?;
    for row in rows {
        let key = (row.try_get("app")?, row.try_get("stage")?);
        out.entry(key).or_default().deployments.push(Deployment {
            promotion_id: row.try_get("id")?,
            rollback: row.try_get::<String, _>("trigger")? == "rollback",
            started: row.try_get("started_at")?,
            deployed: row.try_get("committed_at")?,
        });
    }
    let rows = sqlx::query(
        "SELECT l.app, l.stage, l.at, l.action, COALESCE(l.detail->>'promotion_id', '') AS promotion_id \
         FROM audit_log l JOIN unnest($1::text[], $2::text[]) AS w(app, stage) ON w.app = l.app AND w.stage = l.stage \
         WHERE l.action IN ('healthy', 'verified', 'degraded') AND l.at >= $3 ORDER BY l.id",
    )
    .bind(&apps)
    .bind(&names)
    .bind(since)
    .fetch_all(pool)
    .await?;
    for row in rows {
        let key = (row.try_get("app")?, row.try_get("stage")?);
        out.entry(key).or_default().reports.push(Report {
            promotion_id: row.try_get("promotion_id")?,
            at: row.try_get("at")?,
            // A stage with verification checks is up once verified.
            healthy: row.try_get::<String, _>("action")? != "degraded",
        });
    }
    Ok(out)
}
