//! The C load generator `wrk` (Debian package `wrk`) as the webhook sender: one event-loop
//! thread keeping `connections` keep-alive connections busy for a fixed time, each request a
//! fresh `X-GitHub-Delivery`. It needs far less CPU per request than an async Rust client, so
//! on a 2-core machine more of the cores go to the server being measured. Its Lua script
//! writes the figures as one JSON line.

use std::path::Path;

use anyhow::{Context as _, bail};

use crate::load::Figures;

/// True when `wrk` can be run.
pub fn available() -> bool {
    std::process::Command::new("wrk").arg("--version").output().is_ok()
}

/// The script: body from `body`, the signature header, a unique delivery id per request
/// (`<run>-<thread>-<n>`), and a `done` that prints the JSON figures.
fn script(body: &Path, signature: &str, run_id: &str) -> String {
    format!(
        r#"local f = assert(io.open("{body}", "rb"))
wrk.body = f:read("*a")
f:close()
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["X-GitHub-Event"] = "push"
wrk.headers["X-Hub-Signature-256"] = "{signature}"
local count = 0
function setup(thread)
  count = count + 1
  thread:set("tid", count)
end
function init(args)
  n = 0
end
function request()
  n = n + 1
  wrk.headers["X-GitHub-Delivery"] = string.format("{run_id}-%d-%d", tid, n)
  return wrk.format()
end
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format('{{"requests":%d,"errors":%d,"seconds":%f,"per_second":%f,"p50_ms":%f,"p99_ms":%f}}\n',
    summary.requests, e.connect + e.read + e.write + e.status + e.timeout, summary.duration / 1e6,
    summary.requests / (summary.duration / 1e6), latency:percentile(50) / 1000, latency:percentile(99) / 1000))
end
"#,
        body = body.display(),
    )
}

/// Sends signed `body`s to `url` for `seconds` over `connections` connections.
pub async fn load(
    url: &str,
    body: &Path,
    signature: &str,
    seconds: u64,
    connections: usize,
    run_id: &str,
) -> anyhow::Result<Figures> {
    let script_path = body.with_extension(format!("{run_id}.lua"));
    std::fs::write(&script_path, script(body, signature, run_id)).context("write the wrk script")?;
    let out = tokio::process::Command::new("wrk")
        .args(["-t", "1", "-c", &connections.to_string(), "-d", &format!("{seconds}s"), "--timeout", "10s", "-s"])
        .arg(&script_path)
        .arg(url)
        .output()
        .await
        .context("run wrk (apt-get install wrk)")?;
    if !out.status.success() {
        bail!("wrk failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout.lines().rev().find(|l| l.starts_with('{')).with_context(|| format!("wrk output {stdout:?}"))?;
    serde_json::from_str(line).with_context(|| format!("wrk figures {line:?}"))
}
