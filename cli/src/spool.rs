//! `slipctl spool list|replay|remove` and `slipctl delivery ID`.
//!
//! The spool is ingest's: events of accepted deliveries waiting for NATS, and dead letters,
//! the entries NATS can never take as they are (through ingest's admin HTTP port: `GET /spool`,
//! `POST /spool/dead/{name}/replay`, `DELETE /spool/dead/{name}`). A delivery's whole body is
//! read straight from the JetStream object store bucket ingest keeps it in.

use serde::{Deserialize, Serialize};
use slipway_mesh::bounds::ORIGINALS_BUCKET;
use std::io::Write as _;
use tokio::io::AsyncReadExt as _;

use crate::client::Failure;
use crate::commands::Print;

/// The spool subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum SpoolCommand {
    /// Entries waiting for NATS, and the dead letters with why they failed.
    List,
    /// Queue dead letter NAME again, behind what is pending.
    Replay { name: String },
    /// Delete dead letter NAME for good.
    Remove { name: String },
}

#[derive(Debug, Serialize, Deserialize)]
struct DeadLetter {
    name: String,
    reason: String,
    #[serde(default)]
    failed_at: String,
    #[serde(default)]
    events: usize,
    #[serde(default)]
    bytes: u64,
}

#[derive(Debug, Serialize, Deserialize)]
struct Listing {
    pending: u64,
    dead_letters: Vec<DeadLetter>,
}

fn unreachable(base: &str, e: &reqwest::Error) -> Failure {
    Failure::Unreachable(format!("cannot reach the ingest admin API at {base}: {e}"))
}

/// Runs `command` against the ingest admin API at `base`.
pub async fn run(base: &str, command: SpoolCommand, print: Print) -> Result<(), Failure> {
    let base = base.trim_end_matches('/');
    let http = reqwest::Client::builder().build().map_err(|e| Failure::Usage(e.to_string()))?;
    let (what, request) = match &command {
        SpoolCommand::List => {
            let resp = http.get(format!("{base}/spool")).send().await.map_err(|e| unreachable(base, &e))?;
            if !resp.status().is_success() {
                return Err(Failure::Api(format!("listing the spool: HTTP {}", resp.status())));
            }
            let listing: Listing = resp.json().await.map_err(|e| Failure::Api(format!("listing the spool: {e}")))?;
            return print.show(&listing, || table(&listing));
        }
        SpoolCommand::Replay { name } => ("replay", http.post(format!("{base}/spool/dead/{name}/replay"))),
        SpoolCommand::Remove { name } => ("removal", http.delete(format!("{base}/spool/dead/{name}"))),
    };
    let resp = request.send().await.map_err(|e| unreachable(base, &e))?;
    let status = resp.status();
    let body: serde_json::Value = resp.json().await.unwrap_or_default();
    let (SpoolCommand::Replay { name } | SpoolCommand::Remove { name }) = &command else { return Ok(()) };
    match status.as_u16() {
        200 => print.show(&body, || match body["entry"].as_str() {
            Some(entry) => format!("dead letter {name}: queued again as {entry}"),
            None => format!("dead letter {name}: removed"),
        }),
        404 => Err(Failure::Api(format!("no dead letter {name}"))),
        _ => Err(Failure::Api(format!(
            "{what} of dead letter {name} failed: {} (HTTP {status})",
            body["error"].as_str().unwrap_or_default()
        ))),
    }
}

fn table(listing: &Listing) -> String {
    let mut out = format!("{} entries waiting for NATS\n", listing.pending);
    if listing.dead_letters.is_empty() {
        out.push_str("no dead letters");
        return out;
    }
    out.push_str(&format!("{:<26} {:<26} {:>6} {:>10}  {}\n", "DEAD LETTER", "FAILED AT", "EVENTS", "BYTES", "REASON"));
    for l in &listing.dead_letters {
        let at = l.failed_at.get(..19).unwrap_or(&l.failed_at);
        out.push_str(&format!("{:<26} {:<26} {:>6} {:>10}  {}\n", l.name, at, l.events, l.bytes, l.reason));
    }
    out.trim_end().to_owned()
}

/// Writes the whole body of delivery `id` (from NATS at `url`) to `output`, or stdout.
pub async fn original(url: &str, id: &str, output: Option<&std::path::Path>) -> Result<(), Failure> {
    let js = crate::client::jetstream(url).await?;
    let missing = || Failure::Api(format!("no original kept for delivery {id}"));
    let store = js.get_object_store(ORIGINALS_BUCKET).await.map_err(|_| missing())?;
    let mut object = store.get(id).await.map_err(|_| missing())?;
    let mut body = Vec::new();
    object.read_to_end(&mut body).await.map_err(|e| Failure::Api(format!("reading delivery {id}: {e}")))?;
    let written = match output {
        Some(path) => std::fs::write(path, &body),
        None => std::io::stdout().lock().write_all(&body),
    };
    written.map_err(|e| Failure::Usage(format!("writing delivery {id}: {e}")))
}
