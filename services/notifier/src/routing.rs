//! Routing: which destinations an event goes to, decided by a pure function of the event's
//! [`Facts`] (kind, app, stage, severity) and the `[[routes]]` rules.
//!
//! A rule matches when every list it sets matches (an empty list matches anything): `events`
//! are globs over either the short kind (`build.failed`, `promotion.*`) or the CloudEvents
//! type (`io.slipway.build.*`); `apps` and `stages` are globs; `min_severity` is a floor.
//! Every matching rule adds its destinations; a destination reached by several rules is
//! posted to once, with the template of the first rule that named it.

use globset::{Glob, GlobSet, GlobSetBuilder};
use serde::{Deserialize, Serialize};
use slipway_mesh::EventKind;
use slipway_runtime::config::invalid;

/// How much an event wants attention; ordered, so a route can ask for `warning` and above.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Something happened.
    Info,
    /// Something went well (a build, a healthy rollout).
    Success,
    /// Someone should look (an approval is waiting, a rollout degraded).
    Warning,
    /// Something failed.
    Error,
}

impl Severity {
    /// Lowercase name.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Success => "success",
            Severity::Warning => "warning",
            Severity::Error => "error",
        }
    }
}

/// One `[[routes]]` entry as written.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RouteConfig {
    /// Globs over kinds (`build.failed`) or CloudEvents types; empty: every event.
    pub events: Vec<String>,
    /// App globs; empty: any app (and events without one).
    pub apps: Vec<String>,
    /// Stage globs; empty: any stage (and events without one).
    pub stages: Vec<String>,
    /// Teams of the app catalog (`[catalog] enabled`): only events of apps these teams own;
    /// empty: any (and events of no team).
    pub teams: Vec<String>,
    /// Only events at least this severe.
    pub min_severity: Option<Severity>,
    /// Destination names.
    pub destinations: Vec<String>,
    /// A minijinja template for the message text (see [`crate::render`]).
    pub template: Option<String>,
}

/// What routing looks at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Facts {
    /// The event's kind.
    pub kind: EventKind,
    /// App, empty when the event has none.
    pub app: String,
    /// Stage / environment, empty when the event has none.
    pub stage: String,
    /// Severity.
    pub severity: Severity,
    /// The team owning the app in the catalog in force, empty when none.
    pub team: String,
}

/// One destination an event goes to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// Destination name.
    pub destination: String,
    /// Index of the rule whose template applies, if that rule has one.
    pub template: Option<usize>,
}

struct Rule {
    events: Option<GlobSet>,
    apps: Option<GlobSet>,
    stages: Option<GlobSet>,
    teams: Vec<String>,
    min_severity: Option<Severity>,
    destinations: Vec<String>,
    has_template: bool,
}

/// The compiled rules.
pub struct Router {
    rules: Vec<Rule>,
}

impl std::fmt::Debug for Router {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Router({} rules)", self.rules.len())
    }
}

/// The short name of a kind: `build.failed`.
pub fn short_kind(kind: EventKind) -> String {
    format!("{}.{}", kind.domain(), kind.event())
}

fn globs(patterns: &[String], key: &str) -> slipway_runtime::Result<Option<GlobSet>> {
    if patterns.is_empty() {
        return Ok(None);
    }
    let mut set = GlobSetBuilder::new();
    for (i, p) in patterns.iter().enumerate() {
        set.add(Glob::new(p).map_err(|e| invalid(&format!("{key}[{i}]"), e.kind()))?);
    }
    set.build().map(Some).map_err(|e| invalid(key, e))
}

impl Router {
    /// Compiles `routes`, checking every destination is in `destinations` and every event
    /// glob matches some kind (a typo would otherwise silently route nothing).
    pub fn new(routes: &[RouteConfig], destinations: &[&str]) -> slipway_runtime::Result<Self> {
        let mut rules = Vec::with_capacity(routes.len());
        for (i, r) in routes.iter().enumerate() {
            let key = format!("routes[{i}]");
            let events = globs(&r.events, &format!("{key}.events"))?;
            for (j, p) in r.events.iter().enumerate() {
                let one = globs(std::slice::from_ref(p), "")?.unwrap_or_default();
                let hits = EventKind::ALL.iter().any(|k| one.is_match(short_kind(*k)) || one.is_match(k.ce_type()));
                if !hits {
                    return Err(invalid(&format!("{key}.events[{j}]"), format_args!("{p:?} matches no event kind")));
                }
            }
            if r.destinations.is_empty() {
                return Err(invalid(&format!("{key}.destinations"), "must name at least one destination"));
            }
            for d in &r.destinations {
                if !destinations.contains(&d.as_str()) {
                    return Err(invalid(&format!("{key}.destinations"), format_args!("no destination named {d:?}")));
                }
            }
            if let Some(t) = &r.template {
                crate::render::check_template(t).map_err(|e| invalid(&format!("{key}.template"), e))?;
            }
            rules.push(Rule {
                events,
                apps: globs(&r.apps, &format!("{key}.apps"))?,
                stages: globs(&r.stages, &format!("{key}.stages"))?,
                teams: r.teams.clone(),
                min_severity: r.min_severity,
                destinations: r.destinations.clone(),
                has_template: r.template.is_some(),
            });
        }
        Ok(Self { rules })
    }

