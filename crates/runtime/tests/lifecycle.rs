//! The service lifecycle against real nats-server and PostgreSQL: every task a service
//! spawned is awaited before the outbox's last relay, the admin server and the NATS
//! connection; a failing body or task stops the service and is its result.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use common::{TEST_MIGRATOR, build_requested, nats_config, stream};
use slipway_runtime::admin::AdminServer;
use slipway_runtime::config::{DatabaseConfig, NatsConfig, Secret};
use slipway_runtime::db::outbox;
use slipway_runtime::jetstream;
use slipway_runtime::service::{self, Boot, Running};
use slipway_testkit::NatsServer;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

async fn database_config() -> DatabaseConfig {
    let url = slipway_testkit::shared_database().await.expect("postgres");
    DatabaseConfig { url: Some(Secret::new(url)), ..DatabaseConfig::with_schema("svc") }
}

fn boot<'a>(nats: &'a NatsConfig, database: &'a DatabaseConfig) -> Boot<'a> {
    Boot {
        name: "lifecycle",
        nats,
        database,
        migrator: &TEST_MIGRATOR,
        admin: AdminServer::new(),
        nats_required: true,
        outbox: true,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tasks_end_before_the_last_relay_and_the_admin_server_stops() {
    let server = NatsServer::start().await.expect("nats");
    let (nats, database) = (nats_config(&server.url()), database_config().await);
    let admin = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let admin_addr = admin.local_addr().expect("addr");
    let shutdown = CancellationToken::new();
    let (started_tx, started) = tokio::sync::oneshot::channel();

    let service = {
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            let boot = boot(&nats, &database);
            service::run(boot, admin, &shutdown, async move |running: Running| {
                // A task whose last work is an event written while the service stops: it
                // goes out only if the task is awaited before the final relay.
                let (pool, token) = (running.ctx.pool.clone(), running.shutdown.clone());
                running.spawn("last words", async move {
                    token.cancelled().await;
                    tokio::time::sleep(Duration::from_millis(300)).await;
                    let mut tx = pool.begin().await?;
                    outbox::enqueue(&mut tx, "/test", &build_requested(7)).await?;
                    tx.commit().await?;
                    anyhow::Ok(())
                });
                let _ = started_tx.send(());
                running.shutdown.cancelled().await;
                Ok(())
            })
            .await
        })
    };
    started.await.expect("the body ran");
    let health = reqwest::get(format!("http://{admin_addr}/healthz")).await.expect("admin serves");
    assert!(health.status().is_success());

    shutdown.cancel();
    let ended = tokio::time::timeout(Duration::from_secs(20), service).await.expect("stopped in time");
    ended.expect("joined").expect("a clean stop");

    let client = jetstream::connect(&nats_config(&server.url()), "check").await.expect("connect");
    let mut stream = stream(&client, &server.url()).await;
    assert_eq!(stream.info().await.expect("info").state.messages, 1, "the task's event was relayed at stop");
    assert!(reqwest::get(format!("http://{admin_addr}/healthz")).await.is_err(), "the admin server stopped");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_body_stops_its_tasks_and_is_the_result() {
    let server = NatsServer::start().await.expect("nats");
    let (nats, database) = (nats_config(&server.url()), database_config().await);
    let admin = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    // Nobody cancels this token: the body's error alone must stop the service.
    let shutdown = CancellationToken::new();
    let stopped = Arc::new(AtomicBool::new(false));

    let seen = stopped.clone();
    let ended = tokio::time::timeout(
        Duration::from_secs(20),
        service::run(boot(&nats, &database), admin, &shutdown, async move |running: Running| {
            let token = running.shutdown.clone();
            running.spawn("waiter", async move {
                token.cancelled().await;
                seen.store(true, Ordering::SeqCst);
            });
            anyhow::bail!("consumer set-up failed: boom")
        }),
    )
    .await
    .expect("stopped without a signal");
    let error = ended.expect_err("the body's error is the result");
    assert!(format!("{error:#}").contains("boom"), "{error:#}");
    assert!(stopped.load(Ordering::SeqCst), "the task saw the stop and was awaited");
    assert!(!shutdown.is_cancelled(), "the caller's token is the caller's");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_task_is_reported_and_shutting_down_is_no_failure() {
    let server = NatsServer::start().await.expect("nats");
    let (nats, database) = (nats_config(&server.url()), database_config().await);
    let admin = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let shutdown = CancellationToken::new();
    let cancel = shutdown.clone();
    let ended = tokio::time::timeout(
        Duration::from_secs(20),
        service::run(boot(&nats, &database), admin, &shutdown, async move |running: Running| {
            running.spawn("reconciler", async { Err(anyhow::anyhow!("token revoked")) });
            cancel.cancel();
            // A step given up because the service stops is a clean end of the body.
            service::retry("never", &running.shutdown, || async {
                Err::<(), _>(slipway_runtime::Error::Config("not yet".into()))
            })
            .await?;
            Ok(())
        }),
    )
    .await
    .expect("stopped");
    let error = ended.expect_err("the task's failure is the result");
    let text = format!("{error:#}");
    assert!(text.contains("reconciler") && text.contains("token revoked"), "{text}");
}

/// `/readyz` answers 503 while the body sets itself up, even with NATS and the database
/// connected, and ready once the body says it started: a webhook sent on "ready" must not
/// reach a service still opening its buckets.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ready_only_once_the_body_started() {
    let server = NatsServer::start().await.expect("nats");
    let (nats, database) = (nats_config(&server.url()), database_config().await);
    let admin = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let readyz = format!("http://{}/readyz", admin.local_addr().expect("addr"));
    let shutdown = CancellationToken::new();
    let (in_body_tx, in_body) = tokio::sync::oneshot::channel();
    let (go_tx, go) = tokio::sync::oneshot::channel::<()>();

    let service = {
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            service::run(boot(&nats, &database), admin, &shutdown, async move |running: Running| {
                let _ = in_body_tx.send(());
                let _ = go.await; // setting up
                running.started();
                running.shutdown.cancelled().await;
                Ok(())
            })
            .await
        })
    };
    in_body.await.expect("the body ran");
    let setting_up = reqwest::get(&readyz).await.expect("admin serves");
    assert_eq!(setting_up.status(), 503, "not ready while the body sets up");
    assert!(setting_up.text().await.expect("body").contains("started"), "says what it waits for");
    go_tx.send(()).expect("body waits");
    let mut status = 0;
    for _ in 0..100 {
        status = reqwest::get(&readyz).await.expect("admin serves").status().as_u16();
        if status == 200 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(status, 200, "ready once started");
    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(20), service).await.expect("stopped").expect("joined").expect("clean");
}
