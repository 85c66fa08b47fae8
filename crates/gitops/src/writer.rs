//! [`GitopsWriter`]: the queue keyed by (repository URL, branch). Each key gets one tokio task
//! fed by a channel that commits in groups: an idle worker takes what is queued (often one
//! update) and hands it at once to the thread that owns its cached clone ([`super::clone`]);
//! updates that arrive while that fetch/commit/push is in flight queue up and all go into the
//! next commit. A single promotion so waits for nothing, and a burst still lands in a few
//! commits, because each commit carries what arrived during the one before it (and, while the
//! burst keeps arriving, what follows closely behind: see [`gather`]). An optional
//! [`WriterConfig::max_batch_delay`] holds every batch open longer, for fewer commits.
//!
//! Tracing: a commit serves several submitters, each in its own trace, while a span has one
//! parent. The rule: each batch's `gitops_commit` span is a child of the span that submitted
//! its first (oldest) update, and links to the spans that submitted the others. The worker's
//! long-lived span is a root of its own, so that it joins no promotion's trace.

use std::collections::HashMap;
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tracing::Instrument;

use super::clone::CloneThread;
use super::{Error, Landed, RepoKey, Result, Update, message};

/// How the writer batches, retries and signs.
#[derive(Debug, Clone)]
pub struct WriterConfig {
    /// Holds one cached bare clone per repository branch.
    pub work_dir: PathBuf,
    /// Off when zero (the default). Otherwise how long after an update was submitted its
    /// batch may still wait for more updates to join; updates that queued while the previous
    /// batch was being pushed join at once either way.
    pub max_batch_delay: Duration,
    /// The most updates in one commit.
    pub max_batch: usize,
    /// Fetch-edit-commit-push rounds before a batch fails.
    pub push_attempts: u32,
    /// First retry delay; doubles per attempt (capped at 2 s), plus jitter.
    pub backoff: Duration,
    /// How many remote commits are searched for an update's promotion id.
    pub history_depth: usize,
    pub author_name: String,
    pub author_email: String,
    /// Subject template, see [`message::DEFAULT_TEMPLATE`].
    pub message_template: String,
}

impl WriterConfig {
    /// Defaults: no batch delay (group commit only), 500 updates per commit, 8 attempts from 50 ms, 200 commits of
    /// history, author `Slipway <slipway@localhost>`.
    pub fn new(work_dir: impl Into<PathBuf>) -> Self {
        WriterConfig {
            work_dir: work_dir.into(),
            max_batch_delay: Duration::ZERO,
            max_batch: 500,
            push_attempts: 8,
            backoff: Duration::from_millis(50),
            history_depth: 200,
            author_name: "Slipway".into(),
            author_email: "slipway@localhost".into(),
            message_template: message::DEFAULT_TEMPLATE.into(),
        }
    }
}

/// What a writer has done so far, over all its repositories.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WriterStats {
    /// Batches taken from the queues.
    pub batches: u64,
    /// Commits pushed.
    pub commits: u64,
    /// Rounds that had to start over on a fresh fetch: rejected (non-fast-forward) or failed
    /// pushes, and unreachable remotes.
    pub retries: u64,
}

#[derive(Debug, Default)]
pub(crate) struct Counters {
    batches: AtomicU64,
    commits: AtomicU64,
    retries: AtomicU64,
}

impl Counters {
    pub(crate) fn committed(&self, pushed: bool) {
        if pushed {
            self.commits.fetch_add(1, Ordering::Relaxed);
            metrics::counter!("slipway_promoter_gitops_commits_total").increment(1);
        }
    }

    pub(crate) fn retried(&self) {
        self.retries.fetch_add(1, Ordering::Relaxed);
        metrics::counter!("slipway_promoter_gitops_push_retries_total").increment(1);
    }

    fn snapshot(&self) -> WriterStats {
        WriterStats {
            batches: self.batches.load(Ordering::Relaxed),
            commits: self.commits.load(Ordering::Relaxed),
            retries: self.retries.load(Ordering::Relaxed),
        }
    }
}

struct Job {
    update: Update,
    reply: oneshot::Sender<Result<Landed>>,
    /// When it was submitted: bounds its batch delay, and times its wait in the queue.
    queued: Instant,
    /// The submitter's span: the parent (first update) or a link (the others) of the commit.
    span: tracing::Span,
}

