//! GitHub webhook payloads → Slipway source events.
//!
//! [`normalize`] takes the `X-GitHub-Event` name, the `X-GitHub-Delivery` id and the raw
//! (already verified) body and yields one [`Normalized`] value: a proto event to publish, a
//! comment for the chatops parser, or a counted ignore. Malformed JSON, or JSON without what
//! an event needs, is a [`DecodeError`] whose message can go back to GitHub in a 400. Repository
//! names and commit ids are validated here, so nothing downstream sees raw text where a
//! validated name is expected. Never panics, whatever the input.

mod commits;
mod payload;

pub use commits::{Conventional, conventional, skip_ci};

use payload::{Repository, handle_of};
use serde::de::DeserializeOwned;
use slipway_mesh::names::{CommitSha, RepoName};
use slipway_mesh::v1;

/// What one webhook delivery means to Slipway.
#[derive(Debug, Clone, PartialEq)]
pub enum Normalized {
    /// A branch push (boxed: it is by far the largest variant).
    Push(Box<v1::SourcePush>),
    /// A tag push (`refs/tags/...`, including tag deletion) or a published release.
    Tag(v1::SourceTag),
    /// A pull request opened, synchronized, closed (merged or not) or reopened.
    PullRequest(v1::SourcePullRequest),
    /// A completed workflow run or check suite.
    TestGate(v1::SourceTestGate),
    /// The hook set-up ping.
    Ping(v1::SourcePing),
    /// An issue or PR comment, created or edited: input for the chatops parser.
    Comment(CommentEvent),
    /// A delivery Slipway does not act on: an unknown event type or an action it does not use.
    Ignored {
        /// The `X-GitHub-Event` name.
        event: String,
        /// Why, for logs and the ignore counter's label.
        reason: String,
    },
}

/// An `issue_comment` created or edited.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommentEvent {
    /// The `X-GitHub-Delivery` id.
    pub delivery_id: String,
    pub repository: RepoName,
    /// The comment author's login.
    pub actor: String,
    pub body: String,
    /// The issue or pull request number.
    pub number: u64,
    /// True when the issue is a pull request.
    pub is_pull_request: bool,
    pub comment_url: String,
    /// True for an edit (the body is the new text).
    pub edited: bool,
}

/// A payload that cannot be read; the message is safe to return to the sender.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// Not JSON, or JSON of the wrong shape.
    #[error("malformed {event} payload: {message}")]
    Json { event: String, message: String },
    /// Well-formed JSON that lacks, or has an invalid, essential field.
    #[error("invalid {event} payload: {field}: {reason}")]
    Invalid { event: String, field: &'static str, reason: String },
}

/// Events (and their actions) that Slipway turns into something; the rest is ignored.
pub const HANDLED_EVENTS: [&str; 7] =
    ["push", "pull_request", "release", "workflow_run", "check_suite", "ping", "issue_comment"];

/// Normalizes one delivery. See the module doc.
pub fn normalize(event: &str, delivery_id: &str, body: &[u8]) -> Result<Normalized, DecodeError> {
    let cx = Cx { event, delivery_id };
    match event {
        "push" => cx.push(cx.decode(body)?),
        "pull_request" => cx.pull_request(cx.decode(body)?),
        "release" => cx.release(cx.decode(body)?),
        "workflow_run" => cx.workflow_run(cx.decode(body)?),
        "check_suite" => cx.check_suite(cx.decode(body)?),
        "ping" => cx.ping(cx.decode(body)?),
        "issue_comment" => cx.issue_comment(cx.decode(body)?),
        _ => {
            // Still require JSON: a garbage body is a bad request whatever the event says.
            cx.decode::<serde::de::IgnoredAny>(body)?;
            Ok(cx.ignored(format!("event type {} is not used", printable(event))))
        }
    }
}

/// The delivery being normalized, for error messages and ids.
struct Cx<'a> {
    event: &'a str,
    delivery_id: &'a str,
}

