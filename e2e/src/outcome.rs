//! What a stream of pushes must have led to, once nothing moves any more, checked the same way
//! by every suite that sends one: exactly one build per accepted push (one `build.requested`,
//! `build.started` and `build.succeeded`, one `builds` row, its tag in the app's registry
//! repository), exactly one dev commit carrying it, and every event notified exactly once.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use crate::Demo;
use crate::demo::AppRepo;
use crate::inspect::{self, EventLog, GitopsCommit};
use crate::receiver::Receiver;
use crate::webhook::Push;

/// One push of a stream, once ingest accepted it.
#[derive(Debug, Clone)]
pub struct Pushed {
    pub app: String,
    pub sha: String,
    pub delivery: String,
    /// Posts refused before ingest accepted one.
    pub refused: usize,
    /// When ingest accepted it.
    pub accepted: Instant,
}

/// Commits a change of `app` on top of `before` (pushed at once) and builds its push webhook.
pub async fn commit(repo: &AppRepo, clone_url: &str, app: &str, before: &str) -> Push {
    let (repo, owned_app) = (repo.clone(), app.to_owned());
    let text = format!("change of {app}");
    let sha = tokio::task::spawn_blocking(move || repo.commit(&owned_app, &text)).await.expect("commit");
    push_of(clone_url, app, before, &sha)
}

/// The push webhook of `sha`, a change of `app`'s hello.txt on top of `before`.
pub fn push_of(clone_url: &str, app: &str, before: &str, sha: &str) -> Push {
    let message = format!("feat({app}): change of {app}");
    Push::new(clone_url, before, sha, &message, &[], &[&format!("apps/{app}/hello.txt")])
}

/// A stream's sending tasks, as it spawned them.
pub type Sending = tokio::task::JoinHandle<Vec<tokio::task::JoinHandle<Result<Pushed, String>>>>;

/// Every push of the stream, once accepted, in the order sent; a push never accepted panics
/// with `tails()` (the services' output).
pub async fn collect(stream: Sending, tails: impl Fn() -> String) -> Vec<Pushed> {
    let mut pushes = Vec::new();
    for sending in stream.await.expect("stream") {
        let pushed = sending.await.expect("join");
        pushes.push(pushed.unwrap_or_else(|e| panic!("{e}\n{}", tails())));
    }
    pushes
}

/// The accepted pushes and the event log they are checked against.
pub struct Outcome<'a> {
    pub demo: &'a Demo,
    pub receiver: &'a Receiver,
    pub log: &'a mut EventLog,
    pub pushes: &'a [Pushed],
}

