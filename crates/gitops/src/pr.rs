//! PR mode: an update is committed onto a new branch `slipway/<app>-<stage>-<hash>` cut from the
//! target branch's head and pushed (creating that branch; never a forced push), then a pull
//! request from it into the target branch is opened through GitHub's REST API.
//!
//! Both halves are idempotent by promotion id, so a redelivered promotion opens nothing twice:
//! the branch name derives from the id and a retry finds the branch already carrying the
//! `Slipway-Promotion-Id` trailer, and GitHub's 422 "A pull request already exists" is answered
//! by looking up the open pull request of that branch.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use git2::{Oid, Repository};
use reqwest::StatusCode;
use serde::Deserialize;
use slipway_mesh::names::EnvName;
use slipway_runtime::config::Secret;

use super::writer::{Counters, WriterConfig};
use super::{Error, GitopsWriter, Landed, Outcome, RepoKey, Result, Update, message, repo};

/// Where the promotion landed in PR mode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Proposed {
    /// The branch holding `commit`: the pull request's head, or the target branch itself when
    /// there was nothing to propose (the promotion is already there, or the file already holds
    /// these values).
    pub branch: String,
    pub commit: String,
    /// The pull request, when one was needed.
    pub pull_request: Option<PullRequest>,
}

/// PR mode for the stages that asked for it: the branch writer plus the GitHub client.
#[derive(Debug)]
pub struct PullRequests {
    stages: HashSet<EnvName>,
    branches: BranchWriter,
    github: GitHub,
}

impl PullRequests {
    /// PR mode for `stages`, writing with `writer`'s settings (in clones of their own).
    pub fn new(writer: &GitopsWriter, github: GitHub, stages: impl IntoIterator<Item = EnvName>) -> Self {
        let (config, counters) = writer.shared();
        let branches = BranchWriter { config, counters, clones: Mutex::default() };
        PullRequests { stages: stages.into_iter().collect(), branches, github }
    }

    /// True when `stage` promotes through pull requests.
    pub fn applies_to(&self, stage: &EnvName) -> bool {
        self.stages.contains(stage)
    }

    /// Commits `update` onto its own branch of `target` and opens (or finds) the pull request
    /// into `target.branch` in the GitHub repository `repository` (`owner/name`).
    pub async fn propose(&self, target: &RepoKey, repository: &str, update: Update) -> Result<Proposed> {
        let (title, body) = pull_request_text(&self.branches.config.message_template, &update);
        let (branch, landed) = self.branches.write(target, update).await?;
        let Some(branch) = branch else {
            return Ok(Proposed { branch: target.branch.clone(), commit: landed.commit, pull_request: None });
        };
        let spec = NewPullRequest { repository, title: &title, head: &branch, base: &target.branch, body: &body };
        let pull_request = self.github.open_pull_request(&spec).await?;
        tracing::info!(branch, url = %pull_request.html_url, "pull request open");
        Ok(Proposed { branch, commit: landed.commit, pull_request: Some(pull_request) })
    }
}

/// The branch a promotion's pull request comes from: `slipway/<app>-<stage>-<12 hex>`, the
/// hex being a hash of the promotion id, so the name is short, valid and the same on a retry.
pub fn branch_name(update: &Update) -> String {
    // FNV-1a, like the clone cache: stable across runs and Rust versions.
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for b in update.promotion_id.bytes() {
        hash = (hash ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
    }
    format!("slipway/{}-{}-{:012x}", update.app, update.stage, hash & 0xffff_ffff_ffff)
}

/// Title (the commit subject) and body of the pull request for `update`.
pub fn pull_request_text(template: &str, update: &Update) -> (String, String) {
    let title = message::subject(template, update);
    let mut body = format!(
        "Slipway promotes `{}` to `{}`.\n\n- promotion: `{}`\n- image: `{}`\n- file: `{}`\n",
        update.app,
        update.stage,
        update.promotion_id,
        update.change.label(),
        update.target.file(),
    );
    if let Some(source) = &update.source_commit {
        body.push_str(&format!("- source commit: `{source}`\n"));
    }
    body.push_str("\nMerging this pull request deploys the change.\n");
    (title, body)
}

/// Writes PR branches; one cached clone per target repository branch, used by one write at a
/// time. The branches are new and per promotion, so they need no queue of their own.
struct BranchWriter {
    config: Arc<WriterConfig>,
    counters: Arc<Counters>,
    clones: Mutex<HashMap<RepoKey, Arc<Mutex<Option<Repository>>>>>,
}

impl std::fmt::Debug for BranchWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BranchWriter").field("work_dir", &self.config.work_dir).finish_non_exhaustive()
    }
}

