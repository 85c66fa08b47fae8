//! GitHub's REST API: commit statuses for builds, deployment statuses for promotions, and PR
//! comments that answer chatops (help for an unknown command; who may approve when an
//! approval did not count).
//!
//! Builds set `slipway/build/<app>` on their commit (`pending` → `success` / `failure`); a
//! pushed app catalog sets `slipway/catalog` on its commit (`success` once in force,
//! `failure` with the first problem when refused).
//! Promotions report on a GitHub deployment per promotion: `promotion.requested` creates it
//! (`POST /repos/{o}/{r}/deployments`, answered with its `id`, remembered by the dispatcher)
//! and later promotion events post its statuses
//! (`POST /repos/{o}/{r}/deployments/{id}/statuses`). Other events are skipped.

use super::{Input, Plan, Request, clip};
use crate::destination::Destination;
use serde_json::{Value, json};
use slipway_mesh::v1::event::Payload;
use slipway_mesh::v1::{ApprovalRejected, ChatopsCommand, CommandKind};

/// The repository of an event, or the destination's fallback.
fn repo<'a>(d: &'a Destination, from_event: &'a str) -> Option<&'a str> {
    if from_event.is_empty() { d.repository.as_deref() } else { Some(from_event) }
}

fn api(d: &Destination, method: reqwest::Method, path: &str, body: &Value, action: &'static str) -> Request {
    let token = d.token.as_ref().map(|t| t.expose()).unwrap_or_default();
    Request {
        method,
        url: format!("{}{path}", d.url.expose()),
        headers: vec![
            ("authorization", format!("Bearer {token}")),
            ("accept", "application/vnd.github+json".to_owned()),
            ("x-github-api-version", "2022-11-28".to_owned()),
            ("user-agent", "slipway-notifier".to_owned()),
        ],
        body: serde_json::to_vec(body).unwrap_or_default(),
        action,
    }
}

fn status(input: &Input<'_>, repository: &str, sha: &str, state: &str, app: &str) -> Plan {
    commit_status(input, repository, sha, state, &format!("slipway/build/{app}"), &input.message.title)
}

fn commit_status(
    input: &Input<'_>,
    repository: &str,
    sha: &str,
    state: &str,
    context: &str,
    description: &str,
) -> Plan {
    let Some(repository) = repo(input.destination, repository) else {
        return Plan::Skip("no repository");
    };
    if sha.is_empty() {
        return Plan::Skip("no commit");
    }
    let mut body = json!({ "state": state, "context": context, "description": clip(description, 140) });
    if let Some(link) = &input.message.link {
        body["target_url"] = json!(link);
    }
    let path = format!("/repos/{repository}/statuses/{sha}");
    Plan::Send(api(input.destination, reqwest::Method::POST, &path, &body, "commit status"))
}

fn comment(input: &Input<'_>, repository: &str, number: u64) -> Plan {
    let Some(repository) = repo(input.destination, repository) else {
        return Plan::Skip("no repository");
    };
    if number == 0 {
        return Plan::Skip("not on a pull request");
    }
    let path = format!("/repos/{repository}/issues/{number}/comments");
    let body = json!({ "body": clip(&input.message.text, 65_000) });
    Plan::Send(api(input.destination, reqwest::Method::POST, &path, &body, "pr comment"))
}

fn chatops_reply(input: &Input<'_>, c: &ChatopsCommand) -> Plan {
    if c.kind() != CommandKind::Unknown {
        return Plan::Skip("command needs no reply");
    }
    comment(input, &c.repository, c.pull_request)
}

fn rejected_reply(input: &Input<'_>, r: &ApprovalRejected) -> Plan {
    comment(input, &r.repository, r.pull_request)
}

