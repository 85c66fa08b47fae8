//! The delivery trends of an app, a team or everything: each app's last stage's history
//! ([`store::dashboard::delivery_histories`]) folded into weeks by [`delivery::weekly`], as
//! JSON (`/api/trends`, with each metric's definition) and as SVG charts (`/api/charts/`).

use chrono::{Duration, Utc};
use serde::{Deserialize, Serialize};

use super::delivery::{self, METRICS, Week};
use crate::error::{Error, Result};
use crate::promoter::Promoter;
use crate::store;

/// Longest trend, in weeks.
pub const MAX_WEEKS: u32 = 104;

/// `?app=` or `?team=` (neither: everything) and `?weeks=` (12 by default).
#[derive(Debug, Default, Deserialize)]
pub struct Scope {
    #[serde(default)]
    pub app: String,
    #[serde(default)]
    pub team: String,
    pub weeks: Option<u32>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Definition {
    pub metric: &'static str,
    pub title: &'static str,
    pub definition: &'static str,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Trends {
    /// `app writer`, `team payments` or `everything`.
    pub scope: String,
    pub apps: usize,
    pub weeks: Vec<Week>,
    pub metrics: Vec<Definition>,
}

/// The weeks of `scope`.
pub async fn trends(promoter: &Promoter, scope: &Scope) -> Result<Trends> {
    let weeks = scope.weeks.unwrap_or(12);
    if !(1..=MAX_WEEKS).contains(&weeks) {
        return Err(Error::InvalidArgument(format!("weeks must be 1 to {MAX_WEEKS}")));
    }
    let in_force = promoter.apps.get();
    let (label, apps): (String, Vec<&str>) = match (scope.app.as_str(), scope.team.as_str()) {
        ("", "") => ("everything".into(), in_force.apps.iter().map(|a| a.name.as_str()).collect()),
        ("", team) => {
            let apps = in_force.apps.iter().map(|a| a.name.as_str()).filter(|a| in_force.team(a) == team).collect();
            (format!("team {team}"), apps)
        }
        (app, _) => {
            let found = in_force.app(app).ok_or_else(|| Error::NotFound(format!("app {app}")))?;
            (format!("app {app}"), vec![found.name.as_str()])
        }
    };
    // Delivery is measured into each app's own last stage.
    let stages: Vec<(String, String)> = (apps.iter())
        .filter_map(|app| in_force.pipeline(app).stages.last().map(|s| ((*app).to_owned(), s.name.to_string())))
        .collect();
    let now = Utc::now();
    let since = now - Duration::weeks(i64::from(weeks));
    let histories = store::dashboard::delivery_histories(&promoter.pool, &stages, since).await?;
    let histories: Vec<delivery::History> = histories.into_values().collect();
    Ok(Trends {
        scope: label,
        apps: stages.len(),
        weeks: delivery::weekly(&histories, now, weeks),
        metrics: METRICS.iter().map(|&(metric, title, definition)| Definition { metric, title, definition }).collect(),
    })
}
