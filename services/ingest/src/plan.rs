//! What a verified, normalized delivery publishes: the source event itself, a
//! `build.requested` per changed app, one `chatops.command` per command in a comment.
//!
//! Event ids are derived from the delivery id (`gh-<delivery>-<n>`), so the same delivery
//! always yields the same ids: a retried publish, a replayed spool file or a concurrent
//! redelivery is deduplicated by JetStream.

use crate::apps::AppMatcher;
use crate::chatops;
use crate::github::Normalized;
use slipway_mesh::{Envelope, EventId, EventPayload};

/// One event ready to publish or spool.
#[derive(Debug, Clone, PartialEq)]
pub struct Prepared {
    /// CloudEvents attributes, with the derived id.
    pub envelope: Envelope,
    /// proto3 JSON body (shared, not copied, by the publish).
    pub body: bytes::Bytes,
}

/// True when `id` can be an `X-GitHub-Delivery` (a GUID in practice): 1–64 of `[A-Za-z0-9-]`.
pub fn valid_delivery_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= 64 && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

struct Planner<'a> {
    /// `gh` for GitHub deliveries, `chat` for chat messages.
    prefix: &'static str,
    delivery: &'a str,
    source: &'a str,
    out: Vec<Prepared>,
}

impl Planner<'_> {
    fn add<E: EventPayload>(&mut self, payload: &E) -> Result<(), slipway_mesh::Error> {
        let id = EventId::parse(&format!("{}-{}-{}", self.prefix, self.delivery, self.out.len()))?;
        let (envelope, body) = slipway_mesh::prepare_with_id(id, self.source, payload)?;
        self.out.push(Prepared { envelope, body: body.into() });
        Ok(())
    }
}

/// One `chatops.command` event per command, with ids derived from `source_id` (a chat
/// message id), so a bot that retries the same message adds nothing.
pub fn commands(
    commands: &[slipway_mesh::v1::ChatopsCommand],
    source_id: &str,
    source: &str,
) -> Result<Vec<Prepared>, slipway_mesh::Error> {
    let token = crate::apps::id_token(source_id);
    let mut p = Planner { prefix: "chat", delivery: &token, source, out: Vec::new() };
    for command in commands {
        p.add(command)?;
    }
    Ok(p.out)
}

/// The events of one delivery. `delivery` must satisfy [`valid_delivery_id`].
pub fn plan(
    normalized: Normalized,
    delivery: &str,
    matcher: &AppMatcher,
    source: &str,
) -> Result<Vec<Prepared>, slipway_mesh::Error> {
    let mut p = Planner { prefix: "gh", delivery, source, out: Vec::new() };
    match normalized {
        Normalized::Push(mut push) => {
            let requests = matcher.annotate_and_request(&mut push);
            p.add(&push)?;
            for request in requests {
                p.add(&request)?;
            }
        }
        Normalized::Tag(tag) => {
            p.add(&tag)?;
            for request in matcher.tag_build_requests(&tag) {
                p.add(&request)?;
            }
        }
        Normalized::PullRequest(pr) => p.add(&pr)?,
        Normalized::TestGate(gate) => p.add(&gate)?,
        Normalized::Ping(ping) => p.add(&ping)?,
        Normalized::Comment(comment) => {
            for command in chatops::comment_commands(&comment) {
                p.add(&command)?;
            }
        }
        Normalized::Ignored { .. } => {}
    }
    Ok(p.out)
}
