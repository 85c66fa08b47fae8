//! Chatops commands: PR comments and chat messages → `chatops.command` events.
//!
//! A command is a line whose first non-space character is `/` followed by a word of
//! `[a-z][a-z-]*` (case-insensitive), so paths and URLs are not commands. Several commands may
//! share a comment. Lines in fenced code blocks (```` ``` ```` / `~~~`), indented code (4
//! spaces or a tab) and quotes (`>`) are not read, nor are lines over [`MAX_LINE`] bytes; at most
//! [`MAX_COMMANDS`] commands are taken from one text. Arguments are validated as mesh names;
//! a command whose arguments do not validate keeps an `error` for the reply and never reaches
//! a subject or a decision. Never panics, whatever the input.

use crate::apps::id_token;
use slipway_mesh::names::{AppName, EnvName, ImageTag};
use slipway_mesh::v1::{self, CommandKind};

/// At most this many commands are read from one comment.
pub const MAX_COMMANDS: usize = 20;
/// Longer lines are ignored.
pub const MAX_LINE: usize = 1000;

/// One command as parsed from text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedCommand {
    pub kind: CommandKind,
    pub app: Option<AppName>,
    pub env: Option<EnvName>,
    pub tag: Option<ImageTag>,
    /// Free text after the arguments of `/reject` and `/hold` (and trailing words of `/lgtm`,
    /// `/retry`); empty when none.
    pub reason: String,
    /// The command line as typed (trimmed).
    pub raw: String,
    /// Position among the commands of its text, from 0; part of the derived command id.
    pub index: usize,
    /// Why the command cannot be carried out (bad argument, usage, unknown command).
    pub error: Option<String>,
}

/// Where a command came from, for [`to_event`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CommandContext {
    /// A stable id of the source message (e.g. `gh-<delivery>`); command ids derive from it,
    /// so a redelivery yields the same ids.
    pub source_id: String,
    pub actor: String,
    pub repository: String,
    /// The pull request number, 0 when none.
    pub pull_request: u64,
    pub comment_url: String,
    /// `github`, `slack`, `grpc`, ...
    pub channel: String,
}

/// Parses every command in `body`. See the module doc for what counts as one.
pub fn parse_commands(body: &str) -> Vec<ParsedCommand> {
    let mut commands = Vec::new();
    let mut fence: Option<(u8, usize)> = None;
    for line in body.lines() {
        if commands.len() >= MAX_COMMANDS {
            break;
        }
        let indent = line.len() - line.trim_start_matches(' ').len();
        let text = &line[indent..];
        if let Some((ch, len)) = fence {
            if indent < 4 && fence_run(text, ch) >= len && text.trim_start_matches(char::from(ch)).trim().is_empty() {
                fence = None;
            }
            continue;
        }
        if indent >= 4 || text.starts_with('\t') {
            continue; // indented code
        }
        if let Some(ch) = [b'`', b'~'].into_iter().find(|&c| fence_run(text, c) >= 3) {
            fence = Some((ch, fence_run(text, ch)));
            continue;
        }
        if line.len() > MAX_LINE || text.starts_with('>') {
            continue;
        }
        if let Some(mut cmd) = parse_line(text.trim_end()) {
            cmd.index = commands.len();
            commands.push(cmd);
        }
    }
    commands
}

/// Length of the run of `ch` at the start of `text`.
fn fence_run(text: &str, ch: u8) -> usize {
    text.bytes().take_while(|&b| b == ch).count()
}

