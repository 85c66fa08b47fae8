//! Runs a scanner or Syft: the program with its arguments, stdout kept (the report), stderr's
//! tail kept for the failure message, killed at the timeout.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;
use tokio::io::AsyncReadExt as _;

/// The largest report read from a scanner's stdout.
const MAX_STDOUT: u64 = 64 * 1024 * 1024;
/// How much of stderr a failure message carries.
const STDERR_TAIL: usize = 2 * 1024;

/// Why a run gave no output to read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RunError {
    #[error("could not start {program}: {message}")]
    Spawn { program: String, message: String },
    #[error("{program} exited with {status}: {stderr}")]
    Exit { program: String, status: String, stderr: String },
    #[error("{program} gave no result within {0:?}", .timeout)]
    Timeout { program: String, timeout: Duration },
    #[error("{program} wrote more than {MAX_STDOUT} bytes")]
    TooLarge { program: String },
}

impl RunError {
    /// The `build.scan-failed` reason.
    pub fn reason(&self) -> &'static str {
        match self {
            RunError::Spawn { .. } => "spawn-error",
            RunError::Exit { .. } => "exit-status",
            RunError::Timeout { .. } => "timeout",
            RunError::TooLarge { .. } => "malformed-report",
        }
    }
}

/// Runs `program args` with `envs` added; its stdout when it exits 0 within `timeout`.
pub async fn run(
    program: &Path,
    args: &[String],
    envs: &[(&str, &str)],
    timeout: Duration,
) -> Result<Vec<u8>, RunError> {
    let name = program.display().to_string();
    let mut child = tokio::process::Command::new(program)
        .args(args)
        .envs(envs.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| RunError::Spawn { program: name.clone(), message: e.to_string() })?;
    let (Some(stdout), Some(mut stderr)) = (child.stdout.take(), child.stderr.take()) else {
        return Err(RunError::Spawn { program: name, message: "no pipes".into() });
    };
    let read_out = async move {
        let mut out = Vec::new();
        stdout.take(MAX_STDOUT + 1).read_to_end(&mut out).await.map(|_| out)
    };
    let read_err = async move {
        let mut err = Vec::new();
        stderr.read_to_end(&mut err).await.map(|_| err)
    };
    let waited = tokio::time::timeout(timeout, async { tokio::join!(read_out, read_err, child.wait()) }).await;
    let Ok((out, err, status)) = waited else {
        // kill_on_drop ends the child; its pipes close with it.
        return Err(RunError::Timeout { program: name, timeout });
    };
    let status = status.map_err(|e| RunError::Spawn { program: name.clone(), message: e.to_string() })?;
    let out = out.unwrap_or_default();
    if !status.success() {
        let err = err.unwrap_or_default();
        let text = String::from_utf8_lossy(&err);
        let start = text.len().saturating_sub(STDERR_TAIL);
        let start = (start..text.len()).find(|i| text.is_char_boundary(*i)).unwrap_or(text.len());
        let stderr = text[start..].trim().to_owned();
        return Err(RunError::Exit { program: name, status: status.to_string(), stderr });
    }
    if out.len() as u64 > MAX_STDOUT {
        return Err(RunError::TooLarge { program: name });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sh(script: &str) -> Vec<String> {
        vec!["-c".to_owned(), script.to_owned()]
    }

    #[tokio::test]
    async fn output_exit_status_and_timeout() {
        let sh_path = Path::new("/bin/sh");
        let out = run(sh_path, &sh("echo '{}'"), &[], Duration::from_secs(5)).await.expect("ok");
        assert_eq!(out, b"{}\n");
        let env = run(sh_path, &sh("printf %s \"$X\""), &[("X", "y")], Duration::from_secs(5)).await.expect("env");
        assert_eq!(env, b"y");
        let failed = run(sh_path, &sh("echo db download failed >&2; exit 3"), &[], Duration::from_secs(5)).await;
        let Err(failed) = failed else { panic!("exit 3 must fail") };
        assert_eq!(failed.reason(), "exit-status");
        assert!(failed.to_string().contains("db download failed"), "{failed}");
        let slow = run(sh_path, &sh("sleep 30"), &[], Duration::from_millis(300)).await;
        assert_eq!(slow.expect_err("timeout").reason(), "timeout");
        let missing = run(Path::new("/nonexistent/trivy"), &[], &[], Duration::from_secs(5)).await;
        assert_eq!(missing.expect_err("spawn").reason(), "spawn-error");
    }
}
