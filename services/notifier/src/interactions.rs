//! `POST /slack/interactions`: Slack's interactivity callback for the Approve / Reject
//! buttons. The request is verified against the app's signing secret (`X-Slack-Signature:
//! v0=<hex HMAC-SHA256 of "v0:<X-Slack-Request-Timestamp>:<raw body>">`, timestamps within 5
//! minutes), then a click becomes a `chatops.command` event (approve or reject, with the
//! clicking user as actor, and the app and stage of the approval) that the promoter acts on.
//! The event id derives from the click, so Slack retrying the callback publishes nothing new.

use crate::providers::slack::{APPROVE, REJECT};
use crate::render::ApprovalAsk;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use hmac::{Hmac, KeyInit, Mac};
use serde::Deserialize;
use serde_json::json;
use sha2::Sha256;
use slipway_mesh::EventId;
use slipway_mesh::v1::{ChatopsCommand, CommandKind};
use slipway_runtime::config::Secret;
use slipway_runtime::jetstream::Publisher;
use std::collections::BTreeMap;
use std::sync::Arc;

/// Oldest (and furthest in the future) a callback's timestamp may be.
pub const MAX_SKEW_SECS: i64 = 5 * 60;

/// Why a callback was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    /// Header missing.
    #[error("missing {0} header")]
    Missing(&'static str),
    /// Timestamp not a number, or too far from now.
    #[error("request timestamp is missing, malformed or older than 5 minutes")]
    Stale,
    /// Not `v0=<64 hex>`.
    #[error("malformed X-Slack-Signature")]
    Malformed,
    /// Wrong signature.
    #[error("signature does not match")]
    Mismatch,
}

/// The `X-Slack-Signature` of `body` sent at `timestamp`.
pub fn sign(secret: &[u8], timestamp: &str, body: &[u8]) -> String {
    format!("v0={}", hex::encode(mac(secret, timestamp, body).finalize().into_bytes()))
}

fn mac(secret: &[u8], timestamp: &str, body: &[u8]) -> Hmac<Sha256> {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).unwrap_or_else(|_| unreachable!("HMAC takes any key length"));
    mac.update(b"v0:");
    mac.update(timestamp.as_bytes());
    mac.update(b":");
    mac.update(body);
    mac
}

/// Verifies a callback (constant-time comparison).
pub fn verify(
    secret: &[u8],
    timestamp: Option<&str>,
    signature: Option<&str>,
    body: &[u8],
    now: i64,
) -> Result<(), SignatureError> {
    let timestamp = timestamp.ok_or(SignatureError::Missing("X-Slack-Request-Timestamp"))?;
    let signature = signature.ok_or(SignatureError::Missing("X-Slack-Signature"))?;
    let ts: i64 = timestamp.trim().parse().map_err(|_| SignatureError::Stale)?;
    if (now - ts).abs() > MAX_SKEW_SECS {
        return Err(SignatureError::Stale);
    }
    let digits = signature.trim().strip_prefix("v0=").ok_or(SignatureError::Malformed)?;
    let mut digest = [0u8; 32];
    hex::decode_to_slice(digits, &mut digest).map_err(|_| SignatureError::Malformed)?;
    mac(secret, timestamp, body).verify_slice(&digest).map_err(|_| SignatureError::Mismatch)
}

/// What the endpoint needs.
pub struct Interactions {
    /// The app's signing secret; `None` refuses every callback.
    pub signing_secret: Option<Secret>,
    /// Slack user id → actor.
    pub actors: BTreeMap<String, String>,
    /// Publishes the commands (JetStream ack before answering).
    pub publisher: Publisher,
}

/// The listener's routes.
pub fn router(state: Arc<Interactions>) -> Router {
    Router::new()
        .route("/slack/interactions", post(callback))
        .layer(DefaultBodyLimit::max(256 * 1024))
        .with_state(state)
}

#[derive(Debug, Deserialize)]
struct Payload {
    r#type: String,
    user: User,
    #[serde(default)]
    actions: Vec<Action>,
}

#[derive(Debug, Deserialize)]
struct User {
    id: String,
    #[serde(default)]
    username: String,
    #[serde(default)]
    name: String,
}

#[derive(Debug, Deserialize)]
struct Action {
    action_id: String,
    #[serde(default)]
    value: String,
    #[serde(default)]
    action_ts: String,
}

fn reply(status: StatusCode, reason: &'static str, message: String) -> Response {
    metrics::counter!("slipway_notifier_slack_callbacks_total", "outcome" => reason).increment(1);
    (status, axum::Json(json!({ "error": message }))).into_response()
}

