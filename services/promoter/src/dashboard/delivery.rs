//! The four DORA delivery metrics of one app, computed from the history of its production
//! stage (the pipeline's last): deployment frequency, lead time for changes, change failure
//! rate and time to restore service.
//!
//! [`compute`] is pure: the dashboard loads a [`History`] from the promoter's own records
//! (promotions written to the GitOps repository, runs, and the audit log's `healthy` and
//! `degraded` entries) and hands it over with the clock. Definitions, as the dashboard shows
//! them:
//! - a *deployment* is a promotion (not a rollback) written into the stage within the window;
//! - *lead time* runs from when the commit entered the pipeline (its build's arrival, the
//!   first app-keyed record of a commit) to the deployment's first healthy report, or to its
//!   commit into the GitOps repository when no health report came; the median is shown;
//! - a deployment *failed* when any degraded report names it;
//! - *time to restore* runs from the stage degrading (while it was up) to the next healthy
//!   report in the stage, whichever version that is (a rollback or a fix); the median is shown.

use std::collections::HashSet;

use chrono::{DateTime, Duration, Utc};
use serde::Serialize;

/// Each metric's chart name, title and definition, as the dashboard shows them.
pub const METRICS: [(&str, &str, &str); 4] = [
    (
        "deployment-frequency",
        "Deployments per week",
        "Promotions (not rollbacks) written into the last stage of the pipeline.",
    ),
    (
        "lead-time",
        "Lead time for changes (median)",
        "From the commit entering the pipeline (its build's arrival) to the deployment's first healthy \
         report, or to its GitOps commit when no health report came.",
    ),
    (
        "change-failure-rate",
        "Change failure rate",
        "Deployments that any degraded report names, over all deployments of the week.",
    ),
    (
        "time-to-restore",
        "Time to restore service (median)",
        "From the stage degrading while it was up to its next healthy report, whichever version that is \
         (a rollback or a fix); counted in the week service came back.",
    ),
];

/// A promotion written into the stage.
#[derive(Debug, Clone, PartialEq)]
pub struct Deployment {
    pub promotion_id: String,
    /// Rollbacks restore service; they are not changes delivered.
    pub rollback: bool,
    /// When the commit entered the pipeline; unknown for promotions outside a run.
    pub started: Option<DateTime<Utc>>,
    /// When it was committed to the GitOps repository.
    pub deployed: DateTime<Utc>,
}

/// A health report about a promotion in the stage.
#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    pub promotion_id: String,
    pub at: DateTime<Utc>,
    pub healthy: bool,
}

/// What [`compute`] reads: deployments and reports of one stage, in any order.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct History {
    pub deployments: Vec<Deployment>,
    pub reports: Vec<Report>,
}

/// One app's metrics over the window, as `/api/delivery` answers them.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Metrics {
    pub app: String,
    pub stage: String,
    pub window_days: u32,
    pub deployments: u32,
    pub deployments_per_day: f64,
    /// Median, in seconds; none without deployments.
    pub lead_time_secs: Option<f64>,
    pub failures: u32,
    /// Failed deployments / deployments; none without deployments.
    pub change_failure_rate: Option<f64>,
    pub restores: u32,
    /// Median, in seconds; none without a restore.
    pub time_to_restore_secs: Option<f64>,
    /// The stage is degraded now and has not been restored yet.
    pub degraded_now: bool,
}

/// The metrics of `app`'s `stage` over the `window_days` before `now`.
pub fn compute(app: &str, stage: &str, history: &History, now: DateTime<Utc>, window_days: u32) -> Metrics {
    let since = now - Duration::days(i64::from(window_days));
    let mut reports: Vec<&Report> = history.reports.iter().filter(|r| r.at >= since && r.at <= now).collect();
    reports.sort_by_key(|r| r.at);
    let deployments: Vec<&Deployment> =
        history.deployments.iter().filter(|d| !d.rollback && d.deployed >= since && d.deployed <= now).collect();
    let degraded: HashSet<&str> = reports.iter().filter(|r| !r.healthy).map(|r| r.promotion_id.as_str()).collect();
    let failures = deployments.iter().filter(|d| degraded.contains(d.promotion_id.as_str())).count();
    let lead_times: Vec<f64> = deployments.iter().filter_map(|d| lead_time(d, &reports)).collect();
    let (restore_times, degraded_now) = restores(&reports);
    let count = u32::try_from(deployments.len()).unwrap_or(u32::MAX);
    Metrics {
        app: app.to_owned(),
        stage: stage.to_owned(),
        window_days,
        deployments: count,
        deployments_per_day: f64::from(count) / f64::from(window_days.max(1)),
        lead_time_secs: median(lead_times),
        failures: u32::try_from(failures).unwrap_or(u32::MAX),
        change_failure_rate: (count > 0).then(|| failures as f64 / f64::from(count)),
        restores: u32::try_from(restore_times.len()).unwrap_or(u32::MAX),
        time_to_restore_secs: median(restore_times),
        degraded_now,
    }
}

