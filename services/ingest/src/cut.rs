//! Keeping a push event within [`MAX_EVENT_BYTES`] whatever the push: GitHub lists up to
//! 2,048 commits in one payload, each with any number of files and a message of any length.
//!
//! [`cut_push`] runs after the monorepo matching has seen every file of every commit (so
//! `changed_apps` and the build requests are exact). It keeps the newest [`EventCaps::commits`]
//! commits, at most [`EventCaps::files`] paths and [`EventCaps::file_bytes`] bytes of paths in
//! all, messages up to [`EventCaps::message_bytes`], and records the true counts
//! (`commit_count`, `file_count`, each commit's `file_count`). Should the encoded event still be
//! over the bound (JSON escaping can multiply a control-character-heavy message by six), it
//! halves what it keeps until it fits. The whole body is kept elsewhere ([`crate::originals`]).

use serde::{Deserialize, Serialize};
use slipway_mesh::bounds::{MAX_EVENT_BYTES, cap_list, cap_text};
use slipway_mesh::v1;

/// A path longer than this is counted but not listed (git allows 4096).
pub const MAX_PATH_BYTES: usize = 1024;
/// Authors and pushers are GitHub logins or names; anything longer is cut.
const MAX_HANDLE_BYTES: usize = 256;
/// What one listed commit may take besides its message and files (sha, author, timestamps,
/// conventional parts, field names), JSON-encoded.
const COMMIT_OVERHEAD: usize = 1024;
/// The push event's own fields besides commits and apps, JSON-encoded.
const PUSH_OVERHEAD: usize = 8 * 1024;
/// The longest app name (a validated name), quoted, with its comma.
const APP_BYTES: usize = 64 + 3;

/// How much of a push its event carries. `[events]` in the ingest config.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EventCaps {
    /// Newest commits listed (`commit_count` has the true number).
    pub commits: usize,
    /// File paths listed over all commits (each commit's `file_count` has the true number).
    pub files: usize,
    /// Bytes of file paths listed over all commits.
    pub file_bytes: usize,
    /// Bytes of each commit message.
    pub message_bytes: usize,
    /// Changed apps listed in the push event (each still gets its build request).
    pub changed_apps: usize,
}

impl Default for EventCaps {
    fn default() -> Self {
        Self { commits: 20, files: 1000, file_bytes: 64 * 1024, message_bytes: 2048, changed_apps: 500 }
    }
}

impl EventCaps {
    /// The most a push event can take with these caps, before JSON escaping (the head commit
    /// is listed twice: in `commits` and as `head_commit`).
    pub fn worst_case_bytes(&self) -> usize {
        let commit = self.message_bytes.saturating_add(COMMIT_OVERHEAD);
        let commits = self.commits.saturating_add(1).saturating_mul(commit);
        let files = self.file_bytes.saturating_mul(2);
        let apps = self.changed_apps.saturating_mul(APP_BYTES);
        PUSH_OVERHEAD.saturating_add(commits).saturating_add(files).saturating_add(apps)
    }

    /// Every cap at least 1 and their worst case within the event bound; the error says which.
    pub fn validate(&self) -> crate::error::Result<()> {
        let named = [
            ("commits", self.commits),
            ("files", self.files),
            ("file_bytes", self.file_bytes),
            ("message_bytes", self.message_bytes),
            ("changed_apps", self.changed_apps),
        ];
        if let Some((name, _)) = named.iter().find(|(_, v)| *v == 0) {
            return Err(crate::error::Error::Invalid(format!("{name} must be at least 1")));
        }
        let worst = self.worst_case_bytes();
        if worst > MAX_EVENT_BYTES {
            return Err(crate::error::Error::Invalid(format!(
                "these caps allow a push event of {worst} bytes, over the {MAX_EVENT_BYTES} bytes an event may be \
                 ((commits + 1) x (message_bytes + {COMMIT_OVERHEAD}) + 2 x file_bytes + changed_apps x {APP_BYTES} + \
                 {PUSH_OVERHEAD}); lower them"
            )));
        }
        Ok(())
    }
}

/// Cuts `push` to `caps` (see the module doc). True when anything was left out, so the event
/// should reference the whole body.
pub fn cut_push(push: &mut v1::SourcePush, caps: &EventCaps) -> bool {
    push.commit_count = push.commits.len() as u32;
    push.file_count = push.commits.iter().map(|c| (c.added.len() + c.modified.len() + c.removed.len()) as u64).sum();
    push.changed_app_count = push.changed_apps.len() as u32;
    let mut cut = cap_text(&mut push.pusher, MAX_HANDLE_BYTES);
    if push.changed_apps.len() > caps.changed_apps {
        push.changed_apps.truncate(caps.changed_apps);
        cut = true;
    }
    if push.commits.len() > caps.commits {
        push.commits.drain(..push.commits.len() - caps.commits);
        cut = true;
    }
    let (mut files, mut bytes) = (caps.files, caps.file_bytes);
    // Newest first: the head commit's files matter most.
    for commit in push.commits.iter_mut().rev() {
        cut |= cut_commit(commit, caps.message_bytes, &mut files, &mut bytes);
    }
    push.head_commit = push.commits.last().cloned();
    // The caps are sized for ordinary text; escaping can still blow one up. Halve until it
    // fits; every other field is a validated name or was cut above, so this ends.
    for _ in 0..64 {
        if encoded_len(push) <= MAX_EVENT_BYTES {
            break;
        }
        cut = true;
        if push.commits.len() > 1 {
            push.commits.drain(..push.commits.len() / 2);
        } else if push.commits.iter().chain(&push.head_commit).any(|c| !c.message.is_empty() || has_files(c)) {
            for commit in push.commits.iter_mut().chain(push.head_commit.as_mut()) {
                let half = commit.message.len() / 2;
                commit.message_truncated |= cap_text(&mut commit.message, half);
                commit.files_truncated |= has_files(commit);
                commit.added.clear();
                commit.modified.clear();
                commit.removed.clear();
            }
        } else {
            push.changed_apps.truncate(push.changed_apps.len() / 2);
        }
    }
    cut
}

