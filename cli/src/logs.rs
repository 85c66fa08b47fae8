//! `slipctl logs BUILD [--follow]`: a build's log read straight from NATS, from the JetStream
//! KV bucket `slipway-build-log-lines` the builder writes while the build runs (keys
//! `<token>.<seq:08>` with chunks of lines, `<token>.end` with the outcome). Without `--follow`
//! it prints what is there and stops; with it, it goes on until the build ends.
//!
//! The key format is [`slipway_mesh::build_log`], the one the builder writes with;
//! `tests/logs.rs` reads what the builder writes.

use async_nats::jetstream::kv;
use futures::StreamExt as _;
use slipway_mesh::build_log::{self, BUCKET, End};

use crate::client::Failure;
use crate::commands::Print;

/// Prints the log of `build_id` from the NATS server at `url`.
pub async fn run(url: &str, build_id: &str, follow: bool, print: Print) -> Result<(), Failure> {
    let js = crate::client::jetstream(url).await?;
    let no_log = || Failure::Api(format!("no log for build {build_id}"));
    let kv = match js.get_key_value(BUCKET).await {
        Ok(kv) => kv,
        Err(e) if e.to_string().contains("not found") => return Err(no_log()),
        Err(e) => return Err(Failure::Api(format!("KV bucket {BUCKET}: {e}"))),
    };
    let filter = build_log::filter(build_id);
    let read = |e: &dyn std::fmt::Display| Failure::Api(format!("reading the log of build {build_id}: {e}"));
    let mut subjects = kv.stream.info_with_subjects(format!("{}{filter}", kv.prefix)).await.map_err(|e| read(&e))?;
    if subjects.next().await.is_none() {
        return Err(no_log());
    }
    let mut watch = kv.watch_with_history(&filter).await.map_err(|e| read(&e))?;
    while let Some(entry) = watch.next().await {
        let entry = entry.map_err(|e| read(&e))?;
        if entry.operation != kv::Operation::Put {
            continue;
        }
        if build_log::is_end_key(&entry.key) {
            let end: End = serde_json::from_slice(&entry.value).map_err(|e| read(&e))?;
            return show_end(&end, print);
        }
        for line in String::from_utf8_lossy(&entry.value).lines() {
            if print.json {
                println!("{}", serde_json::json!({ "line": line }));
            } else {
                println!("{line}");
            }
        }
        if !follow && entry.delta == 0 {
            break;
        }
    }
    Ok(())
}

fn show_end(end: &End, print: Print) -> Result<(), Failure> {
    if print.json {
        println!("{}", serde_json::json!({ "end": end }));
        return Ok(());
    }
    let reason =
        if end.reason.is_empty() || end.reason == end.outcome { String::new() } else { format!(": {}", end.reason) };
    let dropped = match end.dropped_lines {
        0 => String::new(),
        n => format!(" ({n} lines left out: log larger than the builder's cap)"),
    };
    eprintln!("build {}{reason}{dropped}", end.outcome);
    Ok(())
}
