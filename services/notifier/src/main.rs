//! `slipway-notifier`: see [`slipway_runtime::service::main`] for what a service binary does.

/// mimalloc: many small, short-lived allocations per event (JSON in, JSON out).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    slipway_runtime::service::main("slipway-notifier", slipway_notifier::run).await
}
