//! Commit messages: a subject from the template per update, and the trailers that make a
//! write-back idempotent (`Slipway-Promotion-Id`) and traceable (`Slipway-Source-Commit`).

use super::Update;

/// The default subject template; `{app}`, `{tag}` and `{stage}` are replaced.
pub const DEFAULT_TEMPLATE: &str = "chore({app}): promote {tag} to {stage}";
/// One per update in the commit.
pub const PROMOTION_TRAILER: &str = "Slipway-Promotion-Id";
/// One per distinct source commit in the commit.
pub const SOURCE_TRAILER: &str = "Slipway-Source-Commit";

/// The template filled in for one update; one line.
pub fn subject(template: &str, update: &Update) -> String {
    let line = template
        .replace("{app}", update.app.as_str())
        .replace("{tag}", &update.change.label())
        .replace("{stage}", update.stage.as_str());
    line.replace(['\r', '\n'], " ")
}

/// The message for one commit holding `updates` (at least one): the template's subject for a
/// single update; for several, a summary line and one line per update. Trailers close it.
pub fn commit_message(template: &str, updates: &[&Update]) -> String {
    let mut message = match updates {
        [single] => subject(template, single),
        many => {
            let mut text = format!("chore(slipway): promote {} updates\n", many.len());
            for update in many {
                text.push_str(&format!("\n- {}", subject(template, update)));
            }
            text
        }
    };
    message.push_str("\n\n");
    for update in updates {
        message.push_str(&format!("{PROMOTION_TRAILER}: {}\n", update.promotion_id));
    }
    let mut sources: Vec<&str> = Vec::new();
    for sha in updates.iter().filter_map(|u| u.source_commit.as_ref()) {
        if !sources.contains(&sha.as_str()) {
            sources.push(sha.as_str());
        }
    }
    for sha in sources {
        message.push_str(&format!("{SOURCE_TRAILER}: {sha}\n"));
    }
    message
}

/// The promotion ids in the trailer block (the last paragraph) of a commit message.
pub fn promotion_ids(message: &str) -> Vec<&str> {
    let trimmed = message.trim_end();
    let last_paragraph = trimmed.rsplit_once("\n\n").map_or(trimmed, |(_, last)| last);
    last_paragraph
        .lines()
        .filter_map(|line| line.strip_prefix(PROMOTION_TRAILER)?.strip_prefix(':'))
        .map(str::trim)
        .filter(|id| !id.is_empty())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ImageChange, Target};
    use slipway_mesh::names::{AppName, CommitSha, EnvName, ImageTag};

    fn update(id: &str, app: &str, sha: char) -> Update {
        Update {
            promotion_id: id.into(),
            app: AppName::parse(app).expect("app"),
            stage: EnvName::parse("dev").expect("stage"),
            source_commit: Some(CommitSha::parse(&sha.to_string().repeat(40)).expect("sha")),
            target: Target::Kustomize { file: "k.yaml".into(), image: app.into() },
            change: ImageChange { tag: Some(ImageTag::parse("v2").expect("tag")), ..ImageChange::default() },
        }
    }

    #[test]
    fn single_update_uses_the_template() {
        let u = update("p-1", "writer", 'a');
        let message = commit_message(DEFAULT_TEMPLATE, &[&u]);
        let sha = "a".repeat(40);
        assert_eq!(
            message,
            format!("chore(writer): promote v2 to dev\n\nSlipway-Promotion-Id: p-1\nSlipway-Source-Commit: {sha}\n")
        );
        assert_eq!(promotion_ids(&message), ["p-1"]);
    }

    #[test]
    fn batch_lists_every_update_and_every_id() {
        let (a, b, c) = (update("p-1", "a", 'a'), update("p-2", "b", 'a'), update("p-3", "c", 'b'));
        let message = commit_message(DEFAULT_TEMPLATE, &[&a, &b, &c]);
        assert!(message.starts_with("chore(slipway): promote 3 updates\n\n- chore(a): promote v2 to dev\n"));
        assert!(message.contains("- chore(c): promote v2 to dev\n\n"));
        assert_eq!(promotion_ids(&message), ["p-1", "p-2", "p-3"]);
        assert_eq!(message.matches(SOURCE_TRAILER).count(), 2, "distinct source commits only");
    }

    #[test]
    fn ids_come_from_the_trailer_block_only() {
        let message = "fix: x\n\nSlipway-Promotion-Id: in-body\n\nSigned-off-by: a\nSlipway-Promotion-Id:  p-9 \n";
        assert_eq!(promotion_ids(message), ["p-9"]);
        assert!(promotion_ids("Slipway-Promotion-Id: subject-only").len() == 1);
        assert!(promotion_ids("chore: nothing\n").is_empty());
    }

    #[test]
    fn template_newlines_cannot_forge_trailers() {
        let u = update("p-1", "writer", 'a');
        assert_eq!(subject("{app}\nSlipway-Promotion-Id: x", &u), "writer Slipway-Promotion-Id: x");
    }
}
