//! A real OCI image registry: the Distribution registry that Debian packages as
//! `docker-registry`, storing blobs in a temporary directory, no authentication.

use std::path::{Path, PathBuf};

use tempfile::TempDir;

use crate::daemon::Daemon;
use crate::error::{Error, Result};
use crate::free_port;
use crate::process;
use crate::watchdog::Watchdog;

/// A registry on a free loopback port, speaking plain HTTP; deletes are enabled. Its storage
/// survives [`kill`](Registry::kill) and [`restart`](Registry::restart).
pub struct Registry {
    // Fields drop in order: the process dies before its directory is removed.
    daemon: Daemon,
    port: u16,
    client: reqwest::Client,
    dir: TempDir,
}

impl Registry {
    /// Starts the registry and waits until `GET /v2/` answers 200.
    pub async fn start() -> Result<Self> {
        let program = process::find_binary("docker-registry", "docker-registry")?;
        process::retry_port_clash(|| Self::try_start(program.clone())).await
    }

    async fn try_start(program: PathBuf) -> Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix("slipway-registry-")
            .tempdir()
            .map_err(Error::io("create registry temp dir"))?;
        let watchdog = Watchdog::spawn(dir.path())?;
        let port = free_port();
        let config = dir.path().join("config.yml");
        std::fs::write(&config, config_yaml(&dir.path().join("data"), port))
            .map_err(Error::io("write registry config"))?;
        let args = process::args([std::ffi::OsStr::new("serve"), config.as_os_str()]);
        let log = dir.path().join("registry.log");
        let mut registry = Registry {
            daemon: Daemon::new("docker-registry", program, args, dir.path(), log, watchdog),
            port,
            client: process::probe_client(),
            dir,
        };
        let (client, url) = (registry.client.clone(), registry.v2_url());
        registry.daemon.start(|| process::http_ok(&client, &url)).await?;
        Ok(registry)
    }

    fn v2_url(&self) -> String {
        format!("{}/v2/", self.url())
    }

    /// `127.0.0.1:PORT`, the registry part of an image reference.
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// `http://127.0.0.1:PORT`
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The listening port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The storage root directory.
    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// The registry's log file.
    pub fn log_path(&self) -> &Path {
        self.daemon.log_path()
    }

    /// The last `lines` lines of the registry's log.
    pub fn log_tail(&self, lines: usize) -> String {
        self.daemon.log_tail(lines)
    }

    /// The process id while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.daemon.pid()
    }

    /// SIGKILL and reap.
    pub async fn kill(&mut self) -> Result<()> {
        self.daemon.kill().await
    }

    /// SIGTERM and wait; SIGKILL after 10 s.
    pub async fn stop(&mut self) -> Result<()> {
        self.daemon.stop().await
    }

    /// Starts again on the same port and storage (stopping first if it runs); waits for 200.
    pub async fn restart(&mut self) -> Result<()> {
        let (client, url) = (self.client.clone(), self.v2_url());
        self.daemon.restart(|| process::http_ok(&client, &url)).await
    }

    /// Whether the registry process is alive.
    pub fn is_running(&self) -> bool {
        self.daemon.is_running()
    }
}

fn config_yaml(root: &Path, port: u16) -> String {
    // The path is a temp dir of our own making: no characters that would need YAML quoting
    // beyond what the double quotes give.
    format!(
        r#"version: 0.1
log:
  level: warn
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: "{root}"
  delete:
    enabled: true
  maintenance:
    uploadpurging:
      enabled: false
http:
  addr: 127.0.0.1:{port}
  secret: slipway-testkit
"#,
        root = root.display()
    )
}
