//! Real GitHub webhook payloads (`shared/fixtures/github-webhooks/<event>/*.json`, beside the
//! repository) through the pure ingest logic: signature, normalization, chatops parsing.
//! Each fixture must normalize (or be a counted ignore), yield the values GitHub sent, and
//! survive flipped bytes without a panic.

use slipway_ingest::chatops;
use slipway_ingest::github::{Normalized, normalize};
use slipway_ingest::signature::{self, SignatureError};
use slipway_mesh::v1;
use std::path::{Path, PathBuf};

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../../shared/fixtures/github-webhooks");

struct Fixture {
    event: String,
    name: String,
    body: Vec<u8>,
}

fn fixtures() -> Vec<Fixture> {
    let root = Path::new(FIXTURES);
    let mut out = Vec::new();
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(root)
        .unwrap_or_else(|e| panic!("{}: {e} (shared/ must sit beside the repository)", root.display()))
        .map(|d| d.expect("dir entry").path())
        .filter(|p| p.is_dir())
        .collect();
    dirs.sort();
    for dir in dirs {
        let event = dir.file_name().expect("name").to_string_lossy().into_owned();
        let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
            .expect("read event dir")
            .map(|d| d.expect("dir entry").path())
            .filter(|p| p.extension().is_some_and(|e| e == "json"))
            .collect();
        files.sort();
        for file in files {
            let name = file.file_name().expect("name").to_string_lossy().into_owned();
            out.push(Fixture { event: event.clone(), name, body: std::fs::read(&file).expect("read fixture") });
        }
    }
    assert!(out.len() >= 80, "only {} fixtures found under {}", out.len(), root.display());
    out
}

fn normalized(f: &Fixture) -> Normalized {
    normalize(&f.event, "72d3162e-cc78-11e3-81ab-4c9367dc0958", &f.body)
        .unwrap_or_else(|e| panic!("{}/{}: {e}", f.event, f.name))
}

fn action(f: &Fixture) -> String {
    let v: serde_json::Value = serde_json::from_slice(&f.body).expect("fixture is JSON");
    v["action"].as_str().unwrap_or_default().to_owned()
}

#[test]
fn every_fixture_normalizes_or_is_ignored() {
    let mut seen = std::collections::BTreeMap::<&str, usize>::new();
    let all = fixtures();
    for f in &all {
        let got = normalized(f);
        let action = action(f);
        let what = format!("{}/{}", f.event, f.name);
        let kind = match &got {
            Normalized::Push(_) => "push",
            Normalized::Tag(_) => "tag",
            Normalized::PullRequest(_) => "pull_request",
            Normalized::TestGate(_) => "test_gate",
            Normalized::Ping(_) => "ping",
            Normalized::Comment(_) => "comment",
            Normalized::Ignored { reason, event } => {
                assert!(!reason.is_empty(), "{what}: ignored without a reason");
                assert_eq!(event, &f.event);
                "ignored"
            }
        };
        *seen.entry(kind).or_default() += 1;
        let expected = match (f.event.as_str(), action.as_str()) {
            ("push", _) if f.body.windows(15).any(|w| w == b"refs/tags/simpl") => "tag",
            ("push", _) => "push",
            ("pull_request", "opened" | "synchronize" | "closed" | "reopened") => "pull_request",
            ("release", "published") => "tag",
            ("workflow_run" | "check_suite", "completed") => "test_gate",
            ("ping", _) => "ping",
            ("issue_comment", "created" | "edited") => "comment",
            _ => "ignored",
        };
        assert_eq!(kind, expected, "{what}");
        check_values(f, &got);
    }
    for kind in ["push", "tag", "pull_request", "test_gate", "ping", "comment", "ignored"] {
        assert!(seen.contains_key(kind), "no fixture produced {kind}: {seen:?}");
    }
}

const SHA_INITIAL: &str = "6113728f27ae82c7b1a177c8d03f9e96e0adf246";
const SHA_PR_HEAD: &str = "ec26c3e57ca3a959ca5aad62de7213c562f8c821";