impl Cx<'_> {
    fn decode<T: DeserializeOwned>(&self, body: &[u8]) -> Result<T, DecodeError> {
        // Only objects: `null` or `[]` would otherwise decode into all-default structs.
        if body.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
            return Err(DecodeError::Json { event: self.event_name(), message: "expected a JSON object".into() });
        }
        serde_json::from_slice(body).map_err(|e| DecodeError::Json { event: self.event_name(), message: e.to_string() })
    }

    fn event_name(&self) -> String {
        printable(self.event)
    }

    fn invalid(&self, field: &'static str, reason: impl Into<String>) -> DecodeError {
        DecodeError::Invalid { event: self.event_name(), field, reason: reason.into() }
    }

    fn ignored(&self, reason: impl Into<String>) -> Normalized {
        Normalized::Ignored { event: self.event_name(), reason: reason.into() }
    }

    fn ignored_action(&self, action: &str) -> Normalized {
        self.ignored(format!("action {:?} is not used", printable(action)))
    }

    fn repo(&self, repository: &Option<Repository>) -> Result<RepoName, DecodeError> {
        let name = repository.as_ref().and_then(|r| r.full_name.as_deref());
        let name = name.ok_or_else(|| self.invalid("repository.full_name", "missing"))?;
        RepoName::parse(name).map_err(|e| self.invalid("repository.full_name", e.to_string()))
    }

    /// A required commit id.
    fn sha(&self, field: &'static str, value: Option<&str>) -> Result<String, DecodeError> {
        let value = value.ok_or_else(|| self.invalid(field, "missing"))?;
        CommitSha::parse(value).map(String::from).map_err(|e| self.invalid(field, e.to_string()))
    }

    /// An optional commit id: absent, null or "" → "".
    fn opt_sha(&self, field: &'static str, value: Option<&str>) -> Result<String, DecodeError> {
        match value {
            None | Some("") => Ok(String::new()),
            some => self.sha(field, some),
        }
    }

    /// A pull request's branch name (empty when GitHub sent none), which git must accept.
    fn branch(&self, field: &'static str, name: String) -> Result<String, DecodeError> {
        if !name.is_empty() && !valid_ref_name(&name) {
            return Err(self.invalid(field, format!("{:?} is not a git ref name", printable(&name))));
        }
        Ok(name)
    }

    fn push(&self, p: payload::Push) -> Result<Normalized, DecodeError> {
        let repository = self.repo(&p.repository)?;
        let git_ref = p.git_ref.as_deref().ok_or_else(|| self.invalid("ref", "missing"))?;
        let before = self.opt_sha("before", p.before.as_deref())?;
        let after = self.sha("after", p.after.as_deref())?;
        let pusher = handle_of(&[&p.pusher, &p.sender]);
        let name = git_ref.strip_prefix("refs/tags/").or_else(|| git_ref.strip_prefix("refs/heads/"));
        if name.is_some_and(|n| !valid_ref_name(n)) {
            return Err(self.invalid("ref", format!("{:?} is not a git ref name", printable(git_ref))));
        }
        if let Some(tag) = git_ref.strip_prefix("refs/tags/") {
            // A deleted tag pointed at `before`; `after` is all zeros then.
            let commit_sha = if p.deleted { before } else { after };
            return Ok(Normalized::Tag(v1::SourceTag {
                delivery_id: self.delivery_id.to_owned(),
                repository: repository.into(),
                tag: tag.to_owned(),
                commit_sha,
                release: false,
                semver: semver_of(tag),
                actor: pusher,
                deleted: p.deleted,
            }));
        }
        if !git_ref.starts_with("refs/heads/") {
            return Ok(self.ignored(format!("push to {:?} is neither a branch nor a tag", printable(git_ref))));
        }
        let head_message = p.head_commit.as_ref().or(p.commits.last()).map(|c| c.message.as_str());
        let skip_ci = head_message.is_some_and(skip_ci);
        let commits = p.commits.into_iter().map(|c| self.commit(c)).collect::<Result<Vec<_>, _>>()?;
        Ok(Normalized::Push(Box::new(v1::SourcePush {
            delivery_id: self.delivery_id.to_owned(),
            repository: repository.into(),
            r#ref: git_ref.to_owned(),
            before,
            after,
            created: p.created,
            deleted: p.deleted,
            forced: p.forced,
            pusher,
            commits,
            changed_apps: Vec::new(),
            skip_ci,
            // Filled by `cut::cut_push` once the apps are matched.
            ..Default::default()
        })))
    }

    /// Moves the commit's strings over: a push of many commits is the largest payload.
    fn commit(&self, c: payload::PushCommit) -> Result<v1::Commit, DecodeError> {
        let conv = conventional(&c.message);
        Ok(v1::Commit {
            sha: self.sha("commits[].id", c.id.as_deref())?,
            author: handle_of(&[&c.author]),
            message: c.message,
            added: c.added,
            modified: c.modified,
            removed: c.removed,
            conventional_type: conv.kind,
            conventional_scope: conv.scope,
            breaking: conv.breaking,
            timestamp: c.timestamp.as_deref().and_then(timestamp),
            ..Default::default()
        })
    }

    fn pull_request(&self, e: payload::PullRequestEvent) -> Result<Normalized, DecodeError> {
        use v1::PullRequestAction as A;
        let action = match e.action.as_str() {
            "opened" => A::Opened,
            "synchronize" => A::Synchronize,
            "closed" => A::Closed,
            "reopened" => A::Reopened,
            other => return Ok(self.ignored_action(other)),
        };
        let repository = self.repo(&e.repository)?;
        let pr = e.pull_request.ok_or_else(|| self.invalid("pull_request", "missing"))?;
        let number = e.number.or(pr.number).ok_or_else(|| self.invalid("number", "missing"))?;
        let head = pr.head.unwrap_or_default();
        let merged = pr.merged;
        let head_ref = self.branch("pull_request.head.ref", head.git_ref.unwrap_or_default())?;
        let base_ref = self.branch("pull_request.base.ref", pr.base.and_then(|b| b.git_ref).unwrap_or_default())?;
        Ok(Normalized::PullRequest(v1::SourcePullRequest {
            delivery_id: self.delivery_id.to_owned(),
            repository: repository.into(),
            number,
            action: action as i32,
            head_sha: self.sha("pull_request.head.sha", head.sha.as_deref())?,
            head_ref,
            base_ref,
            merged,
            // GitHub fills merge_commit_sha with a test-merge commit on unmerged PRs too;
            // only a merged PR's is a real commit on the base branch.
            merge_commit_sha: if merged {
                self.opt_sha("pull_request.merge_commit_sha", pr.merge_commit_sha.as_deref())?
            } else {
                String::new()
            },
            author: handle_of(&[&pr.user]),
            title: pr.title,
        }))
    }

    fn release(&self, e: payload::ReleaseEvent) -> Result<Normalized, DecodeError> {
        if e.action != "published" {
            return Ok(self.ignored_action(&e.action));
        }
        let repository = self.repo(&e.repository)?;
        let release = e.release.ok_or_else(|| self.invalid("release", "missing"))?;
        let tag = release.tag_name.filter(|t| !t.is_empty());
        let tag = tag.ok_or_else(|| self.invalid("release.tag_name", "missing"))?;
        if !valid_ref_name(&tag) {
            return Err(self.invalid("release.tag_name", format!("{:?} is not a git tag name", printable(&tag))));
        }
        // target_commitish is usually a branch name; keep it only when it is a commit id.
        let commit_sha = release.target_commitish.as_deref().and_then(|t| CommitSha::parse(t).ok()).map(String::from);
        Ok(Normalized::Tag(v1::SourceTag {
            delivery_id: self.delivery_id.to_owned(),
            repository: repository.into(),
            semver: semver_of(&tag),
            tag,
            commit_sha: commit_sha.unwrap_or_default(),
            release: true,
            actor: handle_of(&[&e.sender, &release.author]),
            deleted: false,
        }))
    }

    fn workflow_run(&self, e: payload::WorkflowRunEvent) -> Result<Normalized, DecodeError> {
        if e.action != "completed" {
            return Ok(self.ignored_action(&e.action));
        }
        let repository = self.repo(&e.repository)?;
        let run = e.workflow_run.ok_or_else(|| self.invalid("workflow_run", "missing"))?;
        let name = [run.name, e.workflow.and_then(|w| w.name)].into_iter().flatten().find(|n| !n.is_empty());
        Ok(Normalized::TestGate(v1::SourceTestGate {
            delivery_id: self.delivery_id.to_owned(),
            repository: repository.into(),
            commit_sha: self.sha("workflow_run.head_sha", run.head_sha.as_deref())?,
            kind: v1::TestGateKind::WorkflowRun as i32,
            name: name.unwrap_or_default(),
            conclusion: run.conclusion.unwrap_or_default(),
            head_branch: run.head_branch.unwrap_or_default(),
            url: run.html_url.unwrap_or_default(),
        }))
    }

    fn check_suite(&self, e: payload::CheckSuiteEvent) -> Result<Normalized, DecodeError> {
        if e.action != "completed" {
            return Ok(self.ignored_action(&e.action));
        }
        let repository = self.repo(&e.repository)?;
        let suite = e.check_suite.ok_or_else(|| self.invalid("check_suite", "missing"))?;
        let app = suite.app.unwrap_or_default();
        let name = [app.slug, app.name].into_iter().flatten().find(|n| !n.is_empty());
        Ok(Normalized::TestGate(v1::SourceTestGate {
            delivery_id: self.delivery_id.to_owned(),
            repository: repository.into(),
            commit_sha: self.sha("check_suite.head_sha", suite.head_sha.as_deref())?,
            kind: v1::TestGateKind::CheckSuite as i32,
            name: name.unwrap_or_default(),
            conclusion: suite.conclusion.unwrap_or_default(),
            head_branch: suite.head_branch.unwrap_or_default(),
            url: suite.url.unwrap_or_default(),
        }))
    }

    fn ping(&self, p: payload::Ping) -> Result<Normalized, DecodeError> {
        // An organization hook's ping has no repository.
        let repository = match &p.repository {
            None => String::new(),
            some => self.repo(some)?.into(),
        };
        Ok(Normalized::Ping(v1::SourcePing {
            delivery_id: self.delivery_id.to_owned(),
            repository,
            hook_id: p.hook_id.or(p.hook.and_then(|h| h.id)).unwrap_or_default(),
            zen: p.zen.unwrap_or_default(),
        }))
    }

    fn issue_comment(&self, e: payload::IssueCommentEvent) -> Result<Normalized, DecodeError> {
        let edited = match e.action.as_str() {
            "created" => false,
            "edited" => true,
            other => return Ok(self.ignored_action(other)),
        };
        let repository = self.repo(&e.repository)?;
        let issue = e.issue.ok_or_else(|| self.invalid("issue", "missing"))?;
        let comment = e.comment.ok_or_else(|| self.invalid("comment", "missing"))?;
        let actor = handle_of(&[&comment.user, &e.sender]);
        if actor.is_empty() {
            return Err(self.invalid("comment.user.login", "missing"));
        }
        Ok(Normalized::Comment(CommentEvent {
            delivery_id: self.delivery_id.to_owned(),
            repository,
            actor,
            body: comment.body.unwrap_or_default(),
            number: issue.number.ok_or_else(|| self.invalid("issue.number", "missing"))?,
            is_pull_request: issue.pull_request.is_some(),
            comment_url: comment.html_url.unwrap_or_default(),
            edited,
        }))
    }
}

