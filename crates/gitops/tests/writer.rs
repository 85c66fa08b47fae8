//! Git write-back against the test kit's real `git daemon`: byte-exact edits on the remote,
//! two writers racing on one branch, batching (group commit, with and without a batch delay),
//! crash retries, a cached clone reopened after a stop or a crash, and the latency of one update.

use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use slipway_gitops::{GitopsWriter, ImageChange, Outcome, RepoKey, Target, Update, WriterConfig};
use slipway_mesh::names::{AppName, CommitSha, EnvName, ImageTag};
use slipway_testkit::GitDaemon;
use slipway_testkit::repos::{git, remote_show, seed_repo};
use tempfile::TempDir;

fn path_str(path: &Path) -> &str {
    path.to_str().expect("utf-8 path")
}

/// A bare repository on the daemon whose `main` holds `files`.
fn seed(daemon: &GitDaemon, name: &str, files: &[(String, String)]) -> RepoKey {
    RepoKey::new(seed_repo(daemon, name, files), "main").expect("key")
}

fn remote_file(daemon: &GitDaemon, name: &str, path: &str) -> String {
    remote_show(daemon, name, "main", path)
}

/// `(sha, parent count, message)` of every commit on `main`, newest first.
fn remote_log(daemon: &GitDaemon, name: &str) -> Vec<(String, usize, String)> {
    let log = git(&["--git-dir", path_str(&daemon.repo_path(name)), "log", "--format=%H%x00%P%x00%B%x1e", "main"]);
    log.split('\u{1e}')
        .filter(|c| !c.trim().is_empty())
        .map(|c| {
            let mut parts = c.trim_start_matches('\n').splitn(3, '\0');
            let sha = parts.next().unwrap_or_default().to_owned();
            let parents = parts.next().unwrap_or_default().split_whitespace().count();
            (sha, parents, parts.next().unwrap_or_default().to_owned())
        })
        .collect()
}

/// Every value `main` ever had was an ancestor of the next: nothing was force-pushed.
fn assert_never_forced(daemon: &GitDaemon, name: &str) {
    let bare = daemon.repo_path(name);
    let heads = git(&["--git-dir", path_str(&bare), "reflog", "show", "--format=%H", "refs/heads/main"]);
    let heads: Vec<&str> = heads.lines().collect();
    assert!(heads.len() > 1, "the reflog records the pushes");
    for pair in heads.windows(2) {
        let (newer, older) = (pair[0], pair[1]);
        let status = Command::new("git")
            .args(["--git-dir", path_str(&bare), "merge-base", "--is-ancestor", older, newer])
            .status()
            .expect("git merge-base");
        assert!(status.success(), "{older} is not an ancestor of {newer}: a forced update");
    }
}

fn kustomize_update(id: &str, app: &str, tag: &str) -> Update {
    Update {
        promotion_id: id.into(),
        app: AppName::parse(app).expect("app"),
        stage: EnvName::parse("dev").expect("stage"),
        source_commit: Some(CommitSha::parse(&"c".repeat(40)).expect("sha")),
        target: Target::Kustomize { file: format!("apps/{app}/dev/kustomization.yaml"), image: app.into() },
        change: ImageChange { tag: Some(ImageTag::parse(tag).expect("tag")), ..ImageChange::default() },
    }
}

fn kustomization(app: &str) -> String {
    format!("# {app} in dev\nresources: [deployment.yaml]\nimages:\n  - name: {app}\n    newTag: \"v0\"  # seed\n")
}

fn app_files(apps: impl IntoIterator<Item = String>) -> Vec<(String, String)> {
    apps.into_iter().map(|app| (format!("apps/{app}/dev/kustomization.yaml"), kustomization(&app))).collect()
}

/// The writer's defaults (group commit, no batch delay) plus a batch delay of `delay_ms`.
fn config(dir: &TempDir, delay_ms: u64) -> WriterConfig {
    WriterConfig { max_batch_delay: Duration::from_millis(delay_ms), ..WriterConfig::new(dir.path()) }
}

const TRICKY_KUSTOMIZATION: &str = "\
# Managed by Slipway.
apiVersion: kustomize.config.k8s.io/v1beta1
kind:   Kustomization
resources: [ ../base ,  extra.yaml ]   # flow list, odd spacing
images:
      # six-space indent, a comment inside the list
      -   name: writer      # the writer
          newName: 'registry.local:5000/acme/writer'
          newTag: \"1.0.0\"   # double-quoted
      - {name: reader, newTag: 'r1'}   # flow entry, single-quoted
";

