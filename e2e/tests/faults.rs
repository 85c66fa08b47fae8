//! The fault suite: a stream of signed push webhooks, each a new commit of apps/hello on main
//! of the demo app repository (so each needs a build), through the quickstart's services while,
//! in turn, ingest, the builder, the promoter and the notifier are SIGKILLed and restarted,
//! nats-server and PostgreSQL are killed and restarted, the git daemon is down for a while and
//! the GitOps remote refuses pushes for a while. The notifier posts every event to a
//! signed-webhook receiver run by the test.
//!
//! Each push is sent once the previous one reached dev: the promoter (by design) skips a dev
//! version that a newer build overtook before it was written, and the builder cancels a build
//! of a branch that a newer request superseded, so only a stream at the pipeline's pace can
//! ask for one build and one dev commit per push. A refused webhook (ingest down) is posted
//! again under the same delivery id, as GitHub's redelivery would.
//!
//! Afterwards, once nothing moves any more: every accepted push led to exactly one build (one
//! `build.requested`, `build.started` and `build.succeeded`, one `builds` row, its tag in the
//! registry), exactly one dev commit carrying its source commit in the trailers and its tag in
//! the overlay, and every event reached the receiver exactly once, correctly signed.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use slipway_e2e::demo::{APP, WEBHOOK_SECRET};
use slipway_e2e::inspect::{self, EventLog};
use slipway_e2e::receiver::Receiver;
use slipway_e2e::webhook::{self, Push};
use slipway_e2e::{Database, Demo, Overrides, Services, binaries};

const NOTIFY_SECRET: &str = "e2e-notify-secret";
/// How long one push may take to reach dev, faults included.
const DELIVERY_TIMEOUT: Duration = Duration::from_secs(180);
/// How long the services may take to settle after the last push.
const SETTLE_TIMEOUT: Duration = Duration::from_secs(120);
/// Nothing new in the stream for this long, and every notification in: settled.
const QUIET: Duration = Duration::from_secs(4);
/// The dev overlay of the demo app.
const DEV: &str = "apps/hello/dev/kustomization.yaml";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fault {
    None,
    /// Ingest is down when the webhook comes: refused, posted again until the restart.
    KillIngest,
    /// The builder dies while it builds.
    KillBuilder,
    /// The promoter dies right after the build succeeded, as it takes the build in.
    KillPromoter,
    /// The notifier dies while its post to the receiver is in flight.
    KillNotifier,
    /// nats-server dies right after ingest accepted the webhook, down for 2 s.
    KillNats,
    /// PostgreSQL dies while the builder builds, down for 2 s.
    KillPostgres,
    /// The git daemon is down while the builder needs the source, for 5 s.
    GitDaemonDown,
    /// The GitOps remote refuses pushes until the promoter has been refused twice.
    PushesRefused,
}