/// Seconds from the commit entering the pipeline to the deployment running (healthy) or, at
/// least, written.
fn lead_time(deployment: &Deployment, reports: &[&Report]) -> Option<f64> {
    let started = deployment.started?;
    let healthy = reports
        .iter()
        .find(|r| r.healthy && r.promotion_id == deployment.promotion_id && r.at >= deployment.deployed)
        .map(|r| r.at);
    let end = healthy.unwrap_or(deployment.deployed);
    (end >= started).then(|| seconds(end - started))
}

/// Seconds of each outage (first degraded report while up → next healthy report), and
/// whether the last outage is still going on. `reports` are sorted by time.
fn restores(reports: &[&Report]) -> (Vec<f64>, bool) {
    let (outages, down) = outages(reports);
    (outages.into_iter().map(|(_, secs)| secs).collect(), down)
}

/// Each outage's end (the restoring report) and length in seconds, and whether one is going on.
fn outages(reports: &[&Report]) -> (Vec<(DateTime<Utc>, f64)>, bool) {
    let mut down_since: Option<DateTime<Utc>> = None;
    let mut outages = Vec::new();
    for report in reports {
        match (report.healthy, down_since) {
            (false, None) => down_since = Some(report.at),
            (true, Some(since)) => {
                outages.push((report.at, seconds(report.at - since)));
                down_since = None;
            }
            _ => {}
        }
    }
    (outages, down_since.is_some())
}

/// The four metrics of one week, over any number of stages (an app, a team, everything).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Week {
    pub start: DateTime<Utc>,
    pub deployments: u32,
    pub failures: u32,
    /// Median over the week's deployments, in seconds.
    pub lead_time_secs: Option<f64>,
    pub change_failure_rate: Option<f64>,
    /// Median over the outages that ended in the week, in seconds.
    pub time_to_restore_secs: Option<f64>,
}

/// The `weeks` weeks before `now` (oldest first), each with the metrics of every history in
/// `histories` together: a deployment counts in the week it was written, an outage in the
/// week it ended. Each history is one stage's, so outages never mix stages.
pub fn weekly(histories: &[History], now: DateTime<Utc>, weeks: u32) -> Vec<Week> {
    let first = now - Duration::weeks(i64::from(weeks));
    let mut out: Vec<(Week, Vec<f64>, Vec<f64>)> = (0..weeks)
        .map(|i| {
            let start = first + Duration::weeks(i64::from(i));
            let week = Week {
                start,
                deployments: 0,
                failures: 0,
                lead_time_secs: None,
                change_failure_rate: None,
                time_to_restore_secs: None,
            };
            (week, Vec::new(), Vec::new())
        })
        .collect();
    let week_of = |at: DateTime<Utc>| -> Option<usize> {
        if at < first || at > now {
            return None;
        }
        usize::try_from((at - first).num_seconds() / Duration::weeks(1).num_seconds())
            .ok()
            .filter(|i| *i < out_len(weeks))
    };
    for history in histories {
        let mut reports: Vec<&Report> = history.reports.iter().filter(|r| r.at <= now).collect();
        reports.sort_by_key(|r| r.at);
        let degraded: HashSet<&str> = reports.iter().filter(|r| !r.healthy).map(|r| r.promotion_id.as_str()).collect();
        for d in history.deployments.iter().filter(|d| !d.rollback) {
            let Some(i) = week_of(d.deployed) else { continue };
            let (week, leads, _) = &mut out[i];
            week.deployments += 1;
            week.failures += u32::from(degraded.contains(d.promotion_id.as_str()));
            leads.extend(lead_time(d, &reports));
        }
        for (end, secs) in outages(&reports).0 {
            if let Some(i) = week_of(end) {
                out[i].2.push(secs);
            }
        }
    }
    (out.into_iter())
        .map(|(mut week, leads, restores)| {
            week.lead_time_secs = median(leads);
            week.time_to_restore_secs = median(restores);
            week.change_failure_rate =
                (week.deployments > 0).then(|| f64::from(week.failures) / f64::from(week.deployments));
            week
        })
        .collect()
}

fn out_len(weeks: u32) -> usize {
    usize::try_from(weeks).unwrap_or(usize::MAX)
}

fn seconds(d: Duration) -> f64 {
    d.num_milliseconds() as f64 / 1000.0
}

