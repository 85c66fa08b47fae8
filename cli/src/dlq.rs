//! `slipctl dlq list|replay`: the notifier's dead letters, through its admin HTTP port
//! (`GET /dlq`, `POST /dlq/{id}/replay`). A dead letter is a notification that failed every
//! attempt; replaying it sends it once more (and never twice once it went out).

use serde::{Deserialize, Serialize};

use crate::client::Failure;
use crate::commands::Print;

/// The dead-letter subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum DlqCommand {
    /// Dead letters, newest first.
    List {
        /// Include the ones already replayed.
        #[arg(long)]
        all: bool,
    },
    /// Send dead letter ID again.
    Replay { id: i64 },
}

#[derive(Debug, Serialize, Deserialize)]
struct DeadLetter {
    id: i64,
    event_id: String,
    destination: String,
    provider: String,
    #[serde(default)]
    app: String,
    attempts: i32,
    error: String,
    created_at: String,
    #[serde(default)]
    replayed_at: Option<String>,
}

#[derive(Debug, Serialize, Deserialize)]
struct Listing {
    dead_letters: Vec<DeadLetter>,
}

fn unreachable(base: &str, e: &reqwest::Error) -> Failure {
    Failure::Unreachable(format!("cannot reach the notifier admin API at {base}: {e}"))
}

/// Runs `command` against the notifier admin API at `base`.
pub async fn run(base: &str, command: DlqCommand, print: Print) -> Result<(), Failure> {
    let base = base.trim_end_matches('/');
    let http = reqwest::Client::builder().build().map_err(|e| Failure::Usage(e.to_string()))?;
    match command {
        DlqCommand::List { all } => {
            let url = format!("{base}/dlq{}", if all { "?all=true" } else { "" });
            let resp = http.get(&url).send().await.map_err(|e| unreachable(base, &e))?;
            if !resp.status().is_success() {
                return Err(Failure::Api(format!("listing dead letters: HTTP {}", resp.status())));
            }
            let listing: Listing = resp.json().await.map_err(|e| Failure::Api(format!("listing dead letters: {e}")))?;
            print.show(&listing, || table(&listing.dead_letters))
        }
        DlqCommand::Replay { id } => {
            let resp = http.post(format!("{base}/dlq/{id}/replay")).send().await.map_err(|e| unreachable(base, &e))?;
            let status = resp.status();
            let body: serde_json::Value = resp.json().await.unwrap_or_default();
            let error = body["error"].as_str().unwrap_or_default().to_owned();
            match status.as_u16() {
                200 => print.show(&body, || format!("dead letter {id}: {}", body["status"].as_str().unwrap_or("sent"))),
                404 => Err(Failure::Api(format!("no dead letter {id}"))),
                _ => Err(Failure::Api(format!("replay of dead letter {id} failed: {error} (HTTP {status})"))),
            }
        }
    }
}

fn table(letters: &[DeadLetter]) -> String {
    if letters.is_empty() {
        return "no dead letters".to_owned();
    }
    let mut out =
        format!("{:<6} {:<14} {:<10} {:<10} {:>8}  {}\n", "ID", "DESTINATION", "PROVIDER", "APP", "ATTEMPTS", "ERROR");
    for l in letters {
        let app = if l.app.is_empty() { "-" } else { &l.app };
        out.push_str(&format!(
            "{:<6} {:<14} {:<10} {:<10} {:>8}  {}\n",
            l.id, l.destination, l.provider, app, l.attempts, l.error
        ));
    }
    out.trim_end().to_owned()
}