/// Writes image updates to GitOps repositories; one serialized worker per repository branch.
/// Create and use it inside a Tokio runtime. Dropping it lets each worker finish its queue.
pub struct GitopsWriter {
    config: Arc<WriterConfig>,
    counters: Arc<Counters>,
    queues: Mutex<HashMap<RepoKey, mpsc::UnboundedSender<Job>>>,
    workers: Mutex<Vec<JoinHandle<()>>>,
}

impl std::fmt::Debug for GitopsWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GitopsWriter").field("work_dir", &self.config.work_dir).finish_non_exhaustive()
    }
}

impl GitopsWriter {
    pub fn new(config: WriterConfig) -> Self {
        let (queues, workers) = (Mutex::default(), Mutex::default());
        GitopsWriter { config: Arc::new(config), counters: Arc::default(), queues, workers }
    }

    /// Counts of batches, commits and retries so far.
    pub fn stats(&self) -> WriterStats {
        self.counters.snapshot()
    }

    /// The settings and counters, shared with the pull-request branch writer.
    pub(crate) fn shared(&self) -> (Arc<WriterConfig>, Arc<Counters>) {
        (self.config.clone(), self.counters.clone())
    }

    /// Validates `update` and queues it for `repo`; the returned future resolves once it is on
    /// the remote branch (or failed). Returns at once, so a caller can queue many.
    pub fn submit(&self, repo: &RepoKey, update: Update) -> Result<Pending> {
        update.validate()?;
        let (reply, answer) = oneshot::channel();
        let mut job = Job { update, reply, queued: Instant::now(), span: tracing::Span::current() };
        let mut queues = self.queues.lock().unwrap_or_else(PoisonError::into_inner);
        for _ in 0..2 {
            let queue = queues.entry(repo.clone()).or_insert_with(|| self.spawn_worker(repo.clone()));
            match queue.send(job) {
                Ok(()) => return Ok(Pending(answer)),
                // The worker is gone (it panicked): start a new one once.
                Err(mpsc::error::SendError(returned)) => {
                    job = returned;
                    queues.remove(repo);
                }
            }
        }
        Err(Error::Closed)
    }

    /// [`submit`](Self::submit) and wait.
    pub async fn apply(&self, repo: &RepoKey, update: Update) -> Result<Landed> {
        self.submit(repo, update)?.await
    }

    /// Closes the queues and waits until every worker has written what it was given.
    pub async fn shutdown(self) {
        self.queues.lock().unwrap_or_else(PoisonError::into_inner).clear();
        let workers = std::mem::take(&mut *self.workers.lock().unwrap_or_else(PoisonError::into_inner));
        for worker in workers {
            if let Err(e) = worker.await {
                tracing::error!(error = %e, "gitops worker ended abnormally");
            }
        }
    }

    fn spawn_worker(&self, key: RepoKey) -> mpsc::UnboundedSender<Job> {
        let (queue, jobs) = mpsc::unbounded_channel();
        // No parent: the worker outlives the submission that started it.
        let span = tracing::info_span!(parent: None, "gitops_writer", url = %key.redacted_url(), branch = %key.branch);
        let shared = (self.config.clone(), self.counters.clone());
        let worker = tokio::spawn(run_worker(key, shared, jobs).instrument(span));
        let mut workers = self.workers.lock().unwrap_or_else(PoisonError::into_inner);
        workers.retain(|w| !w.is_finished());
        workers.push(worker);
        queue
    }
}

/// The answer to a submitted update; resolves to where it landed.
#[derive(Debug)]
pub struct Pending(oneshot::Receiver<Result<Landed>>);

impl Future for Pending {
    type Output = Result<Landed>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.0).poll(cx).map(|answer| answer.unwrap_or(Err(Error::Closed)))
    }
}

