//! slipway-ingest boots against real NATS and PostgreSQL, serves its admin port, follows NATS
//! in `/readyz`, and stops cleanly on SIGTERM.

use slipway_testkit::boot;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn boots_reports_readiness_and_stops_on_sigterm() {
    let spool = tempfile::tempdir().expect("spool dir");
    let env = [
        ("SLIPWAY_GITHUB__WEBHOOK_SECRETS".to_owned(), "[boot-test-secret]".to_owned()),
        ("SLIPWAY_SPOOL__DIR".to_owned(), spool.path().display().to_string()),
        ("SLIPWAY_HTTP__LISTEN".to_owned(), format!("127.0.0.1:{}", slipway_testkit::free_port())),
    ];
    boot::assert_service_lifecycle(env!("CARGO_BIN_EXE_slipway-ingest"), "ingest", "github_deliveries", &env).await;
}

#[tokio::test]
async fn a_bad_config_key_is_named_in_the_error() {
    boot::assert_config_error_names_key(env!("CARGO_BIN_EXE_slipway-ingest")).await;
}
