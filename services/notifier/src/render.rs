//! Messages: what an event says to a person. Every event kind has a default title and text
//! ([`default_message`]); a route may replace the text with a minijinja template that sees the
//! event (see [`Context`]). Providers turn the resulting [`Message`] into their own format.
//!
//! Template scope: `id`, `type` (CloudEvents type), `kind` (`build.failed`), `subject`,
//! `source`, `time` (RFC 3339), `app`, `stage`, `severity`, `title`, `text` (the default text)
//! and `event` (the payload in its proto3 JSON form, e.g. `event.image.tag`).

use crate::routing::{Facts, Severity, short_kind};
use minijinja::Environment;
use serde::Serialize;
use slipway_mesh::v1::event::Payload;
use slipway_mesh::v1::{CommandKind, ImageRef};
use slipway_mesh::{Envelope, payload_kind};

/// A message, before a provider formats it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Message {
    /// One line.
    pub title: String,
    /// The body (plain text with `*bold*`-free wording, so every provider can show it).
    pub text: String,
    /// Severity (colour).
    pub severity: Severity,
    /// A link worth following (PR, workflow run), when the event has one.
    pub link: Option<String>,
    /// An approval to ask for with buttons (Slack).
    pub approval: Option<ApprovalAsk>,
}

/// What an Approve / Reject button acts on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct ApprovalAsk {
    /// Promotion waiting.
    pub promotion_id: String,
    /// App.
    pub app: String,
    /// Stage.
    pub stage: String,
}

/// App and stage of a payload (empty when it has none).
pub fn app_stage(payload: &Payload) -> (String, String) {
    use Payload as P;
    let (app, stage): (&str, &str) = match payload {
        P::ChatopsCommand(p) => (&p.app, &p.env),
        P::BuildRequested(p) => (&p.app, ""),
        P::BuildStarted(p) => (&p.app, ""),
        P::BuildSucceeded(p) => (&p.app, ""),
        P::BuildFailed(p) => (&p.app, ""),
        P::BuildScanned(p) => (&p.app, ""),
        P::BuildScanFailed(p) => (&p.app, ""),
        P::ScanRequested(p) => (&p.app, &p.stage),
        P::VerificationRequested(p) => (&p.app, &p.stage),
        P::VerificationMeasured(p) => (&p.app, &p.stage),
        P::VerificationCompleted(p) => (&p.app, &p.stage),
        P::PromotionRequested(p) => (&p.app, &p.stage),
        P::PromotionCommitted(p) => (&p.app, &p.stage),
        P::PromotionSynced(p) => (&p.app, &p.stage),
        P::PromotionHealthy(p) => (&p.app, &p.stage),
        P::PromotionDegraded(p) => (&p.app, &p.stage),
        P::PromotionFailed(p) => (&p.app, &p.stage),
        P::PromotionRolledBack(p) => (&p.app, &p.stage),
        P::ApprovalRequested(p) => (&p.app, &p.stage),
        P::ApprovalGranted(p) => (&p.app, &p.stage),
        P::ApprovalRejected(p) => (&p.app, &p.stage),
        P::CommandRefused(p) => (&p.app, &p.stage),
        P::HoldPlaced(p) => (&p.app, &p.stage),
        P::HoldReleased(p) => (&p.app, &p.stage),
        P::NotificationSent(p) => (&p.app, ""),
        P::NotificationFailed(p) => (&p.app, ""),
        P::SourcePush(_)
        | P::SourcePullRequest(_)
        | P::SourceTag(_)
        | P::SourceTestGate(_)
        | P::SourcePing(_)
        | P::CatalogPublished(_)
        | P::CatalogRejected(_) => ("", ""),
    };
    (app.to_owned(), stage.to_owned())
}

