//! Attacks on ingest, against a booted ingest with real nats-server and PostgreSQL: signature
//! bypass attempts, blank secrets, replayed deliveries, oversized and slow bodies, and names
//! that try path traversal or subject injection. Each attack must be refused (or its ref
//! ignored) and leave nothing in the `SLIPWAY` stream but what a well-formed delivery makes;
//! each test also sends one well-formed delivery, so a harness that refuses everything fails.

mod common;

use common::{BOT_TOKEN, Ingest, SECRET, fixtures_dir, sign, stream_messages};

use serde_json::{Value, json};
use slipway_ingest::signature;
use slipway_mesh::names::ImageTag;
use slipway_runtime::config::{Secret, Validate};
use slipway_testkit::NatsServer;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The shared ingest with its `writer` app only, so that each build these tests count comes
/// from one app.
async fn start(nats: &NatsServer, adjust: impl FnOnce(&mut slipway_ingest::Config)) -> Ingest {
    Ingest::start(nats, |c| {
        c.apps.retain(|app| app.name.as_str() == "writer");
        adjust(c);
    })
    .await
}

fn fixture(path: &str) -> Vec<u8> {
    std::fs::read(fixtures_dir().join(path)).expect("fixture")
}

fn ping() -> Vec<u8> {
    fixture("ping/payload.json")
}

fn delivery_id(n: usize) -> String {
    format!("5ec0e1d2-cc78-11e3-81ab-{n:012}")
}

