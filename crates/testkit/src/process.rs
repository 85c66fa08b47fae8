//! Process plumbing shared by every server: finding system binaries, running helper commands,
//! log files, readiness probes, signals, and process state read from `/proc`.
//!
//! Signals go through the `kill` command and liveness is read from `/proc`, because the
//! workspace forbids `unsafe` and every libc call is unsafe.

use std::ffi::OsString;
use std::fs::{File, OpenOptions};
use std::future::Future;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use tokio::process::Command;

use crate::error::{Error, Result};
use crate::watchdog::Watchdog;

/// How often `start` picks fresh ports when another process grabbed the free one first.
const PORT_ATTEMPTS: usize = 3;

/// Finds `name` on `PATH`, then in the sbin directories (nats-server lives in /usr/sbin,
/// which a non-root `PATH` often lacks).
pub(crate) fn find_binary(name: &str, package: &'static str) -> Result<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin", "/usr/bin", "/bin"].map(PathBuf::from))
        .map(|dir| dir.join(name))
        .find(|candidate| is_executable(candidate))
        .ok_or_else(|| Error::MissingBinary { binary: name.to_owned(), package })
}

pub(crate) fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt as _;
    path.metadata().is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// Whether this process runs with effective uid 0, read from `/proc/self/status`.
pub(crate) fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            let line = status.lines().find(|l| l.starts_with("Uid:"))?;
            // Uid: real effective saved filesystem
            line.split_whitespace().nth(2).map(|euid| euid == "0")
        })
        .unwrap_or(false)
}

/// Sends `signal` (a name such as `KILL`, `TERM`, `INT`) to `pids` with the `kill` command.
pub(crate) fn signal(pids: &[u32], signal: &str) -> Result<()> {
    if pids.is_empty() {
        return Ok(());
    }
    let mut cmd = std::process::Command::new(find_binary("kill", "procps")?);
    cmd.arg("-s").arg(signal).arg("--");
    cmd.args(pids.iter().map(u32::to_string));
    run_sync(&mut cmd).map(drop)
}

/// Whether `pid` exists and is not a zombie (an orphaned zombie may never be reaped here).
pub(crate) fn alive(pid: u32) -> bool {
    read_stat(pid).is_some_and(|(state, _)| !matches!(state, 'Z' | 'X' | 'x'))
}

/// The live processes whose parent is `pid`.
pub(crate) fn children_of(pid: u32) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&child| read_stat(child).is_some_and(|(state, ppid)| ppid == pid && state != 'Z'))
        .collect()
}

/// `(state, ppid)` from `/proc/<pid>/stat`; the command name may hold spaces and parentheses,
/// so the fields are read after the last `)`.
fn read_stat(pid: u32) -> Option<(char, u32)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let mut fields = stat.get(stat.rfind(')')? + 1..)?.split_whitespace();
    let state = fields.next()?.chars().next()?;
    let ppid = fields.next()?.parse().ok()?;
    Some((state, ppid))
}

