//! `slipctl logs` against a real nats-server, reading what the builder's log writer
//! (`slipway_builder::logs::lines`) writes: a finished build's log, a running build followed to
//! its end, and the errors for a build without a log and an unreachable server.

use slipway_builder::logs::BuildLog;
use slipway_builder::logs::lines::{self, End, Writer};
use slipway_testkit::NatsServer;
use std::process::Stdio;
use std::time::Duration;
use tokio::io::AsyncReadExt as _;

fn slipctl(args: &[&str]) -> (i32, String, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_slipctl")).args(args).output().expect("run slipctl");
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    (out.status.code().unwrap_or(-1), text(&out.stdout), text(&out.stderr))
}

fn succeeded() -> Option<End> {
    Some(End { outcome: "succeeded".into(), reason: String::new(), dropped_lines: 0 })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prints_a_finished_build_and_follows_a_running_one() {
    let nats = NatsServer::start().await.expect("nats");
    let js = async_nats::jetstream::new(async_nats::connect(nats.url()).await.expect("connect"));
    let kv = lines::open(&js, lines::MAX_AGE).await.expect("bucket");
    let url = nats.url();

    // A finished build, with a build id that is not a KV key token as it is.
    let (writer, tx) = Writer::start(kv.clone(), "gh-1.build:writer", 1);
    for i in 0..100 {
        tx.send(format!("step {i}")).expect("send");
    }
    drop(tx);
    writer.finish(&BuildLog::new(10, 1 << 20), succeeded()).await;
    let (code, out, err) = slipctl(&["logs", "gh-1.build:writer", "--nats", &url]);
    assert_eq!(code, 0, "{err}");
    let expected: String = (0..100).map(|i| format!("step {i}\n")).collect();
    assert_eq!(out, expected);
    assert!(err.contains("build succeeded"), "{err}");

    // A running build: --follow prints what is there, waits, and stops at the end.
    let (writer, tx) = Writer::start(kv.clone(), "gh-2", 1);
    tx.send("first".into()).expect("send");
    tokio::time::sleep(lines::FLUSH_EVERY * 2).await;
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_slipctl"))
        .args(["logs", "gh-2", "--follow", "--nats", &url])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn slipctl");
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(child.try_wait().expect("try_wait").is_none(), "slipctl --follow exited before the build ended");
    // Without --follow it stops at what is there.
    let (code, out, _) = slipctl(&["logs", "gh-2", "--nats", &url]);
    assert_eq!((code, out.as_str()), (0, "first\n"));
    tx.send("second".into()).expect("send");
    drop(tx);
    writer.finish(&BuildLog::new(10, 1 << 20), succeeded()).await;
    let status =
        tokio::time::timeout(Duration::from_secs(10), child.wait()).await.expect("slipctl stops").expect("wait");
    let mut out = String::new();
    child.stdout.take().expect("stdout").read_to_string(&mut out).await.expect("read");
    assert!(status.success(), "{status:?}");
    assert_eq!(out, "first\nsecond\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_log_and_no_server_are_clear_errors() {
    let nats = NatsServer::start().await.expect("nats");
    // No bucket at all yet, then a bucket without this build.
    let (code, _, err) = slipctl(&["logs", "nope", "--nats", &nats.url()]);
    assert_eq!(code, 1, "{err}");
    assert_eq!(err.trim(), "slipctl: no log for build nope");
    let js = async_nats::jetstream::new(async_nats::connect(nats.url()).await.expect("connect"));
    lines::open(&js, lines::MAX_AGE).await.expect("bucket");
    let (code, _, err) = slipctl(&["logs", "nope", "--follow", "--nats", &nats.url()]);
    assert_eq!((code, err.trim()), (1, "slipctl: no log for build nope"));

    let free = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let url = format!("nats://{}", free.local_addr().expect("addr"));
    drop(free);
    let (code, _, err) = slipctl(&["logs", "b-1", "--nats", &url]);
    assert_eq!(code, 3, "{err}");
    assert!(err.starts_with(&format!("slipctl: cannot reach NATS at {url}")) && err.lines().count() == 1, "{err}");
}