/// A deployment to create (`promotion.requested`).
pub fn create_deployment(
    d: &Destination,
    repository: &str,
    sha: &str,
    stage: &str,
    app: &str,
    id: &str,
) -> Option<Request> {
    let repository = repo(d, repository)?;
    if sha.is_empty() {
        return None;
    }
    let body = json!({
        "ref": sha, "environment": stage, "auto_merge": false, "required_contexts": [],
        "description": format!("slipway: {app} to {stage}"), "payload": { "promotion_id": id, "app": app },
        "transient_environment": false, "production_environment": stage == "prod" || stage == "production",
    });
    Some(api(d, reqwest::Method::POST, &format!("/repos/{repository}/deployments"), &body, "deployment"))
}

/// The deployment state a promotion event maps to, and its promotion id.
pub fn deployment_state(payload: &Payload) -> Option<(&str, &'static str)> {
    use Payload as P;
    Some(match payload {
        P::PromotionCommitted(p) => (p.promotion_id.as_str(), "in_progress"),
        P::PromotionSynced(p) => (p.promotion_id.as_str(), "in_progress"),
        P::PromotionHealthy(p) => (p.promotion_id.as_str(), "success"),
        P::PromotionDegraded(p) => (p.promotion_id.as_str(), "failure"),
        P::VerificationCompleted(p) if p.verdict != "successful" && p.verdict != "inconclusive" => {
            (p.promotion_id.as_str(), "failure")
        }
        P::PromotionFailed(p) => (p.promotion_id.as_str(), "failure"),
        P::PromotionRolledBack(p) => (p.promotion_id.as_str(), "inactive"),
        _ => return None,
    })
}

/// A status of a known deployment.
pub fn deployment_status(input: &Input<'_>, repository: &str, deployment_id: i64, state: &str) -> Request {
    let mut body = json!({ "state": state, "description": clip(&input.message.title, 140) });
    if let Some(link) = &input.message.link {
        body["log_url"] = json!(link);
    }
    let path = format!("/repos/{repository}/deployments/{deployment_id}/statuses");
    api(input.destination, reqwest::Method::POST, &path, &body, "deployment status")
}

/// What GitHub gets for an event (deployments are planned by the dispatcher, which keeps
/// their ids; see [`create_deployment`] and [`deployment_status`]).
pub fn plan(input: &Input<'_>) -> Plan {
    use Payload as P;
    let fallback = input.destination.repository.as_deref().unwrap_or_default();
    match input.payload {
        P::BuildRequested(b) => {
            let (r, sha) =
                b.source.as_ref().map(|s| (s.repository.as_str(), s.commit_sha.as_str())).unwrap_or_default();
            status(input, r, sha, "pending", &b.app)
        }
        P::BuildStarted(b) => status(input, fallback, &b.commit_sha, "pending", &b.app),
        P::BuildSucceeded(b) => {
            let (r, sha) =
                b.source.as_ref().map(|s| (s.repository.as_str(), s.commit_sha.as_str())).unwrap_or_default();
            status(input, r, sha, "success", &b.app)
        }
        P::BuildFailed(b) if b.reason == "superseded" => Plan::Skip("superseded build"),
        P::BuildFailed(b) => status(input, fallback, &b.commit_sha, "failure", &b.app),
        P::ChatopsCommand(c) => chatops_reply(input, c),
        P::ApprovalRejected(r) => rejected_reply(input, r),
        P::CommandRefused(r) => comment(input, &r.repository, r.pull_request),
        P::CatalogPublished(c) => commit_status(
            input,
            &c.github_repository,
            &c.commit_sha,
            "success",
            "slipway/catalog",
            &input.message.title,
        ),
        P::CatalogRejected(c) => {
            let first = c.problems.first().map(|p| format!("{}:{}: {}: {}", p.file, p.line, p.key, p.reason));
            let description = first.unwrap_or_else(|| input.message.title.clone());
            commit_status(input, &c.github_repository, &c.commit_sha, "failure", "slipway/catalog", &description)
        }
        _ => Plan::Skip("nothing to report to GitHub"),
    }
}
