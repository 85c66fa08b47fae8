//! Reading back what the services did: the events in the `SLIPWAY` stream, the tags in the
//! registry, and the GitOps repository's commits with their `Slipway-*` trailers.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::process::Command;

use serde_json::Value;

/// One event of the stream.
#[derive(Debug, Clone)]
pub struct Event {
    pub seq: u64,
    pub subject: String,
    /// `ce-id`
    pub id: String,
    pub body: Value,
}

impl Event {
    /// `build.succeeded` for subject `slipway.build.succeeded.hello`.
    pub fn kind(&self) -> String {
        self.subject.split('.').skip(1).take(2).collect::<Vec<_>>().join(".")
    }

    /// The source commit of a build event: `commitSha` (started, failed) or `source.commitSha`
    /// (requested, succeeded); empty for other events.
    pub fn commit_sha(&self) -> &str {
        let body = &self.body;
        body["commitSha"].as_str().or_else(|| body["source"]["commitSha"].as_str()).unwrap_or_default()
    }
}

/// The stream read so far, read on incrementally.
pub struct EventLog {
    js: async_nats::jetstream::Context,
    next: u64,
    pub events: Vec<Event>,
}

impl EventLog {
    /// Connects to `nats_url`; the client reconnects by itself after a server restart.
    pub async fn connect(nats_url: &str) -> EventLog {
        // One address or a cluster's, comma separated.
        let client = slipway_testkit::connect_nats(nats_url).await.expect("connect to nats");
        EventLog { js: async_nats::jetstream::new(client), next: 1, events: Vec::new() }
    }

    /// Reads the events stored since the last call; `Err` while NATS is unreachable.
    pub async fn refresh(&mut self) -> Result<(), String> {
        let mut stream = self.js.get_stream("SLIPWAY").await.map_err(|e| e.to_string())?;
        let last = stream.info().await.map_err(|e| e.to_string())?.state.last_sequence;
        while self.next <= last {
            match stream.get_raw_message(self.next).await {
                Ok(m) => {
                    let id = m.headers.get("ce-id").map(|v| v.as_str().to_owned()).unwrap_or_default();
                    let body = serde_json::from_slice(&m.payload).unwrap_or(Value::Null);
                    self.events.push(Event { seq: self.next, subject: m.subject.to_string(), id, body });
                }
                // A deleted sequence (none are expected) is skipped rather than retried forever.
                Err(e) if e.to_string().contains("no message found") => {}
                Err(e) => return Err(e.to_string()),
            }
            self.next += 1;
        }
        Ok(())
    }

    /// Builds with a `build.started` and no outcome yet, in the events read so far.
    pub fn builds_in_flight(&self) -> usize {
        let over: std::collections::HashSet<&str> = self
            .events
            .iter()
            .filter(|e| matches!(e.kind().as_str(), "build.succeeded" | "build.failed"))
            .map(|e| e.commit_sha())
            .collect();
        let started = self.events.iter().filter(|e| e.kind() == "build.started");
        started.filter(|e| !over.contains(e.commit_sha())).count()
    }

    /// The last sequence read.
    pub fn last_seq(&self) -> u64 {
        self.next - 1
    }

    /// Event id → kind of every event the notifier must post: all but its own.
    pub fn notifiable(&self) -> BTreeMap<String, String> {
        let events = self.events.iter().filter(|e| !e.subject.starts_with("slipway.notification."));
        events.map(|e| (e.id.clone(), e.kind())).collect()
    }

    /// The events of `kind` (`build.succeeded`) for commit `sha`.
    pub fn of(&self, kind: &str, sha: &str) -> Vec<&Event> {
        self.events.iter().filter(|e| e.kind() == kind && e.commit_sha() == sha).collect()
    }

