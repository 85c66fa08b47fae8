//! Human output: the apps × stages matrix, run tables and event lines, coloured only when
//! stdout is a terminal (and `NO_COLOR` is unset). `--json` output bypasses this module.

use std::io::IsTerminal as _;

use slipway_proto::v1;

/// ANSI colours, or none.
#[derive(Debug, Clone, Copy)]
pub struct Style {
    colour: bool,
}

impl Style {
    /// Colours when stdout is a terminal and `NO_COLOR` is not set.
    pub fn detect() -> Self {
        Style { colour: std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none() }
    }

    fn paint(self, code: &str, text: &str) -> String {
        if self.colour { format!("\x1b[{code}m{text}\x1b[0m") } else { text.to_owned() }
    }

    pub fn bold(self, text: &str) -> String {
        self.paint("1", text)
    }

    pub fn green(self, text: &str) -> String {
        self.paint("32", text)
    }

    pub fn red(self, text: &str) -> String {
        self.paint("31", text)
    }

    pub fn yellow(self, text: &str) -> String {
        self.paint("33", text)
    }

    pub fn dim(self, text: &str) -> String {
        self.paint("2", text)
    }
}

/// Rows of cells (plain text, colour function) printed as aligned columns. Padding is computed
/// on the plain text so escape codes do not skew the columns.
type Cell = (String, fn(Style, &str) -> String);

fn table(style: Style, header: &[&str], rows: &[Vec<Cell>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (i, (text, _)) in row.iter().enumerate() {
            widths[i] = widths[i].max(text.chars().count());
        }
    }
    let pad = |text: &str, i: usize| " ".repeat(widths[i] - text.chars().count() + 2);
    let mut out = String::new();
    for (i, h) in header.iter().enumerate() {
        out.push_str(&style.bold(h));
        out.push_str(&pad(h, i));
    }
    out = out.trim_end().to_owned();
    for row in rows {
        out.push('\n');
        let mut line = String::new();
        for (i, (text, paint)) in row.iter().enumerate() {
            line.push_str(&paint(style, text));
            line.push_str(&pad(text, i));
        }
        out.push_str(line.trim_end());
    }
    out
}

fn plain(_: Style, text: &str) -> String {
    text.to_owned()
}

/// One stage of one app: `v1 healthy`, `v1 degraded held`, `- unknown`.
fn stage_cell(s: &v1::StageStatus) -> Cell {
    let tag = s.desired.as_ref().map_or("-", |d| d.tag.as_str());
    let (word, paint): (&str, fn(Style, &str) -> String) = match s.health() {
        v1::Health::Healthy => ("healthy", Style::green),
        v1::Health::Degraded => ("degraded", Style::red),
        v1::Health::Progressing => ("progressing", Style::yellow),
        v1::Health::Unknown | v1::Health::Unspecified => ("unknown", Style::dim),
    };
    let mut text = if s.desired.is_some() { format!("{tag} {word}") } else { "-".to_owned() };
    if s.held {
        text.push_str(" held");
    }
    if s.approvals_required > 0 {
        text.push_str(&format!(" waiting {}/{}", s.approvals_granted, s.approvals_required));
    }
    let scan_blocked = s.waiting_on.starts_with("scan:");
    if scan_blocked {
        text.push_str(" scan-blocked");
    }
    let paint = if scan_blocked {
        Style::red
    } else if s.held || s.approvals_required > 0 {
        Style::yellow
    } else {
        paint
    };
    (text, paint)
}

