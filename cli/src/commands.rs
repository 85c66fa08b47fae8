//! Each subcommand: one admin API call, printed for a person or as JSON.

use serde::Serialize;
use slipway_proto::v1;

use crate::Command;
use crate::client::{Api, Failure};
use crate::output::{self, Style};

/// How results are printed.
#[derive(Debug, Clone, Copy)]
pub struct Print {
    pub json: bool,
    pub style: Style,
}

impl Print {
    /// Prints `value` as JSON, or `human()` otherwise.
    pub(crate) fn show<T: Serialize>(self, value: &T, human: impl FnOnce() -> String) -> Result<(), Failure> {
        if self.json {
            let text = serde_json::to_string_pretty(value).map_err(|e| Failure::Api(format!("JSON output: {e}")))?;
            println!("{text}");
        } else {
            println!("{}", human());
        }
        Ok(())
    }
}

fn none_if_empty(s: &str) -> &str {
    if s.is_empty() { "-" } else { s }
}

/// Runs `command` against `api`.
pub async fn run(api: &Api, command: Command, print: Print) -> Result<(), Failure> {
    let style = print.style;
    match command {
        // Handled by `crate::dlq` before any admin API connection is made.
        Command::Dlq { .. } => Err(Failure::Usage("dlq talks to the notifier, not the admin API".into())),
        Command::Logs { .. } => Err(Failure::Usage("logs reads NATS, not the admin API".into())),
        Command::Catalog { .. } => Err(Failure::Usage("catalog works offline, not through the admin API".into())),
        Command::Spool { .. } => Err(Failure::Usage("spool talks to ingest, not the admin API".into())),
        Command::Delivery { .. } => Err(Failure::Usage("delivery reads NATS, not the admin API".into())),
        Command::Status { app, team, stage, state, page_size, page_token } => {
            let request = v1::ListAppsRequest {
                app: app.unwrap_or_default(),
                team: team.unwrap_or_default(),
                stage: stage.unwrap_or_default(),
                state: state.unwrap_or_default(),
                page_size,
                page_token,
            };
            let r = api.ok(api.client().list_apps(request).await)?;
            print.show(&r, || output::status(style, &r))
        }
        Command::Runs { app, limit } => {
            let request = v1::ListRunsRequest { app: app.unwrap_or_default(), limit, page_token: String::new() };
            let r = api.ok(api.client().list_runs(request.clone()).await)?;
            print.show(&r, || output::runs(style, &r))
        }
        Command::Watch { app, stage, from_seq, subject } => watch(api, app, stage, from_seq, subject, print).await,
        Command::Approve { app, stage, promotion, comment } => {
            let request = v1::ApproveRequest { app, stage, promotion_id: promotion.unwrap_or_default(), comment };
            let r = api.ok(api.client().approve(request.clone()).await)?;
            print.show(&r, || {
                let next = if r.granted >= r.required { "; promoting" } else { "" };
                let what = format!("{}/{}", request.app, none_if_empty(&request.stage));
                format!("approved {what}: {}/{} approvals{next} (promotion {})", r.granted, r.required, r.promotion_id)
            })
        }
        Command::Reject { app, stage, promotion, reason } => {
            let request = v1::RejectRequest { app, stage, promotion_id: promotion.unwrap_or_default(), reason };
            let r = api.ok(api.client().reject(request.clone()).await)?;
            print.show(&r, || format!("rejected promotion {} of {}/{}", r.promotion_id, request.app, request.stage))
        }
        Command::Promote { app, stage, tag, reason, override_freeze, override_scan } => {
            let request =
                v1::PromoteRequest { app, stage, tag: tag.unwrap_or_default(), reason, override_freeze, override_scan };
            let r = api.ok(api.client().promote(request.clone()).await)?;
            print.show(&r, || {
                let what = if request.tag.is_empty() { "the previous stage's version" } else { &request.tag };
                format!("promoting {what} of {} to {} (promotion {})", request.app, request.stage, r.promotion_id)
            })
        }
        Command::Rollback { app, stage, tag, reason } => {
            let request = v1::RollbackRequest { app, stage, tag: tag.unwrap_or_default(), reason };
            let r = api.ok(api.client().rollback(request.clone()).await)?;
            print.show(&r, || {
                let to = r.to.as_ref().map_or("the last healthy version", |i| i.tag.as_str());
                let (app, stage) = (&request.app, &request.stage);
                format!(
                    "rolling back {app}/{stage} to {to} (promotion {}); {stage} stays held until `slipctl release {app} {stage}`",
                    r.promotion_id
                )
            })
        }
        Command::Hold { app, stage, reason } => {
            let request = v1::HoldRequest { app, stage: stage.unwrap_or_default(), reason };
            let r = api.ok(api.client().hold(request.clone()).await)?;
            print.show(&r, || format!("held {} in {}", request.app, stage_or_all(&request.stage)))
        }
        Command::Release { app, stage, reason } => {
            let request = v1::ReleaseRequest { app, stage: stage.unwrap_or_default(), reason };
            let r = api.ok(api.client().release(request.clone()).await)?;
            print.show(&r, || format!("released {} in {}", request.app, stage_or_all(&request.stage)))
        }
        Command::Verify { app, stage, reason } => {
            let request = v1::VerifyRequest { app, stage, reason };
            let r = api.ok(api.client().verify(request.clone()).await)?;
            print.show(&r, || {
                format!(
                    "verifying {}/{} again (promotion {}); the verdict comes as verification.completed",
                    request.app, request.stage, r.promotion_id
                )
            })
        }
    }
}

fn stage_or_all(stage: &str) -> &str {
    if stage.is_empty() { "every stage" } else { stage }
}

/// Streams events until the server ends the stream or Ctrl-C; one line (or JSON object) each.
async fn watch(
    api: &Api,
    app: Option<String>,
    stage: Option<String>,
    from_seq: Option<u64>,
    subjects: Vec<String>,
    print: Print,
) -> Result<(), Failure> {
    let request = v1::WatchRequest {
        subjects,
        app: app.unwrap_or_default(),
        stage: stage.unwrap_or_default(),
        start: from_seq.map(v1::watch_request::Start::FromSequence),
    };
    let mut events = api.ok(api.client().watch(request.clone()).await)?;
    loop {
        let next = tokio::select! {
            next = events.message() => next,
            _ = tokio::signal::ctrl_c() => return Ok(()),
        };
        match next {
            Ok(Some(event)) if print.json => {
                let line = serde_json::to_string(&event).map_err(|e| Failure::Api(format!("JSON output: {e}")))?;
                println!("{line}");
            }
            Ok(Some(event)) => println!("{}", output::event(print.style, &event)),
            Ok(None) => return Ok(()),
            Err(status) => return Err(api.explain(&status)),
        }
    }
}