    /// Refreshes until an event of `kind` for `sha` is there; `None` after `timeout`.
    pub async fn wait_for(&mut self, kind: &str, sha: &str, timeout: std::time::Duration) -> Option<Event> {
        let deadline = tokio::time::Instant::now() + timeout;
        while tokio::time::Instant::now() < deadline {
            if self.refresh().await.is_ok()
                && let Some(event) = self.of(kind, sha).first()
            {
                return Some((*event).clone());
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        None
    }
}

/// The tags of `repository` (`demo/hello`) in the registry at `base` (`http://host:port`).
pub async fn registry_tags(base: &str, repository: &str) -> Vec<String> {
    let client = crate::webhook::client();
    let Ok(resp) = client.get(format!("{base}/v2/{repository}/tags/list")).send().await else { return Vec::new() };
    let body: Value = resp.json().await.unwrap_or(Value::Null);
    body["tags"]
        .as_array()
        .map(|t| t.iter().filter_map(|t| t.as_str().map(str::to_owned)).collect())
        .unwrap_or_default()
}

/// The `newTag` an overlay's kustomization sets (quotes removed).
pub fn new_tag(kustomization: &str) -> Option<String> {
    kustomization
        .lines()
        .find_map(|line| line.trim().strip_prefix("newTag:"))
        .map(|tag| tag.trim().trim_matches(['"', '\'']).to_owned())
}

/// A commit of the GitOps repository.
#[derive(Debug, Clone)]
pub struct GitopsCommit {
    pub sha: String,
    pub subject: String,
    /// `Slipway-Promotion-Id` trailers.
    pub promotions: Vec<String>,
    /// `Slipway-Source-Commit` trailers.
    pub sources: Vec<String>,
}

/// The commits of `branch` in the bare repository `git_dir` that changed `path`, newest first.
pub fn commits_touching(git_dir: &Path, branch: &str, path: &str) -> Vec<GitopsCommit> {
    let git_dir = git_dir.display().to_string();
    let out = Command::new("git")
        .args(["--git-dir", &git_dir, "log", "--format=%H%x1f%B%x1e", branch, "--", path])
        .output()
        .expect("git log");
    assert!(out.status.success(), "git log: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).split('\x1e').filter_map(parse_commit).collect()
}

/// Every commit of `branch` in the bare repository `git_dir`, by each path it changed, newest
/// first: one `git log` for all paths, where [`commits_touching`] walks the history once per
/// path.
pub fn commits_by_path(git_dir: &Path, branch: &str) -> HashMap<String, Vec<GitopsCommit>> {
    let git_dir = git_dir.display().to_string();
    let out = Command::new("git")
        .args(["--git-dir", &git_dir, "log", "--format=%x1e%H%x1f%B%x1d", "--name-only", branch])
        .output()
        .expect("git log");
    assert!(out.status.success(), "git log: {}", String::from_utf8_lossy(&out.stderr));
    let mut by_path: HashMap<String, Vec<GitopsCommit>> = HashMap::new();
    for record in String::from_utf8_lossy(&out.stdout).split('\x1e') {
        let Some((commit, files)) = record.split_once('\x1d') else { continue };
        let Some(commit) = parse_commit(commit) else { continue };
        for file in files.lines().map(str::trim).filter(|f| !f.is_empty()) {
            by_path.entry(file.to_owned()).or_default().push(commit.clone());
        }
    }
    by_path
}

fn parse_commit(record: &str) -> Option<GitopsCommit> {
    let (sha, message) = record.trim_start().split_once('\x1f')?;
    let trailer = |key: &str| -> Vec<String> {
        let prefix = format!("{key}:");
        message.lines().filter_map(|l| l.strip_prefix(prefix.as_str())).map(|v| v.trim().to_owned()).collect()
    };
    Some(GitopsCommit {
        sha: sha.to_owned(),
        subject: message.lines().next().unwrap_or_default().to_owned(),
        promotions: trailer("Slipway-Promotion-Id"),
        sources: trailer("Slipway-Source-Commit"),
    })
}

/// `path` as of `rev` in the bare repository `git_dir`.
pub fn show(git_dir: &Path, rev: &str, path: &str) -> String {
    let git_dir = git_dir.display().to_string();
    let out = Command::new("git").args(["--git-dir", &git_dir, "show", &format!("{rev}:{path}")]).output();
    out.map(|o| String::from_utf8_lossy(&o.stdout).into_owned()).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trailers_and_tags_are_read() {
        let record = "\nabc\x1fchore(hello): promote 1234 to dev\n\nSlipway-Promotion-Id: p-1.dev\nSlipway-Source-Commit: 1234\n";
        let c = parse_commit(record).expect("commit");
        assert_eq!((c.sha.as_str(), c.subject.as_str()), ("abc", "chore(hello): promote 1234 to dev"));
        assert_eq!((c.promotions, c.sources), (vec!["p-1.dev".to_owned()], vec!["1234".to_owned()]));
        assert_eq!(new_tag("images:\n  - name: x\n    newTag: \"ab12\"\n").as_deref(), Some("ab12"));
        assert_eq!(new_tag("images: []\n"), None);
    }
}
