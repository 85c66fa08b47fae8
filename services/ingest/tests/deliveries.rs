//! The deliveries record against real PostgreSQL: every remembered delivery is written, and
//! what is still queued (or gathering for a batch) at shutdown is flushed before the writer
//! stops.

use slipway_ingest::deliveries::Recorder;
use slipway_runtime::config::{DatabaseConfig, Secret};
use tokio_util::sync::CancellationToken;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remembered_deliveries_are_written_in_batches_and_flushed_at_shutdown() {
    let url = slipway_testkit::shared_database().await.expect("database");
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_nanos();
    let schema = format!("ingest_recorder_{}_{nanos}", std::process::id());
    let config = DatabaseConfig { url: Some(Secret::new(url)), ..DatabaseConfig::with_schema(&schema) };
    let pool = slipway_runtime::db::connect(&config).await.expect("pool");
    slipway_runtime::db::migrate(&pool, &slipway_ingest::MIGRATOR).await.expect("migrate");

    let shutdown = CancellationToken::new();
    let (recorder, writer) = Recorder::spawn(pool.clone(), shutdown.clone());
    // Remembered one at a time, as the request handlers do, then shutdown right away.
    for i in 0..2000 {
        recorder.remember(&format!("00000000-0000-0000-0000-{i:012}"), "push").await;
    }
    shutdown.cancel();
    tokio::time::timeout(std::time::Duration::from_secs(10), writer).await.expect("the writer stops").expect("join");

    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM github_deliveries").fetch_one(&pool).await.expect("count");
    assert_eq!(rows, 2000, "every remembered delivery is recorded, including those queued at shutdown");
    sqlx::query(sqlx::AssertSqlSafe(format!("DROP SCHEMA \"{schema}\" CASCADE"))).execute(&pool).await.expect("drop");
}