/// One line that starts with `/` → a command, or `None` when it is not one.
fn parse_line(line: &str) -> Option<ParsedCommand> {
    let rest = line.strip_prefix('/')?;
    let end = rest.find(char::is_whitespace).unwrap_or(rest.len());
    let word = rest[..end].trim_end_matches(['.', '!', ',', ':', ';']).to_ascii_lowercase();
    let words = rest[end..].split_whitespace();
    let mut bytes = word.bytes();
    let plain =
        bytes.next().is_some_and(|b| b.is_ascii_lowercase()) && bytes.all(|b| b.is_ascii_lowercase() || b == b'-');
    if !plain {
        return None;
    }
    let args: Vec<&str> = words.collect();
    let mut cmd = ParsedCommand {
        kind: CommandKind::Unknown,
        app: None,
        env: None,
        tag: None,
        reason: String::new(),
        raw: line.to_owned(),
        index: 0,
        error: None,
    };
    let result = match word.as_str() {
        "approve" => positional(&mut cmd, CommandKind::Approve, &args, 0, "/approve [app] [env]"),
        "unhold" => positional(&mut cmd, CommandKind::Unhold, &args, 0, "/unhold [app] [env]"),
        "rollback" => positional(&mut cmd, CommandKind::Rollback, &args, 2, "/rollback <app> <env> [tag]"),
        "promote" => positional(&mut cmd, CommandKind::Promote, &args, 2, "/promote <app> <env> [tag]"),
        "verify-stage" => positional(&mut cmd, CommandKind::Verify, &args, 0, "/verify-stage [app] [env]"),
        "reject" => with_reason(&mut cmd, CommandKind::Reject, &args),
        "hold" => with_reason(&mut cmd, CommandKind::Hold, &args),
        "lgtm" | "retry" => {
            cmd.kind = if word == "lgtm" { CommandKind::Lgtm } else { CommandKind::Retry };
            cmd.reason = args.join(" ");
            Ok(())
        }
        _ => Err(crate::error::Error::Invalid(format!("unknown command /{word}"))),
    };
    cmd.error = result.err().map(|e| e.to_string());
    Some(cmd)
}

/// `[app] [env] [tag]` with `required` of them mandatory; the tag only where the usage has one.
fn positional(
    cmd: &mut ParsedCommand,
    kind: CommandKind,
    args: &[&str],
    required: usize,
    usage: &str,
) -> crate::error::Result<()> {
    cmd.kind = kind;
    let max = if usage.contains("[tag]") { 3 } else { 2 };
    if args.len() < required || args.len() > max {
        return Err(crate::error::Error::Invalid(format!("usage: {usage}")));
    }
    if let Some(app) = args.first() {
        cmd.app = Some(name::<AppName>(app)?);
    }
    if let Some(env) = args.get(1) {
        cmd.env = Some(name::<EnvName>(env)?);
    }
    if let Some(tag) = args.get(2) {
        cmd.tag = Some(ImageTag::parse(tag).map_err(|e| crate::error::Error::Invalid(e.to_string()))?);
    }
    Ok(())
}

/// `[app] [env] [reason...]`: leading words are the app and env while they are valid names
/// as typed (lowercase); the rest, or everything after `--`, is the reason.
fn with_reason(cmd: &mut ParsedCommand, kind: CommandKind, args: &[&str]) -> crate::error::Result<()> {
    cmd.kind = kind;
    let (names, reason) = match args.iter().position(|a| *a == "--") {
        Some(i) => (&args[..i], &args[i + 1..]),
        None => {
            // Exact case here: a capitalized word starts prose, not a name.
            let app_ok = args.first().is_some_and(|a| AppName::parse(a).is_ok());
            let env_ok = app_ok && args.get(1).is_some_and(|e| EnvName::parse(e).is_ok());
            let n = usize::from(app_ok) + usize::from(env_ok);
            (&args[..n], &args[n..])
        }
    };
    cmd.reason = reason.join(" ");
    if names.len() > 2 {
        return Err(crate::error::Error::Invalid(format!("usage: /{} [app] [env] [reason...]", kind_word(kind))));
    }
    if let Some(app) = names.first() {
        cmd.app = Some(name::<AppName>(app)?);
    }
    if let Some(env) = names.get(1) {
        cmd.env = Some(name::<EnvName>(env)?);
    }
    Ok(())
}

