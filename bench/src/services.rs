//! The real service binaries (`slipway-ingest`, `-builder`, `-promoter`, `-notifier`, built by
//! `cargo build --release --bins` next to this binary) started against the test kit's servers
//! with minimal configs: the time from spawn to `/readyz` answering 200, and their resident
//! memory (VmRSS from `/proc/<pid>/status`) idle and, sampled while a benchmark loads them,
//! at its peak.

use anyhow::{Context as _, bail};
use slipway_testkit::{NatsServer, ServiceProcess, free_port, shared_database};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// The admin API token the watch benchmark's subscribers present (role viewer).
pub const TOKEN: &str = "bench-viewer-token";

/// The four services, in start order.
pub const SERVICES: [&str; 4] = ["ingest", "builder", "promoter", "notifier"];

/// NATS, a fresh database and a scratch directory for the services' configs and state.
pub struct Servers {
    pub nats: NatsServer,
    pub db: String,
    pub dir: tempfile::TempDir,
}

impl Servers {
    pub async fn start() -> anyhow::Result<Self> {
        Ok(Servers { nats: NatsServer::start().await?, db: shared_database().await?, dir: tempfile::tempdir()? })
    }
}

/// A started service.
pub struct Service {
    pub name: &'static str,
    pub process: ServiceProcess,
    /// Spawn → first `/readyz` 200.
    pub ready: Duration,
    /// Its public listener: ingest's webhook port, the promoter's gRPC admin API port.
    pub port: u16,
}

impl Service {
    pub fn pid(&self) -> anyhow::Result<u32> {
        self.process.pid().context("service pid")
    }
}

/// `slipway-<name>` next to this binary (same profile), or a hint how to build it.
fn binary(name: &str) -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let path = exe.parent().context("bench binary directory")?.join(format!("slipway-{name}"));
    if !path.is_file() {
        bail!("{} is missing: run `cargo build --release --bins` first", path.display());
    }
    Ok(path)
}

/// The service's config file beyond the shared settings (which come from the environment).
fn config(name: &str, dir: &Path, port: u16) -> String {
    let state = dir.join(format!("{name}-state")).display().to_string();
    match name {
        "ingest" => format!(
            "[github]\nwebhook_secrets = [\"{}\"]\n[spool]\ndir = \"{state}\"\n[http]\nlisten = \"127.0.0.1:{port}\"\n\
             [[apps]]\nname = \"writer\"\npaths = [\"apps/writer/**\"]\n",
            crate::ingest::SECRET
        ),
        "builder" => format!("[build]\nwork_dir = \"{state}\"\n"),
        "promoter" => format!(
            "[gitops]\nwork_dir = \"{state}\"\n[health]\nmode = \"committed\"\n[admin_api]\nlisten = \"127.0.0.1:{port}\"\n\
             tokens = [{{ name = \"bench\", role = \"viewer\", sha256 = \"{}\" }}]\n",
            slipway_promoter::grpc::hash_token(TOKEN)
        ),
        _ => format!("[http]\nlisten = \"127.0.0.1:{port}\"\n"),
    }
}

/// Spawns `slipway-<name>` and waits for `/readyz` (polled every 5 ms, so the start-up time
/// is not rounded up to a coarse poll).
pub async fn spawn(name: &'static str, servers: &Servers) -> anyhow::Result<Service> {
    let program = binary(name)?;
    let (admin, port) = (free_port(), free_port());
    let file = servers.dir.path().join(format!("{name}.toml"));
    std::fs::write(&file, config(name, servers.dir.path(), port))?;
    let env = [
        ("SLIPWAY_CONFIG", file.display().to_string()),
        ("SLIPWAY_NATS__URL", servers.nats.url()),
        ("SLIPWAY_DATABASE__URL", servers.db.clone()),
        ("SLIPWAY_ADMIN__LISTEN", format!("127.0.0.1:{admin}")),
        ("SLIPWAY_TELEMETRY__FILTER", "warn".to_owned()),
    ]
    .map(|(k, v)| (k.to_owned(), v));
    let client = reqwest::Client::builder().no_proxy().timeout(Duration::from_secs(2)).build()?;
    let url = format!("http://127.0.0.1:{admin}/readyz");
    let started = Instant::now();
    let process = ServiceProcess::spawn(&program, &env)?;
    loop {
        if client.get(&url).send().await.is_ok_and(|r| r.status().is_success()) {
            break;
        }
        if !process.is_running() || started.elapsed() > Duration::from_secs(60) {
            bail!("slipway-{name} did not become ready:\n{}", process.output_tail(30));
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    Ok(Service { name, process, ready: started.elapsed(), port })
}

/// VmRSS of `pid` in bytes.
pub fn rss(pid: u32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).context("no VmRSS line")?;
    let kib: u64 = line.split_whitespace().nth(1).context("VmRSS value")?.parse()?;
    Ok(kib * 1024)
}

/// The highest VmRSS of a process while it is sampled (every 50 ms).
pub struct PeakRss {
    peak: Arc<AtomicU64>,
    stop: CancellationToken,
}

impl PeakRss {
    pub fn start(pid: u32) -> Self {
        let (peak, stop) = (Arc::new(AtomicU64::new(rss(pid).unwrap_or(0))), CancellationToken::new());
        let (sampled, stopped) = (peak.clone(), stop.clone());
        tokio::spawn(async move {
            while !stopped.is_cancelled() {
                if let Ok(now) = rss(pid) {
                    sampled.fetch_max(now, Ordering::Relaxed);
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        });
        PeakRss { peak, stop }
    }

    /// Stops sampling; the peak in bytes.
    pub fn finish(self) -> u64 {
        self.stop.cancel();
        self.peak.load(Ordering::Relaxed)
    }
}

/// Start-up and idle memory of one service.
#[derive(Debug, Clone)]
pub struct Idle {
    pub name: &'static str,
    pub ready: Duration,
    pub rss: u64,
}

/// Starts every service one after the other (so each start is timed alone), lets them
/// settle, and reads their idle RSS. Returns them running.
pub async fn start_all(servers: &Servers) -> anyhow::Result<(Vec<Service>, Vec<Idle>)> {
    let mut services = Vec::new();
    for name in SERVICES {
        services.push(spawn(name, servers).await?);
    }
    // Idle: past the boot work (migrations, consumer creation), nothing arriving.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let idle = services
        .iter()
        .map(|s| Ok(Idle { name: s.name, ready: s.ready, rss: rss(s.pid()?)? }))
        .collect::<anyhow::Result<Vec<_>>>()?;
    Ok((services, idle))
}

/// Peak RSS of the real ingest while `requests` signed webhooks are sent to it by the load
/// child, with the load's figures.
pub async fn ingest_under_load(
    ingest: &Service,
    dir: &Path,
    requests: usize,
) -> anyhow::Result<(u64, crate::load::Figures)> {
    let body = dir.join("push-rss.json");
    std::fs::write(&body, crate::ingest::push_body(8192))?;
    let url = format!("http://127.0.0.1:{}/webhooks/github", ingest.port);
    let run_id = format!("rss-{}", std::process::id());
    let peak = PeakRss::start(ingest.pid()?);
    let figures = crate::ingest::load(&url, &body, requests, 32, &run_id).await;
    Ok((peak.finish(), figures?))
}
