//! The fault stream: a steady, unpaced stream of signed push webhooks, one per app of a
//! 20-app monorepo demo (`app-01`..`app-20`, each a copy of hello), one every second whatever
//! the services are doing, while faults fire on a timeline of their own: ingest, the builder,
//! the promoter and the notifier are SIGKILLed and restarted, nats-server and PostgreSQL are
//! killed for 2 s, and the git daemon is down for a few seconds.
//!
//! Each push is a new commit touching one app only, so no build supersedes another and no dev
//! version overtakes another: every push must reach dev. A refused webhook is posted again
//! under the same delivery id, as GitHub's redelivery would, without holding the stream up.
//!
//! Afterwards, once nothing moves any more: every accepted push led to exactly one build (one
//! `build.requested`, `build.started` and `build.succeeded`, one `builds` row, its tag in the
//! app's registry repository), exactly one dev commit carrying its source commit in the
//! trailers and its tag in the app's dev overlay, and every event reached the receiver exactly
//! once, correctly signed.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use slipway_e2e::demo::{AppRepo, WEBHOOK_SECRET};
use slipway_e2e::inspect::{self, EventLog, GitopsCommit};
use slipway_e2e::receiver::Receiver;
use slipway_e2e::webhook::{self, Push};
use slipway_e2e::{Database, Demo, Overrides, Services, binaries};
use tokio::task::JoinHandle;

const NOTIFY_SECRET: &str = "e2e-notify-secret";
/// The apps, one push each.
const APPS: usize = 20;
/// One push per interval, whatever happened meanwhile.
const INTERVAL: Duration = Duration::from_secs(1);
/// How long the services may take to settle after the last push was accepted.
const SETTLE_TIMEOUT: Duration = Duration::from_secs(120);
/// Nothing new in the stream for this long, and every notification in: settled.
const QUIET: Duration = Duration::from_secs(4);
/// How long the notifier may take to post something once the test waits to hold a post.
const HOLD_TIMEOUT: Duration = Duration::from_secs(60);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fault {
    /// Ingest down for 1.5 s (plus its restart): webhooks refused, then redelivered.
    KillIngest,
    /// The builder dies while builds are in flight.
    KillBuilder,
    KillPromoter,
    /// The notifier dies while its post to the receiver is in flight (the next post is held).
    KillNotifier,
    /// nats-server down for 2 s.
    KillNats,
    /// PostgreSQL down for 2 s.
    KillPostgres,
    /// The git daemon down for 4 s: no source for the builder, no GitOps pushes.
    GitDaemonDown,
}

