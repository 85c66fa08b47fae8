//! A long-running server process: spawned with its output in a log file, polled until ready,
//! killed, stopped and started again with the very same command line.

use std::ffi::OsString;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::{Duration, Instant};

use tokio::process::{Child, Command};

use crate::error::{Error, Result};
use crate::process::{alive, children_of, is_transient, log_stdio, log_tail, signal, wait_gone_blocking};
use crate::watchdog::Watchdog;

/// How long [`Daemon::stop`] waits for a graceful exit before it sends SIGKILL.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a server may take to become ready.
const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// How often `restart` tries again while its port (or shared memory) is still taken.
const RESTART_ATTEMPTS: usize = 10;
const RESTART_PAUSE: Duration = Duration::from_millis(300);
const POLL: Duration = Duration::from_millis(50);

/// One long-running server process that can be killed, stopped and started again with the very
/// same command line (so the same port and data directory).
pub(crate) struct Daemon {
    name: &'static str,
    program: PathBuf,
    args: Vec<OsString>,
    dir: PathBuf,
    log_path: PathBuf,
    /// The graceful-stop signal: `TERM` for most, `INT` (fast shutdown) for PostgreSQL.
    stop_signal: &'static str,
    /// Whether SIGKILL also goes to the direct children: PostgreSQL's backends would otherwise
    /// hold its shared memory and block the restart.
    kill_children: bool,
    child: Option<Child>,
    /// Kills the process and removes its directory if the test process dies without drops.
    watchdog: Watchdog,
}

impl Daemon {
    pub(crate) fn new(
        name: &'static str,
        program: PathBuf,
        args: Vec<OsString>,
        dir: &Path,
        log_path: PathBuf,
        watchdog: Watchdog,
    ) -> Self {
        Daemon {
            watchdog,
            name,
            program,
            args,
            dir: dir.to_owned(),
            log_path,
            stop_signal: "TERM",
            kill_children: false,
            child: None,
        }
    }

    pub(crate) fn stop_signal(mut self, signal: &'static str) -> Self {
        self.stop_signal = signal;
        self
    }

    pub(crate) fn kill_children(mut self) -> Self {
        self.kill_children = true;
        self
    }

    pub(crate) fn log_path(&self) -> &Path {
        &self.log_path
    }

    pub(crate) fn log_tail(&self, lines: usize) -> String {
        log_tail(&self.log_path, lines)
    }

    pub(crate) fn pid(&self) -> Option<u32> {
        self.child.as_ref()?.id()
    }

    pub(crate) fn is_running(&self) -> bool {
        self.pid().is_some_and(alive)
    }

    /// Spawns the process and polls `probe` until it says ready.
    pub(crate) async fn start<F, Fut>(&mut self, mut probe: F) -> Result<()>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = bool>,
    {
        if self.child.is_some() {
            self.kill().await?;
        }
        self.spawn()?;
        let started = Instant::now();
        loop {
            if let Some(status) = self.try_wait()? {
                return Err(self.exited(status));
            }
            if probe().await {
                return Ok(());
            }
            if started.elapsed() > READY_TIMEOUT {
                let log_tail = self.log_tail(40);
                self.kill().await?;
                return Err(Error::NotReady {
                    server: self.name.to_owned(),
                    timeout: READY_TIMEOUT,
                    log_path: self.log_path.clone(),
                    log_tail,
                });
            }
            tokio::time::sleep(POLL).await;
        }
    }