/// How severe a payload is.
pub fn severity(payload: &Payload) -> Severity {
    use Payload as P;
    match payload {
        P::BuildSucceeded(_) | P::PromotionHealthy(_) | P::ApprovalGranted(_) => Severity::Success,
        P::ApprovalRequested(_)
        | P::ApprovalRejected(_)
        | P::CommandRefused(_)
        | P::HoldPlaced(_)
        | P::PromotionDegraded(_)
        | P::PromotionRolledBack(_) => Severity::Warning,
        P::BuildFailed(_)
        | P::PromotionFailed(_)
        | P::NotificationFailed(_)
        | P::CatalogRejected(_)
        | P::BuildScanFailed(_) => Severity::Error,
        P::BuildScanned(s) if s.counts.iter().any(|c| c.severity == "CRITICAL" || c.severity == "HIGH") => {
            Severity::Warning
        }
        P::SourceTestGate(g) if g.conclusion != "success" => Severity::Warning,
        P::VerificationCompleted(v) => match v.verdict.as_str() {
            "successful" => Severity::Success,
            "inconclusive" => Severity::Warning,
            _ => Severity::Error,
        },
        _ => Severity::Info,
    }
}

/// The routing facts of a payload.
pub fn facts(payload: &Payload) -> Facts {
    let (app, stage) = app_stage(payload);
    Facts { kind: payload_kind(payload), app, stage, severity: severity(payload), team: String::new() }
}

fn image(i: Option<&ImageRef>) -> String {
    match i {
        Some(i) if !i.tag.is_empty() => format!("{}:{}", i.repository, i.tag),
        Some(i) if !i.digest.is_empty() => format!("{}@{}", i.repository, i.digest),
        Some(i) => i.repository.clone(),
        None => "an image".to_owned(),
    }
}

fn short(sha: &str) -> &str {
    sha.get(..12).unwrap_or(sha)
}

fn or<'a>(s: &'a str, default: &'a str) -> &'a str {
    if s.is_empty() { default } else { s }
}

