//! `slipway-ingest` for the end-to-end tests: the service's own `main`, built in this package.

#[tokio::main]
async fn main() -> std::process::ExitCode {
    slipway_runtime::service::main("slipway-ingest", slipway_ingest::run).await
}
