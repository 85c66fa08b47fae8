//! `slipway-bench catalog`: the app catalog at the scale Slipway is built for. A generated
//! monorepo of `--apps` app directories (each with a Dockerfile) in a real git daemon, and a
//! GitOps repository whose `slipway.yaml` makes them apps with one directory generator over a
//! pipeline of three stages. It prints:
//! - fetch + validate + expand + compile, from a cold clone and from the cached clone;
//! - the compiled catalog's size and its publish time (object store + KV);
//! - the time from the catalog's push webhook, posted to a real ingest, until four watchers of
//!   the KV bucket (the four services' part of it, in this process) all run the new revision.
//!
//! Target: a new revision live ≤ 2 s after the webhook. Nothing here asserts on time.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use slipway_ingest::config::{GithubConfig, SpoolConfig};
use slipway_runtime::catalog::{CatalogStore, Live};
use slipway_runtime::config::{DatabaseConfig, NatsConfig, Secret, TelemetryConfig};
use slipway_testkit::{GitDaemon, NatsServer, shared_database};
use tokio_util::sync::CancellationToken;

const SECRET: &str = "bench-secret";

#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// App directories in the generated monorepo.
    #[arg(long, default_value_t = 10_000)]
    apps: usize,
    /// Catalog pushes timed end to end.
    #[arg(long, default_value_t = 5)]
    pushes: usize,
}