impl BranchWriter {
    /// The PR branch (`None`: nothing to propose) and what landed.
    async fn write(&self, target: &RepoKey, update: Update) -> Result<(Option<String>, Landed)> {
        update.validate()?;
        let branch = RepoKey::new(target.url.clone(), branch_name(&update))?;
        let slot =
            self.clones.lock().unwrap_or_else(PoisonError::into_inner).entry(target.clone()).or_default().clone();
        let (config, counters, target) = (self.config.clone(), self.counters.clone(), target.clone());
        tokio::task::spawn_blocking(move || {
            let mut slot = slot.lock().unwrap_or_else(PoisonError::into_inner);
            write_branch(&mut slot, &config, &counters, &target, &branch, &update)
        })
        .await
        .map_err(|e| Error::Git { op: "worker", message: e.to_string() })?
    }
}

/// How one attempt ended.
enum Step {
    Done(Option<String>, Landed),
    Retry(String),
}

fn write_branch(
    slot: &mut Option<Repository>,
    config: &WriterConfig,
    counters: &Counters,
    target: &RepoKey,
    branch: &RepoKey,
    update: &Update,
) -> Result<(Option<String>, Landed)> {
    if slot.is_none() {
        *slot = Some(repo::open(&config.work_dir.join("pull-requests"), target)?);
    }
    let Some(repo) = slot.as_ref() else { return Err(Error::Closed) };
    let mut last = String::new();
    for attempt in 1..=config.push_attempts.max(1) {
        if attempt > 1 {
            std::thread::sleep(repo::backoff(config.backoff, attempt, rand::random()));
        }
        match attempt_branch(repo, config, target, branch, update)? {
            Step::Done(branch, landed) => {
                counters.committed(landed.outcome == Outcome::Committed);
                return Ok((branch, landed));
            }
            Step::Retry(reason) => {
                tracing::info!(attempt, %reason, branch = %branch.branch, "pull request branch push failed; retrying");
                counters.retried();
                last = reason;
            }
        }
    }
    Err(Error::PushFailed { branch: branch.branch.clone(), attempts: config.push_attempts, last })
}

/// Fetch the target head, reuse the branch of an earlier attempt, or commit and push a new one.
fn attempt_branch(
    repo: &Repository,
    config: &WriterConfig,
    target: &RepoKey,
    branch: &RepoKey,
    update: &Update,
) -> Result<Step> {
    let base = match repo::fetch(repo, target) {
        Ok(head) => head,
        Err(e @ Error::BranchMissing { .. }) => return Err(e),
        Err(e) => return Ok(Step::Retry(e.to_string())),
    };
    match repo::fetch(repo, branch) {
        Ok(head) if carries(repo, head, config.history_depth, &update.promotion_id)? => {
            let landed = Landed { commit: head.to_string(), outcome: Outcome::AlreadyLanded };
            return Ok(Step::Done(Some(branch.branch.clone()), landed));
        }
        Ok(_) => {
            let reason = format!("{} exists without promotion {}", branch.branch, update.promotion_id);
            return Err(Error::invalid("pull request branch", reason));
        }
        Err(Error::BranchMissing { .. }) => {}
        Err(e) => return Ok(Step::Retry(e.to_string())),
    }
    let updates = std::slice::from_ref(update);
    let landed = repo::landed_ids(repo, base, config.history_depth)?;
    let plan = repo::Plan::make(repo, base, &landed, updates)?;
    let Some(tree) = plan.tree else {
        // Already on the target branch (an earlier pull request was merged) or nothing to
        // change: there is nothing to propose.
        let landed = plan.results(base, base).into_iter().next().unwrap_or(Err(Error::Closed))?;
        return Ok(Step::Done(None, landed));
    };
    let commit = repo::commit(repo, config, base, tree, &plan.committed(updates))?;
    // `push` never forces; creating a branch is a plain update of a ref that did not exist.
    Ok(match repo::push(repo, branch, None, commit, None) {
        Ok(()) => {
            Step::Done(Some(branch.branch.clone()), Landed { commit: commit.to_string(), outcome: Outcome::Committed })
        }
        Err(reason) => Step::Retry(reason),
    })
}

fn carries(repo: &Repository, head: Oid, depth: usize, promotion_id: &str) -> Result<bool> {
    Ok(repo::landed_ids(repo, head, depth)?.contains_key(promotion_id))
}

/// A pull request as GitHub answers it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct PullRequest {
    pub number: u64,
    pub html_url: String,
}

/// What [`GitHub::open_pull_request`] opens.
#[derive(Debug, Clone, Copy)]
pub struct NewPullRequest<'a> {
    /// `owner/name`.
    pub repository: &'a str,
    pub title: &'a str,
    /// The branch with the change (same repository).
    pub head: &'a str,
    /// The branch to merge into.
    pub base: &'a str,
    pub body: &'a str,
}

/// GitHub's REST API, as much of it as PR mode needs.
#[derive(Debug, Clone)]
pub struct GitHub {
    http: reqwest::Client,
    api_url: String,
    token: Secret,
}

impl GitHub {
    /// A client for `api_url` (`https://api.github.com`, or an Enterprise `/api/v3` URL).
    pub fn new(api_url: &str, token: Secret) -> Result<Self> {
        let http = reqwest::Client::builder()
            .user_agent(concat!("slipway-promoter/", env!("CARGO_PKG_VERSION")))
            .timeout(Duration::from_secs(30))
            .build()
            .map_err(|e| Error::invalid("github client", e.to_string()))?;
        Ok(GitHub { http, api_url: api_url.trim_end_matches('/').to_owned(), token })
    }

