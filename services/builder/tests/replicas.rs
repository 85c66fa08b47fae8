//! Builder processes sharing one work queue: two replicas split 20 requests and build each
//! exactly once; a replica killed with SIGKILL mid-build has its build redelivered after the
//! ack wait and completed once by another replica.

mod common;

use common::{World, of, request, wait_events};
use slipway_testkit::{ServiceProcess, boot, free_port};
use sqlx::Row as _;
use std::path::Path;
use std::time::Duration;

const BIN: &str = env!("CARGO_BIN_EXE_slipway-builder");

/// A builder process with its own work dir and `buildah`.
/// A builder process; `ack_wait_secs` bounds how fast a dead replica's build comes back, and
/// (through the heartbeat staleness it implies) how starved a live one may be before it is
/// taken for dead: tests that do not kill anything use a generous one.
fn spawn(world: &World, dir: &Path, buildah: &str, ack_wait_secs: u64) -> (ServiceProcess, String) {
    let work = dir.join(format!("work-{}", free_port()));
    std::fs::create_dir_all(&work).expect("work dir");
    let config = work.join("builder.toml");
    std::fs::write(
        &config,
        format!(
            "[build]\nwork_dir = {work:?}\nregistry_tls = false\nconcurrency = 2\n\n[build.buildah]\nprogram = {buildah:?}\n\n\
             [[apps]]\nname = \"writer\"\nrepository = {repo:?}\ncontext = \"apps/writer\"\nimage = \"{host}/acme/writer\"\n",
            repo = world.repo_url,
            host = world.registry.host(),
        ),
    )
    .expect("config");
    let admin = free_port();
    let mut env = boot::service_env(&world.nats.url(), &world.db, admin);
    env.push(("SLIPWAY_CONFIG".into(), config.display().to_string()));
    env.push(("SLIPWAY_NATS__ACK_WAIT_SECS".into(), ack_wait_secs.to_string()));
    let process = ServiceProcess::spawn(BIN, &env).expect("spawn builder");
    (process, format!("http://127.0.0.1:{admin}"))
}

async fn wait_ready(process: &ServiceProcess, admin: &str) {
    process.wait_http_ok(&format!("{admin}/readyz"), Duration::from_secs(30)).await.expect("builder ready");
}