async fn callback(State(state): State<Arc<Interactions>>, headers: HeaderMap, body: Bytes) -> Response {
    let Some(secret) = &state.signing_secret else {
        return reply(StatusCode::UNAUTHORIZED, "disabled", "slack.signing_secret is not configured".into());
    };
    let header = |n: &str| headers.get(n).and_then(|v| v.to_str().ok());
    let now = chrono::Utc::now().timestamp();
    if let Err(e) =
        verify(secret.expose().as_bytes(), header("x-slack-request-timestamp"), header("x-slack-signature"), &body, now)
    {
        tracing::warn!(error = %e, "slack callback refused");
        return reply(StatusCode::UNAUTHORIZED, "signature", e.to_string());
    }
    let command = match command(&state, &body) {
        Ok(Some(c)) => c,
        Ok(None) => return reply(StatusCode::OK, "ignored", "not an approval button".into()),
        Err(e) => return reply(StatusCode::BAD_REQUEST, "malformed", e.to_string()),
    };
    let (id, command) = command;
    match state.publisher.publish_with_id(id, &command).await {
        Ok(_) => {
            tracing::info!(actor = %command.actor, app = %command.app, stage = %command.env, kind = ?command.kind(), "slack button became a command");
            metrics::counter!("slipway_notifier_slack_callbacks_total", "outcome" => "command").increment(1);
            // Slack shows nothing for an empty 200; the approval events tell the channel.
            StatusCode::OK.into_response()
        }
        Err(e) => {
            tracing::error!(error = %e, "slack command could not be stored");
            reply(StatusCode::SERVICE_UNAVAILABLE, "unavailable", "command could not be stored; click again".into())
        }
    }
}

/// Why a verified callback body is not a command Slipway can take: answered with 400.
#[derive(Debug, thiserror::Error)]
enum Malformed {
    #[error("no payload field")]
    NoPayload,
    #[error("payload: {0}")]
    Payload(serde_json::Error),
    #[error("button value: {0}")]
    ButtonValue(serde_json::Error),
    #[error("no user name")]
    NoUser,
    /// An id or subject that cannot be built from the button (an app or stage that is not a name).
    #[error("{0}")]
    Name(#[from] slipway_mesh::Error),
}

/// The command a verified callback body asks for (`None` for anything but our buttons).
fn command(state: &Interactions, body: &[u8]) -> Result<Option<(EventId, ChatopsCommand)>, Malformed> {
    let json = form_urlencoded::parse(body)
        .find(|(k, _)| k == "payload")
        .map(|(_, v)| v.into_owned())
        .ok_or(Malformed::NoPayload)?;
    let payload: Payload = serde_json::from_str(&json).map_err(Malformed::Payload)?;
    if payload.r#type != "block_actions" {
        return Ok(None);
    }
    let Some(action) = payload.actions.iter().find(|a| a.action_id == APPROVE || a.action_id == REJECT) else {
        return Ok(None);
    };
    let ask: ApprovalAsk = serde_json::from_str(&action.value).map_err(Malformed::ButtonValue)?;
    let (kind, verb) =
        if action.action_id == APPROVE { (CommandKind::Approve, "approve") } else { (CommandKind::Reject, "reject") };
    let actor = state.actors.get(&payload.user.id).cloned().unwrap_or_else(|| {
        if payload.user.username.is_empty() { payload.user.name.clone() } else { payload.user.username.clone() }
    });
    if actor.is_empty() {
        return Err(Malformed::NoUser);
    }
    let clean = |s: &str| s.chars().filter(|c| c.is_ascii_alphanumeric() || *c == '.').collect::<String>();
    let id = EventId::parse(&format!("slack-{}-{}-{}", clean(&payload.user.id), clean(&action.action_ts), verb))?;
    let mut command = ChatopsCommand {
        command_id: id.to_string(),
        app: ask.app.clone(),
        env: ask.stage.clone(),
        actor,
        raw: format!("/{verb} {} {}", ask.app, ask.stage),
        channel: "slack".into(),
        reason: format!("promotion {}", ask.promotion_id),
        ..Default::default()
    };
    command.set_kind(kind);
    // The subject is built from app and stage: they must be valid names.
    slipway_mesh::EventPayload::subject(&command)?;
    Ok(Some((id, command)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slack_documented_example_verifies() {
        // From Slack's "Verifying requests from Slack" guide.
        let secret = b"8f742231b10e8888abcd99yyyzzz85a5";
        let body = b"token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&channel_id=G8PSS9T3V&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&command=%2Fwebhook-collect&text=&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c";
        let sig = "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503";
        assert_eq!(sign(secret, "1531420618", body), sig);
        assert_eq!(verify(secret, Some("1531420618"), Some(sig), body, 1_531_420_618 + 10), Ok(()));
        assert_eq!(
            verify(secret, Some("1531420618"), Some(sig), body, 1_531_420_618 + 301),
            Err(SignatureError::Stale)
        );
        assert_eq!(verify(b"other", Some("1531420618"), Some(sig), body, 1_531_420_618), Err(SignatureError::Mismatch));
        assert_eq!(
            verify(secret, Some("1531420618"), Some("v1=00"), body, 1_531_420_618),
            Err(SignatureError::Malformed)
        );
        assert_eq!(verify(secret, None, Some(sig), body, 0), Err(SignatureError::Missing("X-Slack-Request-Timestamp")));
    }
}