    /// Opens the pull request; when one from `head` is already open, answers that one.
    pub async fn open_pull_request(&self, spec: &NewPullRequest<'_>) -> Result<PullRequest> {
        let url = format!("{}/repos/{}/pulls", self.api_url, spec.repository);
        let body = serde_json::json!({ "title": spec.title, "head": spec.head, "base": spec.base, "body": spec.body });
        let response = self.authorized(self.http.post(&url)).json(&body).send().await.map_err(transport)?;
        let status = response.status();
        if status.is_success() {
            return response.json().await.map_err(transport);
        }
        let text = response.text().await.unwrap_or_default();
        if status == StatusCode::UNPROCESSABLE_ENTITY && text.contains("already exists") {
            return self.find_open(spec).await?.ok_or_else(|| Error::Api {
                message: format!("GitHub says a pull request from {} exists, but none is open", spec.head),
                permanent: false,
            });
        }
        Err(api_error("open pull request", status, &text))
    }

    /// The open pull request from `spec.head`, if any.
    async fn find_open(&self, spec: &NewPullRequest<'_>) -> Result<Option<PullRequest>> {
        let url = format!("{}/repos/{}/pulls", self.api_url, spec.repository);
        let owner = spec.repository.split('/').next().unwrap_or_default();
        let head = format!("{owner}:{}", spec.head);
        let query = [("head", head.as_str()), ("state", "open")];
        let response = self.authorized(self.http.get(&url)).query(&query).send().await.map_err(transport)?;
        let status = response.status();
        if !status.is_success() {
            let text = response.text().await.unwrap_or_default();
            return Err(api_error("list pull requests", status, &text));
        }
        let open: Vec<PullRequest> = response.json().await.map_err(transport)?;
        Ok(open.into_iter().next())
    }

    fn authorized(&self, request: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        request
            .bearer_auth(self.token.expose())
            .header(reqwest::header::ACCEPT, "application/vnd.github+json")
            .header("X-GitHub-Api-Version", "2022-11-28")
    }
}

/// Unreachable, timed out or unreadable: worth a retry.
fn transport(e: reqwest::Error) -> Error {
    Error::Api { message: format!("GitHub API: {}", e.without_url()), permanent: false }
}

/// Rate limits and server errors pass; other refusals (bad token, unknown repository or
/// branch) will be refused again.
fn api_error(op: &str, status: StatusCode, body: &str) -> Error {
    let permanent = !(status.is_server_error()
        || status == StatusCode::TOO_MANY_REQUESTS
        || (status == StatusCode::FORBIDDEN && body.contains("rate limit")));
    let body: String = body.chars().take(300).collect();
    Error::Api { message: format!("GitHub API {op}: {status}: {body}"), permanent }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ImageChange, Target};
    use slipway_mesh::names::{AppName, ImageTag};

    fn update(id: &str) -> Update {
        Update {
            promotion_id: id.into(),
            app: AppName::parse("web").expect("app"),
            stage: EnvName::parse("prod").expect("env"),
            source_commit: None,
            target: Target::Kustomize { file: "envs/prod/kustomization.yaml".into(), image: "web".into() },
            change: ImageChange { tag: Some(ImageTag::parse("v1.2.3").expect("tag")), ..ImageChange::default() },
        }
    }

    #[test]
    fn branch_names_are_stable_valid_and_per_promotion() {
        let a = branch_name(&update("p-0190.prod"));
        assert_eq!(a, branch_name(&update("p-0190.prod")));
        assert_ne!(a, branch_name(&update("p-0191.prod")));
        assert!(a.starts_with("slipway/web-prod-") && a.len() == "slipway/web-prod-".len() + 12, "{a}");
        assert!(git2::Reference::is_valid_name(&format!("refs/heads/{a}")));
    }

    #[test]
    fn the_pull_request_names_the_promotion() {
        let (title, body) = pull_request_text(message::DEFAULT_TEMPLATE, &update("p-1.prod"));
        assert_eq!(title, "chore(web): promote v1.2.3 to prod");
        assert!(body.contains("`p-1.prod`") && body.contains("envs/prod/kustomization.yaml"), "{body}");
    }

    #[test]
    fn refusals_are_permanent_unless_rate_limited_or_server_side() {
        let permanent = |status, body| matches!(api_error("x", status, body), Error::Api { permanent: true, .. });
        assert!(permanent(StatusCode::UNAUTHORIZED, "Bad credentials"));
        assert!(permanent(StatusCode::UNPROCESSABLE_ENTITY, "Validation Failed"));
        assert!(!permanent(StatusCode::BAD_GATEWAY, ""));
        assert!(!permanent(StatusCode::FORBIDDEN, "API rate limit exceeded"));
    }
}