/// Subjects made only of Slipway's token grammar (`slipway.<[a-z0-9-]+>...`).
fn assert_safe_subjects(messages: &[(String, Value)]) {
    for (subject, _) in messages {
        let mut tokens = subject.split('.');
        assert_eq!(tokens.next(), Some("slipway"), "{subject:?}");
        assert!(tokens.all(slipway_mesh::names::is_token), "a subject made from raw text: {subject:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signature_bypass_attempts_are_refused_and_store_nothing() {
    let nats = NatsServer::start().await.expect("nats");
    let ingest = start(&nats, |_| {}).await;
    let body = ping();
    let valid = sign(&body);
    let digits = valid.trim_start_matches("sha256=").to_owned();
    let wrong = signature::sign(b"another secret", &body);
    let attempts: Vec<(&str, Vec<(&str, String)>)> = vec![
        ("no signature header", vec![]),
        ("sha1 only", vec![("x-hub-signature", "sha1=2fd4e1c67a2d28fced849ee1bb76e7391b93eb12".into())]),
        ("sha256 digest in the sha1 header", vec![("x-hub-signature", valid.clone())]),
        ("empty hex", vec![("x-hub-signature-256", "sha256=".into())]),
        ("empty header", vec![("x-hub-signature-256", String::new())]),
        ("63 hex digits", vec![("x-hub-signature-256", format!("sha256={}", &digits[..63]))]),
        ("65 hex digits", vec![("x-hub-signature-256", format!("{valid}0"))]),
        ("128 hex digits", vec![("x-hub-signature-256", format!("{valid}{digits}"))]),
        ("non-hex", vec![("x-hub-signature-256", format!("sha256={}", "zz".repeat(32)))]),
        ("no prefix", vec![("x-hub-signature-256", digits.clone())]),
        ("sha1 prefix", vec![("x-hub-signature-256", format!("sha1={digits}"))]),
        ("uppercase prefix", vec![("x-hub-signature-256", format!("SHA256={digits}"))]),
        ("space after =", vec![("x-hub-signature-256", format!("sha256= {digits}"))]),
        ("space inside", vec![("x-hub-signature-256", format!("sha256={} {}", &digits[..32], &digits[32..]))]),
        ("empty secret", vec![("x-hub-signature-256", signature::sign(b"", &body))]),
        ("another body's signature", vec![("x-hub-signature-256", sign(b"{}"))]),
        ("wrong secret", vec![("x-hub-signature-256", wrong.clone())]),
        ("wrong secret, uppercased", vec![("x-hub-signature-256", wrong.to_ascii_uppercase().replace("SHA", "sha"))]),
        ("all zeros", vec![("x-hub-signature-256", format!("sha256={}", "0".repeat(64)))]),
    ];
    for (n, (what, headers)) in attempts.iter().enumerate() {
        let headers: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let (status, answer) = ingest.post("ping", &delivery_id(n), &body, &headers).await;
        assert_eq!(status, 401, "{what}: {answer}");
        let message = answer["error"].as_str().unwrap_or_default();
        assert!(!message.is_empty() && !message.contains(&digits), "{what}: {answer}");
    }
    assert!(stream_messages(&nats).await.is_empty(), "a refused delivery reached the stream");

    // The same body, signed right, is taken: the refusals above were the signatures'.
    let (status, answer) = ingest.deliver("ping", &delivery_id(100), &body).await;
    assert_eq!(status, 202, "{answer}");
    let messages = stream_messages(&nats).await;
    assert_eq!(messages.len(), 1);
    assert_eq!(messages[0].1["deliveryId"], delivery_id(100));
    ingest.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_empty_secret_is_refused_by_validation_and_verifies_nothing_when_served() {
    let nats = NatsServer::start().await.expect("nats");
    let db = slipway_testkit::shared_database().await.expect("database");
    let spool = tempfile::tempdir().expect("spool");
    let config = common::config(&nats, db, spool.path());
    config.validate().expect("the base config is valid");
    for secrets in [vec![], vec![""], vec![" \t"], vec![SECRET, ""]] {
        let mut bad = config.clone();
        bad.github.webhook_secrets = secrets.iter().map(|s| Secret::new(*s)).collect();
        let err = bad.validate().expect_err("an empty or missing secret is refused");
        assert!(err.to_string().contains("github.webhook_secrets"), "{secrets:?}: {err}");
    }
    let empty_file = spool.path().join("secret");
    std::fs::write(&empty_file, "\n").expect("write");
    let mut bad = config.clone();
    bad.github.webhook_secrets.clear();
    bad.github.webhook_secret_file = Some(empty_file);
    let err = bad.validate().expect_err("an empty secret file is refused");
    assert!(err.to_string().contains("github.webhook_secret_file"), "{err}");

    // Served anyway (serve() does not validate), an empty secret signs nothing.
    let ingest = start(&nats, |c| c.github.webhook_secrets = vec![Secret::new("")]).await;
    let body = ping();
    let empty_signed = signature::sign(b"", &body);
    let (status, _) = ingest.post("ping", &delivery_id(1), &body, &[("x-hub-signature-256", &empty_signed)]).await;
    assert_eq!(status, 401, "a body signed with the empty key");
    assert_eq!(ingest.deliver("ping", &delivery_id(2), &body).await.0, 401);
    assert!(stream_messages(&nats).await.is_empty());
    ingest.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replayed_delivery_yields_exactly_one_event() {
    let nats = NatsServer::start().await.expect("nats");
    let ingest = std::sync::Arc::new(start(&nats, |_| {}).await);
    let body = ping();
    // Replays race each other past the delivery table; the stream's dedupe must still hold.
    let replays: Vec<_> = (0..6)
        .map(|_| {
            let (ingest, body) = (ingest.clone(), body.clone());
            tokio::spawn(async move { ingest.deliver("ping", &delivery_id(1), &body).await })
        })
        .collect();
    let mut accepted = 0;
    for replay in replays {
        let (status, answer) = replay.await.expect("join");
        match status {
            202 => accepted += 1,
            200 => assert_eq!(answer["status"], "duplicate", "{answer}"),
            _ => panic!("{status}: {answer}"),
        }
    }
    assert_eq!(accepted, 1, "one replay is the delivery, the rest duplicates");
    for _ in 0..3 {
        let (status, answer) = ingest.deliver("ping", &delivery_id(1), &body).await;
        assert_eq!((status, answer["status"].as_str()), (200, Some("duplicate")), "{answer}");
    }
    let messages = stream_messages(&nats).await;
    assert_eq!(messages.len(), 1, "{messages:?}");
    assert_eq!(messages[0].1["deliveryId"], delivery_id(1));
    // A new delivery id is a new delivery.
    assert_eq!(ingest.deliver("ping", &delivery_id(2), &body).await.0, 202);
    assert_eq!(stream_messages(&nats).await.len(), 2);
    std::sync::Arc::into_inner(ingest).expect("sole owner").stop().await;
}

/// Writes `head` then `body` on a raw connection while reading the answer; its status line.
async fn raw_request(addr: std::net::SocketAddr, head: String, body: &[u8]) -> String {
    let conn = TcpStream::connect(addr).await.expect("connect");
    let (mut reader, mut writer) = conn.into_split();
    let request = [head.as_bytes(), body].concat();
    // The server may answer (and close) before reading it all; a failed write is fine then.
    // The write half stays open until the answer is read: hyper drops a request whose client
    // half-closes.
    let writing = tokio::spawn(async move {
        let _ = writer.write_all(&request).await;
        std::future::pending::<()>().await;
    });
    let answer = read_answer(&mut reader).await;
    writing.abort();
    answer
}

/// Reads until the server closes (or resets) the connection; the first line. The guard only
/// keeps a broken server from hanging the test.
async fn read_answer(reader: &mut (impl AsyncReadExt + Unpin)) -> String {
    let mut answer = Vec::new();
    let mut chunk = [0u8; 4096];
    let read = tokio::time::timeout(Duration::from_secs(60), async {
        while let Ok(n @ 1..) = reader.read(&mut chunk).await {
            answer.extend_from_slice(&chunk[..n]);
        }
    })
    .await;
    assert!(read.is_ok(), "the server kept the connection open");
    String::from_utf8_lossy(&answer).lines().next().unwrap_or_default().to_owned()
}

fn head(delivery: &str, body: &[u8], length: Option<usize>) -> String {
    let length = match length {
        Some(n) => format!("content-length: {n}\r\n"),
        None => "transfer-encoding: chunked\r\n".to_owned(),
    };
    format!(
        "POST /webhooks/github HTTP/1.1\r\nhost: ingest\r\nconnection: close\r\nx-github-event: ping\r\n\
         x-github-delivery: {delivery}\r\nx-hub-signature-256: {}\r\n{length}\r\n",
        sign(body)
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_bodies_get_413_and_nothing_is_published() {
    const MAX: usize = 64 * 1024;
    let nats = NatsServer::start().await.expect("nats");
    let ingest = start(&nats, |c| c.github.max_body_bytes = MAX).await;
    let mut big = ping();
    big.resize(MAX + 1, b' ');

    let (status, answer) = ingest.deliver("ping", &delivery_id(1), &big).await;
    assert_eq!(status, 413, "declared too large: {answer}");
    // Chunked: no length up front, the limit must hold while reading.
    let mut chunked = Vec::new();
    for chunk in big.chunks(4096) {
        chunked.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
        chunked.extend_from_slice(chunk);
        chunked.extend_from_slice(b"\r\n");
    }
    chunked.extend_from_slice(b"0\r\n\r\n");
    let status = raw_request(ingest.addr, head(&delivery_id(2), &big, None), &chunked).await;
    assert!(status.starts_with("HTTP/1.1 413"), "chunked too large: {status:?}");
    // A body that claims to be small but is not: the rest is a second, garbage request.
    let lying = raw_request(ingest.addr, head(&delivery_id(3), &big, Some(10)), &big).await;
    assert!(lying.starts_with("HTTP/1.1 401") || lying.starts_with("HTTP/1.1 400"), "{lying:?}");
    assert!(stream_messages(&nats).await.is_empty(), "an oversized body reached the stream");

    // Exactly at the limit is fine, chunked or not.
    big.truncate(MAX);
    assert_eq!(ingest.deliver("ping", &delivery_id(4), &big).await.0, 202);
    let chunked: Vec<u8> = [format!("{MAX:x}\r\n").as_bytes(), &big, b"\r\n0\r\n\r\n"].concat();
    let status = raw_request(ingest.addr, head(&delivery_id(5), &big, None), &chunked).await;
    assert!(status.starts_with("HTTP/1.1 202"), "{status:?}");
    assert_eq!(stream_messages(&nats).await.len(), 2);
    ingest.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_bodies_are_cut_off_and_nothing_is_published() {
    let nats = NatsServer::start().await.expect("nats");
    let ingest = start(&nats, |c| c.http.body_timeout_ms = 500).await;
    let body = ping();

    // Stalled: half the body, then nothing.
    let mut conn = TcpStream::connect(ingest.addr).await.expect("connect");
    conn.write_all(head(&delivery_id(1), &body, Some(body.len())).as_bytes()).await.expect("head");
    conn.write_all(&body[..body.len() / 2]).await.expect("half");
    let status = read_answer(&mut conn).await;
    assert!(status.starts_with("HTTP/1.1 408"), "stalled body: {status:?}");

    // Trickled: a byte every 50 ms, each well within any per-read timeout, for seconds on end.
    let conn = TcpStream::connect(ingest.addr).await.expect("connect");
    let (mut reader, mut writer) = conn.into_split();
    let request = [head(&delivery_id(2), &body, Some(body.len())).into_bytes(), body.clone()].concat();
    let (head_len, total) = (request.len() - body.len(), request.len());
    let trickle = tokio::spawn(async move {
        writer.write_all(&request[..head_len]).await.expect("head");
        for byte in &request[head_len..] {
            if writer.write_all(&[*byte]).await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    });
    let status = read_answer(&mut reader).await;
    assert!(status.starts_with("HTTP/1.1 408"), "trickled body of {total} bytes: {status:?}");
    trickle.abort();
    assert!(stream_messages(&nats).await.is_empty(), "a cut-off body reached the stream");

    // The same raw request, sent at once, is taken.
    let status = raw_request(ingest.addr, head(&delivery_id(3), &body, Some(body.len())), &body).await;
    assert!(status.starts_with("HTTP/1.1 202"), "{status:?}");
    assert_eq!(stream_messages(&nats).await.len(), 1);
    ingest.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_headers_are_cut_off() {
    let nats = NatsServer::start().await.expect("nats");
    let ingest = start(&nats, |c| c.http.header_timeout_ms = 500).await;
    let body = ping();

    // Slowloris: the request line, then a header byte every 50 ms — minutes of headers.
    let conn = TcpStream::connect(ingest.addr).await.expect("connect");
    let (mut reader, mut writer) = conn.into_split();
    let padding = format!("x-padding: {}\r\n", "a".repeat(2000));
    let trickle = tokio::spawn(async move {
        writer.write_all(b"POST /webhooks/github HTTP/1.1\r\nhost: ingest\r\n").await.expect("request line");
        for byte in padding.as_bytes() {
            if writer.write_all(&[*byte]).await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    });
    let status = read_answer(&mut reader).await;
    assert!(!trickle.is_finished(), "the server waited for every trickled header byte");
    assert!(!status.starts_with("HTTP/1.1 2"), "a trickled request was taken: {status:?}");
    trickle.abort();

    // Headers sent at once on a fresh connection are taken.
    let status = raw_request(ingest.addr, head(&delivery_id(1), &body, Some(body.len())), &body).await;
    assert!(status.starts_with("HTTP/1.1 202"), "{status:?}");
    assert_eq!(stream_messages(&nats).await.len(), 1);
    ingest.stop().await;
}

/// A push of one commit touching the writer app, to `git_ref` of `repository`.
fn push(git_ref: &str, repository: &str) -> Vec<u8> {
    let mut push: Value = serde_json::from_slice(&fixture("push/payload.json")).expect("json");
    push["ref"] = git_ref.into();
    push["repository"]["full_name"] = repository.into();
    push["after"] = "0d1a26e67d8f5eaf1f6ba5c57fc3c7d91ac0fd1c".into();
    push["deleted"] = false.into();
    push["commits"] = json!([{ "id": "0d1a26e67d8f5eaf1f6ba5c57fc3c7d91ac0fd1c", "message": "feat: x",
        "added": ["apps/writer/src/x.rs"], "modified": [], "removed": [], "author": { "username": "octo" } }]);
    serde_json::to_vec(&push).expect("encode")
}

fn release(tag: &str) -> Vec<u8> {
    let mut release: Value = serde_json::from_slice(&fixture("release/published.payload.json")).expect("json");
    release["release"]["tag_name"] = tag.into();
    serde_json::to_vec(&release).expect("encode")
}

/// Names of outside text that must not become a subject, a path or an image tag.
const HOSTILE: [&str; 10] =
    ["../../etc", "a/../b", "x.y.*", "x>", "*", "a b", "a\0b", "v1.2.3\n", "v1.2.3\nlatest", ".."];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_names_reach_no_subject_and_no_build() {
    let nats = NatsServer::start().await.expect("nats");
    let ingest = start(&nats, |_| {}).await;
    let mut n = 0;
    let mut next = || {
        n += 1;
        delivery_id(n)
    };
    for name in HOSTILE {
        for repository in [name.to_owned(), format!("acme/{name}"), format!("{name}/mono")] {
            let (status, answer) = ingest.deliver("push", &next(), &push("refs/heads/main", &repository)).await;
            assert_eq!(status, 400, "repository {repository:?}: {answer}");
            assert!(answer["error"].as_str().unwrap_or_default().contains("repository"), "{answer}");
        }
        for git_ref in [format!("refs/heads/{name}"), format!("refs/tags/{name}")] {
            let (status, answer) = ingest.deliver("push", &next(), &push(&git_ref, "acme/mono")).await;
            if status == 202 {
                // Only names git itself allows (`x>`), and those keep out of subjects and tags.
                assert_eq!(name, "x>", "{git_ref:?} accepted: {answer}");
            } else {
                assert_eq!(status, 400, "{git_ref:?}: {answer}");
            }
        }
        let (status, answer) = ingest.deliver("release", &next(), &release(name)).await;
        assert_eq!(status, if name == "x>" { 202 } else { 400 }, "release {name:?}: {answer}");
    }
    for delivery in ["a.b", "a*", "a>", "a b", "../x"] {
        assert_eq!(ingest.deliver("ping", delivery, &ping()).await.0, 400, "delivery id {delivery:?}");
    }
    let (status, answer) = ingest.deliver("ping.>", &next(), &ping()).await;
    assert_eq!((status, answer["status"].as_str()), (202, Some("ignored")), "{answer}");
    chat_commands_with_hostile_names(&ingest).await;

    // Well-formed deliveries still make their events and builds.
    assert_eq!(ingest.deliver("push", &next(), &push("refs/heads/main", "acme/mono.rs")).await.0, 202);
    assert_eq!(ingest.deliver("release", &next(), &release("v1.2.3")).await.0, 202);

    let messages = stream_messages(&nats).await;
    assert_safe_subjects(&messages);
    let builds: Vec<&Value> =
        messages.iter().filter(|(s, _)| s.starts_with("slipway.build.requested.")).map(|(_, b)| b).collect();
    let mut extra_tags: Vec<&str> =
        builds.iter().flat_map(|b| b["extraTags"].as_array().into_iter().flatten()).filter_map(Value::as_str).collect();
    extra_tags.sort_unstable();
    assert_eq!(extra_tags, ["v1.2.3"], "only the well-formed release adds an image tag");
    for build in &builds {
        let git_ref = build["source"]["ref"].as_str().unwrap_or_default();
        assert!(slipway_ingest::github::valid_ref_name(git_ref.splitn(3, '/').nth(2).unwrap_or("")), "{git_ref:?}");
    }
    for tag in &extra_tags {
        assert!(ImageTag::parse(tag).is_ok(), "{tag:?}");
    }
    let refs: Vec<&str> = builds.iter().filter_map(|b| b["source"]["ref"].as_str()).collect();
    assert!(refs.contains(&"refs/heads/main") && refs.contains(&"refs/heads/x>"), "{refs:?}");
    // Nor does a newline or NUL travel in a source event or build (chat events may quote text).
    for (subject, body) in messages.iter().filter(|(s, _)| !s.starts_with("slipway.chatops.")) {
        let text = body.to_string();
        assert!(!text.contains("\\n") && !text.contains("\\u0000"), "{subject}: {text}");
    }
    ingest.stop().await;
}

/// Chat commands naming hostile apps and stages: answered with an error per command, and any
/// event they make is keyed by `-` tokens, not the text.
async fn chat_commands_with_hostile_names(ingest: &Ingest) {
    let url = format!("http://{}/chatops", ingest.addr);
    for (i, name) in HOSTILE.iter().enumerate() {
        let text = format!("/promote {name} prod v1\n/approve writer {name}\n/rollback writer prod {name}");
        let message = json!({ "id": format!("msg-{i}"), "actor": "octocat", "text": text });
        let resp = ingest.http.post(&url).bearer_auth(BOT_TOKEN).json(&message).send().await.expect("POST");
        let status = resp.status().as_u16();
        let answer: Value = resp.json().await.unwrap_or_default();
        assert!(status == 202 || status == 400, "{name:?}: {status} {answer}");
        for command in answer["commands"].as_array().into_iter().flatten() {
            let touches = [&command["app"], &command["env"], &command["tag"]];
            assert!(touches.iter().all(|v| v.as_str().is_none_or(|s| !s.contains(name))), "{name:?}: {command}");
        }
    }
}
