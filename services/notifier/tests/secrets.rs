//! The real binary, its output captured: webhook URLs, tokens and signing secrets never
//! appear in its logs or in `notification.failed`, even when a remote echoes them back.

mod common;

use common::{Remote, wait_events};
use slipway_mesh::v1;
use slipway_testkit::{NatsServer, boot};
use std::time::Duration;

const URL_TOKEN: &str = "T0SECRET/B0SECRET/xoxbsecretpath";
const GH_TOKEN: &str = "ghp_supersecrettoken0000";
const SIGNING: &str = "slack-signing-secret-0000";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_stay_out_of_logs_and_failed_events() {
    let nats = NatsServer::start().await.expect("nats");
    let db = slipway_testkit::shared_database().await.expect("database");
    let remote = Remote::start().await;
    remote.default_answer((500, vec![], format!("boom at /services/{URL_TOKEN} with Bearer {GH_TOKEN}")));
    let dir = tempfile::tempdir().expect("dir");
    let url_file = dir.path().join("slack-url");
    std::fs::write(&url_file, format!("{}/services/{URL_TOKEN}\n", remote.base)).expect("write");
    let config = dir.path().join("notifier.toml");
    std::fs::write(
        &config,
        format!(
            r#"
            retry = {{ attempts = 2, base_ms = 10, max_ms = 20 }}
            [[destinations]]
            name = "team"
            provider = "slack"
            url_file = "{}"
            [[destinations]]
            name = "gh"
            provider = "github"
            url = "{}"
            token = "{GH_TOKEN}"
            [[routes]]
            destinations = ["team", "gh"]
            "#,
            url_file.display(),
            remote.base
        ),
    )
    .expect("write");
    let env = vec![
        ("SLIPWAY_CONFIG".to_owned(), config.display().to_string()),
        ("SLIPWAY_HTTP__LISTEN".to_owned(), format!("127.0.0.1:{}", slipway_testkit::free_port())),
        ("SLIPWAY_SLACK__SIGNING_SECRET".to_owned(), SIGNING.to_owned()),
        ("SLIPWAY_TELEMETRY__FILTER".to_owned(), "debug,h2=info,hyper=info,async_nats=info".to_owned()),
    ];
    let svc = boot::spawn_service(env!("CARGO_BIN_EXE_slipway-notifier"), &nats.url(), &db, &env).await;
    svc.process.wait_http_ok(&format!("{}/readyz", svc.admin), Duration::from_secs(30)).await.expect("ready");

    let (_, publisher) = common::publisher(&nats).await;
    let sha = "6113728f27ae82c7b1a177c8d03f9e96e0adf246";
    let event = v1::BuildSucceeded {
        app: "writer".into(),
        source: Some(v1::SourceRef { repository: "acme/mono".into(), commit_sha: sha.into(), ..Default::default() }),
        ..Default::default()
    };
    publisher.publish(&event).await.expect("publish");
    let failed = wait_events(&nats, "io.slipway.notification.failed.v1", 2, Duration::from_secs(30)).await;
    assert_eq!(failed.len(), 2, "{failed:?}");
    assert_eq!(remote.requests().len(), 4, "two attempts per destination");
    for f in &failed {
        let text = f.to_string();
        assert!(text.contains("HTTP 500"), "{text}");
        for secret in ["xoxbsecretpath", "B0SECRET", GH_TOKEN] {
            assert!(!text.contains(secret), "{secret} in notification.failed: {text}");
        }
    }
    let dlq =
        reqwest::Client::new().get(format!("{}/dlq", svc.admin)).send().await.expect("GET").text().await.expect("body");
    assert!(!dlq.contains(GH_TOKEN) && !dlq.contains("xoxbsecretpath"), "{dlq}");

    let log = std::fs::read_to_string(svc.process.log_path()).expect("log");
    assert!(log.contains("notification failed"), "nothing logged? {log}");
    for secret in ["xoxbsecretpath", "B0SECRET", GH_TOKEN, SIGNING] {
        assert!(!log.contains(secret), "{secret} in the logs:\n{log}");
    }
}