/// The default title and text of every event kind.
pub fn default_message(payload: &Payload) -> Message {
    use Payload as P;
    let mut link = None;
    let mut approval = None;
    let (title, text) = match payload {
        P::SourcePush(p) => (
            format!("Push to {}", p.repository),
            format!(
                "{} pushed {} commit(s) to {} ({})",
                p.pusher,
                // The event lists the newest commits only; commit_count is the push's own count.
                p.commit_count.max(p.commits.len() as u32),
                p.r#ref,
                short(&p.after)
            ),
        ),
        P::SourcePullRequest(p) => (
            format!("Pull request #{} in {}", p.number, p.repository),
            format!("{} — {} by {}", p.title, p.head_ref, p.author),
        ),
        P::SourceTag(p) => {
            (format!("Tag {} in {}", p.tag, p.repository), format!("{} tagged {}", p.actor, short(&p.commit_sha)))
        }
        P::SourceTestGate(p) => {
            link = Some(p.url.clone()).filter(|u| !u.is_empty());
            (
                format!("Tests {}: {}", p.conclusion, p.name),
                format!("{} at {} in {}", p.name, short(&p.commit_sha), p.repository),
            )
        }
        P::SourcePing(p) => (format!("Webhook ping from {}", or(&p.repository, "GitHub")), p.zen.clone()),
        P::ChatopsCommand(p) if p.kind() == CommandKind::Unknown => {
            (format!("Unknown command from {}", p.actor), help_text(p))
        }
        P::ChatopsCommand(p) => {
            (format!("Command from {}", p.actor), format!("`{}` via {}", p.raw, or(&p.channel, "chat")))
        }
        P::BuildRequested(p) => {
            (format!("Build requested: {}", p.app), format!("{} ({})", short(source_sha(p.source.as_ref())), p.reason))
        }
        P::BuildStarted(p) => {
            (format!("Build started: {}", p.app), format!("{} on {}", short(&p.commit_sha), p.replica))
        }
        P::BuildSucceeded(p) => (
            format!("Build succeeded: {}", p.app),
            format!("{} built in {:.1}s", image(p.image.as_ref()), p.duration_ms as f64 / 1000.0),
        ),
        P::BuildFailed(p) => (
            format!("Build failed: {}", or(&p.app, "unknown app")),
            format!("{} ({}) at {}", p.message, p.reason, short(&p.commit_sha)),
        ),
        P::BuildScanned(p) => {
            link = p.findings.first().map(|f| f.link.clone()).filter(|l| !l.is_empty());
            (format!("Scan of {}: {}", p.app, scan_counts(p)), scan_text(p))
        }
        P::BuildScanFailed(p) => (
            format!("Scan of {} failed", p.app),
            format!(
                "{} could not scan {} ({}): {}",
                or(&p.scanner, "the scanner"),
                image(p.image.as_ref()),
                p.reason,
                p.message
            ),
        ),
        P::ScanRequested(p) => (
            format!("Re-scan of {} before {}", p.app, p.stage),
            format!("{} is scanned again ({} report)", image(p.image.as_ref()), p.reason),
        ),
        P::PromotionRequested(p) => (
            format!("Promoting {} to {}", p.app, p.stage),
            format!("{} requested by {}", image(p.image.as_ref()), or(&p.actor, "slipway")),
        ),
        P::PromotionCommitted(p) => {
            link = Some(p.pull_request_url.clone()).filter(|u| !u.is_empty());
            (
                format!("{} → {} committed", p.app, p.stage),
                format!("{} at {} ({})", image(p.image.as_ref()), short(&p.gitops_commit), p.gitops_repository),
            )
        }
        P::PromotionSynced(p) => {
            (format!("{} synced in {}", p.app, p.stage), format!("Argo CD synced revision {}", short(&p.revision)))
        }
        P::PromotionHealthy(p) => {
            (format!("{} is healthy in {}", p.app, p.stage), format!("{} is running", image(p.image.as_ref())))
        }
        P::PromotionDegraded(p) => {
            (format!("{} is degraded in {}", p.app, p.stage), format!("{}: {}", p.health_status, p.message))
        }
        P::VerificationRequested(p) => (
            format!("Verifying {} in {}", p.app, p.stage),
            format!("checks of {} started ({})", image(p.image.as_ref()), or(&p.requested_by, "healthy")),
        ),
        P::VerificationMeasured(p) => {
            (format!("{} {} in {}: {}", p.app, p.check, p.stage, p.phase), format!("{} {}", p.value, p.message))
        }
        P::VerificationCompleted(p) => (verification_title(p), verification_text(p)),
        P::PromotionFailed(p) => {
            (format!("Promotion of {} to {} failed", p.app, p.stage), format!("{} ({})", p.message, p.reason))
        }
        P::PromotionRolledBack(p) => (
            format!("{} rolled back in {}", p.app, p.stage),
            format!(
                "{} → {}: {} ({})",
                image(p.from.as_ref()),
                image(p.to.as_ref()),
                p.reason,
                if p.automatic { "automatic" } else { or(&p.actor, "manual") }
            ),
        ),
        P::ApprovalRequested(p) => {
            approval =
                Some(ApprovalAsk { promotion_id: p.promotion_id.clone(), app: p.app.clone(), stage: p.stage.clone() });
            let mut text = format!(
                "{} needs {} approval(s), has {}. May approve: {}",
                image(p.image.as_ref()),
                p.required,
                p.granted,
                approvers(&p.allowed_approvers, &p.allowed_teams)
            );
            if !p.blocked_by.is_empty() {
                text.push_str(&format!("\nAlso waits: {}", p.blocked_by));
            }
            (format!("Approval needed: {} to {}", p.app, p.stage), text)
        }
        P::ApprovalGranted(p) => (
            format!("{} approved {} to {}", p.actor, p.app, p.stage),
            format!("{} of {} approval(s)", p.granted, p.required),
        ),
        P::ApprovalRejected(p) => (format!("Approval by {} not counted", p.actor), rejected_text(p)),
        P::CommandRefused(p) => {
            (format!("{} by {} refused", command_name(p.command()), p.actor), command_refused_text(p))
        }
        P::HoldPlaced(p) => {
            (format!("{} on hold in {}", p.app, p.stage), format!("{} placed a hold: {}", p.actor, p.reason))
        }
        P::HoldReleased(p) => {
            (format!("{} released in {}", p.app, p.stage), format!("{} released the hold: {}", p.actor, p.reason))
        }
        P::NotificationSent(p) => (
            format!("Notification sent to {}", p.destination),
            format!("event {} after {} attempt(s)", p.event_id, p.attempts),
        ),
        P::NotificationFailed(p) => (
            format!("Notification to {} failed", p.destination),
            format!("event {} after {} attempt(s): {}", p.event_id, p.attempts, p.error),
        ),
        P::CatalogPublished(p) => (
            format!("Catalog {} in force", short(&p.commit_sha)),
            format!("{} apps from {} at {}", p.apps, p.repository, short(&p.commit_sha)),
        ),
        P::CatalogRejected(p) => (format!("Catalog at {} refused", short(&p.commit_sha)), catalog_problems(p)),
    };
    Message { title, text, severity: severity(payload), link, approval }
}