async fn builds(db: &str) -> Vec<(String, String, i32, String)> {
    let pool = sqlx::PgPool::connect(db).await.expect("connect");
    sqlx::query("SELECT build_id, state, attempts, replica FROM builder.builds ORDER BY build_id")
        .fetch_all(&pool)
        .await
        .expect("builds")
        .iter()
        .map(|r| (r.get("build_id"), r.get("state"), r.get("attempts"), r.get("replica")))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_build_each_of_twenty_requests_exactly_once() {
    let world = World::start().await;
    let sha = world.commit_writer("main", "replicas\n");
    let dir = tempfile::tempdir().expect("dir");
    let bud_log = dir.path().join("bud.log");
    let counting = common::counting_buildah(dir.path(), &bud_log).display().to_string();
    let (a, a_admin) = spawn(&world, dir.path(), &counting, 30);
    let (b, b_admin) = spawn(&world, dir.path(), &counting, 30);
    wait_ready(&a, &a_admin).await;
    wait_ready(&b, &b_admin).await;
    let publisher = world.publisher().await;
    let js = world.js().await;

    let started = std::time::Instant::now();
    let ids: Vec<String> = (0..20).map(|i| format!("q-{i:02}")).collect();
    for (i, id) in ids.iter().enumerate() {
        let req = request(id, "writer", &sha, &format!("refs/heads/b{i}"), &[&format!("r{i}")]);
        publisher.publish(&req).await.expect("publish");
    }
    let events =
        wait_events(&js, Duration::from_secs(240), |e| e.iter().filter(|e| e.kind == "succeeded").count() >= 20).await;
    let took = started.elapsed();
    for id in &ids {
        assert_eq!(of(&events, "succeeded", id).len(), 1, "{id}: {events:#?}");
        assert_eq!(of(&events, "started", id).len(), 1, "{id}");
    }
    assert!(!events.iter().any(|e| e.kind == "failed"), "{events:#?}");
    for i in 0..20 {
        assert!(world.registry_digest(&format!("r{i}")).await.is_some(), "tag r{i} missing");
    }
    // Let any stray redelivery show itself, then count once more.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let events = common::build_events(&js).await;
    assert_eq!(events.iter().filter(|e| e.kind == "succeeded").count(), 20);
    let rows = builds(&world.db).await;
    assert_eq!(rows.len(), 20);
    assert!(rows.iter().all(|(_, state, _, _)| state == "succeeded"), "{rows:#?}");
    // Built exactly once at a time: for every request the wrapper's log shows build, push,
    // build, push … — never two builds before a push (two replicas, or a takeover while the
    // first still ran). More than one round is a retry after a failed attempt, and each round
    // is an attempt the builds table counted.
    let buds = std::fs::read_to_string(&bud_log).expect("bud log");
    for (i, (_, _, attempts, _)) in rows.iter().enumerate() {
        let (dir, tag) = (format!("/builds/q-{i:02}-"), format!(":r{i} "));
        // (step, succeeded) in the order they finished.
        let steps: Vec<(&str, bool)> = buds
            .lines()
            .filter_map(|l| {
                let line = format!("{l} ");
                let ok = l.starts_with("0 ");
                if line.contains(" bud ") && line.contains(&dir) {
                    Some(("bud", ok))
                } else if line.contains(" push ") && line.contains(&tag) {
                    Some(("push", ok))
                } else {
                    None
                }
            })
            .collect();
        // A finished build is followed by its push before any other build of the request.
        let overlapping = steps.windows(2).any(|w| w[0] == ("bud", true) && w[1].0 == "bud");
        let rounds = steps.iter().filter(|(step, _)| *step == "bud").count();
        assert!(rounds >= 1 && !overlapping, "request {i} built concurrently: {steps:?}\n{buds}");
        assert!(rounds <= *attempts as usize, "request {i}: {rounds} builds in {attempts} attempts\n{buds}");
        assert_eq!(steps.iter().filter(|s| **s == ("push", true)).count().min(1), 1, "request {i} never pushed");
    }
    let retried: Vec<_> = rows.iter().filter(|(_, _, attempts, _)| *attempts > 1).collect();
    if !retried.is_empty() {
        eprintln!("retried after a failed attempt: {retried:?}\n{buds}");
    }
    let mut per_replica = std::collections::BTreeMap::<&str, usize>::new();
    for (_, _, _, replica) in &rows {
        *per_replica.entry(replica.as_str()).or_default() += 1;
    }
    eprintln!("20 builds by 2 replicas in {took:?}: {per_replica:?}");
    for p in [a, b] {
        p.sigterm().expect("SIGTERM");
    }
}

/// The children of `pid` (the build programs a killed builder leaves behind).
fn children(pid: u32) -> Vec<u32> {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else { return Vec::new() };
    let mut out = Vec::new();
    for task in tasks.flatten() {
        let list = std::fs::read_to_string(task.path().join("children")).unwrap_or_default();
        out.extend(list.split_whitespace().filter_map(|p| p.parse::<u32>().ok()));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_build_killed_mid_way_is_redelivered_and_completes_once() {
    let world = World::start().await;
    let sha = world.commit_writer("main", "crash\n");
    let dir = tempfile::tempdir().expect("dir");
    let slow = common::slow_buildah(dir.path(), 5);
    let (mut a, a_admin) = spawn(&world, dir.path(), &slow.display().to_string(), 3);
    wait_ready(&a, &a_admin).await;
    let publisher = world.publisher().await;
    let js = world.js().await;

    publisher.publish(&request("crash-1", "writer", &sha, "refs/heads/main", &[])).await.expect("publish");
    wait_events(&js, Duration::from_secs(30), |e| !of(e, "started", "crash-1").is_empty()).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let orphans = children(a.pid().expect("pid"));
    a.sigkill().expect("kill -9");
    let _ = a.wait(Duration::from_secs(5)).await;
    // What the dead builder ran would go on running on a host (in a pod it dies with it).
    for pid in orphans {
        let _ = std::process::Command::new("kill").args(["-KILL", &pid.to_string()]).status();
    }

    let killed_at = std::time::Instant::now();
    let (b, b_admin) = spawn(&world, dir.path(), "buildah", 3);
    wait_ready(&b, &b_admin).await;
    let events = wait_events(&js, Duration::from_secs(60), |e| !of(e, "succeeded", "crash-1").is_empty()).await;
    eprintln!("redelivered and built {:?} after the kill", killed_at.elapsed());
    tokio::time::sleep(Duration::from_secs(4)).await;
    let events_after = common::build_events(&js).await;
    assert_eq!(of(&events_after, "succeeded", "crash-1").len(), 1, "{events_after:#?}");
    assert_eq!(of(&events, "started", "crash-1").len(), 1, "started is emitted once per build id");
    assert!(of(&events_after, "failed", "crash-1").is_empty());
    let rows = builds(&world.db).await;
    assert_eq!(rows.len(), 1);
    let (_, state, attempts, _) = &rows[0];
    assert_eq!((state.as_str(), *attempts), ("succeeded", 2), "{rows:?}");
    let digest = world.registry_digest(&sha).await.expect("pushed");
    let succeeded = &of(&events_after, "succeeded", "crash-1")[0].body;
    assert_eq!(succeeded["image"]["digest"], digest.as_str());
    b.sigterm().expect("SIGTERM");
}