/// App and env names are DNS labels, so case is folded before validating.
fn name<T: std::str::FromStr<Err = slipway_mesh::Error>>(s: &str) -> crate::error::Result<T> {
    s.to_ascii_lowercase().parse().map_err(|e: slipway_mesh::Error| crate::error::Error::Invalid(e.to_string()))
}

fn kind_word(kind: CommandKind) -> &'static str {
    match kind {
        CommandKind::Approve => "approve",
        CommandKind::Lgtm => "lgtm",
        CommandKind::Hold => "hold",
        CommandKind::Unhold => "unhold",
        CommandKind::Rollback => "rollback",
        CommandKind::Promote => "promote",
        CommandKind::Retry => "retry",
        CommandKind::Reject => "reject",
        CommandKind::Verify => "verify-stage",
        CommandKind::Unknown | CommandKind::Unspecified => "unknown",
    }
}

/// The event for one parsed command. A command with an error becomes an `UNKNOWN` command whose
/// `reason` is the error, so nothing acts on it and the notifier can reply with help.
pub fn to_event(cmd: &ParsedCommand, ctx: &CommandContext) -> v1::ChatopsCommand {
    let (kind, reason) = match &cmd.error {
        Some(error) => (CommandKind::Unknown, error.clone()),
        None => (cmd.kind, cmd.reason.clone()),
    };
    let ok = cmd.error.is_none();
    v1::ChatopsCommand {
        command_id: format!("{}-cmd-{}", id_token(&ctx.source_id), cmd.index),
        kind: kind as i32,
        app: cmd.app.as_ref().filter(|_| ok).map(|a| a.to_string()).unwrap_or_default(),
        env: cmd.env.as_ref().filter(|_| ok).map(|e| e.to_string()).unwrap_or_default(),
        tag: cmd.tag.as_ref().filter(|_| ok).map(|t| t.to_string()).unwrap_or_default(),
        actor: ctx.actor.clone(),
        repository: ctx.repository.clone(),
        pull_request: ctx.pull_request,
        comment_url: ctx.comment_url.clone(),
        raw: cmd.raw.clone(),
        channel: ctx.channel.clone(),
        reason,
    }
}

