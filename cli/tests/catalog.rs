//! `slipctl catalog validate` and `show`, offline, on the catalog crate's documented example
//! and on a broken copy of it: exit codes and `file:line: key: reason` lines.

use std::path::{Path, PathBuf};

fn slipctl(args: &[&str]) -> (i32, String, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_slipctl")).args(args).output().expect("run slipctl");
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    (out.status.code().unwrap_or(-1), text(&out.stdout), text(&out.stderr))
}

fn example() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../crates/catalog/example")
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for entry in std::fs::read_dir(from).expect("read dir").flatten() {
        let target = to.join(entry.file_name());
        if entry.file_type().expect("type").is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).expect("copy");
        }
    }
}

#[test]
fn a_valid_catalog_passes_and_shows_each_apps_pipeline() {
    let root = example().join("slipway.yaml");
    let root = root.to_str().expect("utf-8");
    let mono = tempfile::tempdir().expect("tmp");
    for dir in ["apps/search", "apps/writer"] {
        std::fs::create_dir_all(mono.path().join(dir)).expect("mkdir");
        std::fs::write(mono.path().join(dir).join("Dockerfile"), "FROM scratch\n").expect("write");
    }
    let source = format!("acme/mono={}", mono.path().display());
    let (code, out, err) = slipctl(&["catalog", "validate", root, "--source", &source]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("ok: 4 apps, 2 pipelines, 3 teams, 2 files"), "{out}");
    let (code, out, _) = slipctl(&["catalog", "validate", root]);
    assert_eq!(code, 0);
    assert!(out.contains("3 apps") && out.contains("not expanded: slipway.yaml: generators[0] (acme/mono)"), "{out}");

    let (code, out, err) = slipctl(&["catalog", "show", "ledger", "--file", root]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("staging    1 approval(s) by team:payments"), "{out}");
    assert!(out.contains("prod       2 approval(s) by team:sre, team:payments"), "{out}");
    let (code, out, _) = slipctl(&["--json", "catalog", "show", "--file", root, "--source", &source]);
    assert_eq!(code, 0);
    let apps: serde_json::Value = serde_json::from_str(&out).expect("json");
    assert_eq!(apps.as_array().map(Vec::len), Some(4));
    let (code, _, err) = slipctl(&["catalog", "show", "nope", "--file", root]);
    assert_eq!((code, err.trim()), (1, "slipctl: no app nope in the catalog"));
}

#[test]
fn a_broken_catalog_fails_with_file_line_key_and_reason() {
    let dir = tempfile::tempdir().expect("tmp");
    copy_dir(&example(), dir.path());
    let team_file = dir.path().join("teams/payments/slipway.yaml");
    let text = std::fs::read_to_string(&team_file).expect("read");
    std::fs::write(&team_file, text.replace("pipeline: standard", "pipeline: fast")).expect("write");
    let root = dir.path().join("slipway.yaml");
    let (code, out, err) = slipctl(&["catalog", "validate", root.to_str().expect("utf-8")]);
    assert_eq!(code, 1, "{out}");
    let expected = format!(
        "{}:17: apps[0].pipeline: pipeline \"fast\" is not defined (pipelines: [\"standard\", \"trusted\"])",
        dir.path().join("teams/payments/slipway.yaml").display()
    );
    assert_eq!(out.trim(), expected);
    assert_eq!(err.trim(), "slipctl: 1 problem(s) in the catalog");
    let (code, _, err) = slipctl(&["catalog", "validate", "/nonexistent/slipway.yaml"]);
    assert_eq!(code, 1, "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn show_and_history_read_the_revisions_in_nats() {
    let nats = slipway_testkit::NatsServer::start().await.expect("nats");
    let url = nats.url();
    let (code, _, err) = slipctl(&["catalog", "history", "--nats", &url]);
    assert_eq!((code, err.trim()), (1, "slipctl: no catalog has been published yet"));
    let js = async_nats::jetstream::new(async_nats::connect(&url).await.expect("connect"));
    let store = slipway_runtime::catalog::CatalogStore::open(&js, 1).await.expect("store");
    let mut catalog =
        slipway_catalog::build(&slipway_catalog::DirTree(example()), "slipway.yaml", &|_| None).expect("valid");
    store.publish("git://h/deploy.git", "1111111111111111", &catalog).await.expect("publish");
    catalog.apps.remove("reader");
    store.publish("git://h/deploy.git", "2222222222222222", &catalog).await.expect("publish");

    let (code, out, err) = slipctl(&["catalog", "history", "--nats", &url]);
    assert_eq!(code, 0, "{err}");
    let rows: Vec<&str> = out.lines().skip(1).collect();
    assert_eq!(rows.len(), 2, "{out}");
    assert!(
        rows[0].starts_with("1 ") && rows[0].contains("111111111111") && rows[0].contains(" 3  git://h/deploy.git"),
        "{out}"
    );
    assert!(rows[1].starts_with("2 ") && rows[1].contains(" 2  git://h/deploy.git"), "{out}");
    let (code, out, _) = slipctl(&["catalog", "show", "writer", "--nats", &url]);
    assert_eq!(code, 0);
    assert!(out.contains("staging    1 approval(s) by team:qa"), "{out}");
    let (code, _, err) = slipctl(&["catalog", "show", "reader", "--nats", &url]);
    assert_eq!((code, err.trim()), (1, "slipctl: no app reader in the catalog"), "removed in the revision in force");
}
