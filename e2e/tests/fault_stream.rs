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

use std::time::{Duration, Instant};

use slipway_e2e::demo::WEBHOOK_SECRET;
use slipway_e2e::inspect::EventLog;
use slipway_e2e::outcome::{Outcome, Pushed, Sending, collect, commit};
use slipway_e2e::receiver::Receiver;
use slipway_e2e::webhook;
use slipway_e2e::{Database, Demo, Overrides, Services, binaries};

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
    suite.pushes = collect(stream, || suite.services.tails(30)).await;
    let refused: usize = suite.pushes.iter().map(|p| p.refused).sum();
    suite.note(&format!("all {APPS} pushes accepted; {refused} posts refused on the way"));
    assert!(refused > 0, "no webhook was refused: ingest was never down when one came");
    suite.settle().await;
    let outcome = suite.outcome();
    outcome.assert_one_build_each().await;
    outcome.assert_one_dev_commit_each();
    let notified = outcome.assert_each_notification_once();
    eprintln!(
        "{} pushes, {notified} events each notified once (held and redone: {:?}), in {:.0}s",
        suite.pushes.len(),
        suite.receiver.held(),
        suite.started.elapsed().as_secs_f64()
    );
    suite.services.stop().await;
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
    fn send_stream(&mut self, apps: Vec<String>) -> Sending {
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
                    Ok(Pushed { app, sha: push.after, delivery: push.delivery, refused, accepted: Instant::now() })
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
                self.demo.nats.single().kill().await.expect("kill -9 nats-server");
                tokio::time::sleep(Duration::from_secs(2)).await;
                self.demo.nats.single().restart().await.expect("restart nats-server");
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
        let id = tokio::time::timeout(HOLD_TIMEOUT, held).await.expect("a notification arrives").expect("held").id;
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
        self.log.builds_in_flight()
    }

    fn note(&self, what: &str) {
        eprintln!("[{:>5.1}s]   {what}", self.started.elapsed().as_secs_f64());
    }

    fn outcome(&mut self) -> Outcome<'_> {
        Outcome { demo: &self.demo, receiver: &self.receiver, log: &mut self.log, pushes: &self.pushes }
    }

    async fn settle(&mut self) {
        let started = self.started;
        let note = move |what: &str| eprintln!("[{:>5.1}s]   {what}", started.elapsed().as_secs_f64());
        self.outcome().settle(SETTLE_TIMEOUT, QUIET, &note).await;
    }
}
