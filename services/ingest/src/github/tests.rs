use super::*;
use proptest::prelude::*;
use serde_json::json;

const SHA_A: &str = "6113728f27ae82c7b1a177c8d03f9e96e0adf246";
const SHA_B: &str = "ec26c3e57ca3a959ca5aad62de7213c562f8c821";
const ZEROS: &str = "0000000000000000000000000000000000000000";

fn norm(event: &str, v: &serde_json::Value) -> Result<Normalized, DecodeError> {
    normalize(event, "d-1", &serde_json::to_vec(v).expect("json"))
}

fn push_body(git_ref: &str) -> serde_json::Value {
    json!({
        "ref": git_ref, "before": SHA_A, "after": SHA_B,
        "created": false, "deleted": false, "forced": true,
        "repository": {"full_name": "acme/mono"},
        "pusher": {"name": "alice", "email": "a@x"},
        "sender": {"login": "alice-gh"},
        "commits": [
            {"id": SHA_A, "message": "feat(writer): export\n\nBREAKING CHANGE: new format",
             "author": {"name": "Alice", "username": "alice"}, "timestamp": "2019-05-15T15:19:25-04:00",
             "added": ["apps/writer/a.rs"], "modified": [], "removed": ["old.txt"]},
            {"id": SHA_B, "message": "fix: typo [Skip CI]", "author": {"name": "Bob"},
             "timestamp": null, "added": null, "modified": ["apps/reader/b.rs"]}
        ],
        "head_commit": {"id": SHA_B, "message": "fix: typo [Skip CI]"}
    })
}