const SCHEDULE: [Fault; 10] = [
    Fault::None,
    Fault::KillIngest,
    Fault::KillBuilder,
    Fault::KillPromoter,
    Fault::KillNotifier,
    Fault::KillNats,
    Fault::KillPostgres,
    Fault::GitDaemonDown,
    Fault::PushesRefused,
    Fault::None,
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_accepted_push_is_built_committed_and_notified_exactly_once_through_faults() {
    let mut suite = Suite::start().await;
    for (n, fault) in SCHEDULE.into_iter().enumerate() {
        suite.push(n, fault).await;
    }
    suite.settle().await;
    suite.assert_one_build_each().await;
    suite.assert_one_dev_commit_each();
    suite.assert_each_notification_once();
    suite.services.stop().await;
}

// Fields drop in order: the services stop before the servers under them.
struct Suite {
    services: Services,
    demo: Demo,
    receiver: Receiver,
    log: EventLog,
    http: reqwest::Client,
    /// The commits whose push ingest accepted, in order.
    accepted: Vec<String>,
    started: Instant,
}

impl Suite {
    async fn start() -> Suite {
        let receiver = Receiver::start(NOTIFY_SECRET).await;
        let demo = Demo::start(Database::Dedicated).await;
        demo.write_configs(&receiver.notifier_config());
        let buildah = demo.slow_buildah(2);
        let overrides = Overrides {
            // A shorter ack wait than the default 30 s: a crashed consumer's messages come
            // back, and a dead builder's build is taken over, within seconds.
            all: &[("SLIPWAY_NATS__ACK_WAIT_SECS", "10")],
            builder: &[("SLIPWAY_BUILD__BUILDAH__PROGRAM", &buildah)],
        };
        let services = demo.start_services(binaries!(), overrides).await;
        let log = EventLog::connect(&demo.nats.url()).await;
        let started = Instant::now();
        Suite { demo, services, receiver, log, http: webhook::client(), accepted: Vec::new(), started }
    }

    /// Commits, sends the push webhook with `fault` around it, and waits for the dev commit.
    async fn push(&mut self, n: usize, fault: Fault) {
        let before = self.accepted.last().cloned().unwrap_or_else(|| self.demo.app_sha.clone());
        let sha = self.demo.commit_app(&format!("change {n}"));
        let message = format!("feat(hello): change {n}");
        let push = Push::new(&self.demo.app_url, &before, &sha, &message, &[], &["apps/hello/hello.txt"]);
        match fault {
            Fault::KillIngest => self.push_while_ingest_is_down(&push).await,
            Fault::KillNotifier => self.push_and_kill_notifier_mid_post(&push).await,
            Fault::GitDaemonDown => self.push_while_git_daemon_is_down(&push).await,
            Fault::PushesRefused => self.push_while_gitops_refuses_pushes(&push).await,
            Fault::None | Fault::KillBuilder | Fault::KillPromoter | Fault::KillNats | Fault::KillPostgres => {
                self.deliver(&push).await;
                self.inject(fault, &sha).await;
            }
        }
        self.accepted.push(sha.clone());
        self.wait_dev(&sha, fault).await;
        self.note(&format!("push {n} ({fault:?}) of {sha} is in dev"));
    }

    /// Posts until accepted; returns how many posts were refused.
    async fn deliver(&self, push: &Push) -> usize {
        let url = &self.demo.webhook_url;
        let sent = webhook::deliver(&self.http, url, WEBHOOK_SECRET, push, 600, Duration::from_millis(100)).await;
        sent.unwrap_or_else(|e| panic!("{e}\n{}", self.services.tails(30)))
    }

    async fn inject(&mut self, fault: Fault, sha: &str) {
        match fault {
            Fault::KillBuilder => {
                self.wait_event("build.started", sha).await;
                self.note("build started; kill -9 builder");
                self.services.builder.kill().await;
                self.services.builder.restart().await;
            }
            Fault::KillPromoter => {
                self.wait_event("build.succeeded", sha).await;
                self.note("build succeeded; kill -9 promoter");
                self.services.promoter.kill().await;
                self.services.promoter.restart().await;
            }
            Fault::KillNats => {
                self.note("accepted; kill -9 nats-server");
                self.demo.nats.single().kill().await.expect("kill -9 nats-server");
                tokio::time::sleep(Duration::from_secs(2)).await;
                self.demo.nats.single().restart().await.expect("restart nats-server");
            }
            Fault::KillPostgres => {
                self.wait_event("build.started", sha).await;
                self.note("build started; kill -9 postgres");
                let pg = self.demo.postgres.as_mut().expect("dedicated postgres");
                pg.kill().await.expect("kill -9 postgres");
                tokio::time::sleep(Duration::from_secs(2)).await;
                pg.restart().await.expect("restart postgres");
            }
            _ => {}
        }
    }

    async fn push_while_ingest_is_down(&mut self, push: &Push) {
        self.services.ingest.kill().await;
        let (http, url, push) = (self.http.clone(), self.demo.webhook_url.clone(), push.clone());
        let pause = Duration::from_millis(100);
        let sending =
            tokio::spawn(async move { webhook::deliver(&http, &url, WEBHOOK_SECRET, &push, 600, pause).await });
        tokio::time::sleep(Duration::from_secs(1)).await;
        self.services.ingest.restart().await;
        self.note("ingest restarted");
        let refused = sending.await.expect("join").unwrap_or_else(|e| panic!("{e}\n{}", self.services.tails(30)));
        assert!(refused > 0, "the webhook was accepted while ingest was down");
    }

    async fn push_and_kill_notifier_mid_post(&mut self, push: &Push) {
        let held = self.receiver.hold_next();
        self.deliver(push).await;
        let id = tokio::time::timeout(DELIVERY_TIMEOUT, held).await.expect("a notification arrives").expect("held").id;
        self.note(&format!("holding the post of {id}; kill -9 notifier"));
        self.services.notifier.kill().await;
        self.receiver.release();
        self.services.notifier.restart().await;
        self.note("notifier restarted");
    }

    async fn push_while_git_daemon_is_down(&mut self, push: &Push) {
        self.demo.git.stop().await.expect("stop git daemon");
        self.deliver(push).await;
        self.note("accepted while the git daemon is down");
        tokio::time::sleep(Duration::from_secs(5)).await;
        self.demo.git.restart().await.expect("restart git daemon");
    }

    async fn push_while_gitops_refuses_pushes(&mut self, push: &Push) {
        let hook = self.demo.gitops_path().join("hooks/pre-receive");
        let refusals = self.demo.gitops_path().join("refusals.log");
        let script =
            format!("#!/bin/sh\necho refused >> '{}'\necho 'the remote is cut' >&2\nexit 1\n", refusals.display());
        std::fs::write(&hook, script).expect("write hook");
        std::process::Command::new("chmod").arg("+x").arg(&hook).status().expect("chmod");
        self.deliver(push).await;
        let deadline = Instant::now() + DELIVERY_TIMEOUT;
        while std::fs::read_to_string(&refusals).unwrap_or_default().lines().count() < 2 {
            assert!(Instant::now() < deadline, "the promoter never tried to push\n{}", self.services.tails(30));
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        std::fs::remove_file(&hook).expect("remove hook");
        self.note("the GitOps remote refused two pushes; accepting again");
    }

    fn note(&self, what: &str) {
        eprintln!("[{:>5.1}s]   {what}", self.started.elapsed().as_secs_f64());
    }

    async fn wait_event(&mut self, kind: &str, sha: &str) {
        if self.log.wait_for(kind, sha, DELIVERY_TIMEOUT).await.is_none() {
            panic!("no {kind} for {sha}\n{}", self.services.tails(30));
        }
    }

    async fn wait_dev(&self, sha: &str, fault: Fault) {
        let deadline = Instant::now() + DELIVERY_TIMEOUT;
        while self.demo.overlay_tag("dev") != sha {
            assert!(Instant::now() < deadline, "{sha} never reached dev ({fault:?})\n{}", self.services.tails(40));
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits until every event is notified and the stream stopped growing (or the deadline
    /// passed: the assertions then say what is missing).
    async fn settle(&mut self) {
        let deadline = Instant::now() + SETTLE_TIMEOUT;
        let (mut last_seq, mut quiet_since) = (0, Instant::now());
        while Instant::now() < deadline {
            if self.log.refresh().await.is_ok() {
                let counts = self.receiver.counts();
                let complete = self.log.notifiable().keys().all(|id| counts.contains_key(id));
                if !complete || self.log.last_seq() != last_seq {
                    (last_seq, quiet_since) = (self.log.last_seq(), Instant::now());
                } else if quiet_since.elapsed() >= QUIET {
                    return;
                }
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        eprintln!("not settled after {SETTLE_TIMEOUT:?}");
    }

    async fn assert_one_build_each(&self) {
        let tags = inspect::registry_tags(&self.demo.registry.url(), "demo/hello").await;
        for sha in &self.accepted {
            let count = |kind| self.log.of(kind, sha).len();
            let counts =
                (count("build.requested"), count("build.started"), count("build.succeeded"), count("build.failed"));
            assert_eq!(counts, (1, 1, 1, 0), "{sha}: (requested, started, succeeded, failed)");
            assert!(tags.contains(sha), "{sha} is not in the registry: {tags:?}");
            let sql = format!("SELECT state FROM builder.builds WHERE commit_sha = '{sha}'");
            let pg = self.demo.postgres.as_ref().expect("postgres");
            let rows = pg.psql(self.demo.db_name(), &sql).await.expect("builds");
            assert_eq!(rows.trim(), "succeeded", "{sha}: the builds rows");
        }
        let built: HashSet<&str> =
            self.log.events.iter().filter(|e| e.kind() == "build.succeeded").map(|e| e.commit_sha()).collect();
        let accepted: HashSet<&str> = self.accepted.iter().map(String::as_str).collect();
        assert_eq!(built, accepted, "builds of commits nobody pushed");
    }

    fn assert_one_dev_commit_each(&self) {
        let commits = inspect::commits_touching(&self.demo.gitops_path(), "main", DEV);
        for sha in &self.accepted {
            let carrying: Vec<_> = commits.iter().filter(|c| c.sources.contains(sha)).collect();
            assert_eq!(carrying.len(), 1, "{sha}: dev commits carrying it: {carrying:#?}");
            let overlay = inspect::show(&self.demo.gitops_path(), &carrying[0].sha, DEV);
            assert_eq!(inspect::new_tag(&overlay).as_deref(), Some(sha.as_str()), "{sha}: {overlay}");
        }
        let stray: Vec<_> = commits.iter().filter(|c| c.sources.iter().any(|s| !self.accepted.contains(s))).collect();
        assert!(stray.is_empty(), "dev commits for commits nobody pushed: {stray:#?}");
        let promoter = commits.iter().filter(|c| !c.promotions.is_empty()).count();
        assert_eq!(promoter, self.accepted.len(), "{APP}'s dev commits: {commits:#?}");
    }

    fn assert_each_notification_once(&self) {
        let notified = self.receiver.assert_each_once(&self.log.notifiable());
        eprintln!(
            "{} pushes, {notified} events each notified once (held and redone: {:?}), in {:.0}s",
            self.accepted.len(),
            self.receiver.held(),
            self.started.elapsed().as_secs_f64()
        );
    }
}
