//! slipway-notifier boots against real NATS and PostgreSQL, serves its admin port, follows NATS
//! in `/readyz`, and stops cleanly on SIGTERM.

use slipway_testkit::boot;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn boots_reports_readiness_and_stops_on_sigterm() {
    // The Slack callback listener binds a port of its own.
    let http = vec![("SLIPWAY_HTTP__LISTEN".to_owned(), format!("127.0.0.1:{}", slipway_testkit::free_port()))];
    boot::assert_service_lifecycle(
        env!("CARGO_BIN_EXE_slipway-notifier"),
        "notifier",
        "notification_deliveries",
        &http,
    )
    .await;
}

#[tokio::test]
async fn a_bad_config_key_is_named_in_the_error() {
    boot::assert_config_error_names_key(env!("CARGO_BIN_EXE_slipway-notifier")).await;
}