#[test]
fn branch_push() {
    let Ok(Normalized::Push(p)) = norm("push", &push_body("refs/heads/main")) else { panic!("not a push") };
    assert_eq!(p.delivery_id, "d-1");
    assert_eq!(p.repository, "acme/mono");
    assert_eq!(p.r#ref, "refs/heads/main");
    assert_eq!((p.before.as_str(), p.after.as_str()), (SHA_A, SHA_B));
    assert!(p.forced && !p.created && !p.deleted);
    assert_eq!(p.pusher, "alice");
    assert!(p.skip_ci);
    assert_eq!(p.commits.len(), 2);
    let c0 = &p.commits[0];
    assert_eq!((c0.conventional_type.as_str(), c0.conventional_scope.as_str(), c0.breaking), ("feat", "writer", true));
    assert_eq!(c0.author, "alice");
    assert_eq!(c0.added, ["apps/writer/a.rs"]);
    assert_eq!(c0.removed, ["old.txt"]);
    assert_eq!(c0.timestamp.as_ref().map(|t| t.seconds), Some(1_557_947_965));
    let c1 = &p.commits[1];
    assert_eq!((c1.author.as_str(), c1.conventional_type.as_str()), ("Bob", "fix"));
    assert!(c1.added.is_empty() && c1.timestamp.is_none());
    assert_eq!(c1.modified, ["apps/reader/b.rs"]);
}

#[test]
fn deleted_branch_push_allows_zero_after() {
    let mut body = push_body("refs/heads/gone");
    body["after"] = json!(ZEROS);
    body["deleted"] = json!(true);
    body["commits"] = json!([]);
    body["head_commit"] = json!(null);
    let Ok(Normalized::Push(p)) = norm("push", &body) else { panic!("not a push") };
    assert!(p.deleted && !p.skip_ci && p.commits.is_empty());
    assert_eq!(p.after, ZEROS);
}

#[test]
fn tag_push_and_deletion() {
    let Ok(Normalized::Tag(t)) = norm("push", &push_body("refs/tags/v1.2.3")) else { panic!("not a tag") };
    assert_eq!((t.tag.as_str(), t.semver.as_str(), t.commit_sha.as_str()), ("v1.2.3", "1.2.3", SHA_B));
    assert!(!t.release && !t.deleted);
    assert_eq!(t.actor, "alice");
    let mut body = push_body("refs/tags/nightly");
    body["after"] = json!(ZEROS);
    body["deleted"] = json!(true);
    let Ok(Normalized::Tag(t)) = norm("push", &body) else { panic!("not a tag") };
    assert!(t.deleted);
    assert_eq!((t.semver.as_str(), t.commit_sha.as_str()), ("", SHA_A));
}

#[test]
fn push_errors_name_the_field() {
    for (field, value, expect) in [
        ("ref", json!(null), "ref"),
        ("repository", json!({}), "repository.full_name"),
        ("repository", json!({"full_name": "../etc"}), "repository.full_name"),
        ("after", json!("HEAD"), "after"),
        ("before", json!("abc"), "before"),
        ("commits", json!([{"id": "nope"}]), "commits[].id"),
    ] {
        let mut body = push_body("refs/heads/main");
        body[field] = value;
        let err = norm("push", &body).expect_err(field);
        assert!(err.to_string().contains(expect), "{err}");
    }
    assert!(matches!(norm("push", &json!({"ref": 5})), Err(DecodeError::Json { .. })));
    assert!(matches!(normalize("push", "d", b"{not json"), Err(DecodeError::Json { .. })));
    assert!(matches!(normalize("push", "d", b"null"), Err(DecodeError::Json { .. })));
    assert!(matches!(normalize("push", "d", b""), Err(DecodeError::Json { .. })));
}

#[test]
fn refs_git_would_refuse_are_invalid() {
    for good in ["main", "release/1.2", "feat/a>b", "v1.2.3", "café"] {
        assert!(valid_ref_name(good), "{good:?} refused");
    }
    let bad = [
        "", "../etc", "a/../b", "/main", "main/", "a//b", ".hidden", "a.lock", "v1.2.3\n", "a\0b", "a b", "a*", "a:b",
        "a~1", "a^", "a?", "a[", "a\\b", "a@{1}", "@", "end.",
    ];
    let pull_request = |head: &str, base: &str| {
        json!({"action": "opened", "number": 7, "repository": {"full_name": "acme/mono"},
               "pull_request": {"head": {"ref": head, "sha": SHA_B}, "base": {"ref": base, "sha": SHA_A}}})
    };
    for bad in bad.iter().filter(|b| !b.is_empty()) {
        for (body, field) in [(pull_request(bad, "main"), "head.ref"), (pull_request("feature", bad), "base.ref")] {
            let err = norm("pull_request", &body).expect_err(bad);
            assert!(matches!(err, DecodeError::Invalid { .. }) && err.to_string().contains(field), "{bad:?}: {err}");
        }
    }
    for bad in bad {
        assert!(!valid_ref_name(bad), "{bad:?} accepted");
        for git_ref in [format!("refs/heads/{bad}"), format!("refs/tags/{bad}")] {
            let err = norm("push", &push_body(&git_ref)).expect_err(&git_ref);
            assert!(err.to_string().contains("ref"), "{err}");
        }
    }
    let release = json!({"action": "published", "repository": {"full_name": "acme/mono"},
                         "release": {"tag_name": "v1.0.0\nx"}});
    assert!(norm("release", &release).is_err());
}

#[test]
fn other_refs_and_unknown_events_are_ignored() {
    assert!(matches!(norm("push", &push_body("refs/notes/x")), Ok(Normalized::Ignored { .. })));
    let Ok(Normalized::Ignored { event, reason }) = norm("star", &json!({"action": "created"})) else {
        panic!("not ignored")
    };
    assert_eq!(event, "star");
    assert!(reason.contains("not used"));
    assert!(normalize("star", "d", b"garbage").is_err());
}

#[test]
fn pull_request_actions() {
    let body = |action: &str, merged: bool| {
        json!({"action": action, "number": 7, "repository": {"full_name": "acme/mono"},
               "pull_request": {"head": {"ref": "feature", "sha": SHA_B}, "base": {"ref": "main", "sha": SHA_A},
                                "merged": merged, "merge_commit_sha": SHA_A, "user": {"login": "bob"},
                                "title": "Add x"}})
    };
    let Ok(Normalized::PullRequest(pr)) = norm("pull_request", &body("closed", true)) else { panic!() };
    assert_eq!(pr.action, v1::PullRequestAction::Closed as i32);
    assert!(pr.merged);
    assert_eq!((pr.number, pr.head_sha.as_str(), pr.merge_commit_sha.as_str()), (7, SHA_B, SHA_A));
    assert_eq!((pr.head_ref.as_str(), pr.base_ref.as_str(), pr.author.as_str()), ("feature", "main", "bob"));
    let Ok(Normalized::PullRequest(pr)) = norm("pull_request", &body("closed", false)) else { panic!() };
    assert!(!pr.merged && pr.merge_commit_sha.is_empty());
    let Ok(Normalized::PullRequest(pr)) = norm("pull_request", &body("synchronize", false)) else { panic!() };
    assert_eq!(pr.action, v1::PullRequestAction::Synchronize as i32);
    assert!(matches!(norm("pull_request", &body("labeled", false)), Ok(Normalized::Ignored { .. })));
}

#[test]
fn release_published_only() {
    let body = |action: &str, tag: &str| {
        json!({"action": action, "repository": {"full_name": "acme/mono"}, "sender": {"login": "rel"},
               "release": {"tag_name": tag, "target_commitish": "main"}})
    };
    let Ok(Normalized::Tag(t)) = norm("release", &body("published", "v2.0.0-rc.1")) else { panic!() };
    assert!(t.release);
    assert_eq!((t.tag.as_str(), t.semver.as_str(), t.commit_sha.as_str()), ("v2.0.0-rc.1", "2.0.0-rc.1", ""));
    assert_eq!(t.actor, "rel");
    assert!(matches!(norm("release", &body("created", "v1")), Ok(Normalized::Ignored { .. })));
    assert!(norm("release", &body("published", "")).is_err());
}

#[test]
fn test_gates() {
    let wr = json!({"action": "completed", "repository": {"full_name": "octo-org/octo-repo"},
        "workflow": {"name": "test"},
        "workflow_run": {"name": "", "head_sha": SHA_A, "head_branch": "main", "conclusion": "failure",
                         "html_url": "https://x/runs/1"}});
    let Ok(Normalized::TestGate(g)) = norm("workflow_run", &wr) else { panic!() };
    assert_eq!(g.kind, v1::TestGateKind::WorkflowRun as i32);
    assert_eq!((g.name.as_str(), g.conclusion.as_str(), g.commit_sha.as_str()), ("test", "failure", SHA_A));
    let cs = json!({"action": "completed", "repository": {"full_name": "a/b"},
        "check_suite": {"head_sha": SHA_B, "conclusion": "success", "app": {"slug": "ci", "name": "CI"}}});
    let Ok(Normalized::TestGate(g)) = norm("check_suite", &cs) else { panic!() };
    assert_eq!((g.kind, g.name.as_str()), (v1::TestGateKind::CheckSuite as i32, "ci"));
    let mut requested = cs.clone();
    requested["action"] = json!("requested");
    assert!(matches!(norm("check_suite", &requested), Ok(Normalized::Ignored { .. })));
}

#[test]
fn comments() {
    let body = |action: &str, pr: serde_json::Value| {
        json!({"action": action, "repository": {"full_name": "acme/mono"},
               "issue": {"number": 3, "pull_request": pr},
               "comment": {"body": "/approve", "user": {"login": "carol"}, "html_url": "https://x/c/1"}})
    };
    let Ok(Normalized::Comment(c)) = norm("issue_comment", &body("created", json!({"url": "u"}))) else { panic!() };
    assert_eq!((c.actor.as_str(), c.body.as_str(), c.number), ("carol", "/approve", 3));
    assert!(c.is_pull_request && !c.edited);
    let Ok(Normalized::Comment(c)) = norm("issue_comment", &body("edited", json!(null))) else { panic!() };
    assert!(!c.is_pull_request && c.edited);
    assert!(matches!(norm("issue_comment", &body("deleted", json!(null))), Ok(Normalized::Ignored { .. })));
}

#[test]
fn org_ping_has_no_repository() {
    let Ok(Normalized::Ping(p)) = norm("ping", &json!({"zen": "z", "hook": {"id": 9}})) else { panic!() };
    assert_eq!((p.repository.as_str(), p.hook_id, p.zen.as_str()), ("", 9, "z"));
}

#[test]
fn semver_tags() {
    assert_eq!(semver_of("v1.2.3"), "1.2.3");
    assert_eq!(semver_of("1.2.3+build.5"), "1.2.3+build.5");
    assert_eq!(semver_of("v1.2"), "");
    assert_eq!(semver_of("release-1"), "");
    assert_eq!(semver_of("vv1.2.3"), "");
}

proptest! {
    #[test]
    fn never_panics_on_arbitrary_bytes(event in "push|pull_request|release|workflow_run|check_suite|ping|issue_comment|x",
                                       body in proptest::collection::vec(any::<u8>(), 0..300)) {
        let _ = normalize(&event, "d", &body);
    }

    #[test]
    fn never_panics_on_mutated_json(event in "push|pull_request|issue_comment|release",
                                    pos in any::<prop::sample::Index>(), byte in any::<u8>()) {
        let mut body = serde_json::to_vec(&push_body("refs/heads/main")).expect("json");
        let i = pos.index(body.len());
        body[i] = byte;
        let _ = normalize(&event, "d", &body);
    }
}
