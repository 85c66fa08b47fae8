//! Cleanup for when the test process dies without running drops: SIGKILL from a harness
//! timeout, an abort, or simply exiting with the shared cluster still in its `static`.
//!
//! Each server directory gets a small `sh` that reads commands from a pipe whose write end only
//! the test process holds. `pid N` says which process to kill, `disarm` (sent by `Drop`) makes
//! it exit quietly. End of file means the test process is gone: the watchdog kills the last
//! process it was told about with its direct children, and removes the directory. It waits in
//! the shell's `read` builtin, so it costs no CPU and forks nothing until then; it runs in a
//! process group of its own so that a Ctrl-C to the tests does not take it first.

use std::io::Write as _;
use std::os::unix::process::CommandExt as _;
use std::path::Path;
use std::process::{Child, ChildStdin, Command, Stdio};

use crate::error::{Error, Result};

const SCRIPT: &str = r#"
dir=$1 pid=
while read -r cmd arg; do
    case $cmd in
        pid) pid=$arg ;;
        disarm) exit 0 ;;
    esac
done
if [ -n "$pid" ]; then
    kill -s KILL "$pid" $(pgrep -P "$pid") 2>/dev/null
    sleep 1
fi
rm -rf "$dir"
"#;

/// Kills the watched process and removes `dir` once the test process dies, unless dropped
/// first.
pub(crate) struct Watchdog {
    child: Child,
    stdin: Option<ChildStdin>,
}

impl Watchdog {
    pub(crate) fn spawn(dir: &Path) -> Result<Self> {
        let mut child = Command::new("sh")
            .args(["-c", SCRIPT, "slipway-testkit-watchdog"])
            .arg(dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .map_err(Error::io("spawn the cleanup watchdog"))?;
        let stdin = child.stdin.take();
        Ok(Watchdog { child, stdin })
    }

    /// The process to kill should the test process die; `None` once it has exited (its pid
    /// may be reused).
    pub(crate) fn watch(&mut self, pid: Option<u32>) {
        let line = match pid {
            Some(pid) => format!("pid {pid}\n"),
            None => "pid\n".to_owned(),
        };
        self.send(&line);
    }

    fn send(&mut self, line: &str) {
        if let Some(stdin) = self.stdin.as_mut()
            && let Err(e) = stdin.write_all(line.as_bytes())
        {
            tracing::warn!(error = %e, "the cleanup watchdog is gone");
            self.stdin = None;
        }
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        self.send("disarm\n");
        if self.stdin.take().is_none() {
            // Could not disarm it: make sure it does not clean up behind our back.
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}
