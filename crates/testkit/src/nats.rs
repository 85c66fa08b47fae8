//! A real `nats-server` with JetStream, its store in a temporary directory.

use std::path::{Path, PathBuf};

use tempfile::TempDir;

use crate::daemon::Daemon;
use crate::error::{Error, Result};
use crate::free_port;
use crate::process;
use crate::watchdog::Watchdog;

/// The `max_payload` Slipway's nats-servers run with, in the test kit, the quickstart and
/// `deploy/`: NATS' own default, 1 MiB, written out so that all three say the same. Every
/// Slipway event is far smaller (`slipway_mesh::bounds::MAX_EVENT_BYTES`).
pub const MAX_PAYLOAD: usize = 1024 * 1024;

/// A `nats-server -js` on a free loopback port; its JetStream store survives [`kill`] and
/// [`restart`], which reuse the same port and directory.
///
/// [`kill`]: NatsServer::kill
/// [`restart`]: NatsServer::restart
pub struct NatsServer {
    // Fields drop in order: the process dies before its directory is removed.
    daemon: Daemon,
    port: u16,
    monitor_port: u16,
    client: reqwest::Client,
    dir: TempDir,
}

/// A fresh temporary directory for one server's config, store and log.
pub(crate) fn temp_dir() -> Result<TempDir> {
    tempfile::Builder::new().prefix("slipway-nats-").tempdir().map_err(Error::io("create nats temp dir"))
}

impl NatsServer {
    /// Starts a server and waits until `/healthz?js-enabled-only=true` answers 200. It runs
    /// with [`MAX_PAYLOAD`], as the quickstart and `deploy/` do.
    pub async fn start() -> Result<Self> {
        Self::start_with_max_payload(MAX_PAYLOAD).await
    }

    /// [`start`](Self::start) with another `max_payload` (bytes), for tests of the limit.
    pub async fn start_with_max_payload(max_payload: usize) -> Result<Self> {
        let program = process::find_binary("nats-server", "nats-server")?;
        process::retry_port_clash(|| Self::try_start(program.clone(), max_payload)).await
    }

    async fn try_start(program: PathBuf, max_payload: usize) -> Result<Self> {
        let dir = temp_dir()?;
        let (port, monitor_port) = (free_port(), free_port());
        let store = dir.path().join("jetstream");
        let args = process::args([
            "-a",
            "127.0.0.1",
            "-p",
            &port.to_string(),
            "-js",
            "-sd",
            &store.to_string_lossy(),
            "-m",
            &monitor_port.to_string(),
        ]);
        // nats-server 2.9 has no flag for it: a config file holds the one setting.
        let mut server =
            Self::prepare(program, dir, port, monitor_port, &format!("max_payload: {max_payload}\n"), args)?;
        server.wait_started().await?;
        Ok(server)
    }

    /// A server that runs `program -c <dir>/nats.conf <args>` with `conf` in that file, not yet
    /// started: the one-server start above and each node of a
    /// [`NatsCluster`](crate::NatsCluster) build theirs this way.
    pub(crate) fn prepare(
        program: PathBuf,
        dir: TempDir,
        port: u16,
        monitor_port: u16,
        conf: &str,
        args: Vec<std::ffi::OsString>,
    ) -> Result<Self> {
        let watchdog = Watchdog::spawn(dir.path())?;
        let conf_path = dir.path().join("nats.conf");
        std::fs::write(&conf_path, conf).map_err(Error::io("write nats.conf"))?;
        let mut all_args = process::args(["-c".into(), conf_path.into_os_string()]);
        all_args.extend(args);
        let log = dir.path().join("nats-server.log");
        Ok(NatsServer {
            daemon: Daemon::new("nats-server", program, all_args, dir.path(), log, watchdog),
            port,
            monitor_port,
            client: process::probe_client(),
            dir,
        })
    }

    fn health_url(&self) -> String {
        format!("http://127.0.0.1:{}/healthz?js-enabled-only=true", self.monitor_port)
    }

    pub(crate) async fn wait_started(&mut self) -> Result<()> {
        let url = self.health_url();
        let client = self.client.clone();
        self.daemon.start(|| process::http_ok(&client, &url)).await
    }

    /// `nats://127.0.0.1:PORT`
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// The client port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The HTTP monitoring port (`/varz`, `/jsz`, `/healthz`).
    pub fn monitor_port(&self) -> u16 {
        self.monitor_port
    }

    /// The JetStream store directory (`-sd`).
    pub fn store_dir(&self) -> PathBuf {
        self.dir.path().join("jetstream")
    }

    /// The server's log file.
    pub fn log_path(&self) -> &Path {
        self.daemon.log_path()
    }

    /// The last `lines` lines of the server's log.
    pub fn log_tail(&self, lines: usize) -> String {
        self.daemon.log_tail(lines)
    }

    /// The process id while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.daemon.pid()
    }

    /// SIGKILL and reap: a crash, nothing flushed.
    pub async fn kill(&mut self) -> Result<()> {
        self.daemon.kill().await
    }

    /// SIGTERM and wait; SIGKILL after 10 s.
    pub async fn stop(&mut self) -> Result<()> {
        self.daemon.stop().await
    }

    /// Starts again on the same port with the same store; stops it first if it runs.
    pub async fn restart(&mut self) -> Result<()> {
        let url = self.health_url();
        let client = self.client.clone();
        self.daemon.restart(|| process::http_ok(&client, &url)).await
    }

    /// Whether the server process is alive.
    pub fn is_running(&self) -> bool {
        self.daemon.is_running()
    }
}
