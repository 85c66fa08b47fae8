//! `slipway-promoter`: see [`slipway_runtime::service::main`] for what a service binary does.

#[tokio::main]
async fn main() -> std::process::ExitCode {
    slipway_runtime::service::main("slipway-promoter", slipway_promoter::run).await
}
