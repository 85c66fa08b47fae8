//! The cluster fault suite: two replicas of every service on a three-node JetStream cluster
//! (the stream and every bucket at three replicas), ingest's two replicas behind a
//! round-robin TCP front standing in for the Kubernetes Service. A stream of push webhooks,
//! one per app of a monorepo of [`DEFAULT_PUSHES`] apps (`E2E_CLUSTER_PUSHES` sets
//! another count), each a new commit touching that app only, one every [`INTERVAL`] whatever
//! the services are doing. Meanwhile, in turn: kill -9 of the nats-server leading the
//! `SLIPWAY` stream (restarted after [`NATS_DOWN`]), then of one promoter, one builder, one
//! ingest and one notifier replica, each restarted.
//!
//! Afterwards, once nothing moves any more, as in the single-node fault stream: every accepted
//! push led to exactly one build, exactly one dev commit carrying it, and every event reached
//! the receiver exactly once, correctly signed. The durations and figures are printed.

use std::time::{Duration, Instant};

use slipway_e2e::demo::WEBHOOK_SECRET;
use slipway_e2e::front::Front;
use slipway_e2e::inspect::EventLog;
use slipway_e2e::outcome::{Outcome, Pushed, Sending, collect, push_of};
use slipway_e2e::receiver::Receiver;
use slipway_e2e::webhook;
use slipway_e2e::{Database, Demo, Overrides, Replica, Services, binaries};
use slipway_testkit::free_port;

const NOTIFY_SECRET: &str = "e2e-cluster-notify-secret";
/// Pushes (and apps) unless `E2E_CLUSTER_PUSHES` says otherwise.
const DEFAULT_PUSHES: usize = 1000;
/// One push per interval: 40 webhooks/s offered.
const INTERVAL: Duration = Duration::from_millis(25);
/// How long the stream leader's nats-server stays down.
const NATS_DOWN: Duration = Duration::from_secs(5);
/// How long the services may take to settle after the last push was accepted.
const SETTLE_TIMEOUT: Duration = Duration::from_secs(1500);
/// Nothing new in the stream for this long, and every notification in: settled.
const QUIET: Duration = Duration::from_secs(5);
/// How long the notifier may take to post something once the test waits to hold a post.
const HOLD_TIMEOUT: Duration = Duration::from_secs(120);
const STREAM: &str = "SLIPWAY";

/// What is killed -9 (and restarted).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kill {
    /// kill -9 of the node leading the `SLIPWAY` stream, restarted after [`NATS_DOWN`].
    StreamLeader,
    Promoter,
    /// A builder replica dies while builds are in flight.
    Builder,
    /// An ingest replica is down for 1.5 s (plus its restart): the front sends the webhooks to
    /// the other; those in flight on it are refused and posted again.
    Ingest,
    /// A notifier replica dies while its post to the receiver is in flight.
    Notifier,
}