/// How many findings of each severity: `CRITICAL 1 (1 fixable), LOW 1`, or `no findings`.
fn scan_counts(p: &slipway_mesh::v1::BuildScanned) -> String {
    if p.counts.is_empty() {
        return "no findings".to_owned();
    }
    let counts: Vec<String> = (p.counts.iter())
        .map(|c| {
            if c.fixable > 0 {
                format!("{} {} ({} fixable)", c.severity, c.total, c.fixable)
            } else {
                format!("{} {}", c.severity, c.total)
            }
        })
        .collect();
    counts.join(", ")
}

/// The image, the scanner, and the worst findings (the event holds them worst first).
fn scan_text(p: &slipway_mesh::v1::BuildScanned) -> String {
    const WORST: usize = 5;
    let mut text = format!("{} by {} {}", image(p.image.as_ref()), or(&p.scanner, "scanner"), p.scanner_version);
    if !p.db_version.is_empty() {
        text.push_str(&format!(" (db {})", p.db_version));
    }
    for f in p.findings.iter().take(WORST) {
        let fix =
            if f.fixed_version.is_empty() { "no fix".to_owned() } else { format!("fixed in {}", f.fixed_version) };
        text.push_str(&format!("\n{} {} in {} {} ({fix})", f.severity, f.id, f.package, f.installed_version));
    }
    let rest = (p.finding_count as usize).saturating_sub(WORST.min(p.findings.len()));
    if rest > 0 {
        text.push_str(&format!("\n…and {rest} more"));
    }
    text
}

/// The first problems of a refused catalog, one `file:line: key: reason` per line.
pub fn catalog_problems(p: &slipway_mesh::v1::CatalogRejected) -> String {
    let mut text = format!("{} problem(s); ", p.problem_count);
    text.push_str(if p.in_force_commit.is_empty() {
        "no catalog is in force yet"
    } else {
        "the revision in force stays"
    });
    for problem in p.problems.iter().take(10) {
        text.push_str(&format!("\n{}:{}: {}: {}", problem.file, problem.line, problem.key, problem.reason));
    }
    text
}

fn source_sha(s: Option<&slipway_mesh::v1::SourceRef>) -> &str {
    s.map(|s| s.commit_sha.as_str()).unwrap_or_default()
}

/// "alice, bob, team @acme/releasers" (or "nobody is configured").
pub fn approvers(people: &[String], teams: &[String]) -> String {
    let all: Vec<String> = people.iter().cloned().chain(teams.iter().map(|t| format!("team {t}"))).collect();
    if all.is_empty() { "nobody is configured".to_owned() } else { all.join(", ") }
}

/// The reply to an approval that did not count.
pub fn rejected_text(p: &slipway_mesh::v1::ApprovalRejected) -> String {
    let target = if p.app.is_empty() { String::new() } else { format!(" for {} to {}", p.app, or(&p.stage, "?")) };
    match p.reason.as_str() {
        "not-allowed" => format!(
            "@{}: not allowed{target}; these people may approve: {}",
            p.actor,
            approvers(&p.allowed_approvers, &p.allowed_teams)
        ),
        "self-approval" => format!("@{}: you cannot approve your own change{target}", p.actor),
        "no-pending-promotion" => format!("@{}: there is no promotion waiting for approval{target}", p.actor),
        "rejected" => format!("@{} rejected the promotion{target}", p.actor),
        other => format!("@{}: approval not counted{target} ({other})", p.actor),
    }
}

