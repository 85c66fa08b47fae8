//! `POST /chatops`: the path chat bots (Slack, Teams, a CLI) use to send commands that did
//! not come from a GitHub comment. Same parser, same events, same durability as webhooks.
//!
//! ```text
//! POST /chatops
//! Authorization: Bearer <token>
//! {"id": "<message id>", "actor": "octocat", "text": "/approve writer prod",
//!  "channel": "slack", "repository": "acme/mono", "pull_request": 7}
//! ```
//! The answer lists the parsed commands (with any error) so the bot can reply at once. The
//! message id makes the event ids, so a bot retrying a message publishes nothing new.

use crate::chatops::{self, CommandContext};
use crate::http::{Stored, Webhooks, header, make_durable, reject, reply};
use crate::plan;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde::Deserialize;
use serde_json::json;
use sha2::{Digest, Sha256};
use slipway_mesh::names::RepoName;
use std::sync::Arc;

/// Most commands one message may carry is the parser's limit; the text itself is bounded too.
const MAX_TEXT: usize = 16 * 1024;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct BotMessage {
    id: String,
    actor: String,
    text: String,
    #[serde(default)]
    channel: String,
    #[serde(default)]
    repository: Option<String>,
    #[serde(default)]
    pull_request: u64,
}

/// SHA-256 of a token, the form tokens are kept and compared in.
pub fn token_digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

fn authorized(state: &Webhooks, headers: &HeaderMap) -> bool {
    let Some(token) = header(headers, "authorization").and_then(|h| h.strip_prefix("Bearer ")) else {
        return false;
    };
    // Comparing digests: equal-length values, and the digest leaks nothing usable.
    let digest = token_digest(token.trim());
    state.chatops_tokens.contains(&digest)
}

pub(crate) async fn chatops(State(state): State<Arc<Webhooks>>, headers: HeaderMap, body: Bytes) -> Response {
    if state.chatops_tokens.is_empty() {
        return reject(StatusCode::UNAUTHORIZED, "chatops-disabled", "no chatops tokens are configured".into());
    }
    if !authorized(&state, &headers) {
        return reject(StatusCode::UNAUTHORIZED, "chatops-token", "missing or unknown bearer token".into());
    }
    let message: BotMessage = match serde_json::from_slice(&body) {
        Ok(m) => m,
        Err(e) => return reject(StatusCode::BAD_REQUEST, "malformed", format!("malformed chatops message: {e}")),
    };
    if let Err(why) = check(&message) {
        return reject(StatusCode::BAD_REQUEST, "invalid", why.to_string());
    }
    let cx = CommandContext {
        source_id: format!("chat-{}", message.id),
        actor: message.actor.clone(),
        repository: message.repository.clone().unwrap_or_default(),
        pull_request: message.pull_request,
        comment_url: String::new(),
        channel: if message.channel.is_empty() { "chat".to_owned() } else { message.channel.clone() },
    };
    let parsed = chatops::parse_commands(&message.text);
    let events: Vec<_> = parsed.iter().map(|c| chatops::to_event(c, &cx)).collect();
    let prepared = match plan::commands(&events, &message.id, state.publisher.source()) {
        Ok(p) => p,
        Err(e) => return reject(StatusCode::BAD_REQUEST, "invalid", e.to_string()),
    };
    let spooled = match make_durable(&state, &prepared, None).await {
        Ok(stored) => stored == Stored::Spooled,
        Err(e) => return e.response(),
    };
    metrics::counter!("slipway_ingest_chatops_commands_total").increment(events.len() as u64);
    let commands: Vec<_> = parsed
        .iter()
        .map(|c| {
            json!({
                "command": c.raw.split_whitespace().next().unwrap_or_default(),
                "app": c.app.as_ref().map(|a| a.to_string()),
                "env": c.env.as_ref().map(|e| e.to_string()),
                "tag": c.tag.as_ref().map(|t| t.to_string()),
                "error": c.error,
            })
        })
        .collect();
    reply(StatusCode::ACCEPTED, json!({ "status": "accepted", "commands": commands, "spooled": spooled }))
}

fn check(m: &BotMessage) -> crate::error::Result<()> {
    if m.id.is_empty() || m.id.len() > 200 {
        return Err(crate::error::Error::Invalid("id must be 1 to 200 characters".into()));
    }
    if m.actor.is_empty() || m.actor.len() > 100 || m.actor.chars().any(char::is_control) {
        return Err(crate::error::Error::Invalid("actor must be 1 to 100 printable characters".into()));
    }
    if m.text.len() > MAX_TEXT {
        return Err(crate::error::Error::Invalid(format!("text must be at most {MAX_TEXT} bytes")));
    }
    if let Some(repo) = &m.repository {
        RepoName::parse(repo).map_err(|e| crate::error::Error::Invalid(e.to_string()))?;
    }
    Ok(())
}