    /// The destinations `facts` goes to, each once, in rule order.
    pub fn route(&self, facts: &Facts) -> Vec<Target> {
        let short = short_kind(facts.kind);
        let mut out: Vec<Target> = Vec::new();
        for (i, rule) in self.rules.iter().enumerate() {
            let event_ok = rule.events.as_ref().is_none_or(|g| g.is_match(&short) || g.is_match(facts.kind.ce_type()));
            let app_ok = rule.apps.as_ref().is_none_or(|g| !facts.app.is_empty() && g.is_match(&facts.app));
            let stage_ok = rule.stages.as_ref().is_none_or(|g| !facts.stage.is_empty() && g.is_match(&facts.stage));
            let severity_ok = rule.min_severity.is_none_or(|min| facts.severity >= min);
            let team_ok = rule.teams.is_empty() || (!facts.team.is_empty() && rule.teams.contains(&facts.team));
            if !(event_ok && app_ok && stage_ok && severity_ok && team_ok) {
                continue;
            }
            for d in &rule.destinations {
                if !out.iter().any(|t| &t.destination == d) {
                    out.push(Target { destination: d.clone(), template: rule.has_template.then_some(i) });
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(events: &[&str], apps: &[&str], stages: &[&str], min: Option<Severity>, dest: &[&str]) -> RouteConfig {
        let v = |s: &[&str]| s.iter().map(|x| (*x).to_owned()).collect();
        RouteConfig {
            events: v(events),
            apps: v(apps),
            stages: v(stages),
            teams: Vec::new(),
            min_severity: min,
            destinations: v(dest),
            template: None,
        }
    }

    fn facts(kind: EventKind, app: &str, stage: &str, severity: Severity) -> Facts {
        Facts { kind, app: app.into(), stage: stage.into(), severity, team: String::new() }
    }

    fn names(r: &Router, f: &Facts) -> Vec<String> {
        r.route(f).into_iter().map(|t| t.destination).collect()
    }

    #[test]
    fn rules_pick_destinations_by_kind_app_stage_and_severity() {
        let routes = vec![
            rule(&["build.*"], &[], &[], None, &["builds"]),
            rule(&["io.slipway.promotion.*"], &["writer"], &["prod"], None, &["prod-writer"]),
            rule(&[], &[], &[], Some(Severity::Error), &["oncall", "builds"]),
            rule(&["approval.requested"], &["w*"], &[], None, &["approvers"]),
        ];
        let dests = ["builds", "prod-writer", "oncall", "approvers"];
        let r = Router::new(&routes, &dests).expect("valid");
        assert_eq!(names(&r, &facts(EventKind::BuildSucceeded, "writer", "", Severity::Success)), ["builds"]);
        // Matched by two rules, posted once, in rule order.
        assert_eq!(names(&r, &facts(EventKind::BuildFailed, "writer", "", Severity::Error)), ["builds", "oncall"]);
        assert_eq!(
            names(&r, &facts(EventKind::PromotionFailed, "writer", "prod", Severity::Error)),
            ["prod-writer", "oncall", "builds"]
        );
        assert!(names(&r, &facts(EventKind::PromotionHealthy, "writer", "dev", Severity::Success)).is_empty());
        assert!(names(&r, &facts(EventKind::PromotionHealthy, "reader", "prod", Severity::Success)).is_empty());
        assert_eq!(names(&r, &facts(EventKind::ApprovalRequested, "writer", "prod", Severity::Warning)), ["approvers"]);
        assert!(names(&r, &facts(EventKind::ApprovalRequested, "reader", "prod", Severity::Warning)).is_empty());
        // An app filter never matches an event without an app.
        assert!(names(&r, &facts(EventKind::ApprovalRequested, "", "", Severity::Warning)).is_empty());
    }

    #[test]
    fn the_first_template_wins() {
        let mut a = rule(&["build.failed"], &[], &[], None, &["x"]);
        a.template = Some("first".into());
        let mut b = rule(&["build.*"], &[], &[], None, &["x", "y"]);
        b.template = Some("second".into());
        let r = Router::new(&[a, b], &["x", "y"]).expect("valid");
        let got = r.route(&facts(EventKind::BuildFailed, "a", "", Severity::Error));
        assert_eq!(
            got,
            [
                Target { destination: "x".into(), template: Some(0) },
                Target { destination: "y".into(), template: Some(1) }
            ]
        );
    }

    #[test]
    fn bad_rules_are_named() {
        let e = Router::new(&[rule(&["nope.*"], &[], &[], None, &["x"])], &["x"]).expect_err("typo");
        assert!(e.to_string().contains("routes[0].events[0]"), "{e}");
        let e = Router::new(&[rule(&["[x"], &[], &[], None, &["x"])], &["x"]).expect_err("glob");
        assert!(e.to_string().contains("routes[0].events[0]"), "{e}");
        let e = Router::new(&[rule(&[], &[], &[], None, &["y"])], &["x"]).expect_err("dest");
        assert!(e.to_string().contains("routes[0].destinations"), "{e}");
    }

    #[test]
    fn a_teams_channel_gets_its_apps_events() {
        let mut payments = rule(&[], &[], &[], None, &["payments-channel"]);
        payments.teams = vec!["payments".into()];
        let r =
            Router::new(&[payments, rule(&["build.failed"], &[], &[], None, &["all"])], &["payments-channel", "all"])
                .expect("routes");
        let mut f = facts(EventKind::BuildFailed, "ledger", "", Severity::Error);
        assert_eq!(names(&r, &f), ["all"], "no team known: only the rule without teams");
        f.team = "payments".into();
        assert_eq!(names(&r, &f), ["payments-channel", "all"]);
        f.team = "sre".into();
        assert_eq!(names(&r, &f), ["all"]);
    }
}
