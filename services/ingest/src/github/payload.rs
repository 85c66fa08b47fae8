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
    #[serde(default)]
    pub full_name: Option<String>,
}

/// A user, a pusher (`name`, `email`) or a commit author (`name`, `email`, `username`).
#[derive(Debug, Default, Deserialize)]
pub(crate) struct Person {
    #[serde(default)]
    pub login: Option<String>,
    #[serde(default)]
    pub username: Option<String>,
    #[serde(default)]
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
    people.iter().filter_map(|p| p.as_ref()?.handle()).next().unwrap_or_default().to_owned()
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct Push {
    #[serde(default, rename = "ref")]
    pub git_ref: Option<String>,
    #[serde(default)]
    pub before: Option<String>,
    #[serde(default)]
    pub after: Option<String>,
    #[serde(default, deserialize_with = "nullable")]
    pub created: bool,
    #[serde(default, deserialize_with = "nullable")]
    pub deleted: bool,
    #[serde(default, deserialize_with = "nullable")]
    pub forced: bool,
    #[serde(default)]
    pub pusher: Option<Person>,
    #[serde(default)]
    pub sender: Option<Person>,
    #[serde(default)]
    pub repository: Option<Repository>,
    #[serde(default, deserialize_with = "nullable")]
    pub commits: Vec<PushCommit>,
    #[serde(default)]
    pub head_commit: Option<PushCommit>,
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct PushCommit {
    #[serde(default)]
    pub id: Option<String>,
    #[serde(default, deserialize_with = "nullable")]
    pub message: String,
    #[serde(default)]
    pub author: Option<Person>,
    #[serde(default)]
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
    #[serde(default)]
    pub number: Option<u64>,
    #[serde(default)]
    pub pull_request: Option<PullRequest>,
    #[serde(default)]
    pub repository: Option<Repository>,
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct PullRequest {
    #[serde(default)]
    pub number: Option<u64>,
    #[serde(default)]
    pub head: Option<Branch>,
    #[serde(default)]
    pub base: Option<Branch>,
    #[serde(default, deserialize_with = "nullable")]
    pub merged: bool,
    #[serde(default)]
    pub merge_commit_sha: Option<String>,
    #[serde(default)]
    pub user: Option<Person>,
    #[serde(default, deserialize_with = "nullable")]
    pub title: String,
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct Branch {
    #[serde(default, rename = "ref")]
    pub git_ref: Option<String>,
    #[serde(default)]
    pub sha: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct ReleaseEvent {
    #[serde(default, deserialize_with = "nullable")]
    pub action: String,
    #[serde(default)]
    pub release: Option<Release>,
    #[serde(default)]
    pub repository: Option<Repository>,
    #[serde(default)]
    pub sender: Option<Person>,
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct Release {
    #[serde(default)]
    pub tag_name: Option<String>,
    #[serde(default)]
    pub target_commitish: Option<String>,
    #[serde(default)]
    pub author: Option<Person>,
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct WorkflowRunEvent {
    #[serde(default, deserialize_with = "nullable")]
    pub action: String,
    #[serde(default)]
    pub workflow_run: Option<WorkflowRun>,
    #[serde(default)]
    pub workflow: Option<Named>,
    #[serde(default)]
    pub repository: Option<Repository>,
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct WorkflowRun {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub head_sha: Option<String>,
    #[serde(default)]
    pub head_branch: Option<String>,
    #[serde(default)]
    pub conclusion: Option<String>,
    #[serde(default)]
    pub html_url: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct Named {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub slug: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct CheckSuiteEvent {
    #[serde(default, deserialize_with = "nullable")]
    pub action: String,
    #[serde(default)]
    pub check_suite: Option<CheckSuite>,
    #[serde(default)]
    pub repository: Option<Repository>,
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct CheckSuite {
    #[serde(default)]
    pub head_sha: Option<String>,
    #[serde(default)]
    pub head_branch: Option<String>,
    #[serde(default)]
    pub conclusion: Option<String>,
    #[serde(default)]
    pub url: Option<String>,
    #[serde(default)]
    pub app: Option<Named>,
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct Ping {
    #[serde(default)]
    pub zen: Option<String>,
    #[serde(default)]
    pub hook_id: Option<u64>,
    #[serde(default)]
    pub hook: Option<Hook>,
    #[serde(default)]
    pub repository: Option<Repository>,
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct Hook {
    #[serde(default)]
    pub id: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct IssueCommentEvent {
    #[serde(default, deserialize_with = "nullable")]
    pub action: String,
    #[serde(default)]
    pub issue: Option<Issue>,
    #[serde(default)]
    pub comment: Option<Comment>,
    #[serde(default)]
    pub repository: Option<Repository>,
    #[serde(default)]
    pub sender: Option<Person>,
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct Issue {
    #[serde(default)]
    pub number: Option<u64>,
    /// Present (an object) only when the issue is a pull request.
    #[serde(default)]
    pub pull_request: Option<serde::de::IgnoredAny>,
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct Comment {
    #[serde(default)]
    pub body: Option<String>,
    #[serde(default)]
    pub user: Option<Person>,
    #[serde(default)]
    pub html_url: Option<String>,
}
