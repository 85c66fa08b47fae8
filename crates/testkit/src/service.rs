//! A Slipway service binary under test, run as a real process with its output in a file.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;
use tokio::process::{Child, Command};

use crate::error::{Error, Result};
use crate::process;

/// A child process (typically a service binary from `env!("CARGO_BIN_EXE_…")`) whose stdout
/// and stderr go to `output.log` in a temporary directory. Dropping it kills it.
pub struct ServiceProcess {
    // Fields drop in order: the process dies before its directory is removed.
    child: Child,
    pid: Option<u32>,
    name: String,
    log_path: PathBuf,
    _dir: TempDir,
}

impl ServiceProcess {
    /// Spawns `program` with the test's environment plus `envs`.
    pub fn spawn(program: impl AsRef<Path>, envs: &[(String, String)]) -> Result<Self> {
        Self::spawn_with_args(program, std::iter::empty::<&str>(), envs)
    }

    /// Spawns `program` with `args`, the test's environment plus `envs`.
    pub fn spawn_with_args<I, S>(program: impl AsRef<Path>, args: I, envs: &[(String, String)]) -> Result<Self>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let program = program.as_ref();
        let name =
            program.file_name().map_or_else(|| program.display().to_string(), |n| n.to_string_lossy().into_owned());
        let dir = tempfile::Builder::new()
            .prefix("slipway-service-")
            .tempdir()
            .map_err(Error::io("create service temp dir"))?;
        let log_path = dir.path().join("output.log");
        let (stdout, stderr) = process::log_stdio(&log_path, &format!("starting {name}"))?;
        let child = Command::new(program)
            .args(args)
            .envs(envs.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr)
            .kill_on_drop(true)
            .spawn()
            .map_err(Error::io(format!("spawn {}", program.display())))?;
        Ok(ServiceProcess { pid: child.id(), child, name, log_path, _dir: dir })
    }

    /// Polls `url` until it answers 200. Fails early, with the output tail, if the process
    /// exits; fails with the output tail after `timeout`.
    pub async fn wait_http_ok(&self, url: &str, timeout: Duration) -> Result<()> {
        let client = process::probe_client();
        let started = Instant::now();
        loop {
            if process::http_ok(&client, url).await {
                return Ok(());
            }
            if !self.is_running() || started.elapsed() > timeout {
                let state = if self.is_running() { "" } else { " (exited)" };
                return Err(Error::NotReady {
                    server: format!("{}{state} at {url}", self.name),
                    timeout,
                    log_path: self.log_path.clone(),
                    log_tail: self.output_tail(40),
                });
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Sends SIGTERM (a graceful shutdown request).
    pub fn sigterm(&self) -> Result<()> {
        self.signal("TERM")
    }

    /// Sends SIGKILL.
    pub fn sigkill(&self) -> Result<()> {
        self.signal("KILL")
    }

    /// Sends the named signal (`TERM`, `INT`, `HUP`, `KILL` ...).
    pub fn signal(&self, name: &str) -> Result<()> {
        let pid = self.pid.ok_or(Error::NotRunning("service process"))?;
        process::signal(&[pid], name)
    }

    /// Waits for the exit; after `timeout`, kills the process and fails.
    pub async fn wait(&mut self, timeout: Duration) -> Result<ExitStatus> {
        match tokio::time::timeout(timeout, self.child.wait()).await {
            Ok(status) => status.map_err(Error::io(format!("wait for {}", self.name))),
            Err(_elapsed) => {
                let _ = self.child.start_kill();
                Err(Error::Timeout { what: self.name.clone(), timeout })
            }
        }
    }

    /// The process id (kept after the exit, for messages).
    pub fn pid(&self) -> Option<u32> {
        self.pid
    }

    /// Whether the process is alive.
    pub fn is_running(&self) -> bool {
        self.child.id().is_some_and(process::alive)
    }

    /// The file that holds the process's stdout and stderr.
    pub fn log_path(&self) -> &Path {
        &self.log_path
    }

    /// The last `lines` lines of the process's output.
    pub fn output_tail(&self, lines: usize) -> String {
        process::log_tail(&self.log_path, lines)
    }
}

impl Drop for ServiceProcess {
    fn drop(&mut self) {
        if self.is_running() {
            let _ = self.child.start_kill();
        }
    }
}
