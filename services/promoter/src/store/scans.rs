//! The `scans` table: the newest vulnerability scan of each image digest, written from
//! `build.scanned` / `build.scan-failed` ([`record`]) and read into an app's state for the
//! stage gates ([`load`]). A report only replaces one that is not newer, so a redelivered or
//! late event never brings an old verdict back.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use slipway_mesh::v1;
use sqlx::{PgConnection, Row};

use crate::domain::scan_policy::{ScanOutcome, ScanRecord};
use crate::error::{Error, Result};

fn time(ts: Option<&pbjson_types::Timestamp>) -> Option<DateTime<Utc>> {
    ts.and_then(|t| DateTime::from_timestamp(t.seconds, u32::try_from(t.nanos).unwrap_or(0)))
}

/// A scan event, as the table keeps it.
pub enum Scan<'a> {
    Report(&'a v1::BuildScanned),
    Failed(&'a v1::BuildScanFailed),
}

impl Scan<'_> {
    fn image(&self) -> Option<&v1::ImageRef> {
        match self {
            Scan::Report(r) => r.image.as_ref(),
            Scan::Failed(f) => f.image.as_ref(),
        }
    }

    /// The scanned digest, if the event names one.
    pub fn digest(&self) -> Option<&str> {
        self.image().map(|i| i.digest.as_str()).filter(|d| !d.is_empty())
    }
}

/// Stores `scan` as the newest of its digest unless a newer one is there; false when the
/// event names no digest or was older.
pub async fn record(conn: &mut PgConnection, event_id: &str, app: &str, scan: &Scan<'_>) -> Result<bool> {
    let Some(digest) = scan.digest() else { return Ok(false) };
    let (outcome, at, report) = match scan {
        Scan::Report(r) => ("scanned", time(r.scanned_at.as_ref()), serde_json::to_value(r)?),
        Scan::Failed(f) => ("failed", time(f.failed_at.as_ref()), serde_json::to_value(f)?),
    };
    let at = at.unwrap_or_else(Utc::now);
    let written = sqlx::query(
        "INSERT INTO scans (digest, app, scanned_at, outcome, report, event_id) VALUES ($1, $2, $3, $4, $5, $6) \
         ON CONFLICT (digest) DO UPDATE SET app = EXCLUDED.app, scanned_at = EXCLUDED.scanned_at, \
         outcome = EXCLUDED.outcome, report = EXCLUDED.report, event_id = EXCLUDED.event_id, updated_at = now() \
         WHERE scans.scanned_at <= EXCLUDED.scanned_at",
    )
    .bind(digest)
    .bind(app)
    .bind(at)
    .bind(outcome)
    .bind(report)
    .bind(event_id)
    .execute(conn)
    .await?
    .rows_affected();
    Ok(written == 1)
}

/// The newest scan of each of `digests` that has one.
pub async fn load(conn: &mut PgConnection, digests: &[String]) -> Result<BTreeMap<String, ScanRecord>> {
    let mut out = BTreeMap::new();
    if digests.is_empty() {
        return Ok(out);
    }
    let rows = sqlx::query("SELECT digest, scanned_at, outcome, report FROM scans WHERE digest = ANY($1)")
        .bind(digests)
        .fetch_all(conn)
        .await?;
    for row in rows {
        let outcome: String = row.try_get("outcome")?;
        let report: serde_json::Value = row.try_get("report")?;
        let outcome = match outcome.as_str() {
            "scanned" => ScanOutcome::Report(Box::new(serde_json::from_value(report)?)),
            "failed" => {
                let failed: v1::BuildScanFailed = serde_json::from_value(report)?;
                ScanOutcome::Failed { reason: failed.reason, message: failed.message }
            }
            other => return Err(Error::Corrupt(format!("scan outcome {other:?}"))),
        };
        out.insert(row.try_get("digest")?, ScanRecord { at: row.try_get("scanned_at")?, outcome });
    }
    Ok(out)
}