/// The apps × stages matrix, then what waits for whom.
pub fn status(style: Style, r: &v1::ListAppsResponse) -> String {
    let mut header = vec!["APP"];
    let upper: Vec<String> = r.stages.iter().map(|s| s.to_uppercase()).collect();
    header.extend(upper.iter().map(String::as_str));
    let rows: Vec<Vec<Cell>> = r
        .apps
        .iter()
        .map(|app| {
            // A removed app (no longer in the catalog) keeps its row, marked.
            let name = if app.removed { format!("{} (removed)", app.app) } else { app.app.clone() };
            let mut row: Vec<Cell> = vec![(name, Style::bold)];
            for stage in &r.stages {
                let cell = app.stages.iter().find(|s| &s.stage == stage).map(stage_cell);
                row.push(cell.unwrap_or_else(|| ("-".to_owned(), plain)));
            }
            row
        })
        .collect();
    let mut out = table(style, &header, &rows);
    if !r.next_page_token.is_empty() {
        out.push_str(&format!("\n{} of {} apps; next page: --page-token {}", r.apps.len(), r.total, r.next_page_token));
    }
    for app in &r.apps {
        for s in app.stages.iter().filter(|s| s.approvals_required > 0) {
            let who = if s.allowed_approvers.is_empty() { "-".to_owned() } else { s.allowed_approvers.join(", ") };
            out.push_str(&format!(
                "\n{} {}/{} waits for approval ({}/{}); may approve: {who}  → slipctl approve {} {}",
                style.yellow("●"),
                app.app,
                s.stage,
                s.approvals_granted,
                s.approvals_required,
                app.app,
                s.stage
            ));
        }
        for s in app.stages.iter().filter(|s| s.waiting_on.starts_with("scan:")) {
            out.push_str(&format!("\n{} {}/{} {}", style.red("✖"), app.app, s.stage, s.waiting_on));
        }
        for s in app.stages.iter().filter(|s| s.held) {
            let why = if s.hold_reason.is_empty() { String::new() } else { format!(" ({})", s.hold_reason) };
            out.push_str(&format!("\n{} {}/{} is held{why}", style.yellow("■"), app.app, s.stage));
        }
    }
    out
}

fn time(t: Option<&pbjson_types::Timestamp>) -> String {
    t.and_then(|t| chrono::DateTime::from_timestamp(t.seconds, u32::try_from(t.nanos).unwrap_or(0)))
        .map(|t| t.format("%Y-%m-%d %H:%M:%S").to_string())
        .unwrap_or_else(|| "-".to_owned())
}

/// The runs table, newest first.
pub fn runs(style: Style, r: &v1::ListRunsResponse) -> String {
    let rows: Vec<Vec<Cell>> = r
        .runs
        .iter()
        .map(|run| {
            let (state, paint): (&str, fn(Style, &str) -> String) = match run.state() {
                v1::RunState::Running => ("running", Style::yellow),
                v1::RunState::Waiting => ("waiting", Style::yellow),
                v1::RunState::Succeeded => ("succeeded", Style::green),
                v1::RunState::Failed => ("failed", Style::red),
                v1::RunState::RolledBack => ("rolled-back", Style::red),
                v1::RunState::Superseded => ("superseded", Style::dim),
                v1::RunState::Unspecified => ("-", plain),
            };
            let row: Vec<Cell> = vec![
                (run.run_id.clone(), Style::dim),
                (run.app.clone(), Style::bold),
                (run.image.as_ref().map(|i| i.tag.clone()).unwrap_or_default(), plain),
                (state.to_owned(), paint),
                (run.current_stage.clone(), plain),
                (time(run.updated_at.as_ref()), plain),
                // The push's trace, for Jaeger or Tempo; "-" for runs recorded without one.
                (if run.trace_id.is_empty() { "-".to_owned() } else { run.trace_id.clone() }, Style::dim),
            ];
            row
        })
        .collect();
    if rows.is_empty() {
        return "no runs".to_owned();
    }
    table(style, &["RUN", "APP", "VERSION", "STATE", "STAGE", "UPDATED", "TRACE"], &rows)
}