/// When each fault fires, from the first push; a fault that overran its successor's time
/// delays it (the faults never overlap).
const TIMELINE: [(Duration, Kill); 5] = [
    (Duration::from_secs(5), Kill::StreamLeader),
    (Duration::from_secs(13), Kill::Promoter),
    (Duration::from_secs(16), Kill::Builder),
    (Duration::from_secs(19), Kill::Ingest),
    (Duration::from_secs(22), Kill::Notifier),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_of_every_service_on_a_nats_cluster_deliver_each_push_exactly_once_through_faults() {
    let count = std::env::var("E2E_CLUSTER_PUSHES").ok().and_then(|n| n.parse().ok()).unwrap_or(DEFAULT_PUSHES);
    let apps: Vec<String> = (1..=count).map(|n| format!("app-{n:04}")).collect();
    let mut suite = Suite::start(&apps).await;
    let stream = suite.send_stream(&apps).await;
    suite.run_faults().await;
    suite.pushes = collect(stream, || suite.replicas.iter().map(|s| s.tails(30)).collect()).await;
    let last = suite.pushes.iter().map(|p| p.accepted).max().expect("pushes");
    let accepted_in = last.duration_since(suite.started);
    let refused: usize = suite.pushes.iter().map(|p| p.refused).sum();
    suite.note(&format!(
        "all {count} pushes accepted in {:.1}s ({:.0} webhooks/s); {refused} posts refused on the way; \
         connections per ingest replica {:?}",
        accepted_in.as_secs_f64(),
        count as f64 / accepted_in.as_secs_f64(),
        suite.front.handed()
    ));
    suite.settle().await;
    let settled_in = suite.started.elapsed();
    let outcome = suite.outcome();
    outcome.assert_one_build_each().await;
    let dev_commits = outcome.assert_one_dev_commit_each();
    let notified = outcome.assert_each_notification_once();
    eprintln!(
        "cluster fault suite: {count} pushes over {count} apps, 2 replicas of each service, 3 nats-servers, \
         streams at 3 replicas\n  accepted in {:.1}s; every push built once, in dev in one commit each \
         ({dev_commits} dev commits), {notified} events each notified once, settled after {:.1}s\n  faults: {}",
        accepted_in.as_secs_f64(),
        settled_in.as_secs_f64(),
        suite.figures.join("; ")
    );
    for services in suite.replicas.drain(..) {
        services.stop().await;
    }
}

// Fields drop in order: the services stop before the servers under them.
struct Suite {
    replicas: Vec<Services>,
    demo: Demo,
    front: Front,
    receiver: Receiver,
    log: EventLog,
    /// The accepted pushes, in the order they were sent.
    pushes: Vec<Pushed>,
    /// What each fault measured, for the summary.
    figures: Vec<String>,
    started: Instant,
}

impl Suite {
    async fn start(apps: &[String]) -> Suite {
        let begun = Instant::now();
        let receiver = Receiver::start(NOTIFY_SECRET).await;
        let names: Vec<&str> = apps.iter().map(String::as_str).collect();
        let demo = Demo::start_on_cluster(Database::Shared, &names).await;
        // Each notifier replica names itself in the receiver's URL, so that the test kills the
        // one whose post it holds.
        let config = receiver.notifier_config();
        demo.write_configs(&config.replace(&receiver.url, &format!("{}?replica=1", receiver.url)));
        demo.write_notifier_config(2, &config.replace(&receiver.url, &format!("{}?replica=2", receiver.url)));
        let overrides = Overrides {
            // A crashed consumer's messages come back, and a dead builder's build is taken
            // over, within seconds rather than the default 30 s.
            all: &[("SLIPWAY_NATS__ACK_WAIT_SECS", "10")],
            // The SBOM is the scan suite's business; here it would only add a Syft run per build.
            builder: &[("SLIPWAY_BUILD__CONCURRENCY", "2"), ("SLIPWAY_SCAN__SBOM", "false")],
        };
        let ports = [free_port(), free_port()];
        let mut replicas = Vec::new();
        for (i, port) in ports.iter().enumerate() {
            let api_port = (i > 0).then(free_port);
            let replica = Replica { index: i + 1, webhook_port: *port, api_port };
            replicas.push(demo.start_replica(binaries!(), overrides, &replica).await);
        }
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", demo.webhook_port())).await.expect("bind front");
        let front = Front::start(listener, ports.iter().map(|p| ([127, 0, 0, 1], *p).into()).collect());
        let log = EventLog::connect(&demo.nats.url()).await;
        eprintln!(
            "[start] {} apps, 3 nats-servers, 2 × 4 services ready in {:.1}s",
            apps.len(),
            begun.elapsed().as_secs_f64()
        );
        Suite { replicas, demo, front, receiver, log, pushes: Vec::new(), figures: Vec::new(), started: Instant::now() }
    }

    /// Commits one change per app (pushed to the app repository at once, before the stream),
    /// then spawns the stream: one push webhook per app, one per [`INTERVAL`] from now, each
    /// posted by a task of its own until accepted. Resets the test's clock.
    async fn send_stream(&mut self, apps: &[String]) -> Sending {
        let repo = self.demo.app_repo();
        let owned = apps.to_vec();
        let begun = Instant::now();
        let shas = tokio::task::spawn_blocking(move || {
            let shas: Vec<String> =
                owned.iter().map(|app| repo.commit_local(app, &format!("change of {app}"))).collect();
            repo.push();
            shas
        })
        .await
        .expect("commits");
        eprintln!("[start] {} commits made and pushed in {:.1}s", shas.len(), begun.elapsed().as_secs_f64());
        let mut pushes = Vec::with_capacity(apps.len());
        let mut before = self.demo.app_sha.clone();
        for (app, sha) in apps.iter().zip(&shas) {
            pushes.push((app.clone(), push_of(&self.demo.app_url, app, &before, sha)));
            before.clone_from(sha);
        }
        self.started = Instant::now();
        let start = tokio::time::Instant::now();
        let url = self.demo.webhook_url.clone();
        tokio::spawn(async move {
            let http = webhook::client();
            let mut sending = Vec::new();
            for (n, (app, push)) in pushes.into_iter().enumerate() {
                tokio::time::sleep_until(start + INTERVAL * u32::try_from(n).expect("pushes")).await;
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
            self.note(&format!("kill -9 {fault:?}"));
            let begun = Instant::now();
            self.inject(fault).await;
            self.note(&format!("{fault:?} back after {:.1}s", begun.elapsed().as_secs_f64()));
        }
    }

    async fn inject(&mut self, fault: Kill) {
        match fault {
            Kill::StreamLeader => self.kill_stream_leader().await,
            Kill::Promoter => {
                self.replicas[0].promoter.kill().await;
                self.replicas[0].promoter.restart().await;
            }
            Kill::Builder => {
                let running = self.builds_in_flight().await;
                self.note(&format!("kill -9 builder 2 with {running} build(s) started and not finished"));
                self.replicas[1].builder.kill().await;
                self.replicas[1].builder.restart().await;
            }
            Kill::Ingest => {
                self.replicas[1].ingest.kill().await;
                tokio::time::sleep(Duration::from_millis(1_500)).await;
                self.replicas[1].ingest.restart().await;
            }
            Kill::Notifier => self.kill_notifier_mid_post().await,
        }
    }

    /// Kills the stream leader's node, measures the election of a new leader, restarts the
    /// node after [`NATS_DOWN`] and measures until its replica is current again.
    async fn kill_stream_leader(&mut self) {
        let client = slipway_testkit::connect_nats(&self.demo.nats.url()).await.expect("connect");
        let js = async_nats::jetstream::new(client);
        let cluster = self.demo.nats.cluster();
        let (leader, _) = cluster.wait_stream_leader(&js, STREAM, Duration::from_secs(30)).await.expect("a leader");
        cluster.kill(leader).await.expect("kill -9 the leader");
        let killed = Instant::now();
        let (new, _) = cluster.wait_stream_leader(&js, STREAM, Duration::from_secs(60)).await.expect("a new leader");
        let elected = killed.elapsed();
        let (killed_name, new_name) = (cluster.node_name(leader), cluster.node_name(new));
        eprintln!(
            "[{:>6.1}s]   killed {killed_name}; {new_name} leads after {:.1}s",
            self.started.elapsed().as_secs_f64(),
            elected.as_secs_f64()
        );
        tokio::time::sleep(NATS_DOWN.saturating_sub(killed.elapsed())).await;
        cluster.restart(leader).await.expect("restart the node");
        let restarted = Instant::now();
        while !cluster.stream_replica_current(&js, STREAM, leader).await.unwrap_or(false) {
            assert!(restarted.elapsed() < Duration::from_secs(120), "the restarted node never caught up");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let current = restarted.elapsed();
        self.figures.push(format!(
            "stream leader killed, new leader after {:.1}s, restarted node current {:.1}s after its restart",
            elected.as_secs_f64(),
            current.as_secs_f64()
        ));
    }

    /// Holds the next post to the receiver, kills the notifier replica that made it while it
    /// waits for the answer, lets the post go unacknowledged, and restarts that replica.
    async fn kill_notifier_mid_post(&mut self) {
        let held = self.receiver.hold_next();
        let held = tokio::time::timeout(HOLD_TIMEOUT, held).await.expect("a notification arrives").expect("held");
        let replica: usize = held.replica.parse().expect("the replica in the URL");
        self.note(&format!("holding notifier {replica}'s post of {}; kill -9 it", held.id));
        self.replicas[replica - 1].notifier.kill().await;
        self.receiver.release();
        self.replicas[replica - 1].notifier.restart().await;
    }

    /// Builds with a `build.started` and no outcome yet.
    async fn builds_in_flight(&mut self) -> usize {
        if self.log.refresh().await.is_err() {
            return 0;
        }
        self.log.builds_in_flight()
    }

    fn note(&self, what: &str) {
        eprintln!("[{:>6.1}s]   {what}", self.started.elapsed().as_secs_f64());
    }

    fn outcome(&mut self) -> Outcome<'_> {
        Outcome { demo: &self.demo, receiver: &self.receiver, log: &mut self.log, pushes: &self.pushes }
    }

    async fn settle(&mut self) {
        let started = self.started;
        let note = move |what: &str| eprintln!("[{:>6.1}s]   {what}", started.elapsed().as_secs_f64());
        self.outcome().settle(SETTLE_TIMEOUT, QUIET, &note).await;
    }
}
