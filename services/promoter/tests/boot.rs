//! slipway-promoter boots against real NATS and PostgreSQL, serves its admin port, follows NATS
//! in `/readyz`, and stops cleanly on SIGTERM.

use slipway_testkit::boot;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn boots_reports_readiness_and_stops_on_sigterm() {
    let work = tempfile::tempdir().expect("work dir");
    let env = [("SLIPWAY_GITOPS__WORK_DIR".to_owned(), work.path().display().to_string())];
    boot::assert_service_lifecycle(env!("CARGO_BIN_EXE_slipway-promoter"), "promoter", "audit_log", &env).await;
}

#[tokio::test]
async fn a_bad_config_key_is_named_in_the_error() {
    boot::assert_config_error_names_key(env!("CARGO_BIN_EXE_slipway-promoter")).await;
}