/// One repository branch: batch, write on the clone's thread, answer, repeat.
async fn run_worker(key: RepoKey, shared: (Arc<WriterConfig>, Arc<Counters>), mut jobs: mpsc::UnboundedReceiver<Job>) {
    let mut clone: Option<CloneThread> = None;
    let mut last_write = Duration::ZERO;
    while let Some(first) = jobs.recv().await {
        let batch = gather(first, &mut jobs, &shared.0, last_write).await;
        shared.1.batches.fetch_add(1, Ordering::Relaxed);
        for job in &batch {
            crate::timing::record(crate::timing::GITOPS_QUEUE, job.queued.elapsed());
        }
        let updates: Vec<Update> = batch.iter().map(|job| job.update.clone()).collect();
        let count = updates.len();
        let started = Instant::now();
        let thread = match clone.take() {
            Some(thread) => Ok(thread),
            None => CloneThread::spawn(key.clone(), shared.0.clone(), shared.1.clone()),
        };
        let span = commit_span(&key, &batch);
        let results = match thread {
            Ok(thread) => match thread.write(updates, span.clone()).instrument(span.clone()).await {
                Some(results) => {
                    clone = Some(thread);
                    results
                }
                // The thread is gone (it panicked): the next batch starts a new one.
                None => vec![Err(Error::Git { op: "worker", message: "the clone's thread ended".into() }); count],
            },
            Err(e) => vec![Err(e); count],
        };
        last_write = started.elapsed();
        let failed = results.iter().filter(|r| r.is_err()).count();
        span.in_scope(|| {
            tracing::info!(
                updates = count,
                failed,
                elapsed_ms = started.elapsed().as_millis() as u64,
                "gitops batch written"
            );
        });
        drop(span);
        for (job, result) in batch.into_iter().zip(results) {
            // The submitter may have stopped waiting; the write stands either way.
            let _ = job.reply.send(result);
        }
    }
    if let Some(thread) = clone {
        thread.finish().await;
    }
}

/// The span of one batch's commit: a child of the first update's submitter, linked to the
/// other submitters (see the module doc).
fn commit_span(key: &RepoKey, batch: &[Job]) -> tracing::Span {
    let parent = batch.first().and_then(|job| job.span.id());
    let span = tracing::info_span!(
        parent: parent,
        "gitops_commit",
        url = %key.redacted_url(),
        branch = %key.branch,
        updates = batch.len(),
    );
    for job in batch.iter().skip(1) {
        span.follows_from(&job.span);
    }
    span
}

/// Under load, how soon after the last update the next must arrive for a batch to stay open.
const BURST_GAP: Duration = Duration::from_millis(5);

/// The next batch: `first` plus whatever queued while the worker was busy, without waiting
/// (group commit). An idle worker (nothing queued) so never waits, unless a
/// [`WriterConfig::max_batch_delay`] is set: then the batch stays open for more until `first`
/// has waited that long.
///
/// Under load (updates queued while the last write, which took `last_write`, was in flight)
/// a burst is most likely still arriving: the batch stays open while updates keep coming, each
/// within [`BURST_GAP`] of the one before, for at most `last_write`. Otherwise a burst that
/// arrives slower than the writer commits would take one commit per write time.
async fn gather(
    first: Job,
    jobs: &mut mpsc::UnboundedReceiver<Job>,
    config: &WriterConfig,
    last_write: Duration,
) -> Vec<Job> {
    let max = config.max_batch.max(1);
    let deadline = first.queued + config.max_batch_delay;
    let mut batch = vec![first];
    take_queued(&mut batch, jobs, max);
    if batch.len() > 1 {
        let until = Instant::now() + last_write;
        while batch.len() < max {
            let next = (Instant::now() + BURST_GAP).min(until);
            if next <= Instant::now() {
                break;
            }
            match tokio::time::timeout_at(next, jobs.recv()).await {
                Ok(Some(job)) => {
                    batch.push(job);
                    take_queued(&mut batch, jobs, max);
                }
                Ok(None) | Err(_) => break,
            }
        }
    }
    if config.max_batch_delay.is_zero() {
        return batch;
    }
    while batch.len() < max {
        match tokio::time::timeout_at(deadline, jobs.recv()).await {
            Ok(Some(job)) => batch.push(job),
            Ok(None) | Err(_) => break,
        }
    }
    batch
}

/// Moves what is queued into `batch`, up to `max` updates, without waiting.
fn take_queued(batch: &mut Vec<Job>, jobs: &mut mpsc::UnboundedReceiver<Job>, max: usize) {
    while batch.len() < max {
        match jobs.try_recv() {
            Ok(job) => batch.push(job),
            Err(_) => break,
        }
    }
}

#[cfg(test)]
mod tests {
    use futures::FutureExt as _;

    use super::*;

    fn job(id: &str) -> (Job, oneshot::Receiver<Result<Landed>>) {
        let update = Update {
            promotion_id: id.into(),
            app: slipway_mesh::names::AppName::parse("app").expect("app"),
            stage: slipway_mesh::names::EnvName::parse("dev").expect("stage"),
            source_commit: None,
            target: super::super::Target::Kustomize { file: "k.yaml".into(), image: "app".into() },
            change: super::super::ImageChange::default(),
        };
        let (reply, answer) = oneshot::channel();
        (Job { update, reply, queued: Instant::now(), span: tracing::Span::current() }, answer)
    }

    const HOUR: Duration = Duration::from_secs(3600);

