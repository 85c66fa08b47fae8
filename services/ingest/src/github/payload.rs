//! The parts of GitHub webhook payloads that ingest reads, as lenient serde structs.
//!
//! Everything is optional or defaulted (including JSON `null`, which GitHub sends for many
//! absent values), so real payloads with fields missing still decode; what is essential is
//! checked by the normalizer, which can name what was missing. Unknown fields are ignored.

use serde::{Deserialize, Deserializer};

/// `null` or absent → `T::default()`.
fn nullable<'de, D: Deserializer<'de>, T: Default + Deserialize<'de>>(d: D) -> Result<T, D::Error> {
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct Repository {
    pub full_name: Option<String>,
}

/// A user, a pusher (`name`, `email`) or a commit author (`name`, `email`, `username`).
#[derive(Debug, Default, Deserialize)]
pub(crate) struct Person {
    pub login: Option<String>,
    pub username: Option<String>,
    pub name: Option<String>,
}

impl Person {
    /// The GitHub login when known, else the name.
    pub fn handle(&self) -> Option<&str> {
        [&self.login, &self.username, &self.name].into_iter().flatten().map(String::as_str).find(|s| !s.is_empty())
    }
}

/// The first non-empty handle of several people, or "".
pub(crate) fn handle_of(people: &[&Option<Person>]) -> String {
    // Logins are short; a name is free text, so it is cut to keep events bounded.
    let handle = people.iter().filter_map(|p| p.as_ref()?.handle()).next().unwrap_or_default();
    slipway_mesh::bounds::capped(handle, 256)
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct Push {
    #[serde(default, rename = "ref")]
    pub git_ref: Option<String>,
    pub before: Option<String>,
    pub after: Option<String>,
    #[serde(default, deserialize_with = "nullable")]
    pub created: bool,
    #[serde(default, deserialize_with = "nullable")]
    pub deleted: bool,
    #[serde(default, deserialize_with = "nullable")]
    pub forced: bool,
    pub pusher: Option<Person>,
    pub sender: Option<Person>,
    pub repository: Option<Repository>,
    #[serde(default, deserialize_with = "nullable")]
    pub commits: Vec<PushCommit>,
    pub head_commit: Option<PushCommit>,
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct PushCommit {
    pub id: Option<String>,
    #[serde(default, deserialize_with = "nullable")]
    pub message: String,
    pub author: Option<Person>,
    pub timestamp: Option<String>,
    #[serde(default, deserialize_with = "nullable")]
    pub added: Vec<String>,
    #[serde(default, deserialize_with = "nullable")]
    pub modified: Vec<String>,
    #[serde(default, deserialize_with = "nullable")]
    pub removed: Vec<String>,
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct PullRequestEvent {
    #[serde(default, deserialize_with = "nullable")]
    pub action: String,
    pub number: Option<u64>,
    pub pull_request: Option<PullRequest>,
    pub repository: Option<Repository>,
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct PullRequest {
    pub number: Option<u64>,
    pub head: Option<Branch>,
    pub base: Option<Branch>,
    #[serde(default, deserialize_with = "nullable")]
    pub merged: bool,
    pub merge_commit_sha: Option<String>,
    pub user: Option<Person>,
    #[serde(default, deserialize_with = "nullable")]
    pub title: String,
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct Branch {
    #[serde(default, rename = "ref")]
    pub git_ref: Option<String>,
    pub sha: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct ReleaseEvent {
    #[serde(default, deserialize_with = "nullable")]
    pub action: String,
    pub release: Option<Release>,
    pub repository: Option<Repository>,
    pub sender: Option<Person>,
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct Release {
    pub tag_name: Option<String>,
    pub target_commitish: Option<String>,
    pub author: Option<Person>,
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct WorkflowRunEvent {
    #[serde(default, deserialize_with = "nullable")]
    pub action: String,
    pub workflow_run: Option<WorkflowRun>,
    pub workflow: Option<Named>,
    pub repository: Option<Repository>,
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct WorkflowRun {
    pub name: Option<String>,
    pub head_sha: Option<String>,
    pub head_branch: Option<String>,
    pub conclusion: Option<String>,
    pub html_url: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct Named {
    pub name: Option<String>,
    pub slug: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct CheckSuiteEvent {
    #[serde(default, deserialize_with = "nullable")]
    pub action: String,
    pub check_suite: Option<CheckSuite>,
    pub repository: Option<Repository>,
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct CheckSuite {
    pub head_sha: Option<String>,
    pub head_branch: Option<String>,
    pub conclusion: Option<String>,
    pub url: Option<String>,
    pub app: Option<Named>,
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct Ping {
    pub zen: Option<String>,
    pub hook_id: Option<u64>,
    pub hook: Option<Hook>,
    pub repository: Option<Repository>,
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct Hook {
    pub id: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct IssueCommentEvent {
    #[serde(default, deserialize_with = "nullable")]
    pub action: String,
    pub issue: Option<Issue>,
    pub comment: Option<Comment>,
    pub repository: Option<Repository>,
    pub sender: Option<Person>,
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct Issue {
    pub number: Option<u64>,
    /// Present (an object) only when the issue is a pull request.
    pub pull_request: Option<serde::de::IgnoredAny>,
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct Comment {
    pub body: Option<String>,
    pub user: Option<Person>,
    pub html_url: Option<String>,
}