const TRICKY_VALUES: &str = "\
# Helm values
image:
        repository: registry.local:5000/acme/api   # eight spaces
        tag: 'v1'   # single-quoted
        pullPolicy: IfNotPresent
sidecar: {image: {tag: s1}}
";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edits_change_exactly_the_value_on_the_remote() {
    let daemon = GitDaemon::start().await.expect("git daemon");
    let files = [
        ("k/kustomization.yaml".to_owned(), TRICKY_KUSTOMIZATION.to_owned()),
        ("h/values.yaml".to_owned(), TRICKY_VALUES.to_owned()),
        ("flow/kustomization.yaml".to_owned(), "images: [{name: a, newTag: \"1\"}]\n".to_owned()),
    ];
    let key = seed(&daemon, "bytes", &files);
    let work = TempDir::new().expect("work dir");
    let writer = GitopsWriter::new(config(&work, 0));
    let tag = |t: &str| ImageChange { tag: Some(ImageTag::parse(t).expect("tag")), ..ImageChange::default() };
    let target = |file: &str, image: &str| Target::Kustomize { file: file.into(), image: image.into() };
    let edits = [
        ("p-writer", target("k/kustomization.yaml", "writer"), tag("1.0.1")),
        ("p-reader", target("k/kustomization.yaml", "reader"), tag("r2")),
        ("p-flow", target("flow/kustomization.yaml", "a"), tag("2")),
        (
            "p-api",
            Target::HelmValues { file: "h/values.yaml".into(), tag_key: "image.tag".into(), digest_key: None },
            tag("v2"),
        ),
        (
            "p-sidecar",
            Target::HelmValues { file: "h/values.yaml".into(), tag_key: "sidecar.image.tag".into(), digest_key: None },
            tag("s2"),
        ),
    ];
    for (id, target, change) in edits {
        let update = Update { promotion_id: id.into(), target, change, ..kustomize_update(id, "writer", "v1") };
        let landed = writer.apply(&key, update).await.expect("landed");
        assert_eq!(landed.outcome, Outcome::Committed, "{id}");
    }
    let kustomization = TRICKY_KUSTOMIZATION.replace("\"1.0.0\"", "\"1.0.1\"").replace("'r1'", "'r2'");
    assert_eq!(remote_file(&daemon, "bytes", "k/kustomization.yaml"), kustomization);
    let values = TRICKY_VALUES.replace("'v1'", "'v2'").replace("tag: s1", "tag: s2");
    assert_eq!(remote_file(&daemon, "bytes", "h/values.yaml"), values);
    assert_eq!(remote_file(&daemon, "bytes", "flow/kustomization.yaml"), "images: [{name: a, newTag: \"2\"}]\n");

    let log = remote_log(&daemon, "bytes");
    let sha = "c".repeat(40);
    let expected = format!(
        "chore(writer): promote 1.0.1 to dev\n\nSlipway-Promotion-Id: p-writer\nSlipway-Source-Commit: {sha}\n"
    );
    assert_eq!(log[log.len() - 2].2, expected, "the first update's commit message");
    writer.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_writers_racing_lose_nothing_and_never_force() {
    let daemon = GitDaemon::start().await.expect("git daemon");
    let apps = |w: usize| (0..20).map(move |i| format!("app-{w}-{i:02}"));
    let key = seed(&daemon, "race", &app_files(apps(0).chain(apps(1))));
    let dirs = [TempDir::new().expect("dir"), TempDir::new().expect("dir")];
    // No batch delay: each writer commits as soon as it can, so the two collide on most pushes.
    let writers: Vec<Arc<GitopsWriter>> = dirs.iter().map(|d| Arc::new(GitopsWriter::new(config(d, 0)))).collect();
    let mut tasks = Vec::new();
    for (w, writer) in writers.iter().enumerate() {
        for (i, app) in apps(w).enumerate() {
            let (writer, key) = (writer.clone(), key.clone());
            tasks.push(tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(20 * i as u64)).await;
                let id = format!("race-{w}-{i}");
                writer.apply(&key, kustomize_update(&id, &app, &format!("v{w}-{i}"))).await
            }));
        }
    }
    for task in tasks {
        let landed = task.await.expect("task").expect("landed");
        assert_eq!(landed.outcome, Outcome::Committed);
    }
    for w in 0..2 {
        for (i, app) in apps(w).enumerate() {
            let text = remote_file(&daemon, "race", &format!("apps/{app}/dev/kustomization.yaml"));
            assert_eq!(text, kustomization(&app).replace("\"v0\"", &format!("\"v{w}-{i}\"")));
        }
    }
    let log = remote_log(&daemon, "race");
    assert!(log.iter().all(|(_, parents, _)| *parents <= 1), "linear history");
    for w in 0..2 {
        for i in 0..20 {
            let trailer = format!("Slipway-Promotion-Id: race-{w}-{i}\n");
            let carrying = log.iter().filter(|(_, _, message)| message.contains(&trailer)).count();
            assert_eq!(carrying, 1, "race-{w}-{i} is in {carrying} commits");
        }
    }
    assert_never_forced(&daemon, "race");
    let (a, b) = (writers[0].stats(), writers[1].stats());
    eprintln!("race: 40 updates from two writers in {} commits; writer stats {a:?} {b:?}", log.len() - 1);
    assert_eq!(a.commits + b.commits, log.len() as u64 - 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_updates_at_once_share_a_few_commits() {
    let daemon = GitDaemon::start().await.expect("git daemon");
    // Group commit alone (the default), then with a batch delay as well.
    for delay_ms in [0, 200] {
        let name = format!("batch-{delay_ms}");
        let apps: Vec<String> = (0..50).map(|i| format!("svc-{i:02}")).collect();
        let key = seed(&daemon, &name, &app_files(apps.clone()));
        let work = TempDir::new().expect("work dir");
        let writer = GitopsWriter::new(config(&work, delay_ms));
        let started = Instant::now();
        let pending: Vec<_> = apps
            .iter()
            .map(|app| writer.submit(&key, kustomize_update(&format!("b-{app}"), app, "v2")).expect("queued"))
            .collect();
        let mut commits = std::collections::HashSet::new();
        for landed in pending {
            commits.insert(landed.await.expect("landed").commit);
        }
        let log = remote_log(&daemon, &name);
        eprintln!("batch (delay {delay_ms} ms): 50 updates in {} commits, {:?}", log.len() - 1, started.elapsed());
        assert!(log.len() - 1 <= 5, "{} commits", log.len() - 1);
        assert_eq!(commits.len(), log.len() - 1);
        for app in &apps {
            let text = remote_file(&daemon, &name, &format!("apps/{app}/dev/kustomization.yaml"));
            assert!(text.contains("newTag: \"v2\""), "{app}: {text}");
        }
        let (_, _, message) = &log[0];
        assert!(message.starts_with("chore(slipway): promote "), "{message}");
    }
}

/// Holds the first push to `name` in its pre-receive hook until `gate/open` exists, and
/// creates `gate/held` once it holds it; later pushes pass.
fn hold_first_push(daemon: &GitDaemon, name: &str, gate: &Path) {
    let hook = daemon.repo_path(name).join("hooks/pre-receive");
    let (held, open) = (gate.join("held"), gate.join("open"));
    let script = format!(
        "#!/bin/sh\ncat >/dev/null\n[ -e '{held}' ] && exit 0\n: > '{held}'\n\
         while [ ! -e '{open}' ]; do sleep 0.01; done\n",
        held = held.display(),
        open = open.display()
    );
    std::fs::create_dir_all(hook.parent().expect("hooks dir")).expect("hooks dir");
    std::fs::write(&hook, script).expect("hook");
    let chmod = Command::new("chmod").arg("755").arg(&hook).status().expect("chmod");
    assert!(chmod.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn updates_arriving_during_a_push_share_the_next_commit() {
    let daemon = GitDaemon::start().await.expect("git daemon");
    let apps: Vec<String> = (0..4).map(|i| format!("grp-{i}")).collect();
    let key = seed(&daemon, "group", &app_files(apps.clone()));
    let gate = TempDir::new().expect("gate dir");
    hold_first_push(&daemon, "group", gate.path());
    let work = TempDir::new().expect("work dir");
    // No batch delay: only group commit decides what shares a commit.
    let writer = GitopsWriter::new(config(&work, 0));
    let update = |i: usize| kustomize_update(&format!("g-{i}"), &apps[i], "v2");

    // The idle writer starts on the lone update at once: its push reaches the remote and is
    // held there, with nothing else submitted yet.
    let first = writer.submit(&key, update(0)).expect("queued");
    while !gate.path().join("held").exists() {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let during: Vec<_> = (1..4).map(|i| writer.submit(&key, update(i)).expect("queued")).collect();
    std::fs::write(gate.path().join("open"), "").expect("open the gate");

    let first = first.await.expect("first lands");
    assert_eq!(first.outcome, Outcome::Committed);
    let mut later = Vec::new();
    for pending in during {
        let landed = pending.await.expect("lands");
        assert_eq!(landed.outcome, Outcome::Committed);
        later.push(landed.commit);
    }
    assert!(later.iter().all(|c| *c == later[0]), "the three share one commit: {later:?}");
    assert_ne!(later[0], first.commit);
    let log = remote_log(&daemon, "group");
    assert_eq!(log.len(), 3, "seed, the lone update, the group");
    assert_eq!((log[1].0.as_str(), log[0].0.as_str()), (first.commit.as_str(), later[0].as_str()));
    assert!(log[1].2.contains("Slipway-Promotion-Id: g-0\n") && !log[1].2.contains("g-1"), "{}", log[1].2);
    for i in 1..4 {
        assert!(log[0].2.contains(&format!("Slipway-Promotion-Id: g-{i}\n")), "{}", log[0].2);
    }
    let stats = writer.stats();
    assert_eq!((stats.batches, stats.commits, stats.retries), (2, 2, 0), "{stats:?}");
    writer.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_landed_promotion_is_not_committed_twice() {
    let daemon = GitDaemon::start().await.expect("git daemon");
    let key = seed(&daemon, "retry", &app_files(["writer".to_owned()]));
    let (first_dir, second_dir) = (TempDir::new().expect("dir"), TempDir::new().expect("dir"));
    let first = GitopsWriter::new(config(&first_dir, 0));
    let landed = first.apply(&key, kustomize_update("p-1", "writer", "v2")).await.expect("landed");
    assert_eq!(landed.outcome, Outcome::Committed);
    // A later promotion moves the tag on.
    first.apply(&key, kustomize_update("p-2", "writer", "v3")).await.expect("landed");
    first.shutdown().await;

    // A restarted promoter (fresh clone) retries p-1: answered from the trailer, no commit,
    // and the newer v3 is not undone.
    let second = GitopsWriter::new(config(&second_dir, 0));
    let retried = second.apply(&key, kustomize_update("p-1", "writer", "v2")).await.expect("landed");
    assert_eq!(retried.outcome, Outcome::AlreadyLanded);
    assert_eq!(retried.commit, landed.commit);
    let again = second.apply(&key, kustomize_update("p-2", "writer", "v3")).await.expect("landed");
    assert_eq!(again.outcome, Outcome::AlreadyLanded);
    assert_eq!(remote_log(&daemon, "retry").len(), 3, "seed + p-1 + p-2");
    let text = remote_file(&daemon, "retry", "apps/writer/dev/kustomization.yaml");
    assert!(text.contains("newTag: \"v3\""), "{text}");
    second.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_clone_is_refetched_and_reapplied() {
    let daemon = GitDaemon::start().await.expect("git daemon");
    // `git://` goes through the writer's own protocol client, `file://` through libgit2's.
    for (name, file_url) in [("stale", false), ("stale-file", true)] {
        let mut key = seed(&daemon, name, &app_files(["a".to_owned(), "b".to_owned()]));
        if file_url {
            key = RepoKey::new(format!("file://{}", path_str(&daemon.repo_path(name))), "main").expect("key");
        }
        let work = TempDir::new().expect("work dir");
        let writer = GitopsWriter::new(config(&work, 0));
        writer.apply(&key, kustomize_update("s-1", "a", "v2")).await.expect("landed");

        // Someone else pushes behind the writer's back: its cached head is now stale.
        let other = TempDir::new().expect("dir");
        let dir = path_str(other.path());
        git(&["clone", "-q", &key.url, dir]);
        let b_file = other.path().join("apps/b/dev/kustomization.yaml");
        std::fs::write(&b_file, kustomization("b").replace("# seed", "# edited by hand")).expect("write");
        git(&["-C", dir, "commit", "-q", "-am", "hand edit"]);
        git(&["-C", dir, "push", "-q", "origin", "main"]);
        let external = git(&["-C", dir, "rev-parse", "HEAD"]).trim().to_owned();

        let landed = writer.apply(&key, kustomize_update("s-2", "a", "v3")).await.expect("landed");
        assert_eq!(landed.outcome, Outcome::Committed);
        assert!(writer.stats().retries >= 1, "{name}: the push from the stale head was rejected: {:?}", writer.stats());
        let log = remote_log(&daemon, name);
        assert_eq!(log[1].0, external, "{name}: the new commit sits on the hand edit");
        assert_eq!(log[0].0, landed.commit);
        assert!(remote_file(&daemon, name, "apps/b/dev/kustomization.yaml").contains("# edited by hand"));
        assert!(remote_file(&daemon, name, "apps/a/dev/kustomization.yaml").contains("newTag: \"v3\""));
        assert_never_forced(&daemon, name);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_update_fails_alone_and_a_dead_remote_is_retried() {
    let mut daemon = GitDaemon::start().await.expect("git daemon");
    let key = seed(&daemon, "faults", &app_files(["good".to_owned()]));
    let work = TempDir::new().expect("work dir");
    let writer = GitopsWriter::new(config(&work, 100));
    let good = writer.submit(&key, kustomize_update("f-good", "good", "v2")).expect("queued");
    let missing = writer.submit(&key, kustomize_update("f-missing", "absent", "v2")).expect("queued");
    assert_eq!(good.await.expect("good lands").outcome, Outcome::Committed);
    let error = missing.await.expect_err("no such file");
    assert!(error.to_string().contains("apps/absent/dev/kustomization.yaml"), "{error}");

    daemon.kill().await.expect("kill daemon");
    let pending = writer.submit(&key, kustomize_update("f-later", "good", "v3")).expect("queued");
    tokio::time::sleep(Duration::from_millis(300)).await;
    daemon.restart().await.expect("restart daemon");
    assert_eq!(pending.await.expect("lands after the restart").outcome, Outcome::Committed);
    let text = remote_file(&daemon, "faults", "apps/good/dev/kustomization.yaml");
    assert!(text.contains("newTag: \"v3\""), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn single_update_latency_on_loopback() {
    let daemon = GitDaemon::start().await.expect("git daemon");
    let apps: Vec<String> = (0..10).map(|i| format!("lat-{i}")).collect();
    let key = seed(&daemon, "latency", &app_files(apps.clone()));
    for delay_ms in [0, 100] {
        let work = TempDir::new().expect("work dir");
        let writer = GitopsWriter::new(config(&work, delay_ms));
        let mut times = Vec::new();
        for (i, app) in apps.iter().enumerate() {
            let started = Instant::now();
            let update = kustomize_update(&format!("lat-{delay_ms}-{i}"), app, &format!("w{delay_ms}-{i}"));
            writer.apply(&key, update).await.expect("landed");
            times.push(started.elapsed());
        }
        let first = times[0];
        times.sort();
        eprintln!(
            "latency (batch delay {delay_ms} ms): first (clone) {first:?}, p50 {:?}, max {:?} over {} updates",
            times[times.len() / 2],
            times[times.len() - 1],
            times.len()
        );
    }
}

/// The one cached clone under `work` (a bare repository).
fn cached_clone(work: &TempDir) -> String {
    let mut dirs = std::fs::read_dir(work.path()).expect("work dir").map(|e| e.expect("entry").path());
    let clone = dirs.next().expect("a cached clone");
    assert!(dirs.next().is_none(), "one clone");
    path_str(&clone).to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clone_reopened_after_a_stop_or_a_crash_keeps_working() {
    let daemon = GitDaemon::start().await.expect("git daemon");
    let key = seed(&daemon, "reopen", &app_files(["a".to_owned()]));
    let work = TempDir::new().expect("work dir");
    let first = GitopsWriter::new(config(&work, 0));
    let landed = first.apply(&key, kustomize_update("r-1", "a", "v2")).await.expect("landed");
    first.shutdown().await;
    // Made in memory, the commit and everything it reaches are on disk once the writer stopped
    // (`git` fails on a missing object).
    let clone = cached_clone(&work);
    git(&["--git-dir", &clone, "rev-list", "--objects", &landed.commit]);

    // A crash before a commit reached the disk leaves refs on objects that are not there: the
    // next writer drops them and fetches instead of failing on them.
    let missing = "0123456789abcdef0123456789abcdef01234567\n";
    for name in ["refs/remotes/origin/main", "refs/slipway/push"] {
        std::fs::write(Path::new(&clone).join(name), missing).expect("write ref");
    }
    let second = GitopsWriter::new(config(&work, 0));
    let again = second.apply(&key, kustomize_update("r-2", "a", "v3")).await.expect("landed");
    assert_eq!(again.outcome, Outcome::Committed);
    second.shutdown().await;
    let log = remote_log(&daemon, "reopen");
    assert_eq!((log.len(), log[1].0.as_str(), log[0].0.as_str()), (3, landed.commit.as_str(), again.commit.as_str()));
    assert!(remote_file(&daemon, "reopen", "apps/a/dev/kustomization.yaml").contains("newTag: \"v3\""));
    git(&["--git-dir", &clone, "rev-list", "--objects", &again.commit]);
}