    #[test]
    fn a_commit_is_a_child_of_its_first_submitter_and_links_to_the_others() {
        let capture = slipway_runtime::telemetry::capture_spans();
        let batch: Vec<Job> =
            ["a", "b", "c"].into_iter().map(|id| tracing::info_span!("submit", id).in_scope(|| job(id).0)).collect();
        let key = RepoKey { url: "https://example.invalid/gitops.git".into(), branch: "main".into() };
        drop(commit_span(&key, &batch));
        drop(batch);
        let submits = capture.spans_named("submit");
        let commit = capture.spans_named("gitops_commit").pop().expect("a commit span");
        let [a, b, c] = submits.as_slice() else { panic!("three submit spans: {submits:?}") };
        assert_eq!(commit.span_context.trace_id(), a.span_context.trace_id());
        assert_eq!(commit.parent_span_id, a.span_context.span_id(), "the first update's submitter is the parent");
        let linked: Vec<_> = commit.links.links.iter().map(|l| l.span_context.span_id()).collect();
        assert_eq!(linked, [b.span_context.span_id(), c.span_context.span_id()], "the others are links");
    }

    fn ids(batch: &[Job]) -> Vec<&str> {
        batch.iter().map(|j| j.update.promotion_id.as_str()).collect()
    }

    // `now_or_never` polls once: a gather that waited for a timer or for the channel would
    // be pending, so these prove "no wait" without measuring time.
    #[tokio::test]
    async fn an_idle_writer_takes_a_lone_update_without_waiting() {
        let (_queue, mut jobs) = mpsc::unbounded_channel();
        let config = WriterConfig::new("/unused");
        // However long the last write took: with nothing queued, the writer is idle.
        let batch = gather(job("one").0, &mut jobs, &config, HOUR).now_or_never().expect("did not wait");
        assert_eq!(ids(&batch), ["one"]);
    }

    #[tokio::test]
    async fn updates_queued_meanwhile_join_the_next_batch_at_once() {
        let (queue, mut jobs) = mpsc::unbounded_channel();
        let mut answers = Vec::new();
        for id in ["b", "c", "d"] {
            let (job, answer) = job(id);
            queue.send(job).map_err(|_| "closed").expect("queued");
            answers.push(answer);
        }
        let config = WriterConfig { max_batch: 3, ..WriterConfig::new("/unused") };
        let batch = gather(job("a").0, &mut jobs, &config, HOUR).now_or_never().expect("full: did not wait");
        assert_eq!(ids(&batch), ["a", "b", "c"], "up to max_batch, in order");
        let rest = gather(job("e").0, &mut jobs, &config, Duration::ZERO).now_or_never().expect("did not wait");
        assert_eq!(ids(&rest), ["e", "d"]);
    }

    #[tokio::test]
    async fn a_configured_delay_holds_the_batch_open() {
        let (queue, mut jobs) = mpsc::unbounded_channel();
        let config = WriterConfig { max_batch_delay: Duration::from_secs(3600), ..WriterConfig::new("/unused") };
        let mut gathering = Box::pin(gather(job("a").0, &mut jobs, &config, Duration::ZERO));
        assert!((&mut gathering).now_or_never().is_none(), "waits for more within the delay");
        drop(gathering);
        let (late, _answer) = job("late");
        queue.send(late).map_err(|_| "closed").expect("queued");
        drop(queue);
        // The channel closes after `late`: the batch ends without the delay running out.
        let batch = gather(job("b").0, &mut jobs, &config, Duration::ZERO).now_or_never().expect("closed channel");
        assert_eq!(ids(&batch), ["b", "late"]);
    }

    #[tokio::test]
    async fn under_load_a_batch_stays_open_while_updates_keep_coming() {
        let (queue, mut jobs) = mpsc::unbounded_channel();
        let (queued, _answer) = job("queued");
        queue.send(queued).map_err(|_| "closed").expect("queued");
        let config = WriterConfig::new("/unused");
        let mut gathering = Box::pin(gather(job("a").0, &mut jobs, &config, HOUR));
        assert!((&mut gathering).now_or_never().is_none(), "an update queued: waits for the rest of the burst");
        drop(gathering); // with `a` and `queued`
        for id in ["more", "last"] {
            queue.send(job(id).0).map_err(|_| "closed").expect("queued");
        }
        drop(queue);
        // The channel closes after them: the batch ends without the wait running out.
        let batch = gather(job("b").0, &mut jobs, &config, HOUR).now_or_never().expect("closed channel");
        assert_eq!(ids(&batch), ["b", "more", "last"]);
    }
}
