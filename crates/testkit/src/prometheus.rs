//! A real Prometheus (the Debian package's `/usr/bin/prometheus`) scraping the targets a test
//! names every second, its TSDB in a temporary directory: for code that queries Prometheus,
//! such as verification checks. It is the kit's own process on a free port, never a system
//! service that the package may have started on :9090.

use std::path::{Path, PathBuf};

use tempfile::TempDir;

use crate::daemon::Daemon;
use crate::error::{Error, Result};
use crate::free_port;
use crate::process;
use crate::watchdog::Watchdog;

/// A Prometheus on a free loopback port, scraping `scrape_targets` (`host:port`, path
/// `/metrics`) every second as job `test`. Its data survives [`restart`](Prometheus::restart).
pub struct Prometheus {
    // Fields drop in order: the process dies before its directory is removed.
    daemon: Daemon,
    port: u16,
    client: reqwest::Client,
    dir: TempDir,
}

impl Prometheus {
    /// Starts Prometheus and waits until `GET /-/ready` answers 200.
    pub async fn start(scrape_targets: &[String]) -> Result<Self> {
        let program = process::find_binary("prometheus", "prometheus")?;
        process::retry_port_clash(|| Self::try_start(program.clone(), scrape_targets)).await
    }

    async fn try_start(program: PathBuf, scrape_targets: &[String]) -> Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix("slipway-prometheus-")
            .tempdir()
            .map_err(Error::io("create prometheus temp dir"))?;
        let watchdog = Watchdog::spawn(dir.path())?;
        let port = free_port();
        let config = dir.path().join("prometheus.yml");
        std::fs::write(&config, config_yaml(scrape_targets)).map_err(Error::io("write prometheus config"))?;
        let arg = |flag: &str, value: &Path| format!("{flag}={}", value.display());
        let args = process::args([
            arg("--config.file", &config),
            arg("--storage.tsdb.path", &dir.path().join("data")),
            format!("--web.listen-address=127.0.0.1:{port}"),
            "--log.level=warn".to_owned(),
        ]);
        let log = dir.path().join("prometheus.log");
        let mut prometheus = Prometheus {
            daemon: Daemon::new("prometheus", program, args, dir.path(), log, watchdog),
            port,
            client: process::probe_client(),
            dir,
        };
        let (client, url) = (prometheus.client.clone(), prometheus.ready_url());
        prometheus.daemon.start(|| process::http_ok(&client, &url)).await?;
        Ok(prometheus)
    }

    fn ready_url(&self) -> String {
        format!("{}/-/ready", self.url())
    }

    /// `http://127.0.0.1:PORT`, the base URL for `/api/v1/query`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The listening port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The TSDB directory.
    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// Prometheus' log file.
    pub fn log_path(&self) -> &Path {
        self.daemon.log_path()
    }

    /// The last `lines` lines of Prometheus' log.
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

    /// Starts again on the same port and data (stopping first if it runs); waits for ready.
    pub async fn restart(&mut self) -> Result<()> {
        let (client, url) = (self.client.clone(), self.ready_url());
        self.daemon.restart(|| process::http_ok(&client, &url)).await
    }

    /// Whether the Prometheus process is alive.
    pub fn is_running(&self) -> bool {
        self.daemon.is_running()
    }
}

fn config_yaml(targets: &[String]) -> String {
    // JSON strings are YAML strings: the targets need no escaping of their own.
    let targets = serde_json::to_string(targets).unwrap_or_else(|_| "[]".to_owned());
    format!(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n\
         scrape_configs:\n  - job_name: test\n    static_configs:\n      - targets: {targets}\n"
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_config_scrapes_every_second() {
        let yaml = super::config_yaml(&["127.0.0.1:1234".to_owned()]);
        assert!(yaml.contains("scrape_interval: 1s") && yaml.contains(r#"targets: ["127.0.0.1:1234"]"#), "{yaml}");
    }
}