/// When each fault fires, from the first push; a fault that overran its successor's time
/// delays it (the faults never overlap).
const TIMELINE: [(Duration, Fault); 7] = [
    (Duration::from_millis(2_500), Fault::KillIngest),
    (Duration::from_millis(5_500), Fault::KillBuilder),
    (Duration::from_millis(8_500), Fault::KillPromoter),
    (Duration::from_millis(10_500), Fault::KillNotifier),
    (Duration::from_millis(12_500), Fault::KillNats),
    (Duration::from_millis(15_500), Fault::KillPostgres),
    (Duration::from_millis(18_500), Fault::GitDaemonDown),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_steady_stream_of_pushes_of_many_apps_is_delivered_exactly_once_through_faults() {
    let apps: Vec<String> = (1..=APPS).map(|n| format!("app-{n:02}")).collect();
    let mut suite = Suite::start(&apps).await;
    let stream = suite.send_stream(apps);
    suite.run_faults().await;
    suite.pushes = collect(stream, &suite.services).await;
    let refused: usize = suite.pushes.iter().map(|p| p.refused).sum();
    suite.note(&format!("all {APPS} pushes accepted; {refused} posts refused on the way"));
    assert!(refused > 0, "no webhook was refused: ingest was never down when one came");
    suite.settle().await;
    suite.assert_one_build_each().await;
    suite.assert_one_dev_commit_each();
    suite.assert_each_notification_once();
    suite.services.stop().await;
}

/// One push of the stream, once ingest accepted it.
#[derive(Debug, Clone)]
struct Pushed {
    app: String,
    sha: String,
    delivery: String,
    /// Posts refused before ingest accepted one.
    refused: usize,
}

// Fields drop in order: the services stop before the servers under them.
struct Suite {
    services: Services,
    demo: Demo,
    receiver: Receiver,
    log: EventLog,
    /// The accepted pushes, in the order they were sent.
    pushes: Vec<Pushed>,
    started: Instant,
}

impl Suite {
    async fn start(apps: &[String]) -> Suite {
        let receiver = Receiver::start(NOTIFY_SECRET).await;
        let names: Vec<&str> = apps.iter().map(String::as_str).collect();
        let demo = Demo::start_apps(Database::Dedicated, &names).await;
        demo.write_configs(&receiver.notifier_config());
        let buildah = demo.slow_buildah(1);
        let overrides = Overrides {
            // A crashed consumer's messages come back, and a dead builder's build is taken
            // over, within seconds rather than the default 30 s.
            all: &[("SLIPWAY_NATS__ACK_WAIT_SECS", "10")],
            builder: &[("SLIPWAY_BUILD__BUILDAH__PROGRAM", &buildah), ("SLIPWAY_BUILD__CONCURRENCY", "2")],
        };
        let services = demo.start_services(binaries!(), overrides).await;
        let log = EventLog::connect(&demo.nats.url()).await;
        Suite { services, demo, receiver, log, pushes: Vec::new(), started: Instant::now() }
    }

    /// Spawns the stream: one commit and push webhook per app, one per [`INTERVAL`] from now;
    /// each webhook is posted by a task of its own until accepted. Resets the test's clock.
    fn send_stream(&mut self, apps: Vec<String>) -> JoinHandle<Vec<JoinHandle<Result<Pushed, String>>>> {
        self.started = Instant::now();
        let start = tokio::time::Instant::now();
        let (repo, clone_url, url) = (self.demo.app_repo(), self.demo.app_url.clone(), self.demo.webhook_url.clone());
        let mut before = self.demo.app_sha.clone();
        tokio::spawn(async move {
            let http = webhook::client();
            let mut sending = Vec::new();
            for (n, app) in apps.into_iter().enumerate() {
                tokio::time::sleep_until(start + INTERVAL * u32::try_from(n).expect("few apps")).await;
                let push = commit(&repo, &clone_url, &app, &before).await;
                before.clone_from(&push.after);
                let (http, url) = (http.clone(), url.clone());
                sending.push(tokio::spawn(async move {
                    let pause = Duration::from_millis(100);
                    let refused = webhook::deliver(&http, &url, WEBHOOK_SECRET, &push, 1200, pause).await?;
                    Ok(Pushed { app, sha: push.after, delivery: push.delivery, refused })
                }));
            }
            sending
        })
    }

    /// Fires the faults of [`TIMELINE`], each at its time (or once the previous one is over).
    async fn run_faults(&mut self) {
        let start = tokio::time::Instant::now();
        for (at, fault) in TIMELINE {
            tokio::time::sleep_until(start + at).await;
            self.note(&format!("{fault:?}"));
            self.inject(fault).await;
        }
    }

    async fn inject(&mut self, fault: Fault) {
        match fault {
            Fault::KillIngest => {
                self.services.ingest.kill().await;
                tokio::time::sleep(Duration::from_millis(1_500)).await;
                self.services.ingest.restart().await;
            }
            Fault::KillBuilder => {
                let running = self.builds_in_flight().await;
                self.note(&format!("kill -9 builder with {running} build(s) started and not finished"));
                self.services.builder.kill().await;
                self.services.builder.restart().await;
            }
            Fault::KillPromoter => {
                self.services.promoter.kill().await;
                self.services.promoter.restart().await;
            }
            Fault::KillNotifier => self.kill_notifier_mid_post().await,
            Fault::KillNats => {
                self.demo.nats.kill().await.expect("kill -9 nats-server");
                tokio::time::sleep(Duration::from_secs(2)).await;
                self.demo.nats.restart().await.expect("restart nats-server");
            }
            Fault::KillPostgres => {
                let pg = self.demo.postgres.as_mut().expect("dedicated postgres");
                pg.kill().await.expect("kill -9 postgres");
                tokio::time::sleep(Duration::from_secs(2)).await;
                pg.restart().await.expect("restart postgres");
            }
            Fault::GitDaemonDown => {
                self.demo.git.stop().await.expect("stop git daemon");
                tokio::time::sleep(Duration::from_secs(4)).await;
                self.demo.git.restart().await.expect("restart git daemon");
            }
        }
        self.note(&format!("{fault:?} over"));
    }

    /// Holds the notifier's next post, kills the notifier while it waits for the answer, lets
    /// the post go unacknowledged, and restarts the notifier. (Killing it at a random instant
    /// could fall between a post's 2xx and its mark: a duplicate at-least-once allows.)
    async fn kill_notifier_mid_post(&mut self) {
        let held = self.receiver.hold_next();
        let id = tokio::time::timeout(HOLD_TIMEOUT, held).await.expect("a notification arrives").expect("held");
        self.note(&format!("holding the post of {id}; kill -9 notifier"));
        self.services.notifier.kill().await;
        self.receiver.release();
        self.services.notifier.restart().await;
    }

    /// Builds with a `build.started` and no outcome yet.
    async fn builds_in_flight(&mut self) -> usize {
        if self.log.refresh().await.is_err() {
            return 0;
        }
        let over: HashSet<&str> = self
            .log
            .events
            .iter()
            .filter(|e| matches!(e.kind().as_str(), "build.succeeded" | "build.failed"))
            .map(|e| e.commit_sha())
            .collect();
        let started = self.log.events.iter().filter(|e| e.kind() == "build.started");
        started.filter(|e| !over.contains(e.commit_sha())).count()
    }

    fn note(&self, what: &str) {
        eprintln!("[{:>5.1}s]   {what}", self.started.elapsed().as_secs_f64());
    }

    /// Waits until every app's dev overlay carries its push, every event is notified and the
    /// stream stopped growing (or the deadline passed: the assertions then say what is missing).
    async fn settle(&mut self) {
        let deadline = Instant::now() + SETTLE_TIMEOUT;
        let (mut last_seq, mut quiet_since, mut in_dev) = (0, Instant::now(), false);
        while Instant::now() < deadline {
            if !in_dev {
                in_dev = self.pushes.iter().all(|p| self.demo.overlay_tag_of(&p.app, "dev") == p.sha);
                if in_dev {
                    self.note("every push is in dev");
                }
            }
            if self.log.refresh().await.is_ok() {
                let counts = self.receiver.counts();
                let complete = in_dev && self.log.notifiable().keys().all(|id| counts.contains_key(id));
                if !complete || self.log.last_seq() != last_seq {
                    (last_seq, quiet_since) = (self.log.last_seq(), Instant::now());
                } else if quiet_since.elapsed() >= QUIET {
                    self.note("settled");
                    return;
                }
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        eprintln!("not settled after {SETTLE_TIMEOUT:?}");
    }

    async fn assert_one_build_each(&self) {
        let pg = self.demo.postgres.as_ref().expect("postgres");
        for Pushed { app, sha, delivery, .. } in &self.pushes {
            let count = |kind| self.log.of(kind, sha).len();
            let counts =
                (count("build.requested"), count("build.started"), count("build.succeeded"), count("build.failed"));
            assert_eq!(
                counts,
                (1, 1, 1, 0),
                "{app} {sha} (delivery {delivery}): (requested, started, succeeded, failed)"
            );
            let tags = inspect::registry_tags(&self.demo.registry.url(), &format!("demo/{app}")).await;
            assert!(tags.contains(sha), "{app} {sha} is not in the registry: {tags:?}");
            let sql = format!("SELECT state FROM builder.builds WHERE commit_sha = '{sha}'");
            let rows = pg.psql(self.demo.db_name(), &sql).await.expect("builds");
            assert_eq!(rows.trim(), "succeeded", "{app} {sha}: the builds rows");
        }
        let built: HashSet<&str> =
            self.log.events.iter().filter(|e| e.kind() == "build.succeeded").map(|e| e.commit_sha()).collect();
        let pushed: HashSet<&str> = self.pushes.iter().map(|p| p.sha.as_str()).collect();
        assert_eq!(built, pushed, "builds of commits nobody pushed");
    }

    fn assert_one_dev_commit_each(&self) {
        let gitops = self.demo.gitops_path();
        let pushed: HashSet<&str> = self.pushes.iter().map(|p| p.sha.as_str()).collect();
        for Pushed { app, sha, .. } in &self.pushes {
            let dev = format!("apps/{app}/dev/kustomization.yaml");
            let commits = inspect::commits_touching(&gitops, "main", &dev);
            let carrying: Vec<_> = commits.iter().filter(|c| c.sources.contains(sha)).collect();
            assert_eq!(carrying.len(), 1, "{app} {sha}: dev commits carrying it: {carrying:#?}");
            let overlay = inspect::show(&gitops, &carrying[0].sha, &dev);
            assert_eq!(inspect::new_tag(&overlay).as_deref(), Some(sha.as_str()), "{app} {sha}: {overlay}");
            let unknown = |c: &&GitopsCommit| c.sources.iter().any(|s| !pushed.contains(s.as_str()));
            let stray: Vec<_> = commits.iter().filter(unknown).collect();
            assert!(stray.is_empty(), "{app}: dev commits for commits nobody pushed: {stray:#?}");
            let promoter = commits.iter().filter(|c| !c.promotions.is_empty()).count();
            assert_eq!(promoter, 1, "{app}'s dev commits: {commits:#?}");
        }
    }

    fn assert_each_notification_once(&self) {
        let notified = self.receiver.assert_each_once(&self.log.notifiable());
        eprintln!(
            "{} pushes, {notified} events each notified once (held and redone: {:?}), in {:.0}s",
            self.pushes.len(),
            self.receiver.held(),
            self.started.elapsed().as_secs_f64()
        );
    }
}

/// Commits a change of `app` on top of `before` and builds its push webhook.
async fn commit(repo: &AppRepo, clone_url: &str, app: &str, before: &str) -> Push {
    let (repo, owned_app) = (repo.clone(), app.to_owned());
    let text = format!("change of {app}");
    let sha = tokio::task::spawn_blocking(move || repo.commit(&owned_app, &text)).await.expect("commit");
    let message = format!("feat({app}): change of {app}");
    Push::new(clone_url, before, &sha, &message, &[], &[&format!("apps/{app}/hello.txt")])
}

/// Every push of the stream, once accepted, in the order sent.
async fn collect(stream: JoinHandle<Vec<JoinHandle<Result<Pushed, String>>>>, services: &Services) -> Vec<Pushed> {
    let mut pushes = Vec::new();
    for sending in stream.await.expect("stream") {
        let pushed = sending.await.expect("join");
        pushes.push(pushed.unwrap_or_else(|e| panic!("{e}\n{}", services.tails(30))));
    }
    pushes
}