fn check_values(f: &Fixture, got: &Normalized) {
    let what = format!("{}/{}", f.event, f.name);
    match got {
        Normalized::Push(p) => {
            assert_eq!(p.repository, "Codertocat/Hello-World", "{what}");
            assert_eq!((p.r#ref.as_str(), p.after.as_str()), ("refs/heads/master", SHA_INITIAL), "{what}");
            assert!(p.created && !p.deleted && !p.forced && !p.skip_ci, "{what}");
            assert_eq!(p.pusher, "Codertocat");
            assert_eq!(p.commits.len(), 1, "{what}");
            let c = &p.commits[0];
            assert_eq!((c.sha.as_str(), c.message.as_str()), (SHA_INITIAL, "Initial commit"), "{what}");
            assert_eq!(c.added, ["README.md"], "{what}");
            assert!(c.modified.is_empty() && c.removed.is_empty(), "{what}");
            assert_eq!(c.author, "Codertocat", "{what}");
            assert!(c.timestamp.is_some(), "{what}");
        }
        Normalized::Tag(t) if f.event == "push" => {
            assert_eq!((t.tag.as_str(), t.semver.as_str()), ("simple-tag", ""), "{what}");
            assert!(t.deleted && !t.release, "{what}");
            assert_eq!(t.commit_sha, SHA_INITIAL, "{what}: a deleted tag keeps the commit it pointed at");
        }
        Normalized::Tag(t) => {
            assert_eq!((t.tag.as_str(), t.semver.as_str()), ("0.0.1", "0.0.1"), "{what}");
            assert!(t.release && !t.deleted, "{what}");
            assert_eq!(t.commit_sha, "", "{what}: target_commitish is a branch");
            assert_eq!(t.actor, "Codertocat", "{what}");
        }
        Normalized::PullRequest(pr) => {
            assert_eq!((pr.number, pr.head_sha.as_str()), (2, SHA_PR_HEAD), "{what}");
            assert_eq!((pr.head_ref.as_str(), pr.base_ref.as_str()), ("changes", "master"), "{what}");
            assert_eq!(pr.author, "Codertocat", "{what}");
            assert_eq!(pr.title, "Update the README with new information.", "{what}");
            assert!(!pr.merged && pr.merge_commit_sha.is_empty(), "{what}: closed without merge");
            let want = match action(f).as_str() {
                "opened" => v1::PullRequestAction::Opened,
                "synchronize" => v1::PullRequestAction::Synchronize,
                "closed" => v1::PullRequestAction::Closed,
                _ => v1::PullRequestAction::Reopened,
            };
            assert_eq!(pr.action, want as i32, "{what}");
        }
        Normalized::TestGate(g) if f.event == "workflow_run" => {
            assert_eq!(g.kind, v1::TestGateKind::WorkflowRun as i32);
            assert_eq!((g.repository.as_str(), g.name.as_str()), ("octo-org/octo-repo", "test"), "{what}");
            assert_eq!(
                (g.conclusion.as_str(), g.commit_sha.as_str()),
                ("success", "3484a3fb816e0859fd6e1cea078d76385ff50625")
            );
            assert_eq!(g.head_branch, "master");
            assert_eq!(g.url, "https://github.com/octo-org/octo-repo/actions/runs/289782451");
        }
        Normalized::TestGate(g) => {
            assert_eq!(g.kind, v1::TestGateKind::CheckSuite as i32);
            assert_eq!((g.conclusion.as_str(), g.commit_sha.as_str()), ("success", SHA_PR_HEAD), "{what}");
            assert!(!g.name.is_empty(), "{what}");
        }
        Normalized::Ping(p) => {
            assert_eq!(p.zen, "Anything added dilutes everything else.", "{what}");
            if f.name.contains("organization") {
                assert_eq!((p.repository.as_str(), p.hook_id), ("", 109_948_940), "{what}");
            } else {
                assert_eq!((p.repository.as_str(), p.hook_id), ("Octocoders/Hello-World", 109_948_940), "{what}");
            }
        }
        Normalized::Comment(c) => {
            assert_eq!((c.actor.as_str(), c.number, c.is_pull_request), ("Codertocat", 1, false), "{what}");
            assert_eq!(c.repository.as_str(), "Codertocat/Hello-World");
            let body = if c.edited { "today." } else { "right away." };
            assert_eq!(c.body, format!("You are totally right! I'll get this fixed {body}"), "{what}");
            assert_eq!(c.comment_url, "https://github.com/Codertocat/Hello-World/issues/1#issuecomment-492700400");
            assert!(chatops::comment_commands(c).is_empty(), "{what}: prose is not a command");
        }
        Normalized::Ignored { .. } => {}
    }
}

#[test]
fn flipped_bytes_decode_or_fail_cleanly_and_break_the_signature() {
    for f in fixtures() {
        let sig = signature::sign(b"fixture-secret", &f.body);
        assert_eq!(signature::verify(&["fixture-secret"], &f.body, Some(&sig), false), Ok(()));
        let len = f.body.len();
        let positions = (0..16).map(|k| k * len / 16).chain([len - 1, len / 2 + 1]);
        for pos in positions {
            for mask in [0x01u8, 0x20, 0x80, 0xff] {
                let mut body = f.body.clone();
                body[pos] ^= mask;
                // Either outcome is fine; a panic fails the test.
                let _ = normalize(&f.event, "d", &body);
                assert_eq!(
                    signature::verify(&["fixture-secret"], &body, Some(&sig), false),
                    Err(SignatureError::Mismatch),
                    "{}/{} byte {pos} ^ {mask:#x}",
                    f.event,
                    f.name
                );
            }
        }
        // Truncations too: a body cut anywhere must not panic.
        for cut in [1, len / 3, len / 2, len - 1] {
            let _ = normalize(&f.event, "d", &f.body[..cut]);
        }
    }
}

#[test]
fn fixture_path_resolves_to_shared() {
    let path = Path::new(FIXTURES).canonicalize().expect("fixtures exist");
    assert!(path.ends_with("shared/fixtures/github-webhooks"), "{}", path.display());
}