/// The command events of a GitHub comment (`source_id` = `gh-<delivery>`, channel `github`).
pub fn comment_commands(comment: &crate::github::CommentEvent) -> Vec<v1::ChatopsCommand> {
    let ctx = CommandContext {
        source_id: format!("gh-{}", comment.delivery_id),
        actor: comment.actor.clone(),
        repository: comment.repository.to_string(),
        pull_request: if comment.is_pull_request { comment.number } else { 0 },
        comment_url: comment.comment_url.clone(),
        channel: "github".to_owned(),
    };
    parse_commands(&comment.body).iter().map(|c| to_event(c, &ctx)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn one(body: &str) -> ParsedCommand {
        let mut all = parse_commands(body);
        assert_eq!(all.len(), 1, "{body:?} → {all:?}");
        all.remove(0)
    }

    fn app(cmd: &ParsedCommand) -> Option<&str> {
        cmd.app.as_ref().map(AppName::as_str)
    }

    fn env(cmd: &ParsedCommand) -> Option<&str> {
        cmd.env.as_ref().map(EnvName::as_str)
    }

    #[test]
    fn every_command() {
        let c = one("/approve");
        assert_eq!((c.kind, app(&c), env(&c), c.error.as_deref()), (CommandKind::Approve, None, None, None));
        let c = one("  /Approve writer PROD  ");
        assert_eq!((c.kind, app(&c), env(&c)), (CommandKind::Approve, Some("writer"), Some("prod")));
        assert_eq!(c.raw, "/Approve writer PROD");
        assert_eq!(one("/lgtm").kind, CommandKind::Lgtm);
        assert_eq!(one("/LGTM!").kind, CommandKind::Lgtm);
        assert_eq!(one("/retry").kind, CommandKind::Retry);
        let verify = one("/verify-stage hello staging");
        assert_eq!(verify.kind, CommandKind::Verify);
        assert_eq!((app(&verify), env(&verify)), (Some("hello"), Some("staging")));
        assert!(one("/verify-stage a b c").error.is_some(), "no tag for /verify-stage");
        let c = one("/unhold writer");
        assert_eq!((c.kind, app(&c), env(&c)), (CommandKind::Unhold, Some("writer"), None));
        let c = one("/rollback writer prod v1.2.3");
        assert_eq!((c.kind, app(&c), env(&c)), (CommandKind::Rollback, Some("writer"), Some("prod")));
        assert_eq!(c.tag.as_ref().map(ImageTag::as_str), Some("v1.2.3"));
        let c = one("/promote writer staging");
        assert_eq!(
            (c.kind, app(&c), env(&c), c.tag.is_none()),
            (CommandKind::Promote, Some("writer"), Some("staging"), true)
        );
    }

    #[test]
    fn reasons() {
        let c = one("/hold writer prod deploy freeze until Monday");
        assert_eq!((c.kind, app(&c), env(&c)), (CommandKind::Hold, Some("writer"), Some("prod")));
        assert_eq!(c.reason, "deploy freeze until Monday");
        let c = one("/reject Flaky tests");
        assert_eq!((c.kind, app(&c), c.reason.as_str()), (CommandKind::Reject, None, "Flaky tests"));
        let c = one("/reject -- tests are flaky");
        assert_eq!((app(&c), c.reason.as_str()), (None, "tests are flaky"));
        let c = one("/hold writer -- prod is on fire");
        assert_eq!((app(&c), env(&c), c.reason.as_str()), (Some("writer"), None, "prod is on fire"));
        let c = one("/hold ../etc -- x");
        assert!(c.error.as_deref().is_some_and(|e| e.contains("app name")), "{c:?}");
    }

    #[test]
    fn errors_not_panics() {
        let c = one("/promote ../etc prod");
        assert_eq!(c.kind, CommandKind::Promote);
        assert!(c.error.as_deref().is_some_and(|e| e.contains("invalid app name")), "{c:?}");
        assert!(c.app.is_none());
        let c = one("/rollback writer");
        assert_eq!(c.error.as_deref(), Some("usage: /rollback <app> <env> [tag]"));
        let c = one("/approve writer prod now please");
        assert_eq!(c.error.as_deref(), Some("usage: /approve [app] [env]"));
        let c = one("/promote writer prod a:b");
        assert!(c.error.as_deref().is_some_and(|e| e.contains("image tag")), "{c:?}");
        let c = one("/promote writer pr.od");
        assert!(c.error.as_deref().is_some_and(|e| e.contains("environment name")), "{c:?}");
        let c = one("/deploy writer");
        assert_eq!((c.kind, c.error.as_deref()), (CommandKind::Unknown, Some("unknown command /deploy")));
    }

    #[test]
    fn not_commands() {
        for body in [
            "/usr/bin/env",
            "/ approve",
            "/2fa",
            "//approve",
            "https://x/approve",
            "please /approve",
            "`/approve`",
            "- /approve",
            "> /approve",
            "   > /approve",
            "    /approve",
            "\t/approve",
            "/_x",
            "",
            "/",
        ] {
            assert!(parse_commands(body).is_empty(), "{body:?}");
        }
    }

    #[test]
    fn code_blocks_and_quotes_are_skipped() {
        let body = "Looks good.\n```sh\n/approve\n```\n~~~~\n/hold\n~~~\n/still-code\n~~~~\n\
                    > /reject\n/lgtm\r\n  ```\n/x\n  ````\n/retry";
        let kinds: Vec<_> = parse_commands(body).into_iter().map(|c| c.kind).collect();
        assert_eq!(kinds, [CommandKind::Lgtm, CommandKind::Retry]);
        // An unclosed fence hides the rest of the comment.
        assert!(parse_commands("```\n/approve").is_empty());
    }

    #[test]
    fn several_and_limits() {
        let cmds = parse_commands("/approve writer dev\n\nthanks!\n/hold reader prod\n/retry");
        let idx: Vec<_> = cmds.iter().map(|c| (c.index, c.kind)).collect();
        assert_eq!(idx, [(0, CommandKind::Approve), (1, CommandKind::Hold), (2, CommandKind::Retry)]);
        assert_eq!(parse_commands(&"/lgtm\n".repeat(50)).len(), MAX_COMMANDS);
        let long = format!("/hold writer prod {}", "x".repeat(MAX_LINE));
        assert!(parse_commands(&long).is_empty());
    }

    #[test]
    fn events() {
        let ctx = CommandContext {
            source_id: "gh-72d3162e-cc78-11e3-81ab-4c9367dc0958".into(),
            actor: "carol".into(),
            repository: "acme/mono".into(),
            pull_request: 7,
            comment_url: "https://x/c/1".into(),
            channel: "github".into(),
        };
        let cmds = parse_commands("/rollback writer prod v1\n/promote ../x prod");
        let e = to_event(&cmds[0], &ctx);
        assert_eq!(e.command_id, "gh-72d3162e-cc78-11e3-81ab-4c9367dc0958-cmd-0");
        assert_eq!(
            (e.kind, e.app.as_str(), e.env.as_str(), e.tag.as_str()),
            (CommandKind::Rollback as i32, "writer", "prod", "v1")
        );
        assert_eq!((e.actor.as_str(), e.pull_request, e.raw.as_str()), ("carol", 7, "/rollback writer prod v1"));
        assert_eq!(to_event(&cmds[0], &ctx), e, "deterministic");
        let bad = to_event(&cmds[1], &ctx);
        assert_eq!((bad.kind, bad.app.as_str(), bad.env.as_str()), (CommandKind::Unknown as i32, "", ""));
        assert!(bad.reason.contains("invalid app name"));
        assert!(bad.command_id.ends_with("-cmd-1"));
        let odd = CommandContext { source_id: "slack:C01/1700000000.000100".into(), ..ctx };
        assert!(slipway_mesh::EventId::parse(&to_event(&cmds[0], &odd).command_id).is_ok());
    }

    fn line_strategy() -> impl Strategy<Value = String> {
        let word = prop_oneof![
            Just("/approve"),
            Just("/lgtm"),
            Just("/reject"),
            Just("/hold"),
            Just("/unhold"),
            Just("/rollback"),
            Just("/promote"),
            Just("/retry"),
            Just("/Promote"),
            Just("```"),
            Just("~~~"),
            Just(">"),
            Just("    /approve"),
            Just("/x-y"),
        ];
        let arg = prop_oneof![Just("writer".to_owned()), Just("prod".to_owned()), Just("--".to_owned()), "\\PC{0,12}"];
        (word, proptest::collection::vec(arg, 0..5)).prop_map(|(w, a)| format!("{w} {}", a.join(" ")))
    }

    proptest! {
        #[test]
        fn arbitrary_text_never_panics(body in "\\PC*|(.|\n){0,400}") {
            check(&parse_commands(&body))?;
        }

        #[test]
        fn command_like_text_is_validated(lines in proptest::collection::vec(line_strategy(), 0..30)) {
            let cmds = parse_commands(&lines.join("\n"));
            prop_assert!(cmds.len() <= MAX_COMMANDS);
            check(&cmds)?;
        }
    }

    fn check(cmds: &[ParsedCommand]) -> Result<(), TestCaseError> {
        let ctx = CommandContext { source_id: "s".into(), ..Default::default() };
        for c in cmds {
            if let Some(a) = &c.app {
                prop_assert!(AppName::parse(a.as_str()).is_ok());
            }
            if let Some(e) = &c.env {
                prop_assert!(EnvName::parse(e.as_str()).is_ok());
            }
            let event = to_event(c, &ctx);
            prop_assert!(event.app.is_empty() || slipway_mesh::names::is_token(&event.app));
            prop_assert!(event.env.is_empty() || slipway_mesh::names::is_token(&event.env));
        }
        Ok(())
    }
}