fn cut_commit(commit: &mut v1::Commit, message_bytes: usize, files: &mut usize, bytes: &mut usize) -> bool {
    commit.file_count = (commit.added.len() + commit.modified.len() + commit.removed.len()) as u32;
    let mut dropped = 0;
    for list in [&mut commit.added, &mut commit.modified, &mut commit.removed] {
        dropped += cap_list(list, *files, MAX_PATH_BYTES, bytes);
        // cap_list keeps at most `*files` entries.
        *files -= list.len();
    }
    commit.files_truncated = dropped > 0;
    commit.message_truncated = cap_text(&mut commit.message, message_bytes);
    let author = cap_text(&mut commit.author, MAX_HANDLE_BYTES);
    commit.files_truncated || commit.message_truncated || author
}

fn has_files(c: &v1::Commit) -> bool {
    !(c.added.is_empty() && c.modified.is_empty() && c.removed.is_empty())
}

fn encoded_len(push: &v1::SourcePush) -> usize {
    serde_json::to_vec(push).map(|v| v.len()).unwrap_or(usize::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn commit(n: usize, message: &str, files: usize) -> v1::Commit {
        v1::Commit {
            sha: format!("{n:040x}"),
            message: message.to_owned(),
            author: "octocat".into(),
            added: (0..files).map(|f| format!("apps/a{n}/{f}.rs")).collect(),
            ..Default::default()
        }
    }

    #[test]
    fn the_default_caps_fit_the_event_bound() {
        assert!(EventCaps::default().validate().is_ok());
        let wide = EventCaps { file_bytes: 200 * 1024, ..EventCaps::default() };
        let error = wide.validate().expect_err("too wide").to_string();
        assert!(error.contains("over the 262144 bytes"), "{error}");
        let zero = EventCaps { commits: 0, ..EventCaps::default() }.validate().expect_err("zero");
        assert_eq!(zero.to_string(), "commits must be at least 1");
    }

    #[test]
    fn a_small_push_is_left_whole() {
        let mut push =
            v1::SourcePush { commits: vec![commit(1, "fix: a", 2), commit(2, "fix: b", 1)], ..Default::default() };
        assert!(!cut_push(&mut push, &EventCaps::default()));
        assert_eq!((push.commit_count, push.file_count, push.commits.len()), (2, 3, 2));
        assert_eq!(push.head_commit.as_ref().map(|c| c.sha.as_str()), Some(push.commits[1].sha.as_str()));
        assert!(!push.commits[0].files_truncated);
    }

    #[test]
    fn newest_commits_and_files_are_kept_with_true_counts() {
        let mut push = v1::SourcePush {
            commits: (0..100).map(|n| commit(n, &"m".repeat(5000), 50)).collect(),
            changed_apps: (0..700).map(|n| format!("app-{n}")).collect(),
            ..Default::default()
        };
        let caps = EventCaps::default();
        assert!(cut_push(&mut push, &caps));
        assert_eq!((push.commit_count, push.file_count, push.changed_app_count), (100, 5000, 700));
        assert_eq!(push.commits.len(), caps.commits);
        assert_eq!(push.commits.last().map(|c| c.sha.clone()), Some(format!("{:040x}", 99)), "the newest");
        assert_eq!(push.changed_apps.len(), caps.changed_apps);
        let listed: usize = push.commits.iter().map(|c| c.added.len()).sum();
        assert_eq!(listed, 20 * 50, "within both file caps here");
        let head = push.head_commit.as_ref().expect("head");
        assert!(head.message_truncated && head.message.len() == caps.message_bytes);
        assert_eq!(head.file_count, 50);
    }

    #[test]
    fn escaping_heavy_text_still_fits() {
        // Control characters encode as \u00XX: six bytes each in JSON.
        let nasty = "\u{1}".repeat(2048);
        let mut push = v1::SourcePush {
            commits: (0..2048).map(|n| commit(n, &nasty, 0)).collect(),
            pusher: "\u{1}".repeat(10_000),
            ..Default::default()
        };
        for c in &mut push.commits {
            c.added = (0..100).map(|f| format!("{}{f}", "\u{2}".repeat(900))).collect();
        }
        assert!(cut_push(&mut push, &EventCaps::default()));
        let size = serde_json::to_vec(&push).expect("json").len();
        assert!(size <= MAX_EVENT_BYTES, "{size} bytes");
        assert_eq!(push.commit_count, 2048);
        assert!(!push.commits.is_empty(), "the head commit is always listed");
    }
}