/// Waits (blocking, bounded) until none of `pids` is alive.
pub(crate) fn wait_gone_blocking(pids: &[u32], timeout: Duration) {
    let deadline = Instant::now() + timeout;
    while pids.iter().any(|&p| alive(p)) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The last `lines` lines of a log file, or a note that it cannot be read.
pub(crate) fn log_tail(path: &Path, lines: usize) -> String {
    match std::fs::read(path) {
        Ok(bytes) => {
            let text = String::from_utf8_lossy(&bytes);
            let all: Vec<&str> = text.lines().collect();
            all[all.len().saturating_sub(lines)..].join("\n")
        }
        Err(e) => format!("<cannot read {}: {e}>", path.display()),
    }
}

/// Opens `path` for appending (restarts add to the same log) as stdout and stderr.
pub(crate) fn log_stdio(path: &Path, banner: &str) -> Result<(Stdio, Stdio)> {
    let mut file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(Error::io(format!("open log {}", path.display())))?;
    writeln!(file, "=== slipway-testkit: {banner} ===").map_err(Error::io(format!("write log {}", path.display())))?;
    let err: File = file.try_clone().map_err(Error::io(format!("clone log {}", path.display())))?;
    Ok((Stdio::from(file), Stdio::from(err)))
}

fn describe(cmd: &std::process::Command) -> String {
    std::iter::once(cmd.get_program()).chain(cmd.get_args()).map(|s| s.to_string_lossy()).collect::<Vec<_>>().join(" ")
}

fn check_output(command: String, out: std::process::Output) -> Result<String> {
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    if out.status.success() {
        return Ok(stdout);
    }
    let stderr = String::from_utf8_lossy(&out.stderr);
    Err(Error::Command { command, status: out.status, output: format!("{stdout}{stderr}") })
}

/// Runs a helper command to completion (blocking); its stdout on success.
pub(crate) fn run_sync(cmd: &mut std::process::Command) -> Result<String> {
    let command = describe(cmd);
    let out = cmd.stdin(Stdio::null()).output().map_err(Error::io(format!("run `{command}`")))?;
    check_output(command, out)
}

/// Runs a helper command to completion; its stdout on success.
pub(crate) async fn run(cmd: &mut Command) -> Result<String> {
    run_watched(cmd, None).await
}

/// Runs a helper command to completion, with `watchdog` (if any) ready to kill it should the
/// test process die meanwhile; its stdout on success.
pub(crate) async fn run_watched(cmd: &mut Command, mut watchdog: Option<&mut Watchdog>) -> Result<String> {
    let command = describe(cmd.as_std());
    let child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(Error::io(format!("run `{command}`")))?;
    if let Some(watchdog) = watchdog.as_deref_mut() {
        watchdog.watch(child.id());
    }
    let out = child.wait_with_output().await;
    if let Some(watchdog) = watchdog {
        watchdog.watch(None);
    }
    let out = out.map_err(Error::io(format!("run `{command}`")))?;
    check_output(command, out)
}

/// Command-line arguments from anything string-like.
pub(crate) fn args<I, S>(items: I) -> Vec<OsString>
where
    I: IntoIterator<Item = S>,
    S: Into<OsString>,
{
    items.into_iter().map(Into::into).collect()
}

/// Starts with fresh ports (and directory) until the start succeeds, fails for a reason other
/// than a port clash, or has been tried [`PORT_ATTEMPTS`] times.
pub(crate) async fn retry_port_clash<T, F, Fut>(mut attempt: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T>>,
{
    let mut tried = 0;
    loop {
        tried += 1;
        match attempt().await {
            Err(e) if tried < PORT_ATTEMPTS && is_transient(&e) => {
                tracing::debug!(error = %e, "port taken; trying other ports");
            }
            result => return result,
        }
    }
}

/// Whether a start failed for a reason that goes away: the port was taken between `free_port`
/// and the bind (or the old socket lingers), or a killed PostgreSQL's backends still hold its
/// shared memory.
pub(crate) fn is_transient(err: &Error) -> bool {
    match err {
        Error::Exited { log_tail, .. } => {
            let log = log_tail.to_ascii_lowercase();
            log.contains("address already in use")
                || log.contains("unable to allocate")
                || log.contains("shared memory block is still in use")
        }
        _ => false,
    }
}

/// A GET that answers 200.
pub(crate) async fn http_ok(client: &reqwest::Client, url: &str) -> bool {
    client.get(url).send().await.is_ok_and(|r| r.status() == reqwest::StatusCode::OK)
}

/// A client for loopback probes: short timeouts, and never through an `HTTP_PROXY`.
pub(crate) fn probe_client() -> reqwest::Client {
    reqwest::Client::builder().no_proxy().timeout(Duration::from_secs(2)).build().unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_binary_names_its_package() {
        let err = find_binary("slipway-no-such-binary", "slipway-pkg").unwrap_err();
        let message = err.to_string();
        assert!(message.contains("slipway-pkg") && message.contains("scripts/bootstrap"), "{message}");
    }

    #[test]
    fn children_and_liveness_come_from_proc() {
        let mut child = std::process::Command::new("sleep").arg("30").spawn().unwrap();
        let pid = child.id();
        assert!(alive(pid));
        assert!(children_of(std::process::id()).contains(&pid));
        signal(&[pid], "KILL").unwrap();
        // Killed but not reaped: a zombie, which counts as gone.
        wait_gone_blocking(&[pid], Duration::from_secs(5));
        assert!(!alive(pid));
        child.wait().unwrap();
    }

    #[test]
    fn log_tail_keeps_the_last_lines() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log");
        std::fs::write(&path, "a\nb\nc\n").unwrap();
        assert_eq!(log_tail(&path, 2), "b\nc");
        assert_eq!(log_tail(&path, 10), "a\nb\nc");
        assert!(log_tail(&dir.path().join("missing"), 2).starts_with("<cannot read"));
    }
}