/// True when `name` (what follows `refs/heads/` or `refs/tags/`) is a name git itself accepts
/// (`git check-ref-format`): no control characters, spaces or `~^:?*[\`, no `..` or `@{`, no
/// empty component or one that starts with `.` or ends with `.lock`, no trailing `.`. GitHub
/// sends nothing else, so anything else (a newline in a tag, `../` in a branch) is refused
/// before it reaches a build, an image tag or a message.
pub fn valid_ref_name(name: &str) -> bool {
    let forbidden = |b: u8| b.is_ascii_control() || b" ~^:?*[\\".contains(&b);
    // Git itself allows any length, but a name a filesystem can hold is far shorter; the cap
    // keeps every event that carries a ref bounded.
    name != "@"
        && name.len() <= 1024
        && !name.bytes().any(forbidden)
        && !name.contains("..")
        && !name.contains("@{")
        && !name.ends_with('.')
        && name.split('/').all(|c| !c.is_empty() && !c.starts_with('.') && !c.ends_with(".lock"))
}

/// The tag as semver (`v1.2.3` and `1.2.3` → `1.2.3`), or "" when it is not one.
pub fn semver_of(tag: &str) -> String {
    let bare = tag.strip_prefix(['v', 'V']).unwrap_or(tag);
    semver::Version::parse(bare).map(|v| v.to_string()).unwrap_or_default()
}

/// An RFC 3339 time (GitHub sends `2019-05-15T15:19:25Z` or `...-04:00`).
fn timestamp(s: &str) -> Option<pbjson_types::Timestamp> {
    let t = chrono::DateTime::parse_from_rfc3339(s).ok()?;
    Some(pbjson_types::Timestamp { seconds: t.timestamp(), nanos: i32::try_from(t.timestamp_subsec_nanos()).ok()? })
}

/// Outside text shortened and stripped of control characters, for messages and logs.
fn printable(s: &str) -> String {
    s.chars().filter(|c| !c.is_control()).take(100).collect()
}

#[cfg(test)]
mod tests;
