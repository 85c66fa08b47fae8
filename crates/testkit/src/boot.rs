//! The life-cycle check every Slipway service binary must pass: it starts against real
//! NATS and PostgreSQL, serves its admin port, reports ready only when both are reachable,
//! migrates its own schema, and exits cleanly on SIGTERM.
//!
//! Test code: failures panic with the service's output attached.

use std::path::Path;
use std::time::Duration;

use crate::{NatsServer, ServiceProcess, free_port, postgres_bindir, shared_database};

/// A service binary running against the test kit's servers.
pub struct BootedService {
    /// The process.
    pub process: ServiceProcess,
    /// `http://127.0.0.1:<port>` of its admin server.
    pub admin: String,
}

/// The environment that points a service at `nats_url` and `db_url` with an admin port.
pub fn service_env(nats_url: &str, db_url: &str, admin_port: u16) -> Vec<(String, String)> {
    vec![
        ("SLIPWAY_NATS__URL".into(), nats_url.into()),
        ("SLIPWAY_DATABASE__URL".into(), db_url.into()),
        ("SLIPWAY_ADMIN__LISTEN".into(), format!("127.0.0.1:{admin_port}")),
        ("SLIPWAY_TELEMETRY__FILTER".into(), "info".into()),
    ]
}

/// Spawns `bin` against `nats_url` and `db_url` (plus `extra_env`), waiting until `/healthz` answers.
pub async fn spawn_service(bin: &str, nats_url: &str, db_url: &str, extra_env: &[(String, String)]) -> BootedService {
    let port = free_port();
    let mut env = service_env(nats_url, db_url, port);
    env.extend_from_slice(extra_env);
    let process = ServiceProcess::spawn(bin, &env).expect("spawn service");
    let admin = format!("http://127.0.0.1:{port}");
    if let Err(e) = process.wait_http_ok(&format!("{admin}/healthz"), Duration::from_secs(30)).await {
        panic!("{bin} did not serve /healthz: {e}");
    }
    BootedService { process, admin }
}

async fn get(url: &str) -> (u16, String) {
    let resp = reqwest::Client::builder().no_proxy().build().expect("client").get(url).send().await.expect("GET");
    let status = resp.status().as_u16();
    (status, resp.text().await.unwrap_or_default())
}

fn psql(db_url: &str, sql: &str) -> String {
    let bindir = postgres_bindir().expect("postgres binaries");
    let out = std::process::Command::new(bindir.join("psql")).args([db_url, "-tAc", sql]).output().expect("run psql");
    assert!(out.status.success(), "psql failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// The whole life cycle of service `bin` whose schema is `schema` and whose own migration
/// creates `own_table`; `extra_env` carries what that service requires besides the basics.
pub async fn assert_service_lifecycle(bin: &str, schema: &str, own_table: &str, extra_env: &[(String, String)]) {
    let mut nats = NatsServer::start().await.expect("nats");
    let db_url = shared_database().await.expect("database");
    let mut svc = spawn_service(bin, &nats.url(), &db_url, extra_env).await;
    let name = Path::new(bin).file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();

    let ready = format!("{}/readyz", svc.admin);
    if let Err(e) = svc.process.wait_http_ok(&ready, Duration::from_secs(30)).await {
        panic!("{name} never became ready: {e}");
    }
    let (status, body) = get(&ready).await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("\"nats\":\"ok\"") && body.contains("\"database\":\"ok\""), "{body}");
    let (status, metrics) = get(&format!("{}/metrics", svc.admin)).await;
    assert_eq!(status, 200, "{metrics}");

    // Migrations ran in the service's own schema.
    let tables = psql(
        &db_url,
        &format!(
            "SELECT string_agg(table_name, ',' ORDER BY table_name) FROM information_schema.tables WHERE table_schema = '{schema}'"
        ),
    );
    for table in ["slipway_outbox", "slipway_inbox", own_table] {
        assert!(tables.split(',').any(|t| t == table), "{table} missing from schema {schema}: {tables}");
    }
    // The stream exists with our settings.
    let (status, jsz) = get(&format!("http://127.0.0.1:{}/jsz?streams=true", nats.monitor_port())).await;
    assert_eq!(status, 200);
    assert!(jsz.contains("\"SLIPWAY\""), "stream SLIPWAY missing: {jsz}");

    // Readiness follows NATS: not-ready (503) or degraded (a service that works around the
    // outage) while it is killed, ready again after its restart.
    nats.kill().await.expect("kill nats");
    wait_until(&ready, Duration::from_secs(15), |status, body| status == 503 || body.contains("\"degraded\""))
        .await
        .unwrap_or_else(|| panic!("{name} stayed ready without NATS"));
    let (status, _) = get(&format!("{}/healthz", svc.admin)).await;
    assert_eq!(status, 200, "liveness must not depend on NATS");
    nats.restart().await.expect("restart nats");
    wait_until(&ready, Duration::from_secs(30), |status, body| status == 200 && body.contains("\"ready\""))
        .await
        .unwrap_or_else(|| panic!("{name} did not recover"));

    svc.process.sigterm().expect("SIGTERM");
    let status = svc.process.wait(Duration::from_secs(15)).await.expect("exit after SIGTERM");
    assert!(status.success(), "{name} exited with {status}:\n{}", svc.process.output_tail(40));
}

async fn wait_until(url: &str, timeout: Duration, done: impl Fn(u16, &str) -> bool) -> Option<()> {
    let deadline = tokio::time::Instant::now() + timeout;
    while tokio::time::Instant::now() < deadline {
        let (status, body) = get(url).await;
        if done(status, &body) {
            return Some(());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    None
}

/// A service given a bad configuration exits non-zero and names the key.
pub async fn assert_config_error_names_key(bin: &str) {
    let envs = vec![
        ("SLIPWAY_NATS__URLL".to_owned(), "nats://127.0.0.1:1".to_owned()),
        ("SLIPWAY_DATABASE__URL".to_owned(), "postgres://x@127.0.0.1:1/x".to_owned()),
    ];
    let mut process = ServiceProcess::spawn(bin, &envs).expect("spawn");
    let status = process.wait(Duration::from_secs(15)).await.expect("exits");
    assert!(!status.success());
    let output = process.output_tail(20);
    assert!(output.contains("nats.urll"), "error does not name the key: {output}");
}