/// One streamed event: sequence, time, kind, subject.
pub fn event(style: Style, e: &v1::Event) -> String {
    let kind = e.r#type.trim_start_matches("io.slipway.").trim_end_matches(".v1");
    let paint = match kind {
        k if k.ends_with("failed") || k.ends_with("degraded") || k.ends_with("rolled-back") => Style::red,
        k if k.ends_with("healthy") || k.ends_with("succeeded") || k.ends_with("committed") => Style::green,
        k if k.starts_with("approval") || k.starts_with("hold") => Style::yellow,
        _ => plain,
    };
    format!("{:>8}  {}  {:<24}  {}", e.sequence, style.dim(&time(e.time.as_ref())), paint(style, kind), e.subject)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stage(name: &str, tag: Option<&str>, health: v1::Health) -> v1::StageStatus {
        v1::StageStatus {
            stage: name.into(),
            desired: tag.map(|t| v1::ImageRef { tag: t.into(), ..Default::default() }),
            health: health.into(),
            ..Default::default()
        }
    }

    #[test]
    fn runs_show_their_trace_id() {
        let run = |id: &str, trace: &str| v1::PipelineRun {
            run_id: id.into(),
            app: "hello".into(),
            state: v1::RunState::Succeeded.into(),
            trace_id: trace.into(),
            ..Default::default()
        };
        let trace = "0af7651916cd43dd8448eb211c80319c";
        let r = v1::ListRunsResponse { runs: vec![run("hello-1", trace), run("hello-0", "")], ..Default::default() };
        let out = runs(Style { colour: false }, &r);
        let lines: Vec<&str> = out.lines().collect();
        assert!(lines[0].trim_end().ends_with("TRACE"), "{out}");
        assert!(lines[1].trim_end().ends_with(trace), "{out}");
        assert!(lines[2].trim_end().ends_with('-'), "{out}");
    }

    #[test]
    fn the_matrix_lines_up_and_says_who_may_approve() {
        let mut staging = stage("staging", None, v1::Health::Unknown);
        (staging.approvals_required, staging.allowed_approvers) = (1, vec!["bob".into()]);
        let r = v1::ListAppsResponse {
            stages: vec!["dev".into(), "staging".into()],
            apps: vec![
                v1::AppStatus {
                    app: "writer".into(),
                    stages: vec![stage("dev", Some("v1"), v1::Health::Healthy), staging],
                    ..Default::default()
                },
                v1::AppStatus { app: "gone".into(), removed: true, ..Default::default() },
            ],
            ..Default::default()
        };
        let out = status(Style { colour: false }, &r);
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines[0], "APP             DEV         STAGING");
        assert_eq!(lines[1], "writer          v1 healthy  - waiting 0/1");
        assert_eq!(lines[2], "gone (removed)  -           -", "a removed app keeps its row, marked");
        assert!(lines[3].contains("writer/staging waits for approval (0/1); may approve: bob"), "{out}");
        assert!(!out.contains('\x1b'), "no colours off a terminal");
        assert!(status(Style { colour: true }, &r).contains("\x1b[32mv1 healthy\x1b[0m"));
    }

    #[test]
    fn a_scan_blocked_stage_says_which_findings_and_how_to_allow_them() {
        let mut prod = stage("prod", Some("v1"), v1::Health::Healthy);
        prod.waiting_on = "scan: blocked by CVE-2019-18224 (CRITICAL libidn2-0 2.0.5-1, fixed in 2.0.5-1+deb10u1); \
            to accept one, add it to the stage's scan.allow in the catalog: \
            { id: CVE-2019-18224, reason: \"...\", expires: YYYY-MM-DD }"
            .into();
        let r = v1::ListAppsResponse {
            stages: vec!["prod".into()],
            apps: vec![v1::AppStatus { app: "writer".into(), stages: vec![prod], ..Default::default() }],
            ..Default::default()
        };
        let out = status(Style { colour: false }, &r);
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines[1], "writer  v1 healthy scan-blocked");
        assert!(lines[2].starts_with("✖ writer/prod scan: blocked by CVE-2019-18224 (CRITICAL"), "{out}");
        assert!(lines[2].contains("scan.allow") && lines[2].contains("expires: YYYY-MM-DD"), "{out}");
    }
}
