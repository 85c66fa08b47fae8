//! What a verified, normalized delivery publishes: the source event itself, a
//! `build.requested` per changed app, one `chatops.command` per command in a comment.
//!
//! Event ids are derived from the delivery id (`gh-<delivery>-<n>`), so the same delivery
//! always yields the same ids: a retried publish, a replayed spool file or a concurrent
//! redelivery is deduplicated by JetStream.

use crate::apps::AppMatcher;
use crate::chatops;
use crate::cut::{EventCaps, cut_push};
use crate::github::Normalized;
use crate::originals::{self, Keep};
use slipway_mesh::bounds::capped;
use slipway_mesh::{Envelope, EventId, EventPayload, v1};

/// Free text GitHub caps itself (titles, check names, URLs) is cut here too, so a signed but
/// odd payload cannot make an event too large.
const MAX_TEXT: usize = 1024;

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

/// How much of a payload its events carry, and when the whole body is kept.
#[derive(Debug, Clone, Copy, Default)]
pub struct Shape {
    /// Caps of a push event.
    pub caps: EventCaps,
    /// Which pushes keep their whole body.
    pub keep: Keep,
}

/// A delivery's events, and the whole body's reference when it is to be kept.
#[derive(Debug, Clone, PartialEq)]
pub struct Planned {
    /// In publish order.
    pub events: Vec<Prepared>,
    /// Set when the body must be stored in the originals bucket before the events go out.
    pub original: Option<v1::Original>,
}

/// The events of one delivery. `delivery` must satisfy [`valid_delivery_id`]; `body` is the
/// delivery's whole (verified) body.
pub fn plan(
    normalized: Normalized,
    delivery: &str,
    matcher: &AppMatcher,
    source: &str,
    shape: &Shape,
    body: &[u8],
) -> Result<Planned, slipway_mesh::Error> {
    let mut p = Planner { prefix: "gh", delivery, source, out: Vec::new() };
    let mut original = None;
    match normalized {
        Normalized::Push(mut push) => {
            // The matching sees every file of every commit; the event carries what fits.
            let requests = matcher.annotate_and_request(&mut push);
            if cut_push(&mut push, &shape.caps) || shape.keep == Keep::All {
                push.original = Some(originals::reference(delivery, body));
                original = push.original.clone();
            }
            p.add(&*push)?;
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
        Normalized::PullRequest(mut pr) => {
            pr.title = capped(&pr.title, MAX_TEXT);
            pr.author = capped(&pr.author, MAX_TEXT);
            p.add(&pr)?;
        }
        Normalized::TestGate(mut gate) => {
            for text in [&mut gate.name, &mut gate.url, &mut gate.conclusion, &mut gate.head_branch] {
                *text = capped(text, MAX_TEXT);
            }
            p.add(&gate)?;
        }
        Normalized::Ping(mut ping) => {
            ping.zen = capped(&ping.zen, MAX_TEXT);
            p.add(&ping)?;
        }
        Normalized::Comment(comment) => {
            for command in chatops::comment_commands(&comment) {
                p.add(&command)?;
            }
        }
        Normalized::Ignored { .. } => {}
    }
    Ok(Planned { events: p.out, original })
}