impl Outcome<'_> {
    /// Waits until every app's dev overlay carries its push, every event is notified and the
    /// stream stopped growing for `quiet` (or `timeout` passed: the assertions then say what
    /// is missing). `note` is told when each happened.
    pub async fn settle(&mut self, timeout: Duration, quiet: Duration, note: &dyn Fn(&str)) {
        let deadline = Instant::now() + timeout;
        let (mut last_seq, mut quiet_since, mut in_dev) = (0, Instant::now(), false);
        let mut waiting: Vec<&Pushed> = self.pushes.iter().collect();
        while Instant::now() < deadline {
            if !in_dev {
                // In order, up to the first not there yet: one `git show` per push and poll
                // would be a thousand processes every 250 ms.
                let done = waiting.iter().take_while(|p| self.demo.overlay_tag_of(&p.app, "dev") == p.sha).count();
                waiting.drain(..done);
                in_dev = waiting.is_empty();
                if in_dev {
                    note("every push is in dev");
                }
            }
            if self.log.refresh().await.is_ok() {
                let counts = self.receiver.counts();
                let complete = in_dev && self.log.notifiable().keys().all(|id| counts.contains_key(id));
                if !complete || self.log.last_seq() != last_seq {
                    (last_seq, quiet_since) = (self.log.last_seq(), Instant::now());
                } else if quiet_since.elapsed() >= quiet {
                    note("settled");
                    return;
                }
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        eprintln!("not settled after {timeout:?}; {} push(es) not in dev", waiting.len());
    }

    /// Exactly one build per push, none of commits nobody pushed.
    pub async fn assert_one_build_each(&self) {
        let pool = sqlx::PgPool::connect(&self.demo.db_url).await.expect("database");
        let rows: Vec<(String, String)> =
            sqlx::query_as("SELECT commit_sha, state FROM builder.builds").fetch_all(&pool).await.expect("builds");
        let mut states: HashMap<&str, Vec<&str>> = HashMap::new();
        for (sha, state) in &rows {
            states.entry(sha.as_str()).or_default().push(state.as_str());
        }
        // Counted in one pass: a thousand pushes times four kinds over every event is slow.
        let mut counted: HashMap<(String, &str), usize> = HashMap::new();
        for event in &self.log.events {
            *counted.entry((event.kind(), event.commit_sha())).or_default() += 1;
        }
        for Pushed { app, sha, delivery, .. } in self.pushes {
            let count = |kind: &str| counted.get(&(kind.to_owned(), sha.as_str())).copied().unwrap_or(0);
            let counts =
                (count("build.requested"), count("build.started"), count("build.succeeded"), count("build.failed"));
            assert_eq!(
                counts,
                (1, 1, 1, 0),
                "{app} {sha} (delivery {delivery}): (requested, started, succeeded, failed)"
            );
            let tags = inspect::registry_tags(&self.demo.registry.url(), &format!("demo/{app}")).await;
            assert!(tags.contains(sha), "{app} {sha} is not in the registry: {tags:?}");
            assert_eq!(
                states.get(sha.as_str()).cloned().unwrap_or_default(),
                ["succeeded"],
                "{app} {sha}: builds rows"
            );
        }
        let built: HashSet<&str> =
            self.log.events.iter().filter(|e| e.kind() == "build.succeeded").map(|e| e.commit_sha()).collect();
        let pushed: HashSet<&str> = self.pushes.iter().map(|p| p.sha.as_str()).collect();
        assert_eq!(built, pushed, "builds of commits nobody pushed");
    }

    /// Exactly one dev commit per push, carrying it and its tag; none for commits nobody
    /// pushed. Returns how many dev commits there were (several pushes may share one).
    pub fn assert_one_dev_commit_each(&self) -> usize {
        let gitops = self.demo.gitops_path();
        let pushed: HashSet<&str> = self.pushes.iter().map(|p| p.sha.as_str()).collect();
        let mut commits_seen = HashSet::new();
        let by_path = inspect::commits_by_path(&gitops, "main");
        for Pushed { app, sha, .. } in self.pushes {
            let dev = format!("apps/{app}/dev/kustomization.yaml");
            let commits = by_path.get(&dev).cloned().unwrap_or_default();
            let carrying: Vec<_> = commits.iter().filter(|c| c.sources.contains(sha)).collect();
            assert_eq!(carrying.len(), 1, "{app} {sha}: dev commits carrying it: {carrying:#?}");
            commits_seen.insert(carrying[0].sha.clone());
            let overlay = inspect::show(&gitops, &carrying[0].sha, &dev);
            assert_eq!(inspect::new_tag(&overlay).as_deref(), Some(sha.as_str()), "{app} {sha}: {overlay}");
            let unknown = |c: &&GitopsCommit| c.sources.iter().any(|s| !pushed.contains(s.as_str()));
            let stray: Vec<_> = commits.iter().filter(unknown).collect();
            assert!(stray.is_empty(), "{app}: dev commits for commits nobody pushed: {stray:#?}");
            let promoter = commits.iter().filter(|c| !c.promotions.is_empty()).count();
            assert_eq!(promoter, 1, "{app}'s dev commits: {commits:#?}");
        }
        commits_seen.len()
    }

    /// Every notifiable event acknowledged exactly once by the receiver; returns how many.
    pub fn assert_each_notification_once(&self) -> usize {
        self.receiver.assert_each_once(&self.log.notifiable())
    }
}