fn git(dir: &Path, args: &[&str]) -> anyhow::Result<String> {
    let out = Command::new("git")
        .args(["-c", "user.name=Bench", "-c", "user.email=bench@example.invalid", "-c", "commit.gpgsign=false"])
        .args(args)
        .current_dir(dir)
        .output()?;
    anyhow::ensure!(out.status.success(), "git {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

fn catalog_yaml(revision: usize) -> String {
    format!(
        "# revision {revision}\npipelines:\n  standard:\n    stages:\n      - {{ name: dev, policy: auto }}\n      \
         - {{ name: staging, policy: approval, teams: [qa] }}\n      - {{ name: prod, policy: approval, approvals: 2, teams: [sre] }}\n\
         teams:\n  qa: {{ members: [quinn] }}\n  sre: {{ members: [carol, dave] }}\n\
         generators:\n  - directory: {{ repository: acme/mono, glob: \"apps/*\" }}\n    template:\n      \
         source: {{ repository: acme/mono, paths: [\"{{dir}}/**\"] }}\n      build: {{ context: \"{{dir}}\" }}\n      \
         image: \"registry.example/acme/{{name}}\"\n      \
         deploy: {{ repository: git://h/deploy.git, path: \"apps/{{app}}/{{stage}}/values.yaml\", kind: helm }}\n      \
         pipeline: standard\n"
    )
}

fn push_body(after: &str) -> Vec<u8> {
    let body = serde_json::json!({
        "ref": "refs/heads/main", "before": "0".repeat(40), "after": after,
        "repository": { "full_name": "acme/deploy" }, "pusher": { "name": "bench" },
        "commits": [{ "id": after, "message": "catalog", "added": [], "modified": ["slipway.yaml"], "removed": [],
                      "author": { "username": "bench" } }],
    });
    serde_json::to_vec(&body).unwrap_or_default()
}

fn ms(d: Duration) -> String {
    format!("{:.0} ms", d.as_secs_f64() * 1000.0)
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    let nats = NatsServer::start().await?;
    let daemon = GitDaemon::start().await?;
    let (deploy_url, mono_url) = (daemon.create_bare_repo("deploy")?, daemon.create_bare_repo("mono")?);
    let scratch = tempfile::tempdir()?;
    let (mono, deploy) = (scratch.path().join("mono"), scratch.path().join("deploy"));
    let started = Instant::now();
    for (dir, url) in [(&mono, &mono_url), (&deploy, &deploy_url)] {
        std::fs::create_dir_all(dir)?;
        git(dir, &["init", "-q", "-b", "main"])?;
        git(dir, &["remote", "add", "origin", url])?;
    }
    for n in 0..args.apps {
        let app = mono.join(format!("apps/app-{n:05}"));
        std::fs::create_dir_all(&app)?;
        std::fs::write(app.join("Dockerfile"), "FROM scratch\n")?;
    }
    git(&mono, &["add", "-A"])?;
    git(&mono, &["commit", "-q", "-m", "apps"])?;
    git(&mono, &["push", "-q", "origin", "main"])?;
    std::fs::write(deploy.join("slipway.yaml"), catalog_yaml(0))?;
    git(&deploy, &["add", "-A"])?;
    git(&deploy, &["commit", "-q", "-m", "catalog"])?;
    git(&deploy, &["push", "-q", "origin", "main"])?;
    println!("catalog: {} apps x 3 stages, one generator; repositories made in {}", args.apps, ms(started.elapsed()));

    // Fetch + validate + expand + compile, cold then warm, as ingest does it.
    let work = tempfile::tempdir()?;
    let mut compile_times = Vec::new();
    let mut compiled = None;
    for _ in 0..4 {
        let (work, deploy_url, mono_url) = (work.path().to_owned(), deploy_url.clone(), mono_url.clone());
        let (took, catalog) = tokio::task::spawn_blocking(move || -> anyhow::Result<_> {
            let t = Instant::now();
            let clone = slipway_ingest::gittree::Clone::open(&work, &deploy_url).map_err(anyhow::Error::msg)?;
            let (_, tree) = clone.tree_at("main", None).map_err(anyhow::Error::msg)?;
            let sources = |repo: &str| {
                (repo == "acme/mono").then(|| {
                    let clone = slipway_ingest::gittree::Clone::open(&work, &mono_url).ok()?;
                    let (_, tree) = clone.tree_at("main", None).ok()?;
                    Some(slipway_catalog::Tree::paths(&tree))
                })?
            };
            let catalog =
                slipway_catalog::build(&tree, "slipway.yaml", &sources).map_err(|e| anyhow::anyhow!("{e}"))?;
            Ok((t.elapsed(), catalog))
        })
        .await??;
        compile_times.push(took);
        compiled = Some(catalog);
    }
    let catalog = compiled.ok_or_else(|| anyhow::anyhow!("no catalog"))?;
    anyhow::ensure!(catalog.apps.len() == args.apps, "{} apps compiled, {} expected", catalog.apps.len(), args.apps);
    let mut warm = compile_times[1..].to_vec();
    warm.sort();
    println!(
        "fetch + validate + compile: cold clone {}, cached clone {} (median of 3)",
        ms(compile_times[0]),
        ms(warm[1])
    );

    let js = async_nats::jetstream::new(async_nats::connect(nats.url()).await?);
    let store = CatalogStore::open(&js, 1).await?;
    let size = serde_json::to_vec(&catalog)?.len();
    let t = Instant::now();
    store.publish(&deploy_url, "bench", &catalog).await?;
    println!("compiled catalog: {:.1} MB of JSON; publish (object store + KV): {}", size as f64 / 1e6, ms(t.elapsed()));

    // A real ingest compiles on the catalog's push webhook; four watchers stand for the services.
    let db = shared_database().await?;
    let mut config = slipway_ingest::Config {
        nats: NatsConfig { url: nats.url(), ..NatsConfig::default() },
        database: DatabaseConfig { url: Some(Secret::new(db)), ..DatabaseConfig::with_schema("ingest") },
        github: GithubConfig { webhook_secrets: vec![Secret::new(SECRET)], ..GithubConfig::default() },
        spool: SpoolConfig { dir: scratch.path().join("spool") },
        telemetry: TelemetryConfig { filter: "warn".into(), ..TelemetryConfig::default() },
        ..slipway_ingest::Config::default()
    };
    config.catalog.repository = Some(deploy_url.clone());
    config.catalog.github_repository = Some(slipway_mesh::names::RepoName::parse("acme/deploy")?);
    config.catalog.sources = BTreeMap::from([("acme/mono".to_owned(), mono_url.clone())]);
    config.catalog.work_dir = scratch.path().join("ingest-catalog");
    let admin = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let http = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}/webhooks/github", http.local_addr()?);
    let shutdown = CancellationToken::new();
    let ingest = tokio::spawn(slipway_ingest::serve(config, admin, http, shutdown.clone()));
    let mut watchers = Vec::new();
    for _ in 0..4 {
        watchers.push(Live::watch(store.clone(), shutdown.clone()).await?.0);
    }
    let client = reqwest::Client::builder().no_proxy().build()?;
    let mut lives = Vec::new();
    for revision in 1..=args.pushes {
        std::fs::write(deploy.join("slipway.yaml"), catalog_yaml(revision))?;
        git(&deploy, &["commit", "-q", "-am", "catalog"])?;
        git(&deploy, &["push", "-q", "origin", "main"])?;
        let after = git(&deploy, &["rev-parse", "HEAD"])?;
        let body = push_body(&after);
        let sent = Instant::now();
        let answer = client
            .post(&url)
            .header("x-github-event", "push")
            .header("x-github-delivery", format!("bench-catalog-{revision}"))
            .header("x-hub-signature-256", slipway_ingest::signature::sign(SECRET.as_bytes(), &body))
            .body(body)
            .send()
            .await?;
        anyhow::ensure!(answer.status().as_u16() == 202, "webhook answered {}", answer.status());
        loop {
            let live = watchers.iter().all(|w| w.get().revision.as_ref().is_some_and(|r| r.commit == after));
            if live {
                break;
            }
            anyhow::ensure!(sent.elapsed() < Duration::from_secs(120), "revision {revision} never went live");
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        lives.push(sent.elapsed());
    }
    shutdown.cancel();
    let _ = ingest.await;
    lives.sort();
    let p50 = lives[lives.len() / 2];
    let max = lives[lives.len() - 1];
    let met = if max <= Duration::from_secs(2) { "met" } else { "NOT met" };
    println!(
        "catalog push webhook -> all 4 watchers on the new revision: p50 {}, max {} over {} pushes (target <= 2 s: {met})",
        ms(p50),
        ms(max),
        lives.len()
    );
    drop(watchers);
    drop(store);

    // The promoter on a catalog of the same size: every app completing a build at once, its
    // memory, and pages of the status.
    println!(
        "\nnext: the promoter on a catalog of {} apps (slipway-bench promotion --catalog --apps {} --singles 20)",
        args.apps, args.apps
    );
    let promotion =
        crate::promotion::Args { apps: args.apps, singles: 20, script_runs: 3, catalog: true, cluster: false };
    let r = crate::promotion::measure(&promotion).await?;
    println!(
        "{} simultaneous completions: all landed in {:.1} s, {} commits; single promotion p50 {:.0} ms",
        args.apps,
        r.burst,
        r.burst_commits,
        r.p50 * 1e3
    );
    crate::promotion::print_catalog_figures(&r, args.apps);
    println!(
        "ingest webhooks/s with this catalog: slipway-bench ingest --apps {} --touch 1 (and --touch 100)",
        args.apps
    );
    Ok(())
}
