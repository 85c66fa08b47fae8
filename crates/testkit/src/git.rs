//! A real `git daemon` serving bare repositories over `git://`, push enabled.

use std::path::{Path, PathBuf};

use tempfile::TempDir;

use crate::daemon::Daemon;
use crate::error::{Error, Result};
use crate::free_port;
use crate::process;
use crate::watchdog::Watchdog;

/// A `git daemon` on a free loopback port exporting every repository under its temporary
/// `repos/` directory, with `receive-pack` (push) enabled and no authentication.
pub struct GitDaemon {
    // Fields drop in order: the process dies before its directory is removed.
    daemon: Daemon,
    port: u16,
    git: PathBuf,
    dir: TempDir,
}

impl GitDaemon {
    /// Starts the daemon and waits until its port accepts connections.
    pub async fn start() -> Result<Self> {
        let git = process::find_binary("git", "git")?;
        // `git daemon` would run `git-daemon` as a child and stay as its parent, which a
        // SIGKILL would then leave running: run the real program directly.
        let exec_path = process::run_sync(std::process::Command::new(&git).arg("--exec-path"))?;
        let program = PathBuf::from(exec_path.trim()).join("git-daemon");
        if !process::is_executable(&program) {
            return Err(Error::MissingBinary { binary: program.display().to_string(), package: "git" });
        }
        process::retry_port_clash(|| Self::try_start(git.clone(), program.clone())).await
    }

    async fn try_start(git: PathBuf, program: PathBuf) -> Result<Self> {
        let dir =
            tempfile::Builder::new().prefix("slipway-git-").tempdir().map_err(Error::io("create git temp dir"))?;
        let watchdog = Watchdog::spawn(dir.path())?;
        let repos = dir.path().join("repos");
        std::fs::create_dir(&repos).map_err(Error::io("create git repos dir"))?;
        let port = free_port();
        let mut base_path = std::ffi::OsString::from("--base-path=");
        base_path.push(&repos);
        let mut args = process::args([
            "--reuseaddr",
            "--export-all",
            "--enable=receive-pack",
            "--informative-errors",
            "--listen=127.0.0.1",
        ]);
        args.extend([format!("--port={port}").into(), base_path, repos.into()]);
        let log = dir.path().join("git-daemon.log");
        let mut daemon =
            GitDaemon { daemon: Daemon::new("git-daemon", program, args, dir.path(), log, watchdog), port, git, dir };
        daemon.daemon.start(|| accepts(port)).await?;
        Ok(daemon)
    }

    /// Creates the bare repository `<name>.git` (default branch `main`); returns its URL.
    /// `name` is one or more `/`-separated segments of `[a-z0-9-]`.
    pub fn create_bare_repo(&self, name: &str) -> Result<String> {
        validate(name)?;
        let path = self.repo_path(name);
        let mut init = std::process::Command::new(&self.git);
        init.args(["init", "--quiet", "--bare", "-b", "main"]).arg(&path);
        process::run_sync(&mut init)?;
        Ok(self.url(name))
    }

    /// `git://127.0.0.1:PORT/<name>.git`
    pub fn url(&self, name: &str) -> String {
        format!("git://127.0.0.1:{}/{name}.git", self.port)
    }

    /// Where the bare repository `<name>.git` lives on disk.
    pub fn repo_path(&self, name: &str) -> PathBuf {
        self.dir.path().join("repos").join(format!("{name}.git"))
    }

    /// The listening port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The daemon's log file.
    pub fn log_path(&self) -> &Path {
        self.daemon.log_path()
    }

    /// The last `lines` lines of the daemon's log.
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

    /// Starts again on the same port with the same repositories (stopping first if it runs).
    pub async fn restart(&mut self) -> Result<()> {
        let port = self.port;
        self.daemon.restart(|| accepts(port)).await
    }

    /// Whether the daemon process is alive.
    pub fn is_running(&self) -> bool {
        self.daemon.is_running()
    }
}

async fn accepts(port: u16) -> bool {
    tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_ok()
}

fn validate(name: &str) -> Result<()> {
    let segment_ok =
        |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if name.split('/').all(segment_ok) { Ok(()) } else { Err(Error::InvalidRepoName(name.to_owned())) }
}

#[cfg(test)]
mod tests {
    use super::validate;

    #[test]
    fn repo_names() {
        for ok in ["app", "team-a/app-1", "a/b/c"] {
            assert!(validate(ok).is_ok(), "{ok}");
        }
        for bad in ["", "/app", "app/", "a//b", "App", "a_b", "../x", "a.b", "a b"] {
            assert!(validate(bad).is_err(), "{bad}");
        }
    }
}
