//! Commit messages: Conventional Commits (`type(scope)!: subject` + `BREAKING CHANGE:` footer)
//! and the skip-CI markers GitHub itself honours.

/// The Conventional Commits parts of a message; `kind` is empty when the first line does not
/// follow the convention.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Conventional {
    /// `feat`, `fix`, ... (lowercased).
    pub kind: String,
    /// The text in parentheses, or empty.
    pub scope: String,
    /// `!` before the colon, or a `BREAKING CHANGE:` / `BREAKING-CHANGE:` footer.
    pub breaking: bool,
}

/// Longest type word taken as a conventional type; longer words are prose.
const MAX_TYPE_LEN: usize = 32;
/// Longest scope kept.
const MAX_SCOPE_LEN: usize = 64;

/// Parses the Conventional Commits header of `message` and its breaking-change footer.
pub fn conventional(message: &str) -> Conventional {
    let mut lines = message.lines();
    let first = lines.next().unwrap_or_default();
    let footer_breaking = lines.any(|l| l.starts_with("BREAKING CHANGE:") || l.starts_with("BREAKING-CHANGE:"));
    let mut parsed = parse_header(first).unwrap_or_default();
    parsed.breaking |= footer_breaking;
    parsed
}

fn parse_header(line: &str) -> Option<Conventional> {
    let (head, subject) = line.split_once(':')?;
    if !subject.starts_with(' ') || subject.trim().is_empty() {
        return None;
    }
    let (head, bang) = match head.strip_suffix('!') {
        Some(h) => (h, true),
        None => (head, false),
    };
    let (kind, scope) = match head.split_once('(') {
        Some((kind, rest)) => {
            let scope = rest.strip_suffix(')')?;
            let scope_ok = !scope.is_empty()
                && scope.len() <= MAX_SCOPE_LEN
                && !scope.contains(['(', ')'])
                && !scope.chars().any(char::is_control);
            if !scope_ok {
                return None;
            }
            (kind, scope)
        }
        None => (head, ""),
    };
    let kind_ok = kind.len() <= MAX_TYPE_LEN
        && kind.starts_with(|c: char| c.is_ascii_alphabetic())
        && kind.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
    kind_ok.then(|| Conventional { kind: kind.to_ascii_lowercase(), scope: scope.to_owned(), breaking: bang })
}

/// Markers that make GitHub Actions skip a push; Slipway skips its builds the same way.
const SKIP_MARKERS: [&str; 5] = ["[skip ci]", "[ci skip]", "[no ci]", "[skip actions]", "[actions skip]"];

/// True when the (head commit's) message asks not to run CI. Case-insensitive.
pub fn skip_ci(message: &str) -> bool {
    let lower = message.to_lowercase();
    SKIP_MARKERS.iter().any(|m| lower.contains(m))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(kind: &str, scope: &str, breaking: bool) -> Conventional {
        Conventional { kind: kind.into(), scope: scope.into(), breaking }
    }

    #[test]
    fn headers() {
        assert_eq!(conventional("feat(writer): add export"), c("feat", "writer", false));
        assert_eq!(conventional("fix: off by one\n\nbody"), c("fix", "", false));
        assert_eq!(conventional("Feat(api)!: drop v1"), c("feat", "api", true));
        assert_eq!(conventional("refactor!: rename"), c("refactor", "", true));
        assert_eq!(conventional("chore(deps-dev): bump serde"), c("chore", "deps-dev", false));
    }

    #[test]
    fn breaking_footer() {
        assert_eq!(conventional("feat: x\n\nBREAKING CHANGE: config moved"), c("feat", "", true));
        assert_eq!(conventional("feat: x\n\nBREAKING-CHANGE: y"), c("feat", "", true));
        // The footer marks breaking even on a message that is otherwise not conventional.
        assert_eq!(conventional("Update\n\nBREAKING CHANGE: y"), c("", "", true));
        // Only as a footer line, not on the first line or mid-line.
        assert_eq!(conventional("BREAKING CHANGE: y"), c("", "", false));
    }

    #[test]
    fn not_conventional() {
        for msg in [
            "",
            "Initial commit",
            "Merge pull request #2 from x/y",
            "feat:no space",
            "feat: ",
            "feat(): empty scope",
            "feat(a(b)): nested",
            "feat(x: unclosed",
            "fix bug: in parser",
            "1fix: digit first",
            "feat (x): space",
            "ñ: unicode type",
        ] {
            assert_eq!(conventional(msg).kind, "", "{msg:?}");
        }
    }

    #[test]
    fn skip_markers() {
        assert!(skip_ci("docs: typo [skip ci]"));
        assert!(skip_ci("[CI SKIP] wip"));
        assert!(skip_ci("x\n\n[No Ci]"));
        assert!(skip_ci("[skip actions]"));
        assert!(skip_ci("[actions skip]"));
        assert!(!skip_ci("skip ci"));
        assert!(!skip_ci("[skipci]"));
        assert!(!skip_ci("feat: ci"));
    }
}
