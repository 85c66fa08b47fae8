//! `slipway-builder`: see [`slipway_runtime::service::main`] for what a service binary does.

#[tokio::main]
async fn main() -> std::process::ExitCode {
    slipway_runtime::service::main("slipway-builder", slipway_builder::run).await
}