fn verification_title(p: &slipway_mesh::v1::VerificationCompleted) -> String {
    match p.verdict.as_str() {
        "successful" => format!("{} passed verification in {}", p.app, p.stage),
        "inconclusive" => format!("Verification of {} in {} is inconclusive", p.app, p.stage),
        verdict => format!("{} failed verification in {} ({verdict})", p.app, p.stage),
    }
}

/// One line per check: its verdict, how many measurements it took and why it ended.
pub fn verification_text(p: &slipway_mesh::v1::VerificationCompleted) -> String {
    let mut lines = vec![format!("{}:", image(p.image.as_ref()))];
    for check in &p.checks {
        let mut line = format!("- {}: {} after {} measurement(s)", check.check, check.verdict, check.measurements);
        if !check.message.is_empty() {
            line = format!("{line} — {}", check.message);
        }
        lines.push(line);
    }
    if p.checks.is_empty() && !p.message.is_empty() {
        lines.push(p.message.clone());
    }
    lines.join("\n")
}

/// A command's name as people type it.
fn command_name(kind: slipway_mesh::v1::CommandKind) -> &'static str {
    use slipway_mesh::v1::CommandKind as K;
    match kind {
        K::Approve | K::Lgtm => "Approval",
        K::Reject => "Rejection",
        K::Hold => "Hold",
        K::Unhold => "Release",
        K::Rollback => "Rollback",
        K::Promote => "Promotion",
        K::Retry => "Retry",
        K::Verify => "Verification",
        K::Unknown | K::Unspecified => "Command",
    }
}

/// The reply to a hold, release, rollback or promote the pipeline refused.
pub fn command_refused_text(p: &slipway_mesh::v1::CommandRefused) -> String {
    let what = command_name(p.command()).to_lowercase();
    let target = if p.app.is_empty() { String::new() } else { format!(" of {} in {}", p.app, or(&p.stage, "?")) };
    match p.reason.as_str() {
        "not-allowed" => format!(
            "@{}: {what}{target} not allowed; these people may: {}",
            p.actor,
            approvers(&p.allowed_approvers, &p.allowed_teams)
        ),
        other => format!("@{}: {what}{target} refused ({other})", p.actor),
    }
}

/// The help text a PR comment gets for a command Slipway does not know.
pub fn help_text(p: &slipway_mesh::v1::ChatopsCommand) -> String {
    format!(
        "@{}: I don't know `{}`. Commands:\n\
         - `/approve [app] [stage]` (or `/lgtm`) — approve the waiting promotion\n\
         - `/reject [app] [stage]` — reject it\n\
         - `/promote <app> <stage> [tag]` — promote now\n\
         - `/rollback <app> <stage>` — roll back to the previous release\n\
         - `/hold <app> <stage>` / `/unhold <app> <stage>` — stop or resume promotions\n\
         - `/verify-stage [app] [stage]` — run the stage's verification checks again\n\
         - `/retry <app>` — build again",
        p.actor,
        p.raw.lines().next().unwrap_or_default()
    )
}

/// The template scope of an event.
#[derive(Debug, Serialize)]
pub struct Context<'a> {
    id: &'a str,
    r#type: &'a str,
    kind: String,
    subject: &'a str,
    source: &'a str,
    time: String,
    app: String,
    stage: String,
    severity: &'static str,
    title: &'a str,
    text: &'a str,
    event: serde_json::Value,
}

impl<'a> Context<'a> {
    /// The scope for `envelope` + `payload` (whose JSON form is `body`) and its default message.
    pub fn new(envelope: &'a Envelope, payload: &Payload, body: &[u8], default: &'a Message) -> Self {
        let (app, stage) = app_stage(payload);
        Self {
            id: envelope.id.as_str(),
            r#type: envelope.kind.ce_type(),
            kind: short_kind(envelope.kind),
            subject: &envelope.subject,
            source: &envelope.source,
            time: envelope.time.to_rfc3339(),
            app,
            stage,
            severity: default.severity.as_str(),
            title: &default.title,
            text: &default.text,
            event: serde_json::from_slice(body).unwrap_or(serde_json::Value::Null),
        }
    }
}