    fn spawn(&mut self) -> Result<()> {
        let (stdout, stderr) = log_stdio(&self.log_path, &format!("starting {}", self.name))?;
        let child = Command::new(&self.program)
            .args(&self.args)
            .current_dir(&self.dir)
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr)
            .kill_on_drop(true)
            .spawn()
            .map_err(Error::io(format!("spawn {}", self.program.display())))?;
        self.watchdog.watch(child.id());
        self.child = Some(child);
        Ok(())
    }

    fn try_wait(&mut self) -> Result<Option<ExitStatus>> {
        let Some(child) = self.child.as_mut() else {
            return Err(Error::NotRunning(self.name));
        };
        let status = child.try_wait().map_err(Error::io(format!("wait for {}", self.name)))?;
        if status.is_some() {
            self.forget_child();
        }
        Ok(status)
    }

    /// The process has been reaped: its pid may be reused, so the watchdog must forget it.
    fn forget_child(&mut self) {
        self.child = None;
        self.watchdog.watch(None);
    }

    fn exited(&self, status: ExitStatus) -> Error {
        Error::Exited { server: self.name, status, log_path: self.log_path.clone(), log_tail: self.log_tail(40) }
    }

    /// Stops the process if it runs, then starts it again with the same command line, retrying
    /// while its port or its shared memory is still taken.
    pub(crate) async fn restart<F, Fut>(&mut self, mut probe: F) -> Result<()>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = bool>,
    {
        self.stop().await?;
        let mut tried = 0;
        loop {
            tried += 1;
            match self.start(&mut probe).await {
                Err(e) if tried < RESTART_ATTEMPTS && is_transient(&e) => {
                    tracing::debug!(error = %e, "restart failed; trying again");
                    tokio::time::sleep(RESTART_PAUSE).await;
                }
                result => return result,
            }
        }
    }

    /// SIGKILL (with the children, if so configured) and reap.
    pub(crate) async fn kill(&mut self) -> Result<()> {
        let Some(mut child) = self.child.take() else {
            return Ok(());
        };
        let orphans = self.kill_now(&mut child);
        let reaped = child.wait().await;
        self.watchdog.watch(None);
        reaped.map_err(Error::io(format!("reap {}", self.name)))?;
        // The children are re-parented, not ours to reap: wait until they are gone or zombies.
        let deadline = Instant::now() + STOP_TIMEOUT;
        while orphans.iter().any(|&p| alive(p)) {
            if Instant::now() > deadline {
                return Err(Error::Timeout {
                    what: format!("children {orphans:?} of {}", self.name),
                    timeout: STOP_TIMEOUT,
                });
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        Ok(())
    }

    /// Sends SIGKILL without waiting; returns the children that were killed with the process.
    fn kill_now(&self, child: &mut Child) -> Vec<u32> {
        let Some(pid) = child.id() else {
            return Vec::new();
        };
        let children = if self.kill_children { children_of(pid) } else { Vec::new() };
        let mut pids = vec![pid];
        pids.extend(&children);
        // One `kill` for all, so that no child outlives the parent long enough to notice.
        if signal(&pids, "KILL").is_err() {
            // Some pid already exited; make sure of the parent at least.
            let _ = child.start_kill();
            let _ = signal(&children, "KILL");
        }
        children
    }

    /// The graceful-stop signal, wait up to [`STOP_TIMEOUT`], then SIGKILL.
    pub(crate) async fn stop(&mut self) -> Result<()> {
        let Some(pid) = self.pid() else {
            self.forget_child();
            return Ok(());
        };
        // Fails only if it already exited, which the wait below sees.
        let _ = signal(&[pid], self.stop_signal);
        let waited = match self.child.as_mut() {
            Some(child) => tokio::time::timeout(STOP_TIMEOUT, child.wait()).await,
            None => return Ok(()),
        };
        match waited {
            Ok(status) => {
                status.map_err(Error::io(format!("reap {}", self.name)))?;
                self.forget_child();
                Ok(())
            }
            Err(_elapsed) => {
                tracing::warn!(server = self.name, "no exit after SIG{}; killing", self.stop_signal);
                self.kill().await
            }
        }
    }
}

impl Drop for Daemon {
    /// Kills synchronously, so that a panicking test leaks nothing, and waits (bounded) until the
    /// processes are gone, so that the temporary directory is removed after them.
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let pid = child.id();
            let mut pids = self.kill_now(&mut child);
            pids.extend(pid);
            wait_gone_blocking(&pids, Duration::from_secs(5));
        }
    }
}