fn median(mut values: Vec<f64>) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    values.sort_by(f64::total_cmp);
    let mid = values.len() / 2;
    Some(if values.len().is_multiple_of(2) { f64::midpoint(values[mid - 1], values[mid]) } else { values[mid] })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(hours: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000, 0).expect("time") + Duration::hours(hours)
    }

    fn deploy(id: &str, started: i64, deployed: i64) -> Deployment {
        Deployment { promotion_id: id.into(), rollback: false, started: Some(at(started)), deployed: at(deployed) }
    }

    fn report(id: &str, hours: i64, healthy: bool) -> Report {
        Report { promotion_id: id.into(), at: at(hours), healthy }
    }

    #[test]
    fn nothing_deployed_has_no_rates() {
        let m = compute("writer", "prod", &History::default(), at(0), 30);
        assert_eq!((m.deployments, m.failures, m.restores), (0, 0, 0));
        assert_eq!((m.lead_time_secs, m.change_failure_rate, m.time_to_restore_secs), (None, None, None));
        assert_eq!(m.deployments_per_day, 0.0);
        assert!(!m.degraded_now);
    }

    #[test]
    fn lead_time_runs_to_the_first_healthy_report_else_the_commit() {
        let history = History {
            deployments: vec![deploy("p1", 0, 2), deploy("p2", 10, 11), deploy("p3", 20, 26)],
            reports: vec![report("p1", 3, true), report("p1", 9, true), report("p3", 30, true)],
        };
        let m = compute("writer", "prod", &history, at(48), 2);
        // p1: 3 h (to healthy), p2: 1 h (no report: to the commit), p3: 10 h.
        assert_eq!(m.lead_time_secs, Some(3.0 * 3600.0));
        assert_eq!(m.deployments, 3);
        assert_eq!(m.deployments_per_day, 1.5);
    }

    #[test]
    fn failures_and_restores() {
        let rollback = Deployment { promotion_id: "rb".into(), rollback: true, started: None, deployed: at(5) };
        let history = History {
            deployments: vec![deploy("p1", 0, 1), deploy("p2", 2, 3), rollback, deploy("p3", 6, 7)],
            reports: vec![
                report("p1", 2, true),
                report("p2", 4, false),
                report("p2", 4, false), // a repeated report is one outage
                report("rb", 6, true),  // restored by the rollback after 2 h
                report("p3", 8, false),
                report("p3", 12, true), // restored by a fix after 4 h
            ],
        };
        let m = compute("writer", "prod", &history, at(24), 30);
        assert_eq!(m.deployments, 3, "the rollback is not a change delivered");
        assert_eq!(m.failures, 2);
        assert_eq!(m.change_failure_rate, Some(2.0 / 3.0));
        assert_eq!(m.restores, 2);
        assert_eq!(m.time_to_restore_secs, Some(3.0 * 3600.0), "median of 2 h and 4 h");
        assert!(!m.degraded_now);
    }

    #[test]
    fn an_ongoing_outage_is_reported_not_counted() {
        let history = History {
            deployments: vec![deploy("p1", 0, 1)],
            reports: vec![report("p1", 2, true), report("p1", 3, false)],
        };
        let m = compute("writer", "prod", &history, at(4), 30);
        assert_eq!((m.failures, m.restores, m.time_to_restore_secs), (1, 0, None));
        assert!(m.degraded_now);
    }

    #[test]
    fn only_the_window_counts() {
        let history = History {
            deployments: vec![deploy("old", 0, 1), deploy("new", 100, 101)],
            reports: vec![report("old", 2, false), report("new", 102, true)],
        };
        let m = compute("writer", "prod", &history, at(110), 1);
        assert_eq!((m.deployments, m.failures), (1, 0));
        assert_eq!(m.lead_time_secs, Some(2.0 * 3600.0));
        assert!(!m.degraded_now, "the old outage lies before the window");
    }

    #[test]
    fn weeks_count_deployments_failures_and_restores_where_they_happened() {
        let week = 24 * 7;
        let app_a = History {
            deployments: vec![deploy("a1", 0, 1), deploy("a2", week, week + 2)],
            reports: vec![report("a1", 2, true), report("a2", week + 3, false), report("a2", week + 7, true)],
        };
        let app_b = History { deployments: vec![deploy("b1", week + 1, week + 5)], reports: vec![] };
        let now = at(2 * week);
        let weeks = weekly(&[app_a, app_b], now, 2);
        assert_eq!(weeks.len(), 2);
        assert_eq!(weeks[0].start, at(0));
        assert_eq!((weeks[0].deployments, weeks[0].failures, weeks[0].change_failure_rate), (1, 0, Some(0.0)));
        assert_eq!(weeks[0].lead_time_secs, Some(2.0 * 3600.0));
        assert_eq!(weeks[0].time_to_restore_secs, None);
        // a2 failed (down 4 h, restored the same week), healthy 7 h after its commit entered;
        // b1 has no report: 4 h to its GitOps commit.
        assert_eq!((weeks[1].deployments, weeks[1].failures, weeks[1].change_failure_rate), (2, 1, Some(0.5)));
        assert_eq!(weeks[1].time_to_restore_secs, Some(4.0 * 3600.0));
        assert_eq!(weeks[1].lead_time_secs, Some(5.5 * 3600.0), "median of 7 h and 4 h");
        assert!(weekly(&[], now, 3).iter().all(|w| w.deployments == 0 && w.lead_time_secs.is_none()));
    }

    #[test]
    fn medians() {
        assert_eq!(median(vec![]), None);
        assert_eq!(median(vec![3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(vec![4.0, 1.0]), Some(2.5));
    }
}
