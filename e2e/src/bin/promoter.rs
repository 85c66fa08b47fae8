//! `slipway-promoter` for the end-to-end tests: the service's own `main`, built in this package.

#[tokio::main]
async fn main() -> std::process::ExitCode {
    slipway_runtime::service::main("slipway-promoter", slipway_promoter::run).await
}