fn environment() -> Environment<'static> {
    let mut env = Environment::new();
    // Messages are not HTML; providers escape what their format needs.
    env.set_auto_escape_callback(|_| minijinja::AutoEscape::None);
    env.set_undefined_behavior(minijinja::UndefinedBehavior::Chainable);
    env
}

/// Checks that `template` compiles (config validation).
pub fn check_template(template: &str) -> crate::error::Result<()> {
    let env = environment();
    Ok(env.template_from_str(template).map(drop)?)
}

/// Renders `template` in `cx`.
pub fn render(template: &str, cx: &Context<'_>) -> crate::error::Result<String> {
    let env = environment();
    Ok(env.render_str(template, minijinja::Value::from(minijinja::value::Serde(cx)))?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use slipway_mesh::EventPayload;
    use slipway_mesh::v1;

    #[test]
    fn a_cut_push_says_how_many_commits_it_had() {
        let commits = vec![v1::Commit::default(); 20];
        let push = v1::SourcePush { pusher: "octocat".into(), commit_count: 2048, commits, ..Default::default() };
        let message = default_message(&push.into_payload());
        assert!(message.text.contains("pushed 2048 commit(s)"), "{}", message.text);
    }

    fn every_kind() -> Vec<Payload> {
        let app = "writer".to_owned();
        let stage = "prod".to_owned();
        vec![
            v1::SourcePush { repository: "acme/mono".into(), ..Default::default() }.into_payload(),
            v1::SourcePullRequest::default().into_payload(),
            v1::SourceTag::default().into_payload(),
            v1::SourceTestGate { conclusion: "failure".into(), ..Default::default() }.into_payload(),
            v1::SourcePing::default().into_payload(),
            v1::ChatopsCommand::default().into_payload(),
            v1::BuildRequested { app: app.clone(), ..Default::default() }.into_payload(),
            v1::BuildStarted { app: app.clone(), ..Default::default() }.into_payload(),
            v1::BuildSucceeded { app: app.clone(), ..Default::default() }.into_payload(),
            v1::BuildFailed { app: app.clone(), ..Default::default() }.into_payload(),
            v1::PromotionRequested { app: app.clone(), stage: stage.clone(), ..Default::default() }.into_payload(),
            v1::PromotionCommitted { app: app.clone(), stage: stage.clone(), ..Default::default() }.into_payload(),
            v1::PromotionSynced { app: app.clone(), stage: stage.clone(), ..Default::default() }.into_payload(),
            v1::PromotionHealthy { app: app.clone(), stage: stage.clone(), ..Default::default() }.into_payload(),
            v1::PromotionDegraded { app: app.clone(), stage: stage.clone(), ..Default::default() }.into_payload(),
            v1::PromotionFailed { app: app.clone(), stage: stage.clone(), ..Default::default() }.into_payload(),
            v1::PromotionRolledBack { app: app.clone(), stage: stage.clone(), ..Default::default() }.into_payload(),
            v1::ApprovalRequested { app: app.clone(), stage: stage.clone(), ..Default::default() }.into_payload(),
            v1::ApprovalGranted { app: app.clone(), stage: stage.clone(), ..Default::default() }.into_payload(),
            v1::ApprovalRejected { app: app.clone(), stage: stage.clone(), ..Default::default() }.into_payload(),
            v1::CommandRefused { app: app.clone(), stage: stage.clone(), ..Default::default() }.into_payload(),
            v1::HoldPlaced { app: app.clone(), stage: stage.clone(), ..Default::default() }.into_payload(),
            v1::HoldReleased { app: app.clone(), stage: stage.clone(), ..Default::default() }.into_payload(),
            v1::NotificationSent::default().into_payload(),
            v1::NotificationFailed::default().into_payload(),
            v1::CatalogPublished::default().into_payload(),
            v1::CatalogRejected::default().into_payload(),
            v1::VerificationRequested { app: app.clone(), stage: stage.clone(), ..Default::default() }.into_payload(),
            v1::VerificationMeasured { app: app.clone(), stage: stage.clone(), ..Default::default() }.into_payload(),
            v1::VerificationCompleted { app: app.clone(), stage: stage.clone(), ..Default::default() }.into_payload(),
            v1::BuildScanned { app: app.clone(), ..Default::default() }.into_payload(),
            v1::BuildScanFailed { app: app.clone(), ..Default::default() }.into_payload(),
            v1::ScanRequested { app: app.clone(), stage: stage.clone(), ..Default::default() }.into_payload(),
        ]
    }

    #[test]
    fn a_scan_message_lists_the_worst_findings() {
        let finding = |id: &str, severity: &str, fixed: &str| v1::Finding {
            id: id.into(),
            package: "libidn2-0".into(),
            installed_version: "2.0.5-1".into(),
            fixed_version: fixed.into(),
            severity: severity.into(),
            link: format!("https://avd.aquasec.com/nvd/{}", id.to_lowercase()),
        };
        let scanned = v1::BuildScanned {
            app: "writer".into(),
            image: Some(v1::ImageRef { repository: "r/writer".into(), tag: "v1".into(), digest: String::new() }),
            scanner: "trivy".into(),
            scanner_version: "0.58.1".into(),
            counts: vec![
                v1::SeverityCount { severity: "CRITICAL".into(), total: 1, fixable: 1 },
                v1::SeverityCount { severity: "LOW".into(), total: 7, fixable: 0 },
            ],
            findings: (0..7)
                .map(|i| {
                    if i == 0 {
                        finding("CVE-2019-18224", "CRITICAL", "2.0.5-1+deb10u1")
                    } else {
                        finding(&format!("CVE-2020-{i}"), "LOW", "")
                    }
                })
                .collect(),
            finding_count: 8,
            ..Default::default()
        }
        .into_payload();
        let m = default_message(&scanned);
        assert_eq!(m.title, "Scan of writer: CRITICAL 1 (1 fixable), LOW 7");
        let lines: Vec<&str> = m.text.lines().collect();
        assert_eq!(lines[0], "r/writer:v1 by trivy 0.58.1");
        assert_eq!(lines[1], "CRITICAL CVE-2019-18224 in libidn2-0 2.0.5-1 (fixed in 2.0.5-1+deb10u1)");
        assert_eq!(lines.len(), 7, "the worst five and the rest counted: {}", m.text);
        assert_eq!(lines[6], "…and 3 more");
        assert_eq!(m.severity, Severity::Warning);
        assert_eq!(m.link.as_deref(), Some("https://avd.aquasec.com/nvd/cve-2019-18224"));
        let failed = v1::BuildScanFailed {
            app: "writer".into(),
            scanner: "trivy".into(),
            reason: "timeout".into(),
            message: "no result within 300s".into(),
            ..Default::default()
        }
        .into_payload();
        let m = default_message(&failed);
        assert_eq!((m.title.as_str(), m.severity), ("Scan of writer failed", Severity::Error));
        assert!(m.text.contains("(timeout): no result within 300s"), "{}", m.text);
    }

    #[test]
    fn a_verification_is_summarized_per_check() {
        let outcome = |check: &str, verdict: &str, n, message: &str| v1::CheckOutcome {
            check: check.into(),
            verdict: verdict.into(),
            measurements: n,
            message: message.into(),
        };
        let failed = v1::VerificationCompleted {
            app: "writer".into(),
            stage: "staging".into(),
            verdict: "failed".into(),
            checks: vec![
                outcome("success-rate", "failed", 3, "failed (3) > failureLimit (2)"),
                outcome("smoke", "successful", 1, ""),
            ],
            ..Default::default()
        };
        let m = default_message(&failed.clone().into_payload());
        assert_eq!((m.title.as_str(), m.severity), ("writer failed verification in staging (failed)", Severity::Error));
        assert!(m.text.contains("- success-rate: failed after 3 measurement(s) — failed (3) > failureLimit (2)"));
        assert!(m.text.contains("- smoke: successful after 1 measurement(s)"), "{}", m.text);
        let passed = v1::VerificationCompleted { verdict: "successful".into(), ..failed };
        assert_eq!(default_message(&passed.into_payload()).severity, Severity::Success);
    }

    #[test]
    fn a_refused_catalog_lists_file_line_key_and_reason() {
        let problem = |line| v1::CatalogProblem {
            file: "teams/payments/slipway.yaml".into(),
            line,
            key: "apps[0].pipeline".into(),
            reason: "pipeline \"fast\" is not defined".into(),
        };
        let refused = v1::CatalogRejected {
            commit_sha: "0123456789abcdef0123456789abcdef01234567".into(),
            problems: (1..=12).map(problem).collect(),
            problem_count: 12,
            in_force_commit: "fedcba".into(),
            ..Default::default()
        };
        let message = default_message(&refused.into_payload());
        assert_eq!(message.severity, Severity::Error);
        assert!(message.text.starts_with("12 problem(s); the revision in force stays"), "{}", message.text);
        assert!(
            message
                .text
                .contains("\nteams/payments/slipway.yaml:3: apps[0].pipeline: pipeline \"fast\" is not defined")
        );
        assert_eq!(message.text.lines().count(), 11, "the first ten problems");
    }

    #[test]
    fn a_refused_rollback_says_so() {
        let p = v1::CommandRefused {
            app: "writer".into(),
            stage: "prod".into(),
            command: v1::CommandKind::Rollback.into(),
            actor: "mallory".into(),
            reason: "not-allowed".into(),
            allowed_approvers: vec!["alice".into()],
            allowed_teams: vec!["sre".into()],
            ..Default::default()
        };
        let message = default_message(&p.into_payload());
        assert_eq!(message.title, "Rollback by mallory refused");
        assert_eq!(message.text, "@mallory: rollback of writer in prod not allowed; these people may: alice, team sre");
        assert_eq!(message.severity, Severity::Warning);
    }

    #[test]
    fn every_kind_has_a_default_message() {
        let all = every_kind();
        let kinds: std::collections::HashSet<_> = all.iter().map(payload_kind).collect();
        assert_eq!(kinds.len(), slipway_mesh::EventKind::ALL.len(), "a kind is missing from this test");
        for p in &all {
            let m = default_message(p);
            assert!(!m.title.trim().is_empty(), "{:?}", payload_kind(p));
        }
        let approval = default_message(&all[17]);
        assert_eq!(approval.approval.map(|a| a.stage), Some("prod".to_owned()));
        assert_eq!(default_message(&all[9]).severity, Severity::Error);
    }

    #[test]
    fn rejections_name_who_may_approve() {
        let p = v1::ApprovalRejected {
            actor: "mallory".into(),
            app: "writer".into(),
            stage: "prod".into(),
            reason: "not-allowed".into(),
            allowed_approvers: vec!["alice".into(), "bob".into()],
            allowed_teams: vec!["acme/release".into()],
            ..Default::default()
        };
        assert_eq!(
            rejected_text(&p),
            "@mallory: not allowed for writer to prod; these people may approve: alice, bob, team acme/release"
        );
    }

    #[test]
    fn templates_see_the_event() {
        let payload = v1::BuildSucceeded {
            app: "writer".into(),
            image: Some(v1::ImageRef { repository: "r/w".into(), tag: "v1".into(), digest: String::new() }),
            ..Default::default()
        };
        let (envelope, body) = slipway_mesh::prepare("/test", &payload).expect("prepare");
        let p = payload.into_payload();
        let m = default_message(&p);
        let cx = Context::new(&envelope, &p, &body, &m);
        let out = render("{{ kind }} {{ app }} {{ event.image.tag }} {{ severity }} <{{ event.nope.deeper }}>", &cx)
            .expect("render");
        assert_eq!(out, "build.succeeded writer v1 success <>");
        assert!(check_template("{{ x").is_err());
    }
}
