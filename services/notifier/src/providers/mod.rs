//! Providers turn a [`Message`] (and the event behind it) into the HTTP request their remote
//! expects. Building a request is pure; [`crate::send`] executes it.
//!
//! [`plan`] answers [`Plan::Skip`] when a destination has nothing to say about an event (a
//! GitHub destination and a `hold.placed` event, say); the delivery is then recorded as
//! skipped, not failed.

pub mod discord;
pub mod github;
pub mod slack;
pub mod teams;
pub mod webhook;

use crate::destination::{Destination, Provider};
use crate::render::Message;
use slipway_mesh::Envelope;
use slipway_mesh::v1::event::Payload;

/// One HTTP request to a remote. `url` may hold a secret (an incoming-webhook token): it is
/// never logged or put into an error.
#[derive(Clone)]
pub struct Request {
    /// `POST` for every provider so far.
    pub method: reqwest::Method,
    /// Where to.
    pub url: String,
    /// Extra headers (`content-type` is always JSON).
    pub headers: Vec<(&'static str, String)>,
    /// The JSON body.
    pub body: Vec<u8>,
    /// What the request does, for logs (`commit status`, `pr comment`, `post`).
    pub action: &'static str,
}

impl std::fmt::Debug for Request {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // No URL, no headers: both may carry secrets.
        f.debug_struct("Request").field("action", &self.action).field("bytes", &self.body.len()).finish()
    }
}

/// What to do for one (event, destination).
#[derive(Debug, Clone)]
pub enum Plan {
    /// Send this request.
    Send(Request),
    /// Nothing to send; the reason is recorded.
    Skip(&'static str),
}

/// Everything a provider may look at.
#[derive(Debug, Clone, Copy)]
pub struct Input<'a> {
    /// The destination (URL, token, key).
    pub destination: &'a Destination,
    /// The event's envelope.
    pub envelope: &'a Envelope,
    /// The decoded payload.
    pub payload: &'a Payload,
    /// The payload's JSON (proto3 mapping), as published.
    pub body: &'a [u8],
    /// The rendered message.
    pub message: &'a Message,
    /// Unix time now, for signatures.
    pub now: i64,
}

/// The request for `input.destination`'s provider.
pub fn plan(input: &Input<'_>) -> Plan {
    match input.destination.provider {
        Provider::Slack => Plan::Send(slack::request(input)),
        Provider::Teams => Plan::Send(teams::request(input)),
        Provider::Discord => Plan::Send(discord::request(input)),
        Provider::Webhook => Plan::Send(webhook::request(input)),
        Provider::Github => github::plan(input),
    }
}

/// A JSON POST to the destination's own URL.
pub(crate) fn post_json(input: &Input<'_>, body: &serde_json::Value, action: &'static str) -> Request {
    Request {
        method: reqwest::Method::POST,
        url: input.destination.url.expose().to_owned(),
        headers: Vec::new(),
        body: serde_json::to_vec(body).unwrap_or_default(),
        action,
    }
}

/// `s` cut to `max` characters (with an ellipsis when cut).
pub(crate) fn clip(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_owned()
    } else {
        s.chars().take(max.saturating_sub(1)).collect::<String>() + "…"
    }
}

/// RGB colour of a severity (Slack attachments, Teams, Discord).
pub(crate) fn color(severity: crate::routing::Severity) -> u32 {
    use crate::routing::Severity;
    match severity {
        Severity::Info => 0x0043_9FE0,
        Severity::Success => 0x002E_B67D,
        Severity::Warning => 0x00EC_B22E,
        Severity::Error => 0x00E0_1E5A,
    }
}
